"""Device mesh and shardings: data parallel by default, FSDP for large encoders.

The mesh has three axes, `('slice', 'data', 'fsdp')`. 'slice' has one entry per TPU pod slice
of a multi-slice job (data parallel over the data-centre network between slices; size 1
everywhere else), 'data' and 'fsdp' split the devices of a slice. Batches are split over all
three (every device sees a distinct slice of the global batch). Parameters and optimiser
state are replicated, or with FSDP each large array is split along its largest axis divisible
by the `fsdp` size, so XLA all-gathers weights where they are used and reduce-scatters their
gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("slice", "data", "fsdp")
FSDP_MIN_SIZE = 2**16  # smaller arrays (norms, biases) stay replicated


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
    """A ('slice', 'data', 'fsdp') mesh over all devices (of all processes).

    Args:
      fsdp: devices per FSDP group, inside one slice; must divide a slice's device count.
        1 = pure data parallel.
      devices: the devices to lay out (default: `jax.devices()`); e.g. the devices of a
        compile-only topology from `jax.experimental.topologies`. Devices with a
        `slice_index` (TPU multi-slice) are grouped by slice along the 'slice' axis, so only
        gradient reductions cross the slower network between slices.
    """
    devices = list(devices) if devices is not None else jax.devices()
    slices = 1 + max(getattr(d, "slice_index", 0) for d in devices)
    per_slice = len(devices) // slices
    if fsdp < 1 or per_slice % fsdp:
        raise ValueError(
            f"mesh.fsdp={fsdp} must be >= 1 and divide the {per_slice} devices of a slice "
            f"({len(devices)} devices in {slices} slice(s))"
        )
    inside, auto = (1, per_slice // fsdp, fsdp), (AxisType.Auto,) * 3
    if slices == 1:
        return jax.make_mesh(inside, BATCH_AXES, axis_types=auto, devices=devices)
    grid = mesh_utils.create_hybrid_device_mesh(inside, (slices, 1, 1), devices)
    return Mesh(grid, BATCH_AXES, axis_types=auto)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device."""
    return NamedSharding(mesh, P(BATCH_AXES))


def concat_batches(a: jax.Array, b: jax.Array, shards: int) -> jax.Array:
    """[n_a, ...] and [n_b, ...] -> [n_a + n_b, ...], each device's rows kept on the device.

    For two batches split over `shards` devices along their leading axis (`batch_sharding`):
    device d's rows of `a` are followed by its rows of `b`, so under jit the concatenation
    and `split_batches` move nothing between devices (a plain concatenation would). Rows are
    therefore grouped by device, not a's then b's; when `shards` does not divide both sizes
    it is a plain concatenation. Undo with `split_batches(x, n_a, shards)`.
    """
    if a.shape[0] % shards or b.shape[0] % shards:
        return jnp.concatenate([a, b])
    per_device = lambda x: x.reshape(shards, x.shape[0] // shards, *x.shape[1:])  # noqa: E731
    joined = jnp.concatenate([per_device(a), per_device(b)], axis=1)
    return joined.reshape(a.shape[0] + b.shape[0], *a.shape[1:])


def split_batches(x: jax.Array, n_a: int, shards: int) -> tuple[jax.Array, jax.Array]:
    """Inverse of `concat_batches`: [n_a + n_b, ...] -> ([n_a, ...], [n_b, ...])."""
    n_b = x.shape[0] - n_a
    if n_a % shards or n_b % shards:
        return x[:n_a], x[n_a:]
    grouped = x.reshape(shards, x.shape[0] // shards, *x.shape[1:])
    a, b = grouped[:, : n_a // shards], grouped[:, n_a // shards :]
    return a.reshape(n_a, *x.shape[1:]), b.reshape(n_b, *x.shape[1:])


def _fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    if fsdp == 1 or math.prod(shape) < min_size:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_tree, mesh: Mesh, min_size: int = FSDP_MIN_SIZE):
    """Shardings for a tree of arrays or `ShapeDtypeStruct`s (params, optimiser state, frozen
    encoders).

    Replicated on a pure data-parallel mesh; FSDP-split when the mesh's 'fsdp' axis > 1, for
    arrays of at least `min_size` elements (smaller ones stay replicated). Scalars (step
    counters) are always replicated.
    """
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, _fsdp_spec(tuple(x.shape), fsdp, min_size)), abstract_tree
    )


def process_batch_size(global_size: int, name: str = "batch", devices: bool = False) -> int:
    """This process's share of a global batch: `global_size / process count`.

    Args:
      global_size: the batch over all processes.
      name: the config field it came from, for the error.
      devices: also require that every device gets the same share (training batches are split
        over all of them, `batch_sharding`).

    Raises:
      ValueError: one line naming the field and the numbers, when `global_size` is not a
        positive integer or the processes (or the devices) cannot divide it.
    """
    parts = [jax.process_count()] + ([jax.device_count()] if devices else [])
    if isinstance(global_size, bool) or not isinstance(global_size, int) or global_size < 1:
        raise ValueError(f"{name}: {global_size!r} must be a positive integer (a global batch)")
    if any(global_size % n for n in parts):
        over = f"{parts[0]} process(es)" + (f" and {parts[1]} device(s)" if devices else "")
        raise ValueError(
            f"{name}: a global batch of {global_size} does not divide over {over}; set it to a "
            f"multiple of {math.lcm(*parts)}"
        )
    return global_size // parts[0]


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-process numpy batches -> global `jax.Array`s split over the mesh's batch axes.

    Each process passes its own shard (leading axis = global batch / process count).
    """
    sharding = batch_sharding(mesh)
    for name, value in local.items():
        global_size = np.shape(value)[0] * jax.process_count()
        if global_size % mesh.size:
            raise ValueError(
                f"batch '{name}': global batch {global_size} (per-process {np.shape(value)[0]} x "
                f"{jax.process_count()} processes) does not divide over {mesh.size} devices; "
                "change the config's batch sizes"
            )
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }
