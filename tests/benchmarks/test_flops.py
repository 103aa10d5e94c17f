"""`hardware.model_flops`: the matmul/convolution FLOPs counted on the traced program."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import hardware
from benchmarks.memory import abstract_step_inputs
from benchmarks.train_step import stage_loss_fn
from dajax.models import DepthAnything, ModelConfig
from dajax.training.state import make_train_step

F32 = jnp.float32


def _spec(*shape):
    return jax.ShapeDtypeStruct(shape, F32)


def _conv(x, w, stride=1, padding="SAME"):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).trace(*args).lower(lowering_platforms=("cpu",)).cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_batched_matmul_is_two_flops_per_multiply_add():
    fn = jax.jit(lambda a, b: jnp.einsum("bij,bjk->bik", a, b))
    assert hardware.model_flops(fn, _spec(3, 5, 7), _spec(3, 7, 11)) == 2 * 3 * 5 * 7 * 11


def test_same_padded_conv_counts_only_taps_inside_the_image():
    # 3x3, stride 1, SAME padding: over one dimension of size H the taps that read the image
    # number 3H - 2 (each border row loses one).
    b, h, w, cin, cout = 2, 9, 6, 4, 5
    got = hardware.model_flops(jax.jit(_conv), _spec(b, h, w, cin), _spec(3, 3, cin, cout))
    assert got == 2 * b * cout * cin * (3 * h - 2) * (3 * w - 2)


def test_transposed_conv_counts_one_tap_per_output_not_the_holes():
    # kernel 2, stride 2: every output pixel reads exactly one input pixel per dimension.
    b, h, w, cin, cout = 2, 5, 4, 3, 6

    def up(x, k):
        return jax.lax.conv_transpose(
            x, k, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    got = hardware.model_flops(jax.jit(up), _spec(b, h, w, cin), _spec(2, 2, cin, cout))
    assert got == 2 * b * (2 * h) * (2 * w) * cin * cout
    assert got == _xla_flops(up, _spec(b, h, w, cin), _spec(2, 2, cin, cout))


def test_dead_forward_work_left_by_autodiff_is_not_counted():
    # The kernel gradient of a conv is one conv of the same size; autodiff's jaxpr also keeps
    # the (dead) forward conv, which XLA removes.
    x, k = _spec(2, 8, 8, 4), _spec(3, 3, 4, 5)
    grad = jax.grad(lambda k, x: _conv(x, k).sum())
    forward = hardware.model_flops(jax.jit(_conv), x, k)
    assert hardware.model_flops(jax.jit(grad), k, x) == forward == _xla_flops(grad, k, x)


def test_scan_counts_its_body_per_iteration_and_while_is_refused():
    def scanned(c, xs):
        return jax.lax.scan(lambda c, x: (c @ x, None), c, xs)[0]

    assert hardware.model_flops(jax.jit(scanned), _spec(4, 4), _spec(5, 4, 4)) == 5 * 2 * 4**3

    def looped(c):
        return jax.lax.while_loop(lambda c: c.sum() < 1.0, lambda c: c @ c, c)

    with pytest.raises(ValueError, match="while loop"):
        hardware.model_flops(jax.jit(looped), _spec(4, 4))


@pytest.mark.parametrize("stage", ["inference", "teacher"])
@pytest.mark.slow
def test_depth_anything_count_matches_xla_to_its_elementwise_share(stage):
    # XLA's count also has the elementwise work (LayerNorm, GELU, softmax, the loss, AdamW):
    # at 518² about 1% of a ViT's FLOPs, so the matmul/conv count is just below XLA's.
    model = DepthAnything(ModelConfig.from_variant("vits", "v2"), attention="xla")
    if stage == "inference":
        fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
        args = (
            jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 518, 518, 3))))[
                "params"
            ],
            _spec(1, 518, 518, 3),
        )
    else:
        tx, state, batch, frozen = abstract_step_inputs(model, "teacher", 1, 518)
        fn, args = (
            make_train_step(stage_loss_fn(model, "teacher"), tx, seed=0),
            (state, batch, frozen),
        )
    ours, xla = hardware.model_flops(jax.jit(fn), *args), _xla_flops(fn, *args)
    assert 0.98 * xla < ours <= xla
