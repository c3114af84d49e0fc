"""The completion engine: settings -> a backend (or a team of agents); a site -> a suggestion
or a feedback run.

- Automatic requests: one candidate streamed from the backend, stopped as soon as it is enough
  (a line in single-line mode, the end of the block, a closed code fence), cleaned up, then one
  analyzer round when the rest of the latency budget fits it (the loop with max_iter 0). A
  candidate that does not parse in place is not shown.
- Invoked requests: the feedback loop with one feedback iteration within twice the budget.
- "Run Feedback Iterations": the full loop, each judged candidate reported as it comes.

Every model call goes through `stream`: cancelling the request closes the stream, and with it
the HTTP connection (the server stops generating) or the in-process generation thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collabcoder.analyzers.static import AnalysisContext, AnalyzerResult, run_analyzers
from collabcoder.server.backends.base import Backend, BackendError, Candidate, CompletionRequest
from collabcoder.server.backends.factory import make_backend
from collabcoder.server.backends.fim import resolve_fim_template
from collabcoder.server.backends.transformers_backend import TransformersBackend
from collabcoder.server.loop import FeedbackLoop, IterationEvent, LoopConfig
from collabcoder.server.loop.prompts import (
    PromptParts,
    PromptStyle,
    completion_from_reply,
    extract_code,
    first_messages,
    first_user_message,
)
from collabcoder.server.lsp.agents import AgentTeam, TeamTurn, enclosing_function
from collabcoder.server.lsp.context import Site
from collabcoder.server.lsp.postprocess import clean_completion
from collabcoder.server.lsp.settings import Settings

log = logging.getLogger(__name__)

INLINE_TEMPERATURE = 0.2  # near-greedy; with a fixed seed the same site gives the same text
INLINE_SEED = 0
SINGLE_MAX_TOKENS = 48
MULTI_MAX_TOKENS = 128
LOOP_MAX_TOKENS = 256
HTTP_CONTEXT_TOKENS = 4096  # the endpoint's context is unknown: a size every coder model has
INPROCESS_CONTEXT_CAP = 2048  # prompt tokens cost CPU time in-process: keep the window modest
PROMPT_OVERHEAD_TOKENS = 256  # system prompt, chat template, FIM markers
FEEDBACK_RUN_CAP_S = 300.0


@dataclass(frozen=True)
class Environment:
    """What the analyzers need from the editor besides the document."""

    workspace_root: str | None = None
    python: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Suggestion:
    text: str
    model_s: float = 0.0
    analyzers_s: float = 0.0
    results: list[AnalyzerResult] = field(default_factory=list)
    finish: str = "stop"  # stop | early | length | budget | hidden
    source: str = "model"  # model | loop | team


@dataclass(frozen=True)
class IterationView:
    """One judged candidate of a feedback run."""

    iteration: int
    node_id: str
    parent_id: str | None
    completion: str
    score: float
    passing: bool
    results: tuple[AnalyzerResult, ...]


@dataclass
class FeedbackOutcome:
    completion: str
    passed: bool
    stop_reason: str
    time_s: float
    candidates: list[IterationView]
    errors: list[str] = field(default_factory=list)


OnIteration = Callable[[IterationView], Awaitable[None]]


def _norm(line: str) -> str:
    return " ".join(line.split())


def reply_to_completion(style: PromptStyle, site: Site, reply: str, prefilled: bool) -> str:
    """The part of a reply that goes at the cursor, cleaned up like an inline suggestion."""
    text = completion_from_reply(site.prefix, reply, prefilled) if style == "chat" else reply
    return clean_completion(text, site.prefix, site.suffix, site.mode).text


def make_stop(style: PromptStyle, site: Site, prefilled: bool) -> Callable[[str], bool]:
    """When the streamed text is enough. Checked only when a line completes."""
    cursor = _norm(site.line_before)

    def enough(text: str) -> bool:
        if style == "chat" and prefilled and "```" in text:
            return True  # the code block is closed (a prefilled reply sits inside one)
        if style == "chat" and not prefilled:
            if text.count("```") >= 2:
                return True
            if site.mode == "single" and cursor:  # the cursor's line restated in full
                complete = text[: text.rfind("\n") + 1]
                lines = extract_code(complete).split("\n")
                return any(ln.strip() and _norm(ln).startswith(cursor) for ln in lines)
            return False
        if site.mode == "single":
            return True  # a newline arrived
        complete = text[: text.rfind("\n")]
        return clean_completion(complete, site.prefix, site.suffix, site.mode).truncated

    return enough


async def stream_text(
    backend: Backend,
    request: CompletionRequest,
    enough: Callable[[str], bool],
    pieces: list[str],
) -> str:
    """Collect streamed text into `pieces` until `enough`; returns why it ended."""
    stream: AsyncIterator[str] = backend.stream(request)
    text = ""
    try:
        async for piece in stream:
            pieces.append(piece)
            text += piece
            if "\n" in piece and enough(text):
                return "early"
        return "stop"
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()  # closes the HTTP stream / stops the generation thread


class StreamingBackend:
    """A backend whose `complete` streams with early stopping (for the feedback loop)."""

    def __init__(self, inner: Backend, enough: Callable[[str], bool]) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.enough = enough
        # The loop prefills replies only for backends that continue them.
        self.supports_prefill = bool(getattr(inner, "supports_prefill", False))
        self.model_s = 0.0
        self.calls = 0

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        if request.n != 1:
            return await self.inner.complete(request)
        started = time.perf_counter()
        self.calls += 1
        pieces: list[str] = []
        try:
            finish = await stream_text(self.inner, request, self.enough, pieces)
        finally:
            self.model_s += time.perf_counter() - started
        return [Candidate("".join(pieces), latency_s=time.perf_counter() - started,
                          finish_reason=finish)]

    def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        return self.inner.stream(request)

    async def aclose(self) -> None:
        return None  # the engine owns the inner backend


class SiteLoop(FeedbackLoop):
    """The feedback loop for one editor site: prompts from the context window, candidates
    cleaned up like inline suggestions before the analyzers judge them."""

    def __init__(self, backend: Backend, config: LoopConfig, site: Site) -> None:
        super().__init__(backend, config)
        self.site = site
        # The loop builds its first message from the whole document; the model gets the window.
        self._full_first = first_user_message(site.prefix, site.suffix)
        self._window_first = first_user_message(site.prompt_prefix, site.prompt_suffix)

    def _completion_of(self, prefix: str, reply: str) -> str:
        base = super()._completion_of(prefix, reply)
        return clean_completion(base, self.site.prefix, self.site.suffix, self.site.mode).text

    def _request(
        self,
        parts: PromptParts,
        messages: tuple[dict[str, str], ...],
        feedback: str | None,
        n: int,
        temperature: float,
    ) -> CompletionRequest:
        window = dataclasses.replace(
            parts, prefix=self.site.prompt_prefix, suffix=self.site.prompt_suffix
        )
        if self._full_first != self._window_first:
            messages = tuple(
                {**m, "content": m["content"].replace(self._full_first, self._window_first)}
                for m in messages
            )
        return super()._request(window, messages, feedback, n, temperature)


class Engine:
    """Owns the backend built from the settings; stateless per request otherwise."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.backend: Backend | None = None
        self.team: AgentTeam | None = None
        self.style: PromptStyle = "chat"
        self.prefill = False
        self.tokenizer: Any = None
        self.context_tokens = HTTP_CONTEXT_TOKENS
        self.loaded = False
        self.model_calls = 0
        self.analyzer_estimate_s = 1.0  # a warm round; updated from real rounds
        self._key: tuple[object, ...] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.team.describe() if self.team is not None else self.settings.model

    def _identity(self, settings: Settings, api_key: str | None) -> tuple[object, ...]:
        key = api_key if settings.backend == "openai" else None  # in-process: no key, no reload
        return (settings.backend, settings.endpoint_url, settings.model, settings.fim_template,
                key)

    def needs_rebuild(self, settings: Settings, api_key: str | None) -> bool:
        return self._key != self._identity(settings, api_key)

    def build(self, settings: Settings, api_key: str | None) -> Backend | None:
        """Make the backend for `settings` (no weights loaded yet); returns the one it replaces.
        Raises ValueError/BackendError/ImportError for settings that cannot work."""
        old = self.backend
        team = AgentTeam(settings.model) if AgentTeam.is_team(settings.model) else None
        if team is not None:
            backend: Backend = team.main
            style: PromptStyle = "chat"
        else:
            fim = resolve_fim_template(settings.model, settings.fim_template)
            style = "fim" if fim is not None else "chat"
            if settings.backend == "openai":
                backend = make_backend(
                    "openai", settings.model, endpoint=settings.endpoint_url or None,
                    api_key=api_key or None, endpoint_kind="completions" if fim else "chat",
                    fim_template=settings.fim_template, timeout_s=30.0, connect_timeout_s=3.0,
                    max_retries=1, backoff_s=0.2,
                )  # fmt: skip
            else:
                backend = make_backend(
                    settings.backend, settings.model, fim_template=settings.fim_template
                )
        self.settings = settings
        self.backend, self.team, self.style = backend, team, style
        # Chat replies start with the code down to the cursor where the backend continues them.
        self.prefill = style == "chat" and bool(getattr(backend, "supports_prefill", False))
        self.tokenizer, self.loaded = None, False
        self.context_tokens = HTTP_CONTEXT_TOKENS
        self._key = self._identity(settings, api_key)
        if team is not None:
            for member in team.backends.values():
                if member is not backend and old is member:
                    old = None
        return old if old is not backend else None

    def forget(self) -> None:
        """Drop the backend after a failed build (the next settings try again)."""
        self.backend, self.team, self._key, self.loaded = None, None, None, False

    async def load(self) -> None:
        """Load in-process weights (in a thread) and read the tokenizer and context size."""
        backend, team = self.backend, self.team
        if backend is None:
            return
        load = team.load if team is not None else getattr(backend, "load", None)
        if callable(load):
            await asyncio.to_thread(load)
        if backend is not self.backend:
            return  # the settings changed meanwhile
        if isinstance(backend, TransformersBackend):
            lm = await asyncio.to_thread(backend._loaded)  # already loaded: a cache lookup
            positions = int(getattr(lm.model.config, "max_position_embeddings", 2048) or 2048)
            self.tokenizer = lm.tokenizer
            self.context_tokens = max(
                256,
                min(INPROCESS_CONTEXT_CAP, positions - MULTI_MAX_TOKENS - PROMPT_OVERHEAD_TOKENS),
            )
        self.loaded = True

    async def aclose(self) -> None:
        backend, team = self.backend, self.team
        self.forget()
        if team is not None:
            await team.aclose()
        elif backend is not None:
            await backend.aclose()

    # ---- requests ---------------------------------------------------------------------------

    def max_tokens(self, site: Site, default: int | None = None) -> int:
        wanted = default or (SINGLE_MAX_TOKENS if site.mode == "single" else MULTI_MAX_TOKENS)
        cap = self.settings.max_tokens
        return min(wanted, cap) if cap else wanted

    def request_for(self, site: Site, max_tokens: int) -> CompletionRequest:
        common: dict[str, Any] = {
            "max_tokens": max_tokens, "temperature": INLINE_TEMPERATURE, "seed": INLINE_SEED,
        }  # fmt: skip
        if self.style == "fim":
            stop = ("\n",) if site.mode == "single" else ()
            return CompletionRequest(
                prompt=site.prompt_prefix, suffix=site.prompt_suffix, stop=stop, **common
            )
        parts = PromptParts(site.prompt_prefix, site.prompt_suffix, prefill=self.prefill)
        stop = ("\n```",) if self.prefill else ()  # a prefilled reply ends with its fence
        return CompletionRequest(messages=first_messages(parts), stop=stop, **common)

    def _require_backend(self) -> Backend:
        if self.backend is None:
            raise BackendError("no backend: the settings did not produce a usable one")
        return self.backend

    async def generate(self, site: Site, deadline: float) -> Suggestion:
        """One streamed candidate, cleaned up; stops at `deadline` with what is complete."""
        backend = self._require_backend()
        request = self.request_for(site, self.max_tokens(site))
        pieces: list[str] = []
        started = time.perf_counter()
        self.model_calls += 1
        try:
            finish = await asyncio.wait_for(
                stream_text(backend, request, make_stop(self.style, site, self.prefill), pieces),
                timeout=max(0.001, deadline - time.monotonic()),
            )
        except (asyncio.TimeoutError, TimeoutError):
            finish = "budget"
        model_s = time.perf_counter() - started
        raw = "".join(pieces)
        if finish == "budget":  # only whole lines of a cut-off answer
            raw = raw[: raw.rfind("\n") + 1]
        text = reply_to_completion(self.style, site, raw, self.prefill)
        return Suggestion(text, model_s, finish=finish)

    def analysis_context(self, site: Site, env: Environment, completion: str = "") -> AnalysisContext:
        return AnalysisContext(
            prefix=site.prefix,
            completion=completion,
            suffix=site.suffix,
            document_path=site.path,
            workspace_root=env.workspace_root,
            python_executable=env.python or None,
            overrides=dict(env.overrides),
        )

    async def judge(self, site: Site, env: Environment, completion: str,
                    budget_s: float | None) -> tuple[list[AnalyzerResult], float]:
        started = time.perf_counter()
        ctx = self.analysis_context(site, env, completion)
        results = await run_analyzers(ctx, self.settings.analyzers, budget_s)
        elapsed = time.perf_counter() - started
        if not any(r.infra_error for r in results):  # a timed-out round says nothing of speed
            self.analyzer_estimate_s = 0.7 * self.analyzer_estimate_s + 0.3 * elapsed
        return results, elapsed

    async def suggest(
        self, site: Site, env: Environment, *, invoked: bool, deadline: float
    ) -> Suggestion:
        if self.team is not None and site.mode == "multi":
            where = enclosing_function(site.prefix)
            if where is not None:
                turns = self.team.manifest.turn_protocol.num_turns if invoked else 1
                return await self._team_suggest(site, where, turns, deadline)
        if invoked and self.settings.analyzers and self.settings.max_iterations > 0:
            return await self._loop_suggest(site, env, deadline)
        suggestion = await self.generate(site, deadline)
        remaining = deadline - time.monotonic()
        if (
            suggestion.text
            and self.settings.analyzers
            and remaining >= max(0.05, self.analyzer_estimate_s)
        ):
            suggestion.results, suggestion.analyzers_s = await self.judge(
                site, env, suggestion.text, remaining
            )
            if any(r.name == "syntax" and r.blocks for r in suggestion.results):
                suggestion.text, suggestion.finish = "", "hidden"  # would break the file
        return suggestion

    async def _loop_suggest(self, site: Site, env: Environment, deadline: float) -> Suggestion:
        outcome = await self.run_feedback(site, env, 1, None, deadline)
        if not outcome.candidates and outcome.errors:
            raise BackendError(outcome.errors[-1])
        return Suggestion(outcome.completion, finish=outcome.stop_reason, source="loop",
                          model_s=outcome.time_s)

    async def _team_suggest(self, site: Site, where: Any, turns: int, deadline: float) -> Suggestion:
        assert self.team is not None
        started = time.perf_counter()
        self.model_calls += len(self.team.backends) * turns
        turn = await asyncio.wait_for(
            self.team.write_function(site.prefix, where, turns, self.max_tokens(site)),
            timeout=max(0.001, deadline - time.monotonic()),
        )
        text = clean_completion(turn.completion, site.prefix, site.suffix, site.mode).text
        return Suggestion(text, time.perf_counter() - started, source="team")

    # ---- feedback runs ----------------------------------------------------------------------

    async def run_feedback(
        self,
        site: Site,
        env: Environment,
        iterations: int,
        on_iteration: OnIteration | None,
        deadline: float | None = None,
    ) -> FeedbackOutcome:
        """The full loop at `site`: `iterations` feedback expansions after the first candidate."""
        started = time.monotonic()
        if deadline is None:
            deadline = started + FEEDBACK_RUN_CAP_S
        if self.team is not None and site.mode == "multi":
            where = enclosing_function(site.prefix)
            if where is not None:
                return await self._team_feedback(site, env, where, iterations, on_iteration,
                                                 deadline)
        backend = StreamingBackend(self._require_backend(),
                                   make_stop(self.style, site, self.prefill))
        config = LoopConfig(
            analyzers=self.settings.analyzers, max_iter=iterations, n=1,
            temperature=INLINE_TEMPERATURE, prompt_style=self.style,
            max_tokens=self.max_tokens(site, LOOP_MAX_TOKENS), max_retries=1,
            time_budget_s=max(0.05, deadline - time.monotonic()), seed=INLINE_SEED,
        )  # fmt: skip
        views: list[IterationView] = []

        async def report(event: IterationEvent) -> None:
            node = event.node
            view = IterationView(event.iteration, node.id, node.parent.id if node.parent else None,
                                 node.completion, node.score, node.passing, tuple(node.results))
            views.append(view)
            if on_iteration is not None:
                await on_iteration(view)

        loop = SiteLoop(backend, config, site)
        ctx = self.analysis_context(site, env)
        self.model_calls += 1
        result = await loop.run(ctx, report)
        self.model_calls += max(0, backend.calls - 1)
        return FeedbackOutcome(result.completion, result.passed, result.stop_reason,
                               time.monotonic() - started, views, list(result.errors))

    async def _team_feedback(
        self, site: Site, env: Environment, where: Any, iterations: int,
        on_iteration: OnIteration | None, deadline: float,
    ) -> FeedbackOutcome:
        assert self.team is not None
        started = time.monotonic()
        views: list[IterationView] = []

        async def on_turn(turn: TeamTurn) -> None:
            text = clean_completion(turn.completion, site.prefix, site.suffix, site.mode).text
            results, _ = await self.judge(site, env, text, None) if text else ([], 0.0)
            passing = bool(results) and not any(r.blocks for r in results)
            score = sum(r.score for r in results if not r.skipped) + (1.0 if passing else 0.0)
            view = IterationView(turn.turn - 1, f"T{turn.turn}",
                                 f"T{turn.turn - 1}" if turn.turn > 1 else None,
                                 text, score, passing, tuple(results))
            views.append(view)
            if on_iteration is not None:
                await on_iteration(view)

        turns = iterations + 1
        self.model_calls += len(self.team.backends) * turns
        await asyncio.wait_for(
            self.team.write_function(site.prefix, where, turns,
                                     self.max_tokens(site, LOOP_MAX_TOKENS), on_turn),
            timeout=max(0.001, deadline - time.monotonic()),
        )
        passing = [v for v in views if v.passing]
        best = max(passing or views, key=lambda v: v.score, default=None)
        return FeedbackOutcome(
            best.completion if best else "", bool(passing),
            "passed" if passing else "max_iter", time.monotonic() - started, views,
        )
