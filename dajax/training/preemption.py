"""When a preempted training run stops: the step every process saves before exiting.

A scheduler that preempts a job sends SIGTERM (Slurm `--requeue`, a TPU VM's maintenance
event, `kill`), often to one host only. The loop asks `PreemptionWatch.reached(step)` after
each step; when it says yes, every process saves that same step and raises `Preempted`.

- Under `jax.distributed` (every multi-process run): JAX's preemption service catches SIGTERM
  on any process and agrees, through the coordination service, on the first step all
  processes can still reach; `multihost_utils.reached_preemption_sync_point(step)` turns true
  at that step on every process. Each call is a local check: no collective, no wait for the
  device, so the host keeps dispatching steps ahead of the accelerator.
- One process without `jax.distributed`: a SIGTERM handler sets a flag that each step reads.
  Ctrl-C (SIGINT) does the same there (save, exit 130); a second Ctrl-C stops at once.
- Several processes with JAX's service switched off (`jax_enable_preemption_service=False`):
  the flag, OR-ed over processes by a one-integer all-gather at log steps only (where the
  loop already waits for the step's metrics); a preemption then saves at the next log step.
"""

from __future__ import annotations

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preempted(SystemExit):
    """Raised after a preemption save; exits the process with status 128 + the signal's
    number (143 for SIGTERM, 130 for SIGINT).

    The checkpoint is on disk when it propagates, so a restarted job resumes where this one
    stopped. A non-zero status tells schedulers (Slurm `--requeue`, TPU queued resources) that
    the job did not finish.
    """

    def __init__(self, step: int, signal_number: int = signal.SIGTERM):
        super().__init__(128 + int(signal_number))
        self.step = step


class PreemptionWatch:
    """Says at which step a SIGTERM-ed run saves and stops (see the module docstring).

    Args:
      log_every: the loop's log period (steps); the all-gather fallback checks only there.
    """

    def __init__(self, log_every: int):
        self.log_every = log_every
        self.uses_jax_service = (
            jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service
        )
        self._signalled = False
        self.signal_number = signal.SIGTERM
        self._previous = {}
        if not self.uses_jax_service:  # JAX's service installs its own SIGTERM handler
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)

    @property
    def signal_name(self) -> str:
        """The stopping signal's name, e.g. 'SIGTERM'."""
        return signal.Signals(self.signal_number).name

    def _handle(self, signum, frame):
        if self._signalled and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._signalled, self.signal_number = True, signum

    def reached(self, step: int) -> bool:
        """Whether every process is to save `step` and exit (called after every step, with the
        same steps on every process)."""
        if self.uses_jax_service:
            return multihost_utils.reached_preemption_sync_point(step)
        if jax.process_count() == 1:
            return self._signalled
        if step % self.log_every:
            return False
        flags = multihost_utils.process_allgather(np.int32(self._signalled))
        return bool(np.max(flags))

    def close(self) -> None:
        """Puts back the SIGTERM and SIGINT handlers that were there before."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
