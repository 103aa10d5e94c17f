"""FSDP gives the data-parallel step's numbers (8 CPU devices).

The stage runs in `test_stages.py` and `test_metric.py` train under FSDP (data 4 x fsdp 2, see
`tiny_configs.py`); here one teacher step is compared across meshes, since FSDP must only
change where arrays live.
"""

import jax
import numpy as np
import pytest
from tiny_configs import TINY_MODEL

from configs import common
from dajax import sharding
from dajax.models import DepthAnything, ModelConfig, init_params, param_shapes
from dajax.training import teacher
from dajax.training.optimizer import build_optimizer
from dajax.training.state import create_state, make_train_step

SIZE, BATCH = 28, 8


def _batch() -> dict:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (BATCH, SIZE, SIZE)).astype(np.float32)
    return {
        "image": rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), np.uint8),
        "target": 1.0 / depth,
        "mask": rng.uniform(size=depth.shape) > 0.1,
    }


def _one_step(fsdp: int):
    """(loss, params after one teacher step, the params' shardings) on a data x fsdp mesh."""
    model = DepthAnything(ModelConfig(**TINY_MODEL))
    params = init_params(model, jax.random.key(0), SIZE)
    optim = common.optim(10)
    # Adam with eps 1e-8 turns reduction-order noise in near-zero gradients (the depth head's
    # bias gets none: the loss ignores a shift) into full-size steps; 1e-3 keeps it noise.
    optim.eps = 1e-3
    tx, _ = build_optimizer(optim, param_shapes(model), 10)
    mesh = sharding.make_mesh(fsdp)
    abstract = jax.eval_shape(lambda p: create_state(p, tx), params)
    state_sh = sharding.state_shardings(abstract, mesh, min_size=1024)  # split tiny matrices
    state = jax.jit(lambda p: create_state(p, tx), out_shardings=state_sh)(params)
    step = jax.jit(
        make_train_step(teacher.make_loss_fn(model), tx, seed=0),
        out_shardings=(state_sh, sharding.replicated(mesh)),
    )
    state, metrics = step(state, sharding.global_batch(_batch(), mesh), None)
    return float(metrics["loss"]), jax.device_get(state.params), state_sh.params


def test_fsdp_step_matches_data_parallel():
    dp_loss, dp_params, _ = _one_step(fsdp=1)
    fsdp_loss, fsdp_params, specs = _one_step(fsdp=8)
    split = [s.spec for s in jax.tree.leaves(specs) if "fsdp" in s.spec]
    assert len(split) > 10  # the large weights really are split over the 'fsdp' axis
    assert np.isfinite(dp_loss) and fsdp_loss == pytest.approx(dp_loss, rel=1e-5)
    for a, b in zip(jax.tree.leaves(dp_params), jax.tree.leaves(fsdp_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
