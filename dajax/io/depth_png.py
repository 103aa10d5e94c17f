"""16-bit PNG depth maps that keep their real values.

`write_depth_png16` stores `round((depth - offset) * scale)` in 0..65535 and records `scale`,
`offset`, the quantity and its unit in PNG text chunks (`dajax:scale`, `dajax:offset`,
`dajax:quantity`, `dajax:unit`) and in a sidecar `<stem>.json`; `read_depth_png16` inverts it
to within 0.5 / scale. `QUANTITIES` names what each model head predicts.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, PngImagePlugin

MAX_CODE = 65535
# (quantity, unit) of each model head's output.
QUANTITIES = {
    "relative": ("disparity (relative)", "none: affine-invariant, bigger = nearer"),
    "metric": ("depth (metric)", "m"),
}


def write_depth_png16(
    path: str | os.PathLike,
    depth: np.ndarray,
    scale: float | None = None,
    offset: float | None = None,
    quantity: str = QUANTITIES["relative"][0],
    unit: str = QUANTITIES["relative"][1],
) -> tuple[float, float]:
    """Writes `depth` [H, W] as a 16-bit grayscale PNG; returns (scale, offset).

    By default the finite range maps onto the full 0..65535 code range (a constant map uses
    scale 1). `quantity` and `unit` label the values (`QUANTITIES[head]`). Raises ValueError
    for non-finite values, OSError when a file cannot be written.
    """
    path = os.fspath(path)
    depth = np.asarray(depth, np.float64)
    if not np.isfinite(depth).all():
        raise ValueError(f"{path}: depth has NaN/Inf values; mask or fill them first")
    if offset is None:
        offset = float(depth.min())
    if scale is None:
        span = float(depth.max()) - offset
        scale = MAX_CODE / span if span > 0 else 1.0
    codes = np.clip(np.round((depth - offset) * scale), 0, MAX_CODE).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    meta = {"scale": float(scale), "offset": float(offset), "quantity": quantity, "unit": unit}
    for key, value in meta.items():
        info.add_text(f"dajax:{key}", str(value))
    Image.fromarray(codes).save(path, pnginfo=info)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return float(scale), float(offset)


def read_depth_png16(path: str | os.PathLike) -> np.ndarray:
    """Reads a PNG written by `write_depth_png16` back to [H, W] float32 values."""
    path = os.fspath(path)
    with Image.open(path) as img:
        codes = np.asarray(img).astype(np.float64)
        text = dict(getattr(img, "text", {}) or {})
    if "dajax:scale" in text:
        scale, offset = float(text["dajax:scale"]), float(text["dajax:offset"])
    else:
        sidecar = os.path.splitext(path)[0] + ".json"
        if not os.path.isfile(sidecar):
            raise ValueError(f"{path}: no dajax:scale text chunk and no sidecar {sidecar}")
        with open(sidecar) as f:
            meta = json.load(f)
        scale, offset = float(meta["scale"]), float(meta["offset"])
    return (codes / scale + offset).astype(np.float32)
