"""The analyzer-guided feedback loop: best-first search over a tree of conversations.

Each node is one candidate completion with the conversation that produced it and its analyzer
results. The first request asks for `first_n` candidates in one backend call. The loop then
expands the frontier node picked by `meta_temperature` (0: the best score, inf: uniform, else
softmax over scores), sends the node's feedback to the model and judges the n new candidates.
Without backtracking only the children of the last expanded node are eligible. When a feedback
turn brings only repeats or empty replies, or nothing is left to expand, the next iteration
restarts from the root at a higher temperature (a restart counts against `max_iter`).

Scores put behaviour first (`evidence_first_score`): a candidate that passes more of the user's
tests, examples or asserts always ranks above one that passes fewer, whatever the static
checks say; ties go to the higher mean token log-probability where the backend returns it.
The loop stops at the first *verified* candidate (behaviour checked, all of it passed, nothing
critical blocks: stop reason `passed`); at the first candidate that passes every static check
when there is no behaviour to run (`static_only`); after `max_iter` iterations; or when the
wall-clock budget runs out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collabcoder.analyzers.protocol.prompts import fim_feedback_prefix
from collabcoder.analyzers.static import (
    AnalysisContext,
    AnalyzerResult,
    Reviewer,
    combined_feedback,
    run_analyzers,
)
from collabcoder.analyzers.static.result import (
    EVIDENCE_KINDS,
    EvidenceKind,
    evidence_first_score,
    verdict_words,
)
from collabcoder.server.backends.base import Backend, BackendError, Candidate, CompletionRequest
from collabcoder.server.loop.config import LoopConfig
from collabcoder.server.loop.messages import (
    PromptParts,
    PromptStyle,
    completion_from_reply,
    feedback_messages,
    first_messages,
)

Messages = tuple[dict[str, str], ...]
# (prefix, reply, prefilled) -> the text the reply inserts at the cursor
CompletionOf = Callable[[str, str, bool], str]
# (prompt parts, conversation, feedback or None, n, temperature) -> the model request
RequestFor = Callable[[PromptParts, Messages, str | None, int, float], CompletionRequest]


def passes(results: Sequence[AnalyzerResult]) -> bool:
    """Judged, and no critical analyzer blocks it."""
    return bool(results) and not any(r.blocks for r in results)


def evidence_of(results: Sequence[AnalyzerResult]) -> EvidenceKind:
    """The strongest kind of behaviour that was actually run (`none`: static checks only)."""
    kinds = [r.evidence.kind for r in results
             if r.evidence is not None and r.evidence.checked and not r.skipped]
    return max(kinds, key=EVIDENCE_KINDS.index, default="none")


def verified(results: Sequence[AnalyzerResult]) -> bool:
    """Behaviour was checked and all of it passed, and no critical analyzer blocks: the only
    state any surface may call passing."""
    checked = [r.evidence for r in results
               if r.evidence is not None and r.evidence.checked and not r.skipped]
    return passes(results) and bool(checked) and all(e.ok for e in checked)


def score_of(results: Sequence[AnalyzerResult]) -> float:
    """Evidence first: `EVIDENCE_SCALE` x the behaviour that passed, then the sum of analyzer
    scores (each in [0, 1]) plus 1 for passing every critical check. The one scoring rule of
    the loop's search and of what the editor shows."""
    static = sum(r.score for r in results if not r.skipped) + (1.0 if passes(results) else 0.0)
    return evidence_first_score(results, static)


class Judged:
    """Passing, verdict, score and the feedback text, all read off the analyzer results.

    `passing` is LLMcoder's meaning (no critical analyzer blocks) and drives the metrics named
    after it; what a user is shown is `verdict` and `verified`."""

    results: Sequence[AnalyzerResult]

    @property
    def passing(self) -> bool:
        return passes(self.results)

    @property
    def verified(self) -> bool:
        return verified(self.results)

    @property
    def verdict(self) -> str:
        return verdict_words(self.results)

    @property
    def evidence(self) -> EvidenceKind:
        return evidence_of(self.results)

    @property
    def score(self) -> float:
        return score_of(self.results)

    @property
    def feedback(self) -> str:
        return combined_feedback(self.results)


@dataclass
class Node(Judged):
    id: str  # path in the tree: "R", "R.0", "R.0.2", ...
    parent: Node | None
    messages: Messages  # conversation up to and including this reply
    reply: str
    completion: str
    results: list[AnalyzerResult]
    completion_tokens: int = 0
    logprob: float | None = None  # mean token log-probability, where the backend gives it
    expanded: bool = False

    @property
    def rank(self) -> tuple[float, float]:
        """Score, then log-probability: the order of the search and of the final pick."""
        return self.score, self.logprob if self.logprob is not None else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "parent": self.parent.id if self.parent else None,
            "completion": self.completion, "reply": self.reply, "score": self.score,
            "passing": self.passing, "verified": self.verified, "verdict": self.verdict,
            "logprob": self.logprob, "completion_tokens": self.completion_tokens,
            "messages": list(self.messages), "analyzer_results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class Iteration(Judged):
    """One judged candidate, as `on_iteration` gets it and as the editor's panel shows it (the
    same view for a loop node and for a turn of an agent team)."""

    iteration: int
    node_id: str
    parent_id: str | None
    completion: str
    results: tuple[AnalyzerResult, ...]

    @classmethod
    def of(cls, node: Node, iteration: int) -> Iteration:
        parent = node.parent.id if node.parent else None
        return cls(iteration, node.id, parent, node.completion, tuple(node.results))

    def to_wire(self) -> dict[str, Any]:
        """The `collab/iteration` fields after the run's token (docs/protocol.md)."""
        return {
            "iteration": self.iteration,
            "nodeId": self.node_id,
            "parentId": self.parent_id,
            "completion": self.completion,
            "score": round(self.score, 4),
            "passing": self.passing,
            "verified": self.verified,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "analyzers": [
                {"name": r.name, "kind": r.kind, "passed": r.passed, "score": round(r.score, 4),
                 "message": r.message, "infraError": r.infra_error, "skipped": r.skipped}
                for r in self.results
            ],
        }


@dataclass
class LoopResult:
    completion: str
    passed: bool  # the chosen candidate passes every critical analyzer (LLMcoder's meaning)
    best: Node | None
    nodes: list[Node]
    iterations: int
    tokens_generated: int
    time_s: float
    stop_reason: str  # passed | static_only | max_iter | time_budget | backend_error
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0  # model requests made

    @property
    def verified(self) -> bool:
        return self.best is not None and self.best.verified

    @property
    def verdict(self) -> str:
        return self.best.verdict if self.best is not None else "failed: no candidate"

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "completion": self.completion, "passed": self.passed, "verified": self.verified,
            "verdict": self.verdict, "requests": self.requests,
            "best": best.id if best else None, "iterations": self.iterations,
            "n_tokens_generated": self.tokens_generated, "time": self.time_s,
            "stop_reason": self.stop_reason, "errors": self.errors,
            "messages": list(best.messages) if best else [],
            "analyzer_results": [r.to_dict() for r in best.results] if best else [],
            "nodes": [n.to_dict() for n in self.nodes], "log": "\n".join(self.log),
        }


OnIteration = Callable[[Iteration], Awaitable[None] | None]


def reply_completion(style: PromptStyle, prefix: str, reply: str, prefilled: bool) -> str:
    """The loop's default `completion_of`: a FIM reply is the completion itself; a chat reply is
    aligned with the code before the cursor."""
    return reply if style == "fim" else completion_from_reply(prefix, reply, prefilled)


# A prefilled reply continues the code at the cursor. When the cursor is indented, the first
# line back at column 0 leaves its block, which `trim_to_block` cuts anyway: stop generating
# there (SmolLM2 otherwise wrote on to the token limit in about half its HumanEval replies).
# Only for prefilled replies: the backends that continue them (llama.cpp, vLLM) take any number
# of stop strings, where OpenAI's own API takes four.
BLOCK_END_STOPS = ("\ndef ", "\nclass ", "\n@", "\nif ", "\nfor ", "\nprint(", "\nassert ",
                   "\n#", "\nimport ", "\nfrom ")


def loop_request(config: LoopConfig, parts: PromptParts, messages: Messages,
                 feedback: str | None, n: int, temperature: float) -> CompletionRequest:
    """The loop's default `request_for`: chat messages, or a FIM prompt with the feedback as
    comments above the cursor."""
    stop = config.stop
    if parts.prefill:  # the reply sits inside a code fence: its closing fence ends the code
        indented = parts.prefix.split("\n")[-1][:1] in (" ", "\t")
        extra = ("\n```", *(BLOCK_END_STOPS if indented else ()))
        stop = tuple(dict.fromkeys((*config.stop, *extra)))
    common: dict[str, Any] = {"n": n, "temperature": temperature, "logprobs": True,
                              "max_tokens": config.max_tokens, "stop": stop, "seed": config.seed}
    if config.prompt_style == "fim":
        prefix = fim_feedback_prefix(parts.prefix, feedback) if feedback else parts.prefix
        return CompletionRequest(prompt=prefix, suffix=parts.suffix, **common)
    return CompletionRequest(messages=messages, **common)


def pick(frontier: Sequence[Node], meta_temperature: float, rng: random.Random) -> Node:
    """0: the best node (log-probability, then the first, on ties); inf: uniform; else softmax
    over scores / T."""
    if meta_temperature == 0:
        return max(frontier, key=lambda n: n.rank)
    if math.isinf(meta_temperature):
        return rng.choice(list(frontier))
    top = max(n.score for n in frontier)
    weights = [math.exp((n.score - top) / meta_temperature) for n in frontier]
    return rng.choices(list(frontier), weights=weights, k=1)[0]


class FeedbackLoop:
    """One loop per completion site; `backend` makes first completions, `feedback_backend`
    (default: the same) the feedback iterations (LLMcoder's model_first / model_feedback).

    Two hooks let a caller whose model sees other text than the analyzers judge (the editor
    shows the model a window of the document) adapt the loop without subclassing it:
    `completion_of` turns a reply into the text at the cursor (default `reply_completion`),
    `request_for` builds each model request (default `loop_request`)."""

    def __init__(self, backend: Backend, config: LoopConfig | None = None,
                 feedback_backend: Backend | None = None, reviewer: Reviewer | None = None, *,
                 completion_of: CompletionOf | None = None,
                 request_for: RequestFor | None = None) -> None:
        self.backend = backend
        self.feedback_backend = feedback_backend or backend
        self.config = config or LoopConfig()
        self.reviewer = reviewer  # for the `score` analyzer, if it is configured
        self.completion_of = completion_of or functools.partial(
            reply_completion, self.config.prompt_style)
        self.request_for = request_for or functools.partial(loop_request, self.config)

    async def run(self, ctx: AnalysisContext, on_iteration: OnIteration | None = None,
                  entry_point: str | None = None) -> LoopResult:
        """Complete at `ctx` (its `completion` is ignored). `entry_point` with `ctx.tests`
        enables the turn-protocol feedback formats (level_feedback, ...)."""
        cfg = self.config
        started = time.monotonic()
        deadline = started + cfg.time_budget_s if cfg.time_budget_s is not None else math.inf
        rng = random.Random(cfg.seed)
        prefill = cfg.prompt_style == "chat" and cfg.prefill and all(
            getattr(b, "supports_prefill", False) for b in (self.backend, self.feedback_backend))
        parts = PromptParts(ctx.prefix, ctx.suffix, cfg.system_prompt, cfg.prompt_style, prefill)
        state = _RunState(log=[], errors=[], seen=set(), nodes=[], tokens=0)

        async def judge_batch(parent: Node | None, messages: Messages,
                              cands: list[Candidate], iteration: int) -> list[Node]:
            children = []
            for cand in cands:
                completion = self.completion_of(ctx.prefix, cand.text, prefill)
                judged = dataclasses.replace(ctx, completion=completion)
                budget = max(0.05, deadline - time.monotonic()) if deadline < math.inf else None
                results = await run_analyzers(judged, cfg.analyzers, budget, reviewer=self.reviewer)
                node_id = f"{parent.id if parent else 'R'}.{len(state.children_of(parent))}"
                history = messages
                reply = cand.text
                if messages and messages[-1]["role"] == "assistant":  # prefilled: one message
                    history, reply = messages[:-1], messages[-1]["content"] + cand.text
                reply_msg = {"role": "assistant", "content": reply}
                node = Node(node_id, parent, (*history, reply_msg), cand.text, completion,
                            results, cand.completion_tokens, cand.logprob)
                state.nodes.append(node)
                children.append(node)
                state.log.append(f"[loop] {node.id}: score {node.score:.2f}, {node.verdict}")
                if on_iteration is not None:
                    maybe = on_iteration(Iteration.of(node, iteration))
                    if inspect.isawaitable(maybe):
                        await maybe
            return children

        state.log.append("[loop] creating first completions")
        first = first_messages(parts)
        first_n = cfg.first_n or cfg.n
        try:
            cands = await self._sample(self.backend, parts, first, None, state, deadline,
                                       first_n, cfg.temperature)
        except (BackendError, TimeoutError) as exc:
            state.errors.append(str(exc))
            return self._result(state, started, "backend_error")
        last_children = await judge_batch(None, first, cands, 0)
        iterations = restarts = 0
        restart = not last_children
        while True:
            stop_reason = self._stop_reason(state.nodes)
            if stop_reason is not None:
                break
            stop_reason = "max_iter"
            if iterations >= cfg.max_iter:
                break
            if time.monotonic() >= deadline:
                stop_reason = "time_budget"
                break
            pool = last_children if not cfg.backtracking else state.nodes
            frontier = [n for n in pool if not n.expanded]
            iterations += 1
            try:
                if restart or not frontier:
                    # Feedback brought nothing new, or nothing is left to expand: start over
                    # from the root, hotter each time, rather than stop with budget left.
                    restarts += 1
                    temperature = min(cfg.max_temperature,
                                      cfg.temperature + restarts * cfg.delta_temperature)
                    state.log.append(f"[loop] iteration {iterations}: restarting from the root "
                                     f"at temperature {temperature:.2f}")
                    cands = await self._sample(self.backend, parts, first, None, state,
                                               deadline, first_n, temperature)
                    last_children = await judge_batch(None, first, cands, iterations)
                    restart = not last_children
                    continue
                node = pick(frontier, cfg.meta_temperature, rng)
                node.expanded = True
                state.log.append(f"[loop] iteration {iterations}: expanding {node.id} "
                                 f"(score {node.score:.2f})")
                feedback = self._feedback_text(node, ctx, entry_point)
                messages = feedback_messages(parts, node.messages, node.completion, feedback,
                                             cfg.feedback_variant)
                cands = await self._sample(self.feedback_backend, parts, messages, feedback,
                                           state, deadline, cfg.n, cfg.temperature)
            except (BackendError, TimeoutError) as exc:
                state.errors.append(str(exc))
                state.log.append(f"[loop] backend failed: {exc}")
                stop_reason = "time_budget" if isinstance(exc, TimeoutError) else "backend_error"
                break
            last_children = await judge_batch(node, messages, cands, iterations)
            restart = not last_children
        return self._result(state, started, stop_reason, iterations)

    @staticmethod
    def _stop_reason(nodes: Sequence[Node]) -> str | None:
        """`passed` once a candidate is verified; `static_only` once one passes every static
        check and no candidate got any behaviour checked (there is none to run, or none fits
        the budget), since more search cannot earn stronger evidence."""
        if any(n.verified for n in nodes):
            return "passed"
        if any(n.passing for n in nodes) and all(n.evidence == "none" for n in nodes):
            return "static_only"
        return None

    def _feedback_text(self, node: Node, ctx: AnalysisContext, entry_point: str | None) -> str:
        fmt = self.config.feedback_format
        if fmt == "analyzers" or ctx.tests is None or entry_point is None:
            return node.feedback
        from collabcoder.analyzers.protocol.feedback import FeedbackOptions, feedback_text
        from collabcoder.analyzers.protocol.program import (
            FeedbackTask,
            analyze_program,
            run_program,
        )

        code = ctx.prefix + node.completion + ctx.suffix
        facts = analyze_program("", code, entry_point)
        verdict = run_program(code, ctx.tests) if facts.runnable else None
        task = FeedbackTask(ctx.prefix, entry_point, suite=ctx.tests)
        options = FeedbackOptions(num_agents=1, original_prompt=False, previous_response=False)
        return feedback_text(fmt, "main", task, "", code, verdict, facts, options)

    async def _sample(self, backend: Backend, parts: PromptParts, messages: Messages,
                      feedback: str | None, state: _RunState, deadline: float, n: int,
                      temperature: float) -> list[Candidate]:
        """Request n candidates in one call; drop repeats of earlier ones and empty replies,
        and resample hotter/wider up to `max_retries` times."""
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            request = self.request_for(parts, messages, feedback, n, temperature)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("time budget exhausted before the model answered")
            cands = await asyncio.wait_for(backend.complete(request),
                                           None if remaining == math.inf else remaining)
            state.requests += 1
            state.tokens += sum(c.completion_tokens for c in cands)
            fresh = []
            for cand in cands:
                key = self.completion_of(parts.prefix, cand.text, parts.prefill).strip()
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

    def _result(self, state: _RunState, started: float, stop_reason: str,
                iterations: int = 0) -> LoopResult:
        """The best candidate: verified first, then passing the critical checks, then rank."""
        best = max(state.nodes, key=lambda n: (n.verified, n.passing, *n.rank), default=None)
        state.log.append(f"[loop] done: {stop_reason}; best {best.id if best else None}"
                         f"{f' ({best.verdict})' if best else ''}")
        return LoopResult(best.completion if best else "", bool(best and best.passing), best,
                          state.nodes, iterations, state.tokens, time.monotonic() - started,
                          stop_reason, state.log, state.errors, state.requests)


@dataclass
class _RunState:
    log: list[str]
    errors: list[str]
    seen: set[str]
    nodes: list[Node]
    tokens: int
    requests: int = 0

    def children_of(self, parent: Node | None) -> list[Node]:
        return [n for n in self.nodes if n.parent is parent]
