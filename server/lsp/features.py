"""Every LSP feature and command of the server, registered in one place.

Handlers only translate between the protocol and `CollabLanguageServer`; see docs/protocol.md
for the contract with the VS Code extension.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from collabcoder.server.lsp.server import (
    ACCEPT_COMMAND,
    RUN_COMMAND,
    SET_API_KEY_NOTIFICATION,
    STATS_COMMAND,
    CollabLanguageServer,
)


def create_server() -> CollabLanguageServer:
    server = CollabLanguageServer()
    register(server)
    return server


def register(server: CollabLanguageServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: CollabLanguageServer, params: types.InitializeParams) -> None:
        ls.on_initialize(params)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CollabLanguageServer, params: types.InitializedParams) -> None:
        await ls.on_initialized()

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CollabLanguageServer, params: None) -> None:
        await ls.on_shutdown()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CollabLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.doc_opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CollabLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.doc_changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: CollabLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.doc_saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CollabLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.doc_closed(params.text_document.uri)

    # Without the options object the capability is not advertised and VS Code never asks.
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CollabLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        return await ls.inline_completion(params)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: CollabLanguageServer, params: types.DidChangeConfigurationParams
    ) -> None:
        await ls.on_did_change_configuration(params)

    @server.feature(SET_API_KEY_NOTIFICATION)
    async def set_api_key(ls: CollabLanguageServer, params: Any) -> None:
        await ls.set_api_key(params)

    @server.command(RUN_COMMAND)
    async def run_feedback_iterations(ls: CollabLanguageServer, *args: Any) -> dict[str, Any]:
        return await ls.run_feedback_iterations(args)

    @server.command(ACCEPT_COMMAND)
    def accept_completion(ls: CollabLanguageServer, *args: Any) -> None:
        ls.accept(args)

    @server.command(STATS_COMMAND)
    def get_stats(ls: CollabLanguageServer, *args: Any) -> dict[str, Any]:
        return ls.get_stats()
