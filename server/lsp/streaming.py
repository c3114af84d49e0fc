"""Streaming a model's answer and stopping it as soon as it is enough: a line in single-line
mode, the end of the block, a closed code fence. Closing the stream closes the HTTP connection
(the server stops generating) or stops the in-process generation thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from collabcoder.analyzers.protocol.replies import extract_code
from collabcoder.server.backends.base import Backend, Candidate, CompletionRequest
from collabcoder.server.loop.messages import PromptStyle
from collabcoder.server.loop.search import reply_completion
from collabcoder.server.lsp.context import CursorSite
from collabcoder.server.lsp.postprocess import fit_to_cursor

YIELD_EVERY = 8


def _norm(line: str) -> str:
    return " ".join(line.split())


def reply_to_completion(style: PromptStyle, site: CursorSite, reply: str, prefilled: bool) -> str:
    """The part of a reply that goes at the cursor, cleaned up like an inline suggestion."""
    text = reply_completion(style, site.prefix, reply, prefilled)
    return fit_to_cursor(text, site.prefix, site.suffix, site.mode).text


def make_stop(style: PromptStyle, site: CursorSite, prefilled: bool) -> Callable[[str], bool]:
    """When the streamed text is enough. Checked only when a line completes."""
    cursor = _norm(site.line_before)

    def enough(text: str) -> bool:
        if style == "chat" and prefilled and "```" in text:
            return True  # the code block is closed (a prefilled reply sits inside one)
        if style == "chat" and not prefilled:
            if text.count("```") >= 2:
                return True
            if site.mode == "single" and cursor:  # the cursor's line restated in full
                complete = text[: text.rfind("\n") + 1]
                lines = extract_code(complete).split("\n")
                return any(ln.strip() and _norm(ln).startswith(cursor) for ln in lines)
            return False
        if site.mode == "single":
            return True  # a newline arrived
        complete = text[: text.rfind("\n")]
        return fit_to_cursor(complete, site.prefix, site.suffix, site.mode).truncated

    return enough


async def stream_text(
    backend: Backend,
    request: CompletionRequest,
    enough: Callable[[str], bool],
    pieces: list[str],
) -> str:
    """Collect streamed text into `pieces` until `enough`; returns why it ended.

    Yields to the event loop every `YIELD_EVERY` pieces: a fast server's pieces arrive already
    buffered, and reading them never suspends, so keystrokes and cancellations would queue
    behind the whole reply."""
    stream: AsyncIterator[str] = backend.stream(request)
    text = ""
    try:
        async for piece in stream:
            pieces.append(piece)
            text += piece
            if "\n" in piece and enough(text):
                return "early"
            if len(pieces) % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return "stop"
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()  # closes the HTTP stream / stops the generation thread


class StreamingBackend:
    """A backend whose `complete` streams with early stopping (for the feedback loop)."""

    def __init__(self, inner: Backend, enough: Callable[[str], bool]) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.enough = enough
        # The loop prefills replies only for backends that continue them.
        self.supports_prefill = bool(getattr(inner, "supports_prefill", False))
        self.model_s = 0.0
        self.calls = 0

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        if request.n != 1:  # a batch: no stream to stop early
            self.calls += 1
            return await self.inner.complete(request)
        started = time.perf_counter()
        self.calls += 1
        pieces: list[str] = []
        try:
            finish = await stream_text(self.inner, request, self.enough, pieces)
        finally:
            self.model_s += time.perf_counter() - started
        return [Candidate("".join(pieces), latency_s=time.perf_counter() - started,
                          finish_reason=finish)]

    def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        return self.inner.stream(request)

    async def aclose(self) -> None:
        return None  # the engine owns the inner backend
