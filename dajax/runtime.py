"""Process-level runtime setup: multi-host initialisation, logging, compilation cache.

Called once by `python -m dajax.main` before any JAX backend use. Tests and library users who
import dajax modules directly never go through here.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger("dajax")


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    compilation_cache: str | None = None,
) -> None:
    """Starts JAX's multi-controller runtime when the environment asks for it.

    Explicit arguments (or `DAJAX_COORDINATOR`, `DAJAX_NUM_PROCESSES`, `DAJAX_PROCESS_ID`) win;
    otherwise `jax.distributed.initialize()` auto-detects Slurm, Open MPI and TPU pods when
    their variables are set; a plain single process needs nothing. On CPU, multi-process runs
    use gloo collectives.
    """
    coordinator = coordinator or os.environ.get("DAJAX_COORDINATOR")
    num_processes = num_processes or _env_int("DAJAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("DAJAX_PROCESS_ID")
    if compilation_cache:
        jax.config.update("jax_compilation_cache_dir", compilation_cache)
    if coordinator:
        if os.environ.get("JAX_PLATFORMS", "") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif _looks_multiprocess():
        jax.distributed.initialize()
    setup_logging()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _looks_multiprocess() -> bool:
    """Slurm / Open MPI with more than one task, or a multi-worker TPU pod."""
    tasks = max(_env_int("SLURM_NTASKS") or 1, _env_int("OMPI_COMM_WORLD_SIZE") or 1)
    return tasks > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def setup_logging() -> None:
    """INFO logs on process 0, warnings only elsewhere, each line tagged with the process."""
    level = logging.INFO if jax.process_index() == 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s [p{jax.process_index()}] %(levelname)s %(message)s",
        force=True,
    )
    for noisy in ("absl", "jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


BARRIER_TIMEOUT_S = 1800
_barrier_uses: dict[str, int] = {}


def sync_processes(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Blocks until every process reaches the barrier `name` (a no-op in one process).

    The barrier lives in JAX's coordination service, not in a device collective, so processes
    may arrive far apart (one still compiling or loading weights): gloo's CPU collectives give
    up after 30 s, the coordination service waits `timeout_s`. Every process must call the
    same names in the same order.
    """
    if jax.process_count() == 1:
        return
    # JAX exports no coordination-service barrier; orbax's public multihost module wraps it.
    from orbax.checkpoint import multihost

    _barrier_uses[name] = _barrier_uses.get(name, 0) + 1
    barrier_id = f"dajax/{name}/{_barrier_uses[name]}"
    multihost.get_barrier_sync_fn()(key=barrier_id, timeout_ms=int(timeout_s * 1000))
