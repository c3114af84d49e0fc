"""In-process transformers backend: the embedded CPU default (SmolLM2-135M-Instruct).

torch and transformers are imported lazily so the language server starts without them when its
backend is an HTTP endpoint. A model is loaded once per process and shared by every backend
instance that names it. Generation runs in a worker thread; cancelling the awaiting task (or
closing a `stream` iterator) sets an event a stopping criterion polls between tokens, so the
thread stops within one token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from collabcoder.server.backends.base import (
    BackendError,
    Candidate,
    CompletionRequest,
    GenerationStats,
    run_cancellable,
)
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT, resolve_model
from collabcoder.server.backends.fim import resolve_fim_template


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
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:  # the server install has no torch: an extra adds it
                raise BackendError(
                    f"transformers: {exc.name} is not installed; the transformers backend "
                    "needs `pip install 'collabcoder[transformers]'` (CPU: pin torch first, "
                    "`pip install torch==2.13.0`), or use the llamacpp backend for GGUF models"
                ) from exc

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


_STATS = GenerationStats()
_STATS_LOCK = threading.Lock()


def generation_stats() -> dict[str, int]:
    """Process-wide counters; `active` > 0 while a generate() call is running.

    They let a caller (the OpenAI-compatible server's /stats, tests) check that a cancelled
    request really stopped the model rather than merely stopped reading from it.
    """
    with _STATS_LOCK:
        s = _STATS
        return {
            "started": s.started,
            "finished": s.finished,
            "cancelled": s.cancelled,
            "active": s.started - s.finished,
            "steps": s.steps,
        }


class _CancelCriterion:
    """A StoppingCriteria-compatible callable that stops generation once `event` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        with _STATS_LOCK:
            _STATS.steps += 1
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop sequence (excluded, as in the OpenAI API)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopTrimmer:
    """Applies stop sequences to streamed text: holds back a tail that could begin a stop
    sequence, so no piece of a stop sequence is ever emitted."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buffer += piece
        text, self.stopped = truncate_at_stop(self.buffer, self.stops)
        if self.stopped:
            self.buffer = ""
            return text
        hold = max(
            (k for s in self.stops for k in range(len(s) - 1, 0, -1) if text.endswith(s[:k])),
            default=0,
        )
        out, self.buffer = text[: len(text) - hold], text[len(text) - hold :]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


def _queue_streamer(
    tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]
) -> Any:
    """A transformers streamer that hands decoded text to an asyncio queue, token by token
    (None = end). Unlike TextStreamer it does not wait for a word boundary: an inline
    completion wants its first characters as soon as they exist."""
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False
            self.cache: list[int] = []
            self.printed = 0

        def _emit(self, item: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first passes the prompt ids
                self.prompt_seen = True
                return
            self.cache.extend(int(t) for t in value.reshape(-1).tolist())
            text = tokenizer.decode(self.cache, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                return
            if text[self.printed :]:
                self._emit(text[self.printed :])
            # Restart the cache at line ends so decoding stays cheap on long outputs.
            self.cache, self.printed = ([], 0) if text.endswith("\n") else (self.cache, len(text))

        def end(self) -> None:
            text = tokenizer.decode(self.cache, skip_special_tokens=True)
            if text[self.printed :]:
                self._emit(text[self.printed :])
            self.cache, self.printed = [], 0
            self._emit(None)

    return QueueStreamer()


class TransformersBackend:
    supports_prefill = True  # a trailing assistant message is continued, not answered
    name = "transformers"

    def __init__(
        self,
        model: str = EMBEDDED_DEFAULT,
        dtype: str = "bfloat16",
        fim_template: str | None = "auto",
    ) -> None:
        self.model = model
        self.dtype = dtype
        self.fim_template = fim_template

    def _loaded(self) -> LoadedModel:
        return load_model(self.model, self.dtype)

    def load(self) -> None:
        """Load the model now rather than on the first request (servers call this at start)."""
        self._loaded()

    def stats(self) -> dict[str, int]:
        return generation_stats()

    def render_prompt(self, request: CompletionRequest) -> str:
        return self._prompt_and_stops(request)[0]

    def _prompt_and_stops(self, request: CompletionRequest) -> tuple[str, tuple[str, ...]]:
        if request.prompt is not None:
            template = None
            if request.suffix is not None:
                template = resolve_fim_template(self.model, self.fim_template)
            if template is None:  # a model without FIM cannot use the suffix; like vLLM, drop it
                return request.prompt, request.stop
            return template.build(request.prompt, request.suffix or ""), (
                *request.stop,
                *template.stop,
            )
        tok = self._loaded().tokenizer
        if getattr(tok, "chat_template", None):
            messages = list(request.messages or ())
            # A trailing assistant message is a prefill: the reply continues it.
            prefill = bool(messages) and messages[-1]["role"] == "assistant"
            prompt = tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=not prefill,
                continue_final_message=prefill,
            )
            return str(prompt), request.stop
        return "\n\n".join(m["content"] for m in request.messages or ()) + "\n", request.stop

    def _generate_kwargs(
        self, request: CompletionRequest, stops: Sequence[str], cancel: threading.Event
    ) -> dict[str, Any]:
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
            # Greedy decoding gives n identical sequences: run one, copy it (transformers
            # refuses num_return_sequences > 1 without sampling).
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            kwargs["num_return_sequences"] = 1
        if stops:
            kwargs.update(stop_strings=list(stops), tokenizer=lm.tokenizer)
        return kwargs

    def _run_generate(
        self,
        lm: LoadedModel,
        inputs: Any,
        kwargs: dict[str, Any],
        cancel: threading.Event,
        seed: int | None,
    ) -> Any:
        """Run generate() under the model lock; None if cancelled while waiting for the lock."""
        import torch

        with lm.lock, torch.inference_mode():
            if cancel.is_set():
                return None
            with _STATS_LOCK:
                _STATS.started += 1
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                return lm.model.generate(**inputs, **kwargs)
            finally:
                with _STATS_LOCK:
                    _STATS.finished += 1
                    _STATS.cancelled += int(cancel.is_set())

    def _complete_sync(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> list[Candidate]:
        lm = self._loaded()
        prompt, stops = self._prompt_and_stops(request)
        inputs = lm.tokenizer(prompt, return_tensors="pt")
        n_prompt = int(inputs["input_ids"].shape[1])
        kwargs = self._generate_kwargs(request, stops, cancel)
        start = time.perf_counter()
        out = self._run_generate(lm, inputs, kwargs, cancel, request.seed)
        latency = time.perf_counter() - start
        if out is None:
            return [Candidate("", n_prompt, 0, latency, "cancelled") for _ in range(request.n)]
        candidates = []
        for row in out[:, n_prompt:]:
            ids = [int(t) for t in row if int(t) != lm.tokenizer.pad_token_id]
            text = lm.tokenizer.decode(ids, skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, stops)
            reason = "stop"
            if cancel.is_set():
                reason = "cancelled"
            elif not stopped and len(ids) >= request.max_tokens:
                reason = "length"
            candidates.append(Candidate(text, n_prompt, len(ids), latency, reason))
        if len(candidates) < request.n:  # greedy: one sequence stands for all n
            candidates *= request.n
        return candidates

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        return await run_cancellable(lambda cancel: self._complete_sync(request, cancel))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Yield text pieces of one candidate as they are generated (request.n is ignored)."""
        lm = await asyncio.to_thread(self._loaded)  # a first load can take seconds: off the loop
        prompt, stops = self._prompt_and_stops(request)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        streamer = _queue_streamer(lm.tokenizer, loop, queue)
        inputs = lm.tokenizer(prompt, return_tensors="pt")
        kwargs = {**self._generate_kwargs(request, stops, cancel), "num_return_sequences": 1}
        failure: list[BaseException] = []

        def run() -> None:
            try:
                out = self._run_generate(
                    lm, inputs, {**kwargs, "streamer": streamer}, cancel, request.seed
                )
                if out is None:  # cancelled before it started: generate() never ended the stream
                    loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # hand the error to the consumer instead of hanging it
                failure.append(exc)
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, None)
                except RuntimeError:  # the consumer's loop is gone: nobody is waiting
                    pass

        threading.Thread(target=run, daemon=True, name="transformers-stream").start()
        trimmer = StopTrimmer(stops)
        try:
            while True:
                piece = await queue.get()
                if piece is None:
                    break
                text = trimmer.feed(piece)
                if text:
                    yield text
                if trimmer.stopped:
                    break
            if failure:
                raise BackendError(
                    f"transformers: generation failed for '{self.model}': {failure[0]}"
                )
            tail = trimmer.flush()
            if tail:
                yield tail
        finally:
            cancel.set()

    async def aclose(self) -> None:
        return None
