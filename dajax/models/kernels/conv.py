"""2-D convolution whose kernel gradient on CPUs avoids autodiff's slow form.

Replaces: `nn.Conv`'s `lax.conv_general_dilated` and autodiff's kernel gradient of it (plugged
  in as `nn.Conv(..., conv_general_dilated=conv_general_dilated)`), and `ConvTranspose` with
  stride equal to the kernel size (`patch_upsample`).
Pays on: CPUs (the kernel gradient is chosen by `lax.platform_dependent`); 1x1 convolutions
  and `patch_upsample` are matmuls on every platform.
Measured: the kernel gradient by taps, and the GPU compile it leaves unchanged:
  `benchmarks/README.md`, the `train_step.py` table, with
  `benchmarks/notes/2026-11-26-cpu-train-step.md`; the kernel gradient as one convolution
  against the taps, by map size: `benchmarks/notes/2026-12-07-cpu-training-pace.md` (the
  `demo_step.py` table); the 1x1 convolution as a matmul: `docs/cpu_inference.md`.

XLA:CPU runs the kernel gradient that autodiff derives from `lax.conv_general_dilated` (a
convolution with batch and features swapped) outside its fast convolution path. Here, on
CPUs, the gradient `dK[i, j] = Σ_{b,h,w} x_pad[b, s·h + i, s·w + j, :]ᵀ dY[b, h, w, :]` is
computed either by taps, one strided slice and one matmul per tap (`kernel_grad_by_taps`), or,
for stride 1 on maps of up to `CONV_FORM_PIXELS` output pixels, as one forward convolution of
the padded input with dY as its kernel, the batch axis contracted as the channels are
(`kernel_grad_by_conv`: the layout XLA:CPU's fast path takes). Other platforms keep autodiff's
gradient (cuDNN's and the TPU's own kernels). Float32 values and input gradients are
unchanged.

Forward values: in half precision on CPUs the convolution asks for a float32 result and rounds
it once (`kernels.precision`). A 1x1 convolution with stride 1 and no padding is a matmul
over the channels (`pointwise`, `precision.dot`), differentiated as one. `patch_upsample` is
PyTorch's `ConvTranspose2d` with stride equal to its kernel size: the k x k blocks it writes
do not overlap, so it is one matmul and a depth-to-space reshape instead of a transposed
convolution.

`conv_general_dilated` is a drop-in for `nn.Conv(..., conv_general_dilated=...)` for NHWC/HWIO
convolutions without dilation or groups, the only kind dajax's models use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from dajax.models.kernels.precision import dot, result_dtype

_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # NHWC, HWIO, NHWC
# Largest output map (pixels) whose stride-1 kernel gradient is `kernel_grad_by_conv` on CPUs:
# measured faster than the taps at 168² and slower at 296² (see the module).
CONV_FORM_PIXELS = 224 * 224


def _plain(x, kernel, strides, padding, precision, result=None):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=_NHWC,
        precision=precision,
        preferred_element_type=result,
    )


def _value(x, kernel, strides, padding, precision):
    """The convolution in x's dtype, computed with a float32 result where `result_dtype` says
    so (the backward differentiates the plain convolution: same values up to that rounding)."""
    return _plain(x, kernel, strides, padding, precision, result_dtype(x.dtype)).astype(x.dtype)


def pointwise(x: jnp.ndarray, kernel: jnp.ndarray, precision=None) -> jnp.ndarray:
    """A 1x1 convolution, stride 1, no padding, as a matmul: x [B, H, W, Cin], kernel
    [1, 1, Cin, Cout] -> [B, H, W, Cout] in x's dtype (`precision.dot`: a float32 result and
    half-precision backward matmuls on CPUs)."""
    return dot(x, kernel[0, 0], precision).astype(x.dtype)


def kernel_grad_by_taps(x, d_out, kernel_shape, strides, padding, precision=None):
    """dL/dkernel of an NHWC/HWIO convolution as one matmul per tap.

    Args:
      x: [B, H, W, Cin] the convolution's input.
      d_out: [B, Ho, Wo, Cout] the gradient of its output.
      kernel_shape: (kh, kw, Cin, Cout).
      strides: (sh, sw); padding: ((top, bottom), (left, right)).

    Returns:
      [kh, kw, Cin, Cout] in `d_out.dtype` (the kernel's compute dtype), accumulated in float32.
    """
    kh, kw = kernel_shape[:2]
    (sh, sw), (_, ho, wo, _) = strides, d_out.shape
    padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    rows = d_out.reshape(-1, d_out.shape[-1])  # 2-D operands: XLA:CPU's fast matmul path
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
            taps.append(
                lax.dot_general(
                    window.reshape(-1, x.shape[-1]),
                    rows,
                    (((0,), (0,)), ((), ())),
                    precision=precision,
                    preferred_element_type=jnp.float32,
                )
            )
    return jnp.stack(taps).reshape(kernel_shape).astype(d_out.dtype)


def kernel_grad_by_conv(x, d_out, kernel_shape, padding, precision=None):
    """dL/dkernel of a stride-1 NHWC/HWIO convolution as one forward convolution.

    `dK[i, j, c, o] = Σ_{b,h,w} x_pad[b, h + i, w + j, c] · dY[b, h, w, o]` contracts the
    batch and the output map. It is a VALID convolution whose channels are the images B and
    whose batch is the wider of Cin and Cout (measured faster than the narrower on XLA:CPU):
    for Cin >= Cout, of the image x_pad laid out [Cin, Hp, Wp, B] with the kernel dY laid out
    [Ho, Wo, B, Cout], giving dK as [Cin, kh, kw, Cout]; otherwise of the image dY zero-padded
    by (kh - 1, kw - 1), laid out [Cout, .., .., B], with the kernel x_pad laid out [Hp, Wp,
    B, Cin], giving dK spatially flipped as [Cout, kh, kw, Cin].

    Args:
      x: [B, H, W, Cin] the convolution's input.
      d_out: [B, Ho, Wo, Cout] the gradient of its output.
      kernel_shape: (kh, kw, Cin, Cout); padding: ((top, bottom), (left, right)).

    Returns:
      [kh, kw, Cin, Cout] in `d_out.dtype`, accumulated in float32.
    """
    (kh, kw, cin, cout), padded = kernel_shape, jnp.pad(x, ((0, 0), *padding, (0, 0)))

    def valid(image, kernel):
        return lax.conv_general_dilated(
            image,
            kernel,
            (1, 1),
            "VALID",
            dimension_numbers=_NHWC,
            precision=precision,
            preferred_element_type=jnp.float32,
        )

    if cin >= cout:
        d_kernel = valid(padded.transpose(3, 1, 2, 0), d_out.transpose(1, 2, 0, 3))
        d_kernel = d_kernel.transpose(1, 2, 0, 3)
    else:
        image = jnp.pad(d_out, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        d_kernel = valid(image.transpose(3, 1, 2, 0), padded.transpose(1, 2, 0, 3))
        d_kernel = d_kernel[:, ::-1, ::-1].transpose(1, 2, 3, 0)
    return d_kernel.astype(d_out.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, kernel, strides, padding, precision):
    return _value(x, kernel, strides, padding, precision)


def _conv_fwd(x, kernel, strides, padding, precision):
    return _value(x, kernel, strides, padding, precision), (x, kernel)


def _conv_bwd(strides, padding, precision, residuals, d_out):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _plain(x, kernel, strides, padding, precision), x)

    def autodiff(x, d_out):
        _, kernel_vjp = jax.vjp(lambda k: _plain(x, k, strides, padding, precision), kernel)
        return kernel_vjp(d_out)[0]

    def by_taps(x, d_out):
        return kernel_grad_by_taps(x, d_out, kernel.shape, strides, padding, precision)

    def by_conv(x, d_out):
        return kernel_grad_by_conv(x, d_out, kernel.shape, padding, precision)

    small = d_out.shape[1] * d_out.shape[2] <= CONV_FORM_PIXELS
    cpu = by_conv if tuple(strides) == (1, 1) and small else by_taps
    d_kernel = lax.platform_dependent(x, d_out, cpu=cpu, default=autodiff)
    return input_vjp(d_out)[0], d_kernel


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
    lhs: jnp.ndarray,
    rhs: jnp.ndarray,
    window_strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision=None,
) -> jnp.ndarray:
    """`lax.conv_general_dilated` for lhs [B, H, W, Cin] and rhs [kh, kw, Cin, Cout], as
    `nn.Conv` calls it; the kernel gradient on CPUs is `kernel_grad_by_taps`, and a 1x1
    convolution with stride 1 and no padding is `pointwise`."""
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    if dilated or feature_group_count != 1:
        raise ValueError(
            "dajax.models.kernels.conv takes undilated, ungrouped convolutions; got "
            f"lhs_dilation={lhs_dilation}, rhs_dilation={rhs_dilation}, "
            f"feature_group_count={feature_group_count}"
        )
    if dimension_numbers is not None and lax.conv_dimension_numbers(
        lhs.shape, rhs.shape, dimension_numbers
    ) != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC):
        raise ValueError(f"dajax.models.kernels.conv takes NHWC/HWIO, got {dimension_numbers}")
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if rhs.shape[:2] == (1, 1) and tuple(window_strides) == (1, 1) and not any(sum(padding, ())):
        return pointwise(lhs, rhs, precision)
    return _conv(lhs, rhs, tuple(window_strides), padding, precision)


def patch_upsample(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
    """`ConvTranspose2d(kernel_size=k, stride=k)`: every pixel becomes a k x k block.

    Args:
      x: [B, H, W, Cin]; kernel: [k, k, Cin, Cout] (PyTorch stores [Cin, Cout, k, k]);
        bias: [Cout]; all in the compute dtype.

    Returns:
      [B, H*k, W*k, Cout] in x's dtype: one `precision.dot` (float32 result on CPUs in half
      precision).
    """
    (b, h, w, cin), (k, _, _, cout) = x.shape, kernel.shape
    y = dot(x, kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout))  # [B, H, W, k·k·Cout]
    y = y.reshape(b, h, w, k, k, cout).transpose(0, 1, 3, 2, 4, 5)
    return (y.reshape(b, h * k, w * k, cout) + bias).astype(x.dtype)
