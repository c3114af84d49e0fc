"""Optional LLM judge: a backend rates the completion 0-10. Off unless asked for by name.

Analyzers sit below the server in the dependency order, so the judge is any object with an
async `complete(request)` (the server's backends fit); `collabcoder.server` is imported only
when a judge is actually called, to build its request type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.result import AnalyzerKind, AnalyzerResult, infra_result

JUDGE_SYSTEM = (
    "You review code completions. Rate how good the completion is as a continuation of the "
    "code before the cursor: correct, consistent with the surrounding code, idiomatic. Reply "
    "with one integer from 0 (useless or wrong) to 10 (exactly what belongs here), nothing else."
)
_NUMBER = re.compile(r"\b(10|[0-9])(?:\s*/\s*10)?\b")


@runtime_checkable
class JudgeBackend(Protocol):
    """What the judge needs of a backend: `collabcoder.server.backends.base.Backend` fits."""

    async def complete(self, request: Any) -> Sequence[Any]: ...


@dataclass(frozen=True)
class JudgeRequest:
    """Fallback request when the server package is not installed: same fields the backends read."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int = 8
    n: int = 1
    temperature: float = 0.0
    prompt: str | None = None
    suffix: str | None = None
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


def judge_messages(ctx: AnalysisContext, context_lines: int = 60) -> tuple[dict[str, str], ...]:
    before = "\n".join(ctx.prefix.splitlines()[-context_lines:])
    after = "\n".join(ctx.suffix.splitlines()[:20])
    user = (f"Code before the cursor:\n```python\n{before}\n```\n"
            f"Completion:\n```python\n{ctx.completion}\n```\n"
            f"Code after the cursor:\n```python\n{after}\n```\nScore (0-10):")
    return ({"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user})


def _request(messages: tuple[dict[str, str], ...], max_tokens: int) -> Any:
    try:
        from collabcoder.server.backends.base import CompletionRequest
    except ImportError:
        return JudgeRequest(messages=messages, max_tokens=max_tokens)
    return CompletionRequest(messages=messages, max_tokens=max_tokens, temperature=0.0)


def parse_score(text: str) -> int | None:
    match = _NUMBER.search(text)
    return int(match.group(1)) if match else None


class ScoreAnalyzer:
    name = "score"
    kind: AnalyzerKind = "score"

    def __init__(self, judge: JudgeBackend | None = None, max_tokens: int = 8) -> None:
        self.judge = judge
        self.max_tokens = max_tokens

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        if self.judge is None:
            return infra_result(self.name, self.kind, "no judge backend configured")
        request = _request(judge_messages(ctx), self.max_tokens)
        candidates = await self.judge.complete(request)
        text = str(getattr(candidates[0], "text", candidates[0])) if candidates else ""
        value = parse_score(text)
        if value is None:
            return infra_result(self.name, self.kind, f"unreadable judge reply {text[:80]!r}")
        return AnalyzerResult(self.name, self.kind, passed=True, score=value / 10,
                              message=f"Reviewer score: {value}/10.",
                              details={"reply": text[:200]})
