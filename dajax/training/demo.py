"""The end-to-end demo: teacher -> pseudo-labels -> student -> evaluation of both.

    python -m dajax.main --config=configs/student.py:demo --workdir=runs/demo

The demo config (`configs/student.py:demo`) is the student's config with the other stages'
settings as sub-configs: `teacher_stage`, `pseudo_stage` and `final_eval` (the closing
evaluation of both checkpoints; `eval` stays the student's validation spec). Each stage runs on
its own config, built here from those and the paths the earlier stages wrote; the demo config
itself is never changed.
"""

from __future__ import annotations

import os

import jax

from dajax.eval.evaluate import evaluate_checkpoints
from dajax.training import pseudo_label, student, teacher


def pseudo_label_config(config, teacher_dir: str):
    """The data engine's config: `config.pseudo_stage` labelling with the checkpoint
    `teacher_dir` (a copy; `config` is unchanged)."""
    stage = config.pseudo_stage.copy_and_resolve_references()
    stage.teacher_weights = teacher_dir
    return stage


def student_config(config, teacher_dir: str, shards: str):
    """The student's config: `config` reading the pseudo-label shards `shards`, with
    `teacher_dir` as `config.teacher_weights` (the feature-alignment reference when no DINOv2
    weights are given). A copy; `config` is unchanged."""
    stage = config.copy_and_resolve_references()
    stage.data.pseudo.path = shards
    stage.teacher_weights = teacher_dir
    return stage


def train_teacher_and_label(config, workdir: str) -> tuple[str, str]:
    """The demo's first two stages: trains `config.teacher_stage` into `workdir/teacher`, then
    pseudo-labels the unlabeled pool with it into `workdir/pseudo_labels`.

    Returns:
      (the teacher's export path, the pseudo-label shard folder), the arguments
      `student_config` takes.
    """
    teacher_dir = teacher.run(config.teacher_stage, os.path.join(workdir, "teacher"))
    shards = pseudo_label.run(
        pseudo_label_config(config, teacher_dir), os.path.join(workdir, "pseudo_labels")
    )
    return teacher_dir, shards


def run(config, workdir: str) -> None:
    """Teacher -> pseudo-labels -> student -> evaluation of both, on procedural scenes; the
    table goes to stdout and `workdir/eval.json`."""
    teacher_dir, shards = train_teacher_and_label(config, workdir)
    student_dir = student.run(
        student_config(config, teacher_dir, shards), os.path.join(workdir, "student")
    )
    checkpoints = {"teacher": teacher_dir, "student": student_dir}
    evaluate_checkpoints(checkpoints, config.final_eval, workdir)
    if jax.process_index() == 0:
        print(_encoder_note(config.init.dinov2), flush=True)


def _encoder_note(dinov2_path: str) -> str:
    if dinov2_path:
        return f"teacher and student encoders initialised from {dinov2_path}"
    return (
        "note: no DINOv2 weights were given, so teacher and student started from a seeded RANDOM "
        "encoder (feature alignment used the teacher's encoder as its reference); pass "
        "--config=configs/student.py:demo,dinov2=dinov2_vits14_pretrain.pth for the paper's setting"
    )
