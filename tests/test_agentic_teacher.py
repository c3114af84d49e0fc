"""`agentic prepare` with a teacher model: rows without a reference `solution` get one from a
teacher, kept only when it passes the row's tests.

The teacher is our real `openai` backend talking HTTP to a scripted OpenAI-compatible endpoint
on 127.0.0.1 (`fixtures/stub_endpoint.py`); the scripted part is only what the model would have
written. Every program runs in the real sandbox.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fixtures.stub_endpoint import MODEL, Reply, StubRequest, send, stub_endpoint
from typer.testing import CliRunner

from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.server.backends.factory import make_backend
from collabcoder.training.agentic.convert import load_converted
from collabcoder.training.agentic.prepare import (
    PrepareOptions,
    load_conversations,
    prepare,
    read_source,
)
from collabcoder.training.agentic.teacher import teacher_messages
from collabcoder.training.cli import app
from collabcoder.training.data.code_agentic import parse_code_agentic_row


@contextmanager
def serving(reply: Reply) -> Iterator[str]:
    """The stub endpoint on its own event loop in a thread: `prepare` runs its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = stub_endpoint(reply)
    url = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _choices(texts: list[str]) -> bytes:
    """A chat.completion body with one choice per text (what a server sends for `n`)."""
    return json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(texts), "total_tokens": 1},
    }).encode()  # fmt: skip


def _fenced(code: str) -> str:
    return f"Here is the program:\n```python\n{code}```\nIt reads stdin."


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    """Three HumanEval rows without their reference solutions (kept aside for the teacher)."""
    return [dict(r) for r in load_converted("humaneval").rows[:3]]


@pytest.fixture(scope="module")
def script(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the teacher writes for each row (by entry point), one text per sample."""
    right = rows[0]["solution"]
    return {
        # sample 0 passes some cases only, sample 1 is right: the first passing sample wins
        "has_close_elements": [_fenced("print(repr(False))\n"), _fenced(right)],
        # both samples wrong: the row is skipped, with why
        "separate_paren_groups": [_fenced("print(repr([]))\n")] * 2,
        # no program at all
        "truncate_number": ["I am sorry, I cannot help with that."] * 2,
    }


@pytest.fixture(scope="module")
def data_file(rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "tasks.jsonl"
    bare = [{k: v for k, v in r.items() if k != "solution"} for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in bare))
    return path


def _teacher(script: dict[str, list[str]], seen: list[dict[str, Any]]) -> Reply:
    async def reply(request: StubRequest, writer: asyncio.StreamWriter) -> None:
        seen.append(request.body)
        user = request.body["messages"][-1]["content"]
        texts = next(t for name, t in script.items() if f"`{name}`" in user)
        await send(writer, 200, _choices(texts[: int(request.body.get("n", 1))]))

    return reply


def _check_skips(skipped: list[str], where: str) -> None:
    assert len(skipped) == 2, skipped
    wrong, unparsable = skipped
    assert wrong.startswith(f"{where}, line 2: no teacher solution passed its tests (2 sampled")
    assert "sample 1: 0/4 cases passed, first failure case 0 (wrong_output)" in wrong
    assert unparsable.startswith(f"{where}, line 3: no teacher solution passed its tests")
    assert "sample 1: no code in the reply" in unparsable


def test_teacher_solutions_are_kept_only_when_they_pass(
    rows: list[dict[str, Any]], script: dict[str, list[str]], data_file: Path
) -> None:
    seen: list[dict[str, Any]] = []
    source = read_source(data_file)
    assert all(r.solution is None for r in source)
    with serving(_teacher(script, seen)) as url, Sandbox(workers=2) as sandbox:
        options = PrepareOptions(
            teacher=make_backend("openai", MODEL, endpoint=url),
            teacher_samples=2,
            conversations_per_row=2,
            clean_fraction=0.0,
        )
        made, report = prepare(source, options, sandbox)

    # One request per row (sent concurrently), each the teacher prompt of its row, n = 2.
    assert len(seen) == 3 and all(body["n"] == 2 for body in seen)
    asked = sorted(json.dumps(body["messages"]) for body in seen)
    assert asked == sorted(json.dumps(teacher_messages(src.task)) for src in source)

    assert report.rows_in == 3 and report.conversations == len(made) == 2
    assert report.by_solution_source == {"teacher:openai/tiny": 2}
    for row in made:
        # sample 1's program (as extracted from its fence), not sample 0's
        assert row["solution"] == rows[0]["solution"].rstrip("\n")
        assert row["provenance"] == {
            "source_file": str(data_file),
            "source_row": "line 1",
            "query_id": rows[0]["query_id"],
            "bug_kind": row["bug_kind"],
            "solution_source": "teacher:openai/tiny",
        }
        assert row["bug_kind"] is not None  # clean_fraction 0: every conversation debugs
        assert parse_code_agentic_row(row).query_id == rows[0]["query_id"]
        tool_turns = [m for m in row["messages"] if m["role"] == "tool"]
        assert "FAILED" in tool_turns[0]["content"] and "PASSED" in tool_turns[-1]["content"]
    _check_skips(report.skipped, str(data_file))


def test_prepare_cli_with_a_teacher(
    rows: list[dict[str, Any]], script: dict[str, list[str]], data_file: Path, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    out, report_path = tmp_path / "conv.parquet", tmp_path / "report.json"
    with serving(_teacher(script, seen)) as url:
        result = CliRunner().invoke(app, [
            "agentic", "prepare", str(data_file), "--out", str(out),
            "--teacher-backend", "openai", "--teacher-model", MODEL, "--teacher-endpoint", url,
            "--teacher-samples", "2", "--report", str(report_path),
        ])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())  # rich wraps long lines
    assert "solutions: {'teacher:openai/tiny': 1}" in shown
    assert "line 3: no teacher solution passed its tests" in shown
    made = load_conversations(out)
    assert len(made) == 1 and made[0]["solution"] == rows[0]["solution"].rstrip("\n")
    assert made[0]["provenance"]["solution_source"] == "teacher:openai/tiny"
    report = json.loads(report_path.read_text())
    assert report["by_solution_source"] == {"teacher:openai/tiny": 1}
    _check_skips(report["skipped"], str(data_file))


def test_prepare_cli_names_an_unreachable_teacher(data_file: Path, tmp_path: Path) -> None:
    """A teacher that cannot be reached stops the run with the endpoint's error (no skips)."""
    with serving(_teacher({}, [])) as url:
        dead = url  # the port is closed once the block ends
    result = CliRunner().invoke(app, [
        "agentic", "prepare", str(data_file), "--out", str(tmp_path / "c.jsonl"),
        "--teacher-backend", "openai", "--teacher-model", MODEL, "--teacher-endpoint", dead,
    ])  # fmt: skip
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())
    # The rows are asked concurrently: whichever fails first is named.
    assert re.search(r"tasks\.jsonl, line \d: the teacher \(openai, model 'tiny'\) failed", shown)
    assert f"{dead}/models: connection refused" in shown
    assert not (tmp_path / "c.jsonl").exists()
