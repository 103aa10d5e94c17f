"""Teacher: DINOv2 encoder + fresh DPT head, trained on labeled RGB-D data (paper §3.1).

    python -m dajax.main --config=configs/teacher.py:variant=vitl --workdir=runs/teacher \
        --config.init.dinov2=dinov2_vitl14_pretrain.pth
    python -m dajax.main --config=configs/teacher.py:demo --workdir=runs/demo_teacher
    python -m dajax.main --config=configs/teacher.py:demo,dinov2=dinov2_vits14_pretrain.pth \
        --workdir=runs/demo_teacher

Fine-tune a released model (V1/V2 `.pth`, safetensors, a transformers or dajax folder, `hf:`)
on your own RGB-D folders instead (`docs/finetune.md`); the architecture is the checkpoint's:

    python -m dajax.main --config=configs/teacher.py:steps=2000 --workdir=runs/ft \
        --config.init.weights=depth_anything_v2_vits.pth \
        --config.data.labeled=paired_folders:images=rgb/,depths=depth/,depth_format=png16

Labeled data: `config.data.labeled`, ((source spec, weight), ...) as in `docs/data.md`; set it
in a copy of this file, or on the command line as `KIND:FIELD=VALUE,...` (repeat the flag to
mix sources; `weight=W` sets a source's share). Its default, the built-in procedural scenes,
stops a full-size run at start-up unless `--config.data.allow_procedural=True`; `demo` trains
on them with the model, crops and steps shrunk to run on a CPU in about a minute.

`recipe=v2` is Depth Anything V2's teacher: L_ssi + 2 L_gm (MiDaS's gradient matching, 4
scales) for 160K steps at 64; V2 trains it on precisely labeled synthetic images only, yours to
give in `config.data.labeled` (`docs/method.md`). `recipe=v1` (the default) is V1's.
"""

import ml_collections

from configs import common

PAPER_EPOCHS, PAPER_LABELED_IMAGES = 20, 1_500_000
V2_STEPS = 160_000  # V2 §7.1: the teacher, batch 64 for 160K iterations
RECIPES = ("v1", "v2")  # Depth Anything V1's training recipe, V2's (docs/method.md)


def check_recipe(recipe: str) -> str:
    """`recipe` if it names one of `RECIPES`; otherwise a one-line ValueError."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
    return recipe


def get_config(arg=None):
    args = common.parse_args(arg, variant="vits", demo=False, steps=0, dinov2="", recipe="v1")
    demo, v2 = args.demo, check_recipe(args.recipe) == "v2"
    # The paper: 20 epochs over its 1.5M labeled images at a global batch of 64 (V2: 160K steps).
    full = V2_STEPS if v2 else PAPER_EPOCHS * PAPER_LABELED_IMAGES // 64
    steps = args.steps or (150 if demo else full)
    config = ml_collections.ConfigDict(common.loop(steps, demo))
    config.stage = "teacher"
    config.model = common.model(args.variant, demo, pretrained=bool(args.dinov2))
    # weights: a whole released model to fine-tune (its architecture replaces config.model's);
    # version: its V1/V2 when a .pth's name does not tell ('' = from the file)
    config.init = ml_collections.ConfigDict({"dinov2": args.dinov2, "weights": "", "version": ""})
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
    config.loss = ml_collections.ConfigDict(
        {
            # L_ssi + gradient_weight x L_gm (MiDaS's multi-scale gradient matching over
            # gradient_scales scales); V1: weight 0, the term is not computed
            "gradient_weight": 2.0 if v2 else 0.0,
            "gradient_scales": 4,
        }
    )
    config.optim = common.optim(steps)
    if demo:
        config.optim.base_lr = 2e-4  # a random "DINOv2" learns from scratch: larger steps
        config.optim.warmup_steps = 10
    return config
