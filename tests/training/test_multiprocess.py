"""The teacher steps in 2 processes x 2 CPU devices under FSDP (gloo collectives) equal 1
process x 4 devices under data parallelism, with the same global batch from the real data
pipeline: the same images in every step and the same losses, also when one process is
preempted by SIGTERM and the job restarts. Every run goes through `launch/local.sh`, and ends
with the multi-process export."""

import json
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from dajax import checkpoints

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "multiprocess_teacher.py")
LOCAL_SH = os.path.join(HERE, "..", "..", "launch", "local.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(processes: int, workdir, *extra) -> subprocess.Popen:
    """`launch/local.sh` running the teacher script in `processes` processes."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(
        ENTRY=SCRIPT,
        PYTHON=sys.executable,  # the test's interpreter, whatever `python` on PATH is
        NUM_PROCESSES=str(processes),
        DEVICES_PER_PROCESS=str(4 // processes),
        JAX_PLATFORMS="cpu",
        COORDINATOR_PORT=str(_free_port()),
        LOG_DIR=str(workdir / "logs"),
    )
    args = ["bash", LOCAL_SH, str(workdir), *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(run, workdir) -> tuple[int, str]:
    out = run.communicate(timeout=500)[0].decode()
    logs = sorted((workdir / "logs").glob("process_*.log")) if (workdir / "logs").exists() else []
    return run.returncode, out + "".join(p.read_text()[-3000:] for p in logs)


def _losses(workdir) -> list[float]:
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["loss"] for line in f]


def _batches(workdir, processes: int) -> list[list[float]]:
    """Per step, the per-image pixel sums of the global batch: the processes' shares joined."""
    shares = [
        [json.loads(line) for line in (workdir / f"batches_{p}.jsonl").read_text().splitlines()]
        for p in range(processes)
    ]
    return [sum(step, []) for step in zip(*shares, strict=True)]


@pytest.mark.slow
def test_two_processes_match_one_process_across_a_preemption(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    single = _launch(1, one)
    preempted = _launch(2, two, "sigterm")
    code, out = _finish(single, one)
    assert code == 0, out[-3000:]
    code, out = _finish(preempted, two)
    assert code == 143, out[-6000:]  # process 1 got SIGTERM; both saved one step and exited
    saved = [
        re.findall(r"SIGTERM: saved step (\d+)", (two / "logs" / f"process_{i}.log").read_text())
        for i in range(2)
    ]
    assert saved[0] == saved[1] and saved[0][0] in ("1", "2", "3"), saved  # the agreed step
    code, out = _finish(_launch(2, two), two)
    assert code == 0, out[-6000:]  # the restarted job resumed from that step and exported
    assert f"resumed from step {saved[0][0]}" in (two / "logs" / "process_0.log").read_text()

    # The same global batches, step for step, before and after the restart.
    assert _batches(two, 2) == _batches(one, 1) and len(_batches(one, 1)) == 3

    one_losses, two_losses = _losses(one), _losses(two)
    assert len(one_losses) == 3 and one_losses[0] != one_losses[1]  # the update changed it
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)
    _, p_one = checkpoints.load_inference_params(one / "export")
    _, p_two = checkpoints.load_inference_params(two / "export")
    flat_one = jax.tree_util.tree_leaves_with_path(p_one)
    for (path, a), b in zip(flat_one, jax.tree.leaves(p_two), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
