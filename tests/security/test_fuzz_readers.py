"""Fuzz the checkpoint readers with malformed `.pth` and safetensors files (issue 22).

Every case (`malformed.py`: targeted and seeded random mutations of valid tiny files) is loaded
in a child process policed from outside (`harness.py`: a wall-time and a memory limit per file,
enforced by killing the child). Each must load, or fail with one line of a reader error class
naming the file; no crash signal, no hang, no MemoryError, and the child's peak memory stays low.
"""

import time

import numpy as np
import pytest
from harness import judge, run_cases, write_cases
from malformed import pth_cases, safetensors_cases

SEED = 22
N_RANDOM = {"pth": 400, "safetensors": 300}
PEAK_RSS_MIB = 400  # the largest legal case materialises ~70 MiB


@pytest.mark.fuzz
@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_malformed_files_load_or_fail_with_one_line(kind, tmp_path):
    rng = np.random.default_rng(SEED)
    make = pth_cases if kind == "pth" else safetensors_cases
    cases = write_cases(tmp_path, make(rng, N_RANDOM[kind]), f".{kind}", "either")
    start = time.perf_counter()
    results = run_cases(kind, [c.path for c in cases])
    wall = time.perf_counter() - start
    assert len(results) == len(cases)
    problems = judge(results, cases)
    assert not problems, "\n".join(problems)
    outcomes = [r["outcome"] for r in results]
    peak = max(r.get("peak_rss_mib", 0) for r in results)
    assert peak < PEAK_RSS_MIB, f"child peak RSS {peak:.0f} MiB"
    print(
        f"{kind}: {len(cases)} cases, {outcomes.count('ok')} loaded, "
        f"{outcomes.count('error')} refused, {wall:.1f}s, peak RSS {peak:.0f} MiB"
    )
