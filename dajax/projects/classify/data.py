"""Classification data: image folders (one sub-folder per class) and a procedural camouflage set.

Sources are grain-style random-access sources (`__len__`, `__getitem__`) whose records are
`{image: [H, W, 3] uint8 RGB, label: int, path: str}`. A folder root either holds `train/` and
`val/` sub-roots with the same class folders, or class folders directly, which are then split
per class (`stratified_split`, seeded).

The demo set (`camouflage_dataset`) draws one object per image, its class being its shape. The
object is painted with the same two colours and the same value-noise statistics as the
background behind it, so in RGB it is camouflaged (only a faint shading offset and the finer
perspective scale of its texture betray it), but it floats nearer the camera than the
background, so its depth map shows the silhouette plainly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np

from dajax.io.images import IMAGE_EXTENSIONS, ImageReadError, find_images, read_image

log = logging.getLogger("dajax")

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's index: image `paths` (or virtual names), integer `labels`, class names."""

    paths: tuple[str, ...]
    labels: np.ndarray  # [N] int32 in [0, len(classes))
    classes: tuple[str, ...]


class ImageFolderSource:
    """Records `{image [H, W, 3] uint8, label int, path str}` read from image files.

    Raises (on access) a `ValueError` naming the class folder and the file for an unreadable
    image.
    """

    def __init__(self, split: Split):
        self.split = split
        self.classes = split.classes

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.split.paths[index]
        try:
            image = read_image(path)
        except ImageReadError as e:
            raise ImageReadError(
                f"class folder {os.path.dirname(path)}: unreadable image ({e})"
            ) from None
        return {"image": image, "label": int(self.split.labels[index]), "path": path}


class ArraySource:
    """Records `{image, label, path}` from in-memory arrays (the procedural demo).

    Args:
      images: [N, H, W, 3] uint8.
      labels: [N] int.
      paths: N virtual names (used as depth-cache keys).
      classes: class names.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, paths, classes):
        self.images, self.labels = images, np.asarray(labels, np.int32)
        self.paths, self.classes = tuple(paths), tuple(classes)
        self.split = Split(self.paths, self.labels, self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {
            "image": self.images[index],
            "label": int(self.labels[index]),
            "path": self.paths[index],
        }


def scan_class_folders(root: str, classes: Sequence[str] | None = None) -> Split:
    """Indexes `root/<class>/*.<image ext>` (recursive inside each class folder, sorted).

    Args:
      root: a folder with one sub-folder per class.
      classes: the class names to expect (e.g. those of the train split); None = all
        sub-folders, sorted.

    Raises:
      ValueError: `root` missing or without class folders, an expected class folder missing,
        or a class folder without images (the message names the folder).
    """
    if not os.path.isdir(root):
        raise ValueError(f"{root}: no such folder")
    if classes is None:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders found")
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise ValueError(f"{folder}: class folder {name!r} is missing")
        found = find_images(folder)
        if not found:
            raise ValueError(f"{folder}: class folder {name!r} has no images ({IMAGE_EXTENSIONS})")
        paths += found
        labels += [label] * len(found)
    return Split(tuple(paths), np.asarray(labels, np.int32), tuple(classes))


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of indices into train and val.

    Each class with n images gives round(n * val_fraction) to val (at least 1 when n >= 2 and
    val_fraction > 0, at most n - 1), chosen by a permutation seeded with (seed, class).

    Args:
      labels: [N] int class of each item.
      val_fraction: in [0, 1).

    Returns:
      (train indices, val indices), sorted int64 arrays that partition range(N).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng((seed, int(c))).permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def subset(split: Split, indices: np.ndarray) -> Split:
    """The items of `split` at `indices`."""
    return Split(tuple(split.paths[i] for i in indices), split.labels[indices], split.classes)


def image_folder_splits(
    root: str, val_fraction: float, seed: int
) -> tuple[ImageFolderSource, ImageFolderSource]:
    """(train, val) sources: `root/train` + `root/val` if both exist, else a stratified split.

    Raises:
      ValueError: see `scan_class_folders`; val classes must be the train classes.
    """
    train_root, val_root = os.path.join(root, "train"), os.path.join(root, "val")
    if os.path.isdir(train_root) and os.path.isdir(val_root):
        train = scan_class_folders(train_root)
        val_classes = sorted(
            d for d in os.listdir(val_root) if os.path.isdir(os.path.join(val_root, d))
        )
        if val_classes != list(train.classes):
            raise ValueError(
                f"{val_root}: class folders {val_classes} differ from {train_root}'s "
                f"{list(train.classes)}"
            )
        val = scan_class_folders(val_root, train.classes)
    else:
        full = scan_class_folders(root)
        train_idx, val_idx = stratified_split(full.labels, val_fraction, seed)
        train, val = subset(full, train_idx), subset(full, val_idx)
    log.info("image folder %s: %d train / %d val, classes %s", root, len(train.paths),
             len(val.paths), list(train.classes))  # fmt: skip
    return ImageFolderSource(train), ImageFolderSource(val)


# ---------------------------------------------------------------- procedural camouflage set


def _value_noise(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two-octave value noise in [0, 1] at continuous coordinates (u, v) >= 0 (grid cells)."""
    out = np.zeros_like(u)
    for octave, weight in ((1.0, 0.65), (2.7, 0.35)):
        grid = rng.random((72, 72), dtype=np.float32)
        gu, gv = (u * octave) % 70, (v * octave) % 70
        iu, iv = gu.astype(np.int32), gv.astype(np.int32)
        fu, fv = gu - iu, gv - iv
        fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)  # smoothstep
        top = grid[iv, iu] * (1 - fu) + grid[iv, iu + 1] * fu
        bottom = grid[iv + 1, iu] * (1 - fu) + grid[iv + 1, iu + 1] * fu
        out += weight * (top * (1 - fv) + bottom * fv)
    return out


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, radius: float, angle: float):
    """Boolean silhouette of `shape` centred at 0 in coordinates x, y (pixels), rotated."""
    c, s = np.cos(angle), np.sin(angle)
    xr, yr = c * x + s * y, -s * x + c * y
    r = np.hypot(x, y)
    if shape == "disc":
        return r <= radius
    if shape == "ring":
        return (r <= radius) & (r >= 0.55 * radius)
    if shape == "square":
        return np.maximum(np.abs(xr), np.abs(yr)) <= 0.8 * radius
    if shape == "diamond":
        return np.abs(xr) + np.abs(yr) <= radius
    if shape == "cross":
        arm = 0.32 * radius
        return ((np.abs(xr) <= arm) & (np.abs(yr) <= radius)) | (
            (np.abs(yr) <= arm) & (np.abs(xr) <= radius)
        )
    if shape == "triangle":
        # Equilateral, circumradius `radius`: inside all three edge half-planes.
        inside = np.ones_like(x, dtype=bool)
        for k in range(3):
            a = angle + np.pi / 2 + 2 * np.pi * k / 3 + np.pi / 3
            inside &= np.cos(a) * x + np.sin(a) * y <= 0.5 * radius
        return inside
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_camouflage(shape: str, size: int, rng: np.random.Generator, contrast: float = 0.04):
    """One camouflaged object in front of a textured slanted background.

    Geometry: pinhole camera (focal length = `size` pixels); background plane at 3-6 m, tilted
    so depth grows by up to 30% from bottom to top; the object a fronto-parallel plate at
    45-70% of the background depth behind it. Texture lives on the surfaces in metres, so the
    nearer object's texture looks coarser; both use the same colours.

    Args:
      shape: one of `SHAPES`.
      size: image side, pixels.
      rng: the randomness.
      contrast: relative brightness offset of the object (the only deliberate RGB cue besides
        texture scale); 0 = colour-perfect camouflage.

    Returns:
      (image [size, size, 3] uint8 RGB, depth [size, size] float32 metres along the optical
      axis).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u, v = (xx - size / 2) / size, (yy - size / 2) / size  # normalised image coordinates
    z0, tilt = rng.uniform(3.0, 6.0), rng.uniform(0.0, 0.3)
    depth_bg = z0 * (1 + tilt * (0.5 - yy / size))
    z_obj = z0 * rng.uniform(0.45, 0.7)
    radius = rng.uniform(0.2, 0.3) * size
    cx, cy = (size / 2 + rng.uniform(-0.12, 0.12, 2) * size).astype(np.float32)
    mask = shape_mask(shape, xx - cx, yy - cy, radius, rng.uniform(0, 2 * np.pi))
    depth = np.where(mask, z_obj, depth_bg).astype(np.float32)
    cells = rng.uniform(6.0, 12.0)  # texture cells per metre
    ox, oy = rng.uniform(0, 20, 2)
    tex_bg = _value_noise(rng, u * depth_bg * cells + ox, v * depth_bg * cells + oy)
    tex_obj = _value_noise(rng, u * z_obj * cells + ox, v * z_obj * cells + oy)
    w = np.where(mask, tex_obj, tex_bg)[..., None]
    color_a = rng.uniform(0.15, 0.9, 3)
    color_b = np.clip(color_a * rng.uniform(0.3, 0.7) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    image = (1 - w) * color_a + w * color_b
    image *= np.where(mask, 1 + contrast * rng.choice((-1.0, 1.0)), 1.0)[..., None]
    image += rng.normal(0, 0.015, image.shape)  # sensor noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), depth


def camouflage_dataset(
    n_per_class: int,
    classes: Sequence[str] = SHAPES[:4],
    size: int = 96,
    seed: int = 0,
    contrast: float = 0.04,
) -> dict:
    """The procedural demo set: `n_per_class` camouflaged objects of each shape class.

    Deterministic in (seed, index); items are ordered class by class.

    Args:
      n_per_class: images per class.
      classes: shape names from `SHAPES` (the label is the position in this tuple).
      size: image side, pixels.
      seed: the family seed.
      contrast: see `render_camouflage`.

    Returns:
      `{images [N, size, size, 3] uint8, depths [N, size, size] float32 metres (true z-depth),
      labels [N] int32, paths (N virtual names, usable as cache keys), classes}`.
    """
    for name in classes:
        if name not in SHAPES:
            raise ValueError(f"unknown shape class {name!r}; expected some of {SHAPES}")
    images, depths, labels, paths = [], [], [], []
    for label, name in enumerate(classes):
        for i in range(n_per_class):
            rng = np.random.default_rng((seed, label, i))
            image, depth = render_camouflage(name, size, rng, contrast)
            images.append(image)
            depths.append(depth)
            labels.append(label)
            paths.append(f"camouflage/seed{seed}-{size}px-c{contrast:g}/{name}/{i:05d}.png")
    return {
        "images": np.stack(images),
        "depths": np.stack(depths),
        "labels": np.asarray(labels, np.int32),
        "paths": tuple(paths),
        "classes": tuple(classes),
    }
