"""`CollabLanguageServer`: the state of one editor session, declared. What the server does is in
the handlers (handlers.py) and the helper modules they call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from collabcoder.server.lsp.commands import collab_converter
from collabcoder.server.lsp.configuration import (
    SET_API_KEY_NOTIFICATION,
    ClientConfig,
    SetApiKeyNotification,
)
from collabcoder.server.lsp.documents import Documents
from collabcoder.server.lsp.engine import Engine
from collabcoder.server.lsp.feedback_run import WORK_DONE_TOKEN
from collabcoder.server.lsp.status import Status
from collabcoder.server.lsp.telemetry import ClientLogHandler, Stats

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class CollabProtocol(LanguageServerProtocol):
    """pygls' protocol, plus: command handlers can read the request's work-done token, and
    `collab/setApiKey` has typed params."""

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(
        self, params: types.ExecuteCommandParams
    ) -> Generator[Any, Any, Any]:
        WORK_DONE_TOKEN.set(params.work_done_token)
        result = yield from super().lsp_workspace__execute_command(params)
        return result

    # pygls caches its lookup with lru_cache; ours is a plain method, as cheap.
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        if method == SET_API_KEY_NOTIFICATION:
            return SetApiKeyNotification
        return super().get_message_type(method)


class BackgroundTasks:
    """Work that outlives the handler that started it (model loads, inline suggestions the
    request awaits); cancelled together at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %s", task.exception())

    async def cancel_all(self, grace_s: float) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)


class CollabLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "collab-server",
            VERSION,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=CollabProtocol,
            converter_factory=collab_converter,
        )
        self.engine = Engine()  # the settings, the backend or team, the analyzer round
        self.documents = Documents()
        self.config = ClientConfig()
        self.status = Status()
        self.stats = Stats()
        self.tasks = BackgroundTasks()
        self.shutdown_requested = False
        self.log_handler = ClientLogHandler(self.window_log_message)

    def shutdown(self) -> None:
        # pygls waits for its stdin-reader thread here, which may block on a read forever.
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False, cancel_futures=True)
        if self._server is not None:
            self._server.close()

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls' default shows every handler error as a popup; ours go to the status and log.
        message = f"internal error: {type(error).__name__}: {error}"
        self.stats.error(message)
        log.error("%s", message)
