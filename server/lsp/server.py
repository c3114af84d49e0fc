"""`CollabLanguageServer`: the state of one editor session and what the features do with it.

Handlers (features.py) are thin; the work is here. Every request path catches its own
failures: a backend that is down, slow or talks garbage shows up in `collab/status` and the log,
never as a crashed server.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from collabcoder.analyzers.static import warm_up
from collabcoder.server.agents.manifest import ManifestError
from collabcoder.server.backends.base import BackendError
from collabcoder.server.lsp.cache import ForwardCache
from collabcoder.server.lsp.context import Site, make_site, split_at
from collabcoder.server.lsp.engine import Engine, Environment, IterationView, Suggestion
from collabcoder.server.lsp.settings import SECTION, Settings, parse_settings
from collabcoder.server.lsp.telemetry import REDACTOR, ClientLogHandler, Stats, Timing

log = logging.getLogger(__name__)

VERSION = "0.1.0"
ACCEPT_COMMAND = "collab.acceptCompletion"
RUN_COMMAND = "collab.runFeedbackIterations"
STATS_COMMAND = "collab.getStats"
STATUS_NOTIFICATION = "collab/status"
ITERATION_NOTIFICATION = "collab/iteration"
SET_API_KEY_NOTIFICATION = "collab/setApiKey"
CONFIG_TIMEOUT_S = 5.0
SHUTDOWN_GRACE_S = 1.0

# The work-done token of the executeCommand request being handled: pygls hands command
# handlers only the arguments.
WORK_DONE_TOKEN: contextvars.ContextVar[types.ProgressToken | None] = contextvars.ContextVar(
    "work_done_token", default=None
)


class CollabProtocol(LanguageServerProtocol):
    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(
        self, params: types.ExecuteCommandParams
    ) -> Generator[Any, Any, Any]:
        WORK_DONE_TOKEN.set(params.work_done_token)
        result = yield from super().lsp_workspace__execute_command(params)
        return result


@dataclass
class Pending:
    """The inline request in flight for one document."""

    task: asyncio.Future[types.InlineCompletionList] | None = None
    superseded: bool = False


@dataclass
class DocState:
    dirty: bool = False  # changed since opened or saved: analyzers read our copy, not the disk
    pending: Pending | None = None


def _get(obj: object, key: str, default: Any = None) -> Any:
    """A field of a payload that pygls may hand over as a dict or a namedtuple."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _path_of(doc: TextDocument) -> str | None:
    """The file behind a document; None for unsaved `untitled:` buffers."""
    return doc.path if doc.uri.startswith("file:") else None


def _as_dict(obj: object) -> Any:
    """Custom-method payloads arrive as namedtuples: back to plain data."""
    if hasattr(obj, "_asdict"):
        return {k: _as_dict(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {k: _as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_as_dict(v) for v in obj]
    return obj


class CollabLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "collab-server",
            VERSION,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=CollabProtocol,
        )
        self.settings = Settings()
        self.engine = Engine()
        self.cache = ForwardCache()
        self.stats = Stats()
        self.docs: dict[str, DocState] = {}
        self.state = "idle"
        self.last_latency_ms: float | None = None
        self.last_error: str | None = None
        self.shutdown_requested = False
        self._api_key: str | None = None
        self._client_has_configuration = False
        self._pending_config: tuple[object, bool] | None = None  # (raw, from init options)
        self._shown_config_errors: set[str] = set()
        self._last_logged_error: str | None = None
        self._busy = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._last_status: dict[str, Any] | None = None
        self._warmed: set[tuple[object, ...]] = set()
        self._config_lock: asyncio.Lock | None = None
        self.log_handler = ClientLogHandler(self.window_log_message)

    # ---- lifecycle --------------------------------------------------------------------------

    def on_initialize(self, params: types.InitializeParams) -> None:
        options = params.initialization_options
        caps = params.capabilities.workspace
        self._client_has_configuration = bool(caps and caps.configuration)
        if isinstance(options, Mapping):
            key = options.get("apiKey")
            self._set_key(key if isinstance(key, str) else None)
            self._pending_config = (dict(options), True)
        else:
            self._pending_config = (None, False)

    async def on_initialized(self) -> None:
        self.log_handler.loop = asyncio.get_running_loop()
        logging.getLogger("collabcoder").addHandler(self.log_handler)
        raw, from_options = self._pending_config or (None, False)
        if not from_options and self._client_has_configuration:
            raw = await self._fetch_configuration()
        await self.apply_settings(raw)
        log.info("collab-server %s ready (pid %d)", VERSION, os.getpid())

    async def on_shutdown(self) -> None:
        """Cancel in-flight work and release the backend, quickly."""
        self.shutdown_requested = True
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        try:
            await asyncio.wait_for(self.engine.aclose(), SHUTDOWN_GRACE_S)
        except Exception:  # shutting down: nothing left to report to
            log.debug("backend close failed", exc_info=True)

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

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %s", task.exception())

    # ---- settings ---------------------------------------------------------------------------

    def _set_key(self, key: str | None) -> None:
        self._api_key = key or None
        if key:
            REDACTOR.secrets.add(key)

    async def _fetch_configuration(self) -> object:
        try:
            answer = await asyncio.wait_for(
                self.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
                ),
                CONFIG_TIMEOUT_S,
            )
        except Exception as exc:
            log.warning("workspace/configuration failed: %s", exc)
            return None
        return _as_dict(answer[0]) if answer else None

    async def on_did_change_configuration(self, params: types.DidChangeConfigurationParams) -> None:
        raw: object = None
        if self._client_has_configuration:
            raw = await self._fetch_configuration()
        if raw is None:  # push-style clients put the settings in the notification
            settings = _as_dict(params.settings)
            raw = settings.get(SECTION) if isinstance(settings, Mapping) else None
        if raw is not None:
            await self.apply_settings(raw)

    async def set_api_key(self, params: object) -> None:
        key = _get(params, "apiKey")
        self._set_key(key if isinstance(key, str) else None)
        log.info("API key %s", "updated" if self._api_key else "cleared")
        await self.apply_settings(None, keep=True)

    async def apply_settings(self, raw: object, keep: bool = False) -> None:
        """Validate and apply settings; rebuild the backend only when it changed. `keep`
        re-applies the current settings (after a key change)."""
        if self._config_lock is None:
            self._config_lock = asyncio.Lock()
        async with self._config_lock:
            errors: list[str]
            if keep:
                settings, errors = self.settings, []
            else:
                settings, errors = parse_settings(_as_dict(raw))
            if settings.python_path and not os.access(settings.python_path, os.X_OK):
                errors.append(
                    f"invalid setting '{SECTION}.pythonPath' = {settings.python_path!r}: not an "
                    "executable interpreter; the analyzers use the server's own Python"
                )
                settings = settings.model_copy(update={"python_path": ""})
            for message in errors:
                self.config_error(message, types.MessageType.Warning)
            self.settings = settings
            self.cache.clear()
            if self.engine.needs_rebuild(settings, self._api_key):
                await self._rebuild(settings)
            else:
                self.engine.settings = settings
        self.notify_status()

    async def _rebuild(self, settings: Settings) -> None:
        try:
            old = self.engine.build(settings, self._api_key)
        except (ValueError, BackendError, ManifestError, ImportError, OSError) as exc:
            self.engine.forget()
            self.engine.settings = settings
            self.config_error(f"cannot use backend '{settings.backend}' with model "
                              f"'{settings.model}': {exc}")
            self._set_error(str(exc))
            return
        if old is not None:
            self.spawn(old.aclose())
        self.last_error = None
        self.state = "idle"
        log.info("backend %s, model %s (%s prompts)", settings.backend, self.engine.label,
                 self.engine.style)
        self.spawn(self._load_backend())

    async def _load_backend(self) -> None:
        started = time.perf_counter()
        self._working(1)
        try:
            await self.engine.load()
            if self.engine.loaded:
                log.info("model ready in %.1f s", time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"cannot load model '{self.settings.model}': {exc}"
            self.config_error(message)
            self._set_error(message)
        finally:
            self._working(-1)

    def config_error(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        """Log it, and pop it up the first time it happens in this session."""
        message = REDACTOR.redact(message)
        log.warning("configuration: %s", message)
        self.stats.last_errors.append(message)
        if message not in self._shown_config_errors:
            self._shown_config_errors.add(message)
            self.window_show_message(types.ShowMessageParams(type=kind, message=f"Collab: {message}"))

    # ---- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            # An agents folder always runs in-process, whatever `backend` says.
            "backend": "transformers" if self.engine.team is not None else self.settings.backend,
            "model": self.engine.label,
            "lastLatencyMs": self.last_latency_ms,
            "lastError": self.last_error,
            "shown": self.stats.shown,
            "accepted": self.stats.accepted,
        }

    def notify_status(self) -> None:
        payload = self.status()
        if payload != self._last_status:
            self._last_status = payload
            self.protocol.notify(STATUS_NOTIFICATION, payload)

    def _working(self, delta: int) -> None:
        self._busy = max(0, self._busy + delta)
        if self._busy:
            self.state = "working"
        else:
            self.state = "error" if self.last_error else "idle"
        self.notify_status()

    def _set_error(self, message: str) -> None:
        self.last_error = message
        if not self._busy:
            self.state = "error"
        self.notify_status()

    def _failed(self, exc: BaseException) -> None:
        message = REDACTOR.redact(str(exc) or type(exc).__name__)
        self.stats.error(message)
        if message != self._last_logged_error:  # one log line per distinct failure in a row
            self._last_logged_error = message
            log.error("completion failed: %s", message)
        status = getattr(exc, "status", None)
        if status in (401, 403, 404):  # a wrong key, endpoint or model name: a setting to fix
            self.config_error(message)
        self._set_error(message)

    def _succeeded(self, latency_ms: float) -> None:
        self.last_latency_ms = round(latency_ms, 1)
        self.last_error = None
        self._last_logged_error = None

    def get_stats(self) -> dict[str, Any]:
        s = self.stats
        return {
            "shown": s.shown,
            "accepted": s.accepted,
            "acceptanceRate": round(s.acceptance_rate, 4),
            "lastErrors": list(s.last_errors),
            # Extras beyond docs/protocol.md's fields (clients may ignore them).
            "requests": s.requests,
            "modelCalls": self.engine.model_calls,
            "cacheHits": s.cache_hits,
            "cancelled": s.cancelled,
            "panelRuns": s.panel.offered,
            "panelAccepted": s.panel.accepted,
            "superseded": s.superseded,
            "errors": s.errors,
            "timings": [t.to_wire() for t in s.timings],
        }

    # ---- documents --------------------------------------------------------------------------

    def doc_opened(self, uri: str) -> None:
        self.docs[uri] = DocState()
        doc = self.workspace.text_documents.get(uri)
        if doc is not None and self._served(doc) and self.settings.analyzers:
            env = self.environment(doc)
            key = (env.workspace_root, env.python, self.settings.analyzers)
            if key not in self._warmed:  # a cold mypy build would eat the first budgets
                self._warmed.add(key)
                self.spawn(self._warm_analyzers(doc, env))

    async def _warm_analyzers(self, doc: TextDocument, env: Environment) -> None:
        site = Site(doc.uri, _path_of(doc), types.Position(line=0, character=0), doc.source, "", "multi")
        try:
            await warm_up(self.engine.analysis_context(site, env), self.settings.analyzers)
        except Exception as exc:  # the real rounds will report what is broken
            log.info("analyzer warm-up failed: %s", exc)

    def doc_changed(self, uri: str) -> None:
        self.docs.setdefault(uri, DocState()).dirty = True

    def doc_saved(self, uri: str) -> None:
        self.docs.setdefault(uri, DocState()).dirty = False

    def doc_closed(self, uri: str) -> None:
        state = self.docs.pop(uri, None)
        if state is not None and state.pending is not None and state.pending.task is not None:
            state.pending.task.cancel()
        self.cache.clear(uri)

    def environment(self, doc: TextDocument) -> Environment:
        """Workspace root, interpreter and unsaved buffers of other files for the analyzers."""
        path = Path(doc.path).resolve() if _path_of(doc) else None
        root: str | None = None
        best = -1
        for folder in self.workspace.folders.values():
            folder_path = to_fs_path(folder.uri)
            if folder_path and path is not None:
                candidate = Path(folder_path).resolve()
                if candidate in path.parents and len(candidate.parts) > best:
                    root, best = str(candidate), len(candidate.parts)
        if root is None:
            root = self.workspace.root_path
        overrides: dict[str, str] = {}
        for uri, state in self.docs.items():
            if uri == doc.uri or not state.dirty:
                continue
            other = self.workspace.text_documents.get(uri)
            if other is not None and other.path and other.path.endswith((".py", ".pyi")):
                overrides[other.path] = other.source
        return Environment(root, self.settings.python_path or None, overrides)

    # ---- inline completion ------------------------------------------------------------------

    def _items(self, site: Site, text: str, item_id: str) -> types.InlineCompletionList:
        here = types.Range(start=site.position, end=site.position)
        command = types.Command(
            title="Accept Collab suggestion", command=ACCEPT_COMMAND, arguments=[{"id": item_id}]
        )
        item = types.InlineCompletionItem(insert_text=text, range=here, command=command)
        return types.InlineCompletionList(items=[item])

    def _served(self, doc: TextDocument) -> bool:
        language = doc.language_id or ("python" if doc.uri.endswith((".py", ".pyi")) else "")
        return language in self.settings.enabled_languages

    async def inline_completion(
        self, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        started = time.perf_counter()
        uri = params.text_document.uri
        if self.shutdown_requested or not self.settings.inline_completions.enabled:
            return None
        doc = self.workspace.text_documents.get(uri)
        if doc is None or not self._served(doc):
            return None
        state = self.docs.setdefault(uri, DocState())
        previous, record = state.pending, Pending()
        state.pending = record
        if previous is not None and previous.task is not None and not previous.task.done():
            previous.superseded = True  # typing moved on: stop the older request's work
            previous.task.cancel()
        self.stats.requests += 1
        prefix, suffix = split_at(doc, params.position)
        hit = self.cache.lookup(uri, prefix, suffix)
        if hit is not None:
            self.stats.cache_hits += 1
            position = types.Position(line=params.position.line, character=params.position.character)
            site = Site(uri, _path_of(doc), position, prefix, suffix, "single")
            result = self._items(site, hit.text, hit.item_id)
            self.stats.timings.append(Timing((time.perf_counter() - started) * 1000, outcome="cached"))
            return result
        site = make_site(uri, _path_of(doc), params.position, prefix, suffix,
                         self.engine.context_tokens, self.engine.tokenizer)
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        task = self.spawn(self._suggest(site, doc, automatic, started))
        record.task = task
        try:
            return await task
        except asyncio.CancelledError:
            if record.superseded:
                self.stats.superseded += 1
                self.stats.timings.append(
                    Timing((time.perf_counter() - started) * 1000, outcome="superseded"))
                return types.InlineCompletionList(items=[])
            self.stats.cancelled += 1
            self.stats.timings.append(
                Timing((time.perf_counter() - started) * 1000, outcome="cancelled"))
            raise
        finally:
            if state.pending is record:
                state.pending = None

    async def _suggest(
        self, site: Site, doc: TextDocument, automatic: bool, started: float
    ) -> types.InlineCompletionList:
        debounce_s = self.settings.debounce_ms / 1000 if automatic else 0.0
        if debounce_s:
            await asyncio.sleep(debounce_s)
        budget_s = self.settings.latency_budget_ms / 1000 * (1 if automatic else 2)
        deadline = time.monotonic() + budget_s
        env = self.environment(doc)
        self._working(1)
        suggestion: Suggestion | None = None
        try:
            suggestion = await self.engine.suggest(site, env, invoked=not automatic,
                                                   deadline=deadline)
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError):
            suggestion = Suggestion("", finish="budget")
        except Exception as exc:
            if not isinstance(exc, BackendError):
                log.exception("inline completion failed")
            self._failed(exc)
        finally:
            total_ms = (time.perf_counter() - started) * 1000
            if suggestion is not None:
                self._succeeded(total_ms - debounce_s * 1000)
            self._working(-1)
        timing = Timing(total_ms, (suggestion.model_s * 1000) if suggestion else 0.0,
                        (suggestion.analyzers_s * 1000) if suggestion else 0.0,
                        debounce_s * 1000)
        self.stats.timings.append(timing)
        if suggestion is None:
            timing.outcome = "error"
            return types.InlineCompletionList(items=[])
        if not suggestion.text:
            timing.outcome = "hidden" if suggestion.finish == "hidden" else "empty"
            return types.InlineCompletionList(items=[])
        item_id = uuid.uuid4().hex[:16]
        self.cache.put(site.uri, site.prefix, site.suffix, suggestion.text, item_id)
        self.stats.inline.offer(item_id)
        self.notify_status()
        return self._items(site, suggestion.text, item_id)

    # ---- commands ---------------------------------------------------------------------------

    def accept(self, args: tuple[Any, ...]) -> None:
        """`{id}`: an inline suggestion was accepted; `{run}`: a status-panel run's candidate
        was applied (each counts once)."""
        item_id = _get(args[0], "id") if args else None
        run_token = _get(args[0], "run") if args else None
        if isinstance(item_id, str) and self.stats.inline.accept(item_id):
            self.notify_status()
        elif isinstance(run_token, str):
            self.stats.panel.accept(run_token)

    async def run_feedback_iterations(self, args: tuple[Any, ...]) -> dict[str, Any]:
        arg = _as_dict(args[0]) if args else None
        if not isinstance(arg, Mapping):
            raise JsonRpcInvalidParams(f"{RUN_COMMAND} takes one object argument "
                                       "{uri, position, iterations?, token}")
        uri, position, token = arg.get("uri"), arg.get("position"), arg.get("token")
        iterations = arg.get("iterations", self.settings.max_iterations)
        if not isinstance(uri, str) or not isinstance(position, Mapping):
            raise JsonRpcInvalidParams(f"{RUN_COMMAND}: 'uri' (string) and 'position' "
                                       "({line, character}) are required")
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
            raise JsonRpcInvalidParams(f"{RUN_COMMAND}: 'iterations' must be an integer >= 0")
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"{RUN_COMMAND}: {uri} is not open")
        try:
            at = types.Position(line=int(position["line"]), character=int(position["character"]))
        except (KeyError, TypeError, ValueError):
            raise JsonRpcInvalidParams(f"{RUN_COMMAND}: bad position {position!r}") from None
        prefix, suffix = split_at(doc, at)
        site = make_site(uri, _path_of(doc), at, prefix, suffix, self.engine.context_tokens,
                         self.engine.tokenizer)
        progress = WORK_DONE_TOKEN.get()  # $/progress only on a token the client made
        run = asyncio.current_task()
        if progress is not None:
            self.work_done_progress.begin(progress, types.WorkDoneProgressBegin(
                title="Collab: feedback iterations", cancellable=True,
                message=f"0/{iterations + 1} candidates", percentage=0))
            cancel = self.work_done_progress.tokens.get(progress)
            if cancel is not None and run is not None:
                loop = asyncio.get_running_loop()
                cancel.add_done_callback(
                    lambda f: loop.call_soon_threadsafe(run.cancel) if f.cancelled() else None)

        async def on_iteration(view: IterationView) -> None:
            self.protocol.notify(ITERATION_NOTIFICATION, self._iteration_payload(token, view))
            if progress is not None:
                done = view.iteration + 1
                self.work_done_progress.report(progress, types.WorkDoneProgressReport(
                    message=f"{view.node_id}: score {view.score:.2f}"
                            f"{', passing' if view.passing else ''}",
                    percentage=min(99, int(100 * done / (iterations + 1)))))

        self._working(1)
        started = time.perf_counter()
        stop_reason, completion, passed, candidates = "backend_error", "", False, []
        try:
            outcome = await self.engine.run_feedback(site, self.environment(doc), iterations,
                                                     on_iteration)
            stop_reason, completion, passed = outcome.stop_reason, outcome.completion, outcome.passed
            candidates = outcome.candidates
            if outcome.errors and not candidates:
                self._failed(BackendError(outcome.errors[-1]))
            else:
                self._succeeded((time.perf_counter() - started) * 1000)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, (BackendError, asyncio.TimeoutError, TimeoutError)):
                log.exception("feedback iterations failed")
            self._failed(exc)
        finally:
            self._working(-1)
            if progress is not None:
                self.work_done_progress.end(progress, types.WorkDoneProgressEnd(
                    message=f"{stop_reason}: {len(candidates)} candidates"))
                self.work_done_progress.tokens.pop(progress, None)
        edit = self._edit(uri, at, completion)
        if candidates and isinstance(token, str):
            self.stats.panel.offer(token)
        return {
            "token": token,
            "completion": completion,
            "passed": passed,
            "stopReason": stop_reason,
            "timeMs": round((time.perf_counter() - started) * 1000, 1),
            "edit": edit,
            "candidates": [
                {"nodeId": c.node_id, "completion": c.completion, "score": round(c.score, 4),
                 "passing": c.passing, "edit": self._edit(uri, at, c.completion)}
                for c in candidates
            ],
        }

    @staticmethod
    def _edit(uri: str, at: types.Position, text: str) -> dict[str, Any]:
        point = {"line": at.line, "character": at.character}
        return {"uri": uri, "range": {"start": point, "end": dict(point)}, "newText": text}

    @staticmethod
    def _iteration_payload(token: object, view: IterationView) -> dict[str, Any]:
        return {
            "token": token,
            "iteration": view.iteration,
            "nodeId": view.node_id,
            "parentId": view.parent_id,
            "completion": view.completion,
            "score": round(view.score, 4),
            "passing": view.passing,
            "analyzers": [
                {"name": r.name, "kind": r.kind, "passed": r.passed, "score": round(r.score, 4),
                 "message": r.message, "infraError": r.infra_error, "skipped": r.skipped}
                for r in view.results
            ],
        }
