"""Shared pieces of the experiment configs: typed `:arg` parsing and default sections.

Config files call `parse_args(arg, variant='vits', demo=False)`, so
`--config=configs/teacher.py:variant=vitl,demo` gives `variant='vitl', demo=True` (bare names
are booleans; values are converted to the default's type).
"""

from __future__ import annotations

import ml_collections

from dajax.data.procedural import PITCH_RANGE, ROLL_RANGE

# Camera ranges (degrees) of a "broad" procedural pool: looking up to 5 degrees above the
# horizon as well as down, and rolled up to 20 degrees either way.
BROAD_CAMERAS = {"pitch_range": (-30.0, 5.0), "roll_range": (-20.0, 20.0)}

# A small encoder for CPU demos (`encoder='custom'`): DINOv2 layout, 8x fewer FLOPs than ViT-S.
DEMO_MODEL = {
    "dim": 192,
    "depth": 6,
    "heads": 3,
    "layers": (2, 3, 4, 5),
    "features": 32,
    "out_channels": (24, 48, 96, 192),
}


def parse_args(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """`'a=1,b'` -> ConfigDict(a=1, b=True) over `defaults`; unknown names are an error."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; expected one of {sorted(defaults)}")
        kind = type(defaults[key])
        if kind is bool:
            out[key] = value.lower() in ("", "1", "true", "yes")
        else:
            out[key] = kind(value)
    return ml_collections.ConfigDict(out)


def model(variant: str, demo: bool, pretrained: bool = False) -> ml_collections.ConfigDict:
    """`config.model`: encoder size, version, compute options. A demo is `DEMO_MODEL` unless
    it starts from `pretrained` DINOv2 weights, which need the released `variant`'s shape.

    Every stage computes in bfloat16 with float32 parameters and optimiser state, the demo
    included: on a CPU its steps run faster than in float32 (`benchmarks/README.md`, the
    `demo_step.py` table), and on the demo's seed 0 the held-out AbsRel of teacher and student
    matched float32's (one seed: `benchmarks/notes/2026-12-01-demo-limits.md`).
    `dtype='float32'` (needed by `impl='reference'`) is the exact mode."""
    small = demo and not pretrained
    return ml_collections.ConfigDict(
        {
            "encoder": "custom" if small else variant,
            "version": "v2",
            "custom": DEMO_MODEL if small else {},
            "head": "relative",  # 'metric': sigmoid x max_depth (metres)
            "max_depth": 0.0,
            "dtype": "bfloat16",
            "remat": "none",  # 'full' | 'dots' | 'dots_no_batch': gradient checkpointing
            "remat_blocks": 0,  # remat only the first N encoder blocks (0 = all)
            "attention": "auto",
            "impl": "fast",  # 'reference': the plain model (dajax/models/reference.py), float32
        }
    )


def optim(total_steps_hint: int = 0) -> ml_collections.ConfigDict:
    """`config.optim`: the paper's AdamW recipe (encoder 5e-6, decoder 10x, linear decay)."""
    return ml_collections.ConfigDict(
        {
            "base_lr": 5e-6,
            "lr_mults": (("^depth_head/", 10.0), (".*", 1.0)),
            "no_decay": (r"(bias|scale|pos_embed|cls_token|mask_token|gamma)$",),
            "weight_decay": 0.01,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "warmup_steps": min(500, total_steps_hint // 20),
            "schedule": "linear",
            "poly_power": 0.9,
            "grad_clip": 1.0,
        }
    )


def procedural(num_scenes: int, size: int, seed: int, kind: str = "procedural", broad=False):
    """A procedural-scene source spec; `broad` draws cameras from `BROAD_CAMERAS` instead of
    the level, downward-looking default."""
    cameras = BROAD_CAMERAS if broad else {"pitch_range": PITCH_RANGE, "roll_range": ROLL_RANGE}
    return ml_collections.ConfigDict(
        {
            "kind": kind,
            "num_scenes": num_scenes,
            "height": size,
            "width": size,
            "styles": ("indoor", "outdoor"),
            "seed": seed,
            **cameras,
        }
    )


def image_folder() -> ml_collections.ConfigDict:
    """An unlabeled image-folder spec: `path` (a folder or a list file) and, optionally,
    `sky_masks` (a folder of masks at the same relative paths, nonzero = sky)."""
    return ml_collections.ConfigDict({"kind": "image_folder", "path": "", "sky_masks": ""})


def loop(total_steps: int, demo: bool) -> dict:
    """Loop fields shared by training stages."""
    return {
        "seed": 0,
        "total_steps": total_steps,
        "log_every": 10 if demo else 100,
        "checkpoint_every": 50 if demo else 2000,
        "image_every": 50 if demo else 2000,  # TensorBoard depth previews (0 = off)
        "keep_checkpoints": 2 if demo else 3,
        # fsdp: devices per FSDP group (1 = data parallel); arrays with fewer elements than
        # fsdp_min_size stay replicated.
        "mesh": ml_collections.ConfigDict({"fsdp": 1, "fsdp_min_size": 2**16}),
        # Validation during training (dajax.training.validation): every `eval_every` steps
        # (0 = off) and at the end, the eval stage's protocol on `eval`; `best.json` records
        # the step with the lowest AbsRel.
        "eval_every": 0,
        "eval": validation(demo),
    }


def validation(demo: bool) -> ml_collections.ConfigDict:
    """`config.eval`: the validation source with its scored depth range (`min_depth_eval`,
    `max_depth_eval`, metres) and `crop_region`, as an entry
    of `configs/eval.py`'s benchmark table (default: 48 held-out procedural scenes)."""
    return ml_collections.ConfigDict(
        {
            "data": procedural(48, 96, 99),
            "min_depth_eval": 1e-3,
            "max_depth_eval": 80.0,
            "crop_region": "none",  # 'eigen' (NYU) | 'garg' (KITTI) | 'none'
            "input_size": 84 if demo else 518,
            "batch_size": 8 if demo else 4,
        }
    )
