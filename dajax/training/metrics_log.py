"""Training logs: JSONL scalars, TensorBoard scalars and images, curves.png, on process 0.

Files are written by a background thread (`_Writer`), in the order of the calls, so the
training loop never waits for a disk, a bucket, TensorBoard or matplotlib; `flush` and
closing wait for it, and an error there is raised by the next call.

The workdir may be a bucket (`dajax.paths`): there, `metrics.jsonl` is rewritten whole at each
log step and each TensorBoard event file at each flush, since objects cannot be appended to.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from etils import epath

from dajax import paths
from dajax.training.curves import CURVES_FILE, plot_curves

METRICS_FILE = "metrics.jsonl"
# curves.png is redrawn at most this often before the log closes: drawing takes about 0.4 s of
# CPU, taken from the steps on a CPU host.
CURVES_MIN_INTERVAL_S = 60.0

log = logging.getLogger("dajax")


class _Writer:
    """Runs submitted calls one at a time, in order, on a daemon thread.

    The first call that raises stops the work: later calls are dropped and `check` (thus
    `submit` and `drain`) raises that error in the caller's thread.
    """

    def __init__(self, name: str):
        self._calls: queue.Queue[tuple[Callable, tuple] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            try:
                if self._error is None:
                    fn, args = item
                    fn(*args)
            except BaseException as err:  # handed to the loop's thread by `check`
                self._error = err
            finally:
                self._calls.task_done()
        self._calls.task_done()

    def check(self) -> None:
        """Raises the error of a failed call, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable, *args) -> None:
        """Queues `fn(*args)`; raises an earlier call's error instead."""
        self.check()
        if not self._thread.is_alive():
            raise RuntimeError("the metrics log is closed")
        self._calls.put((fn, args))

    def drain(self) -> None:
        """Waits until every queued call has run; raises the error of a failed one."""
        self._calls.join()
        self.check()

    def stop(self) -> None:
        """Runs what is queued, then ends the thread."""
        self._calls.put(None)
        self._thread.join()


class MetricsLog:
    """Appends `{"step": s, "time": seconds since start, name: value, ...}` lines to
    `workdir/metrics.jsonl`, mirrors them to TensorBoard (`workdir/tb`) and draws curves.png,
    on a writer thread (see the module docstring). Other processes write nothing.

    Use it as a context manager: leaving the block waits for the writes and closes the files;
    a writer error is raised there, or logged when the block is already raising.
    """

    def __init__(self, workdir: paths.PathLike):
        self.active = jax.process_index() == 0
        self.workdir = paths.resolve(workdir)
        if not self.active:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._path = self.workdir / METRICS_FILE
        self._remote = paths.is_remote(self.workdir)
        if self._remote:
            self._text = self._path.read_text() if self._path.exists() else ""
            _tensorboard_writes_to_buckets()
        else:
            self._jsonl = self._path.open("a")
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.fspath(self.workdir / "tb"))
        self._t0 = time.time()
        self._curves_behind = False  # lines logged since curves.png was last drawn
        self._curves_drawn = -float("inf")  # when, in time.monotonic() seconds
        self._writer = _Writer(f"metrics-log {self.workdir}")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Logs floats for one step (its time is taken now, written later)."""
        if not self.active:
            return
        clean = {k: float(v) for k, v in values.items()}
        now = time.time()
        line = json.dumps({"step": step, "time": now - self._t0, **clean}) + "\n"
        self._writer.submit(self._write_scalars, step, line, clean, now)
        self._curves_behind = True

    def _write_scalars(self, step: int, line: str, values: dict[str, float], walltime: float):
        """On the writer thread: `line` to metrics.jsonl, `values` to TensorBoard."""
        if self._remote:
            self._text += line
            self._path.write_text(self._text)
        else:
            self._jsonl.write(line)
            self._jsonl.flush()
        for k, v in values.items():
            self._tb.add_scalar(k, v, step, walltime)

    def image(self, step: int, name: str, rgb: np.ndarray) -> None:
        """Logs one [H, W, 3] uint8 image to TensorBoard (the caller must not change `rgb`)."""
        if self.active:
            self._writer.submit(self._tb.add_image, name, rgb, step, time.time(), "HWC")

    def write_curves(self, force: bool = False) -> None:
        """Redraws `workdir/curves.png` from everything `metrics.jsonl` holds by then, unless
        (without `force`) it was drawn less than `CURVES_MIN_INTERVAL_S` ago."""
        now = time.monotonic()
        if self.active and (force or now - self._curves_drawn >= CURVES_MIN_INTERVAL_S):
            self._writer.submit(self._draw_curves)
            self._curves_behind, self._curves_drawn = False, now

    def _draw_curves(self) -> None:
        plot_curves(read_metrics(self.workdir), self.workdir / CURVES_FILE)

    def flush(self) -> None:
        """Waits until everything logged so far is written; raises a writer error."""
        if self.active:
            self._writer.drain()

    def close(self) -> None:
        """Redraws curves.png if lines came since it was drawn, waits for the writes, closes
        the files and ends the writer; raises a writer error."""
        if not self.active:
            return
        try:
            if self._curves_behind:
                self.write_curves(force=True)
        finally:
            self._writer.stop()
            if not self._remote:
                self._jsonl.close()
            self._tb.close()
        self._writer.check()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception as err:  # the block's own error is the one to report
            if err is not exc:
                log.warning("writing the training logs failed too: %s", err)


def read_metrics(workdir: paths.PathLike) -> list[dict]:
    """All logged lines of a run, in order."""
    text = (paths.resolve(workdir) / METRICS_FILE).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _BucketEventFile:
    """A TensorBoard event file in a bucket: tensorboardX appends records, and each flush
    uploads the whole file."""

    def __init__(self, path: str):
        self.path = epath.Path(path)
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        self.path.write_bytes(self.buffer.getvalue())

    def close(self) -> None:
        self.flush()


class _BucketEventFiles:
    """tensorboardX's writer factory for bucket URLs, through `etils.epath` (tensorboardX's
    own needs `google-cloud-storage`)."""

    def open(self, path: str) -> _BucketEventFile:
        return _BucketEventFile(path)

    def directory_check(self, path: str) -> None:
        epath.Path(path).mkdir(parents=True, exist_ok=True)


def _tensorboard_writes_to_buckets() -> None:
    from tensorboardX import record_writer

    record_writer.register_writer_factory("gs", _BucketEventFiles())
