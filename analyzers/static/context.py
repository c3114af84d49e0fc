"""What the analyzers judge: the document around the cursor, the completion and the environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collabcoder.analyzers.testcases import AssertSuite

PathLike = str | os.PathLike[str]

DEFAULT_TIME_BUDGET_S = 2.0


def _abs(path: PathLike) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


@dataclass(frozen=True)
class AnalysisContext:
    """One candidate in its document. Immutable, so analyzers can share it across threads.

    `overrides` are the editor's unsaved buffers of *other* files ({path: text}); mypy and jedi
    read them instead of the files on disk. The document itself is `prefix + completion + suffix`.
    """

    prefix: str
    completion: str
    suffix: str = ""
    document_path: PathLike | None = None
    workspace_root: PathLike | None = None
    python_executable: PathLike | None = None  # the user's interpreter; default sys.executable
    overrides: Mapping[str, str] = field(default_factory=dict)
    tests: AssertSuite | None = None
    time_budget_s: float = DEFAULT_TIME_BUDGET_S  # per analyzer
    time_budgets: Mapping[str, float] = field(default_factory=dict)  # per analyzer name

    def __post_init__(self) -> None:
        # Frozen: normalise once here so every analyzer sees the same absolute paths.
        norm = {str(_abs(p)): text for p, text in self.overrides.items()}
        object.__setattr__(self, "overrides", MappingProxyType(norm))
        object.__setattr__(self, "time_budgets", MappingProxyType(dict(self.time_budgets)))

    # -- derived paths ---------------------------------------------------------------------

    @property
    def document(self) -> Path | None:
        return _abs(self.document_path) if self.document_path is not None else None

    @property
    def workspace(self) -> Path:
        """The workspace root; without one, the document's folder (or the current directory)."""
        if self.workspace_root is not None:
            return _abs(self.workspace_root)
        doc = self.document
        return doc.parent if doc is not None else Path.cwd()

    @property
    def interpreter(self) -> str:
        if self.python_executable is None:
            return sys.executable
        return os.fspath(self.python_executable)

    def budget_for(self, name: str) -> float:
        return self.time_budgets.get(name, self.time_budget_s)

    # -- the text ---------------------------------------------------------------------------

    @cached_property
    def code(self) -> str:
        """The whole document with the completion inserted."""
        return self.prefix + self.completion + self.suffix

    @cached_property
    def cursor(self) -> tuple[int, int]:
        """0-based (line, column) of the cursor, i.e. where the completion starts."""
        line = self.prefix.count("\n")
        return line, len(self.prefix) - (self.prefix.rfind("\n") + 1)

    @cached_property
    def completion_end(self) -> tuple[int, int]:
        """0-based (line, column) just past the completion's last character."""
        line, col = self.cursor
        n = self.completion.count("\n")
        if n == 0:
            return line, col + len(self.completion)
        return line + n, len(self.completion) - (self.completion.rfind("\n") + 1)

    @property
    def completion_lines(self) -> range:
        """1-based document lines that hold at least one character of the completion."""
        first = self.cursor[0] + 1
        if not self.completion:
            return range(first, first)
        end_line, end_col = self.completion_end
        last = end_line + 1 if end_col > 0 else end_line  # a trailing newline adds no line
        return range(first, last + 1)

    # -- positions ----------------------------------------------------------------------------

    def in_completion(
        self, line: int, column: int, end_line: int | None = None, end_column: int | None = None
    ) -> bool:
        """Whether a document range (1-based lines, 0-based columns) touches the completion.

        Without an end, the start must lie in the completion. A range that starts in the prefix
        part of the cursor line and reaches into the completion counts: `foo(` + `1, 2)` gets
        mypy's error on the whole call.
        """
        if not self.completion:
            return False
        start = (self.cursor[0] + 1, self.cursor[1])
        end = (self.completion_end[0] + 1, self.completion_end[1])
        lo = (line, column)
        if end_line is None or end_column is None or (end_line, end_column) < lo:
            return start <= lo < end
        hi = (end_line, end_column)
        return lo < end and hi > start

    def to_completion_position(self, line: int, column: int) -> tuple[int, int]:
        """Document (1-based line, 0-based column) -> completion-relative (1-based, 1-based).

        Positions before the cursor on its line are clamped to column 1.
        """
        rel_line = line - self.cursor[0]
        if rel_line == 1:
            return 1, max(1, column - self.cursor[1] + 1)
        return rel_line, column + 1

    def to_document_position(self, line: int, column: int) -> tuple[int, int]:
        """Completion-relative (1-based, 1-based) -> 0-based document (line, column), as in LSP."""
        doc_line = self.cursor[0] + line - 1
        if line == 1:
            return doc_line, self.cursor[1] + column - 1
        return doc_line, column - 1
