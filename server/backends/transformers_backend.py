"""In-process transformers backend: the embedded CPU default (SmolLM2-135M-Instruct).

torch and transformers are imported lazily so the language server starts without them when its
backend is an HTTP endpoint. A model is loaded once per process and shared by every backend
instance that names it. Generation runs in a worker thread; cancelling the awaiting task sets an
event a stopping criterion polls between tokens, so the thread stops within one token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from collabcoder.server.backends.base import BackendError, Candidate, CompletionRequest
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT, resolve_model


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: str
    lock: threading.Lock  # one generate() at a time: 2 cores gain nothing from more


_LOADED: dict[tuple[str, str], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def load_model(name: str = EMBEDDED_DEFAULT, dtype: str = "bfloat16") -> LoadedModel:
    with _LOAD_LOCK:
        key = (name, dtype)
        if key not in _LOADED:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            resolved = resolve_model(name)
            try:
                tokenizer = AutoTokenizer.from_pretrained(resolved.source)
                model = AutoModelForCausalLM.from_pretrained(
                    resolved.source, dtype=getattr(torch, dtype)
                )
            except OSError as exc:
                raise BackendError(f"transformers: cannot load model '{name}': {exc}") from exc
            model.eval()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            _LOADED[key] = LoadedModel(model, tokenizer, resolved.source, threading.Lock())
        return _LOADED[key]


class _CancelCriterion:
    """A StoppingCriteria-compatible callable that stops generation once `event` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str = EMBEDDED_DEFAULT, dtype: str = "bfloat16") -> None:
        self.model = model
        self.dtype = dtype

    def _loaded(self) -> LoadedModel:
        return load_model(self.model, self.dtype)

    def render_prompt(self, request: CompletionRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        tok = self._loaded().tokenizer
        if getattr(tok, "chat_template", None):
            return str(
                tok.apply_chat_template(
                    list(request.messages or ()), tokenize=False, add_generation_prompt=True
                )
            )
        return "\n\n".join(m["content"] for m in request.messages or ()) + "\n"

    def _generate_kwargs(self, request: CompletionRequest, cancel: threading.Event) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        lm = self._loaded()
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "num_return_sequences": request.n,
            "pad_token_id": lm.tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([_CancelCriterion(cancel)]),
        }
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=lm.tokenizer)
        return kwargs

    def _complete_sync(self, request: CompletionRequest, cancel: threading.Event) -> list[Candidate]:
        import torch

        lm = self._loaded()
        prompt = self.render_prompt(request)
        inputs = lm.tokenizer(prompt, return_tensors="pt")
        n_prompt = int(inputs["input_ids"].shape[1])
        with lm.lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            start = time.perf_counter()
            out = lm.model.generate(**inputs, **self._generate_kwargs(request, cancel))
            latency = time.perf_counter() - start
        candidates = []
        for row in out[:, n_prompt:]:
            ids = [int(t) for t in row if int(t) != lm.tokenizer.pad_token_id]
            text = lm.tokenizer.decode(ids, skip_special_tokens=True)
            reason = "stop"
            for s in request.stop:
                if s in text:
                    text = text[: text.index(s)]
            if cancel.is_set():
                reason = "cancelled"
            elif len(ids) >= request.max_tokens:
                reason = "length"
            candidates.append(Candidate(text, n_prompt, len(ids), latency, reason))
        return candidates

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._complete_sync, request, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Yield text pieces of one candidate as they are generated."""
        from transformers import TextIteratorStreamer

        lm = self._loaded()
        cancel = threading.Event()
        streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = lm.tokenizer(self.render_prompt(request), return_tensors="pt")
        kwargs = {**self._generate_kwargs(request, cancel), "num_return_sequences": 1}

        def run() -> None:
            with lm.lock:
                lm.model.generate(**inputs, **kwargs, streamer=streamer)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        sentinel = object()
        try:
            while True:
                piece = await asyncio.to_thread(next, streamer, sentinel)
                if piece is sentinel:
                    break
                yield str(piece)
        finally:
            cancel.set()

    async def aclose(self) -> None:
        return None
