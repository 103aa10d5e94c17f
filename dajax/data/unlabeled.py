"""Unlabeled images from folders (recursive) or list files, as a grain source."""

from __future__ import annotations

import logging
import os

from dajax.io.images import IMAGE_EXTENSIONS, ImageReadError, decode_image, find_images

log = logging.getLogger("dajax")


def list_images(spec: str) -> list[str]:
    """Image paths under a folder (recursive, sorted) or listed in a .txt file."""
    if not spec:
        raise ValueError("no image folder or list file given (the path is empty)")
    if os.path.isdir(spec):
        paths = find_images(spec)
    elif os.path.isfile(spec):
        with open(spec) as f:
            paths = [line.strip() for line in f if line.strip()]
    else:
        raise FileNotFoundError(f"{spec}: no such folder or list file")
    if not paths:
        raise ValueError(f"{spec}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


class UnlabeledImages:
    """Records `{image [H,W,3] uint8, image_bytes: bytes, source: path}`.

    An unreadable file is logged with its path, counted in `skipped`, and replaced by the next
    readable image (so indices stay valid and deterministic); if none is readable, the error
    names the first file.
    """

    def __init__(self, spec: str):
        self.paths = list_images(spec)
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        for step in range(len(self.paths)):
            path = self.paths[(index + step) % len(self.paths)]
            try:
                with open(path, "rb") as f:
                    data = f.read()
                return {"image": decode_image(data, path), "image_bytes": data, "source": path}
            except (OSError, ImageReadError) as e:
                if path not in self.skipped:
                    self.skipped.add(path)
                    log.warning("skipping unreadable image %s (%s)", path, e)
        raise ImageReadError(f"{self.paths[0]}: no readable image in the set")
