"""The tests analyzer: doctest examples become assert steps; verdicts become feedback; the real
sandbox runs them."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

import pytest

from collabcoder.analyzers.static import AnalysisContext, run_analyzers_sync
from collabcoder.analyzers.static.doctests import TestsAnalyzer, doctest_suite
from collabcoder.analyzers.testcases import AssertSuite, extract_assert_suite
from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.analyzers.verdict import TestResult as Result

PREFIX = '''\
import math


def hypot(a: float, b: float) -> float:
    """Length of the hypotenuse.

    >>> hypot(3, 4)
    5.0
    >>> print(round(hypot(1, 1), 3))
    1.414
    >>> hypot(-1, 0)
    Traceback (most recent call last):
    ...
    ValueError: negative side
    """
'''
GOOD = "    if a < 0 or b < 0:\n        raise ValueError('negative side')\n    return math.sqrt(a * a + b * b)\n"
BAD = "    return a + b\n"
SUFFIX = "\n\nprint('module loaded')\n"


def run_suite_here(program: str, suite: AssertSuite) -> list[bool]:
    """What a sandbox does with a suite, minus the isolation: to check the steps themselves."""
    ns: dict[str, Any] = {"__name__": "solution"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(program, ns)
    tns = {"__name__": "__check__"}
    exec(suite.preamble, tns)
    tns["candidate"] = ns[suite.entry_point]
    outcomes = []
    for step in suite.steps:
        try:
            exec(step.source, tns)
            ok = True
        except AssertionError:
            ok = False
        if step.is_test:
            outcomes.append(ok)
    return outcomes


def test_doctest_examples_become_assert_steps() -> None:
    code = PREFIX + GOOD + SUFFIX
    suite = doctest_suite(code, line=PREFIX.count("\n") + 1)
    assert suite is not None and suite.entry_point == "hypot"
    assert len(suite.tests) == 3
    assert [s.line for s in suite.tests] == [7, 9, 11]  # the `>>>` lines in the document
    assert run_suite_here(code, suite) == [True, True, True]
    assert run_suite_here(PREFIX + BAD + SUFFIX, suite) == [False, False, False]


def test_doctests_of_a_method_use_the_class_as_entry_point() -> None:
    code = (
        "class Acc:\n    def __init__(self) -> None:\n        self.n = 0\n\n"
        '    def add(self, k: int) -> int:\n        """\n        >>> a = Acc()\n'
        '        >>> a.add(2)\n        2\n        """\n        self.n += k\n'
        "        return self.n\n"
    )
    suite = doctest_suite(code, line=11)
    assert suite is not None and suite.entry_point == "Acc"
    assert run_suite_here(code, suite) == [True, True]


def test_doctest_output_rules() -> None:
    code = (
        'def rows(n: int) -> list[int]:\n    """\n    >>> rows(30)  # doctest: +ELLIPSIS\n'
        "    [0, 1, ..., 29]\n    >>> print(*rows(3))  # doctest: +NORMALIZE_WHITESPACE\n"
        '    0  1\n    2\n    >>> print("a"); print(); print("b")\n    a\n    <BLANKLINE>\n    b\n'
        '    """\n    return list(range(n))\n'
    )
    suite = doctest_suite(code, line=12)
    assert suite is not None
    assert run_suite_here(code, suite) == [True, True, True]


def test_no_examples_no_suite() -> None:
    assert doctest_suite("def f():\n    '''Nothing to run.'''\n    return 1\n", 3) is None
    assert doctest_suite("x = 1\n", 1) is None


def test_no_tests_is_a_trivial_info_pass() -> None:
    ctx = AnalysisContext("def f() -> int:\n", "    return 1\n")
    (result,) = run_analyzers_sync(ctx, ["tests"])
    assert result.passed and result.kind == "info" and result.score == 1.0


def test_verdict_becomes_feedback_with_pass_fraction() -> None:
    ctx = AnalysisContext(PREFIX, BAD, SUFFIX)
    verdict = Verdict(
        outcome=Outcome.WRONG_ANSWER,
        tests=(
            Result(0, "assert hypot(3, 4) == 5.0", Outcome.PASSED),
            Result(
                1, "assert hypot(1, 1) == 1.414", Outcome.WRONG_ANSWER, expected="1.414", actual="2"
            ),
            Result(
                2,
                "assert hypot(-1, 0)",
                Outcome.RUNTIME_ERROR,
                error_type="TypeError",
                message="bad operand",
                line=PREFIX.count("\n") + 1,
            ),
        ),
    )
    result = TestsAnalyzer()._judge(ctx, verdict, "the given tests")
    assert not result.passed and result.score == pytest.approx(1 / 3)
    assert "2 of 3 tests from the given tests fail" in result.message
    assert "expected 1.414, got 2" in result.message
    assert "raised TypeError: bad operand" in result.message
    (diag,) = result.diagnostics  # the runtime error is on the completion's first line
    assert diag.line == 1 and diag.code == "test-failure"
    infra = TestsAnalyzer()._judge(ctx, Verdict(Outcome.INFRA_ERROR, infra_error="no fork"), "x")
    assert infra.infra_error and infra.passed


def _sandbox_or_skip() -> None:
    try:
        from collabcoder.analyzers.sandbox import default_sandbox
    except ImportError:
        pytest.skip("the sandbox is not available")
    if default_sandbox().closed:
        pytest.skip("the sandbox could not start")


def test_doctests_run_in_the_sandbox() -> None:
    _sandbox_or_skip()
    good = AnalysisContext(PREFIX, GOOD, SUFFIX, time_budgets={"tests": 30})
    (result,) = run_analyzers_sync(good, ["tests"])
    assert result.passed and result.score == 1.0 and result.kind == "critical", result.message
    bad = AnalysisContext(PREFIX, BAD, SUFFIX, time_budgets={"tests": 30})
    (result,) = run_analyzers_sync(bad, ["tests"])
    assert not result.passed and result.score == 0.0
    assert "3 of 3 tests from the docstring's examples fail" in result.message


def test_given_tests_run_in_the_sandbox() -> None:
    _sandbox_or_skip()
    suite = extract_assert_suite(
        "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n",
        "square",
    )
    ctx = AnalysisContext(
        "def square(x: int) -> int:\n",
        "    return x * 2\n",
        tests=suite,
        time_budgets={"tests": 30},
    )
    (result,) = asyncio.run(_run(ctx))
    assert not result.passed and result.score == 0.5
    assert "expected 9, got 6" in result.message


async def _run(ctx: AnalysisContext) -> list[Any]:
    from collabcoder.analyzers.static import run_analyzers

    return await run_analyzers(ctx, ["tests"])
