"""Run analyzers on one candidate: syntax first, then the rest concurrently, each in its budget.

Never raises for an analyzer's sake: a crash or a timeout becomes an infra result
(`infra_error=True`, `passed=True`) so one broken tool cannot stall or fail the feedback loop.
Only a caller error (an unknown analyzer name) raises, before anything runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeAlias

from collabcoder.analyzers.static.base import Analyzer, AnalyzerTimeout, AnalyzerUnavailable
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.llm_score import Reviewer, ScoreAnalyzer
from collabcoder.analyzers.static.registry import canonical_name, get_analyzer
from collabcoder.analyzers.static.result import AnalyzerResult, infra_result, skipped_result
from collabcoder.analyzers.static.window import bounded

logger = logging.getLogger(__name__)

# Behaviour (the user's tests, examples and asserts) is the only evidence that can make a
# candidate "verified"; the static checks rank and explain the rest.
DEFAULT_ANALYZERS: tuple[str, ...] = ("syntax", "mypy", "signature", "hallucination", "behaviour")

AnalyzerSpec: TypeAlias = "str | Analyzer"  # a name/alias, or a ready analyzer object


def resolve_analyzers(
    names: Sequence[AnalyzerSpec], reviewer: Reviewer | None = None
) -> list[Analyzer]:
    """Names (or aliases, or ready analyzer objects) -> analyzers, deduplicated, in order."""
    seen: set[str] = set()
    out: list[Analyzer] = []
    for spec in names:
        if isinstance(spec, str):
            key = canonical_name(spec)
            analyzer: Analyzer = (
                ScoreAnalyzer(reviewer) if key == "score" and reviewer is not None else get_analyzer(key)
            )
        else:
            analyzer = spec
        if analyzer.name not in seen:
            seen.add(analyzer.name)
            out.append(analyzer)
    return out


def expected_cost(analyzer: Analyzer, ctx: AnalysisContext) -> float:
    """What the analyzer expects a run to take (`expected_cost_s(ctx)`, optional; 0 if none)."""
    cost = getattr(analyzer, "expected_cost_s", None)
    try:
        return float(cost(ctx)) if callable(cost) else 0.0
    except Exception:
        return 0.0


async def _run_one(analyzer: Analyzer, ctx: AnalysisContext, run_deadline: float) -> AnalyzerResult:
    now = time.monotonic()
    budget = max(0.0, min(ctx.budget_for(analyzer.name), run_deadline - now))
    cost = expected_cost(analyzer, ctx)
    if cost > budget:  # would not fit the latency budget: not run, never a verdict against it
        return skipped_result(analyzer.name, analyzer.kind,
                              f"needs about {cost:.2f} s, {budget:.2f} s left in the budget")
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(analyzer.analyze(ctx, now + budget), timeout=budget)
        if not isinstance(result, AnalyzerResult):
            raise TypeError(f"returned {type(result).__name__}, not AnalyzerResult")
    except (asyncio.TimeoutError, TimeoutError) as exc:  # distinct types before 3.11
        reason = str(exc) if isinstance(exc, AnalyzerTimeout) else "no result"
        result = infra_result(analyzer.name, analyzer.kind,
                              f"timed out after {budget:.2f} s ({reason})")
    except AnalyzerUnavailable as exc:
        result = infra_result(analyzer.name, analyzer.kind, str(exc)[:500])
    except (Exception, SystemExit) as exc:  # SystemExit: tools that still call sys.exit
        logger.warning("analyzer %s crashed", analyzer.name, exc_info=True)
        result = infra_result(analyzer.name, analyzer.kind,
                              f"crashed: {type(exc).__name__}: {exc}"[:500])
    return result.with_duration(time.perf_counter() - started)


async def run_analyzers(
    ctx: AnalysisContext,
    names: Sequence[AnalyzerSpec] = DEFAULT_ANALYZERS,
    budget_s: float | None = None,
    *,
    reviewer: Reviewer | None = None,
) -> list[AnalyzerResult]:
    """Results in the order of `names`.

    `budget_s` caps the whole run (an inline request's latency budget); each analyzer also has
    its own budget, `ctx.budget_for(name)`. The syntax check always runs first as a gate, even
    when not requested: when it fails, the others are reported as skipped and its result is
    included so the caller sees why. A document over `window.LARGE_DOCUMENT_LINES` lines is
    judged in a window around the completion (`window.bounded`): parsing a whole huge module
    holds the GIL for seconds, which would stall the caller's event loop even from a thread.
    """
    analyzers = resolve_analyzers(names, reviewer)
    ctx = bounded(ctx)
    run_deadline = time.monotonic() + budget_s if budget_s is not None else math.inf
    requested = [a.name for a in analyzers]
    syntax_result = await _run_one(get_analyzer("syntax"), ctx, run_deadline)
    if not syntax_result.passed and not syntax_result.infra_error:
        skipped = [
            syntax_result if a.name == "syntax"
            else skipped_result(a.name, a.kind, "the completion has a syntax error")
            for a in analyzers
        ]
        return skipped if "syntax" in requested else [syntax_result, *skipped]
    others = [a for a in analyzers if a.name != "syntax"]
    results = await asyncio.gather(*(_run_one(a, ctx, run_deadline) for a in others))
    by_name = dict(zip([a.name for a in others], results, strict=True))
    by_name["syntax"] = syntax_result
    return [by_name[name] for name in requested]


def run_analyzers_sync(
    ctx: AnalysisContext,
    names: Sequence[AnalyzerSpec] = DEFAULT_ANALYZERS,
    budget_s: float | None = None,
    *,
    reviewer: Reviewer | None = None,
) -> list[AnalyzerResult]:
    """`run_analyzers` for synchronous callers (CLI, scripts, notebooks)."""
    coro_args = (ctx, names, budget_s)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_analyzers(*coro_args, reviewer=reviewer))
    # Called from inside a running loop: asyncio.run would refuse, so use a helper thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run_analyzers(*coro_args, reviewer=reviewer)).result()


async def warm_up(
    ctx: AnalysisContext, names: Sequence[AnalyzerSpec] = DEFAULT_ANALYZERS, budget_s: float = 120.0
) -> list[AnalyzerResult]:
    """Run the analyzers once on the document without a completion and with a generous budget,
    so mypy's build and jedi's environment are warm before the first real candidate (a cold
    mypy build takes about a second, more with big third-party imports)."""
    cold = dataclasses.replace(ctx, completion="", time_budget_s=budget_s, time_budgets={})
    return await run_analyzers(cold, names)
