"""Depth maps for images and videos from the command line.

    python -m dajax.predict --weights depth_anything_v2_vits.pth --input photos/ --outdir out/
    python -m dajax.predict --weights W --input list.txt --outdir out --save-npy --pred-only
    python -m dajax.predict --weights W --input clip.mp4 --video --outdir out

`--input` is an image, a folder (searched recursively) or a .txt list of paths (one a line,
`#` comments). The input tree is mirrored under `--outdir`: `photos/a/x.jpg` is written as
`out/a/x.png` (the image and its colour-mapped depth side by side; near is red for V2 and metric
models). Inputs of one folder sharing a stem (`x.jpg`, `x.png`) keep their extension
(`x_jpg.png`, `x_png.png`). An output never replaces an input, and outputs are never written
where a later run would read them as inputs. `--save-npy` writes float32 `[H, W]` maps,
`--save-png16` 16-bit PNGs whose scale, offset, quantity and unit are recorded (PNG text chunk
and `<name>_16.json`), `--ply` coloured point clouds of metric models (`--focal` pixels or
`--fov` degrees; see `dajax.io.pointcloud`). Every image stands alone: one that cannot be read
(over the pixel budget of `dajax.io.images.MAX_PIXELS`, a lying header, a corrupt file),
predicted or written is one `skipped: <file>: <why>` line and the others are still written;
the summary counts what was written, and the exit code is 1 when any image was skipped (2 for
unusable arguments, before any model is loaded).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from tqdm import tqdm

from dajax import runtime
from dajax.dtypes import DTYPES
from dajax.io.images import ImageReadError, read_image
from dajax.io.inputs import Inputs, list_inputs
from dajax.io.outputs import OutputError, check_outdir, make_outdir, plan_outputs, write_png
from dajax.predict_outputs import write_image_outputs, write_video
from dajax.weights.options import add_loader_options, loader_kwargs

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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; appends `(default: X)` to options that have one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every option's help states its default."""
    p = argparse.ArgumentParser(
        prog="python -m dajax.predict", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--weights",
        help="checkpoint: official .pth, Hugging Face .safetensors or save_pretrained folder, "
        "dajax checkpoint folder, a training run's --workdir (its export/, else its newest "
        "step), or hf:REPO/FILE (default: none; required unless --demo)",
    )
    p.add_argument(
        "--input",
        help="an image, a folder (searched recursively), a .txt list (one path a line, "
        "# comments), or a video with --video (default: none; --demo renders scenes)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="built-in data: render procedural scenes into OUT/inputs and predict them; "
        "without --weights a seeded random ViT-S is used (the depth is then meaningless)",
    )
    p.add_argument(
        "--outdir", required=True, help="output folder; the input tree is mirrored below it"
    )
    add_loader_options(p)
    p.add_argument("--input-size", type=int, default=518, help="shorter network-input side, pixels")
    p.add_argument(
        "--max-side",
        type=int,
        help="cap on the longer network-input side for extreme aspect ratios, pixels "
        "(default: 8 x --input-size)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per network call")
    p.add_argument("--pred-only", action="store_true", help="write only the depth image")
    p.add_argument("--grayscale", action="store_true", help="grey depth (near = white)")
    p.add_argument("--save-npy", action="store_true", help="also write float32 OUT/<name>.npy")
    p.add_argument(
        "--save-png16", action="store_true", help="also write 16-bit OUT/<name>_16.png (+ .json)"
    )
    p.add_argument(
        "--ply", action="store_true", help="also write OUT/<name>.ply point clouds (metric models)"
    )
    p.add_argument(
        "--focal",
        type=float,
        help="focal length in pixels for --ply, fx = fy (default: from --fov)",
    )
    p.add_argument(
        "--fov", type=float, default=60.0, help="horizontal field of view for --ply, degrees"
    )
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype")
    p.add_argument(
        "--impl",
        choices=["fast", "reference"],
        default="fast",
        help="network implementation: the fast kernels, or the plain reference (float32 only)",
    )
    p.add_argument(
        "--video", action="store_true", help="--input is a video; write OUT/<stem>_depth.mp4"
    )
    p.add_argument(
        "--codec",
        choices=["mp4v", "h264"],
        default="mp4v",
        help="--video's codec: mp4v (OpenCV, no extra needed) or h264, which browsers play "
        "(needs pip install -e '.[video]') (default: %(default)s)",
    )
    runtime.add_compile_cache_flag(p)
    return p


def output_suffixes(args: argparse.Namespace) -> list[str]:
    """The files written per image, as suffixes of its output base."""
    suffixes = [".png"]
    if args.save_npy:
        suffixes.append(".npy")
    if args.save_png16:
        suffixes += ["_16.png", "_16.json"]
    if args.ply:
        suffixes.append(".ply")
    return suffixes


def _report(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _skip(path: str, error: BaseException, note: str = "") -> None:
    """Reports one input that is not written: `skipped: <path>: <why>`, on one line."""
    text = (str(error).strip().splitlines() or [""])[0]
    if not text.startswith(path):
        text = f"{path}: {type(error).__name__}: {text}"
    _report(f"skipped: {text}{note}")


def _read(path: str, estimator) -> np.ndarray | None:
    """The image at `path`, or None after reporting why it cannot be used."""
    from dajax.io.video import VIDEO_EXTENSIONS
    from dajax.preprocess import network_size

    try:
        image = read_image(path)
    except Exception as e:  # noqa: BLE001 - ImageReadError, or anything: one file, one line
        video = isinstance(e, ImageReadError) and path.lower().endswith(VIDEO_EXTENSIONS)
        _skip(path, e, "; it is a video: predict it alone with --video" if video else "")
        return None
    h, w = image.shape[:2]
    shape, full = estimator.network_shape(h, w), network_size(h, w, estimator.input_size)
    if shape != full:
        _report(
            f"note: {path}: a {h}x{w} image would need a {full[0]}x{full[1]} network input; "
            f"using {shape[0]}x{shape[1]} (--max-side {estimator.max_side})"
        )
    return image


def _depths(estimator, images: list[np.ndarray], batch_size: int):
    """Yields `(index, depth or the exception)` per image as its batch finishes; when a batch
    fails, its images are retried one by one, so one bad image never loses the others."""
    done = set()
    try:
        for i, depth in estimator.iter_batch(images, batch_size):
            done.add(i)
            yield i, depth
    except Exception:  # noqa: BLE001 - isolated below, image by image
        for i, image in enumerate(images):
            if i in done:
                continue
            try:
                yield i, estimator(image)
            except Exception as e:  # noqa: BLE001 - reported as this image's failure
                yield i, e


def predict_images(estimator, bases: dict[str, str], args: argparse.Namespace) -> int:
    """Predicts and writes every input (`bases`: path -> output base); returns how many were
    written in full. An image that fails is one `skipped:` line; the bar advances once per
    image."""
    paths = list(bases)
    written = 0
    with tqdm(total=len(paths), unit="img", desc="depth") as bar:
        for start in range(0, len(paths), CHUNK):
            ready = []
            for path in paths[start : start + CHUNK]:
                image = _read(path, estimator)
                if image is None:
                    bar.update(1)
                else:
                    ready.append((path, image))
            images = [image for _, image in ready]
            for i, depth in _depths(estimator, images, args.batch_size):
                path, image = ready[i]
                if isinstance(depth, Exception):
                    _skip(path, depth)
                else:
                    try:
                        write_image_outputs(bases[path], image, depth, estimator, args)
                        written += 1
                    except Exception as e:  # noqa: BLE001 - OutputError, an encoder's error
                        _skip(path, e)
                bar.update(1)
    return written


def write_demo_inputs(outdir: str, count: int = 2) -> str:
    """Renders `count` procedural scenes (alternating indoor/outdoor) to OUTDIR/inputs."""
    from dajax.data.procedural import STYLES, render_scene

    folder = os.path.join(outdir, "inputs")
    for i in range(count):
        record = render_scene(i, 518, 518, STYLES[i % 2])
        write_png(os.path.join(folder, f"scene_{i}.png"), record["image"])
    return folder


def estimator_from_args(args: argparse.Namespace):
    """The estimator the arguments ask for; exits with a message when none can be built."""
    from dajax.inference import DepthEstimator
    from dajax.models import ModelConfig

    sizes = {
        "input_size": args.input_size,
        "dtype": args.dtype,
        "max_side": args.max_side,
        "impl": args.impl,
    }
    if not args.weights:
        print(
            "demo: no --weights, so a seeded RANDOM ViT-S runs: the maps show the pipeline "
            "works, not what a trained model predicts",
            file=sys.stderr,
        )
        config = ModelConfig.from_variant(args.arch or "vits", "v2")
        return DepthEstimator.random(config, **sizes)
    try:
        return DepthEstimator.from_pretrained(args.weights, **loader_kwargs(args), **sizes)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def plan(args: argparse.Namespace) -> dict[str, str] | str:
    """Checks the input and output before any model loads: the output bases of the images, or
    the video's path. Raises InputError / OutputError."""
    check_outdir(args.outdir)
    if args.video:
        from dajax.io.video import VideoReader

        with VideoReader(args.input):  # a missing or undecodable video fails here
            return args.input
    if args.demo and not args.input:
        make_outdir(args.outdir)
        args.input = write_demo_inputs(args.outdir)
    inputs: Inputs = list_inputs(args.input, skip=args.outdir)
    return plan_outputs(inputs, args.outdir, output_suffixes(args))


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    runtime.use_compilation_cache(enabled=not args.no_compile_cache)
    if not args.input and not args.demo:
        print("error: pass --input (or --demo for built-in data)", file=sys.stderr)
        return 2
    if not args.weights and not args.demo:
        print(WEIGHTS_HELP, file=sys.stderr)
        return 2
    video_data = [
        f
        for f, on in (
            ("--save-npy", args.save_npy),
            ("--save-png16", args.save_png16),
            ("--ply", args.ply),
        )
        if on
    ]
    if args.video and video_data:
        print(
            f"error: {' and '.join(video_data)} write per-image data, which --video does not "
            "(it writes one coloured mp4); predict the frames as images to get their data",
            file=sys.stderr,
        )
        return 2
    if args.impl == "reference" and args.dtype != "float32":
        print("error: --impl reference computes in float32; drop --dtype", file=sys.stderr)
        return 2
    try:
        loader_kwargs(args)  # checked here so that a bad value leaves no output folder
        work = plan(args)
    except ValueError as e:  # InputError, OutputError, or a video that cannot be opened
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        estimator = estimator_from_args(args)
    except SystemExit as e:
        return e.code
    if args.ply and not estimator.metric:
        print(
            "error: --ply needs a metric model (metres); this checkpoint predicts relative "
            "disparity",
            file=sys.stderr,
        )
        return 2
    try:
        make_outdir(args.outdir)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.video:
        return write_video(estimator, work, args)
    written = predict_images(estimator, work, args)
    failed = len(work) - written
    print(
        f"wrote {written} of {len(work)} to {args.outdir}"
        + (f"; {failed} failed" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
