"""Host-side (grain worker) transforms on labeled records: geometry and training targets.

Records are `{image [H,W,3] uint8, depth [H,W] float32, mask [H,W] bool, source: str}`.
Geometry is applied identically to image, depth and mask (bilinear for the image, nearest for
depth and mask, so no invalid/valid mixing at depth edges). Transforms are picklable classes
with numpy-only code, as grain's worker processes require.
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import grain
import numpy as np

log = logging.getLogger("dajax")

TARGETS = ("disparity", "depth")


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
    for key in ("depth", "mask", "disparity", "cutmix_mask"):
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


def disparity_target(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Training target: 1/depth on valid pixels, min-max normalised per image to [0, 1].

    Invalid pixels (including sky) are 0. An image with fewer than two distinct valid values
    gets all zeros (the affine-invariant loss ignores it through its own normalisation).
    """
    disp = np.where(mask, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
    if not mask.any():
        return disp
    lo, hi = disp[mask].min(), disp[mask].max()
    if hi <= lo:
        return np.zeros_like(disp)
    return np.where(mask, (disp - lo) / (hi - lo), 0.0).astype(np.float32)


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
    per-image normalised disparity in [0, 1] (`target='disparity'`, relative training) or the
    depth in metres (`target='depth'`, metric fine-tuning; 0 where invalid).
    """

    size: int = 518
    flip: bool = True
    target: str = "disparity"

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        record = resize_shorter(sanitize(record), self.size)
        h, w = record["image"].shape[:2]
        record = crop(
            record,
            int(rng.integers(0, h - self.size + 1)),
            int(rng.integers(0, w - self.size + 1)),
            self.size,
        )
        if self.flip and rng.random() < 0.5:
            record = hflip(record)
        return {
            "image": record["image"],
            "target": (
                disparity_target(record["depth"], record["mask"])
                if self.target == "disparity"
                else np.where(record["mask"], record["depth"], 0.0).astype(np.float32)
            ),
            "mask": record["mask"],
        }


@dataclasses.dataclass(frozen=True)
class UnlabeledTrainTransform(grain.transforms.RandomMap):
    """Resize + random crop of an unlabeled (optionally pseudo-labeled) record.

    Output: `{image [S,S,3] uint8}` plus `pseudo [S,S] float32` when the record carries a
    teacher `disparity`. No flip: the paper flips labeled images only.
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
        return out
