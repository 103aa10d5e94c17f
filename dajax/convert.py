"""Convert an official / Hugging Face checkpoint into a dajax (Orbax) inference checkpoint.

    python -m dajax.convert depth_anything_v2_vits.pth out/vits_v2
    python -m dajax.convert depth_anything_vitl14.pth out/vitl_v1 --version v1
    python -m dajax.convert hf_model/model.safetensors out/hf --pos-embed hf

The output directory loads with `DepthEstimator.from_pretrained(OUT)` and
`dajax.checkpoints.load_inference_params(OUT)`.
"""

from __future__ import annotations

import argparse
import sys

from dajax import checkpoints
from dajax.weights.pretrained import load_depth_anything


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m dajax.convert", description=__doc__.split("\n")[1])
    p.add_argument("src", help="official .pth, Hugging Face .safetensors, or dajax checkpoint")
    p.add_argument("out", help="new output directory")
    p.add_argument("--arch", choices=["vits", "vitb", "vitl", "vitg"])
    p.add_argument("--version", choices=["v1", "v2"])
    p.add_argument("--head", choices=["relative", "metric"])
    p.add_argument("--max-depth", type=float, help="metres, for metric heads")
    p.add_argument("--pos-embed", choices=["official", "hf"], default="official")
    return p


def main(argv: list[str] | None = None) -> int:
    """Converts; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        config, params = load_depth_anything(
            args.src,
            arch=args.arch,
            version=args.version,
            head=args.head,
            max_depth=args.max_depth,
            pos_embed=args.pos_embed,
        )
        checkpoints.save_inference_params(args.out, params, config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {config.encoder} {config.version} {config.head} "
        f"(dim {config.dim}, depth {config.depth}, layers {list(config.layers)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
