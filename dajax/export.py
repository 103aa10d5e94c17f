"""A training run's params as an inference checkpoint: the training-workdir source of
`python -m dajax.convert WORKDIR OUT [--step N]`.

Reads `WORKDIR/model_config.json` (written when training starts) and the params of the newest
(or `--step`) checkpoint in `WORKDIR/checkpoints`, without the optimiser state, and writes an
Orbax inference checkpoint that `DepthEstimator.from_pretrained(OUT)` and
`python -m dajax.predict --weights OUT` load. `load_run` reads the params alone: it is how
every loader takes a run folder (`dajax.weights.pretrained.load_depth_anything`).

    python -m dajax.export --workdir runs/student --out models/student --step 2000

is the older spelling of `python -m dajax.convert runs/student models/student --step 2000`
and runs it.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from dajax import checkpoints, paths
from dajax.models import DepthAnything, ModelConfig, param_shapes

EXPORT_DIR = "export"  # where a finished training run writes its inference checkpoint


def is_run(path: paths.PathLike) -> bool:
    """Whether `path` is a training run's workdir (a folder holding `checkpoints/`; local or a
    bucket URL, `dajax.paths`)."""
    return (paths.resolve(path) / "checkpoints").is_dir()


def load_run(workdir: paths.PathLike, step: int | None = None) -> tuple[ModelConfig, dict, int]:
    """The params of `workdir`'s checkpoint `step` (default: newest), without the optimiser
    state or the iterator.

    Returns:
      (config from `model_config.json`, params as `jax.Array`s on the first local device in
      their saved dtypes, the step).

    Raises:
      FileNotFoundError naming what is missing (the config, any saved step, the step).
    """
    config_path = paths.resolve(workdir) / checkpoints.CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path}: missing; is {workdir} the --workdir of a dajax training run?"
        )
    config = ModelConfig.from_dict(json.loads(config_path.read_text()))
    ckpt_dir = config_path.parent / "checkpoints"
    ckpt = checkpoints.TrainCheckpointer(ckpt_dir, save_every=1)
    try:
        steps = ckpt.manager.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"{workdir}: a training run with no saved step yet; wait for its first "
                "checkpoint, or pass a checkpoint file or a converted folder"
            )
        step = max(steps) if step is None else step
        if step not in steps:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint for step {step}; have {steps}")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
            param_shapes(DepthAnything(config)),
        )
        params = ckpt.restore_params(step, abstract)
    finally:
        ckpt.close()
    return config, params, step


def export_run(workdir: paths.PathLike, out: paths.PathLike, step: int | None = None) -> int:
    """Writes the params of `workdir`'s checkpoint `step` (default: newest) to `out` (either
    may be a bucket URL, `dajax.paths`).

    Returns the exported step. Raises FileNotFoundError naming what is missing.
    """
    config, params, step = load_run(workdir, step)
    checkpoints.save_inference_params(out, jax.tree.map(np.asarray, params), config)
    return step


def build_parser() -> argparse.ArgumentParser:
    """The older command-line interface (`--workdir`, `--out`, `--step`)."""
    parser = argparse.ArgumentParser(
        prog="python -m dajax.export",
        description="The older spelling of `python -m dajax.convert WORKDIR OUT [--step N]`.",
    )
    parser.add_argument("--workdir", required=True, help="the training run's --workdir (required)")
    parser.add_argument(
        "--out", required=True, help="new directory for the inference checkpoint (required)"
    )
    parser.add_argument(
        "--step", type=int, default=None, help="checkpoint step (default: the newest)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m dajax.export`: runs `python -m dajax.convert WORKDIR OUT [--step N]`; returns
    its exit code."""
    from dajax import convert  # convert imports this module

    args = build_parser().parse_args(argv)
    step = [] if args.step is None else ["--step", str(args.step)]
    return convert.main([args.workdir, args.out, *step])


if __name__ == "__main__":
    sys.exit(main())
