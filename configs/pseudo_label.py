"""Data engine: a trained teacher pseudo-labels unlabeled images into ArrayRecord shards.

    python -m dajax.main --config=configs/pseudo_label.py --workdir=runs/pl \
        --config.teacher_weights=runs/teacher/export --config.data.unlabeled.path=photos/
    python -m dajax.main --config=configs/pseudo_label.py:demo --workdir=runs/pl \
        --config.teacher_weights=runs/demo_teacher/export

Shards land in `WORKDIR/shards`; re-running skips finished shards. `demo` labels built-in
procedural images. `--config.data.unlabeled.sky_masks=DIR` (masks at the images' relative
paths, nonzero = sky) stores the sky as disparity 0, as the paper does (docs/data.md).
"""

import ml_collections

from configs import common


def get_config(arg=None):
    args = common.parse_args(arg, demo=False)
    unlabeled = (
        common.procedural(400, 96, 2, "procedural_images") if args.demo else common.image_folder()
    )
    return ml_collections.ConfigDict(
        {
            "stage": "pseudo_label",
            "teacher_weights": "",
            "data": {"unlabeled": unlabeled},
            "shard_size": 100 if args.demo else 10_000,
            "batch_size": 8 if args.demo else 64,
            "input_size": 84 if args.demo else 518,
            "model_dtype": "float32" if args.demo else "bfloat16",
        }
    )
