"""Pseudo-label shards written by the data engine (the teacher) and read by the student.

Each shard is an ArrayRecord file `shard-<i>-of-<n>.array_record`; each record is a msgpack
map (flax.serialization) with:
- `image`: bytes — the encoded image file as read (JPEG/PNG/WebP), decoded on the fly;
- `disparity`: [H, W] float16 — the teacher's relative disparity at the image's resolution,
  min-max normalised to [0, 1] per image, then 0 on the sky where the image came with a sky
  mask (`dajax.training.pseudo_label.stored_label`);
- `meta`: {`source`: str path, `index`: int position in the unlabeled list,
  `teacher`: str checkpoint}.

A shard is written to `<name>.tmp` and renamed when complete, so a crash leaves no file with
the final name: resuming skips finished shards and redoes the half-written one. ArrayRecord
reads and writes local files only: a shard bound for a bucket (`dajax.paths`) is written to a
local temporary file and uploaded when complete, and shards are read from a local (or
mounted) folder.
"""

from __future__ import annotations

import glob
import os
import tempfile

import flax.serialization
import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath

from dajax import paths
from dajax.io.images import decode_image


def shard_name(index: int, count: int) -> str:
    """`shard-00003-of-00010.array_record`."""
    return f"shard-{index:05d}-of-{count:05d}.array_record"


class PseudoLabelWriter:
    """Writes one shard atomically: records go to `path + '.tmp'` (for a bucket `path`, to a
    local temporary file), `close()` renames (uploads).

    Use as a context manager; an exception inside the block removes the temporary file.
    """

    def __init__(self, path: paths.PathLike):
        self.path = paths.resolve(path)
        if paths.is_remote(self.path):
            fd, self._tmp = tempfile.mkstemp(suffix=".array_record")
            os.close(fd)
        else:
            self._tmp = os.fspath(self.path) + ".tmp"
        self._writer = ArrayRecordWriter(self._tmp, "group_size:1")
        self.count = 0

    def write(self, image_bytes: bytes, disparity: np.ndarray, meta: dict) -> None:
        """Appends one record; `disparity` is [H, W] (stored as float16)."""
        if not np.isfinite(disparity).all():
            raise ValueError(f"{meta.get('source', '?')}: teacher disparity has NaN/Inf")
        record = {
            "image": bytes(image_bytes),
            "disparity": np.asarray(disparity, np.float16),
            "meta": dict(meta),
        }
        self._writer.write(flax.serialization.msgpack_serialize(record))
        self.count += 1

    def close(self) -> None:
        """Finishes the shard under its final name."""
        self._writer.close()
        if paths.is_remote(self.path):
            epath.Path(self._tmp).copy(self.path)
            os.remove(self._tmp)
        else:
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drops the partial shard."""
        self._writer.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self) -> PseudoLabelWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def decode_record(data: bytes) -> dict:
    """A stored record -> `{image [H,W,3] uint8, disparity [H,W] float32, source: str}`."""
    record = flax.serialization.msgpack_restore(data)
    source = record["meta"]["source"]
    image = decode_image(record["image"], source)
    disparity = np.asarray(record["disparity"], np.float32)
    if disparity.shape != image.shape[:2]:
        raise ValueError(f"{source}: pseudo-label {disparity.shape} != image {image.shape[:2]}")
    return {"image": image, "disparity": disparity, "source": source}


class PseudoLabelSource:
    """Random-access (grain) source over every finished shard in a directory."""

    def __init__(self, directory: str):
        if paths.is_remote(directory):
            raise ValueError(
                f"{directory}: ArrayRecord reads local files only; copy the shards to a local "
                "disk (or mount the bucket) and point config.data.pseudo.path there"
            )
        self.paths = sorted(glob.glob(os.path.join(directory, "shard-*.array_record")))
        if not self.paths:
            raise FileNotFoundError(
                f"{directory}: no finished pseudo-label shards (shard-*.array_record); run the "
                "pseudo_label stage first"
            )
        self._records = grain.sources.ArrayRecordDataSource(self.paths)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        return decode_record(self._records[index])
