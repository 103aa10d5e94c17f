"""Read and write the safetensors format with NumPy alone, and read sharded indexes.

Layout: 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`),
then the raw little-endian tensor bytes, offsets relative to the end of the header.

Bounds (docs/weights.md): a header is at most `MAX_HEADER_BYTES` (parsed JSON takes up to
~30x its size), a tensor at most `MAX_ELEMENTS` elements (zero dimensions counted as one), and
an index's shards must be regular files beside it that resolve inside its folder (or, in a
Hugging Face cache snapshot, inside the repository's `blobs/`). Messages never quote a file's
bytes, only its tensor and shard names.
"""

from __future__ import annotations

import json
import math
import os
import struct

import ml_dtypes
import numpy as np

from dajax.weights.json_files import read_json_object

DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 8 << 20  # real headers: ~100 bytes a tensor, ~100 KB for a ViT-G
MAX_ELEMENTS = 1 << 40  # of one tensor, zero dimensions counted as one (numpy's own limit)
_MAX_DIMS = 32


class SafetensorsError(ValueError):
    """A safetensors file is malformed."""


def _read_header(f, path: str, file_size: int) -> tuple[dict, int]:
    raw = f.read(8)
    if len(raw) != 8:
        raise SafetensorsError(f"{path}: truncated ({file_size} bytes, no 8-byte header length)")
    (n,) = struct.unpack("<Q", raw)  # file bytes: never quoted in a message
    if n > file_size - 8:
        raise SafetensorsError(
            f"{path}: the header length field points past the end of the file ({file_size} "
            "bytes; truncated, or not a safetensors file)"
        )
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(
            f"{path}: header over the {MAX_HEADER_BYTES}-byte limit (real headers take ~100 "
            "bytes a tensor)"
        )
    try:
        header = json.loads(f.read(n))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, deep nesting
        raise SafetensorsError(f"{path}: header is not valid JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(type(v) is str for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ is not a map of strings")
    return header, 8 + n


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The free-form `__metadata__` strings of a safetensors file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        header, _ = _read_header(f, path, os.path.getsize(path))
    return dict(header.get("__metadata__") or {})


def _label(name) -> str:
    """A tensor or shard name for a message, quoted and cut short (names come from the file);
    a non-string says its type."""
    if not isinstance(name, str):
        return f"(a {type(name).__name__})"
    return repr(name if len(name) <= 80 else name[:80] + "...")


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _entry(path: str, name: str, info) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, each checked for type and sign."""
    fields = info if isinstance(info, dict) else {}
    dtype, shape, offsets = (fields.get(k) for k in ("dtype", "shape", "data_offsets"))
    if not (isinstance(dtype, str) and dtype in DTYPES):
        raise SafetensorsError(f"{path}: tensor {_label(name)} has an unknown dtype")
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(map(_is_count, shape))):
        raise SafetensorsError(f"{path}: tensor {_label(name)} shape is not a list of counts")
    if math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:
        raise SafetensorsError(
            f"{path}: tensor {_label(name)} shape is past the largest tensor (2**40 elements, "
            "zero dimensions counted as one)"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise SafetensorsError(f"{path}: tensor {_label(name)} data_offsets are not two counts")
    return DTYPES[dtype], tuple(shape), offsets[0], offsets[1]


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as NumPy arrays (bf16 via `ml_dtypes`).

    Every header entry is checked before any data is read: a known dtype, a shape of
    non-negative ints, byte offsets that hold exactly `prod(shape)` elements of that dtype, and
    tensors that tile the data section (no overlap, no gap: no byte is read as two tensors).
    Booleans must be 0 or 1.

    Raises:
      SafetensorsError: naming the file, on truncation, bad JSON, unknown dtypes, or offsets
        that do not match the shapes.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, start = _read_header(f, path, size)
        data = f.read()
    names = [name for name in header if name != "__metadata__"]
    entries = sorted(((*_entry(path, n, header[n]), n) for n in names), key=lambda e: e[2:4])
    out, covered = {}, 0
    for dtype, shape, begin, end, name in entries:
        nbytes = math.prod(shape) * dtype.itemsize
        if end - begin != nbytes:
            raise SafetensorsError(
                f"{path}: tensor {_label(name)} has {end - begin} bytes for shape {shape} of "
                f"{_NAMES[dtype]} ({nbytes} bytes)"
            )
        if end > len(data):
            raise SafetensorsError(
                f"{path}: tensor {_label(name)} ends at byte {end} of {len(data)} data bytes "
                "(file truncated?)"
            )
        if begin != covered:
            where = "overlap the tensor before it" if begin < covered else "leave a gap"
            raise SafetensorsError(f"{path}: tensor {_label(name)} bytes [{begin}, {end}) {where}")
        covered = end
        array = np.frombuffer(data, dtype, count=nbytes // dtype.itemsize, offset=begin)
        if dtype == np.bool_ and array.view(np.uint8).max(initial=0) > 1:
            raise SafetensorsError(f"{path}: tensor {_label(name)} holds booleans other than 0, 1")
        out[name] = array.reshape(shape).copy()
    if covered != len(data):
        raise SafetensorsError(
            f"{path}: the tensors cover {covered} of {len(data)} data bytes (corrupt header?)"
        )
    return out


def _shard_roots(folder: str) -> list[str]:
    """Where an index's shards may resolve: its folder, and for a Hugging Face cache snapshot
    (`.../snapshots/<revision>/`, whose files link to `../../blobs/`) the repository's blobs."""
    real = os.path.realpath(folder)
    parent = os.path.dirname(real)
    if os.path.basename(parent) == "snapshots":
        return [real, os.path.join(os.path.dirname(parent), "blobs")]
    return [real]


def _shard_path(index_path: str, shard, roots: list[str]) -> str:
    """The path of the shard `shard` (a value of the index's weight_map), after checking it is
    a file name beside the index that resolves to a regular file inside `roots`."""
    if not (isinstance(shard, str) and shard not in ("", ".", "..") and "\0" not in shard):
        raise SafetensorsError(f"{index_path}: shard {_label(shard)} is not a file name")
    if os.path.basename(shard) != shard:
        raise SafetensorsError(
            f"{index_path}: shard {_label(shard)} is not a file beside the index"
        )
    path = os.path.join(os.path.dirname(index_path), shard)
    real = os.path.realpath(path)
    if not any(os.path.commonpath([real, root]) == root for root in roots):
        raise SafetensorsError(
            f"{index_path}: shard {_label(shard)} is a link that resolves outside the index's "
            "folder; refused"
        )
    if not os.path.exists(real):
        raise SafetensorsError(f"{index_path}: shard {_label(shard)} is missing")
    if not os.path.isfile(real):
        raise SafetensorsError(f"{index_path}: shard {_label(shard)} is not a regular file")
    return path


def load_safetensors_index(index_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of every shard a `*.safetensors.index.json` lists, as `load_safetensors`.

    Raises:
      SafetensorsError / JsonFileError: naming the index, when it is not a bounded JSON object
        with a `weight_map` of tensor names to shard file names, when a shard is not a regular
        file beside it (a link out of its folder, `..`, a directory, a FIFO, missing), or when
        listed tensors are in no shard; naming the shard when a shard is malformed.
    """
    index_path = os.fspath(index_path)
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise SafetensorsError(f"{index_path}: no weight_map of tensor names to shard files")
    roots = _shard_roots(os.path.dirname(os.path.abspath(index_path)))
    paths = {}  # shard name -> checked path, in first-listed order
    for shard in weight_map.values():
        if not (isinstance(shard, str) and shard in paths):
            paths[shard] = _shard_path(index_path, shard, roots)
    tensors: dict[str, np.ndarray] = {}
    for path in paths.values():
        tensors.update(load_safetensors(path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise SafetensorsError(
            f"{index_path}: {len(missing)} tensors listed but in no shard: "
            + ", ".join(map(_label, missing[:5]))
        )
    return tensors


def save_safetensors(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Writes NumPy arrays as a safetensors file (tensors sorted by name, 8-byte aligned)."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset, blobs = 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {a.dtype} has no safetensors equivalent")
        blob = a.astype(dtype).tobytes()
        header[name] = {
            "dtype": _NAMES[dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.fspath(path), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
