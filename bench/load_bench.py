"""A bounded load test of the language server: 1,000 inline completion requests with random
edits and cancellations against an OpenAI-compatible endpoint on 127.0.0.1 that injects a fault
into a tenth of its replies.

    python bench/load_bench.py [--requests 1000] [--out bench/results/load.json] [--no-docs]

Method (`tests/fixtures/load_run.py`, which `tests/test_lsp_load.py` runs with 150 requests):
`collab-server` runs over stdio as the extension runs it; the client is pytest-lsp's. Each
request types a new line `r<i> = ` at a random place (didChange), after 0-2 unrelated edits,
and asks for an automatic suggestion at its end (debounce 0, no analyzers, latency budget
1,000 ms). A tenth of the requests are faulted, the six kinds in turn: HTTP 500, 429 with
`Retry-After: 1`, a 200 that is not JSON, a stream with no choices, a stream cut mid-reply, a
reply 1 s past the budget. Another tenth are cancelled (`$/cancelRequest` 0-30 ms after the
request; their replies wait 300 ms, so the cancel lands mid-request). Requests are sequential.

Goals: the server answers `collab.getStats` at the end; its VmRSS grows by at most 10% from
the end of the warm-up (the first 100 requests) to the end; the tasks and threads it reports
when idle at the end are no more than after the warm-up; p95 client round trip of the requests
that were neither faulted nor cancelled is at most 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fixtures.load_run import LoadPlan, run_load  # noqa: E402
from lsp_bench import replace_marked  # noqa: E402

from collabcoder.analyzers.files import atomic_write  # noqa: E402

DOCS = ROOT / "docs" / "server.md"
MARKS = ("<!-- bench:load:start -->", "<!-- bench:load:end -->")


def docs_block(report: dict[str, Any]) -> str:
    f, c, met = report["figures"], report["counts"], report["goals_met"]

    def yes(key: str) -> str:
        return "met" if met[key] else "**missed**"

    lines = [
        MARKS[0],
        f"{report['plan']['requests']} requests in {report['run_s']} s, load average "
        f"{report['load_average'][0]:.2f} on {report['cpus']} CPUs "
        "(`python bench/load_bench.py`, results in `bench/results/load.json`).",
        "",
        "| goal | measured | |",
        "| --- | --- | --- |",
        f"| server alive at the end | answers `collab.getStats`: {f['alive']} | {yes('alive')} |",
        f"| VmRSS growth after warm-up <= 10% | {f['rss_warm_kb'] / 1024:.1f} -> "
        f"{f['rss_end_kb'] / 1024:.1f} MiB ({f['rss_growth']:+.1%}) | "
        f"{yes('rss_growth_le_10pct')} |",
        f"| no tasks left (idle, vs after warm-up) | {f['tasks_warm']} -> {f['tasks_end']} | "
        f"{yes('no_tasks_left')} |",
        f"| no threads left (idle, vs after warm-up; outside the bounded worker pools) | "
        f"{f['other_threads_warm']} -> {f['other_threads_end']} (all threads: "
        f"{f['threads_warm']} -> {f['threads_end']}) | {yes('no_threads_left')} |",
        f"| p95 round trip, not faulted <= 50 ms | p50 {f['ok_p50_ms']:.1f}, p95 "
        f"{f['ok_p95_ms']:.1f}, max {f['ok_max_ms']:.0f} ms (n={c['ok']}) | "
        f"{yes('ok_p95_le_50ms')} |",
        "",
        f"Faulted: {c['faulted']}, each with a reason in `lastError`: "
        f"{c['faulted_with_reason']}. Cancelled: {c['cancelled']}, answered as cancelled: "
        f"{c['cancelled_error_answers']}. Not faulted with a suggestion: {c['ok_with_item']} of "
        f"{c['ok']}.",
        MARKS[1],
    ]
    return "\n".join(lines)


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title="load test")
    table.add_column("figure")
    table.add_column("value")
    for key, value in report["figures"].items():
        table.add_row(key, str(value))
    for key, value in report["goals_met"].items():
        table.add_row(f"goal {key}", "met" if value else "MISSED")
    console.print(table)
    console.print_json(json.dumps(report["counts"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/server.md")
    args = parser.parse_args()
    plan = LoadPlan(requests=args.requests, seed=args.seed,
                    warmup=max(1, args.requests // 10), rss_every=max(1, args.requests // 10))
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        report = asyncio.run(run_load(plan, Path(tmp)))
    report = {
        **report,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    render(report, Console())
    if not args.no_docs:
        replace_marked(DOCS, *MARKS, docs_block(report))
    return 0 if all(report["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
