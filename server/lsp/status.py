"""What the user sees of the server's health: the `collab/status` notification (idle, working
or error; backend, model, last latency, last error, counts), the `collab.getStats` answer, and
configuration errors (logged, and popped up once per session)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from collabcoder.server.lsp.telemetry import REDACTOR

if TYPE_CHECKING:
    from collabcoder.server.lsp.server import CollabLanguageServer

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "collab/status"
POOL_THREAD_PREFIXES = ("asyncio_", "collab-analyzer", "ThreadPoolExecutor-")


@dataclass
class Status:
    state: str = "idle"  # idle | working | error
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_verdict: str | None = None  # of the last judged suggestion or panel run
    busy: int = 0  # requests and model loads in flight
    last_logged_error: str | None = None  # one log line per distinct failure in a row
    last_sent: dict[str, Any] | None = None
    shown_config_errors: set[str] = field(default_factory=set)


def status_payload(ls: CollabLanguageServer) -> dict[str, Any]:
    return {
        "state": ls.status.state,
        "backend": ls.engine.backend_name,
        "model": ls.engine.label,
        "lastLatencyMs": ls.status.last_latency_ms,
        "lastError": ls.status.last_error,
        "lastVerdict": ls.status.last_verdict,
        "shown": ls.stats.shown,
        "accepted": ls.stats.accepted,
    }


def notify_status(ls: CollabLanguageServer) -> None:
    """Send `collab/status` when something in it changed."""
    payload = status_payload(ls)
    if payload != ls.status.last_sent:
        ls.status.last_sent = payload
        ls.protocol.notify(STATUS_NOTIFICATION, payload)


def _working(ls: CollabLanguageServer, delta: int) -> None:
    status = ls.status
    status.busy = max(0, status.busy + delta)
    if status.busy:
        status.state = "working"
    else:
        status.state = "error" if status.last_error else "idle"
    notify_status(ls)


@contextmanager
def working(ls: CollabLanguageServer) -> Iterator[None]:
    """The status says "working" while any such block runs."""
    _working(ls, 1)
    try:
        yield
    finally:
        _working(ls, -1)


def set_error(ls: CollabLanguageServer, message: str) -> None:
    ls.status.last_error = message
    if not ls.status.busy:
        ls.status.state = "error"
    notify_status(ls)


def set_verdict(ls: CollabLanguageServer, verdict: str) -> None:
    """The honest verdict of what was last judged (`tests passed 3/3`, `static checks only`)."""
    ls.status.last_verdict = verdict
    notify_status(ls)


def report_failure(ls: CollabLanguageServer, exc: BaseException) -> None:
    """A request failed: count it, log it once per distinct failure, show it in the status; a
    wrong key, endpoint or model name (401/403/404) is a setting to fix."""
    message = REDACTOR.redact(str(exc) or type(exc).__name__)
    ls.stats.error(message)
    if message != ls.status.last_logged_error:
        ls.status.last_logged_error = message
        log.error("completion failed: %s", message)
    if getattr(exc, "status", None) in (401, 403, 404):
        config_error(ls, message)
    set_error(ls, message)


def report_success(ls: CollabLanguageServer, latency_ms: float) -> None:
    ls.status.last_latency_ms = round(latency_ms, 1)
    ls.status.last_error = None
    ls.status.last_logged_error = None


def config_error(
    ls: CollabLanguageServer, message: str, kind: types.MessageType = types.MessageType.Error
) -> None:
    """Log it, and pop it up the first time it happens in this session."""
    message = REDACTOR.redact(message)
    log.warning("configuration: %s", message)
    ls.stats.last_errors.append(message)
    if message not in ls.status.shown_config_errors:
        ls.status.shown_config_errors.add(message)
        ls.window_show_message(types.ShowMessageParams(type=kind, message=f"Collab: {message}"))


def stats_payload(ls: CollabLanguageServer) -> dict[str, Any]:
    """The `collab.getStats` answer."""
    s = ls.stats
    return {
        "shown": s.shown,
        "accepted": s.accepted,
        "acceptanceRate": round(s.acceptance_rate, 4),
        "lastErrors": list(s.last_errors),
        "lastVerdict": ls.status.last_verdict,
        # Extras beyond docs/protocol.md's fields (clients may ignore them).
        "requests": s.requests,
        "modelCalls": ls.engine.model_calls,
        "cacheHits": s.cache_hits,
        "cancelled": s.cancelled,
        "panelRuns": s.panel.offered,
        "panelAccepted": s.panel.accepted,
        "superseded": s.superseded,
        "errors": s.errors,
        "timings": [t.to_wire() for t in s.timings],
        # What is alive now (the load test checks that nothing is left behind).
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        # Threads outside the bounded worker pools (asyncio's default executor, the analyzers'
        # pool): an idle pool worker is reused, so only these could be left behind.
        "otherThreads": sum(1 for t in threading.enumerate()
                            if not t.name.startswith(POOL_THREAD_PREFIXES)),
        "backend": backend_stats(ls),
    }


def backend_stats(ls: CollabLanguageServer) -> dict[str, Any]:
    """The in-process backend's own counters (llama.cpp: prompt tokens evaluated and reused
    from the KV cache), or nothing for backends that keep none."""
    completer = ls.engine.completer
    stats = getattr(completer.backend, "stats", None) if completer is not None else None
    return dict(stats()) if callable(stats) else {}
