"""Metric-depth fine-tuning (V2 `metric_depth` recipe): metric head, SiLog, AdamW, poly decay.

    python -m dajax.main --config=configs/metric.py:dataset=nyu,variant=vitl --workdir=runs/nyu \
        --config.init.weights=depth_anything_v2_vitl.pth
    python -m dajax.main --config=configs/metric.py:dataset=kitti,variant=vitl --workdir=R \
        --config.init.weights=depth_anything_v2_metric_vkitti_vitl.pth --config.init.load=all
    python -m dajax.main --config=configs/metric.py:demo --workdir=runs/metric_demo

`dataset=nyu` caps depth at 10 m and reads the NYUv2 h5 tree at `root` (default
`data/nyu/train`); `dataset=kitti` caps at 80 m and reads the KITTI Eigen train list under
`root` (default `data/kitti`). V2's own sets: `dataset=hypersim` (20 m) and `dataset=vkitti`
(Virtual KITTI 2, 80 m) read V2's split list `root/train.txt` (`rgb_path depth_path` lines,
relative paths under `root`; default `data/hypersim`, `data/vkitti`). `demo` fine-tunes the
small demo model on indoor procedural scenes (10 m) on a CPU.

`init.weights` with `init.load='encoder'` (the official choice) takes only the encoder of a
relative checkpoint; `init.load='all'` continues from a metric checkpoint, which must have the
run's `model.max_depth` unless `init.rescale_max_depth=True` (the head is kept, so every
prediction is scaled by new / old max_depth at step 0). The batch, LR, min_depth and weight
decay are V2's `metric_depth/dist_train.sh` and `train.py`; V2 trains 120 epochs, i.e.
`steps=` 120 × (training images) / 32.
"""

import os

import ml_collections

from configs import common
from dajax.models.variants import V2_METRIC_MAX_DEPTH

MAX_DEPTH = {"nyu": 10.0, "kitti": 80.0, **V2_METRIC_MAX_DEPTH, "procedural": 10.0}
# The source kind reading each of V2's own metric sets (dajax/data/metric_sources.py).
V2_SOURCE_KINDS = {"hypersim": "hypersim", "vkitti": "vkitti2"}


def _train_data(dataset: str, root: str, demo: bool):
    if dataset == "procedural" or demo:
        spec = common.procedural(400 if demo else 100_000, 96 if demo else 600, 1)
        spec.styles = ("indoor",)
        return spec
    if dataset == "nyu":
        return ml_collections.ConfigDict(
            {"kind": "nyu_h5", "path": root or os.path.join("data", "nyu", "train")}
        )
    if dataset in V2_SOURCE_KINDS:
        folder = root or os.path.join("data", dataset)
        list_file = os.path.join(folder, "train.txt")
        spec = {"kind": V2_SOURCE_KINDS[dataset], "list_file": list_file, "root": folder}
        if dataset == "vkitti":
            spec["max_depth"] = MAX_DEPTH[dataset]
        return ml_collections.ConfigDict(spec)
    kitti = root or os.path.join("data", "kitti")
    return ml_collections.ConfigDict(
        {
            "kind": "kitti",
            "list_file": os.path.join(kitti, "kitti_eigen_train_files_with_gt.txt"),
            "data_root": os.path.join(kitti, "raw"),
            "depth_root": os.path.join(kitti, "gt_depth"),
            "max_depth": MAX_DEPTH["kitti"],
        }
    )


def get_config(arg=None):
    args = common.parse_args(arg, dataset="nyu", variant="vits", root="", demo=False, steps=0)
    if args.dataset not in MAX_DEPTH:
        raise ValueError(f"unknown dataset {args.dataset!r}; expected one of {list(MAX_DEPTH)}")
    demo = args.demo
    steps = args.steps or (100 if demo else 20_000)
    config = ml_collections.ConfigDict(common.loop(steps, demo))
    config.stage = "metric"
    config.model = common.model(args.variant, demo)
    config.model.head = "metric"
    config.model.max_depth = MAX_DEPTH["procedural" if demo else args.dataset]
    config.min_depth = 1e-3
    config.init = ml_collections.ConfigDict(
        {"weights": "", "load": "encoder", "rescale_max_depth": False, "dinov2": ""}
    )
    config.data = ml_collections.ConfigDict(
        {
            "labeled": ((_train_data(args.dataset, args.root, demo), 1.0),),
            "crop": 84 if demo else 518,
            # global batch; V2's metric_depth/dist_train.sh: bs=4 per GPU on 8 GPUs
            "labeled_batch": 8 if demo else 32,
            "workers": 0 if demo else 8,
            "allow_procedural": demo or args.dataset == "procedural",  # chosen on purpose
        }
    )
    config.optim = common.optim(steps)
    config.optim.update(schedule="poly", warmup_steps=0, grad_clip=0.0)
    # V2's metric_depth/train.py: AdamW(weight_decay=0.01) on every parameter, biases and
    # norms included
    config.optim.no_decay = ()
    if demo:
        config.optim.base_lr = 3e-5  # random encoder; larger steps saturate the sigmoid head
    return config
