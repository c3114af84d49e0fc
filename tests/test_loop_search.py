"""The loop's search against a scripted OpenAI-compatible endpoint on 127.0.0.1 and the real
analyzers and sandbox: behaviour-first ranking, honest verdicts and stop reasons, one batched
first request, restarts from the root instead of giving up, and log-probability tie-breaks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fixtures.stub_endpoint import MODEL, StubRequest, send, stub_endpoint

from collabcoder.analyzers.static import AnalysisContext
from collabcoder.server.backends.openai_backend import OpenAIBackend
from collabcoder.server.loop import FeedbackLoop, LoopConfig

DOUBLE = ('def double(x: int) -> int:\n    """Twice x.\n\n    >>> double(2)\n    4\n'
          '    >>> double(5)\n    10\n    """\n    ')
PLAIN = "def double(x: int) -> int:\n    "
ANALYZERS = ("syntax", "behaviour")


def body(replies: list[tuple[str, float | None]]) -> bytes:
    """A chat.completion with one choice per (text, mean logprob)."""
    choices = []
    for i, (text, logprob) in enumerate(replies):
        lp = None if logprob is None else {"content": [{"token": "x", "logprob": logprob,
                                                        "bytes": None, "top_logprobs": []}]}
        choices.append({"index": i, "message": {"role": "assistant", "content": text},
                        "logprobs": lp, "finish_reason": "stop"})
    return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": choices,
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5 * len(choices),
                                 "total_tokens": 5 + 5 * len(choices)}}).encode()


class Script:
    """Answers the i-th request with the i-th list of replies (the last one repeats), and
    records each request's body."""

    def __init__(self, *turns: list[tuple[str, float | None]]) -> None:
        self.turns = turns
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: StubRequest, writer: asyncio.StreamWriter) -> None:
        self.requests.append(request.body)
        turn = self.turns[min(len(self.requests), len(self.turns)) - 1]
        await send(writer, 200, body(turn[: request.body.get("n", 1)]))


async def run(script: Script, prefix: str, **config: Any) -> Any:
    async with stub_endpoint(script) as url:
        backend = OpenAIBackend(MODEL, endpoint=url, max_retries=0, check_model=False)
        cfg = LoopConfig(analyzers=ANALYZERS, prefill=False, max_retries=0, seed=0, **config)
        try:
            return await FeedbackLoop(backend, cfg).run(AnalysisContext(prefix, ""))
        finally:
            await backend.aclose()


async def test_behaviour_ranks_first_and_a_verified_candidate_ends_the_search() -> None:
    script = Script([("return x + 2", -0.1), ("return 2 * x", -0.9), ("return x", -0.2)])
    result = await run(script, DOUBLE, first_n=3, max_iter=3)
    assert len(script.requests) == 1 and script.requests[0]["n"] == 3  # one batched call
    assert script.requests[0]["logprobs"] is True
    assert result.stop_reason == "passed" and result.verified
    assert result.completion == "return 2 * x"
    assert result.verdict == "examples passed 2/2"
    by_text = {n.completion: n for n in result.nodes}
    # x + 2 passes one example of two: it outranks x (none) although x is likelier
    assert by_text["return x + 2"].score > by_text["return x"].score
    assert by_text["return x + 2"].verdict.startswith("failed: ")
    assert result.to_dict()["verdict"] == "examples passed 2/2"


async def test_static_checks_alone_are_never_called_passed() -> None:
    script = Script([("return 1", -0.1)])
    result = await run(script, PLAIN, max_iter=3)
    assert result.stop_reason == "static_only"
    assert result.passed and not result.verified  # every static check passed, nothing more
    assert result.verdict == "static checks only"
    view = result.nodes[0]
    assert not view.verified and view.evidence == "none"


async def test_repeats_restart_from_the_root_hotter_instead_of_giving_up() -> None:
    wrong = [("return x", None)]
    script = Script(wrong, wrong, wrong, [("return x * 2", None)])
    result = await run(script, DOUBLE, max_iter=3, temperature=0.2, delta_temperature=0.3)
    temperatures = [r["temperature"] for r in script.requests]
    # first, feedback (a repeat), restart at 0.5, a repeat again, restart at 0.8 ... until it
    # passes or the iterations run out; never `no_candidates`
    assert result.stop_reason in {"passed", "max_iter"}
    assert result.iterations <= 3 and len(script.requests) == 1 + result.iterations
    assert temperatures[:3] == [0.2, 0.2, 0.5]
    assert any("restarting from the root" in line for line in result.log)
    roots = [n for n in result.nodes if n.parent is None]
    assert [n.id for n in roots] == [f"R.{i}" for i in range(len(roots))]


async def test_ties_go_to_the_likelier_candidate() -> None:
    script = Script([("return x + x", -2.0), ("return x * 2", -0.3)])
    result = await run(script, DOUBLE, first_n=2, max_iter=0)
    assert all(n.verified for n in result.nodes)
    assert result.completion == "return x * 2"


def test_prefilled_requests_stop_where_the_block_ends() -> None:
    from collabcoder.server.loop.messages import PromptParts, first_messages
    from collabcoder.server.loop.search import loop_request

    config = LoopConfig(stop=("\nEND",))
    inside = PromptParts("def f(x: int) -> int:\n    ", prefill=True)
    request = loop_request(config, inside, first_messages(inside), None, 2, 0.5)
    assert request.stop[:2] == ("\nEND", "\n```") and "\ndef " in request.stop
    top = PromptParts("x = 1\n", prefill=True)  # at column 0 a new `def` may be the answer
    assert loop_request(config, top, first_messages(top), None, 1, 0.0).stop == ("\nEND", "\n```")
    plain = PromptParts("def f(x: int) -> int:\n    ")  # no prefill: a fenced reply, any stops
    assert loop_request(config, plain, first_messages(plain), None, 1, 0.0).stop == ("\nEND",)
