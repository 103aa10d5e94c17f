"""The teacher step in 2 processes x 2 CPU devices (gloo collectives) equals 1 x 4 devices."""

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


def _launch(process_id: int, num_processes: int, port: int, workdir) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    args = [sys.executable, SCRIPT, str(process_id), str(num_processes), str(port), str(workdir)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _losses(workdir) -> list[float]:
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["loss"] for line in f]


def test_two_processes_match_one_process(tmp_path):
    port = _free_port()
    runs = [
        _launch(0, 1, 0, tmp_path / "one"),
        _launch(0, 2, port, tmp_path / "two"),
        _launch(1, 2, port, tmp_path / "two"),
    ]
    for run in runs:
        out, _ = run.communicate(timeout=400)
        assert run.returncode == 0, out.decode()[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == 2 and one[0] != one[1]  # the first update changed the loss
    np.testing.assert_allclose(two, one, rtol=1e-5)
    p_one, p_two = (
        np.load(tmp_path / "one" / "params.npz"),
        np.load(tmp_path / "two" / "params.npz"),
    )
    assert set(p_one) == set(p_two)
    for name in p_one:
        np.testing.assert_allclose(p_two[name], p_one[name], rtol=1e-4, atol=1e-6, err_msg=name)
