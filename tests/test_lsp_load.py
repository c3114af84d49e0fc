"""A small version of the bounded load test (`bench/load_bench.py` runs 1,000 requests): the
real server over stdio, 150 automatic inline requests with random edits and cancellations,
against a stub endpoint on 127.0.0.1 that injects a fault into a tenth of the replies.

The latency goal (p95 <= 50 ms for requests that were not faulted) is a benchmark figure, not
asserted here: timings on shared CI cores are not a unit-test property."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.load_run import FAULTS, LoadPlan, run_load

pytestmark = pytest.mark.slow


async def test_the_server_survives_faults_edits_and_cancellations(tmp_path: Path) -> None:
    plan = LoadPlan(requests=150, warmup=50, rss_every=50, latency_budget_ms=500)
    report = await run_load(plan, tmp_path)
    figures, counts = report["figures"], report["counts"]
    assert figures["alive"], report
    assert figures["rss_growth"] <= 0.10, report["rss_samples_kb"]
    assert figures["tasks_end"] <= figures["tasks_warm"], figures
    # threads outside the bounded worker pools (an idle pool worker may start late)
    assert figures["other_threads_end"] <= figures["other_threads_warm"], figures
    # Every fault kind happened, and every faulted request left a reason in the status.
    assert set(report["faults"]) == set(FAULTS)
    assert all(f["n"] >= 2 for f in report["faults"].values()), report["faults"]
    assert counts["faulted_with_reason"] == counts["faulted"], report["faults"]
    # The endpoint knew every request, and the requests that were not faulted got their line.
    assert counts["endpoint_unmarked"] == 0
    assert counts["ok_with_item"] == counts["ok"], report["slowest_ok"]
    # Every cancellation landed mid-request and was answered as cancelled.
    assert counts["cancelled"] == 15 and counts["cancelled_error_answers"] == 15
    assert counts["server"]["cancelled"] == 15 and counts["server"]["requests"] == 150
