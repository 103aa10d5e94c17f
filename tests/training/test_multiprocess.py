"""The teacher step in 2 processes x 2 CPU devices (gloo collectives) equals 1 x 4 devices,
also when one process is preempted by SIGTERM and the job restarts."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "multiprocess_teacher.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(process_id, num_processes, port, workdir, *extra) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    args = [sys.executable, SCRIPT, str(process_id), str(num_processes), str(port), str(workdir)]
    args += list(extra)
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _losses(workdir) -> list[float]:
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["loss"] for line in f]


def _finish(runs) -> list[tuple[int, str]]:
    outs = [run.communicate(timeout=400)[0].decode() for run in runs]
    return [(run.returncode, out) for run, out in zip(runs, outs, strict=True)]


def test_two_processes_match_one_process_across_a_preemption(tmp_path):
    port = _free_port()
    two = tmp_path / "two"
    runs = [_launch(0, 1, 0, tmp_path / "one")]
    runs += [_launch(p, 2, port, two, "sigterm") for p in range(2)]
    (code_one, out_one), *preempted = _finish(runs)
    assert code_one == 0, out_one[-3000:]
    for code, out in preempted:  # process 1 got SIGTERM; both saved step 1 and exited
        assert code == 143, out[-3000:]
    assert "SIGTERM: saved step 1" in preempted[0][1]
    port = _free_port()
    for code, out in _finish([_launch(p, 2, port, two) for p in range(2)]):
        assert code == 0, out[-3000:]  # the restarted job resumed from step 1

    one, two_losses = _losses(tmp_path / "one"), _losses(two)
    assert len(one) == 2 and one[0] != one[1]  # the first update changed the loss
    np.testing.assert_allclose(two_losses, one, rtol=1e-5)
    p_one, p_two = np.load(tmp_path / "one" / "params.npz"), np.load(two / "params.npz")
    assert set(p_one) == set(p_two)
    for name in p_one:
        np.testing.assert_allclose(p_two[name], p_one[name], rtol=1e-4, atol=1e-6, err_msg=name)
