"""What running a program against its tests produced.

The sandbox fills these, rewards and feedback texts read them. One type for assert-style tests
and for stdin/stdout pairs, so training and the server judge code the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """Result of one test, or of the whole run when it never reached the tests."""

    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"  # assert failed, or stdout differs from the expected output
    RUNTIME_ERROR = "runtime_error"
    SYNTAX_ERROR = "syntax_error"
    TIMEOUT = "timeout"
    MEMORY_EXCEEDED = "memory_exceeded"
    # The sandbox itself failed (could not fork, pipe broke, ...): never the model's fault, never
    # scored as a failure of the program.
    INFRA_ERROR = "infra_error"


@dataclass(frozen=True)
class SyntaxErrorInfo:
    message: str
    line: int | None  # 1-based line in the program that was run
    column: int | None  # 1-based column
    text: str | None = None  # the offending source line


@dataclass(frozen=True)
class TestResult:
    """One assert statement (or compound test step), or one stdin/stdout pair."""

    index: int
    test: str  # source of the assert, or the stdin given
    outcome: Outcome
    expected: str | None = None  # repr of the expected value / expected stdout
    actual: str | None = None  # repr of the actual value / actual stdout
    error_type: str | None = None  # exception class name for runtime errors
    message: str | None = None
    line: int | None = None  # line in the program under test where the error was raised
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


@dataclass(frozen=True)
class Verdict:
    """All results of one program. `tests` is empty when the program never got to its tests."""

    outcome: Outcome  # PASSED only if every test passed; otherwise the first failure's outcome
    tests: tuple[TestResult, ...] = ()
    syntax_error: SyntaxErrorInfo | None = None
    infra_error: str | None = None
    stdout: str = ""  # truncated
    stderr: str = ""  # truncated
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def passed_count(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def pass_fraction(self) -> float:
        return self.passed_count / self.total if self.tests else 0.0

    @property
    def all_passed(self) -> bool:
        return self.outcome is Outcome.PASSED and bool(self.tests)

    @property
    def is_infra_error(self) -> bool:
        return self.outcome is Outcome.INFRA_ERROR

    def failures(self) -> list[TestResult]:
        return [t for t in self.tests if not t.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        syntax = data.get("syntax_error")
        return cls(
            outcome=Outcome(data["outcome"]),
            tests=tuple(
                TestResult(**{**t, "outcome": Outcome(t["outcome"])}) for t in data.get("tests", ())
            ),
            syntax_error=SyntaxErrorInfo(**syntax) if syntax else None,
            infra_error=data.get("infra_error"),
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            duration_s=data.get("duration_s", 0.0),
            extra=dict(data.get("extra", {})),
        )
