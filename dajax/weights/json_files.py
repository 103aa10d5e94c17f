"""Bounded reads of the small JSON files that come with weights: a transformers `config.json`,
a dajax `model_config.json`, a sharded-safetensors index.

A JSON file is read whole and parsed into objects that can take ~30x its size in memory (each
`[]` is a 56-byte list), so a file past `MAX_JSON_BYTES` is refused before it is parsed, as is
anything but a regular file (a FIFO would block the read forever).
"""

from __future__ import annotations

import json
import os
import stat

MAX_JSON_BYTES = 4 << 20  # config files are ~2 KB; the index of a 1000-tensor model ~100 KB


class JsonFileError(ValueError):
    """A config or index file is unreadable, too large, not JSON or not a JSON object."""


def read_json_object(path: str) -> dict:
    """The JSON object in the file `path`.

    Raises:
      JsonFileError: one line naming the file, when it is not a regular file, is larger than
        `MAX_JSON_BYTES`, cannot be read, is not JSON (bad UTF-8, nesting too deep) or holds
        something other than an object.
    """
    try:
        with open(path, "rb", opener=_open_nonblocking) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise JsonFileError(f"{path}: not a regular file")
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise JsonFileError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_JSON_BYTES:
        raise JsonFileError(f"{path}: larger than {MAX_JSON_BYTES} bytes, the limit for JSON files")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, deep nesting
        raise JsonFileError(f"{path}: invalid JSON ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise JsonFileError(f"{path}: not a JSON object")
    return value


def _open_nonblocking(path: str, flags: int) -> int:
    """`os.open` that does not wait for a FIFO's writer (the caller refuses non-files)."""
    return os.open(path, flags | os.O_NONBLOCK)
