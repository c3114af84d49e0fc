"""Does the code-agentic pipeline learn on CPU? SFT, then RL (PPO and GRPO), on the embedded model.

    python bench/agentic_learning.py [--sft-rows 10] [--sft-epochs 2] [--eval-tasks 6]
        [--rl-tasks 2] [--rl-steps 2] [--seeds 0 1 2] [--threads 1]
        [--out bench/results/agentic_learning.json]

1. Conversations: converted HumanEval tasks (`convert.py`) -> `prepare` (real sandbox runs: a
   verified bug, its tool response, the fix, the final answer).
2. SFT of SmolLM2-135M-Instruct (the embedded model's transformers copy, float32) on them.
3. Evaluate base and SFT models on converted CoopHumanEval tasks (never trained on), greedy,
   up to 5 attempts: tool-call validity and solve rate within 5 attempts (goals: validity >= 90%
   after SFT; the solve rate does not drop).
4. RL from the SFT checkpoint on a small task set (the HumanEval tasks with the shortest
   questions), PPO and GRPO, one run per seed: the sampled mean reward per step. Goal: the
   mean reward rises over the seeds by more than the seed-to-seed spread.

The defaults fit a 2-core machine shared with other work (about half an hour); every size is an
option. Torch runs on `--threads` threads: on a loaded machine one thread is much faster than
two fighting for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prepare_conversations(n: int, seed: int, clean: float, out: Path) -> dict[str, Any]:
    from collabcoder.analyzers.sandbox import default_sandbox
    from collabcoder.training.agentic.prepare import (
        PrepareOptions,
        converted_source,
        prepare,
        write_rows,
    )

    rows = converted_source("humaneval")[:n]
    options = PrepareOptions(seed=seed, clean_fraction=clean)
    conversations, report = prepare(rows, options, default_sandbox())
    write_rows(out, conversations)
    return report.to_dict()


def run_sft_stage(args: argparse.Namespace, data: Path, run_dir: Path) -> dict[str, Any]:
    from collabcoder.training.agentic.config import AgenticSFTConfig, load_agentic_config
    from collabcoder.training.agentic.sft import run_sft
    from collabcoder.training.trainers.logging import read_metrics

    cfg = load_agentic_config(
        AgenticSFTConfig,
        None,
        [
            f"model.name={MODEL}", "model.dtype=float32", f"model.max_length={args.max_length}",
            f"data.train_file={data}", f"output.base_dir={run_dir}",
            "sft.gradient_accumulation_steps=1", f"sft.learning_rate={args.sft_lr}",
            f"sft.num_train_epochs={args.sft_epochs}", "sft.lr_scheduler_type=constant",
            "sft.warmup_ratio=0.0", "sft.logging_steps=1", "sft.save_steps=100000",
            "logging.report_to=[jsonl]",
        ],
    )  # fmt: skip
    started = time.perf_counter()
    run_sft(cfg)
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    return {
        "seconds": time.perf_counter() - started,
        "steps": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "learning_rate": args.sft_lr,
        "epochs": args.sft_epochs,
    }


def evaluate_stage(args: argparse.Namespace, sft_dir: Path) -> dict[str, Any]:
    from collabcoder.training.agentic.evaluate import EvalSettings, compare_models
    from collabcoder.training.agentic.rollout import RolloutSettings
    from collabcoder.training.agentic.sources import load_tasks
    from collabcoder.training.agentic.tool import ToolConfig, ToolSettings

    tasks = load_tasks(f"coophumaneval[:{args.eval_tasks}]")
    tool = ToolConfig(config=ToolSettings(max_debug_attempts=args.eval_attempts))
    settings = EvalSettings(
        rollout=RolloutSettings(args.max_new_tokens, args.max_length, 0.0),
        batch_size=args.eval_batch,
    )
    started = time.perf_counter()
    report = compare_models({"base": MODEL, "sft": str(sft_dir)}, tasks, tool, settings)
    report["seconds"] = time.perf_counter() - started
    return report


def rl_tasks(n: int) -> list[Any]:
    from collabcoder.training.agentic.sources import load_tasks

    tasks = load_tasks("humaneval")
    return sorted(tasks, key=lambda t: len(t.question))[:n]


def rl_run(args: argparse.Namespace, algo: str, seed: int, sft_dir: Path, out: Path) -> dict:
    from collabcoder.training.agentic.config import AgenticRLConfig, load_agentic_config
    from collabcoder.training.agentic.rl import AgenticRLTrainer
    from collabcoder.training.agentic.tool import ToolConfig, ToolSettings
    from collabcoder.training.trainers.resume import RunStart

    cfg = load_agentic_config(
        AgenticRLConfig,
        None,
        [
            f"model.name={sft_dir}", "model.dtype=float32", f"model.max_length={args.max_length}",
            f"output.base_dir={out}", f"rl.algorithm={algo}", f"rl.seed={seed}",
            f"rl.learning_rate={args.rl_lr}", f"rl.max_steps={args.rl_steps}",
            f"rl.tasks_per_step={args.rl_tasks}", f"rl.num_generations={args.rl_group}",
            "rl.num_optimization_steps=1", f"rl.micro_batch_size={args.rl_group}",
            f"rl.max_new_tokens={args.max_new_tokens}", "rl.save_steps=0",
            "rl.ppo.kl_coef=0.0", "logging.report_to=[jsonl]",
        ],
    )  # fmt: skip
    tool = ToolConfig(config=ToolSettings(max_debug_attempts=args.rl_attempts))
    rewards: list[float] = []
    solved: list[float] = []
    started = time.perf_counter()
    trainer = AgenticRLTrainer(
        cfg,
        tool,
        rl_tasks(args.rl_tasks),
        start=RunStart(),
        callback=lambda r: (
            rewards.append(r.metrics["reward/mean"]),
            solved.append(r.metrics["solve_rate"]),
            log(f"{algo} seed {seed} step {r.step}: reward {r.metrics['reward/mean']:.3f}"),
        ),
    )
    trainer.train()
    return {
        "reward_per_step": rewards,
        "solve_rate_per_step": solved,
        "rise": rewards[-1] - rewards[0],
        "seconds": time.perf_counter() - started,
    }


def rl_summary(runs: dict[str, dict]) -> dict[str, Any]:
    rises = [r["rise"] for r in runs.values()]
    firsts = [r["reward_per_step"][0] for r in runs.values()]
    spread = statistics.pstdev(firsts) if len(firsts) > 1 else 0.0
    mean_rise = sum(rises) / len(rises)
    return {
        "mean_rise": mean_rise,
        "seed_spread_first_step_std": spread,
        "rise_std": statistics.pstdev(rises) if len(rises) > 1 else 0.0,
        "goal_met": mean_rise > 0 and mean_rise > spread,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sft-rows", type=int, default=12)
    p.add_argument("--sft-epochs", type=float, default=2.0)
    p.add_argument("--sft-lr", type=float, default=1e-4)
    # The buggy first attempt is not trained on, so only clean conversations teach the first
    # turn (call the tool before answering); prepare's default share (0.2) is too few here.
    p.add_argument("--clean-fraction", type=float, default=0.5)
    p.add_argument("--eval-tasks", type=int, default=6)
    p.add_argument("--eval-attempts", type=int, default=5)
    p.add_argument("--eval-batch", type=int, default=6)
    p.add_argument("--rl-tasks", type=int, default=1)
    p.add_argument("--rl-group", type=int, default=2)
    p.add_argument("--rl-steps", type=int, default=2)
    p.add_argument("--rl-attempts", type=int, default=1)
    p.add_argument("--rl-lr", type=float, default=1e-5)
    p.add_argument("--algorithms", nargs="+", default=["ppo", "grpo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-new-tokens", type=int, default=448)
    p.add_argument("--max-length", type=int, default=3072)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-rl", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/agentic_learning.json")
    args = p.parse_args(argv)

    import torch

    from collabcoder.analyzers.files import atomic_write

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "model": MODEL,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_average_start": os.getloadavg(),
    }

    def save() -> None:
        result["seconds_total"] = time.perf_counter() - started
        result["load_average_end"] = os.getloadavg()
        atomic_write(args.out, json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="agentic-bench-") as tmp:
        work = Path(tmp)
        log("preparing conversations")
        result["prepare"] = prepare_conversations(
            args.sft_rows, 0, args.clean_fraction, work / "conv.jsonl"
        )
        log(f"SFT on {result['prepare']['conversations']} conversations")
        result["sft"] = run_sft_stage(args, work / "conv.jsonl", work / "sft")
        save()
        log(f"SFT done in {result['sft']['seconds']:.0f}s; evaluating base and SFT")
        ev = evaluate_stage(args, work / "sft")
        result["evaluate"] = ev
        base, sft = ev["models"]["base"], ev["models"]["sft"]
        k = str(args.eval_attempts)
        result["goals"] = {
            "valid_call_rate_after_sft": sft["valid_call_rate"],
            "valid_call_rate_goal_met": (sft["valid_call_rate"] or 0.0) >= 0.9,
            f"solve_rate_at_{k}_base": base["solve_rate_at_k"][k],
            f"solve_rate_at_{k}_sft": sft["solve_rate_at_k"][k],
            "solve_rate_no_drop": sft["solve_rate_at_k"][k] >= base["solve_rate_at_k"][k],
        }
        save()
        log(f"evaluation done: {json.dumps(result['goals'])}")
        if not args.skip_rl:
            result["rl"] = {}
            for algo in args.algorithms:
                runs = {}
                for seed in args.seeds:
                    runs[str(seed)] = rl_run(args, algo, seed, work / "sft", work / f"{algo}{seed}")
                    result["rl"][algo] = {"runs": runs}
                    save()
                result["rl"][algo]["summary"] = rl_summary(runs)
                save()
    save()
    log(f"done in {result['seconds_total']:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
