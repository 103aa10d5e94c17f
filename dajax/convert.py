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
`dajax.checkpoints.load_inference_params(OUT)`. `python -m dajax.export --workdir W --out O`
is the older spelling of `python -m dajax.convert W O`. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys

from dajax import checkpoints, export
from dajax.weights.pretrained import load_depth_anything

# Options that describe a checkpoint file; a training run's model_config.json says them.
FILE_OPTIONS = ("arch", "version", "head", "max_depth", "pos_embed")


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
    p.add_argument(
        "--arch",
        choices=["vits", "vitb", "vitl", "vitg"],
        help="encoder size, checked against the tensors (default: read from the tensors)",
    )
    p.add_argument(
        "--version",
        choices=["v1", "v2"],
        help="Depth Anything version (default: from the file name or config.json; V1 and V2 "
        "ViT-S/B/L files look alike, so other names need it)",
    )
    p.add_argument(
        "--head",
        choices=["relative", "metric"],
        help="depth head (default: metric when the file name or config.json says so, else "
        "relative)",
    )
    p.add_argument(
        "--max-depth",
        type=float,
        help="metres, for metric heads (default: from the file name, hypersim 20 / vkitti 80, "
        "or config.json)",
    )
    p.add_argument(
        "--pos-embed",
        choices=["official", "hf"],
        help="position-embedding interpolation: the official DINOv2 rule or transformers' "
        "(default: a dajax checkpoint's saved rule, else official)",
    )
    return p


def convert(args: argparse.Namespace) -> str:
    """Writes `args.out` from `args.src` (see the module docstring); returns a one-line report.

    Raises:
      ValueError: options that do not fit the source kind (`--step` for a checkpoint file,
        `--arch`/`--version`/`--head`/`--max-depth`/`--pos-embed` for a training workdir), a
        `--max-depth` that is not a finite number > 0, or a source the readers refuse;
        OSError: a missing file, or `args.out` exists.
    """
    if args.max_depth is not None and not (math.isfinite(args.max_depth) and args.max_depth > 0):
        raise ValueError(f"--max-depth {args.max_depth}: not a finite number of metres > 0")
    if export.is_run(args.src):
        given = [f"--{name.replace('_', '-')}" for name in FILE_OPTIONS if getattr(args, name)]
        if given:
            raise ValueError(
                f"{args.src}: a training workdir, whose model_config.json sets the "
                f"architecture; drop {' '.join(given)} (options for checkpoint files)"
            )
        step = export.export_run(args.src, args.out, args.step)
        return f"exported step {step} of {args.src} to {args.out}"
    if args.step is not None:
        raise ValueError(
            f"{args.src}: --step needs a training workdir (a folder with checkpoints/)"
        )
    config, params = load_depth_anything(
        args.src, **{name: getattr(args, name) for name in FILE_OPTIONS}
    )
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
