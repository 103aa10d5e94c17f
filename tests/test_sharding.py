"""`dajax.sharding`: batches joined and split without moving rows between devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dajax import sharding

COLLECTIVES = ("all-gather", "all-to-all", "all-reduce", "collective-permute", "reduce-scatter")


@pytest.mark.parametrize("shards", [1, 2, 4, 3])  # 3 divides neither: plain concatenation
def test_split_undoes_concat(shards):
    a = jnp.arange(4 * 3.0).reshape(4, 3)
    b = -jnp.arange(8 * 3.0).reshape(8, 3)
    joined = sharding.concat_batches(a, b, shards)
    assert joined.shape == (12, 3)
    assert sorted(np.asarray(joined[:, 0]).tolist()) == sorted(
        np.concatenate([a[:, 0], b[:, 0]]).tolist()
    )
    got_a, got_b = sharding.split_batches(joined, 4, shards)
    np.testing.assert_array_equal(got_a, a)
    np.testing.assert_array_equal(got_b, b)
    if shards == 2:  # device 0 holds a[:2] and b[:4], device 1 a[2:] and b[4:]
        np.testing.assert_array_equal(joined[:6], jnp.concatenate([a[:2], b[:4]]))


def _compiled_round_trip(shards: int) -> str:
    """HLO of a per-row function applied to two batches joined over `shards`, forward and
    backward, with both batches split over the 8 test devices."""
    mesh = sharding.make_mesh()
    batch = NamedSharding(mesh, P(sharding.BATCH_AXES))
    a = jax.ShapeDtypeStruct((8, 5, 16), jnp.float32, sharding=batch)
    b = jax.ShapeDtypeStruct((16, 5, 16), jnp.float32, sharding=batch)

    def loss(a, b):
        joined = sharding.concat_batches(a, b, shards)
        rows = jnp.tanh(joined) * joined.sum(-1, keepdims=True)  # per-row work
        out_a, out_b = sharding.split_batches(rows, a.shape[0], shards)
        return (out_a**2).sum() + (3.0 * out_b).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(a, b).compile().as_text()


@pytest.mark.perf
def test_joined_batches_stay_on_their_devices():
    assert jax.device_count() == 8
    assert not any(op in _compiled_round_trip(8) for op in COLLECTIVES)
    # A plain concatenation (the fallback) moves rows between devices.
    assert any(op in _compiled_round_trip(1) for op in COLLECTIVES)


def test_multi_slice_mesh_keeps_each_slice_on_its_own_row():
    from benchmarks import hardware

    devices = hardware.tpu_devices("v5e:2x2", slices=2)  # compile-only chips, no TPU
    mesh = sharding.make_mesh(2, devices)
    assert dict(mesh.shape) == {"slice": 2, "data": 2, "fsdp": 2}
    for index, row in enumerate(mesh.devices):
        assert {d.slice_index for d in row.flat} == {index}  # only 'slice' crosses the DCN
    with pytest.raises(ValueError, match="divide the 4 devices of a slice"):
        sharding.make_mesh(8, devices)


def test_single_slice_mesh_has_a_unit_slice_axis():
    mesh = sharding.make_mesh(4)
    assert dict(mesh.shape) == {"slice": 1, "data": 2, "fsdp": 4}
    assert sharding.batch_sharding(mesh).spec == P(("slice", "data", "fsdp"))
