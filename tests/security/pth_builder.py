"""Write `torch.save`-format checkpoints from a small value tree, opcode by opcode.

Torch is not needed and every byte is under the test's control, so a fuzz case can put any
value where torch would put an offset, a size or a storage id, share containers through the
pickle memo, or splice raw opcodes in. Values:

- atoms (int, str, float, bool, None, bytes) and tuples, lists, dicts of values;
- `Global(module, name)` and `Call(module, name, args)` (GLOBAL ... REDUCE);
- `Persistent(value)` (BINPERSID), `Shared(value)` (memoised: written once, then BINGET),
  `Raw(bytes)` (spliced verbatim), `Seq(parts)` (each part written in turn, no container:
  `Seq((Raw(b"}"), key, value, Raw(b"s")))` is a SETITEM);
- `tensor(...)`, a `_rebuild_tensor_v2` call as torch writes it.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import zipfile

import numpy as np


@dataclasses.dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Call:
    module: str
    name: str
    args: tuple


@dataclasses.dataclass(frozen=True)
class Persistent:
    value: object


@dataclasses.dataclass(eq=False)
class Shared:
    value: object


@dataclasses.dataclass(frozen=True)
class Raw:
    data: bytes


@dataclasses.dataclass(frozen=True)
class Seq:
    parts: tuple


def tensor(key, numel, offset, size, stride, storage="FloatStorage"):
    """A `torch._utils._rebuild_tensor_v2` call on storage `key`, as torch.save writes it."""
    pid = Persistent(("storage", Global("torch", storage), key, "cpu", numel))
    hooks = Call("collections", "OrderedDict", ())
    return Call("torch._utils", "_rebuild_tensor_v2", (pid, offset, size, stride, False, hooks))


class _Writer:
    def __init__(self):
        self.out = io.BytesIO()
        self.memo: dict[int, int] = {}

    def op(self, code: bytes, payload: bytes = b"") -> None:
        self.out.write(code + payload)

    def value(self, v) -> None:
        if isinstance(v, Raw):
            self.op(v.data)
        elif isinstance(v, Seq):
            for part in v.parts:
                self.value(part)
        elif isinstance(v, Shared):
            if id(v) in self.memo:
                self.op(pickle.LONG_BINGET, struct.pack("<I", self.memo[id(v)]))
                return
            self.value(v.value)
            self.memo[id(v)] = len(self.memo)
            self.op(pickle.LONG_BINPUT, struct.pack("<I", self.memo[id(v)]))
        elif v is None:
            self.op(pickle.NONE)
        elif isinstance(v, bool):
            self.op(pickle.NEWTRUE if v else pickle.NEWFALSE)
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, float):
            self.op(pickle.BINFLOAT, struct.pack(">d", v))
        elif isinstance(v, str):
            data = v.encode("utf-8", "surrogatepass")
            self.op(pickle.BINUNICODE, struct.pack("<I", len(data)) + data)
        elif isinstance(v, bytes):
            self.op(pickle.BINBYTES, struct.pack("<I", len(v)) + v)
        elif isinstance(v, tuple):
            self.op(pickle.MARK)
            for item in v:
                self.value(item)
            self.op(pickle.TUPLE)
        elif isinstance(v, list):
            self.op(pickle.EMPTY_LIST + pickle.MARK)
            for item in v:
                self.value(item)
            self.op(pickle.APPENDS)
        elif isinstance(v, dict):
            self.op(pickle.EMPTY_DICT + pickle.MARK)
            for key, item in v.items():
                self.value(key)
                self.value(item)
            self.op(pickle.SETITEMS)
        elif isinstance(v, Global):
            self.op(pickle.GLOBAL, f"{v.module}\n{v.name}\n".encode())
        elif isinstance(v, Call):
            self.value(Global(v.module, v.name))
            self.value(tuple(v.args))
            self.op(pickle.REDUCE)
        elif isinstance(v, Persistent):
            self.value(v.value)
            self.op(pickle.BINPERSID)
        else:
            raise TypeError(f"cannot write {type(v).__name__}")

    def int(self, v: int) -> None:
        if 0 <= v < 256:
            self.op(pickle.BININT1, bytes([v]))
        elif -(2**31) <= v < 2**31:
            self.op(pickle.BININT, struct.pack("<i", v))
        else:
            data = pickle.encode_long(v)
            self.op(pickle.LONG1, bytes([len(data)]) + data)


def dumps(value) -> bytes:
    """Protocol-2 pickle bytes of a value tree."""
    w = _Writer()
    w.op(pickle.PROTO, b"\x02")
    w.value(value)
    w.op(pickle.STOP)
    return w.out.getvalue()


def archive(
    pickle_bytes: bytes,
    storages: dict[str, bytes],
    *,
    method=zipfile.ZIP_STORED,
    byteorder=b"little",
) -> bytes:
    """A zip laid out as torch.save writes it: `archive/data.pkl`, `archive/data/<key>`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def write_pth(path, pickle_bytes: bytes, storages: dict[str, bytes], byteorder=b"little"):
    """Writes `archive(...)` to `path`; returns `path`."""
    with open(path, "wb") as f:
        f.write(archive(pickle_bytes, storages, byteorder=byteorder))
    return path


def base_checkpoint():
    """(value tree, storages, expected state dict): a valid tiny checkpoint with a matrix, a
    transposed view of it at an offset, a vector, a half and a bfloat16 tensor."""
    w = np.arange(12, dtype=np.float32) / 7
    h = np.arange(3, dtype=np.float16)
    bf = np.array([0x3F80, 0x4000], np.uint16)  # bfloat16 bits of 1.0 and 2.0
    storages = {"0": w.tobytes(), "1": h.tobytes(), "2": bf.tobytes()}
    tree = {
        "model": {
            "w": tensor("0", 12, 0, (3, 4), (4, 1)),
            "wt": tensor("0", 12, 1, (3, 2), (1, 4)),
            "b": tensor("0", 12, 8, (4,), (1,)),
            "h": tensor("1", 3, 0, (3,), (1,), "HalfStorage"),
            "bf": tensor("2", 2, 0, (2,), (1,), "BFloat16Storage"),
        },
        "epoch": 3,
    }
    expected = {
        "w": w.reshape(3, 4),
        "wt": np.array([[w[1 + i + 4 * j] for j in range(2)] for i in range(3)]),
        "b": w[8:12],
        "h": h,
        "bf": np.array([1.0, 2.0], np.float32),
    }
    return tree, storages, expected
