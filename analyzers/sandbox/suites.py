"""Test suites, compiled once in the zygote (which caches them) with their asserts instrumented.

Part of the child's judging code, loaded by path (see zygote.load_modules). `assert L op R`
becomes a call that keeps both operands, so a failure can report expected vs actual; the runner
(runner.py) defines the called helpers in the tests' namespace.
"""

from __future__ import annotations

import ast
from typing import Any

TEST_FILE = "<test>"

# One entry per instrumented assert: (op name or "truth"/"not", actual value is the left operand)
CmpTable = list[tuple[str, bool]]
CompiledSuite = tuple[str, Any, tuple[tuple[bool, Any, int], ...], CmpTable]


def _mentions_candidate(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "candidate" for n in ast.walk(node))


def _at(node: ast.expr, like: ast.expr) -> ast.expr:
    node.lineno, node.col_offset = like.lineno, like.col_offset
    node.end_lineno, node.end_col_offset = like.end_lineno, like.end_col_offset
    return node


def _instrument(node: ast.Assert, table: CmpTable) -> None:
    """`assert L op R` -> `assert __cc_cmp__(k, L, R)`; `assert [not] X` -> `__cc_truth__(k, X)`.

    The helpers evaluate exactly what the assert would, but keep the operands so a failure can
    report expected vs actual, and refuse values whose comparison methods the program wrote.
    """
    test = node.test
    k = len(table)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        actual_left = _mentions_candidate(left) or not _mentions_candidate(right)
        table.append((type(test.ops[0]).__name__, actual_left))
        func, args = "__cc_cmp__", [left, right]
    else:
        negate = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        value = test.operand if isinstance(test, ast.UnaryOp) and negate else test
        table.append(("not" if negate else "truth", True))
        func, args = "__cc_truth__", [value]
    name = _at(ast.Name(func, ast.Load()), test)
    node.test = _at(ast.Call(name, [_at(ast.Constant(k), test), *args], []), test)


def compile_suite(entry_point: str, preamble: str, steps: list[list[Any]]) -> CompiledSuite:
    """`steps` are `[source, is_test, line]`; raises SyntaxError for a broken test suite."""
    table: CmpTable = []
    compiled = []
    for source, is_test, line in steps:
        # Leading newlines put the step at its line in the test file, for tracebacks.
        tree = ast.parse("\n" * max(0, int(line) - 1) + source, TEST_FILE)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                _instrument(node, table)
        compiled.append((bool(is_test), compile(tree, TEST_FILE, "exec", dont_inherit=True), line))
    pre = compile(preamble, TEST_FILE, "exec", dont_inherit=True)
    return entry_point, pre, tuple(compiled), table
