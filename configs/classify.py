"""Classification study: ResNet-50 features of RGB, of depth, and of both, each
classified by an MLP head (3 linear layers, 2 ReLU, dropout; Adam, 30 epochs).

    python -m dajax.main --config=configs/classify.py:demo --workdir=runs/classify_demo
    python -m dajax.main --config=configs/classify.py:data=photos/ --workdir=runs/classify \
        --config.depth.weights=depth_anything_v2_vits.pth \
        --config.backbone.weights=resnet50-0676ba61.pth

`data=DIR` holds one sub-folder per class, or `train/` and `val/` sub-roots each with the same
class folders. `demo` runs the procedural camouflage set (objects textured like their
background but nearer the camera) in about a minute on 2 CPU cores, with the renderer's true
depth (`depth_source='render'`; `demo,depth=estimator` uses `config.depth.weights`, or a random
tiny depth model) and, unless `--config.backbone.weights` is given, a RANDOM ResNet-50 (warned).
Other args: `backbone=resnet50|dinov2`, `output=logits|pool`, `seed=N`.
"""

import ml_collections
from ml_collections import config_dict

from configs import common

# A random-weight stand-in for Depth Anything when no weights are given (demo and tests).
TINY_DEPTH_MODEL = {
    "encoder": "custom",
    "dim": 32,
    "depth": 2,
    "heads": 2,
    "layers": (0, 1, 1, 1),
    "features": 16,
    "out_channels": (8, 16, 32, 32),
}


def get_config(arg=None):
    args = common.parse_args(
        arg, demo=False, data="", depth="", backbone="resnet50", output="logits", seed=0
    )
    demo = args.demo
    config = ml_collections.ConfigDict()
    config.stage = "classify"
    config.seed = args.seed
    config.experiments = ("depth", "rgb", "rgb+depth")
    config.data = ml_collections.ConfigDict(
        {
            "kind": "camouflage" if demo else "image_folder",
            "root": args.data,  # image_folder: class folders, or train/ + val/ sub-roots
            "val_fraction": 0.2,  # stratified split when there are no train/ + val/ sub-roots
            "seed": args.seed,
            # camouflage demo only:
            "n_per_class": 60 if demo else 0,
            "classes": ("disc", "square", "triangle", "ring"),
            "size": 64,  # pixels
            "contrast": 0.04,  # the object's relative brightness offset (0 = perfect camouflage)
        }
    )
    # 'estimator' (Depth Anything) | 'render' (demo only: the renderer's true depth).
    config.depth_source = args.depth or ("render" if demo else "estimator")
    config.depth = ml_collections.ConfigDict(
        {
            "weights": config_dict.placeholder(str),  # Depth Anything checkpoint; None = random
            "input_size": 70 if demo else 518,  # network input lower bound, multiple of 14
            "batch_size": 8,
            "model": TINY_DEPTH_MODEL,  # architecture of the random stand-in
        }
    )
    config.backbone = ml_collections.ConfigDict(
        {
            "name": args.backbone,  # 'resnet50' | 'dinov2'
            "output": args.output,  # resnet50: 'logits' (1000-d, the study's) | 'pool' (2048-d)
            "weights": config_dict.placeholder(str),  # torchvision / DINOv2 file; None = random
            "image_size": 64 if demo else 224,  # pixels (DINOv2: rounded to a multiple of 14)
            "batch_size": 32,
            "dinov2_variant": "vits",
            "dinov2_custom": {},  # ModelConfig field overrides (tests)
        }
    )
    config.head = ml_collections.ConfigDict(
        {
            "hidden": (512, 256),
            "dropout": 0.3,
            "lr": 1e-3,
            "epochs": 30,
            "batch_size": 32,
            "standardize": True,  # z-score features with train-set statistics
        }
    )
    return config
