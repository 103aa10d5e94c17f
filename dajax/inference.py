"""`DepthEstimator`: Depth Anything inference for users.

    from dajax.inference import DepthEstimator
    est = DepthEstimator.from_pretrained("depth_anything_v2_vits.pth")
    disparity = est("photo.jpg")           # [H, W] float32; also a PIL image or an RGB array
    maps = est.batch([img1, "b.png"])      # one compile per network input shape and batch bucket
    depth, picture = est.infer_image(img)  # the map and a colour-mapped PIL image

Images are paths, PIL images or [H, W, 3] uint8 RGB arrays (OpenCV's BGR arrays must be
converted first: `bgr[:, :, ::-1]`); see `dajax.io.images.as_rgb_image`.
Outputs are at the input resolution: relative models give affine-invariant disparity (bigger =
nearer), metric models give metres. The network output is resized back bilinearly as each
version's reference does (V1 `run.py`: align_corners=False; V2 `infer_image`: True).
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dajax.dtypes import compute_dtype
from dajax.io.images import as_rgb_image
from dajax.models import DepthAnything, ModelConfig, build_model, init_params
from dajax.models.resample import resize_bilinear
from dajax.preprocess import check_image, network_size, preprocess
from dajax.preprocess_jnp import preprocess_jnp
from dajax.weights.pretrained import load_depth_anything

MAX_SIDE_FACTOR = 8  # default cap on the longer network-input side, in units of input_size


class DepthResult(NamedTuple):
    """`DepthEstimator.infer_image`'s answer: the [H, W] float32 map (disparity or metres) and
    its colour-mapped RGB picture (near = red for V2 and metric models, yellow for V1)."""

    depth: np.ndarray
    picture: object  # PIL.Image.Image


@functools.cache
def jitted_forward(model):
    """`forward(params, x [B, H, W, 3] normalised) -> [B, H, W]`: `model` jitted once per
    process for equal modules (Flax modules compare by their fields), so estimators of the same
    network (a data engine's, an evaluation's, a validation's) share its compiles."""
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


@functools.cache
def _jitted_resize(align_corners: bool):
    """`resize(depth [B, h, w], (H, W)) -> [B, H, W]` bilinear, jitted once per output size
    (per process: every estimator shares it)."""
    return jax.jit(
        lambda d, size: resize_bilinear(d, size, align_corners=align_corners), static_argnums=1
    )


class DepthEstimator:
    """A Depth Anything model with its params, preprocessing and post-processing.

    Args:
      config: the architecture.
      params: the Flax params tree (numpy or jax arrays).
      input_size: lower bound of the network input sides (518 for released models).
      dtype: compute dtype, 'float32' or 'bfloat16' (params stay as given).
      max_side: cap on the longer network-input side in pixels (default
        `MAX_SIDE_FACTOR * input_size`): images of extreme aspect ratio (300x1 would need a
        155400x518 input) are run at a size whose longer side fits, see `network_size`.
      impl: the network's implementation, 'fast' (default) or 'reference' (stock flax layers,
        float32 only; `dajax.models.build_model`).
    """

    def __init__(
        self,
        config: ModelConfig,
        params: dict,
        *,
        input_size: int = 518,
        dtype: str = "float32",
        max_side: int | None = None,
        impl: str = "fast",
    ):
        self.config = config
        self.input_size = input_size
        self.max_side = max_side or MAX_SIDE_FACTOR * input_size
        self.model = build_model(config, impl, compute_dtype(dtype))
        self.params = jax.device_put(params)
        self._apply = jitted_forward(self.model)
        self._resize = _jitted_resize(align_corners=config.version == "v2")

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
        pos_embed: str | None = None,
        max_side: int | None = None,
        impl: str = "fast",
    ) -> DepthEstimator:
        """Loads an official `.pth`, a Hugging Face `.safetensors`, a dajax checkpoint or a
        training run's workdir (its `export/`, else its newest step's params).

        See `dajax.weights.pretrained.load_depth_anything` for how `arch`, `version`, `head`
        and `max_depth` (metres) are inferred when not given, and for `pos_embed` (None: the
        rule a converted folder saved, else 'official'); `dajax.weights.options` spells them
        as command-line flags.
        """
        config, params = load_depth_anything(
            path, arch=arch, version=version, head=head, max_depth=max_depth, pos_embed=pos_embed
        )
        return cls(config, params, input_size=input_size, dtype=dtype, max_side=max_side, impl=impl)

    @classmethod
    def random(
        cls,
        config: ModelConfig,
        *,
        seed: int = 0,
        input_size: int = 518,
        dtype: str = "float32",
        max_side: int | None = None,
        impl: str = "fast",
    ) -> DepthEstimator:
        """Seeded random weights (`init_params`): runs the whole pipeline without a checkpoint,
        for demos and plumbing; its depth maps carry no depth knowledge."""
        params = init_params(DepthAnything(config), jax.random.key(seed))
        return cls(config, params, input_size=input_size, dtype=dtype, max_side=max_side, impl=impl)

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

    @property
    def variables(self) -> dict:
        """`{"params": params}`: the variables `self.model.apply` takes."""
        return {"params": self.params}

    def flax_module(self) -> tuple[nn.Module, dict]:
        """`(module, variables)`: the plain `flax.linen` network and `{"params": ...}`, so that
        `module.apply(variables, x)` maps x [B, H, W, 3] float32 ImageNet-normalised (H, W
        multiples of 14) to [B, H, W] float32 depth, inside any `jit`, `vmap` or `grad`."""
        return self.model, self.variables

    def depth_function(self, height: int, width: int) -> Callable:
        """A pure, jittable `depth(params, images) -> [B, height, width] float32` (disparity or
        metres) for images [B, height, width, 3] RGB in [0, 255] (uint8, or float to take
        gradients): the same resize to `network_shape(height, width)` (OpenCV's bicubic, in
        jnp: `dajax.preprocess_jnp`), network and resize back as `batch`, usable inside a
        user's `jit`, `vmap` (over batches) or `grad` (params or float images). Pass
        `self.params` as `params`. One function per image size (shapes are static)."""
        size = self.network_shape(height, width)
        model, align_corners = self.model, self.config.version == "v2"

        def depth(params, images):
            out = model.apply({"params": params}, preprocess_jnp(images, size))
            return resize_bilinear(out, (height, width), align_corners=align_corners)

        return depth

    @property
    def metric(self) -> bool:
        """True when the model predicts metres, False for relative disparity."""
        return self.config.head == "metric"

    def network_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the network sees for an image of that size (`network_size` with
        this estimator's `input_size` and `max_side`)."""
        return network_size(height, width, self.input_size, max_side=self.max_side)

    def __call__(self, image) -> np.ndarray:
        """Depth of one image (path, PIL image or [H, W, 3] uint8 RGB array) -> [H, W] float32
        at the image's resolution."""
        return self.batch([image])[0]

    def infer_image(self, image, cmap: str | None = None) -> DepthResult:
        """Depth of one image (path, PIL image or RGB array) and its colour-mapped picture.

        Args:
          image: as for `__call__`.
          cmap: a `dajax.visualize.CMAPS` name; default the model version's official colormap.

        Returns:
          `DepthResult(depth [H, W] float32, picture: PIL RGB image [H, W])`.
        """
        from PIL import Image

        from dajax.visualize import default_cmap, depth_picture

        depth = self(image)
        rgb = depth_picture(depth, self.metric, cmap or default_cmap(self.config.version))
        return DepthResult(depth, Image.fromarray(rgb))

    def batch(self, images: Sequence, batch_size: int = 8) -> list[np.ndarray]:
        """Depth of many images (paths, PIL images or RGB arrays) of any sizes, in order.

        Returns:
          One [H_i, W_i] float32 array per input image.
        """
        results: list[np.ndarray | None] = [None] * len(images)
        for i, depth in self.iter_batch(images, batch_size):
            results[i] = depth
        return results

    def iter_batch(self, images: Sequence, batch_size: int = 8) -> Iterator[tuple[int, np.ndarray]]:
        """Yields `(index, [H_i, W_i] float32 depth)` for each image as its batch finishes.

        Images are grouped by network input shape and run in batches of `batch_size`. A
        shorter batch (a group's last, or a small group) is zero-padded to the smallest of
        `batch_buckets(batch_size)` that holds it: for the default 8, 3 images run as 4 and 5
        as 8. Each shape therefore compiles at most one program per bucket (four for 8: 1, 2,
        4, 8), whatever the number of images. A padded batch reuses the full batch's program
        only when it falls in the top bucket (5 to 7 images of 8); a smaller one compiles its
        own bucket's program the first time that bucket appears (9 images of one shape: the
        programs for 8 and for 1). The order of the answers follows the groups, not the input.
        """
        images = [as_rgb_image(image) for image in images]
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            check_image(image)
            buckets[self.network_shape(*image.shape[:2])].append(i)
        for indices in buckets.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                x = np.stack([preprocess(images[i], self.input_size, self.max_side) for i in chunk])
                depth = self.forward(pad_to_bucket(x, batch_size))
                for j, i in enumerate(chunk):
                    size = tuple(images[i].shape[:2])
                    yield i, np.asarray(self._resize(depth[j : j + 1], size)[0])


def batch_buckets(batch_size: int) -> tuple[int, ...]:
    """The batch sizes a batch of at most `batch_size` images is padded to: the powers of two
    below it, and itself (8 -> 1, 2, 4, 8; 6 -> 1, 2, 4, 6)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return (*(2**k for k in range(batch_size.bit_length()) if 2**k < batch_size), batch_size)


def pad_to_bucket(x: np.ndarray, batch_size: int) -> np.ndarray:
    """`x` [n, ...] (n <= batch_size) zero-padded along axis 0 to the smallest of
    `batch_buckets(batch_size)` that holds n; the first n rows are `x`."""
    target = next(b for b in batch_buckets(batch_size) if b >= len(x))
    if target == len(x):
        return x
    return np.concatenate([x, np.zeros((target - len(x),) + x.shape[1:], x.dtype)])


class ZoeDepthEstimator:
    """Depth Anything V1 metric models (ZoeDepth head) with the reference's pre/post-processing.

    Each image is scaled to [0, 1], resized bilinearly (align_corners=True) to the network size
    (392 × 518 as in the official config, or aspect-keeping with `keep_aspect_ratio`),
    ImageNet-normalised, and the metric map is resized back to the image size bilinearly with
    align_corners=True, as the official ZoeDepth evaluator does.

    Args:
      module: a `dajax.models.zoedepth.ZoeDepthMetric`; params: its Flax params.
    """

    def __init__(self, module, params: dict, *, img_size=(392, 518), keep_aspect_ratio=False):
        from dajax.models.zoedepth import prep_for_core

        self.module = module
        self.config = module.config.replace(head="metric", max_depth=module.max_depth)
        self.params = jax.device_put(params)
        prep = lambda x: prep_for_core(x, tuple(img_size), keep_aspect_ratio)  # noqa: E731
        self._forward = jax.jit(lambda p, x: module.apply({"params": p}, prep(x)))
        self._resize = _jitted_resize(align_corners=True)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        max_depth: float | None = None,
        config: ModelConfig | None = None,
        **kw,
    ) -> ZoeDepthEstimator:
        """Loads `depth_anything_metric_depth_{indoor,outdoor}.pt` (ViT-L core unless `config`
        says otherwise); `max_depth` defaults to 10 m (indoor / NYU) or 80 m (outdoor / KITTI)
        from the file name; `kw` go to the constructor."""
        from dajax.weights.zoedepth_keys import load_zoedepth_metric

        if max_depth is None:
            max_depth = 80.0 if "outdoor" in os.path.basename(os.fspath(path)) else 10.0
        module, params = load_zoedepth_metric(path, max_depth=max_depth, config=config)
        return cls(module, params, **kw)

    def batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Metric depth [H_i, W_i] float32 metres of each [H_i, W_i, 3] uint8 RGB image."""
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            check_image(image)
            buckets[tuple(image.shape[:2])].append(i)
        results: list[np.ndarray | None] = [None] * len(images)
        for size, indices in buckets.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                x = np.stack([images[i] for i in chunk]).astype(np.float32) / 255.0
                x = pad_to_bucket(x, batch_size)
                depth = self._resize(self._forward(self.params, x), size)
                for j, i in enumerate(chunk):
                    results[i] = np.asarray(depth[j])
        return results


def is_zoedepth_checkpoint(path: str | os.PathLike) -> bool:
    """True for the official V1 metric files (`depth_anything_metric_depth_*.pt`)."""
    name = os.path.basename(os.fspath(path)).lower()
    return "metric_depth_indoor" in name or "metric_depth_outdoor" in name


def load_estimator(
    path: str | os.PathLike,
    input_size: int = 518,
    dtype: str = "float32",
    impl: str = "fast",
    **load,
):
    """A `ZoeDepthEstimator` for official V1 metric files (fast implementation only; of the
    loader options `load`, only `max_depth` in metres applies), else a `DepthEstimator`
    (`impl` and `load`, `dajax.weights.options.loader_kwargs`, as in its `from_pretrained`)."""
    if is_zoedepth_checkpoint(path):
        if impl != "fast":
            raise ValueError(f"{path}: ZoeDepth checkpoints run the fast model only, not {impl!r}")
        other = sorted(k for k, v in load.items() if v is not None and k != "max_depth")
        if other:
            raise ValueError(
                f"{path}: a ZoeDepth checkpoint; of the loader options only "
                f"max_depth applies, not {', '.join(other)}"
            )
        return ZoeDepthEstimator.from_pretrained(path, max_depth=load.get("max_depth"))
    return DepthEstimator.from_pretrained(
        path, input_size=input_size, dtype=dtype, impl=impl, **load
    )
