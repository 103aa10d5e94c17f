"""The test tiers: `python -m pytest --fast` leaves out the tests marked slow, perf (compiled
program text), browser and fuzz, and keeps the rest; plain `python -m pytest` runs them all."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["tests/app/test_web_app.py", "tests/security/test_fuzz_readers.py"]
FILES += ["tests/models/test_resample.py"]
MARKED = (
    "test_upload_a_photo_and_get_its_depth_in_the_browser",  # browser
    "test_malformed_files_load_or_fail_with_one_line",  # fuzz
    "test_resize_gradient_gathers_only",  # perf
)
UNMARKED = {
    "test_request_files_are_bounded_and_leave_with_the_process",
    "test_bilinear_matches_torch",
}


def _collected(*flags: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-n", "0", *flags, *FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line.split("::")[1].split("[")[0] for line in out.stdout.splitlines() if "::" in line}


@pytest.mark.slow
def test_the_fast_tier_leaves_out_the_marked_tests_and_keeps_the_rest():
    everything, fast = _collected(), _collected("--fast")
    assert set(MARKED) <= everything
    assert not set(MARKED) & fast
    assert UNMARKED <= fast < everything
