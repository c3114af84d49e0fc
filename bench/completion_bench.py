"""Does the feedback loop make the embedded model's completions pass more real tests?

    python bench/completion_bench.py --out bench/results/completion.json [--limit N]

HumanEval prompts are cut inside the function body: the prompt plus the first third of the
canonical solution's non-blank lines (at least one), the cursor at the indentation of the next
line; a one-line body is cut after its first word (`    return `). The embedded model
(smollm2-135m-instruct, CPU) completes each cut twice, interleaved per problem:

- loop off: `max_iter` 0, the first completion as it is;
- loop on: up to 3 feedback iterations, analyzers mypy + signature + hallucination + tests
  (the tests analyzer runs the docstring's doctest examples; `entry_point` is passed).

Both use the same analyzers (loop off runs them once, so its time includes one analyzer pass),
greedy decoding (temperature 0; a repeated candidate is resampled once, hotter) and the same
token limit. Each final program (cut + completion) is judged against HumanEval's real tests in the
sandbox. Writes JSON and the table in docs/loop.md.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from collabcoder.analyzers.sandbox import default_sandbox
from collabcoder.analyzers.static import AnalysisContext, warm_up
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT
from collabcoder.server.backends.factory import make_backend
from collabcoder.server.loop import FeedbackLoop, LoopConfig
from collabcoder.training.data import Task, load_tasks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "loop.md"
MARK_START, MARK_END = "<!-- bench:completion:start -->", "<!-- bench:completion:end -->"
ANALYZERS = ("mypy", "signature", "hallucination", "tests")
SETTINGS = {"loop off": 0, "loop on": 3}  # name -> max_iter
console = Console(stderr=True, highlight=False)


def cut_prompt(task: Task) -> str:
    """The prompt plus the first lines of the canonical body; deterministic (see module doc)."""
    lines = (task.canonical_solution or "").split("\n")
    code = [i for i, line in enumerate(lines) if line.strip()]
    if not code:
        return task.prompt
    if len(code) >= 2:
        nxt = code[max(1, len(code) // 3)]
        indent = lines[nxt][: len(lines[nxt]) - len(lines[nxt].lstrip())]
        return task.prompt + "\n".join(lines[:nxt]) + "\n" + indent
    line = lines[code[0]]
    stripped = line.lstrip()
    word = stripped.split(" ", 1)[0] + " " if " " in stripped else ""
    return task.prompt + "\n".join(lines[: code[0]]) + line[: len(line) - len(stripped)] + word


@dataclass
class Outcome:
    task_id: str
    setting: str
    passed_tests: bool
    infra_error: bool
    verdict: str
    analyzers_passed: bool
    iterations: int
    tokens: int
    time_s: float
    stop_reason: str
    completion: str


async def complete(backend: Any, task: Task, prefix: str, max_iter: int,
                   max_tokens: int) -> tuple[Any, float]:
    config = LoopConfig(analyzers=ANALYZERS, max_iter=max_iter, temperature=0.0, seed=0,
                        max_tokens=max_tokens, factor_n=1, max_retries=1)
    loop = FeedbackLoop(backend, config)
    started = time.perf_counter()
    result = await loop.run(AnalysisContext(prefix=prefix, completion=""),
                            entry_point=task.entry_point)
    return result, time.perf_counter() - started


def judge(task: Task, program: str) -> tuple[bool, bool, str]:
    verdict = default_sandbox().run_asserts(program, task.assert_suite())
    return verdict.all_passed, verdict.is_infra_error, verdict.outcome.value


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        rows = [o for o in outcomes if o.setting == setting]
        if not rows:
            continue
        out[setting] = {
            "problems": len(rows),
            "pass_rate": sum(o.passed_tests for o in rows) / len(rows),
            "passed": sum(o.passed_tests for o in rows),
            "analyzers_passed_rate": sum(o.analyzers_passed for o in rows) / len(rows),
            "mean_time_s": statistics.fmean(o.time_s for o in rows),
            "mean_tokens": statistics.fmean(o.tokens for o in rows),
            "mean_iterations": statistics.fmean(o.iterations for o in rows),
            "infra_errors": sum(o.infra_error for o in rows),
            "stop_reasons": dict(Counter(o.stop_reason for o in rows).most_common()),
            "verdicts": dict(Counter(o.verdict for o in rows).most_common()),
        }
    by_task: dict[str, dict[str, bool]] = {}
    for o in outcomes:
        by_task.setdefault(o.task_id, {})[o.setting] = o.passed_tests
    out["fixed_by_loop"] = sum(1 for v in by_task.values()
                               if v.get("loop on") and not v.get("loop off"))
    out["broken_by_loop"] = sum(1 for v in by_task.values()
                                if v.get("loop off") and not v.get("loop on"))
    return out


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"Run {report['date']} on {report['machine']['cpus']} CPU cores, model "
        f"`{report['model']}` ({report['threads']} torch thread(s)), {report['limit']} problems (HumanEval/0 to "
        f"HumanEval/{report['limit'] - 1}), max {report['max_tokens']} tokens per reply, "
        f"{report['duration_s'] / 60:.1f} min in all. Load average at start "
        f"{report['machine']['load_start']}, at end {report['machine']['load_end']}"
        f"{' (CPU shared with other work: times are inflated)' if report['contended'] else ''}.",
        "",
        "| setting | pass rate (real tests) | analyzers passed | mean time (s) | "
        "mean tokens | mean iterations |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        if setting in s:
            r = s[setting]
            lines.append(
                f"| {setting} | {r['pass_rate']:.0%} ({r['passed']}/{r['problems']}) | "
                f"{r['analyzers_passed_rate']:.0%} | {r['mean_time_s']:.1f} | "
                f"{r['mean_tokens']:.0f} | {r['mean_iterations']:.2f} |")
    lines += [""]
    for setting in SETTINGS:
        if setting in s:
            stops = ", ".join(f"{k} {v}" for k, v in s[setting]["stop_reasons"].items())
            verdicts = ", ".join(f"{k} {v}" for k, v in s[setting]["verdicts"].items())
            lines.append(f"- {setting}: loop stopped by {stops}; real tests: {verdicts}.")
    lines += ["", f"Fixed by the loop: {s['fixed_by_loop']} problem(s); broken by it: "
              f"{s['broken_by_loop']}. A full run (all 164 problems) takes about "
              f"{report['duration_s'] / report['limit'] * 164 / 60:.0f} min at this speed."]
    return "\n".join(lines)


def update_docs(text: str) -> None:
    if not DOCS.is_file():
        return
    doc = DOCS.read_text(encoding="utf-8")
    if MARK_START in doc and MARK_END in doc:
        head, rest = doc.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        DOCS.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "completion.json")
    parser.add_argument("--limit", type=int, default=20, help="First N HumanEval problems.")
    parser.add_argument("--model", default=EMBEDDED_DEFAULT)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads. 1 by default: on a shared 2-core machine two "
                        "threads ran 6x slower than one (they wait on each other).")
    parser.add_argument("--no-docs", action="store_true", help="Leave docs/loop.md alone.")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="Recompute the summary of a recorded run and rewrite its JSON "
                        "and docs/loop.md; runs no model.")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text(encoding="utf-8"))
        report["summary"] = summarize([Outcome(**p) for p in report["problems"]])
        args.render.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        update_docs(markdown(report))
        return

    import torch

    torch.set_num_threads(args.threads)
    load_start = load_average()
    started = time.perf_counter()
    tasks = load_tasks("humaneval", f"test[:{args.limit}]")
    backend = make_backend("transformers", args.model)
    outcomes: list[Outcome] = []

    async def run_all() -> None:
        # Load the model and warm mypy/jedi first, so problem 0 is not charged for them.
        getattr(backend, "load", lambda: None)()
        await warm_up(AnalysisContext(prefix=cut_prompt(tasks[0]), completion="pass"),
                      list(ANALYZERS))
        for k, task in enumerate(tasks):
            prefix = cut_prompt(task)
            for setting, max_iter in SETTINGS.items():
                result, elapsed = await complete(backend, task, prefix, max_iter, args.max_tokens)
                ok, infra, verdict = judge(task, prefix + result.completion)
                outcomes.append(Outcome(task.task_id, setting, ok, infra, verdict, result.passed,
                                        result.iterations, result.tokens_generated, elapsed,
                                        result.stop_reason, result.completion))
                console.print(f"[{k + 1}/{len(tasks)}] {task.task_id} {setting}: "
                              f"{'PASS' if ok else 'fail'} ({verdict}), analyzers "
                              f"{'ok' if result.passed else 'fail'}, {result.iterations} it, "
                              f"{result.tokens_generated} tok, {elapsed:.1f} s")

    asyncio.run(run_all())
    duration = time.perf_counter() - started
    load_end = load_average()
    cpus = os.cpu_count() or 1
    contended = any(x > cpus * 0.75 for x in (*load_start[:1], *load_end[:1]))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": args.model, "limit": args.limit, "max_tokens": args.max_tokens,
        "threads": args.threads, "analyzers": list(ANALYZERS), "settings": SETTINGS, "duration_s": round(duration, 1),
        "contended": contended,
        "machine": {"cpus": cpus, "platform": platform.platform(),
                    "python": sys.version.split()[0], "load_start": load_start,
                    "load_end": load_end},
        "summary": summarize(outcomes),
        "problems": [o.__dict__ for o in outcomes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    if not args.no_docs:
        update_docs(text)
    table = Table(title="completion bench")
    for col in ("setting", "pass rate", "analyzers passed", "mean time (s)", "mean tokens"):
        table.add_column(col)
    for setting in SETTINGS:
        r = report["summary"][setting]
        table.add_row(setting, f"{r['pass_rate']:.0%}", f"{r['analyzers_passed_rate']:.0%}",
                      f"{r['mean_time_s']:.1f}", f"{r['mean_tokens']:.0f}")
    Console().print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
