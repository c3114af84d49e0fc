"""Error categories of test results and verdicts, and the suggestion shown for each."""

from __future__ import annotations

import pytest

from collabcoder.analyzers import debug_hints
from collabcoder.analyzers.debug_hints import categorize, label, suggestion
from collabcoder.analyzers.verdict import Outcome, SyntaxErrorInfo, Verdict
from collabcoder.analyzers.verdict import TestResult as Result


def result(outcome: Outcome, error_type: str | None = None) -> Result:
    return Result(index=0, test="assert candidate(1) == 2", outcome=outcome, error_type=error_type)


@pytest.mark.parametrize(
    ("error_type", "category"),
    [
        ("NameError", "NameError"),
        ("UnboundLocalError", "NameError"),
        ("TypeError", "TypeError"),
        ("IndexError", "IndexError"),
        ("KeyError", "KeyError"),
        ("ValueError", "ValueError"),
        ("ZeroDivisionError", "ZeroDivisionError"),
        ("AttributeError", "AttributeError"),
        ("RecursionError", "RecursionError"),
        ("ModuleNotFoundError", "ImportError"),
        ("MemoryError", debug_hints.MEMORY),
        ("OverflowError", debug_hints.RUNTIME_ERROR),  # no specific hint: generic
        (None, debug_hints.RUNTIME_ERROR),
    ],
)
def test_runtime_errors_are_categorized_by_exception(error_type: str | None, category: str) -> None:
    assert categorize(result(Outcome.RUNTIME_ERROR, error_type)) == category


@pytest.mark.parametrize(
    ("outcome", "category"),
    [
        (Outcome.PASSED, debug_hints.PASSED),
        (Outcome.WRONG_ANSWER, debug_hints.WRONG_ANSWER),
        (Outcome.TIMEOUT, debug_hints.TIMEOUT),
        (Outcome.MEMORY_EXCEEDED, debug_hints.MEMORY),
        (Outcome.SYNTAX_ERROR, debug_hints.SYNTAX),
        (Outcome.INFRA_ERROR, debug_hints.INFRA_ERROR),
    ],
)
def test_other_outcomes(outcome: Outcome, category: str) -> None:
    assert categorize(result(outcome)) == category


def test_a_verdict_is_categorized_by_its_first_failure() -> None:
    v = Verdict(
        outcome=Outcome.RUNTIME_ERROR,
        tests=(
            result(Outcome.PASSED),
            result(Outcome.RUNTIME_ERROR, "IndexError"),
            result(Outcome.TIMEOUT),
        ),
    )
    assert categorize(v) == "IndexError"


def test_verdict_categories_without_tests() -> None:
    assert categorize(Verdict(outcome=Outcome.INFRA_ERROR, infra_error="x")) == "infra_error"
    syntax = Verdict(outcome=Outcome.SYNTAX_ERROR, syntax_error=SyntaxErrorInfo("bad", 1, 2))
    assert categorize(syntax) == "SyntaxError"
    crashed = Verdict(
        outcome=Outcome.RUNTIME_ERROR,
        stderr=(
            "Traceback (most recent call last):\n"
            '  File "p.py", line 3\n'
            "NameError: name 'q' is not defined\n"
        ),
    )
    assert categorize(crashed) == "NameError"
    hinted = Verdict(outcome=Outcome.RUNTIME_ERROR, extra={"error_type": "TypeError"})
    assert categorize(hinted) == "TypeError"
    assert categorize(Verdict(outcome=Outcome.TIMEOUT)) == "timeout"
    assert categorize(Verdict(outcome=Outcome.PASSED, tests=(result(Outcome.PASSED),))) == "passed"


def test_every_category_has_its_own_suggestion() -> None:
    texts = {suggestion(c) for c in debug_hints.CATEGORIES}
    assert len(texts) == len(debug_hints.CATEGORIES)
    assert "parentheses" in suggestion("SyntaxError")
    assert "off-by-one" in suggestion("IndexError")
    assert "expected" in suggestion(debug_hints.WRONG_ANSWER)
    assert "time limit" in suggestion(debug_hints.TIMEOUT)
    assert "memory" in suggestion(debug_hints.MEMORY)


def test_unknown_categories_fall_back_to_the_generic_suggestion() -> None:
    assert suggestion("FloatingPointError") == suggestion(debug_hints.RUNTIME_ERROR)
    assert suggestion("IndentationError") == suggestion("SyntaxError")


def test_labels() -> None:
    assert label(debug_hints.WRONG_ANSWER) == "Wrong answer"
    assert label("TypeError") == "TypeError"


def test_load_errors_reported_by_the_sandbox() -> None:
    v = Verdict(
        outcome=Outcome.RUNTIME_ERROR,
        extra={"error": {"error_type": "KeyError", "message": "'k'", "line": 3}},
    )
    assert debug_hints.load_error(v) == ("KeyError", "'k'", 3)
    assert categorize(v) == "KeyError"
