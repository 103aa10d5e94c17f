"""Decode image files into RGB uint8 arrays.

Every reader in dajax (inference CLI, data sources, classification study) goes through
`decode_image` / `read_image`, so grayscale, RGBA, palette and 16-bit files are handled in one
place and an unreadable file always raises `ImageReadError` naming the file. EXIF orientation is
applied, as the official code's `cv2.imread` does (the picture as people see it).
`as_rgb_image` also takes PIL images and arrays, for the Python API.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Keep bit depth and grey/colour, drop alpha, and (unlike IMREAD_UNCHANGED) apply EXIF orientation.
DECODE_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


class ImageReadError(ValueError):
    """An image file is missing, empty, or cannot be decoded."""


def find_images(folder: str | os.PathLike, skip: str | os.PathLike | None = None) -> list[str]:
    """Paths of the image files (by extension, `IMAGE_EXTENSIONS`) below `folder`, recursively,
    sorted; empty when there are none. The folder `skip` (and all below it) is not searched."""
    skip = os.path.realpath(skip) if skip is not None else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip]
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes encoded image bytes (JPEG, PNG, WebP, BMP, TIFF) to RGB.

    Args:
      data: the encoded file contents.
      name: the file name, used in error messages.

    Returns:
      [H, W, 3] uint8 RGB, rotated/flipped as its EXIF orientation says. Grayscale is
      replicated to three channels, alpha is dropped, 16-bit images are scaled to 8 bits
      (value / 257, rounded).

    Raises:
      ImageReadError: the bytes are empty or not a decodable image.
    """
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, DECODE_FLAGS)
    if img is None or img.size == 0:
        raise ImageReadError(f"{name}: not a decodable image ({len(data)} bytes)")
    return _to_rgb_uint8(img, name)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as [H, W, 3] uint8 RGB; see `decode_image`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read file ({e.strerror})") from e
    return decode_image(data, path)


def as_rgb_image(image) -> np.ndarray:
    """An image path, PIL image or RGB array as [H, W, 3] uint8 RGB.

    Args:
      image: a path (str or os.PathLike; read with `read_image`), a PIL image (EXIF orientation
        applied, converted to RGB), or a numpy array, returned as given: it must already be
        [H, W, 3] uint8 RGB (OpenCV's BGR arrays must be converted first: `bgr[:, :, ::-1]`).

    Raises:
      ImageReadError: a path that cannot be read, or an object of another type.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, np.ndarray):
        return image
    from PIL import Image, ImageOps

    if isinstance(image, Image.Image):
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    raise ImageReadError(
        f"expected a path, a PIL image or an RGB numpy array, got {type(image).__name__}"
    )


def _to_rgb_uint8(img: np.ndarray, name: str) -> np.ndarray:
    """Converts an OpenCV-decoded array (BGR/BGRA/gray, 8/16-bit/float) to RGB uint8."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 3:
        return np.ascontiguousarray(img[:, :, ::-1])
    if channels == 4:
        return np.ascontiguousarray(img[:, :, 2::-1])
    raise ImageReadError(f"{name}: unsupported channel count {channels}")
