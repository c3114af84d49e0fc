"""The inline completion flow: a newer request in the same document supersedes the older one;
the forward-typing cache answers while the user types into a shown suggestion; otherwise, after
the debounce of automatic requests, the engine suggests within the latency budget (twice it for
invoked requests). Every failure ends as "no suggestion" plus a status and log entry, never as
an error to the editor."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.workspace import TextDocument

from collabcoder.server.backends.base import BackendError
from collabcoder.server.lsp.completers import Suggestion
from collabcoder.server.lsp.context import CursorSite, split_at
from collabcoder.server.lsp.documents import Document, editor_environment
from collabcoder.server.lsp.status import (
    notify_status,
    report_failure,
    report_success,
    working,
)
from collabcoder.server.lsp.telemetry import Timing

if TYPE_CHECKING:
    from collabcoder.server.lsp.server import CollabLanguageServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """A suggestion to show, and its id (accepting it reports this id)."""

    text: str
    item_id: str


class BudgetSpent(BackendError):
    """Nothing usable came from the model within the request's latency budget."""


class EmptyCompletion(BackendError):
    """The model answered with nothing: an empty or whitespace-only reply."""


def _budget_message(ls: CollabLanguageServer, budget_ms: float) -> str:
    """Why a request ran out of time: the budget, and the failure being retried, if any."""
    message = (f"the model did not answer within the {budget_ms:g} ms latency budget "
               "(collab.latencyBudgetMs)")
    completer = ls.engine.completer
    pending = getattr(getattr(completer, "backend", None), "pending_retry", None)
    if pending:
        message += f"; it was retrying after: {pending}"
    return message


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def complete(
    ls: CollabLanguageServer,
    document: Document,
    doc: TextDocument,
    position: types.Position,
    automatic: bool,
) -> Offer | None:
    """The suggestion at `position`, or None. Raises CancelledError when the client cancelled
    the request (a superseded one just gets None)."""
    started = time.perf_counter()
    record = document.begin_request()
    try:
        ls.stats.requests += 1
        prefix, suffix = split_at(doc, position)
        hit = document.cache.lookup(prefix, suffix)
        if hit is not None:
            ls.stats.cache_hits += 1
            ls.stats.timings.append(Timing(_ms_since(started), outcome="cached"))
            return Offer(hit.text, hit.item_id)
        site = ls.engine.site(doc, position, (prefix, suffix))
        task = ls.tasks.spawn(_suggest(ls, document, site, doc, automatic, started))
        record.task = task
        try:
            offer: Offer | None = await task
            return offer
        except asyncio.CancelledError:
            if record.superseded:
                ls.stats.superseded += 1
                ls.stats.timings.append(Timing(_ms_since(started), outcome="superseded"))
                return None
            ls.stats.cancelled += 1
            ls.stats.timings.append(Timing(_ms_since(started), outcome="cancelled"))
            raise
    finally:
        document.end_request(record)


async def _suggest(
    ls: CollabLanguageServer,
    document: Document,
    site: CursorSite,
    doc: TextDocument,
    automatic: bool,
    started: float,
) -> Offer | None:
    settings = ls.engine.settings
    debounce_s = settings.debounce_ms / 1000 if automatic else 0.0
    if debounce_s:
        await asyncio.sleep(debounce_s)
    deadline = time.monotonic() + settings.latency_budget_ms / 1000 * (1 if automatic else 2)
    env = editor_environment(ls, doc)
    suggestion: Suggestion | None = None
    budget_ms = settings.latency_budget_ms * (1 if automatic else 2)
    with working(ls):
        try:
            suggestion = await ls.engine.ready().suggest(site, env, invoked=not automatic,
                                                         deadline=deadline)
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError):
            suggestion = Suggestion("", finish="budget")
        except Exception as exc:
            if not isinstance(exc, BackendError):
                log.exception("inline completion failed")
            report_failure(ls, exc)
        finally:
            total_ms = _ms_since(started)
        if suggestion is not None and suggestion.finish == "budget" and not suggestion.text:
            report_failure(ls, BudgetSpent(_budget_message(ls, budget_ms)))
        elif suggestion is not None and suggestion.finish == "empty":
            report_failure(ls, EmptyCompletion(
                f"the model ({ls.engine.label}) returned an empty completion: nothing to show"))
        elif suggestion is not None:
            report_success(ls, total_ms - debounce_s * 1000)
    timing = Timing(total_ms, (suggestion.model_s * 1000) if suggestion else 0.0,
                    (suggestion.analyzers_s * 1000) if suggestion else 0.0, debounce_s * 1000)
    ls.stats.timings.append(timing)
    if suggestion is None:
        timing.outcome = "error"
        return None
    if not suggestion.text:
        timing.outcome = "hidden" if suggestion.finish == "hidden" else "empty"
        return None
    item_id = uuid.uuid4().hex[:16]
    document.cache.put(site.prefix, site.suffix, suggestion.text, item_id)
    ls.stats.inline.offer(item_id)
    if suggestion.verdict is not None:
        ls.status.last_verdict = suggestion.verdict
    notify_status(ls)
    return Offer(suggestion.text, item_id)
