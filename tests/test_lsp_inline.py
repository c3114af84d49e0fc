"""End to end over stdio: inline completions from `collab-server` against a real
OpenAI-compatible server (the `openai_server` fixture serving the tiny model).

One server for the module (starting one costs a second or two); each test opens its own
documents and works with differences of the counters.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from fixtures.lsp_helpers import (
    SERVER_COMMAND,
    SERVER_ENV_EXTRA,
    change_config,
    command,
    current_settings,
    edit,
    init_result,
    initialize,
    inline,
    inline_params,
    open_doc,
    recorder,
    stats,
    text_of,
    wait_for,
)
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

WORKSPACE: dict[str, Path] = {}


def base_options(openai_server: Any, **extra: Any) -> dict[str, Any]:
    options = {
        "backend": "openai",
        "endpointUrl": openai_server.base_url,
        "model": openai_server.model,
        "apiKey": openai_server.api_key,
        "analyzers": [],
        "debounceMs": 0,
        "maxTokens": 8,
        "latencyBudgetMs": 60_000,
    }
    options.update(extra)
    return options


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=SERVER_COMMAND, server_env={**os.environ, **SERVER_ENV_EXTRA}
    ),
)
async def client(
    lsp_client: LanguageClient, openai_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    root = tmp_path_factory.mktemp("lsp-ws")
    WORKSPACE["root"] = root
    lsp_client.set_configuration(base_options(openai_server), section="collab")
    await initialize(lsp_client, base_options(openai_server), root.as_uri())
    yield
    await lsp_client.shutdown_session()


def uri_of(name: str) -> str:
    return (WORKSPACE["root"] / name).as_uri()


def requests_served(openai_server: Any) -> int:
    return int(openai_server.stats()["server"]["requests"])


async def test_capabilities_advertise_inline_completion_and_commands(client: LanguageClient) -> None:
    caps = init_result(client).capabilities
    assert caps.inline_completion_provider is not None
    sync = caps.text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions)
    assert sync.change == types.TextDocumentSyncKind.Incremental
    assert caps.execute_command_provider is not None
    commands = set(caps.execute_command_provider.commands)
    assert {"collab.runFeedbackIterations", "collab.acceptCompletion", "collab.getStats"} <= commands


async def test_inline_completion_returns_an_item_with_the_accept_command(
    client: LanguageClient,
) -> None:
    uri = uri_of("first.py")
    open_doc(client, uri, "import os\n\n")
    items = await inline(client, uri, 2, 0)
    assert len(items) == 1
    item = items[0]
    assert isinstance(text_of(item), str) and text_of(item).strip()
    assert text_of(item) == text_of(item).rstrip()  # no trailing whitespace
    assert item.range == types.Range(start=types.Position(line=2, character=0),
                                     end=types.Position(line=2, character=0))
    assert item.command is not None and item.command.command == "collab.acceptCompletion"
    [arg] = item.command.arguments or []
    assert isinstance(arg, dict)
    item_id = arg["id"]
    before = await stats(client)
    await command(client, "collab.acceptCompletion", {"id": item_id})
    await command(client, "collab.acceptCompletion", {"id": item_id})  # counted once
    after = await stats(client)
    assert after["accepted"] == before["accepted"] + 1
    assert 0 < after["acceptanceRate"] <= 1
    assert set(after) >= {"shown", "accepted", "acceptanceRate", "lastErrors"}


async def test_status_notifications_report_backend_model_and_latency(
    client: LanguageClient, openai_server: Any
) -> None:
    rec = recorder(client)
    uri = uri_of("status.py")
    open_doc(client, uri, "value = 1\n\n")
    seen = len(rec.status)
    await inline(client, uri, 1, 0)
    await wait_for(lambda: any(s["state"] == "idle" for s in rec.status[seen:]))
    states = [s["state"] for s in rec.status[seen:]]
    assert "working" in states and states[-1] == "idle"
    last = rec.status[-1]
    assert last["backend"] == "openai" and last["model"] == openai_server.model
    assert isinstance(last["lastLatencyMs"], (int, float)) and last["lastLatencyMs"] > 0
    assert last["lastError"] is None
    assert set(last) == {"state", "backend", "model", "lastLatencyMs", "lastError", "lastVerdict",
                         "shown", "accepted"}


async def test_utf16_positions_with_emoji_and_cjk_before_the_cursor(client: LanguageClient) -> None:
    uri = uri_of("unicode.py")
    line = 'if label == "😀 你好":'
    open_doc(client, uri, f"label = 'x'\n{line}\n    pass\n")
    end = len(line.encode("utf-16-le")) // 2  # the emoji takes two UTF-16 code units
    assert end == len(line) + 1
    # At the end of the line, after the `:`, the server proposes a block. Had it split the line
    # at code points instead of UTF-16 units, the cursor would sit before the `:` with text to
    # its right: a single-line site, and nothing proposed.
    items = await inline(client, uri, 1, end)
    assert items, "no suggestion: the UTF-16 position was mapped to the wrong place"
    assert items[0].range is not None and items[0].range.start.character == end
    assert text_of(items[0]).startswith("\n")
    assert not await inline(client, uri, 1, end - 1)  # before the `:`: nothing
    # Type the suggestion's first character: the cache recognises the new prefix only if the
    # position maps to the same place in the server's copy.
    edit(client, uri, (1, end), (1, end), "\n")
    again = await inline(client, uri, 2, 0)
    assert again and text_of(again[0]) == text_of(items[0])[1:]


async def test_incremental_edits_are_applied_to_the_servers_copy(client: LanguageClient) -> None:
    uri = uri_of("incremental.py")
    open_doc(client, uri, "import os\nvalue = 1\n")
    edit(client, uri, (1, 9), (1, 9), "\nif value:")  # insert a line
    edit(client, uri, (0, 0), (0, 9), "import sys")  # replace a range
    edit(client, uri, (2, 3), (2, 8), "sys.argv")  # if value: -> if sys.argv:
    edit(client, uri, (1, 0), (1, 0), "# 😀\n")  # a line with an emoji above
    # The copy is now "import sys\n# 😀\nvalue = 1\nif sys.argv:\n": only the end of line 3
    # is a block site (after the `:`), so a suggestion there and none one column earlier
    # shows every edit landed where the client meant it.
    assert await inline(client, uri, 3, 12)
    assert not await inline(client, uri, 3, 11)
    result = await command(client, "collab.runFeedbackIterations",
                           {"uri": uri, "position": {"line": 3, "character": 12},
                            "iterations": 0, "token": "inc-1"})
    assert result["edit"]["range"]["start"] == {"line": 3, "character": 12}
    assert result["candidates"] and result["candidates"][0]["completion"].startswith("\n")


async def test_forward_typing_cache_answers_without_a_model_call(
    client: LanguageClient, openai_server: Any
) -> None:
    uri = uri_of("cache.py")
    open_doc(client, uri, "numbers = [1, 2, 3]\n\nprint(numbers)\n")
    items = await inline(client, uri, 1, 0)
    assert items, "no suggestion to type into"
    text = text_of(items[0])
    item_id = items[0].command.arguments[0]["id"]  # type: ignore[index,union-attr]
    before_requests = requests_served(openai_server)
    before = await stats(client)
    for typed in range(1, min(4, len(text))):
        edit(client, uri, (1, typed - 1), (1, typed - 1), text[typed - 1])
        again = await inline(client, uri, 1, typed)
        assert again and text_of(again[0]) == text[typed:]
        assert again[0].command.arguments[0]["id"] == item_id  # type: ignore[index,union-attr]
    after = await stats(client)
    assert after["cacheHits"] - before["cacheHits"] == min(4, len(text)) - 1
    assert after["modelCalls"] == before["modelCalls"]
    # No HTTP request at all but this /stats call (the counter counts it too).
    assert requests_served(openai_server) == before_requests + 1
    assert after["shown"] == before["shown"]  # the same suggestion, counted once


async def test_run_feedback_iterations_streams_iterations_and_returns_an_unapplied_edit(
    client: LanguageClient,
) -> None:
    rec = recorder(client)
    uri = uri_of("loop.py")
    open_doc(client, uri, "x = 1\n\n")
    change_config(client, {**current_settings(client),
                           "analyzers": ["syntax"]})
    await asyncio.sleep(0.3)
    token = "run-42"
    client.progress_reports[token] = []  # a client-made token (pytest-lsp tracks only its own)
    seen = len(rec.iterations)
    result = await command(client, "collab.runFeedbackIterations",
                           {"uri": uri, "position": {"line": 1, "character": 0},
                            "iterations": 2, "token": token}, work_done_token=token)
    change_config(client, {**current_settings(client), "analyzers": []})
    assert set(result) >= {"token", "completion", "passed", "verdict", "verified", "stopReason",
                           "timeMs", "edit", "candidates"}
    assert result["token"] == token
    assert result["stopReason"] in ("static_only", "max_iter", "time_budget")
    assert not result["verified"]  # only the syntax check ran: never verified or called passing
    assert result["verdict"] in ("static checks only",) or result["verdict"].startswith("failed")
    events = rec.iterations[seen:]
    assert len(events) == len(result["candidates"]) >= 1
    for event in events:
        assert event["token"] == token
        assert set(event) == {"token", "iteration", "nodeId", "parentId", "completion", "score",
                              "passing", "verified", "verdict", "evidence", "analyzers"}
        assert not event["verified"] and event["evidence"] == "none"
        for analyzer in event["analyzers"]:
            assert set(analyzer) == {"name", "kind", "passed", "score", "message", "infraError",
                                     "skipped"}
    assert [c["nodeId"] for c in result["candidates"]] == [e["nodeId"] for e in events]
    edit_ = result["edit"]
    assert edit_["uri"] == uri and edit_["newText"] == result["completion"]
    assert edit_["range"] == {"start": {"line": 1, "character": 0},
                              "end": {"line": 1, "character": 0}}
    # Only returned: nothing was applied, and the server's copy is unchanged.
    assert rec.apply_edits == []
    again = await command(client, "collab.runFeedbackIterations",
                          {"uri": uri, "position": {"line": 1, "character": 0},
                           "iterations": 0, "token": "run-43"})
    assert again["completion"] == result["candidates"][0]["completion"]  # same site, same text
    # $/progress on the client's work-done token: begin, reports, end.
    kinds = [type(v).__name__ for v in client.progress_reports.get(token, [])]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    # Applying a run's candidate is reported back and counted once per run.
    before = await stats(client)
    await command(client, "collab.acceptCompletion", {"run": token})
    await command(client, "collab.acceptCompletion", {"run": token})
    await command(client, "collab.acceptCompletion", {"run": "never-ran"})
    after = await stats(client)
    assert after["panelAccepted"] - before["panelAccepted"] == 1
    assert after["panelRuns"] >= 2 and after["accepted"] == before["accepted"]


async def test_did_change_configuration_applies_new_settings(
    client: LanguageClient, openai_server: Any
) -> None:
    rec = recorder(client)
    uri = uri_of("config.py")
    open_doc(client, uri, "x = 1\n\n")
    assert await inline(client, uri, 1, 0)
    settings = current_settings(client)
    change_config(client, {**settings, "inlineCompletions": {"enabled": False}})
    await asyncio.sleep(0.5)
    assert await inline(client, uri, 1, 0) == []
    # A different model name is a different backend: the status shows it.
    change_config(client, {**settings, "model": "tiny-qwen2.5-coder"})
    await wait_for(lambda: bool(rec.status) and rec.status[-1]["model"] == "tiny-qwen2.5-coder")
    change_config(client, settings)
    await wait_for(lambda: bool(rec.status) and rec.status[-1]["model"] == openai_server.model)
    assert await inline(client, uri, 1, 0)


async def test_a_20000_line_file(client: LanguageClient) -> None:
    uri = uri_of("big.py")
    body = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(10_000))
    open_doc(client, uri, body + "\n")
    assert body.count("\n") == 20_000
    start = asyncio.get_running_loop().time()
    items = await inline(client, uri, 20_000, 0)
    edit(client, uri, (20_000, 0), (20_000, 0), "result = f9999(")
    await inline(client, uri, 20_000, 15)
    edit(client, uri, (5, 0), (5, 0), "# a comment near the top\n")
    moved = await inline(client, uri, 20_001, 15)
    elapsed = asyncio.get_running_loop().time() - start
    assert elapsed < 30
    assert items  # a block site at the end of the file
    assert all("\n" not in text_of(i) for i in moved)  # inside a call: one line
    s = await stats(client)
    assert not any("big.py" in e for e in s["lastErrors"])


async def test_a_burst_of_requests_while_typing_fast(
    client: LanguageClient, openai_server: Any
) -> None:
    uri = uri_of("burst.py")
    open_doc(client, uri, "name = \n")
    settings = current_settings(client)
    change_config(client, {**settings, "debounceMs": 100})
    await asyncio.sleep(0.3)
    before = await stats(client)
    before_requests = requests_served(openai_server)
    futures = []
    word = "abcdefghijklmnopqrst"
    for i, ch in enumerate(word):
        edit(client, uri, (0, 7 + i), (0, 7 + i), ch)
        futures.append(client.text_document_inline_completion_async(
            inline_params(uri, 0, 8 + i, automatic=True)))
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*futures)
    change_config(client, settings)
    assert len(results) == len(word)  # every request answered
    after = await stats(client)
    assert after["superseded"] - before["superseded"] >= len(word) - 2
    # Superseded requests died in their debounce: at most the last one or two reached the model.
    assert after["modelCalls"] - before["modelCalls"] <= 2
    assert requests_served(openai_server) - before_requests <= 2 + 1  # + this /stats call
    assert after["errors"] == before["errors"]


async def test_cancel_request_stops_generation(client: LanguageClient, openai_server: Any) -> None:
    uri = uri_of("cancel.py")
    open_doc(client, uri, "def long():\n    \n")
    settings = current_settings(client)
    change_config(client, {**settings, "maxTokens": 4000})  # a long generation
    await asyncio.sleep(0.3)
    backend_before = openai_server.stats()["backend"]
    before = await stats(client)
    msg_id = "cancel-me-1"
    future = asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 4), msg_id=msg_id))
    await wait_for(lambda: openai_server.stats()["backend"]["active"] > 0, timeout=30)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(Exception, match="cancel"):
        await future
    # The model stopped: the HTTP stream was closed and the server cancelled generation.
    await wait_for(lambda: openai_server.stats()["backend"]["active"] == 0, timeout=10)
    backend_after = openai_server.stats()["backend"]
    assert backend_after["cancelled"] > backend_before["cancelled"]
    assert backend_after["steps"] - backend_before["steps"] < 4000
    after = await stats(client)
    assert after["cancelled"] == before["cancelled"] + 1
    change_config(client, settings)
