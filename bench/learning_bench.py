"""Does the trainer learn? A verifiable toy task a tiny model masters in minutes on CPU.

    python bench/learning_bench.py [--seeds 0 1 2] [--steps 40] [--out bench/results/learning.json]

Task: write digits. The reward of a completion is the share of its characters that are digits
(a checker on the text, no model judge). The policy is the tests' tiny random Qwen2 (2 layers,
64 wide, byte-level BPE with ~1k tokens), so the start is chance level. GRPO trains one agent;
MAGRPO trains two agents whose joint reward is the digit share of both completions together.
Reported per seed: the sampled reward over the first and last 5 steps, and the greedy reward on
held-out prompts before and after training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def digit_share(text: str) -> float:
    return sum(c.isdigit() for c in text) / max(1, len(text))


def prompts(n: int, offset: int = 0) -> list[Any]:
    from collabcoder.training.rollout import TextTask

    return [TextTask(f"p{offset + i}", f"Write the numbers of line {offset + i}.") for i in range(n)]


def hyperparameters(steps: int, seed: int, out: str, agents: int) -> dict[str, Any]:
    section = "grpo" if agents == 1 else "magrpo"
    return {
        "output": {"base_dir": out},
        section: {
            "num_agents": agents, "num_generations": 8, "max_new_tokens": 16,
            "temperature": 1.0, "top_p": 1.0, "learning_rate": 3e-3,
            "per_device_train_batch_size": 4, "num_train_epochs": steps,
            "lr_scheduler_type": "constant", "max_grad_norm": 1.0, "seed": seed,
            "logging_steps": 1, "save_steps": 0, "eval_interval": 0, "eval_num_samples": 8,
        },
    }  # fmt: skip


def run(model_dir: Path, seed: int, steps: int, agents: int, tmp: Path) -> dict[str, Any]:
    import torch
    from ddp_check import TwoAgentDigits

    from collabcoder.training.config import config_from_dict
    from collabcoder.training.rollout import TextRewardEnv
    from collabcoder.training.trainers import MAGRPOTrainer
    from collabcoder.training.trainers.logging import read_metrics

    torch.set_num_threads(1)
    out = tmp / f"{agents}-{seed}"
    data = hyperparameters(steps, seed, str(out), agents)
    data["model"] = {"name": str(model_dir), "dtype": "float32"}
    cfg = config_from_dict(data)
    env = TextRewardEnv(digit_share) if agents == 1 else TwoAgentDigits()
    # One epoch = one step: the same 4 training prompts every step; 8 held-out prompts.
    trainer = MAGRPOTrainer(cfg, env, prompts(4), prompts(8, offset=100))
    started = time.perf_counter()
    before = trainer.evaluate()["eval/reward/mean"]
    trainer.train()
    after = trainer.evaluate()["eval/reward/mean"]
    curve = [r["reward/mean"] for r in read_metrics(out) if "reward/mean" in r]
    return {
        "seed": seed,
        "curve": [round(c, 4) for c in curve],
        "start": round(statistics.fmean(curve[:5]), 4),
        "end": round(statistics.fmean(curve[-5:]), 4),
        "greedy_before": round(before, 4),
        "greedy_after": round(after, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {
        key: round(statistics.fmean(r[key] for r in rows), 4)
        for key in ("start", "end", "greedy_before", "greedy_after", "seconds")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/learning.json")
    args = parser.parse_args()
    from fixtures.tiny_model import build_tiny_model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    report: dict[str, Any] = {
        "task": "digit share of the completion (characters that are digits / all characters)",
        "model": "tests/fixtures/tiny_model.py: random 2-layer 64-wide Qwen2, ~1k-token BPE",
        "device": "CPU (2 cores); no GPU in this session",
        "hyperparameters": hyperparameters(args.steps, 0, "-", 1)["grpo"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(tmp)
        for agents in args.agents:
            name = "grpo" if agents == 1 else "magrpo_2_agents"
            rows = []
            for seed in args.seeds:
                row = run(model, seed, args.steps, agents, Path(tmp))
                rows.append(row)
                print(f"{name} seed {seed}: sampled reward {row['start']:.3f} -> {row['end']:.3f}, "
                      f"greedy {row['greedy_before']:.3f} -> {row['greedy_after']:.3f} "
                      f"({row['seconds']} s)", flush=True)  # fmt: skip
            report[name] = {"runs": rows, "mean": summarize(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
