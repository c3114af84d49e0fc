"""The one result type every analyzer returns, and its diagnostics.

Positions are relative to the completion: line 1 is the completion's first line; on that line
column 1 is the character at the cursor, on later lines column 1 is the start of the line. Both
are 1-based, like the numbers the model reads in the feedback text.
`AnalysisContext.to_document_position` maps them back to 0-based document positions (LSP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

AnalyzerKind = Literal["critical", "info", "score"]
Severity = Literal["error", "warning", "note"]

# Feedback shown to the model starts like LLMcoder's, which fine-tuned models already know.
FEEDBACK_HEADER = "The completion you provided resulted in the following errors:"


@dataclass(frozen=True)
class Diagnostic:
    line: int  # 1-based, relative to the completion
    column: int  # 1-based; on line 1 relative to the cursor column
    message: str
    severity: Severity = "error"
    code: str | None = None
    end_line: int | None = None
    end_column: int | None = None  # exclusive, same convention as `column`

    def render(self) -> str:
        """`line 2, column 5: message [code]`: the form the model reads."""
        code = f"  [{self.code}]" if self.code else ""
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"line {self.line}, column {self.column}: {prefix}{self.message}{code}"


@dataclass(frozen=True)
class AnalyzerResult:
    name: str  # canonical analyzer name (`mypy`, not `mypy_analyzer_v1`)
    kind: AnalyzerKind
    passed: bool
    score: float  # in [0, 1]; 1.0 = nothing wrong (tests: pass fraction; score: the judge's)
    message: str  # feedback for the model, concise
    diagnostics: tuple[Diagnostic, ...] = ()
    duration_s: float = 0.0
    # The analyzer itself failed (crash, timeout, missing tool): never the completion's fault, so
    # `passed` is True and the loop goes on without this analyzer's opinion.
    infra_error: bool = False
    # Not run because an earlier gate (the syntax check) failed; `passed` is False.
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def blocks(self) -> bool:
        """True when this result should reject the candidate: a failed critical check."""
        return self.kind == "critical" and not self.passed and not self.skipped

    def with_duration(self, duration_s: float) -> AnalyzerResult:
        return replace(self, duration_s=duration_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_for(n_errors: int) -> float:
    """1.0 without errors, then 1/2, 1/3, ...: fewer errors ranks higher."""
    return 1.0 / (1 + n_errors)


def passed_result(name: str, kind: AnalyzerKind, message: str, **extra: Any) -> AnalyzerResult:
    return AnalyzerResult(name, kind, passed=True, score=1.0, message=message, **extra)


def failed_result(
    name: str,
    kind: AnalyzerKind,
    diagnostics: tuple[Diagnostic, ...],
    message: str | None = None,
    **extra: Any,
) -> AnalyzerResult:
    errors = [d for d in diagnostics if d.severity == "error"]
    text = message if message is not None else feedback_text(diagnostics)
    return AnalyzerResult(
        name,
        kind,
        passed=False,
        score=score_for(len(errors)),
        message=text,
        diagnostics=diagnostics,
        **extra,
    )


def infra_result(
    name: str, kind: AnalyzerKind, what: str, duration_s: float = 0.0
) -> AnalyzerResult:
    """The analyzer could not judge; neutral score so ranking is not skewed either way."""
    return AnalyzerResult(
        name,
        kind,
        passed=True,
        score=0.5 if kind == "score" else 1.0,
        message=f"{name} analyzer unavailable: {what}",
        duration_s=duration_s,
        infra_error=True,
    )


def skipped_result(name: str, kind: AnalyzerKind, reason: str) -> AnalyzerResult:
    return AnalyzerResult(
        name, kind, passed=False, score=0.0, message=f"skipped: {reason}", skipped=True
    )


def feedback_text(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], limit: int = 10) -> str:
    """Header plus one line per diagnostic, capped so one bad candidate cannot flood the prompt."""
    lines = [FEEDBACK_HEADER, *(d.render() for d in diagnostics[:limit])]
    if len(diagnostics) > limit:
        lines.append(f"... and {len(diagnostics) - limit} more")
    return "\n".join(lines)


def combined_feedback(results: Sequence[AnalyzerResult]) -> str:
    """One feedback turn from all results: failures first; infra and skipped results left out."""
    parts = [r.message for r in results if not r.passed and not r.skipped and not r.infra_error]
    if not parts:
        return "All checks passed."
    return "\n\n".join(parts)
