"""Frozen image features for the classification study, jitted and cached as .npy.

Backbones:
  'resnet50': torchvision's ImageNet ResNet-50 (`dajax.projects.classify.resnet`), output
    'logits' (1000-d, the reproduced study's choice: the network *with* its ImageNet classifier)
    or 'pool' (2048-d globally pooled features, the network without its head).
  'dinov2': a DINOv2 encoder built with dajax's model code; the feature is the final CLS token
    concatenated with the mean of the final patch tokens (2 x width, e.g. 768-d for ViT-S).

Images of any size are resized on the host to `image_size` x `image_size` (bilinear; area when
shrinking; DINOv2 rounds the side to a multiple of 14), scaled to [0, 1], ImageNet-normalised,
and run in fixed-size batches (the last one zero-padded) so each backbone compiles once.
Without a weights path the backbone is random (seeded) and a warning says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dajax.io.outputs import write_npy
from dajax.models import ModelConfig
from dajax.models.depth_anything import build_encoder
from dajax.models.normalization import imagenet_normalize
from dajax.models.variants import PATCH_SIZE

log = logging.getLogger("dajax")

BACKBONES = ("resnet50", "dinov2")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8 (area filter when shrinking, else bilinear)."""
    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size and image.shape[1] > size
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


class FeatureExtractor:
    """A frozen backbone: uint8 images -> [N, D] float32 features.

    Args:
      backbone: 'resnet50' or 'dinov2'.
      image_size: side the images are resized to, pixels (DINOv2: rounded to a multiple of 14).
      weights: torchvision ResNet-50 `.pth`/`.safetensors`, or a DINOv2 / Depth Anything
        checkpoint; None or '' = random weights (seeded, with a warning).
      output: ResNet-50 only, 'logits' (1000-d) or 'pool' (2048-d).
      dinov2: the DINOv2 architecture (only the encoder fields are used); default ViT-S/14.
      seed: seed of random weights.
    """

    def __init__(
        self,
        backbone: str,
        image_size: int,
        weights: str | None = None,
        output: str = "logits",
        dinov2: ModelConfig | None = None,
        seed: int = 0,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone, self.output = backbone, output
        if backbone == "resnet50":
            self.image_size = image_size
            params, apply = _resnet50(weights, output, seed)
        else:
            self.image_size = max(PATCH_SIZE, round(image_size / PATCH_SIZE) * PATCH_SIZE)
            params, apply = _dinov2(dinov2 or ModelConfig.from_variant("vits"), weights, seed)
        self.params = jax.device_put(params)
        self._apply = jax.jit(lambda p, x: apply(p, imagenet_normalize(x)))
        spec = jax.ShapeDtypeStruct((1, self.image_size, self.image_size, 3), jnp.uint8)
        self.dim = int(jax.eval_shape(self._apply, self.params, spec).shape[-1])

    @property
    def description(self) -> str:
        """E.g. 'resnet50 logits: the 1000-d ImageNet logits (head kept)'."""
        if self.backbone == "resnet50":
            if self.output == "logits":
                return f"resnet50 logits: the {self.dim}-d ImageNet logits (head kept)"
            return f"resnet50 pool: the {self.dim}-d pooled features (head removed)"
        return f"dinov2 CLS + mean patch tokens ({self.dim}-d)"

    def __call__(
        self, images: Sequence[np.ndarray], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Features of images of any sizes.

        Args:
          images: N arrays [H_i, W_i, 3] uint8 RGB (any random-access sequence).
          batch_size: images per backbone call.

        Returns:
          [N, D] float32.
        """
        out = []
        bar = tqdm(total=len(images), desc=f"{self.backbone} features", disable=not progress)
        for start in range(0, len(images), batch_size):
            chunk = [resize_square(images[i], self.image_size)
                     for i in range(start, min(start + batch_size, len(images)))]  # fmt: skip
            x = np.zeros((batch_size, self.image_size, self.image_size, 3), np.uint8)
            x[: len(chunk)] = np.stack(chunk)
            out.append(np.asarray(self._apply(self.params, x))[: len(chunk)])
            bar.update(len(chunk))
        bar.close()
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out).astype(np.float32)


def cached_features(
    extractor: FeatureExtractor,
    images: Sequence[np.ndarray],
    cache_file: str,
    batch_size: int = 32,
) -> np.ndarray:
    """`extractor(images)`, loaded from / saved to `cache_file` (.npy) when it matches N.

    Returns:
      [N, D] float32.
    """
    if os.path.exists(cache_file):
        feats = np.load(cache_file)
        if feats.shape == (len(images), extractor.dim):
            log.info("features loaded from %s %s", cache_file, feats.shape)
            return feats
        log.warning("%s has shape %s, not (%d, %d): recomputing", cache_file, feats.shape,
                    len(images), extractor.dim)  # fmt: skip
    feats = extractor(images, batch_size, progress=True)
    write_npy(cache_file, feats)
    return feats


def _resnet50(weights: str | None, output: str, seed: int):
    from dajax.projects.classify import resnet  # written alongside; imported lazily

    if output not in resnet.OUTPUTS:
        raise ValueError(f"resnet50 output must be one of {resnet.OUTPUTS}, got {output!r}")
    if weights:
        params = resnet.load_torchvision_resnet50(weights)
        log.info("resnet50 weights from %s", weights)
    else:
        params = resnet.init_resnet50_params(jax.random.key(seed))
        log.warning(
            "no backbone weights given: the ResNet-50 is RANDOM (seed %d); features will not "
            "be ImageNet features", seed
        )  # fmt: skip
    return params, lambda p, x: resnet.resnet50_features(p, x, output)


def _dinov2(config: ModelConfig, weights: str | None, seed: int):
    encoder = build_encoder(config)
    last = (config.depth - 1,)
    if weights:
        from dajax.weights.pretrained import load_dinov2_encoder

        params = load_dinov2_encoder(weights, config)
        log.info("dinov2 encoder weights from %s", weights)
    else:
        x = jnp.zeros((1, 2 * PATCH_SIZE, 2 * PATCH_SIZE, 3), jnp.float32)
        params = jax.jit(encoder.init, static_argnums=2)(jax.random.key(seed), x, last)["params"]
        log.warning("no backbone weights given: the DINOv2 encoder is RANDOM (seed %d)", seed)

    def apply(p, x):
        tokens, cls = encoder.apply({"params": p}, x, last)[0]
        return jnp.concatenate([cls, tokens.mean(axis=1)], axis=-1).astype(jnp.float32)

    return params, apply
