"""Every training stage's step under data parallelism and FSDP on an 8-device CPU mesh."""

import jax
import numpy as np
import pytest
from tiny_configs import TINY_MODEL

from configs import common
from configs import student as student_config
from dajax import sharding
from dajax.models import DepthAnything, ModelConfig, init_params, param_shapes
from dajax.training import metric, student, teacher
from dajax.training.optimizer import build_optimizer
from dajax.training.state import create_state, make_train_step

SIZE, LABELED = 28, 8


def _batch(stage: str) -> dict:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (LABELED, SIZE, SIZE, 3), np.uint8)
    depth = rng.uniform(0.5, 9.0, (LABELED, SIZE, SIZE)).astype(np.float32)
    mask = rng.uniform(size=depth.shape) > 0.1
    if stage == "metric":
        return {"image": image, "target": depth, "mask": mask}
    labeled = {"image": image, "target": 1.0 / depth, "mask": mask}
    if stage == "teacher":
        return labeled
    out = {f"l_{k}": v for k, v in labeled.items()}
    out["u_image"] = rng.integers(0, 256, (2 * LABELED, SIZE, SIZE, 3), np.uint8)
    out["u_pseudo"] = rng.uniform(0, 1, (2 * LABELED, SIZE, SIZE)).astype(np.float32)
    return out


def _one_step(stage: str, fsdp: int):
    """(loss, params after one step, the params' shardings) on a data x fsdp mesh."""
    head = dict(head="metric", max_depth=10.0) if stage == "metric" else {}
    model = DepthAnything(ModelConfig(**TINY_MODEL, **head))
    if stage == "teacher":
        loss_fn = teacher.make_loss_fn(model)
    elif stage == "metric":
        loss_fn = metric.make_loss_fn(model, 1e-3, 10.0)
    else:
        loss_fn = student.make_loss_fn(model, student_config.get_config("demo"))
    params = init_params(model, jax.random.key(0), SIZE)
    optim = common.optim(10)
    # Adam with eps 1e-8 turns reduction-order noise in near-zero gradients (the depth head's
    # bias gets none: the losses ignore a shift) into full-size steps; 1e-3 keeps it noise.
    optim.eps = 1e-3
    tx, _ = build_optimizer(optim, param_shapes(model), 10)
    mesh = sharding.make_mesh(fsdp)
    state_sh = sharding.state_shardings(jax.eval_shape(lambda p: create_state(p, tx), params), mesh)
    state = jax.jit(lambda p: create_state(p, tx), out_shardings=state_sh)(params)
    frozen = {"dinov2": params["pretrained"]} if stage == "student" else None
    frozen = jax.device_put(frozen, sharding.replicated(mesh))
    step = jax.jit(
        make_train_step(loss_fn, tx, seed=0), out_shardings=(state_sh, sharding.replicated(mesh))
    )
    state, metrics = step(state, sharding.global_batch(_batch(stage), mesh), frozen)
    return float(metrics["loss"]), jax.device_get(state.params), state_sh.params


@pytest.mark.parametrize("stage", ["teacher", "student", "metric"])
def test_fsdp_step_matches_data_parallel(stage, monkeypatch):
    monkeypatch.setattr(sharding, "FSDP_MIN_SIZE", 1024)  # shard the tiny model's matrices
    dp_loss, dp_params, _ = _one_step(stage, fsdp=1)
    fsdp_loss, fsdp_params, specs = _one_step(stage, fsdp=8)
    split = [s.spec for s in jax.tree.leaves(specs) if "fsdp" in s.spec]
    assert len(split) > 10  # the large weights really are split over the 'fsdp' axis
    assert np.isfinite(dp_loss) and fsdp_loss == pytest.approx(dp_loss, rel=1e-5)
    for a, b in zip(jax.tree.leaves(dp_params), jax.tree.leaves(fsdp_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
