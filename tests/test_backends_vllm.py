"""VLLMBackend: the import guard, our plumbing around the engine (prompts, LoRA requests, abort on
cancel) against a stand-in `vllm` module, and the real engine where vLLM is installed."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import types
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from collabcoder.server.backends import BackendError, CompletionRequest, make_backend

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_error_says_how_to_get_it() -> None:
    with pytest.raises(
        BackendError, match=r"vLLM is not installed: `pip install 'collabcoder\[gpu\]'`"
    ):
        make_backend("vllm", "Qwen/Qwen2.5-Coder-0.5B")


# ---- a stand-in for the few vLLM names the backend uses ---------------------------------------


@dataclass
class Output:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    outputs: list[Output]
    prompt_token_ids: list[int]
    finished: bool


@dataclass
class FakeEngine:
    words: list[str] = field(default_factory=lambda: ["def", " f", "():", " pass"])
    calls: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    async def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(
            apply_chat_template=lambda messages, **kw: "CHAT:" + messages[-1]["content"]
        )

    async def generate(
        self, prompt: str, params: Any, request_id: str, lora_request: Any = None
    ) -> AsyncIterator[RequestOutput]:
        self.calls.append({"prompt": prompt, "params": params, "lora": lora_request})
        for i in range(1, len(self.words) + 1):
            await asyncio.sleep(0.01)
            done = i == len(self.words)
            text = "".join(self.words[:i])
            outs = [Output(text, list(range(i)), "stop" if done else None) for _ in range(params.n)]
            yield RequestOutput(outs, [1, 2, 3], done)  # cumulative, as vLLM's default

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine()
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = lambda **kw: kw  # type: ignore[attr-defined]
    vllm.SamplingParams = types.SimpleNamespace  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = types.SimpleNamespace(from_engine_args=lambda args: engine)  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, id_, path: (name, id_, path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    return engine


async def test_complete_with_fim_and_a_lora_adapter(fake_vllm: FakeEngine) -> None:
    from collabcoder.server.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend("Qwen/Qwen2.5-Coder-1.5B", lora_adapters={"agent0": "/ckpt/agent0"})
    request = CompletionRequest(prompt="a", suffix="b", n=2, temperature=0.7, stop=("\n\n",))
    candidates = await backend.complete(request, adapter="agent0")
    assert [c.text for c in candidates] == ["def f(): pass"] * 2
    assert candidates[0].completion_tokens == 4 and candidates[0].prompt_tokens == 3
    [call] = fake_vllm.calls
    assert call["prompt"] == "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
    assert call["lora"] == ("agent0", 1, "/ckpt/agent0")
    assert call["params"].n == 2 and "\n\n" in call["params"].stop
    assert fake_vllm.aborted == []  # finished requests need no abort
    with pytest.raises(BackendError, match="unknown LoRA adapter 'agent9'; known: agent0"):
        await backend.complete(request, adapter="agent9")


async def test_stream_deltas_and_abort_when_closed_early(fake_vllm: FakeEngine) -> None:
    from collabcoder.server.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend("some/model")
    request = CompletionRequest(messages=({"role": "user", "content": "hi"},))
    assert [p async for p in backend.stream(request)] == ["def", " f", "():", " pass"]
    assert fake_vllm.calls[0]["prompt"] == "CHAT:hi"
    stream = cast(AsyncGenerator[str, None], backend.stream(request))
    assert await anext(stream) == "def"
    await stream.aclose()
    assert len(fake_vllm.aborted) == 1


@pytest.mark.skipif(
    not HAS_VLLM, reason="vLLM needs a CUDA GPU and is not installable on these CPU machines"
)
async def test_real_vllm_generates_and_streams(tiny_model_dir: Path) -> None:  # pragma: no cover
    backend = make_backend("vllm", str(tiny_model_dir), gpu_memory_utilization=0.3)
    request = CompletionRequest(prompt="def add(a, b):\n", n=2, temperature=1.0, max_tokens=8)
    candidates = await backend.complete(request)
    assert len(candidates) == 2 and all(c.completion_tokens == 8 for c in candidates)
    assert "".join([p async for p in backend.stream(request)])
    await backend.aclose()
