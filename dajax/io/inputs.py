"""Which image files a prediction run reads: one image, a folder (recursive) or a .txt list.

`list_inputs` finds every problem with `--input` before any model is loaded, each as one
`InputError` line naming the file.
"""

from __future__ import annotations

import dataclasses
import os

from dajax.io.images import IMAGE_EXTENSIONS, find_images
from dajax.io.video import VIDEO_EXTENSIONS


class InputError(ValueError):
    """The input cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Image paths and the folder their output tree mirrors.

    Attributes:
      paths: the image paths, in order.
      root: outputs go to `OUT/<path relative to root>`: the folder given, the common folder
        of a list's entries, or a single image's folder.
      folder: the folder searched (None for an image or a list): outputs must not land in it,
        or the next run would read them back as inputs.
    """

    paths: list[str]
    root: str
    folder: str | None = None


def read_list_file(path: str) -> list[str]:
    """The entries of a .txt list: one path a line; blank lines and `#` comments are skipped."""
    try:
        with open(path) as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read list file ({e})") from None
    return [line for line in lines if line and not line.startswith("#")]


def list_file_paths(path: str) -> list[str]:
    """The images a .txt list names, in order: a relative entry is relative to the list file's
    folder (not the working directory), and a file named twice (in any spelling: relative and
    absolute, `./`, `..`, a symlink) is read once, under its first spelling."""
    base = os.path.dirname(os.path.abspath(path))
    unique: dict[str, str] = {}
    for entry in read_list_file(path):
        entry = entry if os.path.isabs(entry) else os.path.join(base, entry)
        unique.setdefault(os.path.realpath(entry), entry)
    return list(unique.values())


def list_inputs(spec: str, skip: str | None = None) -> Inputs:
    """The images `spec` names: a folder (searched recursively, sorted, without the folder
    `skip`, e.g. an output folder inside it), a .txt list, or one image file.

    Raises:
      InputError: the path is missing, a folder without images, an empty list, or a video.
    """
    if os.path.isdir(spec):
        found = find_images(spec, skip=skip)
        if not found:
            raise InputError(f"{spec}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return Inputs(found, spec, spec)
    if not os.path.exists(spec):
        raise InputError(f"{spec}: no such file or folder")
    if spec.lower().endswith(".txt"):
        paths = list_file_paths(spec)
        if not paths:
            raise InputError(f"{spec}: the list names no images")
        folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
        return Inputs(paths, os.path.commonpath(folders))
    if spec.lower().endswith(VIDEO_EXTENSIONS):
        raise InputError(f"{spec}: is a video; add --video to predict its frames")
    return Inputs([spec], os.path.dirname(os.path.abspath(spec)))
