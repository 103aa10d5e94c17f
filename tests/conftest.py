"""Test-wide JAX settings: CPU, 8 virtual devices for sharding tests, full float32 matmuls."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, shared by the xdist workers and the
# subprocesses the tests start: the tiny models' programs compile once (keys are content
# hashes, so a cache left from an earlier run is only ever reused for identical programs).
# Always this folder, never the user's: `dajax.runtime` (and `launch/env.sh`) follow
# JAX_COMPILATION_CACHE_DIR, and would otherwise default to ~/.cache/dajax/jax.
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
    tempfile.gettempdir(), f"dajax-test-jax-cache-{os.getuid()}"
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


# Longest files first: with `--dist loadfile` each file runs on one worker, so starting the
# slow ones early keeps both workers busy to the end.
SLOW_FILES = ("tests/training/test_multiprocess.py", "tests/training/test_stages.py")


# The tiers `--fast` leaves out: `python -m pytest` (the README's command, which CI runs) runs
# every tier; `python -m pytest --fast` runs the unit tests alone, in a few minutes.
OUTSIDE_FAST_TIER = ("slow", "perf", "browser", "fuzz")


def pytest_addoption(parser):
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier: leave out tests marked " + ", ".join(OUTSIDE_FAST_TIER),
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--fast"):
        left_out = [i for i in items if any(m in i.keywords for m in OUTSIDE_FAST_TIER)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            gone = {id(i) for i in left_out}
            items[:] = [i for i in items if id(i) not in gone]
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FILES)))


def pytest_terminal_summary(terminalreporter):
    """Lists failed `perf` tests apart: they read XLA's program text (op names, loop and
    conditional counts, saved residuals), so after a JAX/XLA upgrade a failure there may be a
    rename rather than a regression; the behaviour tests say which."""
    failed = [r for r in terminalreporter.stats.get("failed", []) if "perf" in r.keywords]
    if failed:
        terminalreporter.section("performance suite (compiled program text): failures")
        for report in failed:
            terminalreporter.write_line(report.nodeid)
