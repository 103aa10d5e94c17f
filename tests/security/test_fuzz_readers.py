"""Fuzz the checkpoint readers with malformed `.pth` and safetensors files (issue 22).

Every case (`malformed.py`: targeted and seeded random mutations of valid tiny files) is loaded
in a child process (`load_many.py`) capped at `LIMIT_MIB` of address space and `PER_FILE_S`
seconds per file. Each must load, or fail with one line of a reader error class naming the
file; no crash signal, no hang, no MemoryError, and the child's peak memory stays low.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from malformed import pth_cases, safetensors_cases

SEED = 22
N_RANDOM = {"pth": 400, "safetensors": 300}
LIMIT_MIB = 1024  # address space of the child (numpy alone maps ~300 MiB)
PEAK_RSS_MIB = 400  # the largest legal case materialises ~70 MiB
PER_FILE_S = 5.0
READER_ERRORS = {"CheckpointFormatError", "UnsafeCheckpointError", "SafetensorsError"}
CHILD = os.path.join(os.path.dirname(__file__), "load_many.py")


def _write_cases(folder, cases, ext) -> dict[str, str]:
    files = {}
    for i, (name, data) in enumerate(cases):
        path = os.path.join(folder, f"{i:04d}{ext}")
        with open(path, "wb") as f:
            f.write(data)
        files[path] = name
    return files


def _run_child(files: dict[str, str]) -> list[dict]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, CHILD, str(LIMIT_MIB), str(PER_FILE_S), *files],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    lines = proc.stdout.splitlines()
    started = [line.split(" ", 1)[1] for line in lines if line.startswith("start ")]
    if proc.returncode != 0:
        last = files.get(started[-1], "?") if started else "before the first file"
        pytest.fail(f"child exited {proc.returncode} on case {last!r}: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in lines if line.startswith("{")]


def _judge(results: list[dict], files: dict[str, str]) -> list[str]:
    problems = []
    for r in results:
        case = f"{files[r['path']]} ({os.path.basename(r['path'])})"
        if r["outcome"] in ("hang", "memory"):
            problems.append(f"{case}: {r['outcome']} after {r['seconds']:.1f}s")
        elif r["outcome"] == "error":
            msg = r["message"]
            if r["error_type"] not in READER_ERRORS:
                problems.append(f"{case}: {r['error_type']}: {msg[:200]}")
            elif not msg.startswith(r["path"] + ": ") or "\n" in msg or len(msg) > 600:
                problems.append(f"{case}: not one line naming the file: {msg[:300]!r}")
    return problems


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_malformed_files_load_or_fail_with_one_line(kind, tmp_path):
    rng = np.random.default_rng(SEED)
    make = pth_cases if kind == "pth" else safetensors_cases
    files = _write_cases(tmp_path, make(rng, N_RANDOM[kind]), f".{kind}")
    start = time.perf_counter()
    results = _run_child(files)
    wall = time.perf_counter() - start
    assert len(results) == len(files)
    assert not _judge(results, files), "\n".join(_judge(results, files))
    outcomes = [r["outcome"] for r in results]
    peak = max(r["peak_rss_mib"] for r in results)
    assert peak < PEAK_RSS_MIB, f"child peak RSS {peak:.0f} MiB"
    assert results[0]["outcome"] == "ok"  # the unmutated base file
    print(
        f"{kind}: {len(files)} cases, {outcomes.count('ok')} loaded, "
        f"{outcomes.count('error')} refused, {wall:.1f}s, peak RSS {peak:.0f} MiB"
    )
