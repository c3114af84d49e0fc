"""The server under trouble: bad settings, a backend that is down, slow, talks garbage or
rejects the key, shutdown in the middle of a request. It never crashes; it says what is wrong
in `collab/status`, the log, and (once per configuration error) a message.

Each test runs a server of its own (what it breaks must not leak into other tests).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fixtures.lsp_helpers import (
    SERVER_COMMAND,
    change_config,
    inline,
    open_doc,
    recorder,
    rpc,
    running_server,
    stats,
    wait_for,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_endpoint(handler: Handler) -> AsyncIterator[str]:
    """An HTTP endpoint on 127.0.0.1 that misbehaves as `handler` says; yields its /v1 URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


async def _read_head(reader: asyncio.StreamReader) -> str:
    return (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    await asyncio.sleep(3600)


async def talks_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await _read_head(reader)
    if head.startswith("GET"):
        body = b'{"object": "list", "data": [{"id": "tiny", "object": "model"}]}'
        kind = b"application/json"
    else:
        body, kind = b"data: {this is not json\n\n", b"text/event-stream"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    writer.close()


def options_for(openai_server: Any, **extra: Any) -> dict[str, Any]:
    options = {
        "backend": "openai",
        "endpointUrl": openai_server.base_url,
        "model": openai_server.model,
        "apiKey": openai_server.api_key,
        "analyzers": [],
        "debounceMs": 0,
        "maxTokens": 8,
        "latencyBudgetMs": 30_000,
    }
    options.update(extra)
    return options


def errors_shown(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages]


async def test_a_bad_setting_is_shown_once_and_the_rest_applies(
    openai_server: Any, tmp_path: Path
) -> None:
    # An unknown backend falls back to the default (in-process llama.cpp) with the model
    # given, here the embedded GGUF; a negative debounce to its default; a typo gets a suggestion.
    options = {"backend": "olama", "model": "smollm2-135m-instruct", "debounceMs": -5,
               "analyzers": [], "maxTokens": 8, "modle": "x"}
    async with running_server(options, tmp_path) as client:
        rec = recorder(client)
        await wait_for(lambda: len(client.messages) >= 3, timeout=30)
        shown = errors_shown(client)
        assert any("collab.backend" in m and "'olama'" in m and "openai" in m for m in shown)
        assert any("collab.debounceMs" in m for m in shown)
        assert any("did you mean 'collab.model'" in m for m in shown)
        # The same bad settings again (a configuration change): no second popup.
        change_config(client, options)
        await asyncio.sleep(1.0)
        assert len(errors_shown(client)) == len(shown)
        # The good settings were applied: the embedded model answers in-process.
        await wait_for(lambda: bool(rec.status) and rec.status[-1]["backend"] == "llamacpp")
        uri = (tmp_path / "a.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        await inline(client, uri, 1, 0)
        s = await stats(client)
        assert s["modelCalls"] >= 1


async def test_backend_down_reports_an_error_and_recovers(
    openai_server: Any, tmp_path: Path
) -> None:
    async with running_server(
        options_for(openai_server, endpointUrl="http://127.0.0.1:9/v1"), tmp_path
    ) as client:
        rec = recorder(client)
        uri = (tmp_path / "down.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        assert await inline(client, uri, 1, 0) == []
        await wait_for(lambda: bool(rec.status) and rec.status[-1]["state"] == "error")
        assert "cannot reach" in rec.status[-1]["lastError"]
        assert any(m.type == types.MessageType.Error and "cannot reach" in m.message
                   for m in client.log_messages)
        assert await inline(client, uri, 1, 0) == []  # still serving
        s = await stats(client)
        assert s["errors"] == 2 and "cannot reach" in s["lastErrors"][-1]
        # Point it at a live endpoint: back to normal without a restart.
        change_config(client, options_for(openai_server))
        await wait_for(lambda: rec.status[-1]["lastError"] is None)
        assert await inline(client, uri, 1, 0)
        assert rec.status[-1]["state"] == "idle"


async def test_a_wrong_api_key_is_a_configuration_error_shown_once(
    openai_server: Any, tmp_path: Path
) -> None:
    secret = "sk-wrong-0123456789abcdef"
    log_file = tmp_path / "server.log"
    options = options_for(openai_server, apiKey=secret)
    async with running_server(
        options, tmp_path, ["--log-file", str(log_file), "--log-level", "DEBUG"]
    ) as client:
        rec = recorder(client)
        uri = (tmp_path / "key.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        for _ in range(3):
            assert await inline(client, uri, 1, 0) == []
        assert rec.status[-1]["state"] == "error"
        assert "rejected the API key" in rec.status[-1]["lastError"]
        popups = [m for m in errors_shown(client) if "API key" in m]
        assert len(popups) == 1
        # The right key by notification: it works, and the key never shows up anywhere.
        client.protocol.notify("collab/setApiKey", {"apiKey": openai_server.api_key})
        await wait_for(lambda: rec.status[-1]["lastError"] is None, timeout=10)
        assert await inline(client, uri, 1, 0)
    logged = log_file.read_text()
    assert "Language server initialized" in logged  # pygls logged the params, redacted
    for key in (secret, openai_server.api_key):
        assert key not in logged
        assert all(key not in m.message for m in client.log_messages + client.messages)


async def test_a_backend_that_never_answers_costs_one_latency_budget(tmp_path: Path) -> None:
    async with fake_endpoint(never_answers) as url:
        options = {"backend": "openai", "endpointUrl": url, "model": "tiny", "analyzers": [],
                   "debounceMs": 0, "latencyBudgetMs": 700}
        async with running_server(options, tmp_path) as client:
            uri = (tmp_path / "slow.py").as_uri()
            open_doc(client, uri, "x = 1\n\n")
            started = time.monotonic()
            assert await inline(client, uri, 1, 0, automatic=True) == []
            assert time.monotonic() - started < 5.0
            s = await stats(client)
            assert s["timings"][-1]["outcome"] == "empty"


async def test_a_backend_that_talks_garbage(tmp_path: Path) -> None:
    async with fake_endpoint(talks_garbage) as url:
        options = {"backend": "openai", "endpointUrl": url, "model": "tiny", "analyzers": [],
                   "debounceMs": 0}
        async with running_server(options, tmp_path) as client:
            rec = recorder(client)
            uri = (tmp_path / "garbage.py").as_uri()
            open_doc(client, uri, "x = 1\n\n")
            assert await inline(client, uri, 1, 0) == []
            await wait_for(lambda: bool(rec.status) and rec.status[-1]["state"] == "error")
            assert "garbage" in rec.status[-1]["lastError"]
            assert (await stats(client))["errors"] == 1


async def test_shutdown_in_the_middle_of_a_request_is_clean_and_quick(
    openai_server: Any, tmp_path: Path
) -> None:
    async with running_server(options_for(openai_server, maxTokens=4000), tmp_path) as client:
        uri = (tmp_path / "busy.py").as_uri()
        open_doc(client, uri, "def long():\n    \n")
        request = asyncio.ensure_future(inline(client, uri, 1, 4))
        await wait_for(lambda: openai_server.stats()["backend"]["active"] > 0, timeout=30)
        started = time.monotonic()
        await client.shutdown_session()  # shutdown, exit, wait for the process
        assert time.monotonic() - started < 5.0
        assert client._server is not None and client._server.returncode == 0
        await asyncio.wait({request}, timeout=5)
        # The generation it started was cancelled, not left running for nobody.
        await wait_for(lambda: openai_server.stats()["backend"]["active"] == 0, timeout=10)


async def test_tcp_mode(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        *SERVER_COMMAND, "--tcp", f"127.0.0.1:{port}", stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        options = {"backend": "openai", "endpointUrl": "http://127.0.0.1:9/v1", "model": "m"}
        reply = await rpc(reader, writer, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {},
                       "initializationOptions": options},
        })  # fmt: skip
        assert reply is not None and "inlineCompletionProvider" in reply["result"]["capabilities"]
        await rpc(reader, writer, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
        reply = await rpc(reader, writer, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        assert reply is not None and reply["result"] is None
        await rpc(reader, writer, {"jsonrpc": "2.0", "method": "exit"})
        assert await asyncio.wait_for(process.wait(), 10) == 0
        writer.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
