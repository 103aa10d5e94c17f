"""Training never saves what it cannot resume from: non-finite states are not written, bit rot
and impossible iterator positions are set aside on resume, a failed save is one line naming
the newest complete step, and degenerate loop and optimiser values stop the run at start-up."""

import errno
import json
import math
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from dajax import checkpoints
from dajax.models import ModelConfig
from dajax.training.loop import check_loop_config
from dajax.training.optimizer import check_optim
from dajax.weights.finite import NonFiniteWeightsError


def _iterator():
    """A grain dataset iterator (its state: {"next_index": records read})."""
    return iter(grain.MapDataset.range(100).to_iter_dataset())


def _state(value: float):
    """A small train-state-like tree: params and an integer step."""
    return {
        "params": {"w": jnp.linspace(-1.0, 1.0, 64), "b": jnp.full((3,), value)},
        "step": jnp.int32(3),
    }


def _abstract(state):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def _saved(tmp_path, steps):
    ckpt = checkpoints.TrainCheckpointer(tmp_path / "ckpt", save_every=1, max_to_keep=5)
    it = _iterator()
    for step in steps:
        next(it)
        assert ckpt.save(step, _state(float(step)), it, force=True)
    ckpt.close()


def test_a_non_finite_state_is_never_written(tmp_path):
    ckpt = checkpoints.TrainCheckpointer(tmp_path / "ckpt", save_every=1)
    assert ckpt.save(1, _state(1.0), force=True)
    with pytest.raises(
        FloatingPointError, match="step 2: .*NaN or Inf.*newest complete checkpoint is step 1"
    ):
        ckpt.save(2, _state(float("nan")), force=True)
    ckpt.close()
    assert checkpoints.TrainCheckpointer(tmp_path / "ckpt", 1).manager.all_steps() == [1]


def test_a_flipped_bit_is_set_aside_and_the_previous_step_restored(tmp_path):
    _saved(tmp_path, [1, 2])
    # Bit rot: step 2's arrays replaced by a copy whose one bit differs (a finite value, so
    # only the checksums can tell), written by the same code into a scratch folder.
    rotten = _state(2.0)
    w = np.asarray(rotten["params"]["w"]).copy()
    w.view(np.uint32)[5] ^= 1 << 3
    rotten["params"]["w"] = jnp.asarray(w)
    scratch = checkpoints.TrainCheckpointer(tmp_path / "scratch", save_every=1)
    scratch.save(2, rotten, force=True)
    scratch.close()
    shutil.rmtree(tmp_path / "ckpt" / "2" / "state")
    shutil.copytree(tmp_path / "scratch" / "2" / "state", tmp_path / "ckpt" / "2" / "state")

    ckpt = checkpoints.TrainCheckpointer(tmp_path / "ckpt", 1)
    it = _iterator()
    step, state = ckpt.restore_newest_readable(_abstract(_state(0.0)), it)
    assert step == 1 and float(state["params"]["b"][0]) == 1.0 and next(it) == 1
    assert len(list((tmp_path / "ckpt").glob("2.corrupt-*"))) == 1
    ckpt.close()


def test_an_impossible_iterator_position_is_set_aside(tmp_path):
    _saved(tmp_path, [1, 2])
    files = list((tmp_path / "ckpt" / "2" / "data").glob("process_0-of-1.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    files[0].write_text(json.dumps({**saved, "next_index": -7}))

    ckpt = checkpoints.TrainCheckpointer(tmp_path / "ckpt", 1)
    it = _iterator()
    step, _ = ckpt.restore_newest_readable(_abstract(_state(0.0)), it)
    assert step == 1 and it.get_state() == {"next_index": 1}
    assert len(list((tmp_path / "ckpt").glob("2.corrupt-*"))) == 1
    ckpt.close()


def test_a_full_disk_is_one_line_naming_the_newest_complete_step(tmp_path, monkeypatch):
    ckpt = checkpoints.TrainCheckpointer(tmp_path / "ckpt", save_every=1)
    assert ckpt.save(1, _state(1.0), force=True)
    ckpt.wait()
    assert ckpt.save(2, _state(2.0), force=True)

    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "check_for_errors", disk_full)
    with pytest.raises(checkpoints.CheckpointSaveError) as err:
        ckpt.check()
    message = str(err.value)
    assert "\n" not in message
    assert "saving step 2 failed ([Errno 28] No space left on device)" in message
    assert "the newest complete checkpoint is step 1" in message
    monkeypatch.setattr(ckpt.manager, "wait_until_finished", disk_full)
    with pytest.raises(checkpoints.CheckpointSaveError, match="saving step 2 failed"):
        ckpt.save(3, _state(3.0), force=True)
    monkeypatch.undo()
    ckpt.manager.close()


def test_non_finite_inference_params_are_not_written(tmp_path):
    params = {"head": {"kernel": np.array([1.0, np.inf], np.float32)}}
    refused = r"\(not written\): tensor head/kernel holds 1 NaN/inf"
    with pytest.raises(NonFiniteWeightsError, match=refused):
        checkpoints.save_inference_params(tmp_path / "out", params, ModelConfig())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "field, value",
    [("checkpoint_every", 0), ("log_every", 0), ("total_steps", -5), ("keep_checkpoints", 0)],
)
def test_degenerate_loop_values_name_their_field(field, value):
    config = common.loop(10, demo=True)
    check_loop_config(config)
    config[field] = value
    with pytest.raises(ValueError, match=f"^config.{field}: {value} must be an integer >= "):
        check_loop_config(config)


@pytest.mark.parametrize(
    "field, value",
    [("base_lr", math.nan), ("base_lr", math.inf), ("base_lr", 0.0), ("eps", -1.0), ("b2", 1.0)],
)
def test_a_learning_rate_that_trains_on_nan_is_refused(field, value):
    optim = common.optim(1000)
    check_optim(optim)
    optim[field] = value
    with pytest.raises(ValueError, match=f"^config.optim.{field}: "):
        check_optim(optim)


def test_checksums_do_not_depend_on_the_sharding():
    x = jnp.arange(8 * 6, dtype=jnp.float32).reshape(8, 6) / 7
    mesh = jax.make_mesh((len(jax.devices()),), ("d",))
    sharded = jax.device_put(
        x, jax.NamedSharding(mesh, jax.P("d") if 8 % len(jax.devices()) == 0 else jax.P())
    )
    assert checkpoints.state_digest({"x": x}) == checkpoints.state_digest({"x": sharded})
    flipped = np.asarray(x).copy()
    flipped.view(np.uint32)[3, 2] ^= 1 << 20
    assert checkpoints.state_digest({"x": flipped})[1] != checkpoints.state_digest({"x": x})[1]
    assert checkpoints.state_digest({"x": x.at[0, 0].set(jnp.nan)})[0] is False
