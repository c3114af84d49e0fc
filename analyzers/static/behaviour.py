"""Behavioural evidence from the editor's environment, run in the sandbox.

Three kinds, strongest first, for the function around the cursor:

- `tests`: the workspace's pytest/unittest tests that refer to it (workspace_tests.py), run
  against the candidate document standing in for the file on disk, unsaved buffers included;
- `examples`: its docstring's doctest `>>>` examples (doctests.py) and HumanEval-style prose
  examples (`f(x) ➞ y`, `f(x) == y`, `f(x) => y`; examples.py);
- `asserts`: `assert` statements about it later in the document (top level or in an
  `if __name__ == "__main__":` block).

All run concurrently in the sandbox with the user's interpreter and the workspace importable
(read-only, from the job itself). The result's `evidence` says what was checked (`tests passed
3/3`, `failed: test_mean_empty: ZeroDivisionError: division by zero`); with nothing to run it is
an info result with evidence `none` ("static checks only"). The runner skips this analyzer when
its expected cost (`expected_cost_s`) does not fit the remaining latency budget.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

from collabcoder.analyzers.static.base import _EXECUTOR
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.doctests import doctest_suite
from collabcoder.analyzers.static.examples import doctest_assert, prose_examples
from collabcoder.analyzers.static.mypy_causes import cursor_indent, enclosing_function
from collabcoder.analyzers.static.parsing import ParsedDocument, parse_code
from collabcoder.analyzers.static.result import (
    AnalyzerKind,
    AnalyzerResult,
    Evidence,
    EvidenceKind,
    infra_result,
)
from collabcoder.analyzers.static.workspace_tests import program_for, tests_suite, workspace_files
from collabcoder.analyzers.testcases import AssertSuite, TestStep

NOT_RUN = "_CollabNotRun"  # raised in the sandbox for a test that cannot run there
MAX_TIMEOUT_S = 10.0
_MISSING_MODULE = ("ModuleNotFoundError", "ImportError")


@dataclass(frozen=True)
class Job:
    """One kind of evidence: a program and suite for the sandbox, and a label per test step."""

    kind: EvidenceKind
    program: str
    suite: AssertSuite
    labels: tuple[str, ...]


def _top_of(tree: ast.Module, fn: ast.AST) -> ast.stmt | None:
    line = fn.lineno  # type: ignore[attr-defined]
    for stmt in tree.body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            return stmt
    return None


def _docstring(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, int] | None:
    first = fn.body[0] if fn.body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):  # fmt: skip
        return first.value.value, first.lineno
    return None


def _examples_job(
    ctx: AnalysisContext, fn: ast.FunctionDef | ast.AsyncFunctionDef, top: ast.stmt,
    program: str,
) -> Job | None:
    doc = _docstring(fn)
    if doc is None:
        return None
    text, line = doc
    suite = doctest_suite(ctx.code, fn.body[0].lineno) if ">>>" in text else None
    steps: list[TestStep] = list(suite.steps) if suite is not None else []
    labels: list[str] = []
    if suite is not None:
        try:
            found = doctest.DocTestParser().get_examples(text)
        except ValueError:
            found = []
        labels = [f">>> {ex.source.strip()}" for ex in found]
        if len(found) == len(steps) - 1:  # steps[0] binds the module's globals
            for i, ex in enumerate(found, start=1):
                plain = None if ex.exc_msg is not None else doctest_assert(ex.source, ex.want)
                if plain is not None:
                    steps[i] = TestStep(plain, True, steps[i].line)
    if fn is top:  # prose examples call the function itself, not a method
        prose = prose_examples(text, fn.name, line)
        steps += prose
        labels += [s.source.strip().removeprefix("assert ").replace("candidate(", f"{fn.name}(", 1)
                   for s in prose]  # fmt: skip
    n_tests = sum(s.is_test for s in steps)
    if not n_tests or len(labels) != n_tests:
        return None
    preamble = suite.preamble if suite is not None else ""
    entry = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else fn.name
    return Job("examples", program, AssertSuite(entry, preamble, tuple(steps)), tuple(labels))


def _is_main_guard(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test) and "__main__" in (
        ast.unparse(stmt.test))


def _asserts(doc: ParsedDocument, top: ast.stmt, name: str) -> tuple[list[TestStep], list[ast.Assert]]:
    """Steps for the asserts about `name` after its definition, and the top-level ones (which
    must not also run when the module is imported)."""
    steps: list[TestStep] = []
    top_level: list[ast.Assert] = []
    dependent = {name}  # the function, and variables set from it (`r = mean(xs)`)

    def refers(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id in dependent for n in ast.walk(node))

    def add(stmt: ast.stmt) -> None:
        source = textwrap.dedent(ast.get_source_segment(doc.code, stmt, padded=True) or "")
        if isinstance(stmt, ast.Assert) and refers(stmt):
            steps.append(TestStep(source + "\n", True, stmt.lineno))
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import,
                               ast.ImportFrom)):  # fmt: skip
            if refers(stmt):
                dependent.update(n.id for n in ast.walk(stmt)
                                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
            steps.append(TestStep(source + "\n", False, stmt.lineno))

    for stmt in doc.tree.body:
        if stmt.lineno <= (top.end_lineno or top.lineno):
            continue
        if isinstance(stmt, ast.Assert) and refers(stmt):
            top_level.append(stmt)
            add(stmt)
        elif _is_main_guard(stmt):
            for inner in stmt.body:  # type: ignore[attr-defined]
                add(inner)
    if not any(s.is_test for s in steps):
        return [], []
    return steps, top_level


def _without(code: str, stmts: list[ast.Assert]) -> str:
    """`code` with the given top-level statements replaced by `pass` (lines kept)."""
    lines = code.split("\n")
    for stmt in stmts:
        end = stmt.end_lineno or stmt.lineno
        lines[stmt.lineno - 1] = "pass"
        for i in range(stmt.lineno, end):
            lines[i] = ""
    return "\n".join(lines)


def _program(ctx: AnalysisContext, text: str, files: list[str] | None) -> str:
    """The workspace program (document imported as its module) when the document is a file in
    the workspace; else the document's text as is."""
    if files is not None and ctx.document is not None:
        program = program_for(ctx, files, [], document_text=text)
        if program is not None:
            return program
    return text


def build_jobs(ctx: AnalysisContext) -> list[Job]:
    """Every kind of evidence there is for the function around the cursor."""
    doc = parse_code(ctx.code)
    if doc is None:
        return []
    line = ctx.cursor[0] + 1
    fn = enclosing_function(doc, line, cursor_indent(ctx.prefix) or 1)
    if fn is None:
        return []
    top = _top_of(doc.tree, fn)
    if top is None or not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    in_ws = ctx.document is not None and str(ctx.document).startswith(str(ctx.workspace) + os.sep)
    files = workspace_files(ctx) if in_ws else None
    jobs: list[Job] = []
    found = tests_suite(ctx, top.name, fn.name if fn is top else top.name) if in_ws else None
    if found is not None:
        program, suite, tests = found
        jobs.append(Job("tests", program, suite, tuple(t.qualname for t in tests)))
    examples = _examples_job(ctx, fn, top, _program(ctx, ctx.code, files))
    if examples is not None:
        jobs.append(examples)
    steps, top_level = _asserts(doc, top, top.name)
    if steps:
        program = _program(ctx, _without(ctx.code, top_level), files)
        labels = tuple(f"{s.source.strip().splitlines()[0]} (line {s.line})" for s in steps
                       if s.is_test)  # fmt: skip
        jobs.append(Job("asserts", program, AssertSuite(top.name, "", tuple(steps)), labels))
    return jobs


# -- running ---------------------------------------------------------------------------------

_sandboxes: dict[str, Any] = {}


def sandbox_for(python: str) -> Any:
    """A warm sandbox running the user's interpreter (the default one for our own)."""
    from collabcoder.analyzers.sandbox import Sandbox, default_sandbox

    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return default_sandbox()
    sandbox = _sandboxes.get(python)
    if sandbox is None or sandbox.closed:
        import atexit

        sandbox = _sandboxes[python] = Sandbox(workers=2, python=python)
        atexit.register(sandbox.close)
    return sandbox


def _failure_text(label: str, test: Any) -> str:
    outcome = test.outcome.value
    if outcome == "wrong_answer" and (test.expected is not None or test.actual is not None):
        return f"{label}: expected {test.expected}, got {test.actual}"
    if test.error_type:
        message = (test.message or "").strip().splitlines()
        detail = f": {message[0][:120]}" if message else ""
        return f"{label}: {test.error_type}{detail}"
    if outcome == "wrong_answer":
        return f"{label}: {test.message or 'assertion failed'}"
    return f"{label}: {(test.message or outcome.replace('_', ' '))[:120]}"


def summarize(job: Job, verdict: Any) -> tuple[Evidence, list[dict[str, Any]], str | None]:
    """(evidence, one row per test with its outcome, an environment problem if any)."""
    if not verdict.tests:
        err = verdict.extra.get("error") or {}
        what = err.get("message") or (verdict.syntax_error.message if verdict.syntax_error
                                      else verdict.stderr.strip()[-200:] or verdict.outcome.value)
        kind = err.get("error_type") or verdict.outcome.value
        if kind in _MISSING_MODULE:
            return Evidence(), [], f"{kind}: {what}"
        return Evidence(job.kind, 0, len(job.labels),
                        (f"the module did not load: {kind}: {what}"[:200],)), [], None
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    passed = total = 0
    for label, test in zip(job.labels, verdict.tests, strict=False):
        if test.error_type == NOT_RUN:
            rows.append({"name": label, "outcome": "not_run", "message": test.message})
            continue
        total += 1
        if test.passed:
            passed += 1
            rows.append({"name": label, "outcome": "passed"})
        else:
            failures.append(_failure_text(label, test))
            rows.append({"name": label, "outcome": test.outcome.value, "message": failures[-1]})
    return Evidence(job.kind, passed, total, tuple(failures)), rows, None


class BehaviourAnalyzer:
    """Tests, examples and asserts of the function around the cursor, in the sandbox."""

    name = "behaviour"
    kind: AnalyzerKind = "critical"
    DEFAULT_COST_S = 0.25  # a warm sandbox run of examples; workspace tests import more

    def __init__(self) -> None:
        self._cost: dict[str, float] = {}  # workspace -> recent duration, smoothed

    def expected_cost_s(self, ctx: AnalysisContext) -> float:
        """What a run in this workspace is expected to take (recent runs, smoothed): the runner
        skips the analyzer when this does not fit the remaining latency budget."""
        return self._cost.get(str(ctx.workspace), self.DEFAULT_COST_S)

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        jobs = await loop.run_in_executor(_EXECUTOR, build_jobs, ctx)
        if not jobs:
            return AnalyzerResult(self.name, "info", True, 1.0, "No tests, examples or asserts "
                                  "exercise this function: static checks only.", evidence=Evidence())
        from collabcoder.analyzers.sandbox import AssertJob, SandboxLimits

        try:
            sandbox = await loop.run_in_executor(_EXECUTOR, sandbox_for, ctx.interpreter)
        except Exception as exc:  # the interpreter cannot run the sandbox
            return infra_result(self.name, self.kind, f"sandbox not available: {exc}")
        timeout = max(0.5, min(MAX_TIMEOUT_S, deadline - time.monotonic()))
        limits = SandboxLimits(timeout_s=timeout, cpu_time_s=int(timeout) + 1)
        verdicts = await sandbox.arun_many([AssertJob(j.program, j.suite, limits) for j in jobs])
        key = str(ctx.workspace)
        took = time.monotonic() - started
        self._cost[key] = 0.7 * self._cost.get(key, took) + 0.3 * took
        return self._judge(jobs, verdicts)

    def _judge(self, jobs: list[Job], verdicts: list[Any]) -> AnalyzerResult:
        from collabcoder.analyzers.verdict import Outcome

        parts: list[Evidence] = []
        rows: dict[str, list[dict[str, Any]]] = {}
        env: list[str] = []
        for job, verdict in zip(jobs, verdicts, strict=True):
            if verdict.outcome is Outcome.INFRA_ERROR:
                return infra_result(self.name, self.kind, f"sandbox failed: {verdict.infra_error}")
            evidence, rows[job.kind], problem = summarize(job, verdict)
            if problem is not None:
                env.append(f"{job.kind}: {problem}")
            parts.append(evidence)
        evidence = Evidence.combine(parts)
        details: dict[str, Any] = {"tests": rows, "environment_notes": env}
        if not evidence.checked:
            text = "No behaviour could be checked"
            text += f" ({'; '.join(env)})" if env else ""
            return AnalyzerResult(self.name, "info", True, 1.0, text + ": static checks only.",
                                  details=details, evidence=evidence)
        run = [p for p in evidence.parts if p.checked]
        passed, total = sum(p.passed for p in run), sum(p.total for p in run)
        summary = ", ".join(p.words() if p.ok else f"{p.kind} passed {p.passed}/{p.total}"
                            for p in run)  # fmt: skip
        if evidence.ok:
            return AnalyzerResult(self.name, self.kind, True, 1.0, f"Behaviour checked: {summary}.",
                                  details=details, evidence=evidence)
        lines = [f"The completion fails its behaviour checks ({summary}):",
                 *(f"- {f}" for f in evidence.failures[:8])]
        return AnalyzerResult(self.name, self.kind, False, passed / total if total else 0.0,
                              "\n".join(lines), details=details, evidence=evidence)
