"""A pickle reader for untrusted files: a whitelist of opcodes, globals and container shapes.

The C unpickler trusts its input in ways a hostile file can exploit without running code: a
`LONG_BINPUT` index of 2**32 makes it allocate a memo table of 32 GiB, and keys that are
deeply shared tuples make a dict insertion hash 2**100 nodes. This module runs CPython's
pure-Python unpickler (`pickle._Unpickler`, whose memo is a dict) with its dispatch table cut
down to the opcodes that plain data needs, and with the container opcodes guarded:

- globals resolve only through the subclass's `find_class`, and `REDUCE` may call only what
  `find_class` returned (`allowed_callables`);
- dict keys are atoms (str, int, float, bool, bytes, None), so hashing is linear;
- `APPEND(S)` targets lists, `SETITEM(S)` targets dicts, `BUILD` only drops an ordered dict's
  attribute state (torch keeps `_metadata` there); sets, `INST`/`OBJ`/`NEWOBJ`, the copyreg
  extension registry and out-of-band buffers are refused.

`check_tree` then bounds what callers walk: nesting depth, and the number of entries reached
when shared containers are expanded (a 1.5 KB pickle of dicts sharing one child is 2**100
entries as a tree).
"""

from __future__ import annotations

import collections
import pickle

MAX_DEPTH = 100  # container nesting; state dicts need < 10
MAX_TREE_ENTRIES = 1 << 22  # entries visited walking the object as a tree (shared nodes repeat)
_ATOMS = (str, int, float, bool, bytes, type(None))
_CONTAINERS = (dict, list, tuple)
_DATA_OPCODES = (
    "MARK STOP POP POP_MARK DUP PROTO FRAME NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 "
    "LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE "
    "SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 EMPTY_TUPLE TUPLE TUPLE1 "
    "TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS PUT BINPUT "
    "LONG_BINPUT GET BINGET LONG_BINGET MEMOIZE GLOBAL STACK_GLOBAL REDUCE PERSID BINPERSID BUILD"
).split()
_OPCODE_NAMES = {
    value[0]: name
    for name, value in vars(pickle).items()
    if name.isupper() and isinstance(value, bytes) and len(value) == 1
}


class RefusedPickleError(ValueError):
    """The pickle uses an opcode, global or container shape outside the whitelist."""


def _check_key(key) -> None:
    if type(key) not in _ATOMS:
        raise RefusedPickleError(f"a dict key is a {type(key).__name__}; only atoms are allowed")


class _Dispatch(dict):
    def __missing__(self, code: int):
        name = _OPCODE_NAMES.get(code, f"0x{code:02x}")
        raise RefusedPickleError(f"pickle opcode {name} is not allowed")


class SafeUnpickler(pickle._Unpickler):  # the pure-Python VM: see module doc
    """Restricted unpickler; subclasses define `find_class` and `allowed_callables`."""

    allowed_callables: tuple = ()

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if not any(func is f for f in self.allowed_callables) or type(args) is not tuple:
            raise RefusedPickleError("REDUCE of something other than a whitelisted function")
        try:
            self.stack[-1] = func(*args)
        except TypeError:  # wrong argument count or keyword: the function never ran
            raise RefusedPickleError(
                f"{getattr(func, '__name__', 'a function')} got {len(args)} arguments it does "
                "not take"
            ) from None

    def load_build(self):
        self.stack.pop()
        if type(self.stack[-1]) is not collections.OrderedDict:
            raise RefusedPickleError("BUILD on something other than an ordered dict")

    def load_setitems(self):
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def load_dict(self):
        d: dict = {}
        self._set_items(d, self.pop_mark())
        self.append(d)

    def load_appends(self):
        items = self.pop_mark()
        if type(self.stack[-1]) is not list:
            raise RefusedPickleError("APPENDS to something other than a list")
        self.stack[-1].extend(items)

    def load_append(self):
        value = self.stack.pop()
        if type(self.stack[-1]) is not list:
            raise RefusedPickleError("APPEND to something other than a list")
        self.stack[-1].append(value)

    @staticmethod
    def _set_items(target, items: list) -> None:
        if type(target) not in (dict, collections.OrderedDict):
            raise RefusedPickleError("SETITEM on something other than a dict")
        if len(items) % 2:
            raise RefusedPickleError("SETITEMS with an odd number of items")
        for i in range(0, len(items), 2):
            _check_key(items[i])
            target[items[i]] = items[i + 1]

    dispatch = _Dispatch()


_GUARDED = {
    "REDUCE": SafeUnpickler.load_reduce,
    "BUILD": SafeUnpickler.load_build,
    "SETITEMS": SafeUnpickler.load_setitems,
    "SETITEM": SafeUnpickler.load_setitem,
    "DICT": SafeUnpickler.load_dict,
    "APPENDS": SafeUnpickler.load_appends,
    "APPEND": SafeUnpickler.load_append,
}
for _name in _DATA_OPCODES:
    _code = getattr(pickle, _name)[0]
    SafeUnpickler.dispatch[_code] = _GUARDED.get(_name, pickle._Unpickler.dispatch[_code])


def _containers(node) -> list:
    children = node.values() if isinstance(node, dict) else node
    return [c for c in children if isinstance(c, _CONTAINERS)]


def check_tree(obj) -> None:
    """Raises RefusedPickleError when `obj` (dicts, lists, tuples) has a cycle, nests deeper
    than MAX_DEPTH, or would have more than MAX_TREE_ENTRIES entries walked as a tree (each
    path to a shared container counts). Linear in the number of distinct containers."""
    if not isinstance(obj, _CONTAINERS):
        return
    entries: dict[int, int] = {}  # id -> entries of its tree, for containers already measured
    path: set[int] = set()  # containers entered but not yet measured: the current path
    stack = [(obj, False)]
    while stack:
        node, measured = stack.pop()
        key, children = id(node), _containers(node)
        if measured:
            path.discard(key)
            entries[key] = len(node) + sum(entries[id(c)] for c in children)
            if entries[key] > MAX_TREE_ENTRIES:
                raise RefusedPickleError(
                    f"more than {MAX_TREE_ENTRIES} entries when walked as a tree "
                    "(containers shared many times)"
                )
        elif key in path:
            raise RefusedPickleError("a container contains itself")
        elif key not in entries:
            if len(path) >= MAX_DEPTH:
                raise RefusedPickleError(f"containers nest deeper than {MAX_DEPTH} levels")
            path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children)
