"""Student (paper §3.2-3.3): DINOv2 re-initialised, labeled + pseudo-labeled 1:2, strong
perturbations, CutMix, feature alignment (α = 0.15).

    python -m dajax.main --config=configs/student.py:variant=vitl --workdir=runs/student \
        --config.init.dinov2=dinov2_vitl14_pretrain.pth --config.data.pseudo.path=runs/pl/shards
    python -m dajax.main --config=configs/student.py:variant=vitl,online --workdir=runs/student \
        --config.teacher_weights=runs/teacher/export --config.data.unlabeled.path=photos/
    python -m dajax.main --config=configs/student.py:demo --workdir=runs/demo
    python -m dajax.main --config=configs/student.py:demo,dinov2=dinov2_vits14_pretrain.pth \
        --workdir=runs/demo

Labeled data as in `configs/teacher.py` (a full-size run refuses the procedural default unless
`--config.data.allow_procedural=True`). `demo` runs the whole method on built-in procedural
scenes in a few minutes on a CPU: teacher, pseudo-labels, student, and a held-out evaluation
table of both. `demo,broad` is the paper's split: the labeled scenes keep the level,
downward-looking camera while the unlabeled pool and the held-out scenes are drawn from
broader cameras (`common.BROAD_CAMERAS`: tilted up as well as down, rolled). Ablations
(Table 9):
`--config.loss.unlabeled=False`; S off is `--config.loss.color_blur=False
--config.loss.cutmix=False` (jitter, grayscale and blur; CutMix); `--config.loss.feature=False`.

`proof` is `benchmarks/proof.py`'s label-scarce demo (`docs/method.md`, "The proof run"): the
demo's networks and stages with `PROOF_LABELED` labeled scenes for teacher and student, a
pool of `PROOF_UNLABELED` unlabeled scenes and `PROOF_HELDOUT` held-out scenes, all drawn alike
(with `broad`, from the broader cameras), `PROOF_STEPS` steps per stage unless `steps=N`. Both
networks start from the stand-in for DINOv2 that ships beside this file (`PROOF_ENCODER`, made
by `configs/pretrain.py`: class maps, no depth) and L_feat aligns to it, as the paper does with
DINOv2; `standin=False` starts them from a random encoder instead, `dinov2=PATH` from DINOv2.

`recipe=v2` is Depth Anything V2's student: pseudo-labeled images only (no labeled batch, no
labeled data read: `loss.labeled=False`), 192 of them per step for 480K steps, each region's
10% largest residuals ignored (`loss.trim_fraction`) and L_ssi + 2 L_gm on them
(`loss.gradient_weight`); `demo,recipe=v2` trains the demo's teacher with V2's recipe as well
(`docs/method.md`). `recipe=v1` (the default) is V1's.
"""

import os

import ml_collections

from configs import common
from configs import teacher as teacher_config

V2_STEPS = 480_000  # V2 §7.1: students, batch 192 for 480K iterations
# `proof`: tens of labeled scenes, a pool 40x larger, one step count for every stage. 1500
# steps keep a seed (teacher, labels, 3 students, evaluation) under 45 min on 2 shared CPU
# cores: measured at 200 steps, 1.48 s per step of all four stages together and 220 s fixed.
PROOF_LABELED, PROOF_UNLABELED, PROOF_HELDOUT, PROOF_STEPS = 40, 1600, 200, 1500
# The stand-in for DINOv2 both networks of `proof` start from:
#   python -m dajax.main --config=configs/pretrain.py --workdir=runs/pretrain
#   cp runs/pretrain/encoder.safetensors configs/standin_encoder.safetensors
# Their base LR from a pre-trained encoder (decoder 10x): chosen on a development held-out
# family (seed 987654, never reported): the teacher closed 0.56 of the ramp-to-oracle gap at
# 5e-5 against 0.51 at the random-encoder demo's 2e-4.
PROOF_PRETRAINED_LR = 5e-5
PROOF_ENCODER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "standin_encoder.safetensors"
)


def get_config(arg=None):
    args = common.parse_args(
        arg,
        variant="vits",
        demo=False,
        proof=False,
        online=False,
        steps=0,
        broad=False,
        dinov2="",
        recipe="v1",
        standin=True,
    )
    demo, v2 = args.demo or args.proof, teacher_config.check_recipe(args.recipe) == "v2"
    # The paper: one sweep over its 62M unlabeled images at a global batch of 128 (V2: 480K
    # steps at 192).
    full = V2_STEPS if v2 else 62_000_000 // 128
    steps = args.steps or (PROOF_STEPS if args.proof else 150 if demo else full)
    config = ml_collections.ConfigDict(common.loop(steps, demo))
    config.stage = "demo" if demo else "student"
    config.model = common.model(args.variant, demo, pretrained=bool(args.dinov2))
    config.init = ml_collections.ConfigDict({"dinov2": args.dinov2})
    config.online_teacher = args.online
    config.teacher_weights = ""  # teacher checkpoint (online mode)
    size = 96 if demo else 600
    unlabeled_images = ml_collections.ConfigDict({"kind": "image_folder", "path": ""})
    config.data = ml_collections.ConfigDict(
        {
            # V2's students see no labeled image
            "labeled": () if v2 else ((common.procedural(400 if demo else 100_000, size, 1), 1.0),),
            "unlabeled": common.procedural(400, size, 2, "procedural_images", args.broad)
            if demo
            else unlabeled_images,
            "pseudo": ml_collections.ConfigDict({"kind": "pseudo_labels", "path": ""}),
            "crop": 84 if demo else 518,
            # global batches (over all processes and devices), labeled : unlabeled = 1 : 2;
            # V2: pseudo-labeled only, as many images per step as V1's two parts together
            "labeled_batch": 4 if demo else 64,
            "unlabeled_batch": (12 if demo else 192) if v2 else (8 if demo else 128),
            "workers": 0 if demo else 8,
            # procedural scenes outside the demo only on purpose (a full-size run stops at
            # start-up while `labeled` or `unlabeled` holds them and this is False)
            "allow_procedural": demo,
        }
    )
    config.loss = ml_collections.ConfigDict(
        {
            "labeled_weight": 1.0,
            "unlabeled_weight": 1.0,
            "feature_weight": 1.0,
            "feature_margin": 0.15,
            # the frozen encoder L_feat aligns to: 'init' (DINOv2, the paper), 'teacher' (the
            # encoder of config.teacher_weights), 'auto' (init with DINOv2 weights, else teacher)
            "feature_reference": "auto",
            "labeled": not v2,  # L_l on a labeled batch (False: no labeled pipeline at all)
            "unlabeled": True,
            "color_blur": True,  # S, part 1: colour jitter, grayscale, Gaussian blur
            "cutmix": True,  # S, part 2: CutMix (p = perturb.cutmix_p)
            "feature": True,
            # the share of each pseudo-labeled region's largest residuals L_u ignores (V2: 10%)
            "trim_fraction": 0.1 if v2 else 0.0,
            # + gradient_weight x L_gm (MiDaS's gradient matching over gradient_scales scales)
            # on labeled and pseudo-labeled images; 0: not computed
            "gradient_weight": 2.0 if v2 else 0.0,
            "gradient_scales": 4,
        }
    )
    config.perturb = ml_collections.ConfigDict(
        {
            "jitter_p": 0.8,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.4,
            "hue": 0.1,
            "gray_p": 0.2,
            "blur_p": 0.5,
            "blur_sigma": (0.1, 2.0),
            "cutmix_p": 0.5,
        }
    )
    config.optim = common.optim(steps)
    if demo:
        config.optim.base_lr = 2e-4
        config.optim.warmup_steps = 10
        _demo_stages(config, steps, args)
    if args.proof:
        _proof_world(config, args)
    return config


def _proof_world(config, args):
    """`proof` on a demo config: the labeled scenes of student and teacher (drawn like the
    pool), the unlabeled pool (shared by the student and the data engine) and the held-out
    scenes; the stand-in encoder unless `standin=False` or `dinov2=PATH`; one checkpoint and
    depth preview every 500 steps instead of the demo's 50; from a pre-trained encoder both
    stages' base LR is `PROOF_PRETRAINED_LR`."""
    for stage in (config, config.teacher_stage):
        labeled = stage.data.labeled[0][0]
        labeled.num_scenes = PROOF_LABELED
        if args.broad:
            labeled.update(common.BROAD_CAMERAS)
        stage.update(checkpoint_every=500, image_every=500)
    if args.standin and not args.dinov2:
        config.init.dinov2 = PROOF_ENCODER  # the teacher's init follows (a reference)
    if config.init.dinov2:  # a pre-trained encoder is fine-tuned gently, as DINOv2 in the paper
        for stage in (config, config.teacher_stage):
            stage.optim.base_lr = PROOF_PRETRAINED_LR
    config.data.unlabeled.num_scenes = PROOF_UNLABELED
    config.pseudo_stage.data.unlabeled.num_scenes = PROOF_UNLABELED
    config.final_eval.data.num_scenes = PROOF_HELDOUT


def _demo_stages(config, steps, args):
    """The teacher, data-engine and evaluation settings the demo pipeline runs first/last;
    the teacher follows `args.recipe` too, and `args.broad` draws the held-out scenes like the
    unlabeled pool."""
    teacher_arg = f"demo,steps={steps},variant={args.variant},recipe={args.recipe}"
    teacher_arg += f",dinov2={args.dinov2}" if args.dinov2 else ""
    config.teacher_stage = teacher_config.get_config(teacher_arg)
    # `--config.init.dinov2=PATH` (an encoder of the demo's shape; `demo,dinov2=PATH` for a
    # released DINOv2) initialises both the demo's teacher and its student.
    config.teacher_stage.init.dinov2 = config.init.get_ref("dinov2")
    config.pseudo_stage = ml_collections.ConfigDict(
        {
            "teacher_weights": "",
            "data": {"unlabeled": config.data.unlabeled},
            "shard_size": 100,
            "batch_size": 8,
            "input_size": 84,
            "model_dtype": "float32",
        }
    )
    config.final_eval = ml_collections.ConfigDict(
        {
            "data": common.procedural(48, 96, 99, broad=args.broad),
            "max_depth_eval": 80.0,
            "input_size": 84,
            "batch_size": 8,
        }
    )
