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
# The level of behavioural evidence behind a verdict, weakest first.
EvidenceKind = Literal["none", "asserts", "examples", "tests"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("none", "asserts", "examples", "tests")
# How much one fully passing kind weighs in the ranking (`evidence_value`).
_KIND_WEIGHT: dict[str, float] = {"none": 0.0, "asserts": 1.0, "examples": 2.0, "tests": 4.0}
# `evidence_first_score`: evidence outweighs any sum of static scores (each in [0, 1]).
EVIDENCE_SCALE = 1000.0

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
class Evidence:
    """What behaviour was checked, and how it went: `tests passed 3/3`, `examples passed 2/2`,
    `failed: test_mean_empty: ZeroDivisionError`, or `static checks only` (kind `none`).

    `failures` name each failed check (`test_mean_empty: ZeroDivisionError: division by zero`);
    `parts` are the per-kind summaries when one result covers several kinds (the `behaviour`
    analyzer); then `kind` is the strongest kind that failed, or the strongest kind checked.
    """

    kind: EvidenceKind = "none"
    passed: int = 0
    total: int = 0
    failures: tuple[str, ...] = ()
    parts: tuple[Evidence, ...] = ()

    @property
    def checked(self) -> bool:
        """Some behaviour was actually run."""
        return self.kind != "none" and self.total > 0

    @property
    def ok(self) -> bool:
        return self.checked and self.passed == self.total and not self.failures

    def words(self) -> str:
        if self.failures:
            return f"failed: {self.failures[0]}"
        if not self.checked:
            return "static checks only"
        if self.passed < self.total:
            return f"failed: {self.kind} passed {self.passed}/{self.total}"
        return f"{self.kind} passed {self.passed}/{self.total}"

    @staticmethod
    def combine(parts: Sequence[Evidence]) -> Evidence:
        """One summary of several kinds: the strongest failing kind (with every failure), else
        the strongest kind checked; `parts` keep each kind's own figures."""
        run = [p for p in parts if p.checked]
        if not run:
            return Evidence()
        order = sorted(run, key=lambda p: EVIDENCE_KINDS.index(p.kind), reverse=True)
        failing = [p for p in order if not p.ok]
        head = failing[0] if failing else order[0]
        failures = tuple(f for p in failing for f in p.failures)
        return Evidence(head.kind, head.passed, head.total, failures, tuple(order))


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
    # Behaviour checked by this analyzer (tests, examples, asserts); None for static checks.
    evidence: Evidence | None = None

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


def _first_problem(result: AnalyzerResult) -> str:
    for d in result.diagnostics:
        if d.severity == "error":
            return d.message
    lines = [ln for ln in result.message.splitlines() if ln.strip() and ln != FEEDBACK_HEADER]
    return lines[0] if lines else "failed"


def verdict_words(results: Sequence[AnalyzerResult]) -> str:
    """The honest verdict in the words every surface shows: `tests passed 3/3`,
    `examples passed 2/2`, `static checks only` (nothing behavioural ran: never a pass), or
    `failed: <reason>` (a failed check, behavioural first, else the first blocking analyzer)."""
    for r in results:
        if r.evidence is not None and r.evidence.checked and not r.evidence.ok and not r.skipped:
            return r.evidence.words()
    for r in results:
        if r.blocks:
            text = _first_problem(r)
            text = text if len(text) <= 160 else text[:157] + "..."
            return f"failed: {r.name}: {text}"
    checked = [r.evidence for r in results if r.evidence is not None and r.evidence.checked]
    if not checked:
        return "static checks only"
    return max(checked, key=lambda e: EVIDENCE_KINDS.index(e.kind)).words()


def evidence_value(results: Sequence[AnalyzerResult]) -> float:
    """How much behaviour passed: per kind, its weight times its pass fraction, summed."""
    value = 0.0
    for r in results:
        ev = r.evidence
        if ev is None or r.skipped:
            continue
        for part in ev.parts or (ev,):
            if part.checked:
                value += _KIND_WEIGHT[part.kind] * part.passed / part.total
    return value


def evidence_first_score(results: Sequence[AnalyzerResult], static_score: float) -> float:
    """The loop's ranking with evidence first: `EVIDENCE_SCALE * evidence_value + static_score`.

    `static_score` is the caller's sum of analyzer scores (server/loop/search.py:score_of); a
    candidate that passes more checked behaviour always ranks above one that passes less.
    """
    return EVIDENCE_SCALE * evidence_value(results) + static_score
