"""Files that attack the readers' bounds (issue 31), by class.

- `key_cases()`: `.pth` files whose dict keys are deep tuples (hashing recurses in C), tuple
  DAGs (hashing takes 2**60 steps), non-key types, over-long keys, or 150k ints that all hash
  alike (filling the dict takes quadratic time), placed through every opcode that makes a
  key: SETITEM, SETITEMS, DICT, BUILD state, `OrderedDict` REDUCE on pairs, and text PUT
  (the memo's keys).
- `bomb_cases()`: `.pth` files whose deflated 16 MiB pickle repeats one opcode pattern that
  makes objects (stack, memo, every container opcode, OrderedDict copies): ~16 KB of file.
- `small_cases()`: `.pth` booleans other than 0/1, and REDUCEs of OrderedDict on non-pairs.
- `header_cases(folder)`: safetensors headers past the size limit (a JSON bomb, a sparse one),
  the worst JSON the limit admits, and shapes past the largest dimension.
- `shard_cases(folder)`: sharded-safetensors folders whose index names shards that are
  symlinks out of the folder, `..`, directories, FIFOs, absolute paths, NUL bytes, non-strings.
- `config_cases(folder, state, params)`: dajax folders whose `model_config.json`, and transformers
  folders whose `config.json`, hold absurd, non-finite or mistyped fields, or are JSON bombs.

The `.pth` and safetensors generators return `(name, bytes)`; the folder generators write
their cases below `folder` and return `harness.Case`s.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import numpy as np
from harness import Case
from pth_builder import Call, Raw, Seq, Shared, archive, dumps, tensor

MiB = 1 << 20
P61 = (1 << 61) - 1  # hash(n) == hash(n + k * P61) for ints: the modulus of CPython's int hash
ORDERED_DICT = ("collections", "OrderedDict")
SAFETENSORS_HEADER_LIMIT = 8 * MiB  # docs/weights.md


def _pth(value, storages=None, method=zipfile.ZIP_STORED) -> bytes:
    return archive(dumps(value), storages or {}, method=method)


def _dag_tuple(depth: int):
    node = (1,)
    for _ in range(depth):
        shared = Shared(node)
        node = (shared, shared)
    return node


BAD_KEYS = {
    "deep-tuple-100k": Raw(b")" + b"\x85" * 100_000),
    "deep-tuple-marks-100k": Raw(b"(" * 100_000 + b"t" * 100_000),
    "dag-tuple-60": _dag_tuple(60),
    "tuple-of-tuples": ((1, 2), 3),
    "tuple-of-100": tuple(range(100)),
    "tuple-with-float": ("a", 1.5),
    "float": 1.5,
    "bytes": b"k",
    "none": None,
    "bool": True,
    "int-2**61-1": P61,
    "int-minus-2**63": -(2**63),
    "str-100k": "k" * 100_000,
    "list": [1],
}


def _placements(key) -> dict:
    """Every way a pickle turns `key` into a dict key."""
    empty_od = Call(*ORDERED_DICT, ())
    return {
        "setitem": Seq((Raw(b"}"), key, 1, Raw(b"s"))),
        "setitems": Seq((Raw(b"}("), key, 1, Raw(b"u"))),
        "dict": Seq((Raw(b"("), key, 1, Raw(b"d"))),
        "ordered-dict-setitem": Seq((empty_od, key, 1, Raw(b"s"))),
        "build-state": Seq((empty_od, Call(*ORDERED_DICT, ([(key, 1)],)), Raw(b"b"))),
        "ordered-dict-pairs": Call(*ORDERED_DICT, ([(key, 1)],)),
        "ordered-dict-pair-lists": Call(*ORDERED_DICT, (([key, 1],),)),
    }


def _long(value: int) -> bytes:
    data = pickle.encode_long(value)
    return pickle.LONG1 + bytes([len(data)]) + data


def key_cases() -> list[tuple[str, bytes]]:
    """See the module docstring."""
    cases = [("valid-int-and-tuple-keys", _pth({"w": {0: 1, ("a", 2): 3}}))]
    for key_name, key in BAD_KEYS.items():
        for where, value in _placements(key).items():
            cases.append((f"key={key_name}-via-{where}", _pth(value)))
    keys = [_long(i * P61) for i in range(1, 150_001)]  # all hash to 0
    items = b"".join(k + b"N" for k in keys)
    tuples = b"".join(k + b"\x85N" for k in keys)
    pairs = b"".join(k + b"N\x86" for k in keys)  # (key, None)
    puts = b"".join(b"p%d\n" % (i * P61) for i in range(1, 150_001))
    cases += [
        ("colliding-ints-via-setitems", _pth(Raw(b"}(" + items + b"u"))),
        ("colliding-ints-via-dict", _pth(Raw(b"(" + items + b"d"))),
        ("colliding-1-tuples-via-setitems", _pth(Raw(b"}(" + tuples + b"u"))),
        (
            "colliding-ints-via-ordered-dict",
            _pth(Call(*ORDERED_DICT, (Raw(b"](" + pairs + b"e"),))),
        ),
        ("colliding-memo-indices-via-PUT", _pth(Raw(b"N" + puts))),
    ]
    return cases


# Opcode patterns that each make an object, repeated to 16 MiB behind a small prefix.
BOMBS = {
    "MARK": (b"", b"("),
    "EMPTY_LIST": (b"", b"]"),
    "EMPTY_DICT": (b"", b"}"),
    "EMPTY_TUPLE": (b"", b")"),
    "NONE": (b"", b"N"),
    "BININT1": (b"", b"K\x07"),
    "DUP": (b"N", b"2"),
    "MEMOIZE": (b"N", b"\x94"),
    "BINPUT": (b"N", b"q\x05"),
    "BINGET": (b"Nq\x00", b"h\x00"),
    "LIST": (b"", b"(l"),
    "TUPLE": (b"", b"(Nt"),
    "DICT": (b"", b"(d"),
    "TUPLE1": (b"", b"N\x85"),
    "TUPLE2": (b"", b"NN\x86"),
    "TUPLE3": (b"", b"NNN\x87"),
    "APPEND": (b"]", b"Na"),
    "APPENDS": (b"]", b"(NNNNe"),
    "SETITEMS-same-key": (b"}", b"(K\x01Nu"),
    "ORDERED-DICT-copies": (
        b"ccollections\nOrderedDict\nq\x00}q\x01("
        + b"".join(b"M" + struct.pack("<H", i) + b"N" for i in range(2000))
        + b"u",
        b"h\x00h\x01\x85R",
    ),
    "REDUCE-empty-ordered-dicts": (b"ccollections\nOrderedDict\nq\x00", b"h\x00)R"),
}


def bomb_cases(size: int = 16 * MiB) -> list[tuple[str, bytes]]:
    """See the module docstring."""
    cases = []
    for name, (prefix, pattern) in BOMBS.items():
        body = b"\x80\x02" + prefix + pattern * ((size - len(prefix)) // len(pattern))
        data = archive(body, {}, method=zipfile.ZIP_DEFLATED)
        cases.append((f"bomb={name}", data))
    return cases


def small_cases() -> list[tuple[str, bytes]]:
    """See the module docstring."""
    bools = {"w": tensor("0", 4, 0, (4,), (1,), "BoolStorage")}
    cases = [
        ("valid-bools", _pth(bools, {"0": b"\x00\x01\x01\x00"})),
        ("bool-byte-7", _pth(bools, {"0": b"\x00\x01\x07\x00"})),
        ("bool-byte-255", _pth(bools, {"0": b"\xff\x00\x00\x00"})),
    ]
    for name, args in {
        "int": (5,),
        "str": ("ab",),
        "pairs-of-3": ([(1, 2, 3)],),
        "pair-of-int": ([5],),
        "two-args": ({}, {}),
    }.items():
        cases.append((f"ordered-dict-of-{name}", _pth({"w": Call(*ORDERED_DICT, args)})))
    return cases


def _safetensors_file(path: str, header: bytes, length: int | None = None) -> None:
    """Writes an 8-byte length (default: the header's) and the header; a `length` past the
    header is filled with zeros, sparsely."""
    length = len(header) if length is None else length
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + header)
        f.truncate(8 + length)


def header_cases(folder: str) -> list[Case]:
    """See the module docstring."""
    limit = SAFETENSORS_HEADER_LIMIT
    lists = b"[" + b"[]," * (48 * MiB // 3) + b"[]]"
    dicts = b"[" + b"{}," * ((limit - 4) // 3) + b"{}]"
    dicts += b" " * (limit - len(dicts))
    f32 = {"dtype": "F32", "data_offsets": [0, 0]}
    specs = {
        "json-bomb-48MiB": (lists, None),
        "sparse-past-the-limit": (b"{}", limit + 1),
        "sparse-256MiB": (b"{}", 256 * MiB),
        "dicts-at-the-limit": (dicts, None),
        **{
            f"shape={shape}": (json.dumps({"w": {**f32, "shape": shape}}).encode(), None)
            for shape in ([2**64, 0], [2**63, 0], [2**62, 2**62, 0], [0, 2**50])
        },
    }
    cases = []
    for i, (name, (header, length)) in enumerate(specs.items()):
        path = os.path.join(folder, f"{i:02d}.safetensors")
        _safetensors_file(path, header, length)
        cases.append(Case(name, path))
    return cases


INDEX = "model.safetensors.index.json"
SECRET = b"root:x:0:0:root:/root:/bin/bash\n"


def _shard_folder(folder: str, name: str, weight_map: dict, shards: dict[str, bytes]) -> str:
    path = os.path.join(folder, name)
    os.makedirs(path)
    for shard, data in shards.items():
        with open(os.path.join(path, shard), "wb") as f:
            f.write(data)
    with open(os.path.join(path, INDEX), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return path


def shard_cases(folder: str) -> list[Case]:
    """See the module docstring. Each case is a folder; the reader is given its index."""
    from dajax.weights.safetensors_io import save_safetensors

    shard = os.path.join(folder, "one.safetensors")
    save_safetensors(shard, {"a": np.ones(2, np.float32)})
    with open(shard, "rb") as f:
        good = f.read()
    secret = os.path.join(folder, "secret.txt")
    with open(secret, "wb") as f:
        f.write(SECRET)
    cases = []

    def add(name, target, expect="refuse", link=None):
        path = _shard_folder(folder, name, {"a": target}, {} if link else {"s.safetensors": good})
        if link is not None:
            link(path)
        cases.append(Case(name, os.path.join(path, INDEX), expect))

    add("valid", "s.safetensors", "load")
    add("symlink-out", "x.safetensors", link=lambda p: os.symlink(secret, f"{p}/x.safetensors"))
    add("symlink-etc-passwd", "x.safetensors", link=lambda p: os.symlink("/etc/passwd", f"{p}/x"))
    add("symlink-../", "x", link=lambda p: os.symlink(f"../{os.path.basename(secret)}", f"{p}/x"))
    add("symlink-chain", "x", link=lambda p: _symlink_chain(p, secret))
    add("symlink-dir", "x", link=lambda p: os.symlink(p, f"{p}/x"))
    add("symlink-dev-zero", "x", link=lambda p: os.symlink("/dev/zero", f"{p}/x"))
    add("fifo", "x", link=lambda p: os.mkfifo(f"{p}/x"))
    add("subdir", "x", link=lambda p: os.mkdir(f"{p}/x"))
    for name, target in {
        "dotdot": "..",
        "dot": ".",
        "absolute": "/etc/passwd",
        "nested-dotdot": "a/../../secret.txt",
        "missing": "gone.safetensors",
        "nul-byte": "a\x00b",
        "int": 5,
        "list": ["s.safetensors"],
        "empty": "",
    }.items():
        add(f"shard={name}", target)
    return cases


def _symlink_chain(path: str, target: str) -> None:
    os.symlink(target, f"{path}/y")
    os.symlink("y", f"{path}/x")


TINY_CONFIG = {
    "encoder": "custom", "version": "v2", "dim": 128, "depth": 4, "heads": 2, "ffn": "mlp",
    "mlp_ratio": 4.0, "layers": [0, 1, 2, 3], "features": 32, "out_channels": [16, 32, 64, 64],
    "head": "relative", "max_depth": 0.0, "pos_embed": "official", "pretrain_grid": 7,
}  # fmt: skip
BAD_FIELDS = {
    "depth": [10**6, 10**4, 0, -1, 2.5, "12", True, None],
    "heads": [0, -2, 3, 10**9],
    "dim": [0, 10**9, 2**40, 128.0],
    "features": [0, 10**9],
    "mlp_ratio": [0, -1, 1e12, "NaN", "Infinity", "4"],
    "out_channels": [[10**9] * 4, [0, 1, 2, 3], [16, 32], "abcd"],
    "layers": [[0, 1, 2, 10**6], [-1, 0, 1, 2], [0, 1], [0.0, 1, 2, 3]],
    "pretrain_grid": [0, 10**6],
    "encoder": [5, "x" * 10_000],
    "version": ["v9"],
    "head": ["x"],
    "ffn": ["x"],
    "pos_embed": [None],
}
METRIC_DEPTHS = ["NaN", "Infinity", "-Infinity", -5, 0, 1e300, "20", True]
JSON_BOMB = b"[" + b"[]," * (48 * MiB // 3) + b"[]]"


def _json_text(fields: dict) -> str:
    """JSON with the strings 'NaN', 'Infinity' and '-Infinity' as those bare literals."""
    text = json.dumps(fields)
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = text.replace(f'"{literal}"', literal)
    return text


def _write(path: str, data: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def config_cases(folder: str, state: dict[str, np.ndarray], params: str) -> list[Case]:
    """See the module docstring. `state`: official tensors of the model `TINY_CONFIG`
    describes, saved as each transformers folder's model.safetensors; `params`: the same
    model's Orbax `params/` folder, linked into each dajax folder."""
    from dajax.weights.safetensors_io import save_safetensors

    cases = []

    def dajax_folder(name, text):
        path = os.path.join(folder, f"dajax-{len(cases):03d}")
        _write(os.path.join(path, "model_config.json"), text)
        os.symlink(params, os.path.join(path, "params"))
        cases.append(Case(f"model_config.json {name}", path))

    for field, values in BAD_FIELDS.items():
        for value in values:
            dajax_folder(f"{field}={str(value)[:20]}", _json_text({**TINY_CONFIG, field: value}))
    for value in METRIC_DEPTHS:
        metric = {**TINY_CONFIG, "head": "metric", "max_depth": value}
        dajax_folder(f"metric max_depth={value}", _json_text(metric))
    dajax_folder("relative max_depth=NaN", _json_text({**TINY_CONFIG, "max_depth": "NaN"}))
    dajax_folder("unknown field", json.dumps({**TINY_CONFIG, "blocks": 4}))
    dajax_folder("a list", "[1, 2]")
    dajax_folder("a number", "5")
    dajax_folder("json bomb 48MiB", JSON_BOMB)
    dajax_folder("json deep", "[" * 100_000 + "]" * 100_000)

    weights = os.path.join(folder, "tiny.safetensors")
    save_safetensors(weights, state)

    def hf_folder(name, text, expect="refuse"):
        path = os.path.join(folder, f"hf-{len(cases):03d}")
        _write(os.path.join(path, "config.json"), text)
        os.link(weights, os.path.join(path, "model.safetensors"))
        cases.append(Case(f"config.json {name}", path, expect))

    hf = {"depth_estimation_type": "metric", "max_depth": 20, "backbone_config": {}}
    hf["backbone_config"]["out_indices"] = [1, 2, 3, 4]
    hf_folder("valid metric", json.dumps(hf), "load")
    for value in METRIC_DEPTHS:
        hf_folder(f"max_depth={value}", _json_text({**hf, "max_depth": value}))
    for value in ([1, 2, 3, 10**6], [1, 2, 3], [0, 1, 2, 3], ["a", 1, 2, 3], [1.5, 2, 3, 4], 7):
        bad = {**hf, "backbone_config": {"out_indices": value}}
        hf_folder(f"out_indices={str(value)[:20]}", json.dumps(bad))
    hf_folder("backbone_config=list", json.dumps({**hf, "backbone_config": [1]}))
    hf_folder("a list", "[1, 2]")
    hf_folder("json bomb 48MiB", JSON_BOMB)
    return cases
