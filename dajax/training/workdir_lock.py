"""One training run per workdir: an advisory lock on `WORKDIR/lock`, held for the whole run.

The lock is an `fcntl.flock` on the file, so the kernel drops it when its holder exits for
any reason (kill -9 included): a stale file never blocks a restart. The file records who holds
it (host, pid, start time, command), which a refused run prints. In a multi-process run only
process 0 takes the lock; the others learn whether it succeeded and stop with it.

A workdir in a bucket (`gs://`) is not locked: object stores have no lock that its
holder's death releases, and a lock object left by a killed run would block every restart.
The run logs a warning and goes on; keeping one run per bucket workdir is then the user's
(or the scheduler's) job.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from dajax import paths

log = logging.getLogger("dajax")

LOCK_FILE = "lock"


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir's lock."""


def _holder(path: str) -> str:
    """'host H, pid P (started T: command)' from a lock file, or what is known of it."""
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return "a process that has not yet written its name"
    return (
        f"host {info.get('host', '?')}, pid {info.get('pid', '?')} "
        f"(started {info.get('started', '?')}: {info.get('command', '?')})"
    )


def _try_lock(path: str) -> int | None:
    """An open descriptor of `path` holding its exclusive flock (None where the file system
    has no flock: a warning, no lock); raises WorkdirLockedError."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirLockedError(
                f"{path}: this workdir is in use by {_holder(path)}; wait for that run to end "
                "or choose another --workdir"
            ) from None
        except OSError as err:  # e.g. ENOLCK: a file system without flock
            os.close(fd)
            log.warning("%s: cannot lock the workdir (%s); running unlocked", path, err.strerror)
            return None
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:  # not unlinked by a holder releasing it between our open and flock
            return fd
        os.close(fd)


def _write_holder(fd: int) -> None:
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)


def _all_agree(ok: bool) -> bool:
    """Process 0's `ok`, on every process (a no-op in one process)."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


@contextlib.contextmanager
def locked_workdir(workdir: str):
    """Holds `workdir`'s lock for the `with` block (creates a local workdir; a bucket workdir
    runs unlocked, see the module docstring).

    Raises:
      WorkdirLockedError: another live run holds it; the message names its host and pid.
    """
    if paths.is_remote(workdir):
        if jax.process_index() == 0:
            log.warning("%s: a bucket workdir is not locked; run one job on it at a time", workdir)
        yield
        return
    path = os.path.join(workdir, LOCK_FILE)
    fd, error = None, None
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        try:
            fd = _try_lock(path)
            if fd is not None:
                _write_holder(fd)
        except (WorkdirLockedError, OSError) as e:  # raised on every process, below
            error = e
    if not _all_agree(error is None):
        raise error or WorkdirLockedError(f"{path}: process 0 could not lock the workdir")
    try:
        yield
    finally:
        if fd is not None:
            os.unlink(path)  # while still holding it, so no one locks the unlinked file
            os.close(fd)
