"""pygls 2.1 keeps the future of every notification handler (and of every handler a builtin
feature yields to) in `_request_futures` forever: one per keystroke. bench/load_bench.py found
it as steady memory growth (~7 KB per inline request). The protocol now drops each entry when its
future is done. In-process: the server object is fed messages directly, since the map it checks
is not visible over the wire."""

from __future__ import annotations

import asyncio
from typing import Any

from collabcoder.server.lsp.handlers import create_server


class Sink:
    """The protocol's writer: answers are collected and ignored."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def close(self) -> None:
        return None


async def test_notification_handlers_leave_no_futures_behind() -> None:
    protocol = create_server().protocol
    protocol.set_writer(Sink())

    def send(message: dict[str, Any]) -> None:
        protocol.handle_message(protocol.structure_message({"jsonrpc": "2.0", **message}))

    send({"id": 1, "method": "initialize", "params": {"capabilities": {}}})
    uri = "file:///tmp/typing.py"
    send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
    for version in range(2, 202):  # 200 keystrokes
        send({"method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 0},
                                          "end": {"line": 0, "character": 0}}, "text": "#"}]}})
    await asyncio.sleep(0.1)  # the handlers' futures complete
    assert protocol._request_futures == {}
