"""A teacher step compiled by XLA's TPU compiler (libtpu) for a v5e 2x2 slice, no TPU: a
change that breaks TPU compilation, or the Pallas attention kernel under the mesh, fails here."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import hardware
from benchmarks.memory import abstract_step_inputs, compile_step, memory_row
from dajax.models import DepthAnything, ModelConfig

TINY = ModelConfig(
    encoder="custom",
    dim=64,
    depth=2,
    heads=1,  # 64-wide heads, as every DINOv2
    layers=(0, 1, 1, 1),
    features=16,
    out_channels=(8, 16, 32, 32),
)


@pytest.mark.perf
@pytest.mark.slow
def test_tiny_teacher_step_compiles_for_v5e_with_the_flash_kernel():
    devices = hardware.tpu_devices("v5e:2x2")
    assert [d.device_kind for d in devices] == ["TPU v5 lite"] * 4
    model = DepthAnything(TINY, dtype=jnp.bfloat16, remat="full", attention="tpu_flash")
    compiled = compile_step(model, "teacher", 2, 1, 28, devices)  # data 2 x fsdp 2
    assert "tpu_custom_call" in compiled.as_text()  # the Mosaic kernel, inside the step
    _, state, _, _ = abstract_step_inputs(model, "teacher", 4, 28)
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
    mem = compiled.memory_analysis()
    # Arrays this small stay replicated: every chip holds the whole state, and donation makes
    # the new state reuse its buffers.
    assert mem.argument_size_in_bytes >= state_bytes
    assert mem.alias_size_in_bytes >= state_bytes
    assert memory_row(compiled, hardware.device_memory_bytes("v5e:2x2"))[-1] == "yes"


def test_unknown_tpu_targets_are_one_line_errors():
    with pytest.raises(SystemExit, match="known topologies: v5e:2x2"):
        hardware.tpu_devices("v5e:3x7")  # libtpu rejects the shape
    with pytest.raises(SystemExit, match="unknown accelerator target 'tpu9:2x2'"):
        hardware.tpu_devices("tpu9:2x2")
