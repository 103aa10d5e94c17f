"""`WORKDIR/curves.png`: a run's losses, learning rates and validation metrics over steps.

Drawn from `metrics.jsonl` (so a user without TensorBoard sees progress) with matplotlib's
Agg backend, on the metrics log's writer thread: at checkpoints (at most once a minute) and at
the end of training (`dajax.training.metrics_log`).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dajax import paths  # noqa: E402

CURVES_FILE = "curves.png"

# Panel title -> predicate on a metric name; a metric goes in the first panel that takes it.
PANELS = (
    ("losses", lambda k: k.startswith("loss")),
    ("learning rate", lambda k: k.startswith("lr/")),
    ("validation", lambda k: k.startswith("val/")),
    ("gradient norm", lambda k: k == "grad_norm"),
)


def series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{metric: (steps, values)} over `records` (`metrics.jsonl` lines, in order).

    A step logged twice (a run resumed from a checkpoint older than its last log) keeps its
    newest value.
    """
    latest: dict[int, dict] = {}
    for record in records:
        latest.setdefault(record["step"], {}).update(record)
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step in sorted(latest):
        for key, value in latest[step].items():
            if key not in ("step", "time"):
                steps, values = out.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return out


def plot_curves(records: list[dict], path: paths.PathLike) -> list[str]:
    """Writes the curves of `records` to the PNG `path` (atomically); returns the panel titles.

    One panel per kind (losses, learning rates, validation metrics, gradient norm) that has
    data; x is the training step. Nothing is written when `records` is empty.
    """
    data = series(records)
    panels = []
    for title, takes in PANELS:
        keys = sorted(k for k in data if takes(k))
        if keys:
            panels.append((title, keys))
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            steps, values = data[key]
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    paths.write_atomic(path, png.getvalue())
    return [title for title, _ in panels]
