"""Which values a test may compare with plain expected data (part of the child's judging code).

Loaded by path into the zygote like every module the child runs (see zygote.load_modules). The
tables below hold the comparison methods of builtin and stdlib classes as they were before any
program ran: a program that patches one (say `Counter.__eq__`) makes such values untrusted.
"""

from __future__ import annotations

import collections
import decimal
import fractions
from typing import Any

_type_mro = type.__dict__["__mro__"].__get__  # immune to metaclass __getattribute__ tricks
_type_dict = type.__dict__["__dict__"].__get__

_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes})
_PLAIN_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})
_CMP_DUNDERS = (
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__",
    "__contains__",
)  # fmt: skip
# Classes whose comparison methods we trust as they are now (before the program runs).
_TRUSTED_BASES: tuple[type, ...] = (
    object, type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, set,
    frozenset, dict, range, collections.OrderedDict, collections.defaultdict,
    collections.Counter, collections.deque, fractions.Fraction, decimal.Decimal,
)  # fmt: skip
_TRUSTED_IMPLS: dict[str, frozenset[int]] = {
    d: frozenset(id(b.__dict__[d]) for b in _TRUSTED_BASES if d in b.__dict__) for d in _CMP_DUNDERS
}
_SEQUENCE_BASES: tuple[Any, ...] = (list, tuple, set, frozenset, collections.deque)


def _lookup(t: type, name: str) -> Any:
    for klass in _type_mro(t):
        d = _type_dict(klass)
        if name in d:
            return d[name]
    return None


def _pristine_type(t: type) -> bool:
    """True when `t` compares, tests truth and length exactly like a trusted base class."""
    for name in _CMP_DUNDERS:
        impl = _lookup(t, name)
        if impl is not None and id(impl) not in _TRUSTED_IMPLS[name]:
            return False
    return True


def _children(v: Any, t: type) -> list[Any]:
    # Unbound base-class methods read the real storage, not an overridden __iter__.
    if issubclass(t, dict):
        return [*dict.keys(v), *dict.values(v)]
    for base in _SEQUENCE_BASES:
        if issubclass(t, base):
            return list(base.__iter__(v))
    return []


def is_plain(value: Any) -> bool:
    """Built only from None, bool, int, float, complex, str, bytes, list, tuple, set, dict."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _ATOMIC:
            continue
        if t not in _PLAIN_CONTAINERS:
            return False
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(_children(v, t))
    return True


def is_trusted(value: Any) -> bool:
    """No comparison, truth or length method that the program wrote, at any depth."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _ATOMIC or id(v) in seen:
            continue
        seen.add(id(v))
        if t not in _PLAIN_CONTAINERS and not _pristine_type(t):
            return False
        stack.extend(_children(v, t))
    return True
