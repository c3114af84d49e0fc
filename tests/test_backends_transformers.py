"""TransformersBackend in process: n > 1, stop sequences, streaming and cancellation on the tiny
model, plus one slow test on the real embedded model."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from collabcoder.server.backends import CompletionRequest, make_backend
from collabcoder.server.backends.transformers_backend import (
    StopTrimmer,
    TransformersBackend,
    generation_stats,
    truncate_at_stop,
)

PROMPT = "def add(a, b):\n"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(str(tiny_model_dir), dtype="float32")
    backend.load()
    return backend


async def wait_idle(timeout_s: float = 30.0) -> None:
    """Until no generate() runs (the model really stopped, not just its reader); the tests
    count the tokens it made, not seconds, which a loaded machine stretches."""
    start = time.monotonic()
    while generation_stats()["active"] and time.monotonic() - start < timeout_s:
        await asyncio.sleep(0.01)
    assert not generation_stats()["active"], f"generate() still runs after {timeout_s} s"


def test_stop_helpers() -> None:
    assert truncate_at_stop("a = 1\n\nb = 2", ["\n\n", "b"]) == ("a = 1", True)
    assert truncate_at_stop("abc", ["x"]) == ("abc", False)
    trimmer = StopTrimmer(["\n\n", "END"])
    # "E", "EN" and a lone "\n" could start a stop sequence: held back until resolved.
    assert [trimmer.feed(p) for p in ("x = 1", "\n", "y E", "N", "D tail")] == [
        "x = 1",
        "",
        "\ny ",
        "",
        "",
    ]
    assert trimmer.stopped and trimmer.flush() == ""
    trimmer = StopTrimmer(["END"])
    assert trimmer.feed("the E") == "the " and trimmer.flush() == "E"


async def test_n_candidates_sampled_and_greedy(tiny: TransformersBackend) -> None:
    sampled = await tiny.complete(
        CompletionRequest(prompt=PROMPT, n=3, temperature=1.0, seed=0, max_tokens=12)
    )
    assert len(sampled) == 3 and len({c.text for c in sampled}) == 3
    assert all(c.prompt_tokens > 0 and c.latency_s > 0 for c in sampled)
    again = await tiny.complete(
        CompletionRequest(prompt=PROMPT, n=3, temperature=1.0, seed=0, max_tokens=12)
    )
    assert [c.text for c in again] == [c.text for c in sampled]  # a seed pins the samples
    greedy = await tiny.complete(CompletionRequest(prompt=PROMPT, n=2, max_tokens=6))
    assert len(greedy) == 2 and greedy[0] == greedy[1]
    assert greedy[0].completion_tokens == 6 and greedy[0].finish_reason == "length"


async def test_chat_messages_use_the_chat_template(tiny: TransformersBackend) -> None:
    request = CompletionRequest(messages=({"role": "user", "content": "hi"},), max_tokens=3)
    assert tiny.render_prompt(request) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    [candidate] = await tiny.complete(request)
    assert candidate.completion_tokens == 3


async def test_stop_sequences_in_complete_and_stream(tiny: TransformersBackend) -> None:
    [full] = await tiny.complete(
        CompletionRequest(prompt=PROMPT, temperature=1.0, seed=5, max_tokens=40)
    )
    stop = re.findall(r"[A-Za-z]{3}", full.text[3:])[0]
    cut = full.text.index(stop)
    request = CompletionRequest(prompt=PROMPT, temperature=1.0, seed=5, max_tokens=40, stop=(stop,))
    [stopped] = await tiny.complete(request)
    assert stopped.text == full.text[:cut] and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < full.completion_tokens
    assert "".join([p async for p in tiny.stream(request)]) == full.text[:cut]


async def test_stream_yields_pieces_that_add_up_to_the_completion(
    tiny: TransformersBackend,
) -> None:
    request = CompletionRequest(prompt=PROMPT, temperature=1.0, seed=11, max_tokens=30)
    pieces = [p async for p in tiny.stream(request)]
    [whole] = await tiny.complete(request)
    assert len(pieces) > 5  # token by token, not in one lump at the end
    assert "".join(pieces) == whole.text


async def test_fim_template_applies_when_the_model_name_implies_one(tiny_model_dir: Path) -> None:
    backend = TransformersBackend(
        str(tiny_model_dir), dtype="float32", fim_template="qwen2.5-coder"
    )
    request = CompletionRequest(prompt="def f(", suffix="\n", max_tokens=2)
    assert backend.render_prompt(request) == "<|fim_prefix|>def f(<|fim_suffix|>\n<|fim_middle|>"
    auto = TransformersBackend(str(tiny_model_dir), dtype="float32")  # a path: nothing to detect
    assert auto.render_prompt(request) == "def f("


async def test_cancelling_complete_stops_the_model(tiny: TransformersBackend) -> None:
    before = generation_stats()
    # Greedy on this prompt never emits EOS: 3000 tokens would take ~10 s.
    task = asyncio.create_task(tiny.complete(CompletionRequest(prompt=PROMPT, max_tokens=3000)))
    while generation_stats()["steps"] < before["steps"] + 20:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle()
    after = generation_stats()
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["steps"] - before["steps"] < 1500


async def test_closing_a_stream_stops_the_model(tiny: TransformersBackend) -> None:
    before = generation_stats()
    stream = cast(
        AsyncGenerator[str, None], tiny.stream(CompletionRequest(prompt=PROMPT, max_tokens=3000))
    )
    pieces = []
    async for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            break
    await stream.aclose()
    await wait_idle()
    assert generation_stats()["steps"] - before["steps"] < 1500


async def test_cancelling_a_stream_consumer_stops_the_model(tiny: TransformersBackend) -> None:
    before = generation_stats()

    async def consume() -> None:
        async for _ in tiny.stream(CompletionRequest(prompt=PROMPT, max_tokens=3000)):
            pass

    task = asyncio.create_task(consume())
    while generation_stats()["steps"] < before["steps"] + 20:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle()
    assert generation_stats()["steps"] - before["steps"] < 1500


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_embedded_smollm2_writes_code_through_its_chat_template() -> None:
    """The real default model; on a clean machine this first converts its GGUF (~20 s)."""
    backend = make_backend("transformers", "smollm2-135m-instruct")
    assert isinstance(backend, TransformersBackend)
    await asyncio.to_thread(backend.load)
    ask = ({"role": "user", "content": "Write a Python function add(a, b) that returns a + b."},)
    [candidate] = await backend.complete(CompletionRequest(messages=ask, max_tokens=32))
    assert "def add" in candidate.text
    assert candidate.prompt_tokens > 10 and 0 < candidate.completion_tokens <= 32
    # Greedy: the stream starts with the same text (kept short: CPU time is shared here).
    pieces = [p async for p in backend.stream(CompletionRequest(messages=ask, max_tokens=8))]
    assert len(pieces) > 1 and candidate.text.startswith("".join(pieces))
