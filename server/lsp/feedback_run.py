"""`collab.runFeedbackIterations`: the full feedback loop at a site, each judged candidate
streamed as `collab/iteration`, `$/progress` on the client's work-done token (cancelling it
cancels the run), and a result whose edits are returned, never applied."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.workspace import TextDocument

from collabcoder.server.backends.base import BackendError
from collabcoder.server.loop import Iteration
from collabcoder.server.lsp.commands import RunArguments, insertion
from collabcoder.server.lsp.completers import FeedbackOutcome
from collabcoder.server.lsp.documents import editor_environment
from collabcoder.server.lsp.status import report_failure, report_success, set_verdict, working

if TYPE_CHECKING:
    from collabcoder.server.lsp.server import CollabLanguageServer

log = logging.getLogger(__name__)

ITERATION_NOTIFICATION = "collab/iteration"

# The work-done token of the executeCommand request being handled (set by the server's
# protocol: pygls hands command handlers only the arguments).
WORK_DONE_TOKEN: contextvars.ContextVar[types.ProgressToken | None] = contextvars.ContextVar(
    "work_done_token", default=None
)


class RunProgress:
    """`$/progress` for one run, on a token the client made (none: nothing is sent)."""

    def __init__(self, ls: CollabLanguageServer, candidates: int) -> None:
        self.ls = ls
        self.token = WORK_DONE_TOKEN.get()
        self.candidates = candidates

    def begin(self) -> None:
        if self.token is None:
            return
        self.ls.work_done_progress.begin(self.token, types.WorkDoneProgressBegin(
            title="Collab: feedback iterations", cancellable=True,
            message=f"0/{self.candidates} candidates", percentage=0))
        cancel = self.ls.work_done_progress.tokens.get(self.token)
        run = asyncio.current_task()
        if cancel is not None and run is not None:
            loop = asyncio.get_running_loop()
            cancel.add_done_callback(
                lambda f: loop.call_soon_threadsafe(run.cancel) if f.cancelled() else None)

    def report(self, view: Iteration) -> None:
        if self.token is None:
            return
        self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(
            message=f"{view.node_id}: {view.verdict}",
            percentage=min(99, int(100 * (view.iteration + 1) / self.candidates))))

    def end(self, stop_reason: str, count: int) -> None:
        if self.token is None:
            return
        self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(
            message=f"{stop_reason}: {count} candidates"))
        self.ls.work_done_progress.tokens.pop(self.token, None)


async def run_feedback(
    ls: CollabLanguageServer, doc: TextDocument, args: RunArguments
) -> dict[str, Any]:
    """The run's result payload (docs/protocol.md); failures end the run with what it has."""
    iterations = ls.engine.settings.max_iterations if args.iterations is None else args.iterations
    at = args.position
    site = ls.engine.site(doc, at)
    progress = RunProgress(ls, iterations + 1)
    progress.begin()

    async def on_iteration(view: Iteration) -> None:
        ls.protocol.notify(ITERATION_NOTIFICATION, {"token": args.token, **view.to_wire()})
        progress.report(view)

    started = time.perf_counter()
    outcome = FeedbackOutcome("", False, "backend_error", 0.0, [])
    with working(ls):
        try:
            outcome = await ls.engine.run_feedback(site, editor_environment(ls, doc), iterations,
                                                   on_iteration)
            if outcome.errors and not outcome.candidates:
                report_failure(ls, BackendError(outcome.errors[-1]))
            else:
                report_success(ls, (time.perf_counter() - started) * 1000)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, (BackendError, asyncio.TimeoutError, TimeoutError)):
                log.exception("feedback iterations failed")
            report_failure(ls, exc)
        finally:
            progress.end(outcome.stop_reason, len(outcome.candidates))
    if outcome.candidates:
        set_verdict(ls, outcome.verdict)
        if args.token is not None:
            ls.stats.panel.offer(args.token)
    return {
        "token": args.token,
        "completion": outcome.completion,
        "passed": outcome.passed,
        "verdict": outcome.verdict,
        "verified": outcome.verified,
        "stopReason": outcome.stop_reason,
        "timeMs": round((time.perf_counter() - started) * 1000, 1),
        "edit": insertion(args.uri, at, outcome.completion),
        "candidates": [
            {"nodeId": c.node_id, "completion": c.completion, "score": round(c.score, 4),
             "passing": c.passing, "verified": c.verified, "verdict": c.verdict,
             "evidence": c.evidence, "edit": insertion(args.uri, at, c.completion)}
            for c in outcome.candidates
        ],
    }
