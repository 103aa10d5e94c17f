"""End-to-end stage runs on tiny procedural data: teacher, data engine, student, resume."""

import json
import os
import signal

import jax
import numpy as np
import optax
import pytest
from tiny_configs import tiny_student

from configs import eval as eval_config
from dajax import checkpoints, convert
from dajax.data.pseudo_labels import PseudoLabelSource
from dajax.eval import evaluate
from dajax.training import demo, loop, pseudo_label, student, teacher
from dajax.training.metrics_log import read_metrics
from dajax.training.state import create_state, make_train_step


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The whole demo pipeline, tiny: teacher -> pseudo-labels -> student -> eval table."""
    workdir = tmp_path_factory.mktemp("demo")
    config = tiny_student()
    before = config.to_dict()
    demo.run(config, str(workdir))
    assert config.to_dict() == before  # each stage ran on its own config
    return config, workdir


@pytest.fixture(scope="module")
def teacher_run(demo_run):
    config, workdir = demo_run
    return config.teacher_stage, str(workdir / "teacher"), str(workdir / "teacher" / "export")


@pytest.mark.slow
def test_teacher_trains_logs_and_exports(teacher_run):
    _, workdir, export = teacher_run
    logged = read_metrics(workdir)
    assert [m["step"] for m in logged] == [1, 2]
    assert all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in logged)
    assert logged[1]["lr/rest"] > 0
    assert logged[1]["lr/depth_head"] == pytest.approx(10 * logged[1]["lr/rest"])
    assert any(name.startswith("events") for name in os.listdir(os.path.join(workdir, "tb")))
    config, params = checkpoints.load_inference_params(export)
    assert config.dim == 64 and params["depth_head"]["layer1_rn"]["kernel"].shape[-1] == 16


@pytest.mark.slow
def test_data_engine_writes_resumable_shards(demo_run):
    config, workdir = demo_run
    shards = workdir / "pseudo_labels" / "shards"
    assert sorted(os.listdir(shards)) == [f"shard-0000{i}-of-00003.array_record" for i in range(3)]
    labels = PseudoLabelSource(str(shards))
    assert len(labels) == 16 and labels[0]["disparity"].shape == (32, 36)
    assert 0.0 <= labels[3]["disparity"].min() and labels[3]["disparity"].max() <= 1.0
    first = os.path.getmtime(shards / "shard-00000-of-00003.array_record")
    os.remove(shards / "shard-00001-of-00003.array_record")
    teacher_dir = str(workdir / "teacher" / "export")
    stage = demo.pseudo_label_config(config, teacher_dir)
    assert stage.teacher_weights == teacher_dir and not config.pseudo_stage.teacher_weights
    pseudo_label.run(stage, str(workdir / "pseudo_labels"))
    assert os.path.getmtime(shards / "shard-00000-of-00003.array_record") == first  # skipped
    assert len(PseudoLabelSource(str(shards))) == 16  # the missing shard was redone


@pytest.mark.slow
def test_student_logs_every_loss_and_the_demo_evaluates_both(demo_run):
    _, workdir = demo_run
    logged = read_metrics(str(workdir / "student"))
    assert {"loss_labeled", "loss_unlabeled", "loss_feature"} <= set(logged[-1])
    assert all(np.isfinite(m["loss"]) for m in logged)
    with open(workdir / "eval.json") as f:
        results = json.load(f)
    references = {"trivial: constant disparity", "trivial: vertical ramp", "oracle: token grid"}
    assert set(results) == {"teacher", "student"} | references
    for scores in results.values():
        assert scores["images"] == 4 and 0 <= scores["a1"] <= 1 and scores["abs_rel"] > 0


@pytest.mark.slow
def test_eval_stage_scores_the_demo_checkpoint(demo_run, tmp_path, capsys):
    _, workdir = demo_run
    weights = workdir / "student" / "export"
    config = eval_config.get_config(f"dataset=procedural,input_size=28,flip,weights={weights}")
    config.benchmarks.procedural.data.update(num_scenes=3, height=32, width=36)
    results = evaluate.run(config, str(tmp_path))
    assert "| procedural | 3 |" in capsys.readouterr().out
    with open(tmp_path / "eval.json") as f:
        saved = json.load(f)
    assert saved["protocol"] == "relative" and saved["flip"] is True
    assert saved["results"] == results
    assert 0 < results["procedural"]["abs_rel"] and 0 <= results["procedural"]["a1"] <= 1
    config.impl = "reference"  # the plain model scores the same checkpoint alike
    plain = evaluate.run(config, str(tmp_path / "reference"))["procedural"]
    assert plain["abs_rel"] == pytest.approx(results["procedural"]["abs_rel"], rel=1e-3)


@pytest.mark.slow
def test_convert_writes_a_runs_checkpoint_params(teacher_run, tmp_path, capsys):
    _, workdir, exported = teacher_run
    _, want = checkpoints.load_inference_params(exported)
    runs = {
        "convert": lambda out: convert.main([workdir, out]),
        "convert --step": lambda out: convert.main([workdir, out, "--step", "2"]),
    }
    for name, run in runs.items():
        out = tmp_path / name.replace(" --", "_")
        assert run(str(out)) == 0, name
        assert f"exported step 2 of {workdir}" in capsys.readouterr().out
        _, got = checkpoints.load_inference_params(out)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert convert.main([workdir, str(tmp_path / "x"), "--step", "7"]) == 2
    assert "no checkpoint for step 7" in capsys.readouterr().err
    assert convert.main([str(tmp_path), str(tmp_path / "x")]) == 2
    assert "neither a dajax checkpoint" in capsys.readouterr().err


def _signal_at_step_2(monkeypatch, signum):
    """Makes the loop send this process `signum` once it has logged step 2; returns the
    original `loop._log_step`."""
    log_step = loop._log_step

    def signal_at_step_2(step, *args):
        log_step(step, *args)
        if step == 2:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(loop, "_log_step", signal_at_step_2)
    return log_step


@pytest.mark.slow
def test_ctrl_c_saves_like_sigterm_and_exits_130(teacher_run, tmp_path, monkeypatch):
    config = teacher_run[0].copy_and_resolve_references()
    config.total_steps = 4
    _signal_at_step_2(monkeypatch, signal.SIGINT)
    handler = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a background job
    with pytest.raises(loop.Preempted) as stopped:
        teacher.run(config, str(tmp_path / "run"))
    assert stopped.value.code == 130 and stopped.value.step == 2
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2"]
    assert signal.getsignal(signal.SIGINT) is handler  # the loop's own handler is gone


@pytest.mark.slow
def test_sigterm_saves_and_the_resumed_run_matches_the_uninterrupted_one(
    teacher_run, tmp_path, monkeypatch
):
    config = teacher_run[0].copy_and_resolve_references()
    config.total_steps = 4
    teacher.run(config, str(tmp_path / "full"))

    log_step = _signal_at_step_2(monkeypatch, signal.SIGTERM)
    with pytest.raises(loop.Preempted) as preempted:
        teacher.run(config, str(tmp_path / "split"))
    assert preempted.value.code == 143 and preempted.value.step == 2
    assert not (tmp_path / "split" / "export").exists()
    monkeypatch.setattr(loop, "_log_step", log_step)
    teacher.run(config, str(tmp_path / "split"))  # the restarted job resumes at step 2

    losses_full = [m["loss"] for m in read_metrics(str(tmp_path / "full"))]
    losses_split = [m["loss"] for m in read_metrics(str(tmp_path / "split"))]
    assert len(losses_full) == 4
    np.testing.assert_allclose(losses_split, losses_full, rtol=1e-6)
    _, p_full = checkpoints.load_inference_params(tmp_path / "full" / "export")
    _, p_split = checkpoints.load_inference_params(tmp_path / "split" / "export")
    for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(p_split), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_online_teacher_and_ablation_switches(teacher_run, tmp_path):
    _, _, export = teacher_run
    config = tiny_student()
    config.online_teacher = True
    config.teacher_weights = export
    config.loss.feature = False
    config.loss.color_blur = config.loss.cutmix = False
    config.mesh.fsdp = 1  # data parallel over the 8 devices (the demo fixture ran FSDP)
    student.run(config, str(tmp_path / "online"))
    last = read_metrics(str(tmp_path / "online"))[-1]
    assert "loss_unlabeled" in last and "loss_feature" not in last


def test_non_finite_losses_are_never_applied():
    params = {"w": np.ones(3, np.float32)}
    tx = optax.sgd(0.1)
    step = jax.jit(make_train_step(lambda p, b, f, r: (p["w"].sum() * b["x"], {}), tx, seed=0))
    state, _ = step(create_state(params, tx), {"x": np.float32(np.nan)}, None)
    np.testing.assert_array_equal(state.params["w"], 1.0)
    assert int(state.skipped) == 1
    state, _ = step(state, {"x": np.float32(1.0)}, None)
    np.testing.assert_allclose(state.params["w"], 0.9)
