"""The analyzer-guided feedback loop: best-first search over a tree of conversations.

Each node is one candidate completion with the conversation that produced it and its analyzer
results. The loop expands the frontier node picked by `meta_temperature` (0: the best score,
inf: uniform, else softmax over scores), sends the node's feedback to the model and judges the n
new candidates. Without backtracking only the children of the last expanded node are eligible.
It stops at the first candidate that passes every critical analyzer, after `max_iter`
expansions, or when the wall-clock budget runs out, and returns the best passing candidate, else
the best scored one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from collabcoder.analyzers.static import (
    DEFAULT_ANALYZERS,
    AnalysisContext,
    AnalyzerResult,
    combined_feedback,
    run_analyzers,
)
from collabcoder.server.backends.base import Backend, BackendError, Candidate, CompletionRequest
from collabcoder.server.loop.prompts import (
    SYSTEM_PROMPT,
    FeedbackVariant,
    PromptParts,
    PromptStyle,
    completion_from_reply,
    feedback_messages,
    fim_feedback_prefix,
    first_messages,
)

FeedbackFormat = Literal["analyzers", "level_feedback", "level_passed", "passed", "plain"]


@dataclass(frozen=True)
class LoopConfig:
    analyzers: tuple[str, ...] = DEFAULT_ANALYZERS
    max_iter: int = 10  # feedback expansions after the first completions
    n: int = 1  # candidates per model request
    temperature: float = 0.7
    meta_temperature: float = 0.0
    backtracking: bool = True
    feedback_variant: FeedbackVariant = "coworker"
    feedback_format: FeedbackFormat = "analyzers"
    prompt_style: PromptStyle = "chat"
    prefill: bool = True  # continue a prefilled reply where the backend supports it
    system_prompt: str = SYSTEM_PROMPT
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    require_unique: bool = True  # resample when a candidate repeats an earlier one
    max_retries: int = 5
    delta_temperature: float = 0.2
    max_temperature: float = 2.0
    factor_n: int = 2
    max_n: int = 32
    time_budget_s: float | None = None  # wall clock for the whole run
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_iter < 0 or self.n < 1:
            raise ValueError("LoopConfig: max_iter must be >= 0 and n >= 1")
        if self.meta_temperature < 0:
            raise ValueError("LoopConfig: meta_temperature must be >= 0 (0 greedy, inf uniform)")


@dataclass
class Node:
    id: str  # path in the tree: "R", "R.0", "R.0.2", ...
    parent: Node | None
    messages: tuple[dict[str, str], ...]  # conversation up to and including this reply
    reply: str
    completion: str
    results: list[AnalyzerResult]
    completion_tokens: int = 0
    expanded: bool = False

    @property
    def passing(self) -> bool:
        return bool(self.results) and not any(r.blocks for r in self.results)

    @property
    def score(self) -> float:
        """Sum of analyzer scores (each in [0, 1]) plus 1 for passing every critical check."""
        return sum(r.score for r in self.results if not r.skipped) + (1.0 if self.passing else 0.0)

    @property
    def feedback(self) -> str:
        return combined_feedback(self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "parent": self.parent.id if self.parent else None,
            "completion": self.completion, "reply": self.reply, "score": self.score,
            "passing": self.passing, "completion_tokens": self.completion_tokens,
            "messages": list(self.messages), "analyzer_results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class IterationEvent:
    """Sent to `on_iteration` for every judged candidate (the status panel shows these)."""

    iteration: int
    node: Node


@dataclass
class LoopResult:
    completion: str
    passed: bool
    best: Node | None
    nodes: list[Node]
    iterations: int
    tokens_generated: int
    time_s: float
    stop_reason: str  # passed | max_iter | time_budget | no_candidates | backend_error
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "completion": self.completion, "passed": self.passed,
            "best": best.id if best else None, "iterations": self.iterations,
            "n_tokens_generated": self.tokens_generated, "time": self.time_s,
            "stop_reason": self.stop_reason, "errors": self.errors,
            "messages": list(best.messages) if best else [],
            "analyzer_results": [r.to_dict() for r in best.results] if best else [],
            "nodes": [n.to_dict() for n in self.nodes], "log": "\n".join(self.log),
        }


OnIteration = Callable[[IterationEvent], Awaitable[None] | None]


def pick(frontier: Sequence[Node], meta_temperature: float, rng: random.Random) -> Node:
    """0: the best node (first on ties); inf: uniform; else softmax over scores / T."""
    if meta_temperature == 0:
        return max(frontier, key=lambda n: n.score)
    if math.isinf(meta_temperature):
        return rng.choice(list(frontier))
    top = max(n.score for n in frontier)
    weights = [math.exp((n.score - top) / meta_temperature) for n in frontier]
    return rng.choices(list(frontier), weights=weights, k=1)[0]


class FeedbackLoop:
    """One loop per completion site; `backend` makes first completions, `feedback_backend`
    (default: the same) the feedback iterations (LLMcoder's model_first / model_feedback)."""

    def __init__(self, backend: Backend, config: LoopConfig | None = None,
                 feedback_backend: Backend | None = None, judge: Any = None) -> None:
        self.backend = backend
        self.feedback_backend = feedback_backend or backend
        self.config = config or LoopConfig()
        self.judge = judge
        self._prefilled = False

    async def run(self, site: AnalysisContext, on_iteration: OnIteration | None = None,
                  entry_point: str | None = None) -> LoopResult:
        """Complete at `site` (its `completion` is ignored). `entry_point` with `site.tests`
        enables the turn-protocol feedback formats (level_feedback, ...)."""
        cfg = self.config
        started = time.monotonic()
        deadline = started + cfg.time_budget_s if cfg.time_budget_s is not None else math.inf
        rng = random.Random(cfg.seed)
        prefill = cfg.prompt_style == "chat" and cfg.prefill and all(
            getattr(b, "supports_prefill", False) for b in (self.backend, self.feedback_backend))
        parts = PromptParts(site.prefix, site.suffix, cfg.system_prompt, cfg.prompt_style, prefill)
        self._prefilled = prefill
        state = _RunState(log=[], errors=[], seen=set(), nodes=[], tokens=0)

        async def judge_batch(parent: Node | None, messages: tuple[dict[str, str], ...],
                              cands: list[Candidate], iteration: int) -> list[Node]:
            children = []
            for i, cand in enumerate(cands):
                completion = self._completion_of(site.prefix, cand.text)
                ctx = dataclasses.replace(site, completion=completion)
                budget = max(0.05, deadline - time.monotonic()) if deadline < math.inf else None
                results = await run_analyzers(ctx, cfg.analyzers, budget, judge=self.judge)
                node_id = f"{parent.id}.{len(state.children_of(parent))}" if parent else f"R.{i}"
                history = messages
                reply = cand.text
                if messages and messages[-1]["role"] == "assistant":  # prefilled: one message
                    history, reply = messages[:-1], messages[-1]["content"] + cand.text
                reply_msg = {"role": "assistant", "content": reply}
                node = Node(node_id, parent, (*history, reply_msg), cand.text, completion,
                            results, cand.completion_tokens)
                state.nodes.append(node)
                children.append(node)
                state.log.append(f"[loop] {node.id}: score {node.score:.2f}, "
                                 f"{'passing' if node.passing else 'failing'}")
                if on_iteration is not None:
                    maybe = on_iteration(IterationEvent(iteration, node))
                    if inspect.isawaitable(maybe):
                        await maybe
            return children

        stop_reason = "max_iter"
        state.log.append("[loop] creating first completions")
        first = first_messages(parts)
        try:
            cands = await self._sample(self.backend, parts, first, None, state, deadline)
        except (BackendError, TimeoutError) as exc:
            state.errors.append(str(exc))
            return self._result(state, started, "backend_error")
        children = await judge_batch(None, first, cands, 0)
        iterations = 0
        last_children = children
        while True:
            if any(n.passing for n in state.nodes):
                stop_reason = "passed"
                break
            if iterations >= cfg.max_iter:
                break
            if time.monotonic() >= deadline:
                stop_reason = "time_budget"
                break
            pool = last_children if not cfg.backtracking else state.nodes
            frontier = [n for n in pool if not n.expanded]
            if not frontier:
                stop_reason = "no_candidates"
                break
            node = pick(frontier, cfg.meta_temperature, rng)
            node.expanded = True
            iterations += 1
            state.log.append(f"[loop] iteration {iterations}: expanding {node.id} "
                             f"(score {node.score:.2f})")
            feedback = self._feedback_text(node, site, entry_point)
            messages = feedback_messages(parts, node.messages, node.completion, feedback,
                                         cfg.feedback_variant)
            try:
                cands = await self._sample(self.feedback_backend, parts, messages, feedback,
                                           state, deadline)
            except (BackendError, TimeoutError) as exc:
                state.errors.append(str(exc))
                state.log.append(f"[loop] backend failed: {exc}")
                stop_reason = "backend_error" if not state.nodes else "time_budget" \
                    if isinstance(exc, TimeoutError) else "backend_error"
                break
            last_children = await judge_batch(node, messages, cands, iterations)
        return self._result(state, started, stop_reason, iterations)

    def _completion_of(self, prefix: str, reply: str) -> str:
        if self.config.prompt_style == "fim":
            return reply
        return completion_from_reply(prefix, reply, self._prefilled)

    def _feedback_text(self, node: Node, site: AnalysisContext, entry_point: str | None) -> str:
        fmt = self.config.feedback_format
        if fmt == "analyzers" or site.tests is None or entry_point is None:
            return node.feedback
        from collabcoder.analyzers.feedback import FeedbackOptions, FeedbackTask, feedback_text
        from collabcoder.analyzers.program import analyze_program, run_program

        code = site.prefix + node.completion + site.suffix
        facts = analyze_program("", code, entry_point)
        verdict = run_program(code, site.tests) if facts.runnable else None
        task = FeedbackTask(site.prefix, entry_point, suite=site.tests)
        options = FeedbackOptions(num_agents=1, original_prompt=False, previous_response=False)
        return feedback_text(fmt, "main", task, "", code, verdict, facts, options)

    async def _sample(self, backend: Backend, parts: PromptParts,
                      messages: tuple[dict[str, str], ...], feedback: str | None,
                      state: _RunState, deadline: float) -> list[Candidate]:
        """Request n candidates; drop repeats of earlier ones and resample hotter/wider."""
        cfg = self.config
        temperature, n = cfg.temperature, cfg.n
        for attempt in range(cfg.max_retries + 1):
            request = self._request(parts, messages, feedback, n, temperature)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("time budget exhausted before the model answered")
            cands = await asyncio.wait_for(backend.complete(request),
                                           None if remaining == math.inf else remaining)
            state.tokens += sum(c.completion_tokens for c in cands)
            fresh = []
            for cand in cands:
                key = self._completion_of(parts.prefix, cand.text).strip()
                if not key or (cfg.require_unique and key in state.seen):
                    continue  # an empty completion shows nothing: as useless as a repeat
                state.seen.add(key)
                fresh.append(cand)
            if fresh:
                return fresh
            temperature = min(cfg.max_temperature, temperature + cfg.delta_temperature)
            n = min(cfg.max_n, n * cfg.factor_n)
            state.log.append(f"[loop] only empty or repeated completions (try {attempt + 1}); "
                             f"resampling with temperature {temperature:.2f}, n {n}")
        return []

    def _request(self, parts: PromptParts, messages: tuple[dict[str, str], ...],
                 feedback: str | None, n: int, temperature: float) -> CompletionRequest:
        cfg = self.config
        # A prefilled reply sits inside a code fence: its closing fence ends the code.
        stop = (*cfg.stop, "\n```") if parts.prefill and "\n```" not in cfg.stop else cfg.stop
        common: dict[str, Any] = {"n": n, "temperature": temperature,
                                  "max_tokens": cfg.max_tokens, "stop": stop, "seed": cfg.seed}
        if cfg.prompt_style == "fim":
            prefix = fim_feedback_prefix(parts.prefix, feedback) if feedback else parts.prefix
            return CompletionRequest(prompt=prefix, suffix=parts.suffix, **common)
        return CompletionRequest(messages=messages, **common)

    def _result(self, state: _RunState, started: float, stop_reason: str,
                iterations: int = 0) -> LoopResult:
        passing = [n for n in state.nodes if n.passing]
        ranked = passing or state.nodes
        best = max(ranked, key=lambda n: n.score) if ranked else None
        if stop_reason != "backend_error" and best is None:
            stop_reason = "no_candidates"
        state.log.append(f"[loop] done: {stop_reason}; best {best.id if best else None}")
        return LoopResult(best.completion if best else "", bool(passing), best, state.nodes,
                          iterations, state.tokens, time.monotonic() - started, stop_reason,
                          state.log, state.errors)


@dataclass
class _RunState:
    log: list[str]
    errors: list[str]
    seen: set[str]
    nodes: list[Node]
    tokens: int

    def children_of(self, parent: Node) -> list[Node]:
        return [n for n in self.nodes if n.parent is parent]
