"""The fast model's kernels: each replaces one stock operation of the reference model.

`dajax.models.reference` writes Depth Anything with stock `flax.linen` layers; the fast
`dajax.models.DepthAnything` (`dinov2.py`, `dpt.py`) is the same network, with the same
parameters, written with these. Every custom gradient (`jax.custom_vjp`), platform switch
(`lax.platform_dependent`) and optimisation barrier of the fast model is in this package.
Each module's docstring says what it replaces, on which platform it pays, why, and which
benchmark table or note measures it (the numbers live in `benchmarks/README.md` and
`benchmarks/notes/` only); `docs/model.md` has them as one table.

Module: kernels -> what they replace (where they pay).
- `layer_norm`: `LayerNorm`, `DeferredLayerNorm` -> `nn.LayerNorm`'s autodiff (GPU).
- `folded_dense`: `FoldedDense`, `FoldedQKV`, `LayerScaleGamma` -> a LayerNorm's affine before a
  Dense, LayerScale's multiply after one, and the sliced output of the fused qkv Dense (GPU).
- `gelu`: `exact_gelu` -> `nn.gelu(approximate=False)` and its autodiff (GPU).
- `attention`: `dot_product_attention` -> `jax.nn.dot_product_attention` (every platform:
  picks `blocked_attention` on CPUs, `tpu_attention` on TPUs, cuDNN's kernel on GPUs).
- `blocked_attention`: query blocks with a FlashAttention-2 backward (CPU).
- `tpu_attention`: the Pallas flash kernel under `shard_map` (TPU).
- `gradient_fence`: `materialize_gradient` -> nothing: an identity between blocks (CPU).
- `conv`: `conv_general_dilated` -> `nn.Conv`'s convolution and its kernel gradient (CPU);
  `patch_upsample` -> `ConvTranspose` with stride = kernel (every platform: one matmul).
- `precision`: `result_dtype`, `dot`, `convolution_dtype` -> bf16-result matmuls and
  convolutions, autodiff's mixed-precision backward of a matmul, a bf16 DPT head (CPU).
- `resample`: `gather_resample` -> autodiff's scatter-add transpose of a resize (GPU).
- `init_compile`: `init_compiler_options` -> XLA's default optimisation level for `model.init`
  (CPU: compiles faster).
"""

from dajax.models.kernels.attention import ATTENTION_IMPLS, dot_product_attention
from dajax.models.kernels.conv import conv_general_dilated, patch_upsample
from dajax.models.kernels.folded_dense import (
    FOLDED_WEIGHTS,
    FoldedDense,
    FoldedQKV,
    LayerScaleGamma,
    folded_dense,
)
from dajax.models.kernels.gelu import exact_gelu
from dajax.models.kernels.gradient_fence import materialize_gradient
from dajax.models.kernels.init_compile import init_compiler_options
from dajax.models.kernels.layer_norm import DeferredLayerNorm, LayerNorm
from dajax.models.kernels.precision import convolution_dtype, dot, result_dtype
from dajax.models.kernels.resample import gather_resample

__all__ = [
    "ATTENTION_IMPLS",
    "FOLDED_WEIGHTS",
    "DeferredLayerNorm",
    "FoldedDense",
    "FoldedQKV",
    "LayerNorm",
    "LayerScaleGamma",
    "conv_general_dilated",
    "convolution_dtype",
    "dot",
    "dot_product_attention",
    "exact_gelu",
    "folded_dense",
    "gather_resample",
    "init_compiler_options",
    "materialize_gradient",
    "patch_upsample",
    "result_dtype",
]
