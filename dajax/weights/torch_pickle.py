"""Read PyTorch `torch.save` checkpoints without torch and without executing pickled code.

A `.pth` (torch >= 1.6) is a zip archive: `<root>/data.pkl` is a pickle whose tensors are
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls and whose storages
are persistent ids `('storage', <dtype>Storage, key, location, numel)` pointing at raw
little-endian bytes in `<root>/data/<key>`.

The file is treated as hostile (docs/weights.md lists the guarantees):
- the pickle runs on `safe_unpickler.SafeUnpickler`: only tensor/parameter rebuild functions,
  storage types and `collections.OrderedDict` resolve, each to a local NumPy implementation;
  any other global (`os.system`, `builtins.eval`, numpy reconstructors, ...) raises
  `UnsafeCheckpointError` before anything runs;
- every tensor's offset, sizes and strides are checked (non-negative integers, the whole
  strided extent inside its storage) before a view is made;
- what a file may make us allocate is bounded: archive members may expand to at most
  `READ_FACTOR` x the file size (+ `SLACK_BYTES`), tensors to `TENSOR_FACTOR` x the storage
  bytes (+ `SLACK_BYTES`; stride-0 and repeated views cannot blow up), and the objects the
  pickle creates (opcodes run, memo and stack included) plus the container entries walked as
  a tree to `OBJECT_SLACK` + the file size / `BYTES_PER_OBJECT` (`safe_unpickler`); dict keys
  are short strs, bounded ints or flat tuples of them, and containers nest at most 100 deep;
- booleans must be 0 or 1, and flattened tensor names at most `MAX_NAME_CHARS` long.
Every failure is a `CheckpointFormatError` or `UnsafeCheckpointError` whose one-line message
starts with the file name.
"""

from __future__ import annotations

import io
import math
import os
import zipfile

import ml_dtypes
import numpy as np

from dajax.weights.safe_unpickler import (
    ObjectBudget,
    RefusedPickleError,
    SafeUnpickler,
    check_tree,
)

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
READ_FACTOR = 8  # archive bytes read (decompressed) per byte of file
TENSOR_FACTOR = 4  # tensor bytes materialised per byte of storage read
SLACK_BYTES = 64 << 20  # allowance on top of both, for small files and zero-filled storages
MAX_DIMS = 32  # numpy's limit is 64; no checkpoint tensor comes near
MAX_EXTENT = 1 << 40  # largest size or stride (elements) a tensor may declare
BYTES_PER_OBJECT = 16  # file bytes per object the pickle may create, beyond OBJECT_SLACK
OBJECT_SLACK = 1 << 18  # objects any file may create (a real state dict needs ~30 a tensor)
MAX_NAME_CHARS = 1024  # a flattened tensor name (`model.blocks.0.attn.qkv.weight`)
_ZIP_MAGIC, _PICKLE_PROTO = b"PK", b"\x80"


class CheckpointFormatError(ValueError):
    """The file is not a readable PyTorch zip checkpoint."""


class UnsafeCheckpointError(ValueError):
    """The pickle references a global outside the tensor-rebuilding whitelist."""


class _StorageType:
    """Stands in for `torch.<X>Storage` inside the pickle."""

    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage's bytes as a 1-D array; the pickle cannot forge one (only persistent ids
    make them), so a tensor's storage argument is always a flat buffer we read."""

    def __init__(self, array: np.ndarray):
        self.array = array


_STORAGE_TYPES = {name: _StorageType(name) for name in STORAGE_DTYPES}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _index(value, what: str, upper: int) -> int:
    """`value` as a Python int in [0, upper], else CheckpointFormatError."""
    if type(value) is not int:
        raise CheckpointFormatError(f"tensor {what} is a {type(value).__name__}, not an int")
    if not 0 <= value <= upper:
        raise CheckpointFormatError(f"tensor {what} {value} is outside [0, {upper}]")
    return value


def _shape(values, what: str, upper: int) -> tuple[int, ...]:
    if type(values) not in (tuple, list) or len(values) > MAX_DIMS:
        raise CheckpointFormatError(f"tensor {what} is not a tuple of at most {MAX_DIMS} ints")
    return tuple(_index(v, what, upper) for v in values)


class _Budget:
    """Bytes a file may still make us read from its archive and materialise as tensors, and
    the objects its pickle may still create (see the module doc)."""

    def __init__(self, file_size: int):
        self.read_left = READ_FACTOR * file_size + SLACK_BYTES
        self.storage_bytes = 0
        self.tensor_bytes = 0
        self.objects = ObjectBudget(OBJECT_SLACK + file_size // BYTES_PER_OBJECT)

    def read(self, nbytes: int, member: str) -> None:
        if nbytes > self.read_left:
            raise CheckpointFormatError(
                f"archive member {_short(member)} expands to {nbytes} bytes, more than the file "
                f"can hold (a zip bomb or overlapping members)"
            )
        self.read_left -= nbytes

    def tensor(self, nbytes: int, size: tuple[int, ...]) -> None:
        self.tensor_bytes += nbytes
        if self.tensor_bytes > TENSOR_FACTOR * self.storage_bytes + SLACK_BYTES:
            raise CheckpointFormatError(
                f"tensors of shape {_short(str(size))} and earlier ones need "
                f"{self.tensor_bytes} bytes from {self.storage_bytes} bytes of storage "
                "(overlapping strides or repeated views)"
            )


def check_view(n: int, offset, size, stride) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Checks a tensor view of a storage of `n` elements, before any view is made.

    Args:
      n: the storage's length in elements.
      offset, size, stride: as `torch.Tensor.as_strided`, in elements, straight from the file.

    Returns:
      (offset, size, stride) as Python ints: non-negative, at most `MAX_DIMS` dims, and (for a
      non-empty view) the whole strided extent `offset + sum((size_k - 1) * stride_k)` inside
      the storage. Raises CheckpointFormatError otherwise.
    """
    offset = _index(offset, "storage offset", n)
    size = _shape(size, "size", MAX_EXTENT)
    stride = _shape(stride, "stride", MAX_EXTENT)
    if len(size) != len(stride):
        raise CheckpointFormatError(f"tensor size {size} and stride {stride} differ in length")
    if 0 not in size:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
        if last >= n:
            raise CheckpointFormatError(
                f"tensor view (offset {offset}, size {size}, stride {stride}) reaches element "
                f"{last} of a storage of {n}"
            )
    return offset, size, stride


def strided_copy(storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """A new C-contiguous array of shape `size`: `storage[offset + sum(i_k * stride_k)]`.

    `storage` is 1-D and contiguous; the arguments must have passed `check_view`.
    """
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    window = storage[offset : last + 1]  # exactly the elements the view may touch
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        window, shape=size, strides=[st * item for st in stride], writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, *_unused):
    """`torch._utils._rebuild_parameter(_with_state)`: the parameter is its tensor."""
    return data


class _TorchUnpickler(SafeUnpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, budget: _Budget):
        super().__init__(io.BytesIO(data), budget.objects)
        self._archive, self._root, self._budget = archive, root, budget
        self._storages: dict[str, _Storage] = {}
        self._functions = {  # bound once: REDUCE checks callables by identity
            ("collections", "OrderedDict"): self.ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        }
        self.allowed_callables = {f: ".".join(name) for name, f in self._functions.items()}

    def find_class(self, module: str, name: str):
        if (module, name) in self._functions:
            return self._functions[(module, name)]
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        raise UnsafeCheckpointError(
            f"refused to load {_short(module)}.{_short(name)}; only tensors, parameters and "
            "ordered dicts are allowed (the file may contain code; it was not executed)"
        )

    def _rebuild_tensor(self, storage, offset, size, stride, *_unused) -> np.ndarray:
        """NumPy version of `torch._utils._rebuild_tensor_v2` (views, offsets, strides)."""
        if not isinstance(storage, _Storage):
            raise CheckpointFormatError(
                f"a tensor's storage is a {type(storage).__name__}, not a storage"
            )
        array = storage.array
        offset, size, stride = check_view(array.size, offset, size, stride)
        self._budget.tensor(math.prod(size) * array.itemsize, size)
        return strided_copy(array, offset, size, stride)

    def persistent_load(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointFormatError(
                f"unsupported persistent id (a {type(pid).__name__}, not a storage)"
            )
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or type(key) is not str:
            raise CheckpointFormatError("a storage has no known dtype or no string key")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, numel)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: np.dtype, numel) -> _Storage:
        member = f"{self._root}/data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise CheckpointFormatError(f"missing storage {_short(member)}") from None
        if type(numel) is not int or numel < 0:
            raise CheckpointFormatError(f"storage {_short(member)} has no valid element count")
        if numel * dtype.itemsize > info.file_size:
            raise CheckpointFormatError(
                f"storage {_short(member)} is truncated ({info.file_size} bytes for {numel} "
                f"elements of {dtype.itemsize} bytes)"
            )
        raw = _read_member(self._archive, info, self._budget)
        self._budget.storage_bytes += numel * dtype.itemsize
        array = np.frombuffer(raw, dtype, count=numel)
        if dtype == np.bool_ and array.view(np.uint8).max(initial=0) > 1:
            raise CheckpointFormatError(
                f"storage {_short(member)} holds booleans other than 0 and 1"
            )
        return _Storage(array)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointFormatError(
            f"archive member {_short(info.filename)} uses compression method "
            f"{info.compress_type}; torch.save writes stored or deflated members"
        )
    budget.read(info.file_size, info.filename)
    return archive.read(info)


def _describe(error: Exception) -> str:
    """`Type: message` without calling repr on hostile objects the exception may hold."""
    plain = all(type(a) in (str, int) for a in error.args)
    return type(error).__name__ + (f": {_short(str(error), 200)}" if plain and error.args else "")


def _not_a_zip(path: str, size: int) -> CheckpointFormatError:
    with open(path, "rb") as f:
        head = f.read(2)
    if size == 0:
        return CheckpointFormatError(f"{path}: empty file (0 bytes)")
    if head == _ZIP_MAGIC:
        return CheckpointFormatError(
            f"{path}: truncated or corrupt zip archive ({size} bytes; likely a partial "
            "download: fetch it again)"
        )
    if head[:1] == _PICKLE_PROTO:
        return CheckpointFormatError(
            f"{path}: a legacy (torch < 1.6) checkpoint, which is unsupported; re-save with "
            "torch>=1.6: torch.save(torch.load(f), f)"
        )
    return CheckpointFormatError(f"{path}: not a PyTorch checkpoint ({size} bytes, not a zip)")


def load_pth(path: str | os.PathLike):
    """Unpickles a `torch.save` zip archive safely.

    Returns:
      The saved object with every tensor as a NumPy array (bf16 via `ml_dtypes`); containers
      (dict, OrderedDict, list, tuple) and plain values are kept.

    Raises:
      UnsafeCheckpointError: the pickle references a non-whitelisted global.
      CheckpointFormatError: legacy, truncated or corrupt files, missing/truncated storages,
        tensor views outside their storage, and files exceeding the module's bounds.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if not zipfile.is_zipfile(path):
        raise _not_a_zip(path, size)
    try:
        with zipfile.ZipFile(path) as archive:
            budget = _Budget(size)
            pkl = next(
                (n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"),
                None,
            )
            if pkl is None:
                raise CheckpointFormatError("no data.pkl in the archive")
            root = pkl.rpartition("/")[0]
            if f"{root}/byteorder" in archive.namelist():
                order = _read_member(archive, archive.getinfo(f"{root}/byteorder"), budget)
                if order != b"little":
                    raise CheckpointFormatError("big-endian checkpoints are unsupported")
            data = _read_member(archive, archive.getinfo(pkl), budget)
            with _TorchUnpickler(data, archive, root, budget) as unpickler:
                obj = unpickler.load()
        check_tree(obj, budget.objects)
        return obj
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except (CheckpointFormatError, RefusedPickleError) as e:
        raise CheckpointFormatError(f"{path}: {e}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - hostile bytes: any parser failure is "corrupt"
        raise CheckpointFormatError(f"{path}: corrupt checkpoint ({_describe(e)})") from None


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

    def visit(prefix: str, node) -> None:  # load_pth bounded the depth and entries walked
        for k, v in node.items():
            name = f"{prefix}{k}"
            if len(name) > MAX_NAME_CHARS:
                raise CheckpointFormatError(
                    f"{os.fspath(path)}: a tensor name is longer than {MAX_NAME_CHARS} "
                    f"characters ({_short(name)})"
                )
            if isinstance(v, dict):
                visit(name + ".", v)
            elif isinstance(v, np.ndarray):
                flat[name.removeprefix("module.")] = v

    visit("", obj)
    return flat
