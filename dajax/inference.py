"""`DepthEstimator`: Depth Anything inference for users.

    from dajax.inference import DepthEstimator
    est = DepthEstimator.from_pretrained("depth_anything_v2_vits.pth")
    disparity = est(image)             # [H, W] float32, image: [H, W, 3] uint8 RGB
    maps = est.batch([img1, img2])     # one jit compile per network input shape

Outputs are at the input resolution: relative models give affine-invariant disparity (bigger =
nearer), metric models give metres. The network output is resized back bilinearly as each
version's reference does (V1 `run.py`: align_corners=False; V2 `infer_image`: True).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dajax.models import DepthAnything, ModelConfig
from dajax.models.resample import resize_bilinear
from dajax.preprocess import check_image, network_size, preprocess
from dajax.weights.pretrained import load_depth_anything

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class DepthEstimator:
    """A Depth Anything model with its params, preprocessing and post-processing.

    Args:
      config: the architecture.
      params: the Flax params tree (numpy or jax arrays).
      input_size: lower bound of the network input sides (518 for released models).
      dtype: compute dtype, 'float32' or 'bfloat16' (params stay as given).
    """

    def __init__(
        self, config: ModelConfig, params: dict, *, input_size: int = 518, dtype: str = "float32"
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        self.config = config
        self.input_size = input_size
        self.model = DepthAnything(config, dtype=DTYPES[dtype])
        self.params = jax.device_put(params)
        self._apply = jax.jit(lambda p, x: self.model.apply({"params": p}, x))
        align = config.version == "v2"
        self._resize = jax.jit(
            lambda d, size: resize_bilinear(d, size, align_corners=align), static_argnums=1
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        arch: str | None = None,
        version: str | None = None,
        *,
        head: str | None = None,
        max_depth: float | None = None,
        input_size: int = 518,
        dtype: str = "float32",
        pos_embed: str = "official",
    ) -> DepthEstimator:
        """Loads an official `.pth`, a Hugging Face `.safetensors` or a dajax checkpoint.

        See `dajax.weights.pretrained.load_depth_anything` for how `arch`, `version`, `head`
        and `max_depth` are inferred when not given.
        """
        config, params = load_depth_anything(
            path, arch=arch, version=version, head=head, max_depth=max_depth, pos_embed=pos_embed
        )
        return cls(config, params, input_size=input_size, dtype=dtype)

    def forward(self, x: np.ndarray | jax.Array) -> jax.Array:
        """Runs the network alone.

        Args:
          x: [B, H, W, 3] float32 preprocessed (ImageNet-normalised) images, H and W multiples
            of 14.

        Returns:
          [B, H, W] float32 jax array: disparity (relative) or metres (metric).
        """
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"forward expects [B, H, W, 3] float32, got shape {x.shape}")
        return self._apply(self.params, x)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Depth of one [H, W, 3] uint8 RGB image -> [H, W] float32 at the input resolution."""
        return self.batch([image])[0]

    def batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Depth of many images of any sizes, in order.

        Images are grouped by network input shape (one compile per shape) and run in batches of
        `batch_size` (the last batch of a shape is zero-padded, so it reuses the compile).

        Returns:
          One [H_i, W_i] float32 array per input image.
        """
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            check_image(image)
            buckets[network_size(*image.shape[:2], self.input_size)].append(i)
        results: list[np.ndarray | None] = [None] * len(images)
        for indices in buckets.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                x = np.stack([preprocess(images[i], self.input_size) for i in chunk])
                if len(chunk) < batch_size and len(indices) > batch_size:
                    x = np.concatenate(
                        [x, np.zeros((batch_size - len(chunk),) + x.shape[1:], x.dtype)]
                    )
                depth = self.forward(x)
                for j, i in enumerate(chunk):
                    size = tuple(images[i].shape[:2])
                    results[i] = np.asarray(self._resize(depth[j : j + 1], size)[0])
        return results
