"""Host-side (grain worker) transforms on labeled records: geometry and training targets.

Records are `{image [H,W,3] uint8, depth [H,W] float32, mask [H,W] bool, source: str}`, plus
an optional `sky [H,W] bool` where the source knows its sky. Geometry is applied identically to
image, depth and the masks (bilinear for the image, nearest for depth and masks, so no
invalid/valid mixing at depth edges). Transforms are picklable classes with numpy-only code, as
grain's worker processes require.
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import grain
import numpy as np

log = logging.getLogger("dajax")

TARGETS = ("disparity", "depth", "semantics")


def resize_shorter(record: dict, size: int) -> dict:
    """Resizes so the shorter side is `size` (aspect kept).

    The image and a dense pseudo-label `disparity` are resampled bilinearly, so they stay
    aligned value for value; `depth` and the masks (which hold invalid pixels that must not be
    blended) take the nearest pixel, with pixel centres mapped onto pixel centres
    (`INTER_NEAREST_EXACT`). OpenCV's plain `INTER_NEAREST` maps output pixel x to input
    floor(x · scale), half an input pixel off-centre: labels shifted up-left of the image.
    """
    h, w = record["image"].shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = dict(record)
    out["image"] = cv2.resize(record["image"], (nw, nh), interpolation=cv2.INTER_LINEAR)
    for key in ("depth", "mask", "sky", "disparity", "cutmix_mask", "semantics"):
        if key in record:
            arr = record[key].astype(np.uint8) if record[key].dtype == bool else record[key]
            mode = cv2.INTER_LINEAR if key == "disparity" else cv2.INTER_NEAREST_EXACT
            res = cv2.resize(arr, (nw, nh), interpolation=mode)
            out[key] = res.astype(bool) if record[key].dtype == bool else res
    return out


def crop(record: dict, top: int, left: int, size: int) -> dict:
    """The `size` x `size` window at (top, left) of every spatial array."""
    out = dict(record)
    for key, value in record.items():
        if isinstance(value, np.ndarray) and value.ndim >= 2:
            out[key] = np.ascontiguousarray(value[top : top + size, left : left + size])
    return out


def hflip(record: dict) -> dict:
    """Mirrors every spatial array left-right."""
    return {
        k: np.ascontiguousarray(v[:, ::-1]) if isinstance(v, np.ndarray) and v.ndim >= 2 else v
        for k, v in record.items()
    }


def disparity_target(
    depth: np.ndarray, mask: np.ndarray, sky: np.ndarray | None = None
) -> np.ndarray:
    """Training target [H, W] float32 in [0, 1]: 1/depth normalised per image (paper §3.1).

    Args:
      depth: [H, W] metres; mask: [H, W] bool, valid depth.
      sky: [H, W] bool or None. Sky is the farthest thing, disparity 0, and takes part in the
        normalisation: with sky in the image the target is disp / max(disp), so the sky is
        exactly 0; without it, disp is min-max normalised over the valid pixels.

    Pixels neither valid nor sky are 0. An image whose values (sky's 0 included) are all equal
    gets all zeros (the affine-invariant loss ignores it through its own normalisation).
    """
    has_sky = sky is not None and bool(sky.any())
    valid = mask & ~sky if has_sky else mask
    disp = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
    if not valid.any():
        return np.zeros_like(disp)
    lo, hi = (0.0 if has_sky else disp[valid].min()), disp[valid].max()
    if hi <= lo:
        return np.zeros_like(disp)
    return np.where(valid, (disp - lo) / (hi - lo), 0.0).astype(np.float32)


def sanitize(record: dict) -> dict:
    """Masks NaN/Inf/non-positive depth values, counted in `bad_pixels` and logged with the
    record's `source`."""
    depth = record["depth"]
    bad = ~np.isfinite(depth) | (depth <= 0)
    out = dict(record)
    out["mask"] = record["mask"] & ~bad
    out["depth"] = np.where(bad, 0.0, depth).astype(np.float32)
    out["bad_pixels"] = np.int32((bad & record["mask"]).sum())
    if out["bad_pixels"]:
        log.warning(
            "%s: masked %d NaN/Inf/non-positive depth pixels",
            record.get("source", "?"),
            int(out["bad_pixels"]),
        )
    return out


@dataclasses.dataclass(frozen=True)
class LabeledTrainTransform(grain.transforms.RandomMap):
    """Resize shorter side, random square crop, random horizontal flip, training target.

    Output: `{image [S,S,3] uint8, target [S,S] float32, mask [S,S] bool}`; the target is the
    per-image normalised disparity in [0, 1] (`target='disparity'`, relative training; a
    record's `sky` is disparity 0 and inside `mask`, the loss mask = valid | sky) or the depth
    in metres (`target='depth'`, metric fine-tuning; 0 where invalid, sky stays invalid) or
    the record's class map (`target='semantics'`, int32 `procedural.SEMANTIC_CLASSES`, every
    pixel in `mask`; the encoder pre-training of `dajax.training.pretrain`).
    """

    size: int = 518
    flip: bool = True
    target: str = "disparity"

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        if self.target != "semantics":  # class maps hold no depth to sanitize
            record = sanitize(record)
        record = resize_shorter(record, self.size)
        h, w = record["image"].shape[:2]
        record = crop(
            record,
            int(rng.integers(0, h - self.size + 1)),
            int(rng.integers(0, w - self.size + 1)),
            self.size,
        )
        if self.flip and rng.random() < 0.5:
            record = hflip(record)
        if self.target == "semantics":
            labels = record["semantics"].astype(np.int32)
            return {"image": record["image"], "target": labels, "mask": np.ones_like(labels, bool)}
        if self.target == "depth":
            depth = np.where(record["mask"], record["depth"], 0.0).astype(np.float32)
            return {"image": record["image"], "target": depth, "mask": record["mask"]}
        sky = record.get("sky")
        return {
            "image": record["image"],
            "target": disparity_target(record["depth"], record["mask"], sky),
            "mask": record["mask"] if sky is None else record["mask"] | sky,
        }


@dataclasses.dataclass(frozen=True)
class UnlabeledTrainTransform(grain.transforms.RandomMap):
    """Resize + random crop of an unlabeled (optionally pseudo-labeled) record.

    Output: `{image [S,S,3] uint8}` plus `pseudo [S,S] float32` when the record carries a
    teacher `disparity`, and `sky [S,S] bool` when it carries a sky mask (for a teacher that
    labels online). No flip: the paper flips labeled images only.
    """

    size: int = 518

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        record = resize_shorter(record, self.size)
        h, w = record["image"].shape[:2]
        record = crop(
            record,
            int(rng.integers(0, h - self.size + 1)),
            int(rng.integers(0, w - self.size + 1)),
            self.size,
        )
        out = {"image": record["image"]}
        if "disparity" in record:
            out["pseudo"] = record["disparity"].astype(np.float32)
        if "sky" in record:  # for a teacher labelling online (stored labels hold it already)
            out["sky"] = record["sky"]
        return out
