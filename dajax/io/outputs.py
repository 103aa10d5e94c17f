"""Where a prediction run writes, checked before any work, and writes that cannot fail silently.

`plan_outputs` gives each input image an output base `OUT/<folder relative to the input
root>/<name>` (the caller adds suffixes such as `.png`), mirroring the input tree under OUT so
`a/x.jpg` and `b/x.png` stay apart. `<name>` is the input's stem, as the official `run.py`
writes it, except when several inputs in one folder share a stem (`a.jpg`, `a.png`): then each
keeps its extension (`a_jpg`, `a_png`). Before any work it refuses a plan in which two inputs
would write one file, an output would replace an input, or outputs would land in the searched
input folder (where the next run would read them back as inputs).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence

import cv2
import numpy as np

from dajax import paths
from dajax.io.inputs import Inputs


class OutputError(ValueError):
    """An output cannot be written; the message names the path and the reason."""


def check_outdir(outdir: str) -> None:
    """Raises OutputError when `outdir` is a file or could not be created or written; creates
    nothing (so a run that fails later leaves no empty folder)."""
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(f"{outdir}: is a file, not a folder; --outdir needs a folder")
    parent = os.path.abspath(outdir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{outdir}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{outdir}: cannot write in {parent} (permission denied)")


def make_outdir(outdir: str) -> None:
    """Creates `outdir` and checks that a file can be written in it (OutputError if not)."""
    try:
        os.makedirs(outdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=outdir):
            pass
    except OSError as e:
        raise OutputError(f"{outdir}: cannot write there ({e.strerror or e})") from None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def output_bases(inputs: Inputs, outdir: str) -> dict[str, str]:
    """Input path -> output base (no suffix) under `outdir`, mirroring the tree below
    `inputs.root`; inputs of one folder that share a stem keep their extension in the name."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in inputs.paths:
        stem, ext = os.path.splitext(os.path.relpath(os.path.abspath(path), inputs.root))
        groups[stem].append((path, ext))
    bases = {}
    for stem, members in groups.items():
        for path, ext in members:
            name = stem if len(members) == 1 else f"{stem}_{ext.lstrip('.')}"
            bases[path] = os.path.join(outdir, name)
    return bases


def plan_outputs(inputs: Inputs, outdir: str, suffixes: Sequence[str]) -> dict[str, str]:
    """`output_bases`, checked for every file `base + suffix` the run will write.

    Raises:
      OutputError: two inputs would write one file, an output would replace an input, or an
        output would land in `inputs.folder` outside an `outdir` nested in it (which the input
        search skips).
    """
    bases = output_bases(inputs, outdir)
    originals = {os.path.realpath(p): p for p in inputs.paths}
    folder = os.path.realpath(inputs.folder) if inputs.folder else None
    real_out = os.path.realpath(outdir)
    nested = folder is not None and _inside(real_out, folder) and real_out != folder
    writers: dict[str, str] = {}
    for path, base in bases.items():
        for suffix in suffixes:
            target = base + suffix
            real = os.path.realpath(target)
            if real in originals:
                raise OutputError(
                    f"{target}: would overwrite the input {originals[real]}; "
                    "choose another --outdir"
                )
            if folder is not None and not nested and _inside(real, folder):
                raise OutputError(
                    f"{target}: would be written into the input folder {inputs.folder} and read "
                    "back as an input by the next run; choose an --outdir outside it "
                    "(or a new subfolder of it)"
                )
            if real in writers:
                raise OutputError(
                    f"{target}: would be written for both {writers[real]} and {path}; "
                    "rename one of them"
                )
            writers[real] = path
    return bases


def write_file(path: str, data: bytes) -> None:
    """Writes `data` to `path` (creating its folder) via a temporary file
    (`dajax.paths.write_atomic`), so a failed write leaves no partial file; raises OutputError
    naming the path."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        paths.write_atomic(path, data)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


def write_png(path: str, rgb: np.ndarray) -> None:
    """Writes [H, W, 3] uint8 RGB as a PNG; raises OutputError if it cannot be encoded or
    written (unlike `cv2.imwrite`, which only returns False)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OutputError(f"{path}: cannot encode a {rgb.shape} {rgb.dtype} image as PNG")
    write_file(path, encoded.tobytes())


def write_npy(path: str, array: np.ndarray) -> None:
    """Writes `array` as a .npy file; raises OutputError naming the path."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_file(path, buffer.getvalue())
