"""`accelerate launch` with 2 processes (DDP over gloo on CPU): both ranks end with the same
weights, for separate agents and for LoRA adapters on a shared base (bench/ddp_check.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_ranks_stay_in_sync(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/ddp_check.py"), "--steps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    for mode in ("separate", "shared_lora"):
        r = report[mode]
        assert r["world_size"] == 2 and "MULTI_CPU" in r["distributed_type"]
        assert r["trained"] and r["disjoint_tasks"]
        assert r["in_sync"], r["ranks"]
