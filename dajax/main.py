"""dajax's single entry point: `python -m dajax.main --config=configs/<stage>.py[:args]`.

    python -m dajax.main --config=configs/teacher.py:demo --workdir=runs/teacher
    python -m dajax.main --config=configs/student.py:demo --workdir=runs/demo
    python -m dajax.main --config=configs/student.py --config.total_steps=1000 --workdir=W

`config.stage` picks the function from `STAGES`; each is `run(config, workdir)`.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from dajax import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and exports go")


def _stages():
    from dajax.classify import study
    from dajax.eval import evaluate
    from dajax.training import metric, pseudo_label, student, teacher

    return {
        "eval": evaluate.run,
        "classify": study.run,
        "teacher": teacher.run,
        "metric": metric.run,
        "pseudo_label": pseudo_label.run,
        "student": student.run,
        "demo": student.run_demo,
    }


def main(argv) -> None:
    del argv
    if _CONFIG.value is None or _WORKDIR.value is None:
        sys.exit("usage: python -m dajax.main --config=configs/<stage>.py[:args] --workdir=DIR")
    runtime.initialize()
    stages = _stages()
    stage = _CONFIG.value.stage
    if stage not in stages:
        sys.exit(f"unknown stage {stage!r}; expected one of {sorted(stages)}")
    stages[stage](_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
