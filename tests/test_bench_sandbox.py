"""The documented sandbox benchmark command runs end to end on a few problems: official harness,
our sandbox (cold and warm, with the CPU split), the bare fork floor and the fault cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sandbox_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "sandbox.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/sandbox_bench.py"), "--limit", "4", "--rounds", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["programs"] == 8 and report["identical_verdicts"], report["mismatches"]
    assert report["official"]["passed"] == report["sandbox_warm"]["passed"] == 4
    cpu = report["sandbox_warm"]["cpu"]
    assert cpu["children_s"] >= 0 and cpu["child_faults_per_run"] > 0
    assert report["fork_floor"]["wall_s"] > 0 and report["fork_floor"]["cpu"]["faults_per_run"] > 0
    assert report["cow_fault"]["us_per_fault"] > 0 and report["cow_fault"]["faults"] >= 400
    assert report["workers"] >= 2 and report["goal"]["speedup"] == 10
