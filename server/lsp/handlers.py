"""Every LSP feature and command of the server, registered in one place (`create_server`).

Each handler translates between the protocol and the helper modules (documents, inline,
feedback_run, configuration, status); docs/protocol.md is the contract with the VS Code
extension.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from collabcoder.server.lsp import configuration, status
from collabcoder.server.lsp.commands import (
    ACCEPT_COMMAND,
    RUN_COMMAND,
    STATS_COMMAND,
    AcceptArguments,
    RunArguments,
)
from collabcoder.server.lsp.configuration import SET_API_KEY_NOTIFICATION, SetApiKeyParams
from collabcoder.server.lsp.documents import editor_environment, served
from collabcoder.server.lsp.feedback_run import run_feedback
from collabcoder.server.lsp.inline import complete
from collabcoder.server.lsp.server import VERSION, CollabLanguageServer
from collabcoder.server.lsp.settings import SECTION
from collabcoder.server.lsp.status import notify_status, stats_payload

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 1.0


# ---- lifecycle --------------------------------------------------------------------------------


def initialize(ls: CollabLanguageServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    caps = params.capabilities.workspace
    ls.config.pulls_configuration = bool(caps and caps.configuration)
    if isinstance(options, Mapping):
        key = options.get("apiKey")
        ls.config.set_key(key if isinstance(key, str) else None)
        ls.config.options = dict(options)


async def initialized(ls: CollabLanguageServer, params: types.InitializedParams) -> None:
    ls.log_handler.loop = asyncio.get_running_loop()
    logging.getLogger("collabcoder").addHandler(ls.log_handler)
    raw: object = ls.config.options
    if raw is None and ls.config.pulls_configuration:
        raw = await configuration.fetch_configuration(ls)
    await configuration.apply_settings(ls, raw)
    if ls.config.key_error:  # from initializationOptions: now the client can be told
        status.config_error(ls, ls.config.key_error)
        status.set_error(ls, ls.config.key_error)
    log.info("collab-server %s ready (pid %d)", VERSION, os.getpid())


async def shutdown(ls: CollabLanguageServer, params: None) -> None:
    """Cancel in-flight work and release the backend, quickly."""
    ls.shutdown_requested = True
    await ls.tasks.cancel_all(SHUTDOWN_GRACE_S)
    try:
        await asyncio.wait_for(ls.engine.aclose(), SHUTDOWN_GRACE_S)
    except Exception:  # shutting down: nothing left to report to
        log.debug("backend close failed", exc_info=True)


# ---- settings ---------------------------------------------------------------------------------


async def did_change_configuration(
    ls: CollabLanguageServer, params: types.DidChangeConfigurationParams
) -> None:
    raw: object = None
    if ls.config.pulls_configuration:
        raw = await configuration.fetch_configuration(ls)
    if raw is None and isinstance(params.settings, Mapping):
        raw = params.settings.get(SECTION)  # push-style clients put the settings in it
    if raw is not None:
        await configuration.apply_settings(ls, raw)


async def set_api_key(ls: CollabLanguageServer, params: SetApiKeyParams | None) -> None:
    ls.config.set_key(params.api_key if params is not None else None)
    if ls.config.key_error:  # refused: the current key (and backend) stay as they are
        status.config_error(ls, ls.config.key_error)
        status.set_error(ls, ls.config.key_error)
        return
    log.info("API key %s", "updated" if ls.config.api_key else "cleared")
    await configuration.apply_settings(ls, None, keep=True)


# ---- documents --------------------------------------------------------------------------------


def did_open(ls: CollabLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.open(uri)
    doc = ls.workspace.get_text_document(uri)
    settings = ls.engine.settings
    if served(doc, settings.enabled_languages) and settings.analyzers:
        env = editor_environment(ls, doc)
        if ls.documents.first_warm_up(env, settings.analyzers):
            ls.tasks.spawn(ls.engine.warm_up(doc, env))


def did_change(ls: CollabLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.documents.changed(params.text_document.uri)


def did_save(ls: CollabLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.documents.saved(params.text_document.uri)


def did_close(ls: CollabLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.documents.close(params.text_document.uri)


# ---- inline completion ------------------------------------------------------------------------


async def inline_completion(
    ls: CollabLanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    settings = ls.engine.settings
    if ls.shutdown_requested or not settings.inline_completions.enabled:
        return None
    uri = params.text_document.uri
    document = ls.documents.get(uri)
    if document is None:
        return None
    doc = ls.workspace.get_text_document(uri)
    if not served(doc, settings.enabled_languages):
        return None
    automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
    offer = await complete(ls, document, doc, params.position, automatic)
    if offer is None:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    accept = types.Command(title="Accept Collab suggestion", command=ACCEPT_COMMAND,
                           arguments=[{"id": offer.item_id}])
    item = types.InlineCompletionItem(insert_text=offer.text, range=here, command=accept)
    return types.InlineCompletionList(items=[item])


# ---- commands ---------------------------------------------------------------------------------


async def run_feedback_iterations(ls: CollabLanguageServer, args: RunArguments) -> dict[str, Any]:
    if ls.documents.get(args.uri) is None:
        raise JsonRpcInvalidParams(f"{RUN_COMMAND}: {args.uri} is not open")
    return await run_feedback(ls, ls.workspace.get_text_document(args.uri), args)


def accept_completion(ls: CollabLanguageServer, accepted: AcceptArguments) -> None:
    """Each inline suggestion and each run counts once, however often it is reported."""
    if accepted.id is not None and ls.stats.inline.accept(accepted.id):
        notify_status(ls)
    elif accepted.run is not None:
        ls.stats.panel.accept(accepted.run)


def get_stats(ls: CollabLanguageServer) -> dict[str, Any]:
    return stats_payload(ls)


def create_server() -> CollabLanguageServer:
    server = CollabLanguageServer()
    features: list[tuple[str, Any, Any]] = [
        (types.INITIALIZE, None, initialize),
        (types.INITIALIZED, None, initialized),
        (types.SHUTDOWN, None, shutdown),
        (types.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
        (SET_API_KEY_NOTIFICATION, None, set_api_key),
        (types.TEXT_DOCUMENT_DID_OPEN, None, did_open),
        (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
        (types.TEXT_DOCUMENT_DID_SAVE, None, did_save),
        (types.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
        # Without the options object the capability is not advertised and VS Code never asks.
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(),
         inline_completion),
    ]
    for method, options, handler in features:
        server.feature(method, options)(handler)
    for name, command in ((RUN_COMMAND, run_feedback_iterations),
                          (ACCEPT_COMMAND, accept_completion), (STATS_COMMAND, get_stats)):
        server.command(name)(command)
    return server
