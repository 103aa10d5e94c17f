"""Malformed `.pth` and safetensors files: targeted and seeded random mutations of valid ones.

`pth_cases(rng, n_random)` and `safetensors_cases(rng, n_random)` return `(name, bytes)` lists;
names say what was done (`stride=(-2147483648,)`, `pickle-edit-3`, ...). Targeted cases
cover each field a hostile file controls (offsets, sizes, strides, storage ids and counts,
argument types, globals, opcodes, nesting, sharing, archive layout); random ones edit pickle
bytes, value trees, JSON headers and whole files.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile

import numpy as np
from pth_builder import (
    Call,
    Global,
    Persistent,
    Raw,
    Shared,
    archive,
    base_checkpoint,
    dumps,
    tensor,
)

BAD_INTS = [-1, -(2**31), 2**31, 2**40, 2**63, 2**64, 1.5, "3", None, True, (1,), [], b"\x01"]
BAD_SHAPES = [
    (1000,), (-1,), (2**40,), (2**62, 2**62), (1.0, 4), ("3", 4), None, 3, (1,) * 40, (),
    (0, 2**40), [3, 4], (3, 4, 1), (3, -4),
]  # fmt: skip
BAD_STRIDES = [
    (-(2**31),),
    (-1, 1),
    (0, 0),
    (2**40, 1),
    (1.5, 1),
    None,
    (4,),
    (4, 1, 1),
    (2**63, 1),
]
ST_DTYPES = {
    np.dtype(k): v for k, v in (("<f4", "F32"), ("<f2", "F16"), ("<i8", "I64"), ("?", "BOOL"))
}
GLOBALS = [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"),
    ("numpy.core.multiarray", "_reconstruct"), ("torch._utils", "_rebuild_tensor"),
    ("torch", "Tensor"), ("__builtin__", "exec"), ("collections", "defaultdict"),
]  # fmt: skip
OPCODE_SNIPPETS = {  # spliced where a value is expected
    "INST": b"(ios\nsystem\n",
    "OBJ": b"(cos\nsystem\no",
    "NEWOBJ": b"ccollections\nOrderedDict\n)\x81",
    "EXT1": b"\x82\x01",
    "memo-4GiB": b"N\x72\xf0\xff\xff\xff",
    "get-missing": b"h\x7f",
    "persid-text": b"P0\n",
    "build-on-dict": b"}}b",
    "setitem-on-list": b"]K\x01K\x02s",
    "append-to-dict": b"}K\x01a",
    "setitems-odd": b"}(K\x01u",
    "reduce-list-args": b"ccollections\nOrderedDict\n]R",
    "frame-huge": b"\x95\xff\xff\xff\xff\xff\xff\xff\x7f",
    "unicode8-huge": b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
    "long-10k-digits": b"L" + b"9" * 10000 + b"L\n",
    "long4-negative": b"\x8b\xff\xff\xff\xff",
    "empty-set": b"\x8f",
    "next-buffer": b"\x97",
    "bytearray8": b"\x96\x01\x00\x00\x00\x00\x00\x00\x00x",
    "unclosed-mark": b"(((",
    "pop-empty": b"0",
    "unknown-opcode": b"\xff",
    "proto-9": b"\x80\x09",
}


def _with_tensor(tree, **fields):
    """The base tree with `model.w` rebuilt from `fields` (key, numel, offset, size, stride,
    storage) replacing the base values."""
    args = dict(key="0", numel=12, offset=0, size=(3, 4), stride=(4, 1), storage="FloatStorage")
    args.update(fields)
    return {**tree, "model": {**tree["model"], "w": tensor(**args)}}


def _dag(depth: int, leaf, wrap):
    node = leaf
    for _ in range(depth):
        shared = Shared(node)
        node = wrap(shared)
    return node


def _deep(depth: int, open_op: bytes, close_op: bytes) -> Raw:
    return Raw(open_op * depth + close_op * (depth - 1))


def _targeted_pth() -> list[tuple[str, bytes]]:
    tree, storages, _ = base_checkpoint()
    cases = [("base", archive(dumps(tree), storages))]

    def add(name, new_tree, new_storages=storages, **kw):
        cases.append((name, archive(dumps(new_tree), new_storages, **kw)))

    for field, pool in (("offset", BAD_INTS), ("size", BAD_SHAPES), ("stride", BAD_STRIDES)):
        for value in pool:
            add(f"{field}={value!r}", _with_tensor(tree, **{field: value}))
    for value in BAD_INTS + [13]:
        add(f"numel={value!r}", _with_tensor(tree, numel=value))
    for value in (0, None, ("0",), "../../etc/passwd", "missing", "x" * 100_000):
        add(f"key={str(value)[:20]!r}", _with_tensor(tree, key=value))
    for name in ("ComplexFloatStorage", "UntypedStorage", "FloatTensor"):
        add(f"storage={name}", _with_tensor(tree, storage=name))
    add(  # issue 22 #1: segfaulted the old reader
        "issue-negative-stride",
        {"w": tensor("0", 4, 3, (1000,), (-(2**31),))},
        {"0": bytes(16)},
    )
    add("issue-negative-offset", {"w": tensor("0", 4, -1000, (4,), (1,))}, {"0": bytes(16)})
    add("issue-stride0-4GiB", {"w": tensor("0", 1, 0, (2**15, 2**15), (0, 0))}, {"0": bytes(4)})
    pid = ("storage", Global("torch", "FloatStorage"), "0", "cpu", 12)
    for name, args in {
        "storage-arg-int": (5, 0, (3,), (1,)),
        "storage-arg-str": ("0", 0, (3,), (1,)),
        "storage-arg-dict": ({"a": 1}, 0, (3,), (1,)),
        "storage-arg-tensor": (tensor("0", 12, 0, (3, 4), (4, 1)), 0, (12,), (1,)),
        "rebuild-2-args": (Persistent(pid), 0),
        "rebuild-10-args": (Persistent(pid), 0, (3,), (1,), *range(6)),
        "pid-string": (Persistent("storage"), 0, (3,), (1,)),
        "pid-short": (Persistent(pid[:4]), 0, (3,), (1,)),
        "pid-kind": (Persistent(("blob", *pid[1:])), 0, (3,), (1,)),
        "pid-dag": (Persistent(_dag(60, (), lambda s: (s, s))), 0, (3,), (1,)),
    }.items():
        add(name, {"w": Call("torch._utils", "_rebuild_tensor_v2", args)})
    for module, name in GLOBALS:
        add(f"global={module}.{name}", {"w": Call(module, name, ("echo",))})
    add("ordered-dict-args", {"w": Call("collections", "OrderedDict", ([("a", 1)],))})
    for name, snippet in OPCODE_SNIPPETS.items():
        add(f"opcode={name}", {"model": {"w": Raw(snippet)}})
    add("deep-lists-100k", _deep(100_000, pickle.EMPTY_LIST, pickle.APPEND))
    add("deep-tuples-100k", Raw(pickle.MARK * 100_000 + pickle.TUPLE * 100_000))
    add("deep-dicts-100k", Raw(b"}X\x01\x00\x00\x00k" * 100_000 + b"N" + pickle.SETITEM * 100_000))
    add("shared-dicts", _dag(100, {}, lambda s: {"a": s, "b": s}))
    add("shared-model-dicts", {"model": _dag(60, tree["model"], lambda s: {"a": s, "b": s})})
    add("shared-lists", _dag(100, [1], lambda s: [s, s]))
    add("shared-tuple-key", {_dag(60, (1,), lambda s: (s, s)): 1})
    add("cycle", Raw(b"]q\x00h\x00a"))
    big = {"0": bytes(1 << 20)}
    view = Shared(tensor("0", 1 << 18, 0, (1 << 18,), (1,)))
    add("one-view-1MiB-named-200-times", {f"v{i}": view for i in range(200)}, big)
    distinct = {f"v{i}": tensor("0", 1 << 18, 0, (1 << 18,), (1,)) for i in range(200)}
    add("distinct-views-1MiB-x200", distinct, big)
    add("byteorder-big", tree, byteorder=b"big")
    add("deflated", tree, method=zipfile.ZIP_DEFLATED)
    add("bzip2", tree, method=zipfile.ZIP_BZIP2)
    add("deflate-bomb", {"w": tensor("0", 4, 0, (4,), (1,))}, {"0": bytes(80 << 20)},
        method=zipfile.ZIP_DEFLATED)  # fmt: skip
    add("missing-storage", tree, {"1": storages["1"], "2": storages["2"]})
    add("short-storage", tree, {**storages, "0": storages["0"][:20]})
    no_pkl = io.BytesIO()
    with zipfile.ZipFile(no_pkl, "w") as z:
        z.writestr("archive/version", "3")
    base = cases[0][1]
    cases += [
        ("no-data-pkl", no_pkl.getvalue()),
        ("legacy-pickle", pickle.dumps({"a": 1}, protocol=2)),
        ("empty-file", b""),
        ("one-byte", b"P"),
        ("text-file", b"<html>404 not found</html>"),
        ("safetensors-bytes", struct.pack("<Q", 2) + b"{}"),
    ]
    cases += [(f"truncated-at-{f}", base[: int(len(base) * f)]) for f in (0.01, 0.3, 0.6, 0.99)]
    return cases


_VALUE_POOL = [
    -1, 0, 2**31, 2**63, -(2**63), 1.5, float("nan"), "", "x" * 300, None, True, b"", (), [], {},
    (1, 2), [(-1,)], {"k": (1,)}, Raw(b"N"), Raw(pickle.MARK), Raw(pickle.STOP), Raw(b"\xff"),
]  # fmt: skip


def _random_value(rng: np.random.Generator):
    pick = rng.integers(len(_VALUE_POOL) + 2)
    if pick == len(_VALUE_POOL):
        return tensor("0", int(rng.integers(-2, 20)), int(rng.integers(-2, 14)), (3,), (1,))
    if pick == len(_VALUE_POOL) + 1:
        return Call("torch._utils", "_rebuild_tensor_v2", tuple(_random_value(rng) for _ in "abcd"))
    return _VALUE_POOL[pick]


def _mutate_tree(node, rng: np.random.Generator):
    """A copy of `node` with one randomly chosen sub-value replaced."""
    children = _children(node)
    if not children or rng.random() < 0.2:
        return _random_value(rng)
    i = int(rng.integers(len(children)))
    children[i] = _mutate_tree(children[i], rng)
    return _rebuild(node, children)


def _children(node) -> list:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, tuple | list):
        return list(node)
    if isinstance(node, Call):
        return list(node.args)
    if isinstance(node, Persistent):
        return list(node.value) if isinstance(node.value, tuple) else []
    return []


def _rebuild(node, children: list):
    if isinstance(node, dict):
        return dict(zip(node, children, strict=True))
    if isinstance(node, Call):
        return Call(node.module, node.name, tuple(children))
    if isinstance(node, Persistent):
        return Persistent(tuple(children))
    return type(node)(children)


def _edit_bytes(data: bytes, rng: np.random.Generator, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        at = int(rng.integers(len(out) + 1))
        kind = rng.integers(4)
        if kind == 0 and at < len(out):
            out[at] = int(rng.integers(256))
        elif kind == 1:
            out.insert(at, int(rng.integers(256)))
        elif kind == 2:
            del out[at : at + int(rng.integers(1, 8))]
        else:
            out[at:at] = out[max(0, at - 16) : at]
    return bytes(out)


def pth_cases(rng: np.random.Generator, n_random: int) -> list[tuple[str, bytes]]:
    """Targeted cases, then `n_random` random ones (pickle bytes, value trees, whole files)."""
    cases = _targeted_pth()
    tree, storages, _ = base_checkpoint()
    pkl, whole = dumps(tree), cases[0][1]
    for i in range(n_random):
        kind = i % 4
        if kind == 0:
            data = archive(_edit_bytes(pkl, rng, int(rng.integers(1, 5))), storages)
        elif kind == 1:
            data = archive(dumps(_mutate_tree(tree, rng)), storages)
        elif kind == 2:
            data = _edit_bytes(whole, rng, int(rng.integers(1, 4)))
        else:
            data = whole[: int(rng.integers(len(whole)))]
        cases.append((f"random-{('pickle', 'tree', 'file', 'cut')[kind]}-{i}", data))
    return cases


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def base_safetensors() -> tuple[dict, bytes, dict]:
    """(header, data bytes, expected arrays) of a valid file with five dtypes."""
    arrays = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.arange(3, dtype=np.float16),
        "c": np.arange(2, dtype=np.int64),
        "d": np.array([True, False]),
        "e": np.zeros((0, 4), np.float32),
    }
    header, offset = {}, 0
    for name, a in arrays.items():
        end = offset + a.nbytes
        header[name] = {
            "dtype": ST_DTYPES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    return header, b"".join(a.tobytes() for a in arrays.values()), arrays


def _targeted_safetensors() -> list[tuple[str, bytes]]:
    header, data, _ = base_safetensors()
    base = _safetensors_bytes(header, data)
    cases = [("base", base)]

    def entry(name, **fields):
        new = json.loads(json.dumps(header))
        new["a"].update(fields)
        cases.append((name, _safetensors_bytes(new, data)))

    for value in ("F64", "F16", "I32", "F8_E4M3", 5, None, ["F32"]):
        entry(f"dtype={value!r}", dtype=value)
    for value in ([-1, -6], [1.5, 4], ["2", "3"], [True, 6], [2**64], [2**62, 2**62], [1] * 40,
                  {}, None, [6], [3, 2]):  # fmt: skip
        entry(f"shape={str(value)[:30]}", shape=value)
    begin, end = header["a"]["data_offsets"]
    bad_offsets = [
        [end, begin], [begin, end + 8], [-24, 0], [begin], [begin, end, 8], [str(begin), str(end)],
        [float(begin), float(end)], [begin + 8, end + 8],
    ]  # fmt: skip
    for value in bad_offsets:
        entry(f"offsets={value}", data_offsets=value)
    overlap = json.loads(json.dumps(header))
    overlap["b"] = {**overlap["a"], "dtype": "I32"}
    for name, new in {
        "overlap": overlap,
        "metadata-list": {**header, "__metadata__": ["x"]},
        "metadata-int": {**header, "__metadata__": {"k": 1}},
        "entry-list": {**header, "a": [1, 2]},
    }.items():
        cases.append((name, _safetensors_bytes(new, data)))
    n = len(json.dumps(header).encode())
    for name, raw in {
        "trailing-bytes": base + b"\0" * 8,
        "missing-bytes": base[:-4],
        "bool-byte-7": _safetensors_bytes(header, data[:-1] + b"\x07") if data else b"",
        "len-0": struct.pack("<Q", 0) + base[8:],
        "len-max": struct.pack("<Q", 2**64 - 1) + base[8:],
        "len-past-end": struct.pack("<Q", len(base)) + base[8:],
        "len-short": struct.pack("<Q", n - 5) + base[8:],
        "json-deep": _json_raw("[" * 100_000 + "]" * 100_000),
        "json-array": _json_raw("[]"),
        "json-bad-utf8": _json_raw(b'{"\xff": 1}'),
        "json-huge-int": _json_raw('{"a": {"dtype": "F32", "shape": [' + "9" * 5000 + "]}}"),
        "json-nan": _json_raw('{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}'),
        "json-duplicate-key": _json_raw(json.dumps(header)[:-1] + ', "a": {"dtype": "F64"}}'),
        "seven-bytes": base[:7],
        "empty": b"",
    }.items():
        cases.append((name, raw))
    return cases


def _json_raw(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _mutate_header(header: dict, rng: np.random.Generator) -> dict:
    new = json.loads(json.dumps(header))
    name = sorted(k for k in new if k != "__metadata__")[int(rng.integers(len(new) - 1))]
    field = ("dtype", "shape", "data_offsets")[int(rng.integers(3))]
    pool = [-8, 0, 8, 2**40, 2**64, 1.5, "F32", "BF16", "BOOL", None, [], [0, 8], [8, 0], [3, 2],
            [0, 2**63], {"x": 1}, True]  # fmt: skip
    value = pool[int(rng.integers(len(pool)))]
    if field in new[name] and isinstance(new[name][field], list) and rng.random() < 0.5:
        i = int(rng.integers(len(new[name][field]) + 1))
        new[name][field][i:i] = [value]
    else:
        new[name][field] = value
    return new


def safetensors_cases(rng: np.random.Generator, n_random: int) -> list[tuple[str, bytes]]:
    """Targeted cases, then `n_random` random ones (header fields, bytes, truncations)."""
    cases = _targeted_safetensors()
    header, data, _ = base_safetensors()
    base = cases[0][1]
    for i in range(n_random):
        kind = i % 3
        if kind == 0:
            raw = _safetensors_bytes(_mutate_header(header, rng), data)
        elif kind == 1:
            raw = _edit_bytes(base, rng, int(rng.integers(1, 4)))
        else:
            raw = base[: int(rng.integers(len(base)))]
        cases.append((f"random-{('header', 'bytes', 'cut')[kind]}-{i}", raw))
    return cases
