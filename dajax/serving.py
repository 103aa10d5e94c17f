"""Serialised inference graphs (`jax.export`, StableHLO) that run without dajax's model code.

    python -m dajax.serving --weights depth_anything_v2_vits.pth --out served/ \
        --height 518 --width 518 --dtype bfloat16 --platforms cpu cuda

writes `served/model.jaxexport` (the network as StableHLO with a symbolic batch size, for each
named platform), `served/params.npz` (the weights, flattened in the graph's argument order)
and `served/serving.json` (input shape, dtype, what the output is). A server loads it with
`load_served(dir)` and needs only JAX and numpy:

    run = load_served("served/")
    depth = run(images)   # images: [B, H, W, 3] float32 ImageNet-normalised, any B

The graph is the network alone (as `DepthEstimator.forward`): resize and normalise the image
to the exported H×W first (`dajax.preprocess.preprocess`), and resize the [B, H, W] output back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from dajax.dtypes import DTYPES, compute_dtype

GRAPH_FILE, PARAMS_FILE, META_FILE = "model.jaxexport", "params.npz", "serving.json"


def export_network(
    config,
    params: dict,
    out_dir: str,
    height: int,
    width: int,
    dtype: str = "float32",
    platforms: tuple[str, ...] = ("cpu",),
) -> str:
    """Serialises the Depth Anything network for [b, height, width, 3] inputs, b symbolic.

    Its attention is chosen per platform when the graph is lowered (`attention="portable"`):
    the blocked kernel on CPUs, XLA's plain attention elsewhere (cuDNN's fused kernel is a
    custom call that `jax.export` will not serialise).

    Args:
      config: the `ModelConfig`; params: its Flax params tree.
      height, width: the network input size in pixels, multiples of 14.
      dtype: compute (and stored weight) dtype, 'float32' or 'bfloat16'.
      platforms: where the artifact may run ('cpu', 'cuda', 'rocm', 'tpu').

    Returns:
      `out_dir`.
    """
    from dajax.models import DepthAnything

    if height % 14 or width % 14:
        raise ValueError(f"height and width must be multiples of 14, got {height}x{width}")
    compute = compute_dtype(dtype)
    model = DepthAnything(config, dtype=compute, attention="portable")
    weights = jax.tree.map(lambda a: np.asarray(a).astype(compute), params)
    fn = jax.jit(lambda p, x: model.apply({"params": p}, x))
    (batch,) = jax.export.symbolic_shape("b")
    images = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), weights)
    exported = jax.export.export(fn, platforms=tuple(platforms))(abstract, images)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, GRAPH_FILE), "wb") as f:
        f.write(exported.serialize())
    leaves = jax.tree.leaves(weights)
    np.savez(
        os.path.join(out_dir, PARAMS_FILE),
        **{f"{i:05d}": np.asarray(leaf).view(_storage(leaf)) for i, leaf in enumerate(leaves)},
    )
    meta = {
        "input": [None, height, width, 3],
        "input_dtype": "float32, ImageNet-normalised RGB",
        "weights_dtype": dtype,
        "output": f"[B, {height}, {width}] float32 "
        + ("metres" if config.head == "metric" else "relative disparity"),
        "platforms": list(platforms),
        "model_config": json.loads(config.to_json()),
    }
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=2)
    return out_dir


def _storage(leaf) -> np.dtype:
    """npz cannot hold bfloat16: store its bits as uint16."""
    return np.dtype(np.uint16) if leaf.dtype == jnp.bfloat16 else leaf.dtype


def load_served(path: str):
    """The exported network as `run(images [B, H, W, 3] float32) -> [B, H, W] float32`.

    Needs only `jax` and numpy (no dajax model code). Raises FileNotFoundError / ValueError
    naming the folder when a file is missing or does not match the graph.
    """
    files = [os.path.join(path, name) for name in (GRAPH_FILE, PARAMS_FILE, META_FILE)]
    for file in files:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file}: not found; export with `python -m dajax.serving`")
    with open(files[0], "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    with open(files[2]) as f:
        meta = json.load(f)
    with np.load(files[1]) as stored:
        leaves = [stored[name] for name in sorted(stored.files)]
    params_avals = exported.in_avals[: len(leaves)]
    if len(exported.in_avals) != len(leaves) + 1:
        raise ValueError(f"{path}: {len(leaves)} weights for a graph of {exported.in_avals}")
    leaves = [
        leaf.view(jnp.bfloat16) if aval.dtype == jnp.bfloat16 else leaf
        for leaf, aval in zip(leaves, params_avals, strict=True)
    ]
    for leaf, aval in zip(leaves, params_avals, strict=True):
        if leaf.shape != aval.shape or leaf.dtype != aval.dtype:
            raise ValueError(f"{path}: weight {leaf.shape} {leaf.dtype} where {aval} is expected")
    leaves = jax.device_put(leaves)
    _, height, width, _ = meta["input"]

    def run(images) -> jax.Array:
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[1:] != (height, width, 3):
            raise ValueError(
                f"{path}: expects [B, {height}, {width}, 3] images, got shape {images.shape}"
            )
        args, kwargs = jax.tree.unflatten(exported.in_tree, [*leaves, images])
        return exported.call(*args, **kwargs)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from dajax.weights.options import add_loader_options  # model code: not for load_served

    p = argparse.ArgumentParser(prog="python -m dajax.serving", description=__doc__.split("\n")[0])
    p.add_argument(
        "--weights",
        required=True,
        help=".pth, .safetensors, transformers or dajax checkpoint folder, a training run's "
        "--workdir, or hf:OWNER/REPO/FILE (required)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder, created if needed; its three files are replaced (required)",
    )
    p.add_argument(
        "--height", type=int, default=518, help="input height, multiple of 14 (default: 518)"
    )
    p.add_argument(
        "--width", type=int, default=518, help="input width, multiple of 14 (default: 518)"
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="compute and weight dtype (default: float32)",
    )
    p.add_argument(
        "--platforms",
        nargs="+",
        default=["cpu"],
        help="where the graph may run: cpu, cuda, rocm, tpu (default: cpu)",
    )
    add_loader_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m dajax.serving`: export a checkpoint; returns the exit code."""
    args = build_parser().parse_args(argv)
    from dajax.weights.options import loader_kwargs
    from dajax.weights.pretrained import load_depth_anything

    try:
        config, params = load_depth_anything(args.weights, **loader_kwargs(args))
        export_network(
            config, params, args.out, args.height, args.width, args.dtype, tuple(args.platforms)
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.height}x{args.width}, {args.dtype}, {args.platforms})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
