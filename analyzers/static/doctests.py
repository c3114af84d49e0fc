"""Run tests against the document with the completion inserted, in the sandbox.

The tests are the caller's (`ctx.tests`, e.g. a HumanEval suite) or else the doctest examples
of the function around the cursor: `>>> f(1)` / `2` becomes one assert step, so the model
learns from the examples its own docstring promises. No tests: a trivial pass (kind info).
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import inspect
from typing import Any

from collabcoder.analyzers.static.base import _EXECUTOR
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.parsing import parse_code
from collabcoder.analyzers.static.result import (
    AnalyzerKind,
    AnalyzerResult,
    Diagnostic,
    Evidence,
    EvidenceKind,
    infra_result,
    passed_result,
)
from collabcoder.analyzers.testcases import AssertSuite, TestStep

# Runs in the sandbox before the steps: executes one example like doctest does (compiled in
# "single" mode, so a bare expression prints its repr) and returns what doctest would compare.
# No `import doctest` here: the sandbox does not provide it, so the matching rules it needs
# (<BLANKLINE>, ELLIPSIS, NORMALIZE_WHITESPACE) are restated.
DOCTEST_PREAMBLE = '''\
import contextlib as _collab_contextlib
import io as _collab_io
import traceback as _collab_traceback
import types as _collab_types


def _collab_ellipsis_match(want, got):
    parts = want.split("...")
    if not got.startswith(parts[0]) or not got.endswith(parts[-1]):
        return False
    pos, end = len(parts[0]), len(got) - len(parts[-1])
    for part in parts[1:-1]:
        pos = got.find(part, pos, end)
        if pos < 0:
            return False
        pos += len(part)
    return pos <= end


def _collab_matches(want, got, ellipsis, normalize_whitespace):
    want = "\\n".join("" if line == "<BLANKLINE>" else line for line in want.split("\\n"))
    if normalize_whitespace:
        want, got = " ".join(want.split()), " ".join(got.split())
    return want == got or (ellipsis and "..." in want and _collab_ellipsis_match(want, got))


def _collab_doctest_run(source, expected, ellipsis, normalize_whitespace, namespace, raises):
    buffer = _collab_io.StringIO()
    try:
        with _collab_contextlib.redirect_stdout(buffer):
            exec(compile(source, "<doctest>", "single"), namespace)
    except Exception as exc:
        if not raises:
            raise
        got = _collab_traceback.format_exception_only(type(exc), exc)[-1]
    else:
        got = buffer.getvalue()
        if raises:
            return got + "(no exception raised)"
    return expected if _collab_matches(expected, got, ellipsis, normalize_whitespace) else got
'''

# Gives the examples the program's module namespace, as doctest does (they call `f`, not
# `candidate`, and may use anything the module defines).
_BIND_GLOBALS = '''\
_collab_ns = candidate.__globals__ if isinstance(candidate, _collab_types.FunctionType) else next(
    (v.__globals__ for v in vars(candidate).values() if isinstance(v, _collab_types.FunctionType)),
    {},
)
globals().update({k: v for k, v in _collab_ns.items() if not k.startswith("__")})
'''


def _enclosing(tree: ast.Module, line: int) -> tuple[ast.AST | None, ast.AST | None]:
    """(innermost function around `line`, its top-level def or class)."""
    inner: ast.AST | None = None
    top: ast.AST | None = None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
            stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno)
        ):
            top = stmt
            for node in ast.walk(stmt):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    node.lineno <= line <= (node.end_lineno or node.lineno)
                ):
                    if inner is None or node.lineno >= inner.lineno:  # type: ignore[attr-defined]
                        inner = node
    return inner, top


def doctest_suite(code: str, line: int) -> AssertSuite | None:
    """An AssertSuite from the doctest examples of the function enclosing 1-based `line`."""
    doc = parse_code(code)
    if doc is None:
        return None
    func, top = _enclosing(doc.tree, line)
    if func is None or top is None:
        return None
    body = func.body  # type: ignore[attr-defined]
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Constant):
        return None
    docstring = body[0].value.value
    if not isinstance(docstring, str) or ">>>" not in docstring:
        return None
    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:  # inconsistent indentation in the docstring
        return None
    if not examples:
        return None
    steps = [TestStep(_BIND_GLOBALS, is_test=False, line=func.lineno)]  # type: ignore[attr-defined]
    for ex in examples:
        ellipsis = bool(ex.options.get(doctest.ELLIPSIS))
        normalize = bool(ex.options.get(doctest.NORMALIZE_WHITESPACE))
        raises = ex.exc_msg is not None
        expected = ex.exc_msg if ex.exc_msg is not None else ex.want
        call = (f"_collab_doctest_run({ex.source!r}, {expected!r}, {ellipsis}, {normalize}, "
                f"globals(), {raises})")
        steps.append(TestStep(f"assert {call} == {expected!r}\n", is_test=True,
                              line=body[0].lineno + ex.lineno))
    name = top.name  # type: ignore[attr-defined]
    return AssertSuite(entry_point=name, preamble=DOCTEST_PREAMBLE, steps=tuple(steps))


class TestsAnalyzer:
    __test__ = False  # not a pytest class, despite the name

    name = "tests"
    kind: AnalyzerKind = "critical"

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        suite = ctx.tests
        source = "the given tests"
        if suite is None:
            suite = doctest_suite(ctx.code, ctx.cursor[0] + 1)
            source = "the docstring's examples"
        if suite is None or not suite.tests:
            return passed_result(self.name, "info", "No tests to run (none given, no doctest "
                                 "examples in the enclosing function).", evidence=Evidence())
        try:
            from collabcoder.analyzers.sandbox import default_sandbox
        except ImportError as exc:
            return infra_result(self.name, self.kind, f"sandbox not importable: {exc}")
        loop = asyncio.get_running_loop()
        # The first call starts the sandbox's warm parent process: off the event loop.
        sandbox: Any = await loop.run_in_executor(_EXECUTOR, default_sandbox)
        if hasattr(sandbox, "arun_asserts"):  # waits without holding a thread
            verdict: Any = await sandbox.arun_asserts(ctx.code, suite)
        else:
            verdict = await loop.run_in_executor(_EXECUTOR, sandbox.run_asserts, ctx.code, suite)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        return self._judge(ctx, verdict, source)

    def _judge(self, ctx: AnalysisContext, verdict: Any, source: str) -> AnalyzerResult:
        from collabcoder.analyzers.verdict import Outcome

        if verdict.outcome is Outcome.INFRA_ERROR:
            return infra_result(self.name, self.kind, f"sandbox failed: {verdict.infra_error}")
        total = verdict.total
        kind: EvidenceKind = "tests" if source == "the given tests" else "examples"
        if verdict.outcome is Outcome.PASSED and total:
            return AnalyzerResult(self.name, self.kind, True, 1.0,
                                  f"All {total} tests from {source} pass.",
                                  evidence=Evidence(kind, total, total))
        lines: list[str] = []
        diagnostics: list[Diagnostic] = []
        if verdict.syntax_error is not None:
            lines.append(f"The program does not compile: {verdict.syntax_error.message}")
        if not verdict.tests and verdict.syntax_error is None:
            lines.append(f"The program failed before its tests ran ({verdict.outcome.value}): "
                         f"{verdict.stderr.strip()[-300:]}")
        for test in verdict.failures()[:5]:
            lines.append(_describe_failure(test))
            if test.line is not None and test.line in ctx.completion_lines:
                rel_line, _ = ctx.to_completion_position(test.line, 0)
                diagnostics.append(Diagnostic(rel_line, 1, lines[-1], "error", "test-failure"))
        failed = total - verdict.passed_count
        header = (f"{failed} of {total} tests from {source} fail:" if total
                  else f"The tests from {source} could not run:")
        return AnalyzerResult(
            self.name, self.kind, passed=False, score=verdict.pass_fraction,
            message="\n".join([header, *lines]), diagnostics=tuple(diagnostics),
            details={"outcome": verdict.outcome.value, "passed": verdict.passed_count,
                     "total": total},
            evidence=Evidence(kind, verdict.passed_count, total,
                              tuple(lines) or (f"{verdict.outcome.value.replace('_', ' ')}",)),
        )


def _describe_failure(test: Any) -> str:
    what = test.test.strip().splitlines()[0] if test.test.strip() else f"test {test.index}"
    if test.outcome.value == "wrong_answer":
        if test.expected is not None or test.actual is not None:
            return f"`{what}`: expected {test.expected}, got {test.actual}"
        return f"`{what}`: assertion failed"
    if test.outcome.value == "runtime_error":
        where = f" at line {test.line}" if test.line else ""
        return f"`{what}`: raised {test.error_type}: {test.message}{where}"
    return f"`{what}`: {test.outcome.value.replace('_', ' ')}"
