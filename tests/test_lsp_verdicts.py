"""Honest verdicts end to end: the real server over stdio with its default analyzers, a scripted
model on 127.0.0.1, and a real workspace (a pytest file on disk, an unsaved buffer that changes
it, doctests, a `__main__` block). What the panel gets names the evidence behind each
candidate; static checks alone are never verified."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fixtures.lsp_helpers import (
    command,
    edit,
    open_doc,
    recorder,
    running_server,
    stats,
)
from fixtures.stub_endpoint import MODEL, StubRequest, send, stream_text, stub_endpoint

from collabcoder.analyzers.protocol.prompts import CURSOR

MODULE = '''def mean(xs: list[float]) -> float:
    {mean}

def double(x: int) -> int:
    """Twice x.

    >>> double(2)
    4
    >>> double(-1)
    -2
    """
    {double}

def greet(name: str) -> str:
    {greet}

def triple(x: int) -> int:
    {triple}


if __name__ == "__main__":
    assert triple(2) == 6
'''
BODIES = {  # the function the request is about -> the model's (correct) answer
    "mean": "return sum(xs) / len(xs)",
    "double": "return x * 2",
    "greet": "return 'Hello, ' + name",
    "triple": "return x * 3",
}
TESTS_ON_DISK = "from mathx import mean\n\n\ndef test_mean() -> None:\n" \
                "    assert mean([1.0, 3.0]) == 2.0\n"
TESTS_UNSAVED = TESTS_ON_DISK + "\n\ndef test_mean_one() -> None:\n    assert mean([5.0]) == 5.0\n"


def reply_for(body: dict[str, Any]) -> str:
    """The fenced function around the cursor of the request's code message."""
    prompt = next(m["content"] for m in body["messages"]
                  if m["role"] == "user" and CURSOR in m["content"])
    cursor = prompt.rfind("def ", 0, prompt.index(CURSOR))
    name = prompt[cursor + 4:].split("(", 1)[0]
    assert name in BODIES, (name, prompt)
    head = next(ln for ln in MODULE.splitlines() if ln.startswith(f"def {name}("))
    if name == "double":  # the docstring stays: the reply restates the function whole
        head = MODULE[MODULE.index(head):MODULE.index("{double}")].rstrip()
    return f"```python\n{head}\n    {BODIES[name]}\n```"


async def model(request: StubRequest, writer: asyncio.StreamWriter) -> None:
    text = reply_for(request.body)
    if request.body.get("stream"):
        await stream_text(writer, [text])
        return
    n = int(request.body.get("n", 1))
    choices = [{"index": i, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"} for i in range(n)]
    await send(writer, 200, json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": MODEL, "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}}).encode())


def module_without(name: str) -> str:
    """The module with every body written but `name`'s: the user is completing that one."""
    return MODULE.format(**{n: "" if n == name else body for n, body in BODIES.items()})


def body_line(name: str) -> int:
    return MODULE[: MODULE.index("{" + name + "}")].count("\n")


async def test_the_panel_names_the_evidence_behind_each_verdict(tmp_path: Path) -> None:
    (tmp_path / "mathx.py").write_text(module_without("mean"))
    (tmp_path / "test_mathx.py").write_text(TESTS_ON_DISK)
    async with stub_endpoint(model) as url, running_server(
        {"backend": "openai", "endpointUrl": url, "model": MODEL, "debounceMs": 0}, tmp_path
    ) as client:
        rec = recorder(client)
        # The unsaved buffer of the test file has a second test: it is the one that runs.
        test_uri = (tmp_path / "test_mathx.py").as_uri()
        open_doc(client, test_uri, TESTS_ON_DISK)
        end = (TESTS_ON_DISK.count("\n"), 0)
        edit(client, test_uri, end, end, TESTS_UNSAVED[len(TESTS_ON_DISK):])

        async def run(name: str) -> dict[str, Any]:
            path = tmp_path / ("mathx.py" if name == "mean" else f"{name}_site.py")
            open_doc(client, path.as_uri(), module_without(name))
            result: dict[str, Any] = await command(
                client, "collab.runFeedbackIterations",
                {"uri": path.as_uri(), "position": {"line": body_line(name), "character": 4},
                 "iterations": 1, "token": f"t-{name}"})
            return result

        tests = await run("mean")
        assert tests["verdict"] == "tests passed 2/2" and tests["verified"], tests
        assert tests["stopReason"] == "passed"
        assert tests["completion"].strip() == BODIES["mean"]

        examples = await run("double")
        assert examples["verdict"] == "examples passed 2/2" and examples["verified"], examples

        asserts = await run("triple")
        assert asserts["verdict"] == "asserts passed 1/1" and asserts["verified"], asserts

        static = await run("greet")
        assert static["verdict"] == "static checks only" and not static["verified"], static
        assert static["stopReason"] == "static_only"
        assert all(not c["verified"] and c["evidence"] == "none" for c in static["candidates"])

        events = [e for e in rec.iterations if e["token"] == "t-mean"]
        assert events and all(e["evidence"] == "tests" for e in events)
        behaviour = next(a for a in events[0]["analyzers"] if a["name"] == "behaviour")
        assert behaviour["passed"]
        assert (await stats(client))["lastVerdict"] == "static checks only"


async def test_a_wrong_candidate_fails_with_the_test_that_caught_it(tmp_path: Path) -> None:
    (tmp_path / "mathx.py").write_text(module_without("mean"))
    (tmp_path / "test_mathx.py").write_text(TESTS_ON_DISK)
    BODIES_WRONG = {**BODIES, "mean": "return 0.0"}

    async def wrong(request: StubRequest, writer: asyncio.StreamWriter) -> None:
        text = reply_for(request.body).replace(BODIES["mean"], BODIES_WRONG["mean"])
        await stream_text(writer, [text]) if request.body.get("stream") else await send(
            writer, 200, json.dumps({"id": "c", "object": "chat.completion", "created": 0,
                                     "model": MODEL, "choices": [
                                         {"index": 0, "finish_reason": "stop", "message": {
                                             "role": "assistant", "content": text}}]}).encode())

    async with stub_endpoint(wrong) as url, running_server(
        {"backend": "openai", "endpointUrl": url, "model": MODEL, "debounceMs": 0}, tmp_path
    ) as client:
        uri = (tmp_path / "mathx.py").as_uri()
        open_doc(client, uri, module_without("mean"))
        result = await command(client, "collab.runFeedbackIterations",
                               {"uri": uri, "position": {"line": 1, "character": 4},
                                "iterations": 1, "token": "t"})
    assert not result["verified"] and result["stopReason"] != "passed"
    assert result["verdict"].startswith("failed: test_mean"), result["verdict"]
