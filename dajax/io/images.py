"""Decode image files into RGB uint8 arrays.

Every reader in dajax (inference CLI, web page, data sources, classification study) goes
through `decode_image` / `read_image`, so grayscale, RGBA, palette and 16-bit files are handled
in one place and an unreadable file always raises `ImageReadError` naming the file. EXIF
orientation is applied, as the official code's `cv2.imread` does (the picture as people see it).
`as_rgb_image` also takes PIL images and arrays, for the Python API.

The pixel budget: the header is read first (PIL reads only the header) and an image of more
than `MAX_PIXELS` pixels is refused before anything is decoded. A 1 MB PNG can declare
20000x20000 pixels, which took predict to 17 GiB; OpenCV's own limit is 2**30 pixels.
"""

from __future__ import annotations

import io
import os
import stat
import warnings

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Keep bit depth and grey/colour, drop alpha, and (unlike IMREAD_UNCHANGED) apply EXIF orientation.
DECODE_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
MAX_PIXELS = 1 << 26  # 67,108,864 = 8192 x 8192; predict peaks at ~40 bytes a pixel
MAX_BYTES_PER_PIXEL = 16  # file bytes per pixel of budget: uncompressed 16-bit RGBA takes 8


class ImageReadError(ValueError):
    """An image file is missing, empty, over the pixel budget, or cannot be decoded."""


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Raises ImageReadError naming `name` when a `width` x `height` image is over the budget."""
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: {width}x{height} is {width * height} pixels, over the budget of "
            f"{max_pixels} (see docs/predict.md); downscale it first"
        )


def _header_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image header alone; nothing is decoded. PIL itself refuses
    more than 2 x `Image.MAX_IMAGE_PIXELS` (179M) pixels, whatever `max_pixels` says."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                return header.size
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{name}: more than {2 * Image.MAX_IMAGE_PIXELS} pixels, over the budget of "
            f"{max_pixels} (see docs/predict.md); downscale it first"
        ) from None
    except Exception:  # noqa: BLE001 - any header PIL cannot parse: not an image we decode
        raise ImageReadError(f"{name}: not a decodable image ({len(data)} bytes)") from None


def find_images(folder: str | os.PathLike, skip: str | os.PathLike | None = None) -> list[str]:
    """Paths of the image files (by extension, `IMAGE_EXTENSIONS`) below `folder`, recursively,
    sorted; empty when there are none. The folder `skip` (and all below it) is not searched."""
    skip = os.path.realpath(skip) if skip is not None else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip]
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes encoded image bytes (JPEG, PNG, WebP, BMP, TIFF) to RGB.

    Args:
      data: the encoded file contents.
      name: the file name, used in error messages.
      max_pixels: the pixel budget, checked on the header before decoding.

    Returns:
      [H, W, 3] uint8 RGB, rotated/flipped as its EXIF orientation says. Grayscale is
      replicated to three channels, alpha is dropped, 16-bit images are scaled to 8 bits
      (value / 257, rounded).

    Raises:
      ImageReadError: the bytes are empty, over the pixel budget, or not a decodable image.
    """
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    check_pixels(*_header_size(data, name, max_pixels), name, max_pixels)
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), DECODE_FLAGS)
    except cv2.error:  # e.g. a header past OpenCV's own limits
        img = None
    if img is None or img.size == 0:
        raise ImageReadError(f"{name}: not a decodable image ({len(data)} bytes)")
    check_pixels(img.shape[1], img.shape[0], name, max_pixels)  # if OpenCV saw another size
    return _to_rgb_uint8(img, name)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Reads an image file as [H, W, 3] uint8 RGB; see `decode_image`. Only regular files of
    at most `MAX_BYTES_PER_PIXEL` x `max_pixels` bytes are read (a FIFO would block, a huge
    file fill memory, before the header could be checked)."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES_PER_PIXEL * max_pixels:
            raise ImageReadError(
                f"{path}: {info.st_size} bytes, more than an image within the pixel budget of "
                f"{max_pixels} can take"
            )
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read file ({e.strerror})") from e
    return decode_image(data, path, max_pixels)


def as_rgb_image(image) -> np.ndarray:
    """An image path, PIL image or RGB array as [H, W, 3] uint8 RGB.

    Args:
      image: a path (str or os.PathLike; read with `read_image`), a PIL image (EXIF orientation
        applied, converted to RGB), or a numpy array, returned as given: it must already be
        [H, W, 3] uint8 RGB (OpenCV's BGR arrays must be converted first: `bgr[:, :, ::-1]`).

    Raises:
      ImageReadError: a path that cannot be read, an image over the pixel budget (paths and
        PIL images), or an object of another type.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, np.ndarray):
        return image
    from PIL import ImageOps

    if isinstance(image, Image.Image):
        check_pixels(*image.size, "a PIL image")  # a lazily opened one is not decoded yet
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
