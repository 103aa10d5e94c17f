"""Frozen ResNet-50 feature extractor in Flax, loadable from torchvision weights.

The network is torchvision's `resnet50` (ResNet v1.5: the stride of a downsampling bottleneck
sits on its 3x3 conv), evaluated in inference mode: every BatchNorm uses its running statistics
(eps 1e-5) and nothing is trained. Inputs are NHWC float32 RGB images normalised with the
ImageNet mean/std, as torchvision's weights expect.

Parameter names mirror torchvision's `state_dict` with list indices written as `_{i}`:

    conv1/kernel                          <- conv1.weight (OIHW -> HWIO)
    bn1/{scale,bias,mean,var}             <- bn1.{weight,bias,running_mean,running_var}
    layer{l}_{b}/conv{1,2,3}/kernel       <- layer{l}.{b}.conv{1,2,3}.weight
    layer{l}_{b}/bn{1,2,3}/...            <- layer{l}.{b}.bn{1,2,3}.*
    layer{l}_0/downsample_conv/kernel     <- layer{l}.0.downsample.0.weight
    layer{l}_0/downsample_bn/...          <- layer{l}.0.downsample.1.*
    fc/{kernel,bias}                      <- fc.{weight ([out, in] -> [in, out]), bias}

The batch-norm statistics live in the same (frozen) `params` tree as the affine parameters.
Checkpoints are read without executing pickled code (`dajax.weights.torch_pickle`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dajax.weights.safetensors_io import load_safetensors
from dajax.weights.torch_pickle import load_state_dict

STAGES = (3, 4, 6, 3)  # bottleneck blocks per stage (layer1..layer4)
WIDTHS = (64, 128, 256, 512)  # bottleneck widths per stage
EXPANSION = 4  # output channels = EXPANSION * width
BN_EPS = 1e-5
NUM_CLASSES = 1000
FEATURE_DIM = 2048  # = EXPANSION * WIDTHS[-1]
OUTPUTS = ("logits", "pool")

_BN_TORCH = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), an untruncated normal.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear default: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_fc_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _fc_bias_init(key, shape, dtype=jnp.float32):
    bound = 1.0 / np.sqrt(FEATURE_DIM)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),  # explicit, as PyTorch; never 'SAME'
        use_bias=False,
        kernel_init=_conv_init,
        name=name,
    )


class FrozenBatchNorm(nn.Module):
    """Inference-mode `torch.nn.BatchNorm2d`: `(x - mean) / sqrt(var + eps) * scale + bias`.

    All four per-channel vectors are entries of `params` (nothing is updated).
    """

    features: int
    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.features,)
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        mean = self.param("mean", nn.initializers.zeros, shape, jnp.float32)
        var = self.param("var", nn.initializers.ones, shape, jnp.float32)
        inv = scale * jax.lax.rsqrt(var + self.eps)
        return x * inv + (bias - mean * inv)


class Bottleneck(nn.Module):
    """torchvision `Bottleneck` (v1.5): 1x1 -> 3x3 (stride here) -> 1x1, plus the shortcut."""

    width: int
    stride: int = 1
    downsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_ch = self.width * EXPANSION
        y = nn.relu(FrozenBatchNorm(self.width, name="bn1")(_conv(self.width, 1, 1, "conv1")(x)))
        y = _conv(self.width, 3, self.stride, "conv2")(y)
        y = nn.relu(FrozenBatchNorm(self.width, name="bn2")(y))
        y = FrozenBatchNorm(out_ch, name="bn3")(_conv(out_ch, 1, 1, "conv3")(y))
        if self.downsample:
            x = _conv(out_ch, 1, self.stride, "downsample_conv")(x)
            x = FrozenBatchNorm(out_ch, name="downsample_bn")(x)
        return nn.relu(y + x)


class ResNet50(nn.Module):
    """torchvision `resnet50` as a Flax module; `__call__(x, output)` with x: [B, H, W, 3]."""

    stages: Sequence[int] = STAGES
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, output: str = "logits") -> jax.Array:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        x = nn.relu(FrozenBatchNorm(64, name="bn1")(_conv(64, 7, 2, "conv1")(x)))
        # MaxPool2d(3, stride=2, padding=1): the padding never wins the max.
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        in_ch = 64
        for layer, (blocks, width) in enumerate(zip(self.stages, WIDTHS, strict=True), start=1):
            for b in range(blocks):
                stride = 2 if (b == 0 and layer > 1) else 1
                down = b == 0 and (stride != 1 or in_ch != width * EXPANSION)
                x = Bottleneck(width, stride, down, name=f"layer{layer}_{b}")(x)
                in_ch = width * EXPANSION
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        if output == "pool":
            return x
        return nn.Dense(
            self.num_classes,
            kernel_init=_fc_kernel_init,
            bias_init=_fc_bias_init,
            name="fc",
        )(x)


def init_resnet50_params(rng: jax.Array) -> dict:
    """Random torchvision-style ResNet-50 parameters.

    Args:
      rng: a `jax.random` key (typed or raw uint32); the same key gives the same params.

    Returns:
      The `params` pytree (see the module docstring for names): conv kernels HWIO float32 from
      Kaiming normal (fan_out, ReLU gain), BN scale 1 / bias 0 / mean 0 / var 1, fc kernel
      [2048, 1000] and bias [1000] from U(-1/sqrt(2048), 1/sqrt(2048)).
    """
    # Drawn with NumPy (seeded by the key's bits) and sliced per leaf: JAX initializers cost
    # ~10 s of XLA compilation and threefry work for 25M parameters on a small CPU.
    shapes = _param_shapes()
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    convs = [(tuple(p.key for p in kp), x.shape) for kp, x in leaves if x.ndim == 4]
    n_conv = sum(int(np.prod(shape)) for _, shape in convs)
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    gen = np.random.default_rng(np.asarray(rng, np.uint32).ravel().tolist())
    normal = gen.standard_normal(n_conv, dtype=np.float32)
    bound = np.float32(1.0 / np.sqrt(FEATURE_DIM))
    uniform = gen.uniform(-bound, bound, FEATURE_DIM * NUM_CLASSES + NUM_CLASSES)
    uniform = uniform.astype(np.float32)
    values, offset = {}, 0
    for path, shape in convs:
        h, w, _, o = shape
        size = int(np.prod(shape))
        std = np.sqrt(2.0 / (h * w * o), dtype=np.float32)  # Kaiming normal, fan_out, ReLU gain
        values[path] = normal[offset : offset + size].reshape(shape) * std
        offset += size
    fc_w = FEATURE_DIM * NUM_CLASSES
    values[("fc", "kernel")] = uniform[:fc_w].reshape(FEATURE_DIM, NUM_CLASSES)
    values[("fc", "bias")] = uniform[fc_w:]

    def leaf(kp, x):
        path = tuple(p.key for p in kp)
        if path[-1] in ("scale", "var"):
            return jnp.asarray(np.ones(x.shape, np.float32))
        if path[-1] in ("bias", "mean") and path[0] != "fc":
            return jnp.asarray(np.zeros(x.shape, np.float32))
        return jnp.asarray(values[path])

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _param_shapes() -> dict:
    dummy = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    return jax.eval_shape(ResNet50().init, jax.random.key(0), dummy)["params"]


def _torch_key(path: tuple[str, ...]) -> str:
    """Flax param path -> torchvision state_dict key."""
    *modules, leaf = path
    parts = []
    for m in modules:
        if m.startswith("layer"):
            parts.append(m.replace("_", ".", 1))
        elif m == "downsample_conv":
            parts.append("downsample.0")
        elif m == "downsample_bn":
            parts.append("downsample.1")
        else:
            parts.append(m)
    if modules[-1] == "fc" or "conv" in modules[-1]:
        parts.append("weight" if leaf == "kernel" else leaf)
    else:
        parts.append(_BN_TORCH[leaf])
    return ".".join(parts)


def _to_flax(key: str, array: np.ndarray) -> np.ndarray:
    """Torch layout -> Flax layout: conv OIHW -> HWIO, linear [out, in] -> [in, out]."""
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if key == "fc.weight":
        return array.T
    return array


def _torch_shape(key: str, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if key == "fc.weight":
        return tuple(reversed(flax_shape))
    return tuple(flax_shape)


def load_torchvision_resnet50(path: str | os.PathLike) -> dict:
    """Loads torchvision `resnet50` weights (`.pth` or `.safetensors`) as Flax params.

    `.safetensors` files are read as safetensors; anything else (`.pth`, `.pt`) as a `torch.save`
    zip by a whitelisting unpickler (no pickled code runs). `num_batches_tracked` buffers are
    ignored and a leading `module.` (DataParallel) prefix is stripped. Tensors are cast to
    float32.

    Args:
      path: the checkpoint file.

    Returns:
      The `params` pytree for `resnet50_features` (conv kernels HWIO, fc kernel [2048, 1000]).

    Raises:
      ValueError: naming the file, when keys are missing, unexpected or of the wrong shape
        (each listed), or when the file cannot be parsed.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        raw = load_safetensors(path)
    else:
        raw = load_state_dict(path)
    state = {
        k.removeprefix("module."): v
        for k, v in raw.items()
        if not k.endswith("num_batches_tracked")
    }
    shapes = _param_shapes()
    flat_shapes = {
        tuple(p.key for p in kp): leaf.shape
        for kp, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }
    expected = {_torch_key(p): (p, _torch_shape(_torch_key(p), s)) for p, s in flat_shapes.items()}
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(
        f"{k}: {tuple(state[k].shape)} (expected {shape})"
        for k, (_, shape) in expected.items()
        if k in state and tuple(state[k].shape) != shape
    )
    if missing or unexpected or wrong:
        problems = []
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong-shape keys", wrong),
        ):
            if items:
                problems.append(f"{len(items)} {label}: " + ", ".join(items))
        raise ValueError(f"{path}: not a torchvision resnet50 state dict; " + "; ".join(problems))
    params: dict = {}
    for key, (fpath, _) in expected.items():
        node = params
        for m in fpath[:-1]:
            node = node.setdefault(m, {})
        node[fpath[-1]] = jnp.asarray(_to_flax(key, np.asarray(state[key], np.float32)))
    return params


def resnet50_features(params: dict, images: jax.Array, output: str = "logits") -> jax.Array:
    """Runs the frozen ResNet-50.

    Args:
      params: from `load_torchvision_resnet50` or `init_resnet50_params`.
      images: [B, H, W, 3] float32 RGB, ImageNet-normalised
        (`dajax.models.normalization.imagenet_normalize`); H, W >= 32 in practice.
      output: "logits" for [B, 1000] unnormalised class scores, or "pool" for the [B, 2048]
        globally average-pooled final features (before `fc`). Static under `jax.jit`.

    Returns:
      float32 [B, 1000] logits or [B, 2048] pooled features.

    Raises:
      ValueError: for any other `output`.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    images = jnp.asarray(images, jnp.float32)
    return ResNet50().apply({"params": params}, images, output)
