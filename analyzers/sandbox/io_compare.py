"""Comparing a program's stdout with the expected stdout of a stdin/stdout case.

Rule (also in docs/sandbox.md):

1. `\\r\\n` and `\\r` count as `\\n`; trailing whitespace on each line and trailing blank lines
   are ignored (leading whitespace and blank lines in the middle are not).
2. Lines that are then equal match. Otherwise both lines are split into tokens and whitespace
   runs; the whitespace runs must be identical and each token pair must be equal, or both be
   decimal numbers of which at least one has a fraction or exponent (`1.5`, `2e-3`, `3.`) and
   that are close: `math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)`.
3. Integers (`42`, `-7`) always compare exactly, so big-integer answers cannot pass by rounding;
   `nan`, `inf` and anything else compare as exact strings.
"""

from __future__ import annotations

import math
import re

REL_TOL = 1e-6
ABS_TOL = 1e-9

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SPLIT = re.compile(r"(\s+)")


def normalize_output(text: str) -> list[str]:
    """Lines with trailing whitespace and trailing blank lines removed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tokens_match(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    if not (_NUMBER.fullmatch(expected) and _NUMBER.fullmatch(actual)):
        return False
    if _is_integer(expected) and _is_integer(actual):
        return False  # unequal strings; integers are exact (leading zeros/signs included)
    try:
        a, b = float(expected), float(actual)
    except (ValueError, OverflowError):
        return False
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _is_integer(token: str) -> bool:
    return not any(c in token for c in ".eE")


def _lines_match(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    exp_parts, act_parts = _SPLIT.split(expected), _SPLIT.split(actual)
    if len(exp_parts) != len(act_parts):
        return False
    # re.split with a capturing group alternates token, separator, token, ...
    for i, (e, a) in enumerate(zip(exp_parts, act_parts, strict=True)):
        if i % 2 == 1:
            if e != a:
                return False
        elif not _tokens_match(e, a):
            return False
    return True


def outputs_match(expected: str, actual: str) -> bool:
    """True when `actual` stdout is accepted for `expected` under the rule above."""
    exp_lines, act_lines = normalize_output(expected), normalize_output(actual)
    if len(exp_lines) != len(act_lines):
        return False
    return all(_lines_match(e, a) for e, a in zip(exp_lines, act_lines, strict=True))
