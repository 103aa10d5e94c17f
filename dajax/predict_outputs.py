"""What `dajax.predict` writes for one image or one video, every write checked."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np
from tqdm import tqdm

from dajax.io.outputs import write_npy, write_png
from dajax.visualize import DepthRange, default_cmap, depth_picture, side_by_side


def picture_cmap(estimator, args: argparse.Namespace) -> str:
    """'gray' with --grayscale, else the model version's official colormap."""
    return "gray" if args.grayscale else default_cmap(estimator.config.version)


def write_image_outputs(base: str, image, depth, estimator, args: argparse.Namespace) -> None:
    """Writes `base`.png (the picture) and the files the flags ask for.

    Args:
      base: output path without suffix.
      image: [H, W, 3] uint8 RGB; depth: [H, W] float32 disparity or metres.

    Raises:
      OSError / ValueError (OutputError): a file could not be written; it names the path.
    """
    from dajax.io.depth_png import QUANTITIES, write_depth_png16

    rgb = depth_picture(depth, estimator.metric, picture_cmap(estimator, args))
    write_png(base + ".png", rgb if args.pred_only else side_by_side(image, rgb))
    if args.save_npy:
        write_npy(base + ".npy", depth.astype(np.float32))
    if args.save_png16:
        quantity, unit = QUANTITIES["metric" if estimator.metric else "relative"]
        write_depth_png16(base + "_16.png", depth, quantity=quantity, unit=unit)
    if args.ply:
        _write_point_cloud(base + ".ply", image, depth, args)


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


def write_video(estimator, path: str, args: argparse.Namespace) -> int:
    """Writes OUT/<stem>_depth.mp4 with one colour scale for the whole clip: a first pass
    predicts every frame for the clip's range (`DepthRange`), the second predicts them again
    and writes them (twice the compute, no frame kept in memory). Returns the exit code (1,
    with one line on stderr, when the video cannot be read or written or no frame was
    decoded: no empty file is left). Fewer frames than the file declares is a `warning:` line
    on stderr; what decoded is written."""
    from dajax.io.video import VideoReader, open_writer

    stem = os.path.splitext(os.path.basename(path))[0]
    out_path = os.path.join(args.outdir, f"{stem}_depth.mp4")
    if os.path.realpath(out_path) == os.path.realpath(path):
        print(
            f"error: {out_path}: would overwrite the input; choose another --outdir",
            file=sys.stderr,
        )
        return 2
    cmap, depth_range = picture_cmap(estimator, args), DepthRange()
    try:
        with VideoReader(path) as reader:
            for frame in tqdm(reader, total=reader.frame_count or None, unit="frame", desc="range"):
                depth_range.update(estimator(frame))
        with VideoReader(path) as reader:
            h, w = reader.height, reader.width
            size = (w, h) if args.pred_only else (2 * w + 50, h)
            with open_writer(out_path, reader.fps, size, args.codec) as writer:
                for frame in tqdm(reader, total=reader.frame_count or None, unit="frame"):
                    depth = estimator(frame)
                    rgb = depth_picture(depth, estimator.metric, cmap, depth_range)
                    writer.write(rgb if args.pred_only else side_by_side(frame, rgb))
        if writer.frames == 0:
            raise ValueError(f"{path}: no frame could be decoded; nothing written")
        if not os.path.isfile(out_path) or os.path.getsize(out_path) == 0:
            raise ValueError(f"{out_path}: the video writer produced no file")
        shortfall = reader.shortfall()
    except (OSError, ValueError) as e:
        with contextlib.suppress(OSError):
            os.remove(out_path)
        print(f"error: {e}", file=sys.stderr)
        return 1
    if shortfall:
        print(f"warning: {shortfall}", file=sys.stderr)
    print(f"wrote {out_path} ({writer.frames} frames)")
    return 0
