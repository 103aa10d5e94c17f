"""Write a dajax (Orbax) inference checkpoint from a released checkpoint or a training run.

    python -m dajax.convert depth_anything_v2_vits.pth out/vits_v2
    python -m dajax.convert depth_anything_vitl14.pth out/vitl_v1 --version v1
    python -m dajax.convert hf_model/model.safetensors out/hf --pos-embed hf
    python -m dajax.convert runs/student models/student                 # the newest step
    python -m dajax.convert runs/student models/student_2000 --step 2000

SOURCE is a checkpoint (an official `.pth`, a Hugging Face `.safetensors` file or
`save_pretrained` folder, a dajax checkpoint, `hf:OWNER/REPO/FILE`) or a training run's
`--workdir` (a folder with `checkpoints/`): then its `model_config.json` and the params of one
saved step, without the optimiser state. The output loads with
`DepthEstimator.from_pretrained(OUT)`, `python -m dajax.predict --weights OUT` and
`dajax.checkpoints.load_inference_params(OUT)` (a training run's part: `checkpoints.load_run`,
`checkpoints.export_run`). Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from dajax import checkpoints
from dajax.weights.options import OPTIONS, add_loader_options, loader_kwargs
from dajax.weights.pretrained import load_depth_anything


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m dajax.convert", description=__doc__.split("\n")[0])
    p.add_argument(
        "src",
        help="official .pth, Hugging Face .safetensors or save_pretrained folder, dajax "
        "checkpoint, hf:OWNER/REPO/FILE, or a training run's --workdir (required)",
    )
    p.add_argument("out", help="new output directory; must not exist (required)")
    p.add_argument(
        "--step",
        type=int,
        help="for a training workdir: the checkpoint step (default: the newest)",
    )
    add_loader_options(p)
    return p


def convert(args: argparse.Namespace) -> str:
    """Writes `args.out` from `args.src` (see the module docstring); returns a one-line report.

    Raises:
      ValueError: options that do not fit the source kind (`--step` for a checkpoint file,
        the loader options of `dajax.weights.options` for a training workdir, whose
        model_config.json says them), or a source the readers refuse; OSError: a missing file,
        or `args.out` exists.
    """
    load = loader_kwargs(args)
    if checkpoints.is_run(args.src):
        given = [option.flag for option in OPTIONS if load[option.name] is not None]
        if given:
            raise ValueError(
                f"{args.src}: a training workdir, whose model_config.json sets the "
                f"architecture; drop {' '.join(given)} (options for checkpoint files)"
            )
        step = checkpoints.export_run(args.src, args.out, args.step)
        return f"exported step {step} of {args.src} to {args.out}"
    if args.step is not None:
        raise ValueError(
            f"{args.src}: --step needs a training workdir (a folder with checkpoints/)"
        )
    config, params = load_depth_anything(args.src, **load)
    checkpoints.save_inference_params(args.out, params, config)
    return (
        f"wrote {args.out}: {config.encoder} {config.version} {config.head} "
        f"(dim {config.dim}, depth {config.depth}, layers {list(config.layers)})"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m dajax.convert`; returns the exit code (2 for an error)."""
    args = build_parser().parse_args(argv)
    try:
        report = convert(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
