"""The loop's logging off the step's path: the writer thread keeps every line in order, a
failed write stops the run with its error, curves.png follows the checkpoints, and the
non-finite guard still names the step."""

import json
import os

import ml_collections
import numpy as np
import optax
import pytest

from dajax import runtime
from dajax.training import loop, metrics_log
from dajax.training.metrics_log import MetricsLog, read_metrics


class _Batches:
    """One value of `x` per step, as a batch of 8 (one per test device); the iterator's state
    is the index of the next step (JSON bytes, as grain's checkpoint handler saves it)."""

    def __init__(self, xs):
        self.xs, self.next = list(xs), 0

    def __next__(self):
        x = self.xs[self.next]
        self.next += 1
        return {"x": np.full(8, x, np.float32)}

    def get_state(self) -> bytes:
        return json.dumps(self.next).encode()

    def set_state(self, state: bytes) -> None:
        self.next = json.loads(state)

    def start_prefetch(self) -> None:
        """grain's handler calls it after a restore; nothing runs ahead here."""


def _loss(params, batch, frozen, rng):
    return (params["w"].sum() * batch["x"]).mean(), {"x": batch["x"].mean()}


def _train(workdir, xs, checkpoint_every=2, on_log=None):
    """`loop.train` of a 4-weight model for len(xs) steps, logging every step."""
    config = ml_collections.ConfigDict(
        {
            "seed": 0,
            "total_steps": len(xs),
            "log_every": 1,
            "checkpoint_every": checkpoint_every,
            "keep_checkpoints": 10,
            "eval_every": 0,
            "mesh": {"fsdp": 1, "fsdp_min_size": 1024},
        }
    )
    recipe = loop.Recipe(
        init_params=lambda: {"w": np.ones(4, np.float32)},
        tx=optax.sgd(0.1),
        loss_fn=_loss,
        batches=_Batches(xs),
        on_log=on_log,
    )
    return loop.train(recipe, config, str(workdir))


class _DeferringHook:
    """An `on_log` hook that, like the depth preview, writes each call's record at its next
    call: only `close` writes the last one."""

    def __init__(self):
        self.pending, self.written = None, []

    def __call__(self, step, state, log):
        self.close(log)
        self.pending = step

    def close(self, log):
        if self.pending is not None:
            self.written.append(self.pending)
            log.scalars(self.pending, {"hook": 1.0})
        self.pending = None


class _CompileWatch:
    """An `on_log` hook that opens a `runtime.CompileClock` at the first log step and closes
    it after the last one."""

    def __init__(self):
        self.clock = runtime.CompileClock()

    def __call__(self, step, state, log):
        if step == 1:
            self.clock.__enter__()

    def close(self, log):
        self.clock.__exit__(None, None, None)


def test_nothing_compiles_between_the_steps_checkpoint_saves_included(tmp_path):
    watch = _CompileWatch()
    _train(tmp_path, [1.0] * 5, on_log=watch)  # saves at steps 2, 4 and 5
    assert (watch.clock.programs, watch.clock.seconds) == (0, 0.0)


def test_the_loop_lets_a_deferring_hook_write_its_last_record(tmp_path):
    hook = _DeferringHook()
    _train(tmp_path, [1.0] * 5, on_log=hook)
    assert hook.written == [1, 2, 3, 4, 5]
    assert [m["step"] for m in read_metrics(tmp_path) if "hook" in m] == [1, 2, 3, 4, 5]


def test_the_writer_keeps_every_line_in_order(tmp_path):
    rgb = np.zeros((14, 28, 3), np.uint8)
    with MetricsLog(tmp_path) as log:
        for step in range(1, 201):
            log.scalars(step, {"loss": 1.0 / step})
            if step % 50 == 0:
                log.image(step, "preview/0", rgb)
                log.write_curves()
    logged = read_metrics(tmp_path)
    assert [m["step"] for m in logged] == list(range(1, 201))
    assert [m["loss"] for m in logged] == [1.0 / s for s in range(1, 201)]
    times = [m["time"] for m in logged]
    assert times == sorted(times)
    assert os.path.isfile(tmp_path / "curves.png")
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tb"))


def test_a_failed_write_is_raised_by_the_next_call(tmp_path, monkeypatch):
    def full_disk(records, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(metrics_log, "plot_curves", full_disk)
    log = MetricsLog(tmp_path)
    log.scalars(1, {"loss": 1.0})
    log.write_curves()
    with pytest.raises(OSError, match="No space left on device"):
        log.flush()
    with pytest.raises(OSError, match="No space left on device"):
        log.scalars(2, {"loss": 0.5})
    with pytest.raises(OSError, match="No space left on device"):
        log.close()
    assert [m["step"] for m in read_metrics(tmp_path)] == [1]


def test_a_run_whose_logs_cannot_be_written_stops_with_that_error(tmp_path, monkeypatch):
    def full_disk(records, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(metrics_log, "plot_curves", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        _train(tmp_path, [1.0] * 6)  # curves are first drawn at the checkpoint of step 2
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]


@pytest.mark.parametrize("interval, drawn_at", [(0.0, [2, 4, 5]), (60.0, [2, 5])])
def test_curves_are_drawn_at_checkpoints_and_at_the_end(tmp_path, monkeypatch, interval, drawn_at):
    """At each checkpoint, at most every `interval` seconds, and at the end."""
    monkeypatch.setattr(metrics_log, "CURVES_MIN_INTERVAL_S", interval)
    drawn = []
    draw = metrics_log.plot_curves

    def counted(records, path):
        drawn.append(len(records))
        return draw(records, path)

    monkeypatch.setattr(metrics_log, "plot_curves", counted)
    _train(tmp_path, [1.0] * 5)
    assert drawn == drawn_at
    assert os.path.isfile(tmp_path / "curves.png")


def test_a_non_finite_step_stops_the_run_naming_it(tmp_path):
    with pytest.raises(FloatingPointError, match=r"^step 3: 1 step\(s\) had a non-finite loss"):
        _train(tmp_path, [1.0, 1.0, np.nan, 1.0])
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # step 3 was never saved


def test_the_loop_reports_its_compiles_and_its_pace(tmp_path, caplog):
    caplog.set_level("INFO", logger="dajax")
    with runtime.CompileClock() as clock:
        _train(tmp_path, [1.0] * 3)
    assert clock.programs >= 2 and clock.seconds > 0  # at least the state's init and the step
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("compiled the train step in ") for m in messages)
    assert any(m.startswith(f"training {tmp_path}: ") and "compiling" in m for m in messages)
    assert any(m.startswith("steps 1-3: ") and m.endswith(" steps/s") for m in messages)


def test_the_persistent_cache_follows_the_environment(monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv(runtime.CACHE_SWITCH, raising=False)
    assert runtime.compilation_cache_dir() == os.path.expanduser("~/.cache/dajax/jax")
    assert runtime.compilation_cache_dir("/x") == "/x"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/shared/jax")
    assert runtime.compilation_cache_dir() == "/shared/jax"
    monkeypatch.setenv(runtime.CACHE_SWITCH, "0")
    assert runtime.compilation_cache_dir() is None
    assert runtime.compilation_cache_dir("/x") is None
