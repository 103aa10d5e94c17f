"""Time to first depth: one photo through a whole process, dajax against transformers.

    python benchmarks/first_depth.py --runs 3

A random-weight Depth Anything V2 ViT-S is written once as a transformers `save_pretrained`
folder, which both read. Each run is a new process that loads the model, reads one
2048 x 1362 JPEG, predicts and writes the depth picture:

- dajax: `python -m dajax.predict --weights FOLDER --input photo.jpg --outdir OUT`; the first
  run starts from an empty persistent compilation cache (`JAX_COMPILATION_CACHE_DIR` in a
  temporary folder), the later ones find what it compiled, as a user's second command does;
- transformers: `pipeline("depth-estimation", model=FOLDER)` on the same file, its
  `predicted_depth` written as a PNG (PyTorch eager: nothing to compile or cache).

The official `run.py` needs the Depth-Anything-V2 repository, which this benchmark does not
fetch; transformers runs the same network. Prints a table of whole-process wall seconds
(first run, then the median and min of the rest) and dajax's lead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import matplotlib.cbook
import PIL.Image
from transformers import DPTImageProcessor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.hardware import cpu_model_and_flags  # noqa: E402
from benchmarks.inference import hf_model  # noqa: E402
from dajax.models import ModelConfig  # noqa: E402

PHOTO_SIZE = (2048, 1362)  # width, height: a 2.8 MP photo
TRANSFORMERS_SCRIPT = """
import sys
import numpy as np
from PIL import Image
from transformers import pipeline
estimator = pipeline("depth-estimation", model=sys.argv[1], device="cpu")
depth = estimator(Image.open(sys.argv[2]))["predicted_depth"].numpy().squeeze()
depth = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-12)
Image.fromarray((depth * 255).astype(np.uint8)).save(sys.argv[3])
"""


def timed(command: list[str], env: dict) -> float:
    """Whole-process wall seconds of `command` (which must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="processes per tool (default: 3)")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error("--runs must be at least 2 (a first run, then repeated ones)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "v2_vits")
        hf_model(ModelConfig.from_variant("vits", "v2")).save_pretrained(folder)
        DPTImageProcessor(  # the released Depth-Anything-V2-Small-hf's preprocessor_config.json
            size={"height": 518, "width": 518},
            keep_aspect_ratio=True,
            ensure_multiple_of=14,
            resample=PIL.Image.BICUBIC,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ).save_pretrained(folder)
        photo = os.path.join(tmp, "photo.jpg")
        sample = cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        cv2.imwrite(photo, cv2.resize(sample, PHOTO_SIZE, interpolation=cv2.INTER_CUBIC))
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, "jax_cache"))
        env.pop("DAJAX_COMPILATION_CACHE", None)
        seconds = {"dajax predict": [], "transformers pipeline": []}
        for i in range(args.runs):  # alternating, so load drifts hit both alike
            out = os.path.join(tmp, f"out{i}")
            seconds["dajax predict"].append(
                timed(
                    [sys.executable, "-m", "dajax.predict", "--weights", folder]
                    + ["--input", photo, "--outdir", out],
                    env,
                )
            )
            seconds["transformers pipeline"].append(
                timed(
                    [sys.executable, "-c", TRANSFORMERS_SCRIPT, folder, photo]
                    + [os.path.join(tmp, f"hf{i}.png")],
                    env,
                )
            )
    cpu, _ = cpu_model_and_flags()
    print(f"one {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} photo, V2 ViT-S (random weights), {cpu}")
    print(f"`python benchmarks/first_depth.py --runs {args.runs}`\n")
    print("| tool | first run s | later runs: median s | min s |")
    print("|---|---|---|---|")
    for tool, runs in seconds.items():
        rest = runs[1:]
        print(f"| {tool} | {runs[0]:.1f} | {statistics.median(rest):.1f} | {min(rest):.1f} |")
    ours, theirs = seconds["dajax predict"], seconds["transformers pipeline"]
    print(
        f"\ntransformers / dajax: first run {theirs[0] / ours[0]:.2f}x, later runs "
        f"{statistics.median(theirs[1:]) / statistics.median(ours[1:]):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
