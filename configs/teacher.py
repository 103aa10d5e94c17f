"""Teacher: DINOv2 encoder + fresh DPT head, trained on labeled RGB-D data (paper §3.1).

    python -m dajax.main --config=configs/teacher.py:variant=vitl --workdir=runs/teacher \
        --config.init.dinov2=dinov2_vitl14_pretrain.pth
    python -m dajax.main --config=configs/teacher.py:demo --workdir=runs/demo_teacher
    python -m dajax.main --config=configs/teacher.py:demo,dinov2=dinov2_vits14_pretrain.pth \
        --workdir=runs/demo_teacher

Labeled data: `config.data.labeled`, ((source spec, weight), ...) as in `docs/data.md`; set it
in a copy of this file. Its default, the built-in procedural scenes, stops a full-size run at
start-up unless `--config.data.allow_procedural=True`; `demo` trains on them with the model,
crops and steps shrunk to run on a CPU in about a minute.
"""

import ml_collections

from configs import common

PAPER_EPOCHS, PAPER_LABELED_IMAGES = 20, 1_500_000


def get_config(arg=None):
    args = common.parse_args(arg, variant="vits", demo=False, steps=0, dinov2="")
    demo = args.demo
    # The paper: 20 epochs over its 1.5M labeled images at a global batch of 64.
    steps = args.steps or (150 if demo else PAPER_EPOCHS * PAPER_LABELED_IMAGES // 64)
    config = ml_collections.ConfigDict(common.loop(steps, demo))
    config.stage = "teacher"
    config.model = common.model(args.variant, demo, pretrained=bool(args.dinov2))
    config.init = ml_collections.ConfigDict({"dinov2": args.dinov2})
    config.data = ml_collections.ConfigDict(
        {
            "labeled": (
                (common.procedural(400 if demo else 100_000, 96 if demo else 600, 1), 1.0),
            ),
            "crop": 84 if demo else 518,
            "labeled_batch": 8 if demo else 64,  # global: over all processes and devices
            "workers": 0 if demo else 8,
            # procedural scenes outside the demo only on purpose (a full-size run stops at
            # start-up while `labeled` holds them and this is False)
            "allow_procedural": demo,
        }
    )
    config.optim = common.optim(steps)
    if demo:
        config.optim.base_lr = 2e-4  # a random "DINOv2" learns from scratch: larger steps
        config.optim.warmup_steps = 10
    return config
