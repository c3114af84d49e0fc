"""Bad input from a client: requests whose params do not fit the schema, positions outside the
document and a configuration answer that is not an object. Each gets an answer that names what
is wrong, and the server keeps serving.

The server is the real one; the first test speaks raw JSON-RPC over its stdio (a typed client
would refuse to send such params).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from fixtures.lsp_helpers import (
    SERVER_COMMAND,
    SERVER_ENV_EXTRA,
    change_config,
    inline,
    open_doc,
    recorder,
    rpc,
    running_server,
    wait_for,
)

INVALID_PARAMS = -32602
DOC = "def f(x):\n    return x\n"


def _inline(id_: int, uri: str, position: Any, context: Any = "auto") -> dict[str, Any]:
    params: dict[str, Any] = {"textDocument": {"uri": uri}}
    if position is not None:
        params["position"] = position
    if context == "auto":
        params["context"] = {"triggerKind": 1}
    elif context is not None:
        params["context"] = context
    return {"jsonrpc": "2.0", "id": id_, "method": "textDocument/inlineCompletion",
            "params": params}


async def test_schema_invalid_and_out_of_document_requests_get_invalid_params(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *SERVER_COMMAND, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **SERVER_ENV_EXTRA},
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    reader, writer = process.stdout, process.stdin
    try:
        options = {"backend": "openai", "endpointUrl": "http://127.0.0.1:9/v1", "model": "m",
                   "debounceMs": 0}
        await rpc(reader, writer, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {},
                       "initializationOptions": options},
        })  # fmt: skip
        await rpc(reader, writer, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
        uri = (tmp_path / "a.py").as_uri()
        await rpc(reader, writer, {
            "jsonrpc": "2.0", "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                        "text": DOC}},
        })  # fmt: skip
        cases = {
            "negative line": (_inline(10, uri, {"line": -1, "character": 0}), "line"),
            "missing position": (_inline(11, uri, None), "position"),
            "string position": (_inline(12, uri, "1:4"), "position"),
            "missing context": (_inline(13, uri, {"line": 1, "character": 4}, None), "context"),
            "huge character": (_inline(14, uri, {"line": 1, "character": 2**40}), "character"),
            "line past the end": (_inline(15, uri, {"line": 9, "character": 0}), "position.line"),
        }
        for name, (request, field) in cases.items():
            reply = await asyncio.wait_for(rpc(reader, writer, request), 10)
            assert reply is not None and "error" in reply, name
            assert reply["error"]["code"] == INVALID_PARAMS, (name, reply)
            assert field in reply["error"]["message"], (name, reply["error"]["message"])
        # Still serving: a well-formed request at the end of the document gets a plain answer
        # (the endpoint is down, so no item), then a clean shutdown.
        reply = await rpc(reader, writer, _inline(20, uri, {"line": 2, "character": 0}))
        assert reply is not None and "result" in reply, reply
        reply = await rpc(reader, writer, {"jsonrpc": "2.0", "id": 21, "method": "shutdown"})
        assert reply is not None and reply["result"] is None
        await rpc(reader, writer, {"jsonrpc": "2.0", "method": "exit"})
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_configuration_answer_that_is_not_an_object_keeps_the_backend(
    openai_server: Any, tmp_path: Path
) -> None:
    options = {
        "backend": "openai", "endpointUrl": openai_server.base_url, "model": openai_server.model,
        "apiKey": openai_server.api_key, "analyzers": [], "debounceMs": 0, "maxTokens": 8,
        "latencyBudgetMs": 30_000,
    }  # fmt: skip
    async with running_server(options, tmp_path) as client:
        rec = recorder(client)
        client.set_configuration(["not", "an", "object"], section="collab")  # type: ignore[arg-type]
        change_config(client, ["not", "an", "object"])  # type: ignore[arg-type]
        await wait_for(lambda: any("must be an object" in m.message for m in client.messages),
                       timeout=10)
        await wait_for(lambda: bool(rec.status), timeout=10)
        assert rec.status[-1]["backend"] == "openai"
        uri = (tmp_path / "b.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        assert await inline(client, uri, 1, 0), "the openai backend still serves"
