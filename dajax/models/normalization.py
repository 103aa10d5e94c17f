"""The networks' input convention: RGB scaled to [0, 1], then normalised per channel with the
ImageNet statistics DINOv2 was trained with.

One definition for every path: the host preprocessing (NumPy, float64), the jitted training
steps and ZoeDepth's `prep` (JAX, float32) and the classification study's features.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images):
    """`(x - mean) / std` per channel, with the ImageNet statistics.

    Args:
      images: [..., 3] RGB, a NumPy or JAX array: uint8 (0..255; divided by 255 in float32
        first) or floats in [0, 1].

    Returns:
      The same kind of array and shape: float32 for uint8 input, else the input's dtype.
    """
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    return (x - np.asarray(IMAGENET_MEAN, x.dtype)) / np.asarray(IMAGENET_STD, x.dtype)
