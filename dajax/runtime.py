"""Process-level runtime setup: multi-host initialisation, logging, compilation cache.

Called once by `python -m dajax.main` before any JAX backend use. Tests and library users who
import dajax modules directly never go through here.

The persistent compilation cache is on by default: compiled programs (train steps, inference
networks, metrics; every size, since `jax_persistent_cache_min_compile_time_secs` is 0 unless
its environment variable says otherwise) are stored in `$JAX_COMPILATION_CACHE_DIR`, else in
`~/.cache/dajax/jax`, so a second run loads what the first compiled. `DAJAX_COMPILATION_CACHE=0`
turns it off. `CompileClock` measures what compiling costs a stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import jax

log = logging.getLogger("dajax")

DEFAULT_COMPILATION_CACHE = os.path.join("~", ".cache", "dajax", "jax")
CACHE_SWITCH = "DAJAX_COMPILATION_CACHE"  # "0" turns the persistent cache off


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
    use gloo collectives. The persistent compilation cache goes to `compilation_cache` (see
    `compilation_cache_dir` for the default, and for turning it off).
    """
    coordinator = coordinator or os.environ.get("DAJAX_COORDINATOR")
    num_processes = num_processes or _env_int("DAJAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("DAJAX_PROCESS_ID")
    use_compilation_cache(compilation_cache)
    if coordinator:
        if os.environ.get("JAX_PLATFORMS", "") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif _looks_multiprocess():
        jax.distributed.initialize()
    setup_logging()


def compilation_cache_dir(explicit: str | None = None, enabled: bool = True) -> str | None:
    """The persistent compilation cache's folder: `explicit`, else `$JAX_COMPILATION_CACHE_DIR`,
    else `DEFAULT_COMPILATION_CACHE` (user-expanded); None when `enabled` is False or
    `$DAJAX_COMPILATION_CACHE` is 0 (off)."""
    if not enabled or os.environ.get(CACHE_SWITCH, "1").lower() in ("0", "false", "off", "no"):
        return None
    folder = explicit or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_COMPILATION_CACHE
    return os.path.expanduser(folder)


def use_compilation_cache(explicit: str | None = None, enabled: bool = True) -> str | None:
    """Points JAX's persistent compilation cache at `compilation_cache_dir(explicit, enabled)`
    (or turns it off), before anything compiles; returns the folder, or None when off.

    Programs of every compile time are stored (small CPU ones too) unless
    `$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` sets a threshold.
    """
    folder = compilation_cache_dir(explicit, enabled)
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def add_compile_cache_flag(parser) -> None:
    """`--no-compile-cache` on an argparse parser (predict, app); pass its value to
    `use_compilation_cache(enabled=not args.no_compile_cache)`."""
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="neither read nor write the persistent compilation cache (default: on, in "
        f"$JAX_COMPILATION_CACHE_DIR or {DEFAULT_COMPILATION_CACHE}, so a second run compiles "
        f"nothing; {CACHE_SWITCH}=0 turns it off too)",
    )


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


_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # or a cache load
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    _BACKEND_COMPILE_EVENT,
)
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CompileClock:
    """What JAX spends compiling while the clock is open (`with CompileClock() as clock:`).

    Attributes:
      seconds: wall seconds during which JAX traced, lowered or compiled a program (or loaded
        it from the persistent cache), on any thread; nested traces count once.
      programs: XLA executables compiled or loaded.
      cache_hits: of those, how many came from the persistent compilation cache.
    """

    def __init__(self):
        self.programs = 0
        self.cache_hits = 0
        self._spans: list[tuple[float, float]] = []

    def _on_span(self, event: str, start: float, end: float, **_) -> None:
        if event in _COMPILE_EVENTS:
            self._spans.append((start, end))
        if event == _BACKEND_COMPILE_EVENT:
            self.programs += 1

    def _on_event(self, event: str, **_) -> None:
        if event == _CACHE_HIT_EVENT:
            self.cache_hits += 1

    @property
    def seconds(self) -> float:
        """The length of the union of the compile spans seen so far."""
        total, reached = 0.0, float("-inf")
        for start, end in sorted(self._spans):
            total += max(0.0, end - max(start, reached))
            reached = max(reached, end)
        return total

    def summary(self) -> str:
        """'12.3 s compiling 5 programs (2 from the persistent cache in DIR)', or '(the
        persistent cache is off)'."""
        folder = jax.config.jax_compilation_cache_dir
        if folder and jax.config.jax_enable_compilation_cache:
            cache = f"{self.cache_hits} from the persistent cache in {folder}"
        else:
            cache = "the persistent cache is off"
        return f"{self.seconds:.1f} s compiling {self.programs} programs ({cache})"

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_time_span_listener(self._on_span)
        jax.monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._on_span)
        jax.monitoring.unregister_event_listener(self._on_event)


@contextlib.contextmanager
def compile_report(label: str) -> Iterator[CompileClock]:
    """A `CompileClock` over the block; logs '<label>: <its summary>' when the block ends."""
    with CompileClock() as clock:
        yield clock
    log.info("%s: %s", label, clock.summary())
