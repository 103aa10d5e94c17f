"""`python -m dajax.main`: one-line errors for a user's mistakes, --help, configs anywhere."""

import os
import shutil
import socket
import subprocess
import sys
import zipfile

import pytest

from dajax import main as cli
from dajax.data.registry import build_source, check_training_data
from dajax.training.workdir_lock import locked_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER = os.path.join(ROOT, "configs", "teacher.py")
EVAL = os.path.join(ROOT, "configs", "eval.py")


def _error_line(capsys, argv) -> str:
    """Runs the CLI in-process; asserts exit status 2 and a single stderr line; returns it."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([f"--config={ROOT}/configs/teachr.py", "--workdir=W"], "teachr.py: no such config file"),
        ([f"--config={TEACHER}:dmo", "--workdir=W"], "unknown config argument 'dmo'"),
        (
            [f"--config={TEACHER}:demo", "--config.init.dinov=x", "--workdir=W"],
            '--config.init.dinov: no such config field (did you mean "dinov2"?)',
        ),
        ([f"--config={TEACHER}:demo", "--config.total_steps=ten", "--workdir=W"], "total_steps"),
        ([f"--config={TEACHER}:demo", "--workdr=W"], "Unknown command line flag 'workdr'"),
        ([f"--config={TEACHER}:demo"], "usage: python -m dajax.main"),
    ],
)
def test_config_mistakes_are_one_line(capsys, argv, expected):
    assert expected in _error_line(capsys, argv)


def test_missing_weights_and_data_files_are_one_line(capsys, tmp_path):
    missing = tmp_path / "nope.pth"
    line = _error_line(capsys, [f"--config={EVAL}:weights={missing}", f"--workdir={tmp_path}"])
    assert line == f"error: {missing}: no such checkpoint file"
    metric = os.path.join(ROOT, "configs", "metric.py")
    argv = [f"--config={metric}:dataset=nyu,root={tmp_path}/nyu", f"--workdir={tmp_path}/w"]
    assert f"{tmp_path}/nyu: NYUv2 h5 folder not found" in _error_line(capsys, argv)


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    argv = [f"--config={EVAL}:weights={tmp_path}/nope.pth", f"--workdir={tmp_path}", "--debug"]
    with pytest.raises(FileNotFoundError):
        cli.main(argv)
    monkeypatch.setenv("DAJAX_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(argv[:-1])


def test_a_locked_workdir_names_its_holder(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    with locked_workdir(workdir):
        line = _error_line(capsys, [f"--config={TEACHER}:demo", f"--workdir={workdir}"])
    assert "this workdir is in use by host" in line and f"pid {os.getpid()}" in line
    assert not os.path.exists(os.path.join(workdir, "config.json"))  # nothing was touched


def test_an_empty_data_path_says_which_field_to_set():
    from configs import student

    with pytest.raises(ValueError, match=r"'path' is empty; .*--config\.data\.unlabeled\.path="):
        build_source(student.get_config("online").data.unlabeled)
    with pytest.raises(ValueError, match=r"'pseudo_labels': 'path' is empty"):
        build_source(student.get_config().data.pseudo)


@pytest.mark.parametrize(
    "config, field",
    [("teacher.py:variant=vitl", "labeled"), ("student.py:online", "labeled")],
)
def test_a_full_size_run_on_procedural_scenes_stops_at_start_up(capsys, tmp_path, config, field):
    workdir = tmp_path / "run"
    argv = [f"--config={ROOT}/configs/{config}", f"--workdir={workdir}"]
    line = _error_line(capsys, argv)
    assert f"config.data.{field} holds the built-in procedural scenes" in line
    assert "--config.data.allow_procedural=True" in line
    assert not workdir.exists()  # stopped before the workdir, the model or any compile


def test_procedural_scenes_at_full_size_on_purpose():
    from configs import metric, student, teacher

    config, _ = cli.parse_flags(
        ["x", f"--config={TEACHER}:variant=vitl", "--config.data.allow_procedural=True"]
    )
    check_training_data(config.data)  # the opt-in
    check_training_data(teacher.get_config("demo").data)
    check_training_data(student.get_config("demo").data)
    check_training_data(metric.get_config("dataset=procedural").data)  # named on purpose
    check_training_data(metric.get_config("dataset=nyu").data)  # real data
    online = student.get_config("online").data
    with online.unlocked():
        online.labeled = ((metric.get_config("dataset=nyu").data.labeled[0][0], 1.0),)
        online.unlabeled = student.get_config("demo").data.unlabeled
    with pytest.raises(ValueError, match=r"^config\.data\.unlabeled holds"):
        check_training_data(online)


def test_help_lists_stages_options_and_a_configs_fields(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert set(cli.STAGE_CONFIGS) == set(cli._stages())
    for stage, config in cli.STAGE_CONFIGS.items():
        assert f"  {stage}" in out and f"--config={config}" in out
    assert "Teacher: DINOv2 encoder + fresh DPT head" in out  # from the config's docstring
    for option in ("--config=FILE", "--config.FIELD=VALUE", "--workdir=DIR", "--debug"):
        line = next(line for line in out.splitlines() if line.strip().startswith(option))
        assert "default" in line, line
    assert cli.main([f"--config={TEACHER}:demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Labeled data: `config.data.labeled`" in out  # the config's docstring
    assert "  total_steps = 150" in out and "  eval_every = 0" in out


@pytest.mark.parametrize("spelling", ["configs/teacher.py", "teacher", "teacher.py"])
def test_the_shipped_configs_resolve_by_name_from_any_folder(spelling, tmp_path, monkeypatch):
    """The README's `--config=configs/...` works from another folder, and so do bare names."""
    monkeypatch.chdir(tmp_path)
    argv = cli.resolve_config_arg(["prog", f"--config={spelling}:demo,steps=3", "--workdir=w"])
    assert argv[1] == f"--config={TEACHER}:demo,steps=3"
    config, workdir = cli.parse_flags(argv)
    assert config.stage == "teacher" and config.total_steps == 3 and workdir == "w"
    assert cli.resolve_config_arg(["prog", "--config", spelling])[1] == f"--config={TEACHER}"


def test_a_local_file_wins_over_a_shipped_config_and_a_typo_lists_the_shipped_ones(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    mine = tmp_path / "configs" / "teacher.py"
    shutil.copy(TEACHER, mine)
    assert cli.resolve_config_arg(["prog", "--config=configs/teacher.py"])[1] == (
        "--config=configs/teacher.py"
    )
    assert cli.main(["--config=techer:demo", "--workdir=w"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config: techer: no such config file") and "teacher" in err
    assert "Traceback" not in err


def _install_wheel(tmp_path) -> str:
    """Builds dajax's wheel from a copy of the checkout and unpacks it into a folder, as pip
    would install it; returns that folder."""
    source = tmp_path / "source"
    for part in ("dajax", "configs"):
        shutil.copytree(os.path.join(ROOT, part), source / part)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, part), source / part)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "wheel"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("dajax-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return str(site)


@pytest.mark.slow
def test_the_installed_package_runs_the_shipped_configs_and_yours_from_any_folder(tmp_path):
    """Installed from its wheel (nothing of the checkout on the path), `configs` ships beside
    `dajax` with the stand-in encoder; the README's `--config=configs/teacher.py` resolves from
    another folder, and a config file outside the checkout imports `configs.common`."""
    site = _install_wheel(tmp_path)
    assert os.path.isfile(os.path.join(site, "configs", "standin_encoder.safetensors"))
    mine = tmp_path / "my_teacher.py"
    shutil.copy(TEACHER, mine)
    env = dict(os.environ, PYTHONPATH=site, JAX_PLATFORMS="cpu")
    env.pop("DAJAX_DEBUG", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for config in ("configs/teacher.py", str(mine)):
        out = subprocess.run(
            [sys.executable, "-m", "dajax.main", f"--config={config}:demo"]
            + ["--config.stage=nope", "--workdir=w"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, out.stderr
        assert "error: unknown stage 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_the_stages_load_without_starting_the_jax_backend():
    """`main` imports the stages before `runtime.initialize` starts `jax.distributed`, which
    must come before any backend use: no stage module may touch a device at import."""
    with socket.socket() as free:
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    code = (
        "from dajax import main; main._stages(); import jax; "
        f"jax.distributed.initialize('localhost:{port}', 1, 0); print('initialised')"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "initialised" in out.stdout, out.stderr[-2000:]


def test_an_empty_image_folder_path_is_not_called_a_missing_folder():
    from dajax.data.unlabeled import list_images

    with pytest.raises(
        ValueError, match=r"^no image folder or list file given \(the path is empty\)"
    ):
        list_images("")


def test_broad_demo_keeps_labeled_cameras_level_and_draws_the_rest_broadly():
    """`demo,broad`: the paper's split, a narrow labeled set against a broader unlabeled pool
    and a held-out set drawn like the pool; the sources the registry builds honour it."""
    from configs import common, student

    config = student.get_config("demo,broad")
    labeled = config.data.labeled[0][0]
    assert (tuple(labeled.pitch_range), tuple(labeled.roll_range)) == ((-20.0, -3.0), (0.0, 0.0))
    for spec in (config.data.unlabeled, config.final_eval.data, config.pseudo_stage.data.unlabeled):
        assert tuple(spec.roll_range) == common.BROAD_CAMERAS["roll_range"]
        assert tuple(spec.pitch_range) == common.BROAD_CAMERAS["pitch_range"]
    assert tuple(student.get_config("demo").final_eval.data.roll_range) == (0.0, 0.0)
    pool = build_source(config.data.unlabeled)
    assert (pool.pitch_range, pool.roll_range) == ((-30.0, 5.0), (-20.0, 20.0))
    assert build_source(labeled).roll_range == (0.0, 0.0)


def test_demo_from_dinov2_weights_takes_the_released_shape(tmp_path):
    """`demo,dinov2=PATH` swaps the small demo encoder for the released variant's shape, in the
    teacher stage too, so a DINOv2 hub checkpoint of that variant loads into both."""
    import jax
    import numpy as np

    from configs import student
    from dajax.models import param_shapes
    from dajax.training.setup import model_from_config
    from dajax.weights.depth_anything_keys import flax_to_official
    from dajax.weights.pretrained import load_dinov2_encoder
    from dajax.weights.safetensors_io import save_safetensors

    demo = student.get_config("demo").model  # what --help shows is what is built
    assert (demo.encoder, demo.custom.dim) == ("custom", 192)
    built = model_from_config(demo)[1]
    assert (built.encoder, built.dim) == ("custom", 192)
    path = str(tmp_path / "dinov2_vits14_pretrain.safetensors")
    config = student.get_config(f"demo,dinov2={path}")
    for stage in (config, config.teacher_stage):
        assert (stage.model.encoder, dict(stage.model.custom)) == ("vits", {})
        assert stage.init.dinov2 == path
    model, model_config = model_from_config(config.model)
    encoder = param_shapes(model)["pretrained"]
    hub = flax_to_official(
        {"pretrained": jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), encoder)}
    )
    save_safetensors(path, {k.removeprefix("pretrained."): v for k, v in hub.items()})
    qkv = load_dinov2_encoder(config.teacher_stage.init.dinov2, model_config)["blocks_11"]["attn"]
    assert qkv["qkv"]["kernel"].shape == (384, 1152) and (qkv["qkv"]["kernel"] == 0.5).all()


@pytest.mark.parametrize(
    "custom, message",
    [({}, "encoder 'custom' needs its architecture"), ({"dims": 3}, "unknown ModelConfig fields")],
)
def test_a_custom_encoder_without_a_valid_architecture_is_a_config_error(custom, message):
    from configs import student
    from dajax.training.setup import model_from_config

    config = student.get_config("demo").model
    config.custom = custom
    with pytest.raises(ValueError, match=f"config.model.*{message}"):
        model_from_config(config)
