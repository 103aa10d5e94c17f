"""Read and write the safetensors format with NumPy alone.

Layout: 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`),
then the raw little-endian tensor bytes, offsets relative to the end of the header.
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

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
_MAX_HEADER = 100 * 2**20


class SafetensorsError(ValueError):
    """A safetensors file is malformed."""


def _read_header(f, path: str, file_size: int) -> tuple[dict, int]:
    raw = f.read(8)
    if len(raw) != 8:
        raise SafetensorsError(f"{path}: truncated (no 8-byte header length)")
    (n,) = struct.unpack("<Q", raw)
    if n > min(_MAX_HEADER, file_size - 8):
        raise SafetensorsError(f"{path}: header length {n} exceeds the file size")
    try:
        header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    return header, 8 + n


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The free-form `__metadata__` strings of a safetensors file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        header, _ = _read_header(f, path, os.path.getsize(path))
    return dict(header.get("__metadata__") or {})


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as NumPy arrays (bf16 via `ml_dtypes`).

    Raises:
      SafetensorsError: naming the file, on truncation, bad JSON, unknown dtypes, or offsets
        that do not match the shapes.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, start = _read_header(f, path, size)
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise SafetensorsError(
                f"{path}: tensor {name!r} has a bad header entry ({e!r})"
            ) from None
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != nbytes or not 0 <= begin <= end <= len(data):
            raise SafetensorsError(
                f"{path}: tensor {name!r} offsets [{begin}, {end}) do not fit shape {shape} "
                f"{info['dtype']} in {len(data)} data bytes (file truncated?)"
            )
        out[name] = (
            np.frombuffer(data, dtype, count=nbytes // dtype.itemsize, offset=begin)
            .reshape(shape)
            .copy()
        )
    return out


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
