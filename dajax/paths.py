"""Workdir, checkpoint, export and log paths: local folders or Cloud Storage buckets (`gs://`).

Every such path goes through `etils.epath`, the path library Orbax uses: a local path is made
absolute (Orbax needs absolute local paths), a URL is kept as it is (`os.path.abspath` would
turn `gs://b/x` into `<cwd>/gs:/b/x`). `gs://` needs `gcsfs` and `google-cloud-storage`
(Orbax asks it about the bucket): `pip install -e ".[gcs]"`. Orbax writes the arrays
themselves through TensorStore's GCS driver.

Object stores have no appendable files and no atomic rename, so writers here replace whole
files: on a local disk through a temporary file and a rename (a crash leaves the old file),
in a bucket by uploading the object, which appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etils import epath

PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
    """Whether `path` is a URL (`gs://...`) rather than a local path."""
    return "://" in os.fspath(path)


def resolve(path: PathLike) -> epath.Path:
    """`path` as an `epath.Path`: local paths absolute, URLs unchanged."""
    from etils import epath  # here, not at import: `write_atomic` on local files needs none

    if is_remote(path):
        return epath.Path(path)
    return epath.Path(os.path.abspath(os.fspath(path)))


def write_atomic(path: PathLike, data: bytes | str) -> None:
    """Replaces the file `path` with `data` (text is UTF-8), never leaving it half-written.

    Locally the data goes to a staging file named for this process (so processes writing the
    same file do not share one), which a failed write removes; the folder must exist.
    """
    payload = data.encode() if isinstance(data, str) else data
    if is_remote(path):
        resolve(path).write_bytes(payload)
        return
    staging = f"{os.path.abspath(os.fspath(path))}.tmp-{os.getpid()}"
    try:
        with open(staging, "wb") as f:
            f.write(payload)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(staging)
        raise
