"""Training logs: JSONL scalars, TensorBoard scalars and images, curves.png, on process 0.

The workdir may be a bucket (`dajax.paths`): there, `metrics.jsonl` is rewritten whole at each
log step and each TensorBoard event file at each flush, since objects cannot be appended to.
"""

from __future__ import annotations

import io
import json
import os
import time

import jax
import numpy as np
from etils import epath

from dajax import paths
from dajax.training.curves import CURVES_FILE, plot_curves

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends `{"step": s, name: value, ...}` lines to `workdir/metrics.jsonl` and mirrors
    them to TensorBoard (`workdir/tb`). Other processes write nothing."""

    def __init__(self, workdir: paths.PathLike):
        self.active = jax.process_index() == 0
        self.workdir = paths.resolve(workdir)
        self._tb = None
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

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Logs floats for one step."""
        if not self.active:
            return
        clean = {k: float(v) for k, v in values.items()}
        line = json.dumps({"step": step, "time": time.time() - self._t0, **clean}) + "\n"
        if self._remote:
            self._text += line
            self._path.write_text(self._text)
        else:
            self._jsonl.write(line)
            self._jsonl.flush()
        for k, v in clean.items():
            self._tb.add_scalar(k, v, step)

    def image(self, step: int, name: str, rgb: np.ndarray) -> None:
        """Logs one [H, W, 3] uint8 image to TensorBoard."""
        if self.active:
            self._tb.add_image(name, rgb, step, dataformats="HWC")

    def write_curves(self) -> None:
        """Redraws `workdir/curves.png` from everything `metrics.jsonl` holds."""
        if self.active:
            plot_curves(read_metrics(self.workdir), self.workdir / CURVES_FILE)

    def close(self) -> None:
        """Flushes and closes the files."""
        if self.active:
            if not self._remote:
                self._jsonl.close()
            self._tb.close()


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
