"""Analyzer plumbing: context positions, the registry, the syntax gate and the runner's promises
(crash or timeout -> infra result, never an exception)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from collabcoder.analyzers.static import (
    AnalysisContext,
    AnalyzerResult,
    UnknownAnalyzerError,
    available_analyzers,
    canonical_name,
    combined_feedback,
    get_analyzer,
    register_analyzer,
    run_analyzers,
    run_analyzers_sync,
    unregister_analyzer,
)
from collabcoder.analyzers.static.result import Diagnostic, passed_result
from collabcoder.analyzers.static.syntax import SyntaxAnalyzer

# -- context positions ---------------------------------------------------------------------------


def test_cursor_and_completion_span() -> None:
    ctx = AnalysisContext("import os\nx = ", "foo(1,\n    2)\ny = 3\n", "print(y)\n")
    assert ctx.cursor == (1, 4)
    assert ctx.completion_end == (4, 0)
    assert list(ctx.completion_lines) == [2, 3, 4]  # the trailing newline adds no line
    assert ctx.code.startswith("import os\nx = foo(1,")


def test_positions_are_completion_relative_and_round_trip() -> None:
    ctx = AnalysisContext("import os\nx = ", "foo(1,\n    2)\n", "")
    # document line 2 (1-based), column 4 (0-based) is the cursor: completion line 1, column 1
    assert ctx.to_completion_position(2, 4) == (1, 1)
    assert ctx.to_completion_position(2, 8) == (1, 5)
    assert ctx.to_completion_position(3, 4) == (2, 5)
    assert ctx.to_completion_position(2, 0) == (1, 1)  # before the cursor: clamped
    assert ctx.to_document_position(1, 5) == (1, 8)  # 0-based, LSP style
    assert ctx.to_document_position(2, 5) == (2, 4)


def test_in_completion_uses_ranges() -> None:
    ctx = AnalysisContext("x = foo(", "1, 2)", "\ny = 1\n")
    assert ctx.in_completion(1, 4, 1, 13)  # the whole call: starts in the prefix, ends inside
    assert not ctx.in_completion(1, 0, 1, 1)  # `x` alone: prefix only
    assert ctx.in_completion(1, 9)
    assert not ctx.in_completion(2, 0)  # the suffix


def test_context_normalises_paths_and_budgets(tmp_path: object) -> None:
    ctx = AnalysisContext(
        "",
        "x",
        document_path="rel/doc.py",
        overrides={"rel/other.py": "y"},
        time_budget_s=1.5,
        time_budgets={"mypy": 3.0},
    )
    assert ctx.document is not None and ctx.document.is_absolute()
    assert all(p.startswith("/") for p in ctx.overrides)
    assert ctx.workspace == ctx.document.parent
    assert ctx.budget_for("mypy") == 3.0 and ctx.budget_for("signature") == 1.5


# -- registry ------------------------------------------------------------------------------------


def test_registry_names_and_aliases() -> None:
    assert set(available_analyzers()) >= {
        "syntax",
        "mypy",
        "signature",
        "hallucination",
        "tests",
        "score",
    }
    assert canonical_name("mypy_analyzer_v1") == "mypy"
    assert canonical_name("signature_analyzer_v1") == "signature"
    assert canonical_name("hallucination_analyzer_v1") == "hallucination"
    assert canonical_name("gpt_score_analyzer_v1") == "score"
    assert get_analyzer("mypy_analyzer_v1") is get_analyzer("mypy")


def test_unknown_name_lists_valid_names_and_suggests() -> None:
    with pytest.raises(UnknownAnalyzerError) as info:
        canonical_name("mypi")
    text = str(info.value)
    assert "did you mean 'mypy'?" in text
    assert "syntax" in text and "hallucination" in text and "mypy_analyzer_v1" in text
    with pytest.raises(UnknownAnalyzerError, match="did you mean 'signature_analyzer_v1'"):
        asyncio.run(run_analyzers(AnalysisContext("", "x = 1\n"), ["signature_analyzer_v2"]))


# -- syntax --------------------------------------------------------------------------------------


def _syntax(prefix: str, completion: str, suffix: str = "") -> AnalyzerResult:
    return SyntaxAnalyzer().check(AnalysisContext(prefix, completion, suffix), time.monotonic() + 5)


def test_syntax_passes_valid_code() -> None:
    assert _syntax("def f(x):\n    return ", "x + 1\n", "\nprint(f(1))\n").passed


def test_syntax_error_in_completion_has_relative_position() -> None:
    result = _syntax("import os\n\ndef f(x):\n", "    y = (x +\n    return y\n", "\n")
    assert not result.passed and result.kind == "critical"
    (diag,) = result.diagnostics
    assert diag.line in (1, 2) and diag.code == "syntax"
    assert result.message.startswith("The completion you provided resulted in the following")


def test_syntax_error_in_first_line_is_relative_to_cursor() -> None:
    result = _syntax("x = 1\ny = ", "foo(1 2)\n")
    (diag,) = result.diagnostics
    assert (diag.line, diag.column) == (
        1,
        5,
    )  # `1 2`: the error starts at `1`, 5th char after cursor


def test_syntax_error_elsewhere_in_document_is_not_the_completions() -> None:
    # The user is typing below; the completion itself is fine.
    result = _syntax("def f(x):\n    return ", "x * 2\n", "\ndef g(:\n    pass\n")
    assert result.passed
    assert "unrelated syntax error" in result.message


def test_syntax_completion_that_breaks_the_following_code_fails() -> None:
    # Valid on its own, but the unclosed block swallows the code after it.
    result = _syntax("def f(x):\n", "    if x:\n", "\nprint(1)\n")
    assert not result.passed


def test_a_comment_where_the_body_belongs_fails() -> None:
    # The demo's `area_of_circle`: a bare comment leaves the function without a body. The error
    # was there before the completion, but giving the block a body was the completion's job.
    prefix = "import math\n\n\ndef area_of_circle(r: float) -> float:\n    "
    for suffix in ("\n", "\n\ndef other() -> int:\n    return 1\n"):
        result = _syntax(prefix, "# This is the default behavior.", suffix)
        assert not result.passed and "still has no body" in result.message
        assert _syntax(prefix, "return math.pi * r ** 2", suffix).passed


def test_syntax_catches_compile_time_errors() -> None:
    result = _syntax("x = 1\n", "return x\n")
    assert not result.passed and "outside function" in result.message


# -- runner --------------------------------------------------------------------------------------


class _Crashes:
    name = "crashes"
    kind = "critical"

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        raise RuntimeError("tool exploded")


class _Sleeps:
    name = "sleeps"
    kind = "critical"

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        await asyncio.sleep(10)
        return passed_result(self.name, "critical", "late")


class _Counts:
    name = "counts"
    kind = "info"

    def __init__(self) -> None:
        self.calls = 0

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        self.calls += 1
        return AnalyzerResult(
            self.name, "info", True, 1.0, "ok", (Diagnostic(1, 1, "seen", "note"),)
        )


@pytest.fixture
def plugins() -> Iterator[_Counts]:
    counter = _Counts()
    register_analyzer("crashes", _Crashes)
    register_analyzer("sleeps", _Sleeps, aliases=("sleepy_v1",))
    register_analyzer("counts", lambda: counter)
    yield counter
    for name in ("crashes", "sleeps", "counts"):
        unregister_analyzer(name)


def test_crash_becomes_infra_result(plugins: _Counts) -> None:
    (result,) = run_analyzers_sync(AnalysisContext("", "x = 1\n"), ["crashes"])
    assert result.infra_error and result.passed
    assert "RuntimeError: tool exploded" in result.message


def test_timeout_becomes_infra_result_within_budget(plugins: _Counts) -> None:
    ctx = AnalysisContext("", "x = 1\n", time_budgets={"sleeps": 0.2})
    started = time.perf_counter()
    results = run_analyzers_sync(ctx, ["sleepy_v1", "counts"])
    assert time.perf_counter() - started < 2
    sleeps, counts = results
    assert sleeps.infra_error and sleeps.passed and "timed out" in sleeps.message
    assert counts.passed and not counts.infra_error and counts.duration_s >= 0


def test_overall_budget_caps_every_analyzer(plugins: _Counts) -> None:
    ctx = AnalysisContext("", "x = 1\n", time_budget_s=30)
    started = time.perf_counter()
    (result,) = run_analyzers_sync(ctx, ["sleeps"], budget_s=0.2)
    assert result.infra_error and time.perf_counter() - started < 2


def test_syntax_error_skips_the_others(plugins: _Counts) -> None:
    results = run_analyzers_sync(AnalysisContext("", "def f(:\n"), ["counts", "crashes"])
    # The syntax result is added first (not requested) so the caller sees why.
    assert [r.name for r in results] == ["syntax", "counts", "crashes"]
    assert not results[0].passed
    assert all(r.skipped and not r.passed and r.message.startswith("skipped:") for r in results[1:])
    assert plugins.calls == 0


def test_results_keep_requested_order_and_dedupe(plugins: _Counts) -> None:
    results = run_analyzers_sync(AnalysisContext("", "x = 1\n"), ["counts", "syntax", "counts"])
    assert [r.name for r in results] == ["counts", "syntax"]
    assert plugins.calls == 1


async def test_async_runner_inside_a_loop(plugins: _Counts) -> None:
    results = await run_analyzers(AnalysisContext("", "x = 1\n"), ["syntax", "counts"])
    assert all(r.passed for r in results)
    # The sync wrapper also works from inside a running loop (via a helper thread).
    assert run_analyzers_sync(AnalysisContext("", "x = 1\n"), ["counts"])[0].passed


def test_combined_feedback_leaves_out_infra_and_skipped() -> None:
    ok = passed_result("mypy", "critical", "fine")
    bad = AnalyzerResult("signature", "critical", False, 0.5, "call is wrong")
    assert combined_feedback([ok]) == "All checks passed."
    assert combined_feedback([ok, bad]) == "call is wrong"


def test_score_without_judge_is_infra() -> None:
    (result,) = run_analyzers_sync(AnalysisContext("", "x = 1\n"), ["gpt_score_analyzer_v1"])
    assert result.infra_error and result.kind == "score" and result.passed
    assert "no judge" in result.message


class _Judge:
    """A stand-in backend: any object with an async `complete` can judge."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.requests: list[object] = []

    async def complete(self, request: object) -> list[object]:
        from collabcoder.server.backends.base import Candidate

        self.requests.append(request)
        return [Candidate(text=self.reply)]


def test_score_with_a_judge_backend() -> None:
    from collabcoder.analyzers.static.llm_score import Reviewer
    from collabcoder.server.backends.base import CompletionRequest

    judge = _Judge("7/10 - fine")
    ctx = AnalysisContext("def add(a, b):\n    return ", "a + b\n")
    (result,) = run_analyzers_sync(ctx, ["score"], reviewer=Reviewer(judge, CompletionRequest))
    assert result.kind == "score" and result.passed and result.score == pytest.approx(0.7)
    (request,) = judge.requests
    assert isinstance(request, CompletionRequest) and request.messages is not None
    assert "a + b" in request.messages[-1]["content"]
    (unreadable,) = run_analyzers_sync(ctx, ["score"], reviewer=Reviewer(_Judge("no idea")))
    assert unreadable.infra_error and unreadable.score == 0.5


def test_importing_the_analyzers_loads_no_server_and_no_heavy_tools() -> None:
    import subprocess
    import sys

    code = (
        "import sys, collabcoder.analyzers.static\n"
        "print(sorted({m.split('.')[0] if not m.startswith('collabcoder') else m "
        "for m in sys.modules if m.startswith(('collabcoder.server', 'mypy', 'jedi'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
