"""Error categories of failed tests and a debugging suggestion for each.

Feedback texts (training turns and the language server's loop) and the code-agentic tool's
replies show these, so one wording serves both. Categories are plain strings: exception class
names for runtime errors the hints know, and lower-case names for the other outcomes.
"""

from __future__ import annotations

import re

from .verdict import Outcome, TestResult, Verdict

PASSED = "passed"
WRONG_ANSWER = "wrong_answer"
TIMEOUT = "timeout"
MEMORY = "memory"
SYNTAX = "SyntaxError"
RUNTIME_ERROR = "runtime_error"  # a runtime error without a more specific hint
INFRA_ERROR = "infra_error"
MISSING_FUNCTION = "missing_function"  # the required function was not found in the reply

# Exception classes folded into a category whose hint fits them.
_ALIASES: dict[str, str] = {
    "UnboundLocalError": "NameError",
    "IndentationError": SYNTAX,
    "TabError": SYNTAX,
    "ModuleNotFoundError": "ImportError",
    "MemoryError": MEMORY,
    "TimeoutError": TIMEOUT,
    "TimeoutException": TIMEOUT,
    "AssertionError": WRONG_ANSWER,
}

_SUGGESTIONS: dict[str, str] = {
    "NameError": (
        "A name is used before it is defined. Check spelling, define variables on every path "
        "before use, import the modules you use, and call helpers by their exact names."
    ),
    SYNTAX: (
        "The code does not parse. Check for unbalanced parentheses, brackets and quotes, "
        "missing colons after def/if/for/while, and consistent indentation."
    ),
    "TypeError": (
        "A value has the wrong type for the operation or call. Check argument counts and "
        "order, conversions between str/int/list, and functions that return None."
    ),
    "IndexError": (
        "An index is out of range. Check loop bounds (off-by-one), empty inputs, and indexes "
        "computed from lengths."
    ),
    "KeyError": (
        "A dictionary key is missing. Check that the key is inserted before it is read, or use "
        "dict.get with a default."
    ),
    "ValueError": (
        "A value has the right type but an invalid content (e.g. int('a'), unpacking the wrong "
        "number of items, max() of an empty sequence). Validate or special-case such inputs."
    ),
    "ZeroDivisionError": (
        "A division or modulo by zero. Handle zero divisors and empty inputs (averages of "
        "nothing) before dividing."
    ),
    "AttributeError": (
        "An object has no such attribute or method. Check the object's type (a list is not a "
        "str, None has no methods) and the method's exact name."
    ),
    "RecursionError": (
        "Recursion is too deep. Check that every recursive call moves toward a base case that "
        "is reached, or rewrite the recursion as a loop."
    ),
    "ImportError": (
        "A module or name could not be imported. Use only the standard library and check the "
        "module and name spelling."
    ),
    WRONG_ANSWER: (
        "The code runs but returns a wrong result. Compare the expected and actual values, "
        "re-read the task's requirements and examples, and check edge cases (empty input, "
        "negatives, duplicates, boundaries)."
    ),
    TIMEOUT: (
        "The code ran past the time limit. Look for loops that never end (a counter that is "
        "never updated, a condition that never becomes false) and for algorithms that are too "
        "slow for the input size."
    ),
    MEMORY: (
        "The code used too much memory. Avoid building huge lists or strings, unbounded "
        "recursion and caches; process the input step by step."
    ),
    MISSING_FUNCTION: (
        "The required function was not found. Define it at the top level with exactly the "
        "requested name and make it return its result."
    ),
    INFRA_ERROR: (
        "The tests could not be run because of a problem in the test sandbox, not in the code."
    ),
    PASSED: "Nothing to fix.",
    RUNTIME_ERROR: (
        "The code raised an exception. Read the error message and the line it points to, and "
        "check the inputs that reach that line."
    ),
}

_LABELS: dict[str, str] = {
    WRONG_ANSWER: "Wrong answer",
    TIMEOUT: "Timeout",
    MEMORY: "Memory limit",
    MISSING_FUNCTION: "Missing function",
    INFRA_ERROR: "Sandbox failure",
    PASSED: "Passed",
    RUNTIME_ERROR: "Runtime error",
}

CATEGORIES: tuple[str, ...] = tuple(_SUGGESTIONS)

_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)|StopIteration)\b")


def _from_exception(name: str | None) -> str:
    if not name:
        return RUNTIME_ERROR
    name = name.rsplit(".", 1)[-1]
    name = _ALIASES.get(name, name)
    return name if name in _SUGGESTIONS else RUNTIME_ERROR


def _categorize_test(test: TestResult) -> str:
    outcome = test.outcome
    if outcome is Outcome.PASSED:
        return PASSED
    if outcome is Outcome.WRONG_ANSWER:
        return WRONG_ANSWER
    if outcome is Outcome.TIMEOUT:
        return TIMEOUT
    if outcome is Outcome.MEMORY_EXCEEDED:
        return MEMORY
    if outcome is Outcome.SYNTAX_ERROR:
        return SYNTAX
    if outcome is Outcome.INFRA_ERROR:
        return INFRA_ERROR
    return _from_exception(test.error_type)


def error_type_from_stderr(stderr: str) -> str | None:
    """The exception class of the last traceback line in `stderr`, if there is one."""
    for line in reversed(stderr.strip().splitlines()):
        m = _ERROR_LINE.match(line.strip())
        if m:
            return m.group(1)
    return None


def load_error(verdict: Verdict) -> tuple[str | None, str | None, int | None]:
    """(exception class, message, program line) of an error raised before the tests ran.

    The sandbox reports it as `extra["error"]`; older or foreign verdicts may only carry a
    traceback in stderr (or `extra["error_type"]`), so those are read as fallbacks.
    """
    err = verdict.extra.get("error")
    if isinstance(err, dict):
        etype, message, line = err.get("error_type"), err.get("message"), err.get("line")
        return (
            etype if isinstance(etype, str) else None,
            message if isinstance(message, str) else None,
            line if isinstance(line, int) else None,
        )
    etype = verdict.extra.get("error_type")
    if isinstance(etype, str):
        return etype, None, None
    return error_type_from_stderr(verdict.stderr), None, None


def categorize(result: TestResult | Verdict) -> str:
    """Category of one test result, or of a whole verdict (its first failure).

    A verdict that never reached its tests (an error while loading the program) is classified
    from its outcome, then from the load error the sandbox reported (see `load_error`).
    """
    if isinstance(result, TestResult):
        return _categorize_test(result)
    verdict = result
    if verdict.outcome is Outcome.INFRA_ERROR:
        return INFRA_ERROR
    if verdict.outcome is Outcome.SYNTAX_ERROR or verdict.syntax_error is not None:
        return SYNTAX
    failures = verdict.failures()
    if failures:
        return _categorize_test(failures[0])
    if verdict.outcome is Outcome.PASSED:
        return PASSED
    if verdict.outcome is Outcome.RUNTIME_ERROR:
        return _from_exception(load_error(verdict)[0])
    return _categorize_test(TestResult(index=-1, test="", outcome=verdict.outcome))


def suggestion(category: str) -> str:
    """A short debugging suggestion for a category; a generic one for unknown categories."""
    return _SUGGESTIONS.get(_ALIASES.get(category, category), _SUGGESTIONS[RUNTIME_ERROR])


def label(category: str) -> str:
    """Human-readable name of a category ("Wrong answer", "TypeError")."""
    return _LABELS.get(category, category)
