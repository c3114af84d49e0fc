"""The one interface every model backend implements: a request in, candidates out, async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class BackendError(RuntimeError):
    """A backend failed; the message names the backend/endpoint and what went wrong."""


@dataclass(frozen=True)
class CompletionRequest:
    """Either chat `messages` or a raw `prompt` (completion endpoints, FIM prompts)."""

    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    suffix: str | None = None
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Ask for token log-probabilities (the loop breaks ties with their mean); engines that
    # compute them anyway (llama.cpp here) return them regardless.
    logprobs: bool = False

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("CompletionRequest needs exactly one of `messages` or `prompt`")
        if self.n < 1:
            raise ValueError(f"CompletionRequest.n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class Candidate:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = "stop"  # stop | length | cancelled
    extra: dict[str, object] = field(default_factory=dict)
    logprob: float | None = None  # mean log-probability of its tokens, where the engine gives it


@runtime_checkable
class Backend(Protocol):
    """Cancelling the task awaiting `complete` (or closing the `stream` iterator) stops generation."""

    name: str
    model: str

    async def complete(self, request: CompletionRequest) -> list[Candidate]: ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


async def run_cancellable(work: Callable[[threading.Event], T]) -> T:
    """Run blocking generation in a thread. Cancelling the await sets the event `work` checks
    between tokens, so an in-process model stops within a token instead of running on."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(work, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise


@dataclass
class GenerationStats:
    """Counters of an in-process backend's generations, for tests and benchmarks."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0
    steps: int = 0  # decoded tokens (one decoding step per token, whatever the batch size)
