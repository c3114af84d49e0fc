"""Two processes, DDP over gloo on CPU: do both ranks hold the same weights after training?

    python bench/ddp_check.py [--steps 3] [--out bench/results/ddp.json]

Launches itself with `accelerate launch --multi_gpu --num_processes 2` (on a machine without
CUDA the trainer's Accelerator runs on CPU, so DDP uses gloo), trains two agents on a toy
two-agent task for a few steps, once as separate models and once as LoRA adapters on one shared
base, and compares every agent's parameter checksum across ranks. Each rank samples its own
tasks, so equal checksums mean the gradients really were all-reduced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class TwoAgentDigits:
    """Two agents; the joint reward is the share of digits over both completions."""

    num_agents = 2

    def reset(self, task: Any) -> Any:
        from collabcoder.training.rollout import Judgement

        class Episode:
            task_id = task.task_id

            @property
            def prompts(self) -> list[str]:
                return [task.prompt, task.prompt]

            def judge(self, joints: Sequence[Sequence[str]]) -> list[Judgement]:
                out = []
                for texts in joints:
                    text = "".join(texts)
                    r = sum(c.isdigit() for c in text) / max(1, len(text))
                    out.append(Judgement(r, info={"digit_share": r}))
                return out

            def step(self, joint: Sequence[str], judgement: Judgement) -> bool:
                return False

        return Episode()


def checksum(params: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def worker(model_dir: str, out_dir: str, steps: int) -> None:
    import torch
    from accelerate.utils import gather_object

    from collabcoder.training.config import config_from_dict
    from collabcoder.training.rollout import TextTask
    from collabcoder.training.trainers import MAGRPOTrainer

    torch.set_num_threads(1)
    tasks = [TextTask(f"t{i}", f"Write the numbers of row {i}") for i in range(8)]
    report: dict[str, Any] = {}
    for mode in ("separate", "shared_lora"):
        cfg = config_from_dict({
            "model": {"name": model_dir, "dtype": "float32", "agents": mode, "lora": {"r": 4}},
            "output": {"base_dir": f"{out_dir}/{mode}"},
            "magrpo": {"num_agents": 2, "num_generations": 4, "max_new_tokens": 8,
                       "per_device_train_batch_size": 2, "num_train_epochs": 1,
                       "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 0,
                       "eval_interval": 0, "temperature": 1.0, "top_p": 1.0},
        })  # fmt: skip
        trainer = MAGRPOTrainer(cfg, TwoAgentDigits(), tasks[: 2 * 2 * steps])
        initial = [checksum(trainer.agents.parameters(i)) for i in (0, 1)]
        seen = [t.task_id for s in range(1, trainer.total_steps + 1) for t in trainer.tasks_for_step(s)]
        trainer.train()
        final = [checksum(trainer.agents.parameters(i)) for i in (0, 1)]
        rows = gather_object([{"rank": trainer.accelerator.process_index, "initial": initial,
                               "final": final, "tasks": seen}])  # fmt: skip
        if trainer.accelerator.is_main_process:
            report[mode] = {
                "world_size": trainer.accelerator.num_processes,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "steps": trainer.total_steps,
                "ranks": rows,
                "in_sync": all(r["final"] == rows[0]["final"] for r in rows),
                "trained": rows[0]["final"] != rows[0]["initial"],
                "disjoint_tasks": not set(rows[0]["tasks"]) & set(rows[1]["tasks"]),
            }
    if report:
        Path(out_dir, "report.json").write_text(json.dumps(report, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ddp.json")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.steps)
        return 0
    from fixtures.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(tmp)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(29500 + os.getpid() % 500),
               __file__, "--steps", str(args.steps), "--worker", str(model), f"{tmp}/runs"]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-5000:], file=sys.stderr)
            return done.returncode
        report = json.loads(Path(tmp, "runs", "report.json").read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for mode, r in report.items():
        print(f"{mode}: {r['world_size']} ranks ({r['distributed_type']}), {r['steps']} steps, "
              f"in sync: {r['in_sync']}, trained: {r['trained']}, "
              f"disjoint tasks: {r['disjoint_tasks']}")  # fmt: skip
    ok = all(r["in_sync"] and r["trained"] and r["world_size"] == 2 for r in report.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
