"""Metric-depth fine-tuning (V2 `metric_depth` recipe): metric head, SiLog, AdamW, poly decay.

    python -m dajax.main --config=configs/metric.py:dataset=nyu,variant=vitl --workdir=runs/nyu \
        --config.init.weights=depth_anything_v2_vitl.pth
    python -m dajax.main --config=configs/metric.py:dataset=kitti,variant=vitl --workdir=R \
        --config.init.weights=depth_anything_v2_metric_vkitti_vitl.pth --config.init.load=all
    python -m dajax.main --config=configs/metric.py:demo --workdir=runs/metric_demo

`dataset=nyu` caps depth at 10 m and reads the NYUv2 h5 tree at `root` (default
`data/nyu/train`); `dataset=kitti` caps at 80 m and reads the KITTI Eigen train list under
`root` (default `data/kitti`). `demo` fine-tunes the small demo model on indoor procedural
scenes (10 m) on a CPU. `init.weights` with `init.load='encoder'` (the official choice) takes
only the encoder of a relative checkpoint; `init.load='all'` continues from a metric checkpoint.
"""

import os

import ml_collections

from configs import common

MAX_DEPTH = {"nyu": 10.0, "kitti": 80.0, "procedural": 10.0}


def _train_data(dataset: str, root: str, demo: bool):
    if dataset == "procedural" or demo:
        spec = common.procedural(400 if demo else 100_000, 96 if demo else 600, 1)
        spec.styles = ("indoor",)
        return spec
    if dataset == "nyu":
        return ml_collections.ConfigDict(
            {"kind": "nyu_h5", "path": root or os.path.join("data", "nyu", "train")}
        )
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
    config.init = ml_collections.ConfigDict({"weights": "", "load": "encoder", "dinov2": ""})
    config.data = ml_collections.ConfigDict(
        {
            "labeled": ((_train_data(args.dataset, args.root, demo), 1.0),),
            "crop": 84 if demo else 518,
            "labeled_batch": 8 if demo else 4,
            "workers": 0 if demo else 8,
            "allow_procedural": demo or args.dataset == "procedural",  # chosen on purpose
        }
    )
    config.optim = common.optim(steps)
    config.optim.update(schedule="poly", warmup_steps=0, grad_clip=0.0)
    if demo:
        config.optim.base_lr = 3e-5  # random encoder; larger steps saturate the sigmoid head
    return config
