"""API keys as users paste them: a trailing newline is stripped, a broken key is refused with a
message that names the problem, and no form of any key reaches a log, message, status or stats.

The server is the real one over stdio; the endpoint is the project's OpenAI-compatible server on
127.0.0.1 (the `openai_server` fixture), which checks the Bearer key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.lsp_helpers import inline, open_doc, recorder, running_server, stats, wait_for

from collabcoder.server.backends.keys import ApiKeyError, key_forms, normalize_api_key, scrub
from collabcoder.server.backends.openai_backend import OpenAIBackend


def test_a_key_is_stripped_and_a_key_with_a_line_break_inside_is_refused_without_showing_it() -> None:
    assert normalize_api_key("  sk-abc123\r\n") == "sk-abc123"
    assert normalize_api_key(" \n") is None and normalize_api_key(None) is None
    with pytest.raises(ApiKeyError) as info:
        normalize_api_key("sk-abc\n123")
    assert "U+000A" in str(info.value) and "abc" not in str(info.value)
    with pytest.raises(ApiKeyError):
        OpenAIBackend("m", "http://127.0.0.1:9/v1", api_key="sk-a\x00b")


def test_every_printed_form_of_a_key_is_scrubbed() -> None:
    key = "sk-Zz9\n"
    texts = [
        f"Illegal header value b'Bearer {key!r}'",
        "Illegal header value " + repr(f"Bearer {key}".encode()),
        json.dumps({"apiKey": key}),
        f"raw {key} and stripped {key.strip()}!",
    ]
    for text in texts:
        assert "sk-Zz9" not in scrub(text, [key]), text
    assert all(form for form in key_forms(key))


def _everything_shown(client: Any, log_file: Path, extra: list[Any]) -> str:
    shown = [m.message for m in client.log_messages + client.messages]
    return "\n".join([log_file.read_text(), *shown, *(json.dumps(x) for x in extra)])


async def test_a_pasted_key_with_a_newline_works_and_a_broken_one_is_reported_not_leaked(
    openai_server: Any, tmp_path: Path
) -> None:
    log_file = tmp_path / "server.log"
    pasted = openai_server.api_key + "\n"
    options = {
        "backend": "openai", "endpointUrl": openai_server.base_url, "model": openai_server.model,
        "apiKey": pasted, "analyzers": [], "debounceMs": 0, "maxTokens": 8,
        "latencyBudgetMs": 30_000,
    }  # fmt: skip
    async with running_server(
        options, tmp_path, ["--log-file", str(log_file), "--log-level", "DEBUG"]
    ) as client:
        rec = recorder(client)
        uri = (tmp_path / "key.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        assert await inline(client, uri, 1, 0), "the stripped key is accepted by the endpoint"

        broken = "sk-" + "q" * 10 + "\n" + "r" * 10
        client.protocol.notify("collab/setApiKey", {"apiKey": broken})
        await wait_for(lambda: bool(rec.status) and bool(rec.status[-1]["lastError"]), timeout=10)
        error = rec.status[-1]["lastError"]
        assert "invalid character" in error and "U+000A" in error
        other = (tmp_path / "other.py").as_uri()  # a fresh site: no cached answer
        open_doc(client, other, "y = 2\n\n")
        assert await inline(client, other, 1, 0), "the refused key left the working one in place"
        assert any("invalid character" in m.message for m in client.messages)
        now = await stats(client)
        everything = _everything_shown(client, log_file, [rec.status, now])
    for secret in (openai_server.api_key, "q" * 10, "r" * 10):
        assert secret not in everything
