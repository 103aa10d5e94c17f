"""Load hostile files in child processes policed from outside, and judge what happened.

`run_cases(kind, paths)` starts `load_many.py` on the files. The child prints `start FILE`
before each file and one JSON result after it; this process gives each file `PER_FILE_S`
seconds of wall time and `RSS_LIMIT_MIB` of resident memory. Past either, it kills the child
with SIGKILL (which C code cannot ignore, unlike the SIGALRM of a timer inside the child),
records `hang` or `memory` for that file and starts a new child on the files after it. A
child that dies by itself (a segfault) records `crash` for its file and is restarted too, so
one run reports every bad file, not only the first.

`judge(results, cases)` lists the problems: a crash, hang or memory outcome; an error that is
not one of the allowed kinds or not one line starting with the case's path; a load where a
refusal was expected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import time

CHILD = os.path.join(os.path.dirname(__file__), "load_many.py")
PER_FILE_S = 5.0
RSS_LIMIT_MIB = 1024
AS_LIMIT_MIB = {"pth": 1024, "safetensors": 1024, "model": 0}  # jax maps more than it uses
READER_ERRORS = {"CheckpointFormatError", "UnsafeCheckpointError", "SafetensorsError"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile input: `name` says what it is, `path` is what the reader is given, `expect`
    is 'refuse', 'load' or 'either' (random mutations that may stay valid)."""

    name: str
    path: str
    expect: str = "refuse"


def write_cases(folder, cases, ext: str, others: str = "refuse") -> list[Case]:
    """Writes `(name, bytes)` cases as numbered files: the ones named 'base' or 'valid...'
    must load, the `others` must be refused (or 'either')."""
    written = []
    for i, (name, data) in enumerate(cases):
        path = os.path.join(folder, f"{i:04d}{ext}")
        with open(path, "wb") as f:
            f.write(data)
        valid = name == "base" or name.startswith("valid")
        written.append(Case(name, path, "load" if valid else others))
    return written


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next((line for line in f if line.startswith("VmRSS:")), "VmRSS: 0 kB")
    except OSError:  # the child has just exited
        return 0.0
    return int(line.split()[1]) / 1024


def _one_child(kind: str, paths: list[str]) -> tuple[list[dict], int]:
    """Runs one child on `paths` until it finishes or is stopped; returns its results and
    how many paths it got through (including a last one that crashed, hung or blew up)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, CHILD, kind, str(AS_LIMIT_MIB[kind]), *paths]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    results, buffer, current, deadline, done = [], b"", None, None, 0
    try:
        while True:
            if selector.select(timeout=0.02):
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in map(bytes.decode, lines):
                    if line.startswith("start "):
                        current, deadline = line[6:], time.monotonic() + PER_FILE_S
                    elif line.startswith("{"):
                        results.append(json.loads(line))
                        current, done = None, done + 1
            if current is None:
                continue
            stop = (
                "hang"
                if time.monotonic() > deadline
                else "memory"
                if _rss_mib(proc.pid) > RSS_LIMIT_MIB
                else None
            )
            if stop:
                proc.kill()
                results.append({"path": current, "outcome": stop, "seconds": PER_FILE_S})
                return results, done + 1
    finally:
        selector.close()
        proc.stdout.close()
        code = proc.wait()
    if current is not None:  # it died inside a file
        name = signal.Signals(-code).name if code < 0 else f"exit {code}"
        results.append({"path": current, "outcome": f"crash ({name})", "seconds": 0.0})
        done += 1
    return results, done


def run_cases(kind: str, paths: list[str]) -> list[dict]:
    """One result per path, in order (see the module docstring)."""
    results, left = [], list(paths)
    while left:
        batch, done = _one_child(kind, left)
        results += batch
        if done == 0:
            raise RuntimeError(f"the {kind} child died before its first file")
        left = left[done:]
    return results


def judge(results: list[dict], cases: list[Case], allowed=READER_ERRORS) -> list[str]:
    """Problems, one line each. `allowed`: error class names accepted as a refusal, or None
    for any ValueError/OSError (what the CLIs print as `error: ...`)."""
    by_path = {c.path: c for c in cases}
    problems = []
    for r in results:
        case = by_path[r["path"]]
        label = f"{case.name} ({os.path.basename(r['path'])})"
        outcome, msg = r["outcome"], r.get("message") or ""
        if outcome not in ("ok", "error"):
            problems.append(f"{label}: {outcome} after {r['seconds']:.1f}s")
        elif outcome == "ok" and case.expect == "refuse":
            problems.append(f"{label}: loaded, but should be refused")
        elif outcome == "error" and case.expect == "load":
            problems.append(f"{label}: refused, but should load: {msg[:200]}")
        elif outcome == "error" and not (
            r["error_type"] in allowed if allowed is not None else r["clean"]
        ):
            problems.append(f"{label}: {r['error_type']}: {msg[:200]}")
        elif outcome == "error" and (
            not msg.startswith((r["path"] + ":", r["path"] + "/")) or "\n" in msg or len(msg) > 600
        ):
            problems.append(f"{label}: not one line naming the file: {msg[:300]!r}")
    return problems
