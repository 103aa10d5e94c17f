"""Inference preprocessing identical to the official `run.py`.

Images are scaled to [0, 1] in float64, resized keeping the aspect ratio so that both sides are
at least `input_size` and multiples of 14 (`cv2.INTER_CUBIC`, which matches PyTorch's bicubic),
normalised with ImageNet statistics and returned as float32 NHWC.
"""

from __future__ import annotations

import cv2
import numpy as np

from dajax.models.normalization import imagenet_normalize
from dajax.models.variants import PATCH_SIZE


def _constrain(x: float, min_val: int, multiple: int) -> int:
    """Official `constrain_to_multiple_of`: round to a multiple, ceil if that drops below min."""
    y = int(np.round(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def network_size(
    height: int,
    width: int,
    input_size: int = 518,
    multiple: int = PATCH_SIZE,
    max_side: int | None = None,
) -> tuple[int, int]:
    """The (height, width) the network sees for an image of (height, width) pixels.

    'lower_bound' resize: the side that needs the larger scale reaches `input_size`, the other
    keeps the aspect ratio; both are then rounded to multiples of `multiple`, never below
    `input_size`. With `max_side` (pixels), a size whose longer side exceeds it (an extreme
    aspect ratio: 300x1 would ask for 155400x518) is instead scaled so that the longer side is
    `max_side` rounded down to a multiple, the shorter side then rounding to >= `multiple`.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image must be non-empty, got {height}x{width}")
    scale = max(input_size / height, input_size / width)
    size = (
        _constrain(scale * height, input_size, multiple),
        _constrain(scale * width, input_size, multiple),
    )
    if max_side is None or max(size) <= max_side:
        return size
    scale = (max_side // multiple * multiple) / max(height, width)
    return (
        _constrain(scale * height, multiple, multiple),
        _constrain(scale * width, multiple, multiple),
    )


def preprocess(image: np.ndarray, input_size: int = 518, max_side: int | None = None) -> np.ndarray:
    """One RGB uint8 image -> the network input.

    Args:
      image: [H, W, 3] uint8 RGB.
      input_size: the lower bound of both network-input sides (518 for released models).
      max_side: cap on the longer network-input side (see `network_size`); None: no cap.

    Returns:
      [H', W', 3] float32, ImageNet-normalised, H' and W' from `network_size`.
    """
    check_image(image)
    h, w = network_size(image.shape[0], image.shape[1], input_size, max_side=max_side)
    x = image.astype(np.float64) / 255.0
    x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
    x = imagenet_normalize(x)
    return x.astype(np.float32)


def check_image(image: np.ndarray) -> None:
    """Raises ValueError unless `image` is a non-empty [H, W, 3] uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(
            f"expected an RGB uint8 image of shape [H, W, 3], got {image.dtype} {image.shape}; "
            "use dajax.io.images.read_image to load files (grayscale/RGBA/16-bit are converted)"
        )
