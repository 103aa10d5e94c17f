"""Training logs: JSONL scalars, TensorBoard scalars and images, curves.png, on process 0."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from dajax.training.curves import CURVES_FILE, plot_curves


class MetricsLog:
    """Appends `{"step": s, name: value, ...}` lines to `workdir/metrics.jsonl` and mirrors
    them to TensorBoard (`workdir/tb`). Other processes write nothing."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.workdir = workdir
        self._tb = None
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        self._t0 = time.time()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Logs floats for one step."""
        if not self.active:
            return
        clean = {k: float(v) for k, v in values.items()}
        self._jsonl.write(
            json.dumps({"step": step, "time": time.time() - self._t0, **clean}) + "\n"
        )
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
            plot_curves(read_metrics(self.workdir), os.path.join(self.workdir, CURVES_FILE))

    def close(self) -> None:
        """Flushes and closes the files."""
        if self.active:
            self._jsonl.close()
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    """All logged lines of a run, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
