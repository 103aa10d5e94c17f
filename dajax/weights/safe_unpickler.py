"""A pickle reader for untrusted files: a whitelist of opcodes, globals and key types, and an
object budget.

The C unpickler trusts its input in ways a hostile file can exploit without running code: a
`LONG_BINPUT` index of 2**32 makes it allocate a memo table of 32 GiB, and a dict key that is a
deep or shared tuple makes hashing recurse in C or take 2**60 steps. This module runs CPython's
pure-Python unpickler (`pickle._Unpickler`, whose memo is a dict) with its dispatch table cut
down to the opcodes that plain data needs, and with these guards:

- globals resolve only through the subclass's `find_class`, and `REDUCE` may call only what
  `find_class` returned (`allowed_callables`), with the arguments its signature takes;
- every value that becomes a dict key passes `check_key`, on every path (`SETITEM(S)`,
  `DICT`, and `ordered_dict`, the stand-in for `collections.OrderedDict` that REDUCE calls):
  a str of at most `MAX_KEY_CHARS` characters, an int in [-2**31, 2**31) (ints that far
  apart cannot be chosen to share a hash), or a flat tuple of at most `MAX_KEY_ITEMS` of them;
- each opcode, each entry an ordered dict copies, and each entry `check_tree` walks spends one
  unit of an `ObjectBudget` that the caller sizes to the file; the memo and the stack are made
  by opcodes, so they are inside it. `MARK`s nest at most `MAX_DEPTH` deep;
- `APPEND(S)` targets lists, `SETITEM(S)` targets dicts, `BUILD` only drops an ordered dict's
  attribute state (torch keeps `_metadata` there); sets, `INST`/`OBJ`/`NEWOBJ`, the copyreg
  extension registry and out-of-band buffers are refused.

`check_tree` then bounds what callers walk: nesting depth, cycles, and the number of entries
reached when shared containers are expanded (a 1.5 KB pickle of dicts sharing one child is
2**100 entries as a tree), against what is left of the same budget.
"""

from __future__ import annotations

import collections
import inspect
import pickle

MAX_DEPTH = 100  # container and MARK nesting; state dicts need < 10
MAX_KEY_CHARS = 1024  # a str key; state-dict names are < 200
MAX_KEY_ITEMS = 8  # a tuple key
KEY_INT_BOUND = 1 << 31  # int keys in [-KEY_INT_BOUND, KEY_INT_BOUND)
MEMO_BOUND = 1 << 32  # memo indices, as LONG_BINPUT's 4 bytes allow (text PUT allows any int)
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
    """The pickle uses an opcode, global, key or amount of objects outside the whitelist."""


class ObjectBudget:
    """Objects a file may still make the unpickler create or walk (see the module doc)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit

    def spend(self, count: int, what: str) -> None:
        """Takes `count` units; RefusedPickleError naming `what` when there are not enough."""
        self.left -= count
        if self.left < 0:
            raise RefusedPickleError(
                f"{what}: more than the {self.limit} objects this file may create (a stack, "
                "memo or container bomb)"
            )


def _key_atom(value) -> bool:
    if type(value) is str:
        return len(value) <= MAX_KEY_CHARS
    return type(value) is int and -KEY_INT_BOUND <= value < KEY_INT_BOUND


def check_key(key) -> None:
    """Raises RefusedPickleError unless `key` may be a dict key (see the module doc). It reads
    types, lengths and int values only: it never hashes or prints the key."""
    if _key_atom(key):
        return
    if type(key) is tuple and len(key) <= MAX_KEY_ITEMS and all(map(_key_atom, key)):
        return
    raise RefusedPickleError(
        f"a dict key of type {type(key).__name__} breaks the key rule (a str of at most "
        f"{MAX_KEY_CHARS} characters, an int in [-2**31, 2**31), or a tuple of at most "
        f"{MAX_KEY_ITEMS} of them)"
    )


def _set_items(target, items) -> None:
    """`target[k] = v` for the (key, value) pairs in the flat list `items`, each key checked."""
    if len(items) % 2:
        raise RefusedPickleError("SETITEMS with an odd number of items")
    for i in range(0, len(items), 2):
        check_key(items[i])
        target[items[i]] = items[i + 1]


class _Dispatch(dict):
    def __missing__(self, code: int):
        name = _OPCODE_NAMES.get(code, f"0x{code:02x}")
        raise RefusedPickleError(f"pickle opcode {name} is not allowed")


class SafeUnpickler(pickle._Unpickler):  # the pure-Python VM: see module doc
    """Restricted unpickler; subclasses define `find_class` and `allowed_callables`
    (callable -> the name messages give it; REDUCE finds callables by identity). Use it in a
    `with` block, which frees what it made when the block ends.

    Args:
      file: the pickle bytes, as a binary file.
      budget: what the pickle may create; each opcode spends one unit.
    """

    allowed_callables: dict = {}

    def __init__(self, file, budget: ObjectBudget):
        super().__init__(file)
        self.budget = budget
        self._signatures: dict[int, inspect.Signature] = {}  # id(callable) -> its signature

    def __enter__(self) -> SafeUnpickler:
        return self

    def __exit__(self, *exc) -> None:
        """Drops every reference the unpickler holds (memo, stack, storages). Its bound
        methods in `allowed_callables` make a cycle that would otherwise keep all the file's
        objects alive until the garbage collector runs."""
        vars(self).clear()

    def ordered_dict(self, items=()) -> collections.OrderedDict:
        """`collections.OrderedDict(items)` for REDUCE: `items` is a dict or a list/tuple of
        (key, value) pairs; each key is checked and each entry spends one unit."""
        if isinstance(items, dict):  # made by checked opcodes: its keys passed check_key
            self.budget.spend(len(items), "OrderedDict copies")
            return collections.OrderedDict(items)
        if type(items) not in (list, tuple):
            raise RefusedPickleError(
                f"OrderedDict of a {type(items).__name__}, not of a dict or (key, value) pairs"
            )
        self.budget.spend(len(items), "OrderedDict entries")
        flat = []
        for pair in items:
            if type(pair) not in (list, tuple) or len(pair) != 2:
                raise RefusedPickleError("OrderedDict of something other than (key, value) pairs")
            flat += pair
        result = collections.OrderedDict()
        _set_items(result, flat)
        return result

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        name = next((n for f, n in self.allowed_callables.items() if f is func), None)
        if name is None or type(args) is not tuple:
            raise RefusedPickleError("REDUCE of something other than a whitelisted function")
        if id(func) not in self._signatures:
            self._signatures[id(func)] = inspect.signature(func)
        signature = self._signatures[id(func)]
        try:
            signature.bind(*args)
        except TypeError:
            count = f"{len(args)} argument" + ("" if len(args) == 1 else "s")
            takes = ", ".join(map(str, signature.parameters.values()))
            raise RefusedPickleError(
                f"REDUCE calls {name} with {count}; it takes ({takes})"
            ) from None
        self.stack[-1] = func(*args)

    def load_build(self):
        self.stack.pop()
        if type(self.stack[-1]) is not collections.OrderedDict:
            raise RefusedPickleError("BUILD on something other than an ordered dict")

    def load_put(self):
        index = int(self.readline()[:-1])
        if not 0 <= index < MEMO_BOUND:  # chosen ints could all share one hash
            raise RefusedPickleError("PUT memo index outside [0, 2**32)")
        self.memo[index] = self.stack[-1]

    def load_mark(self):
        if len(self.metastack) >= MAX_DEPTH:
            raise RefusedPickleError(f"MARKs nest deeper than {MAX_DEPTH} levels")
        super().load_mark()

    def load_setitems(self):
        items = self.pop_mark()
        self._target_dict("SETITEMS")
        _set_items(self.stack[-1], items)

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        self._target_dict("SETITEM")
        _set_items(self.stack[-1], [key, value])

    def load_dict(self):
        d: dict = {}
        _set_items(d, self.pop_mark())
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

    def _target_dict(self, opcode: str) -> None:
        if type(self.stack[-1]) not in (dict, collections.OrderedDict):
            raise RefusedPickleError(f"{opcode} on something other than a dict")

    dispatch = _Dispatch()


def _counted(load):
    """`load` that first spends one unit of the unpickler's budget."""

    def counted(self):
        self.budget.spend(1, "pickle opcodes")
        load(self)

    return counted


_GUARDED = {
    "REDUCE": SafeUnpickler.load_reduce,
    "BUILD": SafeUnpickler.load_build,
    "MARK": SafeUnpickler.load_mark,
    "PUT": SafeUnpickler.load_put,
    "SETITEMS": SafeUnpickler.load_setitems,
    "SETITEM": SafeUnpickler.load_setitem,
    "DICT": SafeUnpickler.load_dict,
    "APPENDS": SafeUnpickler.load_appends,
    "APPEND": SafeUnpickler.load_append,
}
for _name in _DATA_OPCODES:
    _code = getattr(pickle, _name)[0]
    SafeUnpickler.dispatch[_code] = _counted(_GUARDED.get(_name, pickle._Unpickler.dispatch[_code]))


def _containers(node) -> list:
    children = node.values() if isinstance(node, dict) else node
    return [c for c in children if isinstance(c, _CONTAINERS)]


def check_tree(obj, budget: ObjectBudget) -> None:
    """Raises RefusedPickleError when `obj` (dicts, lists, tuples) has a cycle, nests deeper
    than MAX_DEPTH, or would have more entries walked as a tree (each path to a shared
    container counts) than `budget` has left, which it then spends. Linear in the number of
    distinct containers."""
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
            if entries[key] > budget.left:
                raise RefusedPickleError(
                    f"more than {budget.left} entries when walked as a tree (containers "
                    "shared many times)"
                )
        elif key in path:
            raise RefusedPickleError("a container contains itself")
        elif key not in entries:
            if len(path) >= MAX_DEPTH:
                raise RefusedPickleError(f"containers nest deeper than {MAX_DEPTH} levels")
            path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children)
    budget.spend(entries[id(obj)], "entries walked as a tree")
