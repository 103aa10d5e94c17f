"""Read PyTorch `torch.save` checkpoints without torch and without executing pickled code.

A `.pth` (torch >= 1.6) is a zip archive: `<root>/data.pkl` is a pickle whose tensors are
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls and whose storages
are persistent ids `('storage', <dtype>Storage, key, location, numel)` pointing at raw
little-endian bytes in `<root>/data/<key>`.

`load_pth` unpickles with a whitelist: only tensor/parameter rebuild functions, storage types
and `collections.OrderedDict` resolve, each to a local NumPy implementation. Any other global
(`os.system`, `builtins.eval`, numpy reconstructors, ...) raises `UnsafeCheckpointError` before
anything runs.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointFormatError(ValueError):
    """The file is not a readable PyTorch zip checkpoint."""


class UnsafeCheckpointError(ValueError):
    """The pickle references a global outside the tensor-rebuilding whitelist."""


class _StorageType:
    """Stands in for `torch.<X>Storage` inside the pickle."""

    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    """NumPy version of `torch._utils._rebuild_tensor_v2` (views, offsets, strides)."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    needed = offset + 1 + sum((s - 1) * st for s, st in zip(size, stride, strict=True) if s > 0)
    if 0 in size:
        return np.zeros(size, storage.dtype)
    if needed > storage.size:
        raise CheckpointFormatError(f"tensor view of size {size} exceeds its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * item for s in stride], writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"{self._path}: refused to load {module}.{name}; only tensors, parameters and "
            "ordered dicts are allowed (the file may contain code; it was not executed)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointFormatError(f"{self._path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"{self._path}: storage {key} has no known dtype")
        if key not in self._storages:
            member = f"{self._root}/data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise CheckpointFormatError(f"{self._path}: missing storage {member}") from None
            dtype = storage_type.dtype
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointFormatError(f"{self._path}: storage {member} is truncated")
            self._storages[key] = np.frombuffer(raw, dtype, count=numel)
        return self._storages[key]


def load_pth(path: str | os.PathLike):
    """Unpickles a `torch.save` zip archive safely.

    Returns:
      The saved object with every tensor as a NumPy array (bf16 via `ml_dtypes`); containers
      (dict, OrderedDict, list, tuple) and plain values are kept.

    Raises:
      UnsafeCheckpointError: the pickle references a non-whitelisted global.
      CheckpointFormatError: legacy (pre-1.6) or corrupt files, missing/truncated storages.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(
            f"{path}: not a zip-format PyTorch checkpoint (legacy pre-1.6 files are unsupported; "
            "re-save with torch>=1.6: torch.save(torch.load(f), f))"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise CheckpointFormatError(f"{path}: no data.pkl in the archive")
            root = pkl[0].rpartition("/")[0]
            order = (
                archive.read(f"{root}/byteorder").decode()
                if f"{root}/byteorder" in archive.namelist()
                else "little"
            )
            if order != "little":
                raise CheckpointFormatError(f"{path}: big-endian checkpoints are unsupported")
            return _RestrictedUnpickler(archive.read(pkl[0]), archive, root, path).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointFormatError(f"{path}: corrupt checkpoint ({e})") from None


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A flat `name -> array` state dict from a `.pth`.

    Unwraps `{"model": ...}` / `{"state_dict": ...}`, strips a `module.` (DataParallel)
    prefix, joins nested dicts with dots and drops non-tensor entries (e.g. `epoch`).
    """
    obj = load_pth(path)
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"{os.fspath(path)}: holds a {type(obj).__name__}, not a dict")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    flat: dict[str, np.ndarray] = {}

    def visit(prefix: str, node) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                visit(name + ".", v)
            elif isinstance(v, np.ndarray):
                flat[name.removeprefix("module.")] = v

    visit("", obj)
    return flat
