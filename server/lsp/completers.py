"""What answers a completion site: one model, or a team of agents. The engine builds one of the
two from the settings (`Engine.build`); nothing else asks which it is.

- `ModelCompleter`: automatic requests get one candidate streamed from the backend, stopped as
  soon as it is enough, cleaned up, then one analyzer round when the rest of the latency budget
  fits it (a candidate that does not parse in place is not shown): automatic requests take
  one candidate, the bound that fits their budget on a CPU model. Invoked requests run the
  feedback loop (a batched first request of `FIRST_CANDIDATES`, one feedback iteration) within
  twice the budget. Feedback runs are the full loop, each judged candidate reported as it comes.
- `TeamCompleter`: at a line start inside a function the agents write the function with the
  training turn protocol (one turn automatic, the manifest's turns invoked, `iterations + 1`
  turns in a feedback run, each turn judged by the analyzers); anywhere else the main agent
  alone answers, as a `ModelCompleter`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from collabcoder.analyzers.static import AnalyzerResult
from collabcoder.analyzers.static.result import verdict_words
from collabcoder.server.backends.base import Backend, BackendError, CompletionRequest
from collabcoder.server.loop import FeedbackLoop, Iteration, LoopConfig
from collabcoder.server.loop.messages import (
    PromptParts,
    PromptStyle,
    first_messages,
    first_user_content,
)
from collabcoder.server.loop.search import Messages, loop_request
from collabcoder.server.lsp.context import CursorSite, EditorEnvironment, analysis_context
from collabcoder.server.lsp.postprocess import fit_to_cursor
from collabcoder.server.lsp.settings import Settings
from collabcoder.server.lsp.streaming import (
    StreamingBackend,
    make_stop,
    reply_to_completion,
    stream_text,
)
from collabcoder.server.lsp.team import AgentTeam, Enclosing, TeamTurn, enclosing_function

INLINE_TEMPERATURE = 0.2  # near-greedy; with a fixed seed the same site gives the same text
INLINE_SEED = 0
SINGLE_MAX_TOKENS = 48
MULTI_MAX_TOKENS = 128
LOOP_MAX_TOKENS = 256
FIRST_CANDIDATES = 4  # the loop's first request: one batched call, several candidates to test


@dataclass
class Suggestion:
    text: str
    model_s: float = 0.0
    analyzers_s: float = 0.0
    results: list[AnalyzerResult] = field(default_factory=list)
    finish: str = "stop"  # stop | early | length | budget | hidden | empty
    source: str = "model"  # model | loop | team
    verdict: str | None = None  # verdict words, when the suggestion was judged


@dataclass
class FeedbackOutcome:
    completion: str
    passed: bool
    stop_reason: str
    time_s: float
    candidates: list[Iteration]
    errors: list[str] = field(default_factory=list)
    verdict: str = "failed: no candidate"
    verified: bool = False


OnIteration = Callable[[Iteration], Awaitable[None]]


class Host(Protocol):
    """What a completer uses of the engine that built it: the settings of the moment, the
    model-call counter and the analyzer round."""

    settings: Settings
    model_calls: int
    analyzer_estimate_s: float

    async def analyze(self, site: CursorSite, env: EditorEnvironment, completion: str,
                      budget_s: float | None) -> tuple[list[AnalyzerResult], float]: ...


class Completer(Protocol):
    backend: Backend  # the model whose tokenizer sizes the prompt window
    backend_name: str  # as `collab/status` shows it
    label: str  # the model, as `collab/status` shows it
    style: PromptStyle  # chat or fim prompts (the log says which)

    async def load(self) -> None: ...

    async def aclose(self) -> None: ...

    async def suggest(self, site: CursorSite, env: EditorEnvironment, *, invoked: bool,
                      deadline: float) -> Suggestion: ...

    async def feedback(self, site: CursorSite, env: EditorEnvironment, iterations: int,
                       on_iteration: OnIteration | None, deadline: float) -> FeedbackOutcome: ...


def max_tokens(settings: Settings, site: CursorSite, default: int | None = None) -> int:
    wanted = default or (SINGLE_MAX_TOKENS if site.mode == "single" else MULTI_MAX_TOKENS)
    cap = settings.max_tokens
    return min(wanted, cap) if cap else wanted


def remaining(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())


class SitePrompts:
    """The loop's hooks at an editor site: the model sees the prompt window instead of the
    whole document, and candidates are cleaned up like inline suggestions before the analyzers
    judge them."""

    def __init__(self, site: CursorSite, config: LoopConfig) -> None:
        self.site = site
        self.config = config

    def completion_of(self, prefix: str, reply: str, prefilled: bool) -> str:
        return reply_to_completion(self.config.prompt_style, self.site, reply, prefilled)

    def request_for(self, parts: PromptParts, messages: Messages, feedback: str | None, n: int,
                    temperature: float) -> CompletionRequest:
        window = dataclasses.replace(
            parts, prefix=self.site.prompt_prefix, suffix=self.site.prompt_suffix
        )
        # The loop builds its first message from the whole document; the model gets the window.
        full_first, window_first = first_user_content(parts), first_user_content(window)
        if full_first != window_first:
            messages = tuple(
                {**m, "content": m["content"].replace(full_first, window_first)} for m in messages
            )
        return loop_request(self.config, window, messages, feedback, n, temperature)


class ModelCompleter:
    def __init__(self, host: Host, backend: Backend, style: PromptStyle, backend_name: str,
                 label: str) -> None:
        self.host = host
        self.backend = backend
        self.style = style
        self.backend_name = backend_name
        self.label = label
        # Chat replies start with the code down to the cursor where the backend continues them.
        self.prefill = style == "chat" and bool(getattr(backend, "supports_prefill", False))

    async def load(self) -> None:
        load = getattr(self.backend, "load", None)
        if callable(load):
            await asyncio.to_thread(load)

    async def aclose(self) -> None:
        await self.backend.aclose()

    def request_for(self, site: CursorSite, tokens: int) -> CompletionRequest:
        common: dict[str, Any] = {
            "max_tokens": tokens, "temperature": INLINE_TEMPERATURE, "seed": INLINE_SEED,
        }  # fmt: skip
        if self.style == "fim":
            stop = ("\n",) if site.mode == "single" else ()
            return CompletionRequest(
                prompt=site.prompt_prefix, suffix=site.prompt_suffix, stop=stop, **common
            )
        parts = PromptParts(site.prompt_prefix, site.prompt_suffix, prefill=self.prefill)
        stop = ("\n```",) if self.prefill else ()  # a prefilled reply ends with its fence
        return CompletionRequest(messages=first_messages(parts), stop=stop, **common)

    async def generate(self, site: CursorSite, deadline: float) -> Suggestion:
        """One streamed candidate, cleaned up; stops at `deadline` with what is complete."""
        request = self.request_for(site, max_tokens(self.host.settings, site))
        pieces: list[str] = []
        started = time.perf_counter()
        self.host.model_calls += 1
        try:
            finish = await asyncio.wait_for(
                stream_text(self.backend, request, make_stop(self.style, site, self.prefill),
                            pieces),
                timeout=remaining(deadline),
            )
        except (asyncio.TimeoutError, TimeoutError):
            finish = "budget"
        model_s = time.perf_counter() - started
        raw = "".join(pieces)
        if finish == "budget":  # only whole lines of a cut-off answer
            raw = raw[: raw.rfind("\n") + 1]
        text = reply_to_completion(self.style, site, raw, self.prefill)
        empty = not raw.strip() and finish != "budget"  # the model itself said nothing
        return Suggestion(text, model_s, finish="empty" if empty else finish)

    async def suggest(self, site: CursorSite, env: EditorEnvironment, *, invoked: bool,
                      deadline: float) -> Suggestion:
        settings = self.host.settings
        if invoked and settings.analyzers and settings.max_iterations > 0:
            outcome = await self.feedback(site, env, 1, None, deadline)
            if not outcome.candidates and outcome.errors:
                raise BackendError(outcome.errors[-1])
            return Suggestion(outcome.completion, finish=outcome.stop_reason, source="loop",
                              model_s=outcome.time_s, verdict=outcome.verdict)
        suggestion = await self.generate(site, deadline)
        left = deadline - time.monotonic()
        fits = left >= max(0.05, self.host.analyzer_estimate_s)
        if suggestion.text and settings.analyzers and fits:
            suggestion.results, suggestion.analyzers_s = await self.host.analyze(
                site, env, suggestion.text, left
            )
            if any(r.name == "syntax" and r.blocks for r in suggestion.results):
                suggestion.text, suggestion.finish = "", "hidden"  # would break the file
            suggestion.verdict = verdict_words(suggestion.results)
        return suggestion

    async def feedback(self, site: CursorSite, env: EditorEnvironment, iterations: int,
                       on_iteration: OnIteration | None, deadline: float) -> FeedbackOutcome:
        """The loop at `site`: `iterations` feedback expansions after the first candidate."""
        started = time.monotonic()
        backend = StreamingBackend(self.backend, make_stop(self.style, site, self.prefill))
        config = LoopConfig(
            analyzers=self.host.settings.analyzers, max_iter=iterations, n=1,
            first_n=FIRST_CANDIDATES,
            temperature=INLINE_TEMPERATURE, prompt_style=self.style,
            max_tokens=max_tokens(self.host.settings, site, LOOP_MAX_TOKENS), max_retries=1,
            time_budget_s=max(0.05, deadline - time.monotonic()), seed=INLINE_SEED,
        )  # fmt: skip
        views: list[Iteration] = []

        async def report(view: Iteration) -> None:
            views.append(view)
            if on_iteration is not None:
                await on_iteration(view)

        prompts = SitePrompts(site, config)
        loop = FeedbackLoop(backend, config, completion_of=prompts.completion_of,
                            request_for=prompts.request_for)
        self.host.model_calls += 1
        result = await loop.run(analysis_context(site, env), report)
        self.host.model_calls += max(0, backend.calls - 1)
        return FeedbackOutcome(result.completion, result.passed, result.stop_reason,
                               time.monotonic() - started, views, list(result.errors),
                               result.verdict, result.verified)


class TeamCompleter:
    def __init__(self, host: Host, team: AgentTeam, solo: ModelCompleter) -> None:
        self.host = host
        self.team = team
        self.solo = solo  # the main agent, for sites outside a function body
        self.backend = team.main
        self.backend_name = "transformers"  # an agents folder always runs in-process
        self.label = team.describe()
        self.style: PromptStyle = "chat"

    async def load(self) -> None:
        await asyncio.to_thread(self.team.load)

    async def aclose(self) -> None:
        await self.team.aclose()

    def _function_at(self, site: CursorSite) -> Enclosing | None:
        return enclosing_function(site.prefix) if site.mode == "multi" else None

    async def _write(self, site: CursorSite, where: Enclosing, turns: int, tokens: int,
                     deadline: float, on_turn: Callable[[TeamTurn], Awaitable[None]] | None = None
                     ) -> TeamTurn:
        self.host.model_calls += len(self.team.backends) * turns
        return await asyncio.wait_for(
            self.team.write_function(site.prefix, where, turns, tokens, on_turn),
            timeout=remaining(deadline),
        )

    async def suggest(self, site: CursorSite, env: EditorEnvironment, *, invoked: bool,
                      deadline: float) -> Suggestion:
        where = self._function_at(site)
        if where is None:
            return await self.solo.suggest(site, env, invoked=invoked, deadline=deadline)
        started = time.perf_counter()
        turns = self.team.manifest.turn_protocol.num_turns if invoked else 1
        turn = await self._write(site, where, turns, max_tokens(self.host.settings, site),
                                 deadline)
        text = fit_to_cursor(turn.completion, site.prefix, site.suffix, site.mode).text
        return Suggestion(text, time.perf_counter() - started, source="team")

    async def feedback(self, site: CursorSite, env: EditorEnvironment, iterations: int,
                       on_iteration: OnIteration | None, deadline: float) -> FeedbackOutcome:
        """`iterations + 1` turns, each judged and reported as node `T<turn>`."""
        where = self._function_at(site)
        if where is None:
            return await self.solo.feedback(site, env, iterations, on_iteration, deadline)
        started = time.monotonic()
        views: list[Iteration] = []

        async def on_turn(turn: TeamTurn) -> None:
            text = fit_to_cursor(turn.completion, site.prefix, site.suffix, site.mode).text
            results, _ = await self.host.analyze(site, env, text, None) if text else ([], 0.0)
            parent = f"T{turn.turn - 1}" if turn.turn > 1 else None
            view = Iteration(turn.turn - 1, f"T{turn.turn}", parent, text, tuple(results))
            views.append(view)
            if on_iteration is not None:
                await on_iteration(view)

        tokens = max_tokens(self.host.settings, site, LOOP_MAX_TOKENS)
        await self._write(site, where, iterations + 1, tokens, deadline, on_turn)
        best = max(views, key=lambda v: (v.verified, v.passing, v.score), default=None)
        stop = "max_iter" if best is None else "passed" if best.verified else \
            "static_only" if best.passing and best.evidence == "none" else "max_iter"
        return FeedbackOutcome(
            best.completion if best else "", bool(best and best.passing), stop,
            time.monotonic() - started, views,
            verdict=best.verdict if best else "failed: no candidate",
            verified=bool(best and best.verified),
        )

