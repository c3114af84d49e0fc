"""Local counters, timing spans and the log plumbing. Nothing leaves the editor connection:
counts go to `collab/status` and `collab.getStats`, log lines to `window/logMessage`."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from collabcoder.server.backends.keys import scrub

MAX_TRACKED_IDS = 10_000
MAX_TIMINGS = 2_000
LAST_ERRORS = 10


@dataclass
class Timing:
    """Where the time of one inline request went (milliseconds)."""

    total_ms: float
    model_ms: float = 0.0
    analyzers_ms: float = 0.0
    debounce_ms: float = 0.0
    outcome: str = "shown"  # shown | cached | empty | hidden | superseded | cancelled | error

    @property
    def overhead_ms(self) -> float:
        return max(0.0, self.total_ms - self.model_ms - self.analyzers_ms - self.debounce_ms)

    def to_wire(self) -> dict[str, Any]:
        return {
            "totalMs": round(self.total_ms, 3),
            "modelMs": round(self.model_ms, 3),
            "analyzersMs": round(self.analyzers_ms, 3),
            "debounceMs": round(self.debounce_ms, 3),
            "overheadMs": round(self.overhead_ms, 3),
            "outcome": self.outcome,
        }


@dataclass
class OnceCounter:
    """Keys offered (an inline suggestion shown, a panel run finished) and accepted, each
    counted once however often it is reported; the oldest keys are forgotten."""

    offered: int = 0
    accepted: int = 0
    _keys: OrderedDict[str, bool] = field(default_factory=OrderedDict)  # key -> accepted?

    def offer(self, key: str) -> None:
        if key in self._keys:
            return  # e.g. a suggestion continued from the cache keeps its id
        self._keys[key] = False
        self.offered += 1
        while len(self._keys) > MAX_TRACKED_IDS:
            self._keys.popitem(last=False)

    def accept(self, key: str) -> bool:
        if self._keys.get(key) is not False:
            return False  # unknown, forgotten or already counted
        self._keys[key] = True
        self.accepted += 1
        return True


@dataclass
class Stats:
    requests: int = 0
    cache_hits: int = 0
    cancelled: int = 0
    superseded: int = 0
    errors: int = 0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_ERRORS))
    timings: deque[Timing] = field(default_factory=lambda: deque(maxlen=MAX_TIMINGS))
    inline: OnceCounter = field(default_factory=OnceCounter)  # suggestion id
    panel: OnceCounter = field(default_factory=OnceCounter)  # status-panel run token

    @property
    def shown(self) -> int:
        return self.inline.offered

    @property
    def accepted(self) -> int:
        return self.inline.accepted

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_errors.append(message)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.shown if self.shown else 0.0


# ---- logging ----------------------------------------------------------------------------------

# `apiKey: 'x'`, `"apiKey": "x"`, `api_key='x'`: how a key shows up in reprs of request params.
_KEY_PATTERN = re.compile(r"""(['"]?api_?key['"]?\s*[:=]\s*)(['"])(?:(?!\2).)+\2""", re.IGNORECASE)


class RedactingFilter(logging.Filter):
    """Takes API keys out of every record: the known ones, and anything shaped like a key field
    (pygls logs the initialize params before the server has read the key out of them)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        return _KEY_PATTERN.sub(r"\1\2***\2", scrub(text, self.secrets))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


REDACTOR = RedactingFilter()

_LEVELS = (
    (logging.ERROR, types.MessageType.Error),
    (logging.WARNING, types.MessageType.Warning),
    (logging.INFO, types.MessageType.Info),
)


class ClientLogHandler(logging.Handler):
    """Forwards records to the client as `window/logMessage`, from any thread (sent on the
    event loop's thread: the protocol writer is not thread-safe)."""

    def __init__(self, send: Callable[[types.LogMessageParams], None]) -> None:
        super().__init__(logging.INFO)
        self.send = send
        self.loop: asyncio.AbstractEventLoop | None = None
        self._local = threading.local()
        self.addFilter(REDACTOR)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.loop
        if loop is None or loop.is_closed() or getattr(self._local, "busy", False):
            return
        kind = next((t for level, t in _LEVELS if record.levelno >= level), types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        self._local.busy = True  # sending may log; never recurse
        try:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self.send(params)
            else:
                loop.call_soon_threadsafe(self.send, params)
        except Exception:  # the connection is gone: the log file still has the record
            pass
        finally:
            self._local.busy = False
