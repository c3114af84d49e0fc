"""Multi-agent mode: a folder with `agents.json` (one full agent, one LoRA agent, both tiny)
loaded by the server, and the composition of their replies with the training turn protocol."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fixtures.lsp_helpers import (
    command,
    inline,
    open_doc,
    recorder,
    running_server,
    stats,
    wait_for,
)
from fixtures.tiny_agents import make_agents_folder

from collabcoder.server.backends.base import Candidate, CompletionRequest
from collabcoder.server.lsp.team import AgentTeam, compose_at_cursor, enclosing_function


@pytest.fixture(scope="module")
def agents_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aux: a full copy of the tiny model; main: a LoRA adapter on it (random, non-zero)."""
    return make_agents_folder(tiny_model_dir, tmp_path_factory.mktemp("agents"), num_turns=2)


class Scripted:
    """A backend that answers from a script and records what it was asked."""

    name = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.model = "scripted"
        self.replies = replies
        self.prompts: list[str] = []

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        assert request.messages is not None
        self.prompts.append(request.messages[-1]["content"])
        return [Candidate(self.replies[min(len(self.prompts), len(self.replies)) - 1])]

    def stream(self, request: CompletionRequest) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    def load(self) -> None:
        return None


PREFIX = 'import math\n\n\ndef median(xs: list[float]) -> float:\n    """The median."""\n    '


def test_enclosing_function_and_composition_put_the_helper_before_its_use() -> None:
    where = enclosing_function(PREFIX)
    assert where is not None and where.name == "median" and where.body_indent == "    "
    assert PREFIX[where.def_offset:].startswith("def median")
    aux = "def aux(xs):\n    return sorted(xs)"
    main = ('def median(xs: list[float]) -> float:\n    """The median."""\n'
            "    s = aux(xs)\n    return s[len(s) // 2]")
    text = compose_at_cursor(PREFIX, where, aux, main)
    assert text == ("def aux(xs):\n        return sorted(xs)\n\n"
                    "    s = aux(xs)\n    return s[len(s) // 2]")
    program = PREFIX + text + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(program, "<composed>", "exec"), namespace)
    assert namespace["median"]([3.0, 1.0, 2.0]) == 2.0
    # Main does not call aux: the helper is left out.
    assert "aux" not in compose_at_cursor(PREFIX, where, aux, main.replace("aux(xs)", "sorted(xs)"))
    assert enclosing_function("x = 1\n") is None
    assert enclosing_function("def f():\n    return 1\nx = ") is None


async def test_the_team_runs_the_turn_protocol(agents_dir: Path) -> None:
    team = AgentTeam(agents_dir)
    assert team.roles == ("aux", "main") and "2 agents" in team.describe()
    aux = Scripted(["```python\ndef aux(xs):\n    return sorted(xs)\n```"])
    main = Scripted([
        "```python\ndef median(xs):\n    return xs[0]\n```",
        "```python\ndef median(xs):\n    s = aux(xs)\n    return s[len(s) // 2]\n```",
    ])
    team.backends = {"aux": aux, "main": main}
    team.loaded = True
    where = enclosing_function(PREFIX)
    assert where is not None
    turns: list[Any] = []

    async def on_turn(turn: Any) -> None:
        turns.append(turn)

    last = await team.write_function(PREFIX, where, 2, 64, on_turn)
    assert [t.turn for t in turns] == [1, 2]
    # Turn 1 prompts are the training ones; turn 2 carries the level_feedback text and the
    # agent's previous code, as in multi-turn training.
    assert "helper" in aux.prompts[0] and "`median`" in main.prompts[0]
    assert "Your previous code" in main.prompts[1] and "return xs[0]" in main.prompts[1]
    assert "aux" in main.prompts[1]
    assert "s = aux(xs)" in last.completion and last.completion.startswith("def aux(xs):")


async def test_the_server_loads_an_agents_folder(agents_dir: Path, tmp_path: Path) -> None:
    options = {"backend": "transformers", "model": str(agents_dir), "analyzers": ["syntax"],
               "maxTokens": 6, "debounceMs": 0, "latencyBudgetMs": 60_000}
    async with running_server(options, tmp_path) as client:
        rec = recorder(client)
        await wait_for(lambda: bool(rec.status) and "2 agents" in rec.status[-1]["model"])
        assert "main: lora" in rec.status[-1]["model"]
        uri = (tmp_path / "team.py").as_uri()
        open_doc(client, uri, PREFIX + "\n")
        before = await stats(client)
        items = await inline(client, uri, 5, 4, automatic=False)
        assert isinstance(items, list)
        result = await command(client, "collab.runFeedbackIterations",
                               {"uri": uri, "position": {"line": 5, "character": 4},
                                "iterations": 1, "token": "team-1"})
        after = await stats(client)
        assert [c["nodeId"] for c in result["candidates"]] == ["T1", "T2"]
        assert [e["nodeId"] for e in rec.iterations if e["token"] == "team-1"] == ["T1", "T2"]
        # Both agents answered in both turns, plus the inline request's turns.
        assert after["modelCalls"] - before["modelCalls"] >= 2 * 2
        assert after["errors"] == before["errors"], after["lastErrors"]
        await asyncio.sleep(0)
