"""The workdir lock: a second run refuses naming the holder; a killed holder leaves no lock."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from dajax.training.workdir_lock import LOCK_FILE, WorkdirLockedError, locked_workdir

HOLD = """
import sys, time
from dajax.training.workdir_lock import locked_workdir
with locked_workdir(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_run_refuses_and_names_the_holder(tmp_path):
    workdir = str(tmp_path / "run")
    with locked_workdir(workdir):
        with open(os.path.join(workdir, LOCK_FILE)) as f:
            holder = json.load(f)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(WorkdirLockedError) as refused:
            with locked_workdir(workdir):
                pass
        message = str(refused.value)
        assert message.startswith(os.path.join(workdir, LOCK_FILE))
        assert f"host {socket.gethostname()}, pid {os.getpid()}" in message
    assert not os.path.exists(os.path.join(workdir, LOCK_FILE))  # released and removed
    with locked_workdir(workdir):  # free again
        pass


def test_a_lock_left_by_a_killed_process_does_not_block_a_restart(tmp_path):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, workdir],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirLockedError, match=f"pid {holder.pid} "):
            with locked_workdir(workdir):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(os.path.join(workdir, LOCK_FILE))  # the stale file is still there
    with locked_workdir(workdir):  # ... and does not block
        with open(os.path.join(workdir, LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
