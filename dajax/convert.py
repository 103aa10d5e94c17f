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
    p.add_argument(
        "src",
        help="official .pth, Hugging Face .safetensors or save_pretrained folder, dajax "
        "checkpoint, or hf:OWNER/REPO/FILE (required)",
    )
    p.add_argument("out", help="new output directory; must not exist (required)")
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
        default="official",
        help="position-embedding interpolation: the official DINOv2 rule or transformers' "
        "(default: %(default)s)",
    )
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
