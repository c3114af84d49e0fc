"""Our trainer with one agent against TRL's GRPOTrainer: same model, task, seeds, settings.

    python bench/trl_crosscheck.py [--seeds 0 1 2] [--steps 40] [--out bench/results/trl_crosscheck.json]

Both train the tests' tiny random Qwen2 on the learning benchmark's task (reward: the share of
digits in the completion) with the same hyperparameters: 4 prompts x 8 completions per step,
16 new tokens, temperature 1, top-p 1, no top-k, Adam at a constant LR, gradient clipping at 1,
group-std-normalized advantages, per-sequence token-mean loss (TRL `loss_type="grpo"`), no KL,
one optimizer step per batch. Prompts go through the chat template on both sides. The sampled
reward of each step is recorded; curves agree within seed-to-seed noise when the two
implementations compute the same update.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

PROMPTS = [f"Write the numbers of line {i}." for i in range(4)]
SETTINGS = {
    "num_generations": 8, "prompts_per_step": 4, "max_new_tokens": 16, "temperature": 1.0,
    "top_p": 1.0, "learning_rate": 3e-3, "max_grad_norm": 1.0, "normalize_advantage": True,
}  # fmt: skip


def ours(model_dir: Path, seed: int, steps: int, tmp: Path) -> list[float]:
    from learning_bench import digit_share

    from collabcoder.training.config import config_from_dict
    from collabcoder.training.rollout import TextRewardEnv, TextTask
    from collabcoder.training.trainers import MAGRPOTrainer
    from collabcoder.training.trainers.logging import read_metrics

    s = SETTINGS
    out = tmp / f"ours-{seed}"
    cfg = config_from_dict({
        "model": {"name": str(model_dir), "dtype": "float32"},
        "output": {"base_dir": str(out)},
        "grpo": {"num_generations": s["num_generations"], "max_new_tokens": s["max_new_tokens"],
                 "temperature": s["temperature"], "top_p": s["top_p"],
                 "learning_rate": s["learning_rate"], "max_grad_norm": s["max_grad_norm"],
                 "normalize_advantage": s["normalize_advantage"],
                 "per_device_train_batch_size": s["prompts_per_step"], "num_train_epochs": steps,
                 "lr_scheduler_type": "constant", "seed": seed, "logging_steps": 1,
                 "save_steps": 0, "eval_interval": 0},
    })  # fmt: skip
    tasks = [TextTask(f"p{i}", p) for i, p in enumerate(PROMPTS)]
    MAGRPOTrainer(cfg, TextRewardEnv(digit_share), tasks).train()
    return [r["reward/mean"] for r in read_metrics(out) if "reward/mean" in r]


def trl(model_dir: Path, seed: int, steps: int, tmp: Path) -> list[float]:
    from datasets import Dataset
    from learning_bench import digit_share
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    s = SETTINGS

    def reward(completions: list[Any], **_: Any) -> list[float]:
        return [digit_share(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    args = GRPOConfig(
        output_dir=str(tmp / f"trl-{seed}"), use_cpu=True, bf16=False, seed=seed,
        max_steps=steps, num_generations=s["num_generations"],
        per_device_train_batch_size=s["prompts_per_step"] * s["num_generations"],
        max_completion_length=s["max_new_tokens"], temperature=s["temperature"],
        top_p=s["top_p"], top_k=0, learning_rate=s["learning_rate"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, optim="adamw_torch",
        max_grad_norm=s["max_grad_norm"], beta=0.0, loss_type="grpo", num_iterations=1,
        scale_rewards="group" if s["normalize_advantage"] else "none", logging_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=data,
        processing_class=tokenizer,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # TRL prints every log row without tqdm
        trainer.train()
    return [row["reward"] for row in trainer.state.log_history if "reward" in row]


def window(curve: list[float], k: int = 5) -> tuple[float, float]:
    return statistics.fmean(curve[:k]), statistics.fmean(curve[-k:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/trl_crosscheck.json")
    args = parser.parse_args()
    import torch
    from fixtures.tiny_model import build_tiny_model
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    report: dict[str, Any] = {"settings": SETTINGS, "steps": args.steps, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(tmp)
        for seed in args.seeds:
            row: dict[str, Any] = {"seed": seed}
            for name, fn in (("ours", ours), ("trl", trl)):
                started = time.perf_counter()
                curve = fn(model, seed, args.steps, Path(tmp))
                seconds = time.perf_counter() - started
                start, end = window(curve)
                row[name] = {"curve": [round(c, 4) for c in curve], "start": round(start, 4),
                             "end": round(end, 4), "seconds_per_step": round(seconds / args.steps, 3)}  # fmt: skip
                print(f"seed {seed} {name}: reward {start:.3f} -> {end:.3f} "
                      f"({seconds / args.steps:.2f} s/step)", flush=True)  # fmt: skip
            report["runs"].append(row)
    for name in ("ours", "trl"):
        curves = [r[name]["curve"] for r in report["runs"]]
        report[f"{name}_mean_curve"] = [round(statistics.fmean(c), 4) for c in zip(*curves, strict=True)]
    diffs = [abs(a - b) for a, b in zip(report["ours_mean_curve"], report["trl_mean_curve"], strict=True)]
    spread = [
        statistics.pstdev(c) for c in zip(*[r["ours"]["curve"] for r in report["runs"]], strict=True)
    ]
    report["mean_abs_gap"] = round(statistics.fmean(diffs), 4)
    report["mean_seed_std_ours"] = round(statistics.fmean(spread), 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"mean |ours - trl| over steps: {report['mean_abs_gap']:.4f}; "
          f"seed-to-seed std (ours): {report['mean_seed_std_ours']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
