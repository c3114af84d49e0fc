"""vLLM in process (optional extra `gpu`): the engine that serves trained agents, with their LoRA
adapters, without an HTTP hop.

vLLM needs a CUDA GPU, so it is imported only when a VLLMBackend is built; elsewhere the
constructor raises a BackendError that says how to get it. For a separate `vllm serve`
process, use OpenAIBackend instead.

    backend = VLLMBackend("Qwen/Qwen2.5-Coder-1.5B", lora_adapters={"agent0": "runs/x/agent0"})
    await backend.complete(CompletionRequest(prompt=..., suffix=...), adapter="agent0")
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from collabcoder.server.backends.base import BackendError, Candidate, CompletionRequest
from collabcoder.server.backends.fim import FimTemplate, resolve_fim_template

INSTALL_HINT = (
    "vLLM is not installed: `pip install 'collabcoder[gpu]'` on a machine with a CUDA GPU, or "
    "serve the model with `vllm serve` and use the 'openai' backend"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(f"vllm backend: {INSTALL_HINT} ({exc})") from None
    return vllm


class VLLMBackend:
    supports_prefill = True  # a trailing assistant message is continued, not answered
    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        lora_adapters: Mapping[str, str] | None = None,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        fim_template: str | None = "auto",
        engine_args: Mapping[str, Any] | None = None,
    ) -> None:
        vllm = _import_vllm()
        self.model = model
        self.fim: FimTemplate | None = resolve_fim_template(model, fim_template)
        # Adapter name -> folder; vLLM wants a stable positive integer id per adapter.
        self.lora_adapters = dict(lora_adapters or {})
        self._lora_ids = {name: i + 1 for i, name in enumerate(self.lora_adapters)}
        args = vllm.AsyncEngineArgs(
            model=model,
            enable_lora=bool(self.lora_adapters),
            max_lora_rank=max_lora_rank,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **dict(engine_args or {}),
        )
        self._vllm = vllm
        self._engine: Any = vllm.AsyncLLMEngine.from_engine_args(args)

    def add_adapter(self, name: str, path: str) -> None:
        """Register a LoRA adapter (e.g. a checkpoint the trainer just wrote)."""
        if not self._lora_ids:
            raise BackendError("vllm backend: built without LoRA; pass lora_adapters to enable it")
        self.lora_adapters[name] = path
        self._lora_ids.setdefault(name, max(self._lora_ids.values()) + 1)

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        if adapter not in self.lora_adapters:
            known = ", ".join(sorted(self.lora_adapters)) or "none"
            raise BackendError(f"vllm backend: unknown LoRA adapter '{adapter}'; known: {known}")
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter, self._lora_ids[adapter], self.lora_adapters[adapter])

    async def _prompt(self, request: CompletionRequest) -> tuple[str, list[str]]:
        stops = list(request.stop)
        if request.prompt is not None:
            if request.suffix is not None and self.fim is not None:
                return self.fim.build(request.prompt, request.suffix), stops + list(self.fim.stop)
            return request.prompt, stops
        tokenizer = await self._engine.get_tokenizer()
        messages = list(request.messages or ())
        prefill = bool(messages) and messages[-1]["role"] == "assistant"
        prompt = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )
        return str(prompt), stops

    def _sampling(self, request: CompletionRequest, stops: list[str], n: int) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=stops or None,
            seed=request.seed,
        )

    async def _generate(
        self, request: CompletionRequest, n: int, adapter: str | None
    ) -> AsyncGenerator[Any, None]:
        """The engine's RequestOutput stream; closing it (or cancelling) aborts the request."""
        prompt, stops = await self._prompt(request)
        request_id = uuid.uuid4().hex
        outputs = self._engine.generate(
            prompt, self._sampling(request, stops, n), request_id, lora_request=self._lora(adapter)
        )
        finished = False
        try:
            async for output in outputs:
                finished = bool(output.finished)
                yield output
        finally:
            if not finished:
                await self._engine.abort(request_id)

    async def complete(
        self, request: CompletionRequest, adapter: str | None = None
    ) -> list[Candidate]:
        start = time.perf_counter()
        final: Any = None
        async with aclosing(self._generate(request, request.n, adapter)) as outputs:
            async for output in outputs:
                final = output  # outputs are cumulative: the last one holds the whole texts
        if final is None:
            raise BackendError(f"vllm backend: no output for model '{self.model}'")
        latency = time.perf_counter() - start
        n_prompt = len(final.prompt_token_ids or [])
        return [
            Candidate(
                text=o.text,
                prompt_tokens=n_prompt,
                completion_tokens=len(o.token_ids),
                latency_s=latency,
                finish_reason=str(o.finish_reason or "stop"),
                extra={"adapter": adapter} if adapter else {},
            )
            for o in final.outputs
        ]

    async def stream(
        self, request: CompletionRequest, adapter: str | None = None
    ) -> AsyncIterator[str]:
        sent = 0
        # aclosing: closing this iterator must close the engine's too, which aborts the request.
        async with aclosing(self._generate(request, 1, adapter)) as outputs:
            async for output in outputs:
                text = output.outputs[0].text
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)

    async def aclose(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
