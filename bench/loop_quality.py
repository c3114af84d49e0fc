"""Does the feedback loop lift pass@1, and are its "verified" labels honest?

    python bench/loop_quality.py [--limit N] [--out bench/results/loop_quality.json]

Every HumanEval problem (164 by default): the prompt is the document, the cursor at the start of
the body (the prompt plus the body's indentation). The embedded model (SmolLM2-135M-Instruct,
llama.cpp on CPU) completes it two ways, with the same chat prompt and token limit:

- loop off: one greedy request (temperature 0), what the editor showed before;
- loop on: the feedback loop with at most 4 model requests of at most 4 candidates each (a
  batched first request, then up to 3 feedback turns or restarts), judged by the syntax and
  behaviour analyzers. The behaviour analyzer runs only the loop's own evidence, the
  docstring's examples; HumanEval's tests never reach the loop.

Afterwards every final completion, and every candidate the loop generated, is judged by
HumanEval's real tests in the sandbox. Reported: pass@1 both ways, problems fixed and broken,
false passes (candidates the loop labelled verified that fail the real tests), mean wall time,
requests and tokens, and the upper bound (problems any loop candidate solved).

Each finished problem is appended to `<out>.jsonl` at once, so an interrupted run resumes where
it stopped (`--resume`); `--render` recomputes the summary and docs/loop.md from the records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.sandbox import default_sandbox
from collabcoder.analyzers.static import AnalysisContext, warm_up
from collabcoder.server.backends.llamacpp_backend import EMBEDDED_DEFAULT, LlamaCppBackend
from collabcoder.server.loop import FeedbackLoop, LoopConfig, LoopResult
from collabcoder.training.data import Task, load_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_bench import replace_marked

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "loop.md"
MARKS = ("<!-- bench:loop_quality:start -->", "<!-- bench:loop_quality:end -->")
ANALYZERS = ("syntax", "behaviour")
console = Console(stderr=True, highlight=False)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def document(task: Task) -> str:
    """The prompt with the cursor at the start of the body (its first line's indentation)."""
    body = (task.canonical_solution or "").split("\n")
    first = next((ln for ln in body if ln.strip()), "    ")
    return task.prompt + first[: len(first) - len(first.lstrip())]


def configs(args: argparse.Namespace) -> dict[str, LoopConfig]:
    common = {"analyzers": ANALYZERS, "max_tokens": args.max_tokens, "seed": 0,
              "max_retries": 0}
    return {
        "loop off": LoopConfig(max_iter=0, first_n=1, n=1, temperature=0.0, **common),
        "loop on": LoopConfig(max_iter=args.requests - 1, first_n=args.candidates,
                              n=args.candidates, temperature=args.temperature, **common),
    }


def passes_tests(task: Task, program: str) -> bool:
    return default_sandbox().run_asserts(program, task.assert_suite()).all_passed


async def run_problem(backend: LlamaCppBackend, task: Task,
                      settings: dict[str, LoopConfig]) -> dict[str, Any]:
    prefix = document(task)
    record: dict[str, Any] = {"task_id": task.task_id}
    for name, config in settings.items():
        started = time.perf_counter()
        result: LoopResult = await FeedbackLoop(backend, config).run(AnalysisContext(prefix, ""))
        elapsed = time.perf_counter() - started
        candidates = [{"completion": n.completion, "verified": n.verified, "verdict": n.verdict,
                       "real": passes_tests(task, prefix + n.completion)}
                      for n in result.nodes]
        record[name] = {
            "real": passes_tests(task, prefix + result.completion), "verdict": result.verdict,
            "verified": result.verified, "stop_reason": result.stop_reason,
            "requests": result.requests, "tokens": result.tokens_generated,
            "time_s": round(elapsed, 2), "completion": result.completion,
            "candidates": candidates,
        }
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"problems": len(records)}
    for name in ("loop off", "loop on"):
        rows = [r[name] for r in records]
        n = len(rows) or 1
        out[name] = {
            "pass_at_1": sum(r["real"] for r in rows) / n,
            "passed": sum(r["real"] for r in rows),
            "mean_time_s": statistics.fmean(r["time_s"] for r in rows) if rows else 0.0,
            "mean_requests": statistics.fmean(r["requests"] for r in rows) if rows else 0.0,
            "mean_tokens": statistics.fmean(r["tokens"] for r in rows) if rows else 0.0,
            "stop_reasons": dict(Counter(r["stop_reason"] for r in rows).most_common()),
            "verdict_kinds": dict(Counter(_kind(r["verdict"]) for r in rows).most_common()),
        }
    on = [r["loop on"] for r in records]
    labelled = [c for r in on for c in r["candidates"] if c["verified"]]
    false = [c for c in labelled if not c["real"]]
    out["fixed_by_loop"] = sum(r["loop on"]["real"] and not r["loop off"]["real"] for r in records)
    out["broken_by_loop"] = sum(r["loop off"]["real"] and not r["loop on"]["real"] for r in records)
    out["verified_candidates"] = len(labelled)
    out["false_passes"] = len(false)
    out["false_pass_rate"] = len(false) / len(labelled) if labelled else 0.0
    out["final_verified"] = sum(r["verified"] for r in on)
    out["final_verified_but_wrong"] = sum(r["verified"] and not r["real"] for r in on)
    out["upper_bound"] = sum(any(c["real"] for c in r["candidates"]) for r in on)
    out["problems_with_examples"] = sum(
        any(c["verdict"] != "static checks only" and not c["verdict"].startswith("failed: syntax")
            for c in r["candidates"]) for r in on)
    off = out["loop off"]["pass_at_1"]
    out["lift"] = out["loop on"]["pass_at_1"] / off if off else None
    return out


def _kind(verdict: str) -> str:
    """`examples passed 2/2` -> `examples passed`; `failed: ...` -> `failed`."""
    if verdict.startswith("failed"):
        return "failed"
    return verdict.rsplit(" ", 1)[0] if verdict[-1:].isdigit() else verdict


def markdown(report: dict[str, Any]) -> str:
    s, cfg = report["summary"], report["config"]
    off, on = s["loop off"], s["loop on"]
    lift = f"{s['lift']:.2f}x" if s["lift"] is not None else "n/a (loop off solved none)"
    lines = [
        f"Run {report['date']}: `{report['model']}` on llama.cpp ({report['threads'] or 'all'} threads), "
        f"{s['problems']} HumanEval problems, loop on = at most {cfg['requests']} requests x "
        f"{cfg['candidates']} candidates at temperature {cfg['temperature']}, analyzers "
        f"{', '.join(cfg['analyzers'])}, max {cfg['max_tokens']} tokens per reply; "
        f"{report['duration_s'] / 60:.0f} min in all, load average "
        f"{report['machine']['load_start']} at start, {report['machine']['load_end']} at end.",
        "",
        "| | pass@1 (real tests) | mean time (s) | mean requests | mean tokens |",
        "| --- | --- | --- | --- | --- |",
        f"| loop off (greedy) | {off['pass_at_1']:.1%} ({off['passed']}/{s['problems']}) | "
        f"{off['mean_time_s']:.1f} | {off['mean_requests']:.1f} | {off['mean_tokens']:.0f} |",
        f"| loop on | {on['pass_at_1']:.1%} ({on['passed']}/{s['problems']}) | "
        f"{on['mean_time_s']:.1f} | {on['mean_requests']:.1f} | {on['mean_tokens']:.0f} |",
        "",
        f"- Lift: {lift} (goal: at least 2x). Fixed by the loop: {s['fixed_by_loop']}; broken "
        f"by it: {s['broken_by_loop']}.",
        f"- False passes: {s['false_passes']} of {s['verified_candidates']} candidates labelled "
        f"verified fail the real tests ({s['false_pass_rate']:.0%}; goal: at most 10%). Final "
        f"answers labelled verified: {s['final_verified']}, of which wrong: "
        f"{s['final_verified_but_wrong']}.",
        f"- Upper bound: some loop candidate solved {s['upper_bound']} problems. Problems whose "
        f"docstring examples the loop could run: {s['problems_with_examples']}.",
        f"- Loop on stopped by: {', '.join(f'{k} {v}' for k, v in on['stop_reasons'].items())}; "
        f"final verdicts: {', '.join(f'{k} {v}' for k, v in on['verdict_kinds'].items())}.",
    ]
    return "\n".join(lines)


def write_report(args: argparse.Namespace, records: list[dict[str, Any]], duration: float,
                 load_start: list[float], recorded: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Write the JSON and the docs table; `recorded` (a `--render`) keeps the run's own
    settings, date and machine figures instead of this invocation's."""
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": args.model,
        "threads": args.threads, "duration_s": round(duration, 1),
        "config": {"requests": args.requests, "candidates": args.candidates,
                   "temperature": args.temperature, "max_tokens": args.max_tokens,
                   "analyzers": list(ANALYZERS)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "load_start": load_start,
                    "load_end": load_average()},
        "summary": summarize(records), "problems": records,
    }
    if recorded:
        report.update({k: recorded[k] for k in ("date", "model", "threads", "config", "machine")
                       if k in recorded})
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    if not args.no_docs:
        replace_marked(DOCS, *MARKS, f"{MARKS[0]}\n{markdown(report)}\n{MARKS[1]}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "loop_quality.json")
    parser.add_argument("--limit", type=int, default=164, help="First N HumanEval problems.")
    parser.add_argument("--model", default=EMBEDDED_DEFAULT)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores).")
    parser.add_argument("--requests", type=int, default=4, help="Loop on: model requests at most.")
    parser.add_argument("--candidates", type=int, default=4, help="Loop on: candidates a request.")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--resume", action="store_true", help="Skip problems already recorded.")
    parser.add_argument("--render", action="store_true",
                        help="Only rebuild the summary and docs from the recorded problems.")
    parser.add_argument("--no-docs", action="store_true", help="Leave docs/loop.md alone.")
    args = parser.parse_args()
    progress = args.out.with_suffix(".jsonl")
    records = ([json.loads(ln) for ln in progress.read_text().splitlines() if ln.strip()]
               if (args.resume or args.render) and progress.is_file() else [])
    if args.render:
        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        write_report(args, records, old.get("duration_s", 0.0),
                     old.get("machine", {}).get("load_start", load_average()), old)
        return
    progress.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        progress.unlink(missing_ok=True)
    done = {r["task_id"] for r in records}
    tasks = [t for t in load_tasks("humaneval", f"test[:{args.limit}]") if t.task_id not in done]
    backend = LlamaCppBackend(args.model, n_threads=args.threads)
    settings = configs(args)
    load_start, started = load_average(), time.perf_counter()

    async def run_all() -> None:
        backend.load()
        await warm_up(AnalysisContext(document(tasks[0]) if tasks else "", "pass"), ANALYZERS)
        for k, task in enumerate(tasks):
            record = await run_problem(backend, task, settings)
            records.append(record)
            with progress.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            off, on = record["loop off"], record["loop on"]
            console.print(f"[{len(done) + k + 1}/{args.limit}] {task.task_id}: off "
                          f"{'PASS' if off['real'] else 'fail'}, on "
                          f"{'PASS' if on['real'] else 'fail'} ({on['verdict'][:60]}; "
                          f"{on['requests']} req, {on['time_s']:.1f} s)")

    asyncio.run(run_all())
    report = write_report(args, records, time.perf_counter() - started, load_start)
    console.print(markdown(report))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
