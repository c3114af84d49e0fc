"""Optional LLM scorer: a reviewer model rates the completion 0-10. Off unless asked for by name.

Analyzers sit below the server in the dependency order, so the reviewer is any object with an
async `complete(request)` (the server's backends fit), together with the request type it takes:
`Reviewer(backend, CompletionRequest)`. The prompt is `protocol.prompts.review_messages`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from collabcoder.analyzers.protocol.prompts import Messages, review_messages
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.result import AnalyzerKind, AnalyzerResult, infra_result

_NUMBER = re.compile(r"\b(10|[0-9])(?:\s*/\s*10)?\b")


@runtime_checkable
class ReviewerBackend(Protocol):
    """What the scorer needs of a backend: `collabcoder.server.backends.base.Backend` fits."""

    async def complete(self, request: Any) -> Sequence[Any]: ...


@dataclass(frozen=True)
class ReviewRequest:
    """The request sent when the caller names no request type: the fields the backends read."""

    messages: Messages
    max_tokens: int = 8
    n: int = 1
    temperature: float = 0.0
    prompt: str | None = None
    suffix: str | None = None
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


# (messages=..., max_tokens=..., temperature=...) -> the backend's request
RequestFactory = Callable[..., Any]


@dataclass(frozen=True)
class Reviewer:
    """The reviewer model: its backend and the request type that backend takes."""

    backend: ReviewerBackend
    request_type: RequestFactory = ReviewRequest


def parse_score(text: str) -> int | None:
    match = _NUMBER.search(text)
    return int(match.group(1)) if match else None


class ScoreAnalyzer:
    name = "score"
    kind: AnalyzerKind = "score"

    def __init__(self, reviewer: Reviewer | None = None, max_tokens: int = 8) -> None:
        self.reviewer = reviewer
        self.max_tokens = max_tokens

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        if self.reviewer is None:
            return infra_result(self.name, self.kind, "no judge (reviewer model) configured")
        messages = review_messages(ctx.prefix, ctx.completion, ctx.suffix)
        request = self.reviewer.request_type(
            messages=messages, max_tokens=self.max_tokens, temperature=0.0
        )
        candidates = await self.reviewer.backend.complete(request)
        text = str(getattr(candidates[0], "text", candidates[0])) if candidates else ""
        value = parse_score(text)
        if value is None:
            return infra_result(self.name, self.kind, f"unreadable reviewer reply {text[:80]!r}")
        return AnalyzerResult(self.name, self.kind, passed=True, score=value / 10,
                              message=f"Reviewer score: {value}/10.",
                              details={"reply": text[:200]})
