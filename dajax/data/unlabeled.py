"""Unlabeled images from folders (recursive) or list files, as a grain source."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from dajax.data.rgbd_sources import files_by_stem
from dajax.io.images import (
    DECODE_FLAGS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    decode_image,
    find_images,
)

log = logging.getLogger("dajax")


def list_images(spec: str, skip: str | None = None) -> list[str]:
    """Image paths under a folder (recursive, sorted; the folder `skip` left out) or listed in
    a .txt file."""
    if not spec:
        raise ValueError("no image folder or list file given (the path is empty)")
    if os.path.isdir(spec):
        paths = find_images(spec, skip)
    elif os.path.isfile(spec):
        with open(spec) as f:
            paths = [line.strip() for line in f if line.strip()]
    else:
        raise FileNotFoundError(f"{spec}: no such folder or list file")
    if not paths:
        raise ValueError(f"{spec}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def match_sky_masks(image_dir: str, images: list[str], mask_dir: str) -> list[str]:
    """The sky mask of each image: the file at the image's path relative to `image_dir`, under
    `mask_dir`, with any image extension (`IMAGE_EXTENSIONS`, e.g. `.png`).

    Raises:
      ValueError: `image_dir` is not a folder, an image has no mask (both paths named), or an
        image has two candidate masks.
    """
    if not os.path.isdir(image_dir):
        raise ValueError(f"{image_dir}: sky_masks needs an image folder, not a list file")
    if not os.path.isdir(mask_dir):
        raise FileNotFoundError(f"{mask_dir}: sky mask folder not found")
    masks = files_by_stem(mask_dir, IMAGE_EXTENSIONS)
    matched = []
    for image in images:
        stem = os.path.relpath(image, image_dir).rsplit(".", 1)[0]
        if stem not in masks:
            expected = os.path.join(mask_dir, stem) + ".png"
            raise ValueError(f"{image}: no sky mask {expected} (or another image extension)")
        matched.append(masks[stem])
    return matched


def read_sky_mask(path: str, image_path: str, shape: tuple[int, int]) -> np.ndarray:
    """A sky mask file -> [H, W] bool, nonzero (in any colour channel) = sky.

    Raises:
      ValueError: the file is unreadable, or its size differs from `shape` (the image's
        [H, W], both paths named).
    """
    raw = cv2.imread(path, DECODE_FLAGS)
    if raw is None:
        raise ValueError(f"{path}: unreadable sky mask")
    sky = raw != 0 if raw.ndim == 2 else (raw != 0).any(axis=-1)
    if sky.shape != shape:
        raise ValueError(f"{path}: sky mask {sky.shape} differs from image {image_path} {shape}")
    return sky


class UnlabeledImages:
    """Records `{image [H,W,3] uint8, image_bytes: bytes, source: path}`, plus `sky [H,W] bool`
    when `sky_masks` names a folder of sky masks (see `match_sky_masks`, `read_sky_mask`).

    An unreadable image is logged with its path, counted in `skipped`, and replaced by the
    next readable image (so indices stay valid and deterministic); if none is readable, the
    error names the first file. A missing sky mask fails when the source is built.
    """

    def __init__(self, spec: str, sky_masks: str | None = None):
        self.paths = list_images(spec, sky_masks)
        self.sky_paths = match_sky_masks(spec, self.paths, sky_masks) if sky_masks else None
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        for step in range(len(self.paths)):
            position = (index + step) % len(self.paths)
            path = self.paths[position]
            try:
                with open(path, "rb") as f:
                    data = f.read()
                record = {"image": decode_image(data, path), "image_bytes": data, "source": path}
            except (OSError, ImageReadError) as e:
                if path not in self.skipped:
                    self.skipped.add(path)
                    log.warning("skipping unreadable image %s (%s)", path, e)
                continue
            if self.sky_paths is not None:
                shape = record["image"].shape[:2]
                record["sky"] = read_sky_mask(self.sky_paths[position], path, shape)
            return record
        raise ImageReadError(f"{self.paths[0]}: no readable image in the set")
