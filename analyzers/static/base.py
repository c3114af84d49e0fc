"""What an analyzer is, and the thread plumbing the blocking ones share."""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import ClassVar, Protocol, runtime_checkable

from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.result import AnalyzerKind, AnalyzerResult


class AnalyzerUnavailable(RuntimeError):
    """The analyzer cannot work in this setting (bad interpreter, rejected config, ...): an
    infra result that names the cause, not a crash."""


class AnalyzerTimeout(TimeoutError):
    """The analyzer ran out of its time budget (waiting for its lock or working)."""


@runtime_checkable
class Analyzer(Protocol):
    """One check. `deadline` is a `time.monotonic()` instant; past it the result is discarded."""

    name: str
    kind: AnalyzerKind

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult: ...


# Own pool, not asyncio's default one: a timed-out mypy run keeps its thread until it finishes,
# and that must not starve unrelated `to_thread` users of the server. Eight workers: mypy and jedi
# each run one at a time behind their locks; the rest serve the syntax gate, the sandbox and
# candidates waiting (bounded by their deadline) for those locks.
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="collab-analyzer")


class BlockingAnalyzer(ABC):
    """An analyzer whose work is synchronous CPU/IO work, run in the analyzer thread pool."""

    name: ClassVar[str]
    kind: ClassVar[AnalyzerKind]

    @abstractmethod
    def check(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult: ...

    async def analyze(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_EXECUTOR, self.check, ctx, deadline)


@contextmanager
def locked(lock: threading.Lock, deadline: float, what: str) -> Iterator[None]:
    """Hold `lock`, waiting at most until `deadline`; a late caller gives up instead of queueing
    work nobody will read."""
    if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise AnalyzerTimeout(f"timed out waiting for {what} (busy with an earlier check)")
    try:
        if time.monotonic() > deadline:
            raise AnalyzerTimeout(f"time budget spent before {what} started")
        yield
    finally:
        lock.release()
