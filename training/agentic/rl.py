"""`collab-train agentic rl`: multi-turn tool-use RL with PPO or GRPO, on the shared trainer's
parts.

One step: take `tasks_per_step` tasks (a seeded per-epoch shuffle, so a resumed run sees the
same order), play `num_generations` episodes of each (`rollout.run_episodes`: the model calls
the code-execution tool up to `max_debug_attempts` times, the final program earns
`code_agentic_reward`), then update:

* `grpo`: the shared trainer's group-relative advantages (`loss.group_advantages`, one group
  per task) and its clipped policy loss (`loss.policy_loss` on `loss.token_logps`), with the
  completion mask narrowed to the model's own tokens;
* `ppo`: `ppo.py` (value head, GAE, clipped policy and value losses).

Models, checkpoints, resume and logging are the MAGRPO trainer's: `AgentSet` (one agent,
`main`), sealed `checkpoints/step-N` folders (`checkpoint.seal` / `publish`, plus the value
head for PPO), `resume.plan_start`, `MetricsLogger`, and accelerate for devices. The final
model is `<run>/main` + `agents.json` (see `outputs.py`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.training.agentic import ppo
from collabcoder.training.agentic.config import AgenticRLConfig, config_dict, save_agentic_config
from collabcoder.training.agentic.evaluate import episode_metrics
from collabcoder.training.agentic.outputs import ROLE, manifest, publish_final
from collabcoder.training.agentic.rollout import EpisodeResult, RolloutSettings, run_episodes
from collabcoder.training.agentic.tool import ToolConfig
from collabcoder.training.data.tasks import CodeAgenticTask
from collabcoder.training.rollout.generation import eos_token_ids
from collabcoder.training.trainers import checkpoint as ckpt
from collabcoder.training.trainers.logging import MetricsLogger
from collabcoder.training.trainers.loss import PackedBatch, group_advantages, pack, policy_loss
from collabcoder.training.trainers.loss import token_logps as shared_token_logps
from collabcoder.training.trainers.policies import AgentSet
from collabcoder.training.trainers.resume import RunStart, load_trainer_state

VALUE_HEAD = "value_head.pt"
ROLES = (ROLE,)


@dataclass
class RLStepReport:
    step: int
    total_steps: int
    metrics: dict[str, float]
    eval: dict[str, float] | None = None
    checkpoint: Path | None = None


@dataclass
class RLResult:
    run_dir: Path
    step: int
    history: list[RLStepReport] = field(default_factory=list)


class AgenticRLTrainer:
    def __init__(
        self,
        cfg: AgenticRLConfig,
        tool_config: ToolConfig,
        train_tasks: Sequence[CodeAgenticTask],
        eval_tasks: Sequence[CodeAgenticTask] = (),
        *,
        start: RunStart,
        sandbox: Sandbox | None = None,
        callback: Callable[[RLStepReport], None] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from transformers import get_scheduler, set_seed

        from collabcoder.training.agentic.sources import resolve_model_source

        if not train_tasks:
            raise ValueError("no training tasks")
        self.cfg = cfg
        self.rl = cfg.rl
        self.tool_config = tool_config
        self.train_tasks = list(train_tasks)
        self.eval_tasks = list(eval_tasks)[: cfg.rl.eval_num_tasks]
        self.sandbox = sandbox
        self.callback = callback
        self.run_dir = Path(cfg.output.base_dir)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        acc = self.accelerator
        self.start_step = start.step
        self.is_ppo = cfg.rl.algorithm == "ppo"
        kl = cfg.rl.ppo.kl_coef if self.is_ppo else cfg.rl.grpo.kl_beta
        set_seed(cfg.rl.seed)
        model_cfg = cfg.model.model_copy(update={"name": resolve_model_source(cfg.model.name)})
        self.agents = AgentSet(
            model_cfg, ROLES, resume_from=start.checkpoint, with_reference=kl > 0
        )
        self.agents.prepare(acc)
        self.tokenizer = self.agents.tokenizer
        groups: list[dict[str, Any]] = [
            {"params": self.agents.parameters(0), "lr": cfg.rl.learning_rate}
        ]
        self.value_head: Any = None
        if self.is_ppo:
            hidden = int(self.agents.unwrapped(0).config.hidden_size)
            head = ppo.ValueHead(hidden)
            if start.checkpoint is not None:
                head.load_state_dict(ckpt.load_torch(start.checkpoint / VALUE_HEAD))
            self.value_head = acc.prepare(head)
            vlr = cfg.rl.ppo.value_learning_rate or 100 * cfg.rl.learning_rate
            groups.append({"params": list(self.value_head.parameters()), "lr": vlr})
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = get_scheduler(
            cfg.rl.lr_scheduler_type,
            self.optimizer,
            num_warmup_steps=0,
            num_training_steps=cfg.rl.max_steps * cfg.rl.num_optimization_steps,
        )
        self.eos_ids = eos_token_ids(self.tokenizer, self.agents.unwrapped(0))
        set_seed(cfg.rl.seed + acc.process_index)
        if start.checkpoint is not None:
            load_trainer_state(
                start.checkpoint, [self.optimizer], [self.scheduler], acc.process_index
            )
        if acc.is_main_process:
            save_agentic_config(cfg, self.run_dir)
        self.logger = MetricsLogger(
            self.run_dir,
            cfg.logging,
            run_config=config_dict(cfg),
            resume_step=start.step if start.checkpoint is not None else None,
            enabled=acc.is_main_process,
        )

    # ---- data and rollouts ----------------------------------------------------------------

    def tasks_for_step(self, step: int) -> list[CodeAgenticTask]:
        """A seeded per-epoch shuffle, wrapped so every step has `tasks_per_step` tasks."""
        n, k = len(self.train_tasks), self.rl.tasks_per_step
        per_epoch = math.ceil(n / k)
        epoch, index = divmod(step - 1, per_epoch)
        order = list(range(n))
        random.Random(self.rl.seed * 1_000_003 + epoch).shuffle(order)
        return [self.train_tasks[order[(index * k + i) % n]] for i in range(k)]

    def settings(self, greedy: bool = False) -> RolloutSettings:
        return RolloutSettings(
            max_new_tokens=self.rl.max_new_tokens,
            max_total_tokens=min(self.rl.max_total_tokens, self.cfg.model.max_length),
            temperature=0.0 if greedy else self.rl.temperature,
            top_p=self.rl.top_p,
        )

    def play(self, tasks: Sequence[CodeAgenticTask], greedy: bool = False) -> list[EpisodeResult]:
        return run_episodes(
            self.agents.generation_model(0),
            self.tokenizer,
            tasks,
            self.tool_config,
            self.settings(greedy),
            self.eos_ids,
            self.cfg.reward.weights(),
            sandbox=self.sandbox,
            batch_size=self.rl.micro_batch_size,
        )

    # ---- the loop -------------------------------------------------------------------------

    def train(self) -> RLResult:
        result = RLResult(self.run_dir, self.start_step)
        try:
            for step in range(self.start_step + 1, self.rl.max_steps + 1):
                report = self.train_step(step)
                result.history.append(report)
                result.step = step
                if self.callback is not None and self.accelerator.is_main_process:
                    self.callback(report)
        finally:
            self.logger.close()
        if self.accelerator.is_main_process:
            publish_final(
                self.run_dir,
                self.agents.unwrapped(0),
                self.tokenizer,
                self._trained_with(result.step),
                result.step,
            )
        return result

    def _trained_with(self, step: int) -> dict[str, Any]:
        return {
            "trainer": f"agentic_{self.rl.algorithm}",
            "config": "config.yaml",
            "step": step,
            "base_model": self.cfg.model.name,
        }

    def train_step(self, step: int) -> RLStepReport:
        started = time.perf_counter()
        tasks = self.tasks_for_step(step)
        group = self.rl.num_generations
        results = self.play([t for t in tasks for _ in range(group)])
        rolled = time.perf_counter()
        metrics = self.ppo_update(results) if self.is_ppo else self.grpo_update(results)
        metrics.update(episode_metrics(results))
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        metrics["time/rollout_s"] = rolled - started
        metrics["time/step_s"] = time.perf_counter() - started
        report = RLStepReport(step, self.rl.max_steps, metrics)
        if step % self.rl.logging_steps == 0 or step == self.rl.max_steps:
            self.logger.log(step, metrics)
        every = self.rl.eval_interval
        if every and self.eval_tasks and (step % every == 0 or step == self.rl.max_steps):
            report.eval = episode_metrics(self.play(self.eval_tasks, greedy=True), "eval/")
            self.logger.log(step, report.eval)
        if self.rl.save_steps and step % self.rl.save_steps == 0:
            report.checkpoint = self.save_checkpoint(step)
        return report

    # ---- batches --------------------------------------------------------------------------

    def _micro(self, results: Sequence[EpisodeResult]) -> list[list[int]]:
        """Indices of the episodes in each micro-batch; episodes without a model token (none
        sampled) are left out."""
        live = [i for i, r in enumerate(results) if sum(r.mask) > 0]
        size = self.rl.micro_batch_size
        return [live[i : i + size] for i in range(0, len(live), size)]

    def _batch(self, results: Sequence[EpisodeResult], idx: Sequence[int]) -> PackedBatch:
        """Packed [prompt | everything after it]; the completion mask keeps model tokens only."""
        device = self.accelerator.device
        chosen = [results[i] for i in idx]
        batch = pack(
            [r.prompt_ids for r in chosen],
            [r.ids for r in chosen],
            self.tokenizer.pad_token_id,
            device,
        )
        width = batch.completion_width
        model_mask = [list(r.mask) + [0] * (width - len(r.mask)) for r in chosen]
        batch.completion_mask = torch.tensor(model_mask, dtype=torch.float32, device=device)
        return batch

    def _step_optimizer(self) -> float:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = float(self.accelerator.clip_grad_norm_(params, self.rl.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    # ---- GRPO -----------------------------------------------------------------------------

    def grpo_update(self, results: Sequence[EpisodeResult]) -> dict[str, float]:
        g = self.rl.grpo
        k = self.rl.num_generations
        advantages: list[float] = []
        for start in range(0, len(results), k):
            rewards = [r.reward.total for r in results[start : start + k]]
            advantages += group_advantages(
                rewards, normalize=g.normalize_advantage, clip=g.advantage_clip
            )
        micro = self._micro(results)
        model = self.agents.train_model(0)
        temp = self.rl.temperature
        data = []
        for idx in micro:
            batch = self._batch(results, idx)
            d: dict[str, Any] = {
                "batch": batch,
                "adv": torch.tensor([advantages[i] for i in idx], device=batch.input_ids.device),
                "share": len(idx) / max(1, sum(len(m) for m in micro)),
            }
            with torch.no_grad():
                if self.rl.num_optimization_steps > 1:
                    d["old"] = shared_token_logps(self.agents.generation_model(0), batch, temp)
                if g.kl_beta > 0:
                    with self.agents.reference(0) as ref:
                        d["ref"] = shared_token_logps(ref, batch, temp)
            data.append(d)
        stats: dict[str, list[float]] = {}
        for epoch in range(self.rl.num_optimization_steps):
            for d in data:
                logps = shared_token_logps(model, d["batch"], temp)
                loss, s = policy_loss(
                    logps,
                    d["adv"],
                    d["batch"].completion_mask,
                    torch.ones_like(d["adv"]),
                    old_logps=None if epoch == 0 else d.get("old"),
                    ref_logps=d.get("ref"),
                    clip_epsilon=g.clip_epsilon,
                    kl_beta=g.kl_beta,
                )
                self.accelerator.backward(loss * d["share"])
                stats.setdefault("grpo/loss", []).append(s.policy_loss)
                if s.kl is not None:
                    stats.setdefault("grpo/kl", []).append(s.kl)
            stats.setdefault("grad_norm", []).append(self._step_optimizer() if data else 0.0)
        out = {key: sum(v) / len(v) for key, v in stats.items() if v}
        out["grpo/advantage_abs"] = sum(abs(a) for a in advantages) / max(1, len(advantages))
        return out

    # ---- PPO ------------------------------------------------------------------------------

    def ppo_update(self, results: Sequence[EpisodeResult]) -> dict[str, float]:
        p = self.rl.ppo
        temp = self.rl.temperature
        micro = self._micro(results)
        data = []
        with torch.no_grad():
            for idx in micro:
                batch = self._batch(results, idx)
                mask = batch.completion_mask
                old_logps, old_values = ppo.logps_and_values(
                    self.agents.generation_model(0), self.value_head, batch, temp
                )
                ref = None
                if p.kl_coef > 0:
                    with self.agents.reference(0) as ref_model:
                        ref = shared_token_logps(ref_model, batch, temp)
                final = torch.tensor([results[i].reward.total for i in idx], device=mask.device)
                rewards = ppo.token_rewards(final, mask, old_logps, ref, p.kl_coef)
                adv, returns = ppo.gae(rewards, old_values * mask, mask, p.gamma, p.lam)
                data.append(
                    {"batch": batch, "old": old_logps, "old_v": old_values, "adv": adv,
                     "ret": returns, "kl": None if ref is None else (old_logps - ref)}
                )  # fmt: skip
        if p.whiten_advantages and data:
            # Whitened over the whole rollout batch, not per micro-batch.
            flat_adv = torch.cat([d["adv"].flatten() for d in data])
            flat_mask = torch.cat([d["batch"].completion_mask.flatten() for d in data])
            white = ppo.whiten(flat_adv, flat_mask)
            offset = 0
            for d in data:
                n = d["adv"].numel()
                d["adv"] = white[offset : offset + n].view_as(d["adv"])
                offset += n
        total_tokens = sum(float(d["batch"].completion_mask.sum()) for d in data) or 1.0
        model = self.agents.train_model(0)
        stats: dict[str, list[float]] = {}
        for _ in range(self.rl.num_optimization_steps):
            for d in data:
                mask = d["batch"].completion_mask
                logps, values = ppo.logps_and_values(model, self.value_head, d["batch"], temp)
                loss, s = ppo.ppo_loss(
                    logps, values, d["old"], d["old_v"], d["adv"], d["ret"], mask,
                    clip_range=p.clip_range, clip_range_value=p.clip_range_value,
                    vf_coef=p.vf_coef,
                )  # fmt: skip
                # Token-weighted across micro-batches: the mean over the whole batch's tokens.
                self.accelerator.backward(loss * float(mask.sum()) / total_tokens)
                for key, value in vars(s).items():
                    stats.setdefault(f"ppo/{key}", []).append(value)
            stats.setdefault("grad_norm", []).append(self._step_optimizer() if data else 0.0)
        out = {key: sum(v) / len(v) for key, v in stats.items() if v}
        kls = [
            float((d["kl"] * d["batch"].completion_mask).sum()) for d in data if d["kl"] is not None
        ]
        if kls:
            out["ppo/kl_ref"] = sum(kls) / total_tokens
        return out

    # ---- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> Path:
        """A sealed `checkpoints/step-N` (checkpoint.save_sealed), with the value head for PPO."""

        def write(stage: Path) -> None:
            self.agents.save(stage)
            state = {
                "step": step,
                "optimizers": [self.optimizer.state_dict()],
                "schedulers": [self.scheduler.state_dict()],
                "world_size": self.accelerator.num_processes,
            }
            ckpt.save_torch(state, stage / ckpt.TRAINER_STATE)
            if self.value_head is not None:
                head = self.accelerator.unwrap_model(self.value_head)
                ckpt.save_torch(head.state_dict(), stage / VALUE_HEAD)
            manifest(self._trained_with(step)).save(stage)

        return ckpt.save_sealed(self.accelerator, self.run_dir, step, roles=ROLES,
                                total_steps=self.rl.max_steps, keep=self.rl.save_total_limit,
                                write=write)
