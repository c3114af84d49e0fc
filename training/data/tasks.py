"""The task types every trainer and the evaluator share.

`Task` is one assert-tested problem (HumanEval, CoopHumanEval); `CodeAgenticTask` is one
stdin/stdout problem of the code-agentic format.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from collabcoder.analyzers.testcases import AssertSuite, IOSuite, extract_assert_suite


class DatasetError(ValueError):
    """A dataset, split or data file that cannot be loaded; the message says which and why."""


@lru_cache(maxsize=1024)
def _assert_suite(test: str, entry_point: str) -> AssertSuite:
    # Parsing is cheap but evaluation asks once per sample; cache per (test, entry point).
    return extract_assert_suite(test, entry_point)


@dataclass(frozen=True)
class Task:
    """One HumanEval-style problem: the prompt ends where the model's completion starts."""

    task_id: str
    prompt: str
    entry_point: str
    test: str  # module source with `def check(candidate): ...`
    canonical_solution: str | None = None  # CoopHumanEval ships none

    def assert_suite(self) -> AssertSuite:
        return _assert_suite(self.test, self.entry_point)

    def to_row(self) -> dict[str, Any]:
        """The row as the hub dataset has it (no `canonical_solution` key when there is none)."""
        row: dict[str, Any] = {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "test": self.test,
        }
        if self.canonical_solution is not None:
            row["canonical_solution"] = self.canonical_solution
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(
            task_id=str(row["task_id"]),
            prompt=row["prompt"],
            entry_point=row["entry_point"],
            test=row["test"],
            canonical_solution=row.get("canonical_solution"),
        )


@dataclass(frozen=True)
class CodeAgenticTask:
    """One stdin/stdout problem: the program reads stdin and must print the expected stdout."""

    prompt: str
    question: str
    query_id: str
    io_suite: IOSuite
    remote: bool = False  # the source's flag for tests meant for a remote judge; kept, not used
