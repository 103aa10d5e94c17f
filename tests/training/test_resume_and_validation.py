"""A tiny teacher run: validation during training, best.json, curves.png; resuming past a
corrupt newest checkpoint (a garbled iterator JSON, a truncated array file); log lines that
do not collide with the progress bar."""

import glob
import logging
import os
import re
import shutil
import sys

import numpy as np
import pytest
from PIL import Image
from tiny_configs import tiny_student

from dajax.training import teacher
from dajax.training.curves import plot_curves
from dajax.training.metrics_log import read_metrics
from dajax.training.validation import read_best


def _config(steps: int, eval_every: int = 0):
    config = tiny_student().teacher_stage.copy_and_resolve_references()
    config.total_steps = steps
    config.image_every = 0
    config.eval_every = eval_every
    config.eval.data.update(num_scenes=3, height=32, width=36)
    config.eval.update(input_size=28, batch_size=4)
    return config


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    """4 steps, checkpoints at 2 and 4, validation at 2 and 4."""
    workdir = str(tmp_path_factory.mktemp("validated"))
    teacher.run(_config(4, eval_every=2), workdir)
    return workdir


@pytest.mark.slow
def test_validation_is_logged_and_the_best_step_recorded(validated_run):
    logged = read_metrics(validated_run)
    val = {m["step"]: m for m in logged if "val/abs_rel" in m}
    assert sorted(val) == [2, 4]
    for m in val.values():
        assert m["val/abs_rel"] > 0 and 0 <= m["val/a1"] <= 1
    best = read_best(validated_run)
    best_step = min(val, key=lambda s: val[s]["val/abs_rel"])
    assert best["step"] == best_step and best["metric"] == "abs_rel"
    assert best["scores"]["abs_rel"] == pytest.approx(val[best_step]["val/abs_rel"])


@pytest.mark.slow
def test_curves_png_shows_losses_learning_rate_and_validation(validated_run, tmp_path):
    with Image.open(os.path.join(validated_run, "curves.png")) as png:
        assert png.format == "PNG" and png.width > 400
    panels = plot_curves(read_metrics(validated_run), str(tmp_path / "c.png"))
    assert panels == ["losses", "learning rate", "validation", "gradient norm"]


def _last_step_dir(workdir: str, step: int) -> str:
    return os.path.join(workdir, "checkpoints", str(step))


def _console(caplog):
    """A console handler on the root logger, as `runtime.setup_logging` installs."""
    caplog.set_level(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


@pytest.mark.slow
def test_resume_skips_corrupt_steps_and_keeps_them_aside(validated_run, tmp_path, caplog, capsys):
    workdir = str(tmp_path / "run")
    shutil.copytree(validated_run, workdir)
    iterator_json = os.path.join(_last_step_dir(workdir, 4), "data", "process_0-of-1.json")
    with open(iterator_json, "w") as f:
        f.write('{"next_ind')
    handler = _console(caplog)
    try:
        teacher.run(_config(5), workdir)
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert f"checkpoint step 4 is unreadable, skipped: {iterator_json}: JSONDecodeError" in err
    assert "resumed from step 2" in err
    [aside] = glob.glob(_last_step_dir(workdir, 4) + ".corrupt-*")
    with open(os.path.join(aside, "data", "process_0-of-1.json")) as f:
        assert f.read() == '{"next_ind'  # kept as it was
    # Log lines start on their own line, never glued to the progress bar's last frame.
    assert "steps: " in err and "LOG step 3: " in err
    for segment in re.split(r"[\r\n]", err):
        if "LOG step" in segment:
            assert segment.startswith("LOG step"), segment
    logged = read_metrics(workdir)
    first, resumed = logged[: len(logged) - 3], logged[-3:]
    assert [m["step"] for m in resumed] == [3, 4, 5]
    losses = {m["step"]: m["loss"] for m in first if "loss" in m}
    np.testing.assert_allclose([m["loss"] for m in resumed[:2]], [losses[3], losses[4]], rtol=1e-6)

    # The newest step (5) loses the end of its biggest array file: resume from 4.
    state_files = glob.glob(os.path.join(_last_step_dir(workdir, 5), "state", "**"), recursive=True)
    biggest = max((p for p in state_files if os.path.isfile(p)), key=os.path.getsize)
    os.truncate(biggest, os.path.getsize(biggest) // 2)
    caplog.clear()
    teacher.run(_config(6), workdir)
    warning = next(r.getMessage() for r in caplog.records if "unreadable" in r.getMessage())
    assert warning.startswith("checkpoint step 5 is unreadable, skipped:")
    assert os.path.join(_last_step_dir(workdir, 5), "state") in warning
    assert "resumed from step 4" in caplog.text
    assert len(glob.glob(_last_step_dir(workdir, 5) + ".corrupt-*")) == 1
    assert read_metrics(workdir)[-1]["step"] == 6


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_an_error_not_corruption(validated_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(validated_run, workdir)
    config = _config(6)
    config.model.custom = dict(config.model.custom, features=8)
    with pytest.raises(ValueError, match="checkpoints/4: does not fit this run's model"):
        teacher.run(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
