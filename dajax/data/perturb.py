"""Strong perturbations and CutMix for unlabeled images (paper §3.2), on device in `jit`.

They run inside the jitted student step rather than in grain workers: they are a few
elementwise passes and one separable blur over data already on the accelerator, so the
host pipeline only decodes and crops. All functions are pure and driven by a PRNG key.

Images are float32 in [0, 1], [B, H, W, 3].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# numpy, not jnp: a device array made at import would start the backend before
# `jax.distributed.initialize` (dajax.runtime) can run.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _gray(x: jnp.ndarray) -> jnp.ndarray:
    return (x * _LUMA).sum(-1, keepdims=True)


def _rgb_to_hsv(x):
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(-1)
    c = v - x.min(-1)
    s = jnp.where(v > 0, c / jnp.maximum(v, 1e-8), 0.0)
    safe_c = jnp.maximum(c, 1e-8)
    h = jnp.where(
        v == r,
        ((g - b) / safe_c) % 6,
        jnp.where(v == g, (b - r) / safe_c + 2, (r - g) / safe_c + 4),
    )
    return jnp.where(c > 0, h / 6.0, 0.0), s, v


def _hsv_to_rgb(h, s, v):
    k = lambda n: (n + h[..., None] * 6) % 6  # noqa: E731
    n = jnp.array([5.0, 3.0, 1.0])
    return v[..., None] - v[..., None] * s[..., None] * jnp.clip(jnp.minimum(k(n), 4 - k(n)), 0, 1)


def color_jitter(x, key, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1):
    """Per-image random brightness, contrast, saturation (factors in [1-a, 1+a]) and hue shift
    (in [-hue, hue] turns), as torchvision's ColorJitter, in a fixed order."""
    b = x.shape[0]
    kb, kc, ks, kh = jax.random.split(key, 4)
    u = lambda k, a: jax.random.uniform(k, (b, 1, 1, 1), minval=1 - a, maxval=1 + a)  # noqa: E731
    x = jnp.clip(x * u(kb, brightness), 0, 1)
    mean = _gray(x).mean(axis=(1, 2, 3), keepdims=True)
    x = jnp.clip((x - mean) * u(kc, contrast) + mean, 0, 1)
    x = jnp.clip((x - _gray(x)) * u(ks, saturation) + _gray(x), 0, 1)
    h, s, v = _rgb_to_hsv(x)
    shift = jax.random.uniform(kh, (b, 1, 1), minval=-hue, maxval=hue)
    return jnp.clip(_hsv_to_rgb((h + shift) % 1.0, s, v), 0, 1)


def random_grayscale(x, key, p=0.2):
    """With probability p per image, replaces RGB by its luma."""
    pick = jax.random.bernoulli(key, p, (x.shape[0], 1, 1, 1))
    return jnp.where(pick, jnp.broadcast_to(_gray(x), x.shape), x)


def gaussian_blur(x, key, p=0.5, sigma_min=0.1, sigma_max=2.0, radius=4):
    """With probability p per image, a separable Gaussian blur with sigma ~ U[min, max]."""
    b = x.shape[0]
    ks, kp = jax.random.split(key)
    sigma = jax.random.uniform(ks, (b,), minval=sigma_min, maxval=sigma_max)
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    w = w / w.sum(1, keepdims=True)  # [B, K]
    pad = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, wd = x.shape[1], x.shape[2]
    rows = sum(w[:, i, None, None, None] * pad[:, i : i + h] for i in range(2 * radius + 1))
    blurred = sum(w[:, i, None, None, None] * rows[:, :, i : i + wd] for i in range(2 * radius + 1))
    pick = jax.random.bernoulli(kp, p, (b, 1, 1, 1))
    return jnp.where(pick, blurred, x)


def strong_perturb(x, key, config):
    """Colour jitter (p = config.jitter_p), grayscale, blur: the student's strong input.

    Args:
      x: [B, H, W, 3] float32 in [0, 1].
      config: fields jitter_p, brightness, contrast, saturation, hue, gray_p, blur_p,
        blur_sigma (min, max).
    """
    kj, kp, kg, kb = jax.random.split(key, 4)
    jittered = color_jitter(
        x, kj, config.brightness, config.contrast, config.saturation, config.hue
    )
    x = jnp.where(jax.random.bernoulli(kp, config.jitter_p, (x.shape[0], 1, 1, 1)), jittered, x)
    x = random_grayscale(x, kg, config.gray_p)
    return gaussian_blur(x, kb, config.blur_p, *config.blur_sigma)


def cutmix_masks(key, batch: int, height: int, width: int, p: float = 0.5) -> jnp.ndarray:
    """Per-image box masks M [B, H, W] float32 (1 inside the box = pixels from u_a).

    With probability p an image gets a box of area ratio λ ~ U(0, 1) (CutMix's rule: sides
    H·sqrt(λ), W·sqrt(λ), centre uniform, clipped at the border); otherwise M = 0 everywhere
    (no mixing: the image is u_b alone, and the loss reduces to the plain one against u_b).
    """
    kl, ky, kx, kp = jax.random.split(key, 4)
    lam = jax.random.uniform(kl, (batch,))
    cut_h, cut_w = height * jnp.sqrt(lam), width * jnp.sqrt(lam)
    cy = jax.random.uniform(ky, (batch,)) * height
    cx = jax.random.uniform(kx, (batch,)) * width
    ys = jnp.arange(height)[None, :, None] + 0.5
    xs = jnp.arange(width)[None, None, :] + 0.5
    inside = (jnp.abs(ys - cy[:, None, None]) < cut_h[:, None, None] / 2) & (
        jnp.abs(xs - cx[:, None, None]) < cut_w[:, None, None] / 2
    )
    apply = jax.random.bernoulli(kp, p, (batch, 1, 1))
    return (inside & apply).astype(jnp.float32)


def cutmix(x_a, x_b, masks):
    """u_ab = u_a ⊙ M + u_b ⊙ (1 − M) for images [B, H, W, C] and masks [B, H, W]."""
    m = masks[..., None]
    return x_a * m + x_b * (1 - m)
