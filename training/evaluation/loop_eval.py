"""Run the feedback loop over a pairs dataset (`collab-train loop evaluate`) and on one input
(`collab-train loop complete`).

Layout written by `evaluate`, one timestamp folder per repetition:

    DATA_ROOT/NAME/level_k/eval/<config-stem>/<YYYY-MM-DD_HH-MM-SS>/results.json
    DATA_ROOT/NAME/level_k/eval/<config-stem>/<YYYY-MM-DD_HH-MM-SS>/readable_logs/<i>.txt

results.json maps the pair's index ("0", "1", ...) to LLMcoder's fields (messages,
analyzer_results, log, time, n_tokens_generated) plus ours (pair, completion, passed: every
critical analyzer passed, verified: behaviour checked and passed, verdict: the verdict words,
iterations, loops_required, tokens_used, stop_reason, error). A pair whose run fails (backend
down, model missing) is recorded with its error and the run goes on. Functions return data;
printing and progress bars belong to the CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.static import AnalysisContext
from collabcoder.server.backends.base import Backend
from collabcoder.server.loop import FeedbackLoop, LoopConfig, LoopResult, Node
from collabcoder.training.data.pairs import Pair, level_dirs, load_pairs
from collabcoder.training.evaluation.loop_config import BackendSettings, LoopEvalConfig

TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
PairProgress = Callable[[int, int, int], None]  # (repetition, pairs done, pairs total)


def build_backend(kind: str, model: str, endpoint: str | None = None,
                  api_key: str | None = None, options: dict[str, Any] | None = None) -> Backend:
    """`make_backend`; an endpoint with an in-process kind stays an error, but a key (which may
    come from the environment) is dropped for them."""
    from collabcoder.server.backends.factory import make_backend

    return make_backend(kind, model, endpoint=endpoint,
                        api_key=api_key if kind == "openai" else None, **(options or {}))


def backends_for(settings: BackendSettings, first: str, feedback: str) -> tuple[Backend, Backend]:
    """The first-completion and feedback backends; one object when both name the same model."""
    key = settings.api_key()
    b_first = build_backend(settings.backend, first, settings.endpoint, key,
                            settings.backend_options)
    if feedback == first:
        return b_first, b_first
    return b_first, build_backend(settings.backend, feedback, settings.endpoint, key,
                                  settings.backend_options)


# ---- one run -------------------------------------------------------------------------------------


def path_of(node: Node | None) -> list[Node]:
    """Root-to-node chain: the conversation that produced `node`."""
    chain: list[Node] = []
    while node is not None:
        chain.append(node)
        node = node.parent
    return chain[::-1]


def llmcoder_results(node: Node) -> dict[str, dict[str, Any]]:
    """One turn's analyzer results in LLMcoder's shape: {name: {type, score, pass, message}}."""
    return {
        r.name: {"type": r.kind, "score": r.score, "pass": r.passed, "message": r.message,
                 "infra_error": r.infra_error, "skipped": r.skipped}
        for r in node.results
    }


def result_record(result: LoopResult, pair: str | None = None) -> dict[str, Any]:
    """What results.json holds for one run (also the JSON of `complete --log-conversation`)."""
    chain = path_of(result.best)
    return {
        "pair": pair,
        "messages": list(result.best.messages) if result.best else [],
        "analyzer_results": [llmcoder_results(n) for n in chain],
        "log": "\n".join(result.log),
        "time": result.time_s,
        "n_tokens_generated": result.tokens_generated,
        "completion": result.completion,
        "passed": result.passed,
        "verified": result.verified,
        "verdict": result.verdict,
        "iterations": result.iterations,
        # Feedback turns on the chosen conversation (LLMcoder's "loops required").
        "loops_required": max(0, len(chain) - 1),
        # Tokens of the replies on the chosen conversation; n_tokens_generated counts every
        # candidate, the discarded ones too.
        "tokens_used": sum(n.completion_tokens for n in chain),
        "stop_reason": result.stop_reason,
        "error": "; ".join(result.errors) or None,
        "nodes": len(result.nodes),
    }


def error_record(pair: str | None, error: str, elapsed: float) -> dict[str, Any]:
    return {
        "pair": pair, "messages": [], "analyzer_results": [], "log": "", "time": elapsed,
        "n_tokens_generated": 0, "completion": "", "passed": False, "verified": False,
        "verdict": f"failed: {error}", "iterations": 0,
        "loops_required": 0, "tokens_used": 0, "stop_reason": "error", "error": error,
        "nodes": 0,
    }


def readable_log(record: dict[str, Any], title: str = "") -> str:
    """The conversation as a person reads it: log lines, turns, analyzer verdicts, result."""
    out = [f"# {title}".rstrip(), ""] if title else []
    if record.get("log"):
        out += [record["log"], ""]
    turns = record.get("analyzer_results", [])
    messages = record.get("messages", [])
    # The `separate` variant keeps only the last turn in its messages: align from the end.
    replies = len(turns) - len([m for m in messages if m["role"] == "assistant"])
    for msg in messages:
        out.append(f"--- {msg['role']} ---")
        out.append(msg["content"])
        if msg["role"] == "assistant":
            if 0 <= replies < len(turns):
                for name, res in turns[replies].items():
                    state = ("infra error" if res.get("infra_error") else
                             "skipped" if res.get("skipped") else
                             "pass" if res["pass"] else "FAIL")
                    out.append(f"[{name}] {state}, score {res['score']:.2f}: "
                               f"{res['message'].strip()}")
            replies += 1
        out.append("")
    out.append("--- result ---")
    out.append(f"verdict: {record.get('verdict', '?')}  stop: {record['stop_reason']}  "
               f"iterations: {record['iterations']}  tokens: {record['n_tokens_generated']}  "
               f"time: {record['time']:.2f} s")
    if record.get("error"):
        out.append(f"error: {record['error']}")
    out += ["completion:", record.get("completion", "")]
    return "\n".join(out) + "\n"


async def run_once(first: Backend, feedback: Backend, config: LoopConfig, prefix: str,
                   suffix: str = "", on_iteration: Any = None,
                   entry_point: str | None = None) -> LoopResult:
    loop = FeedbackLoop(first, config, feedback_backend=feedback)
    ctx = AnalysisContext(prefix=prefix, completion="", suffix=suffix)
    return await loop.run(ctx, on_iteration=on_iteration, entry_point=entry_point)


def write_conversation(folder: Path, record: dict[str, Any], stem: str | None = None) -> Path:
    """`complete --log-conversation`: `<stem>.txt` (readable) and `<stem>.json` in `folder`."""
    stem = stem or dt.datetime.now().strftime(TIMESTAMP_FORMAT + "-%f")
    atomic_write(folder / f"{stem}.txt", readable_log(record, "conversation"))
    atomic_write(folder / f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False))
    return folder / f"{stem}.txt"


# ---- evaluation over a dataset ---------------------------------------------------------------------


@dataclass
class RepetitionResult:
    level_dir: Path
    folder: Path  # the timestamp folder
    records: dict[str, dict[str, Any]]

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records.values() if r["stop_reason"] in ("error",
                                                                             "backend_error"))

    @property
    def passed(self) -> int:
        return sum(1 for r in self.records.values() if r["passed"])


@dataclass
class EvaluationRun:
    config_name: str
    repetitions: list[RepetitionResult] = field(default_factory=list)


def eval_dir(level_dir: Path, config_name: str) -> Path:
    return level_dir / "eval" / config_name


def timestamp_folder(parent: Path, now: dt.datetime | None = None) -> Path:
    """A new `YYYY-MM-DD_HH-MM-SS` folder; `_1`, `_2` added when one second held two runs
    (the suffix keeps lexical order equal to creation order)."""
    stamp = (now or dt.datetime.now()).strftime(TIMESTAMP_FORMAT)
    folder, k = parent / stamp, 0
    while folder.exists():
        k += 1
        folder = parent / f"{stamp}_{k}"
    folder.mkdir(parents=True)
    return folder


def repetition_folders(level_dir: Path, config_name: str) -> list[Path]:
    """Timestamp folders holding a results.json, oldest first."""
    root = eval_dir(level_dir, config_name)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "results.json").is_file())


async def _evaluate_pair(first: Backend, feedback: Backend, config: LoopConfig,
                         pair: Pair) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = await run_once(first, feedback, config, pair.input)
    except Exception as exc:  # a pair must never end the run: record what went wrong
        return error_record(pair.name, f"{type(exc).__name__}: {exc}",
                            time.monotonic() - started)
    return result_record(result, pair.name)


def evaluate_config(config: LoopEvalConfig, config_name: str, data_root: Path,
                    n_repeat: int = 1, limit: int | None = None,
                    progress: PairProgress | None = None,
                    backends: tuple[Backend, Backend] | None = None) -> EvaluationRun:
    """Run the loop `n_repeat` times over every pair of the config's dataset (all levels).

    Each repetition writes its results.json atomically once it is complete; the readable logs
    appear pair by pair so a long run can be followed. The backends (built from the config
    unless given) are closed at the end: HTTP clients die with the run's event loop anyway.
    """
    levels = level_dirs(data_root, config.dataset)  # raises PairsError naming the folder
    per_level = [(lvl, load_pairs(lvl)[:limit] if limit else load_pairs(lvl)) for lvl in levels]
    first, feedback = backends or backends_for(config, config.first_model, config.feedback_model)
    # One event loop for the whole run: HTTP clients belong to the loop that opened them.
    return asyncio.run(_evaluate_all(config, config_name, per_level, n_repeat, progress,
                                     first, feedback))


async def _evaluate_all(config: LoopEvalConfig, config_name: str,
                        per_level: list[tuple[Path, list[Pair]]], n_repeat: int,
                        progress: PairProgress | None, first: Backend,
                        feedback: Backend) -> EvaluationRun:
    loop_config = config.loop_config()
    run = EvaluationRun(config_name)
    total = sum(len(p) for _, p in per_level)
    try:
        for rep in range(n_repeat):
            done = 0
            if progress is not None:
                progress(rep, 0, total)
            for level_dir, pairs in per_level:
                folder = timestamp_folder(eval_dir(level_dir, config_name))
                records: dict[str, dict[str, Any]] = {}
                for i, pair in enumerate(pairs):
                    record = await _evaluate_pair(first, feedback, loop_config, pair)
                    records[str(i)] = record
                    if config.log_conversation:
                        atomic_write(folder / "readable_logs" / f"{i}.txt",
                                          readable_log(record, f"{level_dir.name}/{pair.name}"))
                    done += 1
                    if progress is not None:
                        progress(rep, done, total)
                atomic_write(folder / "results.json",
                                  json.dumps(records, indent=2, ensure_ascii=False) + "\n")
                run.repetitions.append(RepetitionResult(level_dir, folder, records))
    finally:
        await _close(first, feedback)
    return run


async def _close(*backends: Backend) -> None:
    for backend in dict.fromkeys(backends):  # the same object may serve both roles
        try:
            await backend.aclose()
        except Exception:  # closing is best effort: the results are already written
            pass


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    n = len(records) or 1
    return {
        "pairs": float(len(records)),
        "passed": sum(bool(r["passed"]) for r in records) / n,
        "verified": sum(bool(r.get("verified")) for r in records) / n,
        "errors": float(sum(r["stop_reason"] in ("error", "backend_error") for r in records)),
        "mean_time_s": sum(float(r["time"]) for r in records) / n,
        "mean_tokens": sum(int(r["n_tokens_generated"]) for r in records) / n,
        "mean_iterations": sum(int(r["iterations"]) for r in records) / n,
    }
