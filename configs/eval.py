"""Evaluation: the paper's zero-shot relative table (Table 1) or the metric-depth metrics.

    python -m dajax.main --config=configs/eval.py:dataset=nyu,root=data/nyu,weights=W.pth \
        --workdir=runs/eval
    python -m dajax.main --config=configs/eval.py:dataset=all,root=data,weights=W.pth --workdir=E
    python -m dajax.main --config=configs/eval.py:dataset=procedural,input_size=84,\
        weights=runs/demo/student/export --workdir=runs/eval_demo

`dataset` is one of kitti, nyu, sintel, ddad, eth3d, diode, procedural (built-in scenes; indoor
and outdoor, 80 m), procedural_indoor (10 m, for metric demos), or
`all` (the six zero-shot benchmarks). Data is read from `root` (default `data/<dataset>`;
for `all`, `root/<name>` with root default `data`). The expected file layout of
each is in `dajax/data/benchmark_sources.py` and `dajax/data/rgbd_sources.py`; any path can be
overridden, e.g. `--config.benchmarks.kitti.data.list_file=...`. `protocol=auto` scores
relative models with the scale-and-shift-aligned AbsRel/δ1 and metric models with the nine
metric-depth metrics; `flip` averages with the mirrored image's prediction. The checkpoint
options of `python -m dajax.predict` are config arguments here, under the same names
(`arch`, `version`, `head`, `max_depth` in metres, `pos_embed`; `dajax/weights/options.py`):
`weights=depth_anything_vitl14.pth,version=v1`. `weights` may be a training run's workdir.
"""

import os

import ml_collections

from configs import common
from dajax.weights import options

ZERO_SHOT = ("kitti", "nyu", "sintel", "ddad", "eth3d", "diode")

# Published zero-shot relative AbsRel / δ1 of Depth Anything V1 (paper Table 1).
PAPER_RELATIVE = {
    "vits": {
        "kitti": (0.080, 0.936),
        "nyu": (0.053, 0.972),
        "sintel": (0.464, 0.739),
        "ddad": (0.247, 0.768),
        "eth3d": (0.127, 0.885),
        "diode": (0.076, 0.939),
    },
    "vitl": {
        "kitti": (0.076, 0.947),
        "nyu": (0.043, 0.981),
        "sintel": (0.458, 0.760),
        "ddad": (0.230, 0.789),
        "eth3d": (0.127, 0.882),
        "diode": (0.066, 0.952),
    },
}
# Metric depth fine-tuned on NYUv2, V1 ViT-L (paper Table 3).
PAPER_METRIC_NYU = {
    "a1": 0.984,
    "a2": 0.998,
    "a3": 1.000,
    "abs_rel": 0.056,
    "rmse": 0.206,
    "log_10": 0.024,
}


def _bench(data: dict, min_depth: float, max_depth: float, crop_region: str = "none"):
    return {
        "data": data,
        "min_depth_eval": min_depth,
        "max_depth_eval": max_depth,
        "crop_region": crop_region,
    }


def _indoor(spec):
    spec.styles = ("indoor",)
    return spec


def benchmarks(root: str, single: bool) -> dict:
    """Source spec, depth range (metres) and crop of every dataset, read from `root/<name>`
    (`root` default `data`), or from `root` itself when one dataset is given with a root."""
    at = lambda name: root if single and root else os.path.join(root or "data", name)  # noqa: E731
    nyu, kitti = at("nyu"), at("kitti")
    return {
        "nyu": _bench(
            {
                "kind": "nyu_mat",
                "path": os.path.join(nyu, "nyu_depth_v2_labeled.mat"),
                "split": "test",
                "splits": os.path.join(nyu, "splits.mat"),
            },
            1e-3,
            10.0,
            "eigen",
        ),
        "kitti": _bench(
            {
                "kind": "kitti",
                "list_file": os.path.join(kitti, "kitti_eigen_test_files_with_gt.txt"),
                "data_root": os.path.join(kitti, "raw"),
                "depth_root": os.path.join(kitti, "gt_depth"),
                "max_depth": 80.0,
            },
            1e-3,
            80.0,
            "garg",
        ),
        "sintel": _bench({"kind": "sintel", "path": at("sintel")}, 1e-3, 72.0),
        "ddad": _bench({"kind": "ddad", "path": at("ddad")}, 1e-3, 80.0),
        "eth3d": _bench({"kind": "eth3d", "path": at("eth3d")}, 1e-3, 1000.0),
        "diode": _bench({"kind": "diode", "path": at("diode")}, 1e-3, 300.0),
        "procedural": _bench(common.procedural(48, 96, 99), 1e-3, 80.0),
        "procedural_indoor": _bench(_indoor(common.procedural(48, 96, 99)), 1e-3, 10.0),
    }


def get_config(arg=None):
    args = common.parse_args(
        arg,
        dataset="nyu",
        weights="",
        root="",
        protocol="auto",
        flip=False,
        input_size=518,
        batch=4,
        dtype="float32",
        impl="fast",
        **options.CONFIG_UNSET,
    )
    names = ZERO_SHOT if args.dataset == "all" else (args.dataset,)
    table = benchmarks(args.root, single=args.dataset != "all")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}; expected all or one of {list(table)}")
    config = ml_collections.ConfigDict()
    config.stage = "eval"
    config.weights = args.weights
    config.datasets = names
    config.benchmarks = {n: table[n] for n in names}
    config.protocol = args.protocol
    config.flip = args.flip
    config.input_size = args.input_size
    config.batch_size = args.batch
    config.dtype = args.dtype
    config.impl = args.impl  # 'reference': the plain model (dajax/models/reference.py), float32
    # The loader options every entry point shares (dajax/weights/options.py); "" / 0.0: unset.
    config.load = {name: args[name] for name in options.NAMES}
    config.reference = {
        "relative": {
            enc: {n: {"abs_rel": r[0], "a1": r[1]} for n, r in rows.items()}
            for enc, rows in PAPER_RELATIVE.items()
        },
        "metric": {"vitl": {"nyu": PAPER_METRIC_NYU}},
    }
    return config
