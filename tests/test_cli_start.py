"""A quiet, fast start: a CPU machine with libtpu installed (the test extra brings it) runs
dajax's commands without libtpu's start-up block (`dajax.platforms`), and predict keeps what
it compiled in the persistent compilation cache unless told not to."""

import importlib.util
import os
import subprocess
import sys

import pytest

from dajax import platforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBTPU_MARKS = ("TPU", "E0000", "libtpu", "InitGoogle")

needs_libtpu_without_tpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None or platforms.tpu_chips_present(),
    reason="needs libtpu installed on a machine without a TPU",
)


def _env(**extra):
    """A new user's environment: no platform named and no TPU settings (a TPU compile test in
    this worker sets libtpu's quiet `TPU_*` variables process-wide, which would hide the
    noise), with libtpu free to start even while another test process holds its lock."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "JAX_PLATFORMS" and not name.startswith(("TPU_", "LIBTPU_"))
    }
    return dict(env, PYTHONPATH=ROOT, ALLOW_MULTIPLE_LIBTPU_LOAD="1", **extra)


def _run(args, **extra):
    return subprocess.run(args, env=_env(**extra), capture_output=True, text=True, timeout=300)


def _libtpu_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(m in line for m in LIBTPU_MARKS)]


@needs_libtpu_without_tpu
@pytest.mark.slow
def test_predict_on_a_cpu_prints_no_line_from_libtpu(tmp_path):
    plain = _run([sys.executable, "-c", "import jax; jax.devices()"])
    assert _libtpu_lines(plain.stderr), "plain JAX no longer starts libtpu here: the check is moot"
    out = _run(
        [sys.executable, "-m", "dajax.predict", "--demo", "--input-size", "28"]
        + ["--outdir", str(tmp_path / "out")]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert _libtpu_lines(out.stderr) == []


@needs_libtpu_without_tpu
def test_a_platform_the_user_names_is_kept():
    code = "import dajax, jax; print(jax.config.jax_platforms, jax.devices()[0].platform)"
    chosen = _run([sys.executable, "-c", code])
    assert chosen.stdout.split() == ["cpu", "cpu"], chosen.stderr[-2000:]
    config_only = "import dajax, jax; print(jax.config.jax_platforms)"
    named = _run([sys.executable, "-c", config_only], JAX_PLATFORMS="tpu,cpu")
    assert named.stdout.split() == ["tpu,cpu"], named.stderr[-2000:]


@pytest.mark.slow
def test_predict_fills_the_compile_cache_unless_told_not_to(tmp_path):
    command = [sys.executable, "-m", "dajax.predict", "--demo", "--input-size", "28"]
    for flag, cache in (([], "on"), (["--no-compile-cache"], "off")):
        folder = tmp_path / cache
        out = _run(
            command + flag + ["--outdir", str(tmp_path / f"out_{cache}")],
            JAX_COMPILATION_CACHE_DIR=str(folder),
            JAX_PLATFORMS="cpu",
        )
        assert out.returncode == 0, out.stderr[-2000:]
        stored = list(folder.iterdir()) if folder.exists() else []
        assert bool(stored) == (cache == "on"), stored
