"""Depth maps for images and videos from the command line.

    python -m dajax.predict --weights depth_anything_v2_vits.pth --input photos/ --outdir out/
    python -m dajax.predict --weights W --input list.txt --outdir out --save-npy --pred-only
    python -m dajax.predict --weights W --input clip.mp4 --video --outdir out

`--input` is an image, a folder (searched recursively) or a .txt list of paths. By default each
image is written as `OUT/<stem>.png`: the image and its colour-mapped depth side by side.
`--save-npy` writes float32 `[H, W]` maps, `--save-png16` 16-bit PNGs whose scale and offset are
recorded (PNG text chunk and `<stem>.json`), `--ply` coloured point clouds of metric models
(`--focal` pixels or `--fov` degrees; see `dajax.io.pointcloud`). Unreadable files are reported
and skipped; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from dajax.io.images import IMAGE_EXTENSIONS, ImageReadError, find_images, read_image

WEIGHTS_HELP = """\
no --weights given. Official checkpoints (download once, then pass the file):
  Depth Anything V2 (relative): https://huggingface.co/depth-anything/Depth-Anything-V2-Small
    (-Base, -Large): depth_anything_v2_vit{s,b,l}.pth
  Depth Anything V2 (metric):   https://huggingface.co/depth-anything/Depth-Anything-V2-Metric-Hypersim-Large
  Depth Anything V1 (checkpoints/depth_anything_vit{s,b,l}14.pth):
    https://huggingface.co/spaces/LiheYoung/Depth-Anything
  Hugging Face format:          https://huggingface.co/depth-anything/Depth-Anything-V2-Small-hf
Or pass --weights hf:REPO/FILE to download with huggingface_hub (needs network access)."""
CHUNK = 32  # images read and predicted at a time (bounds host memory)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m dajax.predict", description=__doc__.split("\n")[0])
    p.add_argument("--weights", help="checkpoint: .pth, .safetensors, dajax dir, or hf:REPO/FILE")
    p.add_argument("--input", help="image, folder, .txt list, or video (--video)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="built-in data: render procedural scenes into OUT/inputs and predict them; "
        "without --weights a seeded random ViT-S is used (the depth is then meaningless)",
    )
    p.add_argument("--outdir", required=True)
    p.add_argument("--arch", choices=["vits", "vitb", "vitl", "vitg"])
    p.add_argument("--version", choices=["v1", "v2"])
    p.add_argument("--input-size", type=int, default=518)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pred-only", action="store_true", help="write only the depth image")
    p.add_argument("--grayscale", action="store_true", help="grey depth instead of a colormap")
    p.add_argument("--save-npy", action="store_true", help="also write float32 OUT/<stem>.npy")
    p.add_argument("--save-png16", action="store_true", help="also write 16-bit OUT/<stem>_16.png")
    p.add_argument(
        "--ply", action="store_true", help="also write OUT/<stem>.ply point clouds (metric models)"
    )
    p.add_argument("--focal", type=float, help="focal length in pixels for --ply (fx = fy)")
    p.add_argument(
        "--fov", type=float, default=60.0, help="horizontal field of view for --ply, degrees"
    )
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--video", action="store_true", help="--input is a video; write a depth video")
    return p


def resolve_weights(spec: str) -> str:
    """A local checkpoint path; `hf:REPO/FILE` is downloaded with huggingface_hub."""
    if not spec.startswith("hf:"):
        return spec
    repo, _, filename = spec[3:].rpartition("/")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SystemExit("error: --weights hf:... needs `pip install huggingface_hub`") from None
    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as e:  # noqa: BLE001 - any hub/network failure becomes one clear message
        raise SystemExit(
            f"error: could not download {filename} from {repo} ({e}); "
            "download it on a machine with network access and pass the file"
        ) from None


def list_inputs(spec: str) -> list[str]:
    """Image paths from a file, a folder (recursive, sorted) or a .txt list (one per line)."""
    if os.path.isdir(spec):
        found = find_images(spec)
        if not found:
            raise SystemExit(f"error: {spec}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        return found
    if spec.endswith(".txt"):
        with open(spec) as f:
            return [line.strip() for line in f if line.strip()]
    if not os.path.exists(spec):
        raise SystemExit(f"error: {spec}: no such file or folder")
    return [spec]


def _chunks(paths: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(paths), CHUNK):
        yield paths[i : i + CHUNK]


def predict_images(estimator, paths: list[str], args: argparse.Namespace) -> int:
    """Writes outputs for every readable image; returns the number of failures."""
    from dajax.io.depth_png import write_depth_png16

    failures = 0
    cmap = "gray" if args.grayscale else _default_cmap(estimator)
    with tqdm(total=len(paths), unit="img", desc="depth") as bar:
        for chunk in _chunks(paths):
            images, names = [], []
            for path in chunk:
                try:
                    images.append(read_image(path))
                    names.append(path)
                except ImageReadError as e:
                    tqdm.write(f"skipped: {e}", file=sys.stderr)
                    failures += 1
            for path, image, depth in zip(
                names, images, estimator.batch(images, args.batch_size), strict=True
            ):
                stem = os.path.join(args.outdir, os.path.splitext(os.path.basename(path))[0])
                _write_visual(stem + ".png", image, depth, cmap, args.pred_only)
                if args.save_npy:
                    np.save(stem + ".npy", depth.astype(np.float32))
                if args.save_png16:
                    write_depth_png16(stem + "_16.png", depth)
                if args.ply:
                    _write_point_cloud(stem + ".ply", image, depth, args)
            bar.update(len(chunk))
    return failures


def _write_point_cloud(path: str, image: np.ndarray, depth: np.ndarray, args) -> None:
    """Back-projects metric depth with `--focal` (pixels) or `--fov` (degrees)."""
    from dajax.io.pointcloud import Intrinsics, depth_to_points, write_ply

    h, w = depth.shape
    if args.focal:
        intrinsics = Intrinsics.from_focal(w, h, args.focal)
    else:
        intrinsics = Intrinsics.from_fov(w, h, args.fov)
    points, pixels = depth_to_points(depth, intrinsics)
    write_ply(path, points, image.reshape(-1, 3)[pixels])


def _default_cmap(estimator) -> str:
    return "inferno" if estimator.config.version == "v1" else "spectral_r"


def _write_visual(path, image, depth, cmap, pred_only, depth_range=None) -> None:
    import cv2

    from dajax.visualize import colorize, normalize_depth, side_by_side

    rgb = colorize(normalize_depth(depth, depth_range), cmap)
    out = rgb if pred_only else side_by_side(image, rgb)
    cv2.imwrite(path, np.ascontiguousarray(out[:, :, ::-1]))


def predict_video(estimator, path: str, args: argparse.Namespace) -> None:
    """Writes OUT/<stem>_depth.mp4 with one colour scale for the whole clip."""
    from dajax.io.video import VideoReader, VideoWriter
    from dajax.visualize import DepthRange, colorize, normalize_depth, side_by_side

    cmap = "gray" if args.grayscale else _default_cmap(estimator)
    stem = os.path.splitext(os.path.basename(path))[0]
    depth_range = DepthRange()
    with VideoReader(path) as reader:
        h, w = reader.height, reader.width
        size = (w, h) if args.pred_only else (2 * w + 50, h)
        out_path = os.path.join(args.outdir, f"{stem}_depth.mp4")
        with VideoWriter(out_path, reader.fps, size) as writer:
            for frame in tqdm(reader, total=reader.frame_count or None, unit="frame"):
                depth = estimator(frame)
                depth_range.update(depth)
                rgb = colorize(normalize_depth(depth, depth_range), cmap)
                writer.write(rgb if args.pred_only else side_by_side(frame, rgb))
    print(f"wrote {out_path}")


def write_demo_inputs(outdir: str, count: int = 2) -> str:
    """Renders `count` procedural scenes (alternating indoor/outdoor) to OUTDIR/inputs."""
    import cv2

    from dajax.data.procedural import STYLES, render_scene

    folder = os.path.join(outdir, "inputs")
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        record = render_scene(i, 518, 518, STYLES[i % 2])
        cv2.imwrite(os.path.join(folder, f"scene_{i}.png"), record["image"][:, :, ::-1])
    return folder


def load_estimator(args: argparse.Namespace):
    """The estimator the arguments ask for; exits with a message when none can be built."""
    from dajax.inference import DepthEstimator
    from dajax.models import ModelConfig

    if not args.weights:
        if not args.demo:
            print(WEIGHTS_HELP, file=sys.stderr)
            raise SystemExit(2)
        print(
            "demo: no --weights, so a seeded RANDOM ViT-S runs: the maps show the pipeline "
            "works, not what a trained model predicts",
            file=sys.stderr,
        )
        config = ModelConfig.from_variant(args.arch or "vits", "v2")
        return DepthEstimator.random(config, input_size=args.input_size, dtype=args.dtype)
    try:
        return DepthEstimator.from_pretrained(
            resolve_weights(args.weights),
            args.arch,
            args.version,
            input_size=args.input_size,
            dtype=args.dtype,
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not args.input and not args.demo:
        print("error: pass --input (or --demo for built-in data)", file=sys.stderr)
        return 2
    try:
        estimator = load_estimator(args)
    except SystemExit as e:
        return int(e.code)
    if args.ply and estimator.config.head != "metric":
        print(
            "error: --ply needs a metric model (metres); this checkpoint predicts relative "
            "disparity",
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    if args.demo and not args.input:
        args.input = write_demo_inputs(args.outdir)
    if args.video:
        predict_video(estimator, args.input, args)
        return 0
    paths = list_inputs(args.input)
    failures = predict_images(estimator, paths, args)
    print(
        f"wrote {len(paths) - failures} of {len(paths)} to {args.outdir}"
        + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
