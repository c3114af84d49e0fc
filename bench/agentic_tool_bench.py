"""Tool-call round trip of the code-agentic tool: one call = argument checks + sandbox run of
one test case + the response text. Goal: p50 <= 20 ms.

    python bench/agentic_tool_bench.py [--calls 400] [--out bench/results/agentic_tool.json]

Calls run one at a time (as in a rollout, where the model waits for each response) on converted
HumanEval tasks, alternating the reference solution and a verified buggy version, each on a
random test case; the sandbox is warmed up first (the training steady state).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.training.agentic.bugs import inject_verified
from collabcoder.training.agentic.convert import load_converted
from collabcoder.training.agentic.tool import CodeExecutionTool, ToolConfig
from collabcoder.training.data.code_agentic import parse_code_agentic_row


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("bench/results/agentic_tool.json"))
    args = parser.parse_args()

    rng = random.Random(0)
    rows = load_converted("humaneval").rows[: args.tasks]
    config = ToolConfig()
    load_before = os.getloadavg()
    with Sandbox() as sandbox:
        programs = []
        for row in rows:
            task = parse_code_agentic_row(row)
            bug = inject_verified(row["solution"], task.io_suite, sandbox, rng)
            programs.append((task, row["solution"], bug.bug.code if bug else row["solution"]))
        for task, good, _ in programs[:10]:  # warm-up
            CodeExecutionTool(config, task, sandbox).call({"code": good, "test_case_index": 0})
        wall: list[float] = []
        reported: list[float] = []
        categories: dict[str, int] = {}
        for i in range(args.calls):
            task, good, buggy = programs[i % len(programs)]
            tool = CodeExecutionTool(config, task, sandbox)
            call = {"code": good if i % 2 == 0 else buggy,
                    "test_case_index": rng.randrange(len(task.io_suite.cases))}
            start = time.perf_counter()
            response = tool.call(json.dumps(call))
            wall.append(time.perf_counter() - start)
            reported.append(response.duration_s)
            key = response.error_category or "passed"
            categories[key] = categories.get(key, 0) + 1
    ms = [w * 1000 for w in wall]
    result = {
        "calls": args.calls,
        "tasks": len(rows),
        "p50_ms": round(_pct(ms, 50), 3),
        "p95_ms": round(_pct(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
        "goal_p50_ms": 20.0,
        "goal_met": _pct(ms, 50) <= 20.0,
        "responses": categories,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    atomic_write(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
