"""Realistic bugs injected into correct programs, for debugging conversations.

Each kind finds the places in a program's AST where it applies and rewrites one node's source
segment in place (so the rest of the program keeps its formatting and comments, and the fix is
exactly the reverse edit). Nothing inside an `if __name__ == "__main__":` block is touched: the
input/output driver is not where a realistic bug goes. `inject_verified` keeps only a bug that
actually fails a test in the sandbox.

Written by hand: mutation-testing libraries (mutmut, cosmic-ray) mutate files on disk for test
suites and know none of these debugging-oriented kinds (misspelled name, missing return, ...).
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from collabcoder.analyzers.sandbox import IOJob, Sandbox, SandboxLimits
from collabcoder.analyzers.testcases import IOSuite
from collabcoder.analyzers.verdict import Verdict

BUG_KINDS = (
    "off_by_one",
    "wrong_operator",
    "wrong_comparison",
    "missing_return",
    "misspelled_name",
    "wrong_index",
    "wrong_base_case",
    "swapped_arguments",
)


@dataclass(frozen=True)
class Bug:
    kind: str
    code: str  # the buggy program
    line: int  # 1-based line of the edit
    buggy: str  # the edited segment as it reads in the buggy program
    fixed: str  # the same segment in the correct program


@dataclass(frozen=True)
class _Edit:
    node: ast.AST
    replacement: str


_ARITH_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mod,
    ast.Mod: ast.FloorDiv,
    ast.Div: ast.Mult,
}
_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def _annotations(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (`List[int]` is no index to break)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def _nodes(tree: ast.Module) -> Iterator[ast.AST]:
    skip = _annotations(tree)
    for stmt in tree.body:
        if not _is_main_guard(stmt):
            yield from (n for n in ast.walk(stmt) if id(n) not in skip)


def _plus(node: ast.expr, delta: int) -> str:
    """`node` shifted by `delta` (constants folded: `n` -> `n - 1`, `3` -> `2`)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return repr(node.value + delta)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
        and isinstance(node.op, (ast.Add, ast.Sub))
    ):
        value = node.right.value if isinstance(node.op, ast.Add) else -node.right.value
        value += delta
        base = ast.unparse(node.left)
        return base if value == 0 else f"{base} {'+' if value > 0 else '-'} {abs(value)}"
    return f"{ast.unparse(node)} {'+' if delta > 0 else '-'} {abs(delta)}"


def _off_by_one(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "range" and node.args and not node.keywords:
                bound = node.args[1] if len(node.args) >= 2 else node.args[0]
                for delta in (-1, 1):
                    yield _Edit(bound, _plus(bound, delta))


def _wrong_operator(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _ARITH_SWAP:
            if isinstance(node, ast.BinOp):
                new: ast.AST = ast.BinOp(node.left, _ARITH_SWAP[type(node.op)](), node.right)
            else:
                new = ast.AugAssign(node.target, _ARITH_SWAP[type(node.op)](), node.value)
            yield _Edit(node, ast.unparse(new))


def _wrong_comparison(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAP:
            new = ast.Compare(node.left, [_CMP_SWAP[type(node.ops[0])]()], node.comparators)
            yield _Edit(node, ast.unparse(new))


def _missing_return(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if isinstance(node, ast.FunctionDef):
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value]
            if returns:  # the last return: the one that hands back the main result
                ret = returns[-1]
                assert ret.value is not None
                yield _Edit(ret, ast.unparse(ret.value))


def _misspell(name: str) -> str:
    if len(name) >= 4:
        return name[:-2] + name[-1] + name[-2] if name[-1] != name[-2] else name[:-1]
    return name + name[-1]


def _misspelled_name(tree: ast.Module) -> Iterator[_Edit]:
    bound = {
        n.id for n in _nodes(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    } | {n.arg for n in _nodes(tree) if isinstance(n, ast.arg)}
    for node in _nodes(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in bound:
            wrong = _misspell(node.id)
            if wrong not in bound:
                yield _Edit(node, wrong)


def _wrong_index(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if not isinstance(node, ast.Subscript):
            continue
        index = node.slice
        if isinstance(index, ast.Slice):
            for part in (index.lower, index.upper):
                if part is not None:
                    yield _Edit(part, _plus(part, 1))
            if isinstance(index.step, ast.UnaryOp) and isinstance(index.step.op, ast.USub):
                yield _Edit(index.step, ast.unparse(index.step.operand))
        elif isinstance(index, (ast.Constant, ast.UnaryOp, ast.BinOp, ast.Name)):
            yield _Edit(index, _plus(index, 1 if not _negative(index) else -1))


def _negative(node: ast.expr) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)


def _flip_constant(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return 1 if value == 0 else value - 1
    if isinstance(value, str):
        return value + " " if value else " "
    return _NO_FLIP


_NO_FLIP = object()


def _wrong_base_case(tree: ast.Module) -> Iterator[_Edit]:
    """An early `return <constant>` under an `if` (a recursion's or a loop's base case)."""
    for func in _nodes(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.If):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.Return) and isinstance(stmt.value, ast.Constant):
                    flipped = _flip_constant(stmt.value.value)
                    if flipped is not _NO_FLIP:
                        yield _Edit(stmt.value, repr(flipped))
            test = node.test
            if isinstance(test, ast.Compare) and len(test.comparators) == 1:
                bound = test.comparators[0]
                if isinstance(bound, ast.Constant) and type(bound.value) is int:
                    if any(isinstance(s, ast.Return) for s in node.body):
                        yield _Edit(bound, repr(bound.value + 1))


def _swapped_arguments(tree: ast.Module) -> Iterator[_Edit]:
    for node in _nodes(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2 and not node.keywords:
            a, b = node.args[0], node.args[1]
            if any(isinstance(x, ast.Starred) for x in (a, b)) or ast.dump(a) == ast.dump(b):
                continue
            args = [b, a, *node.args[2:]]
            yield _Edit(node, ast.unparse(ast.Call(node.func, args, [])))


_INJECTORS: dict[str, Callable[[ast.Module], Iterator[_Edit]]] = {
    "off_by_one": _off_by_one,
    "wrong_operator": _wrong_operator,
    "wrong_comparison": _wrong_comparison,
    "missing_return": _missing_return,
    "misspelled_name": _misspelled_name,
    "wrong_index": _wrong_index,
    "wrong_base_case": _wrong_base_case,
    "swapped_arguments": _swapped_arguments,
}
assert tuple(_INJECTORS) == BUG_KINDS


def _offset(lines: list[bytes], line: int, col: int) -> int:
    """Byte offset of (1-based line, UTF-8 byte column) in the joined source."""
    return sum(len(x) for x in lines[: line - 1]) + col


def _apply(code: str, kind: str, edit: _Edit) -> Bug | None:
    node = edit.node
    end_line, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
    if end_line is None or end_col is None:
        return None
    raw = code.encode("utf-8")
    lines = raw.splitlines(keepends=True)
    start = _offset(lines, node.lineno, node.col_offset)  # type: ignore[attr-defined]
    end = _offset(lines, end_line, end_col)
    fixed = raw[start:end].decode("utf-8")
    if fixed == edit.replacement:
        return None
    buggy = (raw[:start] + edit.replacement.encode("utf-8") + raw[end:]).decode("utf-8")
    return Bug(kind, buggy, node.lineno, edit.replacement, fixed)  # type: ignore[attr-defined]


def candidates(code: str, kind: str) -> list[Bug]:
    """Every bug of `kind` this program admits, in source order (empty if none)."""
    if kind not in _INJECTORS:
        raise ValueError(f"unknown bug kind {kind!r}; expected one of {', '.join(BUG_KINDS)}")
    tree = ast.parse(code)
    bugs = [_apply(code, kind, e) for e in _INJECTORS[kind](tree)]
    seen: set[str] = set()
    out = []
    for bug in bugs:
        if bug is not None and bug.code not in seen:
            seen.add(bug.code)
            out.append(bug)
    return out


@dataclass(frozen=True)
class VerifiedBug:
    bug: Bug
    verdict: Verdict  # the buggy program on every case: at least one case fails
    failing_case: int  # the first failing case's index


def inject_verified(
    code: str,
    suite: IOSuite,
    sandbox: Sandbox,
    rng: random.Random,
    kinds: tuple[str, ...] = BUG_KINDS,
    max_tries: int = 6,
    limits: SandboxLimits | None = None,
    kind_order: tuple[str, ...] | None = None,
) -> VerifiedBug | None:
    """A random bug of a random applicable kind that fails at least one test, or None.

    A candidate that still passes every test (e.g. an off-by-one in a bound the tests never
    reach) is not a bug the tests can show, so it is dropped and another is tried. Kinds are
    tried in `kind_order` when given (the caller balances kinds over a data set), else shuffled.
    """
    pool = [b for k in kinds for b in candidates(code, k)]
    rng.shuffle(pool)
    by_kind: dict[str, list[Bug]] = {}
    for bug in pool:
        by_kind.setdefault(bug.kind, []).append(bug)
    order = [k for k in kind_order if k in by_kind] if kind_order else list(by_kind)
    if not kind_order:
        rng.shuffle(order)  # kinds uniformly, not in proportion to how many places they have
    depth = max((len(v) for v in by_kind.values()), default=0)
    tries = [by_kind[k][i] for i in range(depth) for k in order if i < len(by_kind[k])]
    tries = tries[:max_tries]
    limits = limits or SandboxLimits(timeout_s=5.0, cpu_time_s=5)
    for start in range(0, len(tries), 4):  # a few at a time: the first failing one is kept
        batch = tries[start : start + 4]
        verdicts = sandbox.run_many([IOJob(b.code, suite, limits) for b in batch])
        for bug, verdict in zip(batch, verdicts, strict=True):
            if not verdict.is_infra_error and not verdict.all_passed:
                failing = verdict.failures()
                return VerifiedBug(bug, verdict, failing[0].index if failing else 0)
    return None
