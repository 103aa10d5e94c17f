"""Fine-tuning a released model on a user's RGB-D folders from the command line alone
(`docs/finetune.md`): the whole checkpoint as init, sources as `KIND:FIELD=VALUE,...`, the
start-up and save lines, the schedule notes, and predict on the exported result."""

import io
import os
import re

import cv2
import jax
import numpy as np
import pytest
from tiny_configs import TINY_MODEL

from configs import teacher as teacher_config
from dajax import main as cli
from dajax.inference import DepthEstimator
from dajax.training import loop, setup
from dajax.training.optimizer import resume_note, warmup_note
from dajax.weights.depth_anything_keys import flax_to_official
from dajax.weights.safetensors_io import save_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEACHER = os.path.join(ROOT, "configs", "teacher.py")
STUDENT = os.path.join(ROOT, "configs", "student.py")
PAIRS = 20


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A random-weight V2 checkpoint in the official layout (`depth_anything_v2_*`, so V2 by
    its name) of the tiny test encoder, and its params."""
    config = teacher_config.get_config("demo")
    config.model.custom = TINY_MODEL
    params = setup.initial_params(setup.model_config(config.model), "", seed=3)
    path = tmp_path_factory.mktemp("weights") / "depth_anything_v2_tiny.safetensors"
    save_safetensors(path, flax_to_official(params))
    return str(path), params


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """`rgb/` (PNG photos) and `depth/` (16-bit PNG millimetres) holding `PAIRS` pairs."""
    root = tmp_path_factory.mktemp("rgbd")
    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth"):
        (root / sub).mkdir()
    for i in range(PAIRS):
        image = rng.integers(0, 255, (36, 40, 3), np.uint8)
        depth_mm = rng.integers(500, 9000, (36, 40)).astype(np.uint16)
        cv2.imwrite(str(root / "rgb" / f"{i:03d}.png"), image)
        cv2.imwrite(str(root / "depth" / f"{i:03d}.png"), depth_mm)
    return str(root / "rgb"), str(root / "depth")


def _source(folders) -> str:
    rgb, depth = folders
    return f"paired_folders:images={rgb},depths={depth},depth_format=png16,depth_scale=1000"


def _argv(weights, folders, workdir, steps, *extra):
    return [
        f"--config={TEACHER}:steps={steps}",
        f"--workdir={workdir}",
        f"--config.init.weights={weights}",
        f"--config.data.labeled={_source(folders)}",
        "--config.data.crop=28",
        "--config.data.labeled_batch=8",
        "--config.data.workers=0",
        "--config.log_every=1",
        "--config.checkpoint_every=2",
        "--config.image_every=0",
        *extra,
    ]


def test_the_head_starts_as_the_checkpoints(released, folders):
    path, saved = released
    config, _ = cli.parse_flags(["main", *_argv(path, folders, "W", 2)])
    _, model_config, init = setup.released_model(config.model, config.init)
    params = init()
    assert (model_config.dim, model_config.depth, model_config.version) == (64, 4, "v2")
    for part in ("pretrained", "depth_head"):
        for got, want in zip(
            jax.tree.leaves(params[part]), jax.tree.leaves(saved[part]), strict=True
        ):
            np.testing.assert_array_equal(got, want)


def test_init_mistakes_are_one_line_naming_the_field(released, folders, tmp_path, capsys):
    path, params = released
    unnamed = tmp_path / "tiny.safetensors"  # neither the name nor a config.json says V1/V2
    save_safetensors(unnamed, flax_to_official(params))
    metric = tmp_path / "depth_anything_v2_metric_hypersim_tiny.safetensors"
    save_safetensors(metric, flax_to_official(params))
    for weights, extra, expected in [
        (
            unnamed,
            (),
            r"cannot tell Depth Anything V1 from V2 .*\(--config\.init\.version=v1\|v2\)$",
        ),
        (metric, (), "is a metric model .* fine-tune it with configs/metric.py"),
        (path, ("--config.init.dinov2=x.pth",), "set either init.weights .* not both$"),
    ]:
        assert cli.main(_argv(weights, folders, tmp_path / "w", 2, *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.match(
            f"error: config.init.(weights|dinov2): .*{expected}", err[0]
        )
    config, _ = cli.parse_flags(
        ["main", *_argv(unnamed, folders, "W", 2, "--config.init.version=v2")]
    )
    assert setup.released_model(config.model, config.init)[1].version == "v2"


def test_sources_parse_from_the_command_line(folders):
    rgb, _ = folders
    config, _ = cli.parse_flags(
        ["main", f"--config={TEACHER}", f"--config.data.labeled={_source(folders)}",
         "--config.data.labeled=nyu_h5:path=/data/nyu,weight=0.5"]
    )  # fmt: skip
    (folder, w1), (nyu, w2) = config.data.labeled
    assert (folder.kind, folder.images, folder.depth_scale, folder.depth_format) == (
        "paired_folders", rgb, 1000.0, "png16"
    )  # fmt: skip
    assert (nyu.kind, nyu.path, w1, w2) == ("nyu_h5", "/data/nyu", 1.0, 0.5)
    student, _ = cli.parse_flags(
        ["main", f"--config={STUDENT}", "--config.data.unlabeled=image_folder:path=/photos"]
    )
    assert (student.data.unlabeled.kind, student.data.unlabeled.path) == ("image_folder", "/photos")


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "--config.data.labeled.0.0.depth_format=png",
            "error: --config.data.labeled.0.0.depth_format: config.data.labeled is a tuple "
            "and cannot be indexed; set it whole, e.g. --config.data.labeled=paired_folders:",
        ),
        (
            "--config.data.labeled=paired_folders:rgb=a,depths=b",
            "error: --config.data.labeled: paired_folders has no field 'rgb'; its fields: "
            "images, depths,",
        ),
        (
            "--config.data.labeled=paired_folders:images=a,depths=b,depth_scale=mm",
            "error: --config.data.labeled: depth_scale=mm is not a number",
        ),
        (
            "--config.data.labeled=paired_folders:images=a",
            "error: --config.data.labeled: paired_folders needs depths=...",
        ),
        ("--config.seed=nyu_h5:path=x", "error: --config.seed: not a data source field"),
        (
            "--config.data.labeled=procedural:num_scenes=3",
            "error: --config.data.labeled: 'procedural' sources take tuples and are set in a "
            "config file",
        ),
        ("--config.data.labeld=nyu_h5:path=x", "error: --config.data.labeld: no such config"),
    ],
)
def test_source_mistakes_are_one_line(capsys, override, expected):
    assert cli.main([f"--config={TEACHER}", "--workdir=W", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected), err


def test_schedule_notes():
    optim = teacher_config.get_config("steps=1000").optim
    optim.warmup_steps = 400
    assert warmup_note(optim, 1000) is None
    assert warmup_note(optim, 100) == (
        "config.optim.warmup_steps=400 >= config.total_steps=100: the learning rate only "
        "warms up, rising linearly to 25% of its peak at the last step, and never decays; "
        "lower --config.optim.warmup_steps (e.g. to 5) for a warm-up then a decay"
    )
    assert resume_note(optim, 700, 1000, 1000) is None
    assert resume_note(optim, 700, 1000, 2000) == (
        "resumed at step 700 with config.total_steps=2000 (was 1000): the learning-rate "
        "schedule is rebuilt for 2000 steps, so the base learning rate goes from 2.5e-06 to "
        "4.06e-06 at step 700 and decays to 0 at step 2000"
    )
    assert "no step runs" in resume_note(optim, 700, 1000, 500)


def test_the_eta_leaves_the_compile_out():
    progress = loop.tqdm(total=100, file=io.StringIO())
    progress.start_t = progress.last_print_t = progress._time() - 600  # a 10-minute compile
    loop._restart_clock(progress)
    progress.update(1)
    assert progress.format_dict["elapsed"] < 5
    progress.close()


@pytest.mark.slow
def test_fine_tune_resume_and_predict(released, folders, tmp_path, capsys):
    """Two runs through the CLI (the second resumes with one more step), then predict on the
    export; `main` logs to the console's stderr, checkpoint saves go to stdout."""
    path, _ = released
    workdir = tmp_path / "ft"
    assert cli.main(_argv(path, folders, workdir, 2, "--config.optim.warmup_steps=4")) == 0
    out, err = capsys.readouterr()
    assert f"saving checkpoint step 2 in {workdir / 'checkpoints'}" in out
    assert f"labeled source paired_folders (weight 1): {PAIRS} image/depth pairs" in err
    assert "config.optim.warmup_steps=4 >= config.total_steps=2: the learning rate" in err
    assert "initialised the whole model (encoder and head) from" in err

    assert cli.main(_argv(path, folders, workdir, 3)) == 0
    out, err = capsys.readouterr()
    assert "resumed at step 2 with config.total_steps=3 (was 2): the learning-rate" in err
    assert "saving checkpoint step 3" in out

    estimator = DepthEstimator.from_pretrained(str(workdir / "export"), input_size=28)
    disparity = estimator(np.zeros((36, 40, 3), np.uint8))
    assert disparity.shape == (36, 40) and np.isfinite(disparity).all()
