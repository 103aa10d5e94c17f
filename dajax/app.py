"""A web page for Depth Anything: upload an image, compare it with its depth, download the maps.

    pip install -e ".[app]"
    python -m dajax.app --weights depth_anything_v2_vits.pth   # then open http://127.0.0.1:7860
    python -m dajax.app                                         # offline demo: random weights

The page shows the image and its colour-mapped depth on one slider and offers the depth as a
grayscale PNG (white = near), a 16-bit PNG that keeps the values (`dajax.io.depth_png`) and a
float32 `.npy`; metric models also give a coloured PLY point cloud (`--fov`). Without
`--weights` a seeded random ViT-S runs, and the page says so. Uploads go through
`dajax.io.images.read_image` undecoded by Gradio, so an image over the pixel budget is refused
from its header with a message on the page. Nothing is fetched from outside:
Gradio's analytics are off and the page uses the system's fonts.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile

import numpy as np

from dajax import runtime
from dajax.weights.options import add_loader_options, loader_kwargs

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported

# The page's pointer to the documentation (it runs offline: a path in the repository, not a URL)
DOCS_NOTE = "Docs: `docs/predict.md` in the dajax repository; `python -m dajax.app --help`."
EXAMPLES = 4  # rendered scenes in the examples row
KEEP_REQUESTS = 16  # requests whose downloads stay on disk (`RequestFolders`)
UPLOAD_CACHE = (600, 3600)  # Gradio's upload copies: check every 600 s, delete if > 3600 s old

RANDOM_NOTE = (
    "**No `--weights` given: these are random demo weights (a seeded ViT-S).** The page works "
    "end to end, but the depth is meaningless; start it with `--weights FILE` for real maps."
)


def depth_downloads(estimator, image: np.ndarray, folder: str, stem: str, fov: float) -> dict:
    """Predicts `image` and writes the downloads into `folder`.

    Args:
      estimator: a `dajax.inference.DepthEstimator`.
      image: [H, W, 3] uint8 RGB.
      folder: where the files go; stem: their name stem; fov: horizontal field of view in
        degrees for the point cloud.

    Returns:
      {'picture': [H, W, 3] uint8 colour-mapped depth, 'gray', 'png16', 'npy' and, for metric
      models, 'ply': file paths}.
    """
    from PIL import Image

    from dajax.io.depth_png import QUANTITIES, write_depth_png16
    from dajax.io.outputs import write_npy
    from dajax.visualize import default_cmap, depth_picture

    depth = estimator(image)
    base = os.path.join(folder, stem)
    files = {"gray": base + "_gray.png", "png16": base + "_16.png", "npy": base + ".npy"}
    Image.fromarray(depth_picture(depth, estimator.metric, "gray")[:, :, 0]).save(files["gray"])
    quantity, unit = QUANTITIES["metric" if estimator.metric else "relative"]
    write_depth_png16(files["png16"], depth, quantity=quantity, unit=unit)
    write_npy(files["npy"], depth.astype(np.float32))
    if estimator.metric:
        from dajax.io.pointcloud import Intrinsics, depth_to_points, write_ply

        points, pixels = depth_to_points(depth, Intrinsics.from_fov(*depth.shape[::-1], fov))
        files["ply"] = base + ".ply"
        write_ply(files["ply"], points, image.reshape(-1, 3)[pixels])
    cmap = default_cmap(estimator.config.version)
    return {"picture": depth_picture(depth, estimator.metric, cmap), **files}


class RequestFolders:
    """One temporary folder per request under a folder of the app's own, keeping only the
    newest `keep` (a page shows one answer at a time; its downloads stay until `keep` newer
    requests came), and removing them all when the process exits.

    Args:
      keep: how many requests' files stay on disk (default `KEEP_REQUESTS`).
    """

    def __init__(self, keep: int = 0):
        self.keep = keep or KEEP_REQUESTS
        self.root = tempfile.mkdtemp(prefix="dajax-app-")
        self._folders: list[str] = []
        atexit.register(shutil.rmtree, self.root, True)

    def new(self) -> str:
        """A fresh folder for one request's files; the oldest beyond `keep` are deleted."""
        folder = tempfile.mkdtemp(dir=self.root)
        self._folders.append(folder)
        while len(self._folders) > self.keep:
            shutil.rmtree(self._folders.pop(0), ignore_errors=True)
        return folder


def example_images(folder: str, count: int = EXAMPLES) -> list[str]:
    """`count` procedural scenes (`dajax.data.procedural`, indoor and outdoor in turn) rendered
    at 518 x 518 into `folder` as PNGs, for the page's examples row; their paths."""
    from PIL import Image

    from dajax.data.procedural import render_scene

    paths = []
    for index in range(count):
        style = ("indoor", "outdoor")[index % 2]
        path = os.path.join(folder, f"example_{index}_{style}.png")
        Image.fromarray(render_scene(index, 518, 518, style, seed=7)["image"]).save(path)
        paths.append(path)
    return paths


def _undecoded(preprocess):
    """An upload's own path, unopened, for `gr.Image.preprocess`: Gradio opens every uploaded
    file with PIL first, so a file that is not an image failed there with a bare "Error" badge;
    `read_image` now says why, in one line on the page. Pasted images (data URLs) still go
    through Gradio's own `preprocess`."""

    def path_of(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return preprocess(payload)

    return path_of


def describe(estimator, weights: str | None) -> str:
    """The page's note on what runs: the weights and the kind of map, or the random demo."""
    c = estimator.config
    kind = (
        f"metric depth in metres (up to {c.max_depth} m)"
        if estimator.metric
        else ("relative disparity (bigger = nearer, unknown scale and shift)")
    )
    source = f"`{os.path.basename(os.path.normpath(weights))}`" if weights else RANDOM_NOTE
    return f"Weights: {source}  \nModel: Depth Anything {c.version.upper()} {c.encoder}, {kind}."


def build_app(estimator, note: str, fov: float = 60.0):
    """The Gradio page (a `gr.Blocks`) around `estimator`; `note` is shown under the title."""
    import gradio as gr

    from dajax.io.images import ImageReadError, read_image

    folders = RequestFolders()

    def predict(path):
        if not path:
            raise gr.Error("Upload an image first.")
        try:  # the pixel budget is checked on the header, before decoding
            image = read_image(path)
        except ImageReadError as e:
            raise gr.Error(str(e)) from None
        stem = os.path.splitext(os.path.basename(path))[0]
        out = depth_downloads(estimator, image, folders.new(), stem, fov)
        return (image, out["picture"]), out["gray"], out["png16"], out["npy"], out.get("ply")

    # Gradio's copies of uploads: every 10 minutes, those older than an hour are deleted.
    with gr.Blocks(title="dajax: Depth Anything", delete_cache=UPLOAD_CACHE) as demo:
        gr.Markdown(f"# Depth Anything (dajax)\n{note}  \n{DOCS_NOTE}")
        with gr.Row():
            image = gr.Image(  # image_mode=None: Gradio keeps the upload undecoded for read_image
                label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"]
            )
            image.preprocess = _undecoded(image.preprocess)
            slider = gr.ImageSlider(
                label="Image | depth", type="numpy", format="png", elem_id="depth-slider"
            )
        run = gr.Button("Compute depth", variant="primary")
        gr.Examples(example_images(folders.root), inputs=image, label="Examples (rendered scenes)")
        with gr.Row():
            gray = gr.File(label="Grayscale depth (PNG, white = near)", elem_id="gray")
            png16 = gr.File(label="16-bit depth (PNG with scale and offset)", elem_id="png16")
            npy = gr.File(label="Raw depth (float32 .npy)", elem_id="npy")
            ply = gr.File(
                label="Point cloud (PLY, metres)", visible=estimator.metric, elem_id="ply"
            )
        run.click(predict, inputs=image, outputs=[slider, gray, png16, npy, ply])
    return demo


THEME_FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["monospace"]}


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option's help states its default."""
    p = argparse.ArgumentParser(prog="python -m dajax.app", description=__doc__.split("\n")[0])
    p.add_argument(
        "--weights",
        help="checkpoint, as for dajax.predict: a file, a converted folder, a training run's "
        "--workdir or hf:REPO/FILE (default: none, random demo weights)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument(
        "--input-size", type=int, default=518, help="shorter network side (default: %(default)s)"
    )
    p.add_argument(
        "--impl",
        choices=["fast", "reference"],
        default="fast",
        help="network implementation, see dajax.predict (default: %(default)s)",
    )
    p.add_argument(
        "--fov",
        type=float,
        default=60.0,
        help="horizontal field of view for metric point clouds, degrees (default: %(default)s)",
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="also serve the page at a temporary public gradio.live link (default: off, local "
        "only; Gradio prints the hint to set share=True, which is this flag)",
    )
    add_loader_options(p)
    runtime.add_compile_cache_flag(p)
    return p


def load(args: argparse.Namespace):
    """The estimator for `args`: the checkpoint (with the loader options,
    `dajax.weights.options`), or a seeded random ViT-S (`--arch` sets its size)."""
    from dajax.inference import DepthEstimator
    from dajax.models import ModelConfig

    options = loader_kwargs(args)
    if not args.weights:
        config = ModelConfig.from_variant(options["arch"] or "vits", "v2")
        return DepthEstimator.random(config, input_size=args.input_size, impl=args.impl)
    return DepthEstimator.from_pretrained(
        args.weights, **options, input_size=args.input_size, impl=args.impl
    )


def main(argv: list[str] | None = None) -> int:
    """Serves the page until interrupted; returns the exit code."""
    args = build_parser().parse_args(argv)
    runtime.use_compilation_cache(enabled=not args.no_compile_cache)
    try:
        estimator = load(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.weights:
        print("demo: no --weights, so random weights run (the page says so)", file=sys.stderr)
    import gradio as gr

    demo = build_app(estimator, describe(estimator, args.weights), args.fov)
    demo.launch(
        share=args.share,
        server_name=args.host,
        server_port=args.port,
        theme=gr.themes.Default(**THEME_FONTS),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
