"""Settings from the client to the engine: `initializationOptions`, `workspace/configuration`
(asked again on every `workspace/didChangeConfiguration`), the API key; the backend is rebuilt
only when what it is built from changed, and loaded in the background."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import attrs
from lsprotocol import types

from collabcoder.server.agents.manifest import ManifestError
from collabcoder.server.backends.base import BackendError
from collabcoder.server.backends.keys import ApiKeyError, normalize_api_key
from collabcoder.server.lsp.settings import SECTION, Settings, parse_settings
from collabcoder.server.lsp.status import config_error, notify_status, set_error, working
from collabcoder.server.lsp.telemetry import REDACTOR

if TYPE_CHECKING:
    from collabcoder.server.lsp.server import CollabLanguageServer

log = logging.getLogger(__name__)

SET_API_KEY_NOTIFICATION = "collab/setApiKey"
CONFIG_TIMEOUT_S = 5.0


@attrs.define
class SetApiKeyParams:
    api_key: str | None = None  # null clears the key


@attrs.define
class SetApiKeyNotification:
    """`collab/setApiKey`, typed so that pygls structures its params."""

    params: SetApiKeyParams | None = None
    method: str = SET_API_KEY_NOTIFICATION
    jsonrpc: str = "2.0"


@dataclass
class ClientConfig:
    """What the client told us about configuration, and the API key (never logged)."""

    api_key: str | None = None
    pulls_configuration: bool = False  # answers `workspace/configuration`
    options: Mapping[str, object] | None = None  # initializationOptions, until initialized
    lock: asyncio.Lock | None = None  # one settings change at a time
    key_error: str | None = None  # why the last key given was refused (never contains it)

    def set_key(self, raw: str | None) -> None:
        """Normalise and keep the key. A key that cannot be sent is refused: the current key
        stays and `key_error` says why. Every form of either is scrubbed from what is logged."""
        if raw:
            REDACTOR.secrets.add(raw)
        try:
            self.api_key, self.key_error = normalize_api_key(raw), None
        except ApiKeyError as exc:
            self.key_error = str(exc)
        if self.api_key:
            REDACTOR.secrets.add(self.api_key)


async def fetch_configuration(ls: CollabLanguageServer) -> object:
    """The client's `collab` section, or None when it does not answer in time."""
    try:
        answer = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            ),
            CONFIG_TIMEOUT_S,
        )
    except Exception as exc:
        log.warning("workspace/configuration failed: %s", exc)
        return None
    return answer[0] if answer else None


async def apply_settings(ls: CollabLanguageServer, raw: object, keep: bool = False) -> None:
    """Validate and apply settings; rebuild the backend only when it changed. `keep`
    re-applies the current settings (after a key change)."""
    config = ls.config
    if config.lock is None:
        config.lock = asyncio.Lock()
    async with config.lock:
        errors: list[str]
        if keep:
            settings, errors = ls.engine.settings, []
        elif not isinstance(raw, Mapping | None) and ls.engine.completer is not None:
            # A broken answer must not swap a working backend for the defaults.
            config_error(ls, f"the '{SECTION}' settings must be an object, got "
                             f"{type(raw).__name__}; keeping the current settings",
                         types.MessageType.Warning)
            notify_status(ls)
            return
        else:
            settings, errors = parse_settings(raw)
        if settings.python_path and not os.access(settings.python_path, os.X_OK):
            errors.append(
                f"invalid setting '{SECTION}.pythonPath' = {settings.python_path!r}: not an "
                "executable interpreter; the analyzers use the server's own Python"
            )
            settings = settings.model_copy(update={"python_path": ""})
        for message in errors:
            config_error(ls, message, types.MessageType.Warning)
        ls.documents.clear_caches()
        if ls.engine.needs_rebuild(settings, config.api_key):
            await _rebuild(ls, settings)
        else:
            ls.engine.settings = settings
    notify_status(ls)


async def _rebuild(ls: CollabLanguageServer, settings: Settings) -> None:
    try:
        old = ls.engine.build(settings, ls.config.api_key)
    except (ValueError, BackendError, ManifestError, ImportError, OSError) as exc:
        ls.engine.forget(settings)
        config_error(ls, f"cannot use backend '{settings.backend}' with model "
                         f"'{settings.model}': {exc}")
        set_error(ls, str(exc))
        return
    if old is not None:
        ls.tasks.spawn(old.aclose())
    ls.status.last_error = None
    ls.status.state = "idle"
    style = ls.engine.completer.style if ls.engine.completer is not None else "chat"
    log.info("backend %s, model %s (%s prompts)", settings.backend, ls.engine.label, style)
    ls.tasks.spawn(_load(ls))


async def _load(ls: CollabLanguageServer) -> None:
    started = time.perf_counter()
    with working(ls):
        try:
            await ls.engine.load()
            if ls.engine.loaded:
                log.info("model ready in %.1f s", time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"cannot load model '{ls.engine.settings.model}': {exc}"
            config_error(ls, message)
            set_error(ls, message)
