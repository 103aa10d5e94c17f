"""Encoder pre-training: a stand-in for DINOv2 on the procedural world (no depth labels).

    python -m dajax.main --config=configs/pretrain.py --workdir=runs/pretrain

The demo's encoder (`common.DEMO_MODEL`) learns the class of every pixel (`SEMANTIC_CLASSES`:
sky, floor, back wall, side wall, ceiling, sphere, box, cylinder) on procedural scenes drawn
from the broad cameras, a family (seed 3) that no depth stage trains or tests on. It writes
`WORKDIR/encoder.safetensors`; `configs/student.py:proof` starts the teacher and students from
it and aligns L_feat to it (`benchmarks/proof.py`). `steps=N` sets the step count.
"""

import ml_collections

from configs import common

# Scenes, steps and batch of the shipped stand-in (`configs/standin_encoder.safetensors`).
SCENES, STEPS, BATCH = 4000, 3000, 32


def get_config(arg=None):
    args = common.parse_args(arg, steps=0)
    steps = args.steps or STEPS
    config = ml_collections.ConfigDict(common.loop(steps, demo=True))
    config.stage = "pretrain"
    config.update(checkpoint_every=500, image_every=0, log_every=50)
    config.model = common.model("vits", demo=True)
    config.data = ml_collections.ConfigDict(
        {
            "labeled": (
                (common.procedural(SCENES, 96, 3, "procedural_semantics", broad=True), 1.0),
            ),
            "crop": 84,
            "labeled_batch": BATCH,
            "workers": 0,
            "allow_procedural": True,
        }
    )
    config.optim = common.optim(steps)
    config.optim.update(base_lr=1e-3, warmup_steps=100, lr_mults=((".*", 1.0),))
    return config
