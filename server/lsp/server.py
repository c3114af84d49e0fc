"""`CollabLanguageServer`: the state of one editor session, declared. What the server does is in
the handlers (handlers.py) and the helper modules they call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

from cattrs import ClassValidationError, transform_error
from cattrs.v import format_exception
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCRequestMessage

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


def _reason(exc: BaseException, type_: type[Any] | None) -> str:
    """cattrs' wording, except that a validator's own message (a range, say) is kept."""
    if isinstance(exc, ValueError) and not isinstance(exc, ClassValidationError) and str(exc):
        return str(exc)
    return format_exception(exc, type_)


class _Refused:
    """Stands for a request that was already answered with InvalidParams."""

    jsonrpc = JsonRPCProtocol.VERSION


REFUSED = _Refused()


class CollabProtocol(LanguageServerProtocol):
    """pygls' protocol, plus: command handlers can read the request's work-done token,
    `collab/setApiKey` has typed params, and a request whose params do not fit its schema gets
    an InvalidParams answer that names the field (pygls logs a traceback and answers nothing)."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        if not ("jsonrpc" in data and "id" in data and "method" in data):
            return super().structure_message(data)
        request_type = self.get_message_type(data["method"]) or JsonRPCRequestMessage
        try:
            return self._converter.structure(data, request_type)
        except Exception as exc:
            if isinstance(exc, ClassValidationError):
                reasons = transform_error(exc, path="$", format_exception=_reason)
            else:
                reasons = [str(exc) or type(exc).__name__]
            message = f"invalid params for {data['method']}: {'; '.join(reasons)}"
            log.warning("%s", message)
            self._send_response(
                data["id"],
                error=types.ResponseError(code=JsonRpcInvalidParams.CODE, message=message),
            )
            return REFUSED

    def handle_message(self, message: Any) -> None:
        if message is not REFUSED:
            super().handle_message(message)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any,
                         args: Any = None, kwargs: Any = None) -> None:
        """pygls 2.1 files the future of every notification handler and of every handler that
        a builtin feature yields to (didOpen, didChange, executeCommand) under a fresh id, and
        only a request's answer removes its entry: one future per keystroke, kept forever
        (bench/load_bench.py measured ~7 KB per request). Drop each entry when it is done."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None:
            def forget(done: Any) -> None:
                if self._request_futures.get(msg_id) is done:
                    del self._request_futures[msg_id]

            future.add_done_callback(forget)

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
