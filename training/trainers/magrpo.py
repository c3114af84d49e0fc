"""MAGRPO: group-relative policy optimization for N cooperating agents (GRPO is N = 1).

One training step:

1. Take `per_device_train_batch_size x gradient_accumulation_steps` tasks (per process).
2. Roll out each task (`rollout`): every agent samples G completions per turn, joint actions
   are judged by the environment, the best (or a random) joint action is handed to the next
   turn, whose prompts carry the external feedback on it.
3. Advantages per turn group: the reward credited to each of an agent's completions minus the
   group mean (optionally / std, clipped). Each completion is weighted by its turn's weight; the
   turn that ends an episode early (its handed-off joint action is perfect) is weighted
   `early_termination_weight` times more. (The reference multiplied that weight into a turn
   whose joint actions were all perfect, hence a zero loss: the weight did nothing.)
4. `num_optimization_steps` updates on these samples, each accumulating gradients over the
   micro-batches, then clipping each agent's gradient and stepping its optimizer and scheduler.
   Updates after the first use the clipped importance ratio against the sampling policy.

Counts: a "step" is one rollout batch (what logging_steps, save_steps and eval_interval count);
the LR schedule advances once per optimizer update.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from collabcoder.analyzers.protocol.program import roles as feedback_roles
from collabcoder.training.config import TrainConfig, config_to_dict, save_config
from collabcoder.training.rollout.env import Environment
from collabcoder.training.rollout.generation import (
    Generator,
    HFGenerator,
    SamplingParams,
    eos_token_ids,
)
from collabcoder.training.rollout.rollout import EpisodeRecord, rollout
from collabcoder.training.trainers import checkpoint as ckpt
from collabcoder.training.trainers.logging import MetricsLogger
from collabcoder.training.trainers.loss import (
    agent_values,
    group_advantages,
    pack,
    policy_loss,
    token_logps,
)
from collabcoder.training.trainers.metrics import average, eval_metrics, rollout_metrics
from collabcoder.training.trainers.policies import AgentSet
from collabcoder.training.trainers.resume import (
    RunStart,
    check_writable,
    load_trainer_state,
    plan_start,
)


def agent_roles(num_agents: int) -> tuple[str, ...]:
    """('main',) for one agent, ('aux', 'main') for two, agent0.. for more."""
    if num_agents <= 2:
        return feedback_roles(num_agents)
    return tuple(f"agent{i}" for i in range(num_agents))


@dataclass(frozen=True)
class TrainSample:
    """One completion of one agent, ready for the loss."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    advantage: float
    weight: float  # turn weight x early-termination weight; 0: the group was dropped


def training_samples(
    records: Sequence[EpisodeRecord],
    agent: int,
    *,
    turn_weights: Sequence[float],
    early_termination_weight: float,
    normalize: bool,
    clip: float | None,
) -> list[TrainSample]:
    out: list[TrainSample] = []
    for record in records:
        for turn in record.turns:
            group = turn.samples[agent]
            if turn.dropped:  # a judge failure: the baseline would be wrong, train nothing
                advantages = [0.0] * len(group)
                weight = 0.0
            else:
                rewards = [float(r) for r in turn.rewards if r is not None]
                values = agent_values(rewards, turn.joints, agent, len(group))
                advantages = group_advantages(values, normalize=normalize, clip=clip)
                weight = turn_weights[turn.turn]
                if turn.ends_early:
                    weight *= early_termination_weight
            for sample, adv in zip(group, advantages, strict=True):
                out.append(TrainSample(sample.prompt_ids, sample.completion_ids, adv, weight))
    return out


@dataclass
class StepReport:
    """What the trainer tells its caller after each step (progress bars, tests)."""

    step: int
    total_steps: int
    epoch: int
    metrics: dict[str, float]
    eval: dict[str, float] | None = None
    checkpoint: Path | None = None


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    history: list[StepReport] = field(default_factory=list)


class MAGRPOTrainer:
    """Trains `config.trainer.num_agents` agents on `env` over `train_tasks`.

    `run_dir` defaults to `config.output.base_dir`. With `resume`, training continues from the
    newest whole checkpoint there; without it, a folder that already holds a run is refused.
    `resume` may also be the `RunStart` a caller planned (`plan_start`) before loading anything.
    """

    def __init__(
        self,
        config: TrainConfig,
        env: Environment,
        train_tasks: Sequence[Any],
        eval_tasks: Sequence[Any] = (),
        *,
        run_dir: Path | str | None = None,
        resume: bool | RunStart = False,
        callback: Callable[[StepReport], None] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
        from transformers import set_seed

        self.config = config
        self.args = config.trainer
        self.env = env
        if env.num_agents != self.args.num_agents:
            raise ValueError(
                f"the environment plays {env.num_agents} agent(s) but num_agents is "
                f"{self.args.num_agents}"
            )
        if not train_tasks:
            raise ValueError("no training tasks")
        self.train_tasks = list(train_tasks)
        self.eval_tasks = list(eval_tasks)[: self.args.eval_num_samples]
        self.run_dir = Path(run_dir if run_dir is not None else config.output.base_dir)
        self.callback = callback
        self.roles = agent_roles(self.args.num_agents)
        shared = config.model.agents == "shared_lora"
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            # Shared LoRA: each agent's backward touches only its own adapter.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=shared)],
        )
        acc = self.accelerator

        if not isinstance(resume, RunStart):
            check_writable(self.run_dir)
            resume = plan_start(self.run_dir, resume, self.roles)
        self.run_start = resume  # its notes say what damaged checkpoints were passed over
        self.start_step = resume.step
        resume_from = resume.checkpoint
        set_seed(self.args.seed)  # LoRA init and anything else random at build time
        self.agents = AgentSet(
            config.model,
            self.roles,
            resume_from=resume_from,
            with_reference=self.args.kl_beta > 0,
        )
        self.agents.prepare(acc)
        self.optimizers = [
            torch.optim.AdamW(self.agents.parameters(i), lr=self.args.learning_rate)
            for i in range(len(self.roles))
        ]
        self.steps_per_epoch = math.ceil(len(self.train_tasks) / self.global_batch)
        self.total_steps = self.args.num_train_epochs * self.steps_per_epoch
        self.schedulers = [self._scheduler(opt) for opt in self.optimizers]
        self.eos_ids = eos_token_ids(self.agents.tokenizer, self.agents.unwrapped(0))
        self.generator = self._generator()
        # Different ranks sample different completions; same rank, same seed, same run.
        set_seed(self.args.seed + acc.process_index)
        if resume_from is not None:
            load_trainer_state(resume_from, self.optimizers, self.schedulers, acc.process_index)
        if acc.is_main_process:
            save_config(config, self.run_dir)
        self.logger = MetricsLogger(
            self.run_dir,
            config.logging,
            run_config=config_to_dict(config),
            resume_step=self.start_step if resume_from is not None else None,
            enabled=acc.is_main_process,
        )
        self._window: list[dict[str, float]] = []

    # ---- setup ----------------------------------------------------------------------------

    @property
    def local_batch(self) -> int:
        return self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps

    @property
    def global_batch(self) -> int:
        return self.local_batch * self.accelerator.num_processes

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        from transformers import get_scheduler

        updates = self.total_steps * self.args.num_optimization_steps
        warmup = self.args.warmup_steps or math.ceil(self.args.warmup_ratio * updates)
        return get_scheduler(
            self.args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=updates,
        )

    def _generator(self) -> Generator:
        max_prompt = max(1, self.config.model.max_length - self.args.max_new_tokens)
        if self.config.generation.backend == "vllm":
            from collabcoder.training.rollout.vllm_generation import VLLMGenerator

            v = self.config.generation.vllm
            return VLLMGenerator(
                self.config.model.name,
                len(self.roles),
                self.agents.generation_model,
                self.agents.tokenizer,
                self.eos_ids,
                lora_roles=self.roles if self.agents.shared else None,
                max_prompt_tokens=max_prompt,
                gpu_memory_utilization=v.gpu_memory_utilization,
                tensor_parallel_size=v.tensor_parallel_size,
                max_model_len=v.max_model_len,
                enforce_eager=v.enforce_eager,
                dtype=self.config.model.dtype,
            )
        return HFGenerator(
            self.agents.generation_model, self.agents.tokenizer, self.eos_ids, max_prompt
        )

    # ---- data -----------------------------------------------------------------------------

    def tasks_for_step(self, step: int) -> list[Any]:
        """This process's tasks for 1-based `step`: a per-epoch shuffle (seeded, so a resumed
        run sees the same order), padded by wrapping so every process gets a full batch."""
        epoch, index = divmod(step - 1, self.steps_per_epoch)
        n = len(self.train_tasks)
        order = list(range(n))
        random.Random(self.args.seed * 1_000_003 + epoch).shuffle(order)
        padded = self.steps_per_epoch * self.global_batch
        order = [order[i % n] for i in range(padded)]
        start = index * self.global_batch + self.accelerator.process_index * self.local_batch
        return [self.train_tasks[i] for i in order[start : start + self.local_batch]]

    # ---- the loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        acc = self.accelerator
        result = TrainResult(self.run_dir, self.start_step, self.total_steps)
        try:
            for step in range(self.start_step + 1, self.total_steps + 1):
                report = self.train_step(step)
                result.history.append(report)
                result.step = step
                if self.callback is not None and acc.is_main_process:
                    self.callback(report)
            self._finish(result.step)
        finally:
            self.logger.close()
            close = getattr(getattr(self.env, "expert", None), "close", None)
            if close is not None:
                close()
        return result

    def train_step(self, step: int) -> StepReport:
        args = self.args
        started = time.perf_counter()
        tasks = self.tasks_for_step(step)
        rng = random.Random(args.seed * 7_919 + step * 104_729 + self.accelerator.process_index)
        params = SamplingParams(
            num_samples=args.num_generations,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
        )
        micro: list[list[EpisodeRecord]] = []
        for start in range(0, len(tasks), args.per_device_train_batch_size):
            chunk = tasks[start : start + args.per_device_train_batch_size]
            micro.append(
                rollout(
                    self.env,
                    chunk,
                    self.generator,
                    params,
                    num_turns=args.num_turns,
                    joint_mode=args.joint_mode,
                    handoff=args.external_handoff,
                    rng=rng,
                )
            )
        rolled = time.perf_counter()
        metrics = self.optimize(micro)
        records = [r for m in micro for r in m]
        metrics.update(rollout_metrics(records, self.roles, args.num_turns))
        metrics["time/rollout_s"] = rolled - started
        metrics["time/step_s"] = time.perf_counter() - started
        metrics = self._gather(metrics)
        report = StepReport(step, self.total_steps, (step - 1) // self.steps_per_epoch, metrics)
        self._window.append(metrics)
        if step % args.logging_steps == 0 or step == self.total_steps:
            self.logger.log(step, {"epoch": step / self.steps_per_epoch, **average(self._window)})
            self._window = []
        if args.eval_interval and self.eval_tasks and (
            step % args.eval_interval == 0 or step == self.total_steps
        ):
            report.eval = self.evaluate()
            self.logger.log(step, report.eval)
        if args.save_steps and step % args.save_steps == 0:
            report.checkpoint = self.save_checkpoint(step)
        return report

    def _gather(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return metrics
        from accelerate.utils import gather_object

        return average(gather_object([metrics]))

    # ---- optimization ---------------------------------------------------------------------

    def _samples(self, records: Sequence[EpisodeRecord], agent: int) -> list[TrainSample]:
        a = self.args
        return training_samples(
            records,
            agent,
            turn_weights=a.turn_weights,
            early_termination_weight=a.early_termination_weight,
            normalize=a.normalize_advantage,
            clip=a.advantage_clip,
        )

    def _tensors(self, samples: Sequence[TrainSample]) -> dict[str, Any]:
        device = self.accelerator.device
        batch = pack(
            [s.prompt_ids for s in samples],
            [s.completion_ids for s in samples],
            self.agents.tokenizer.pad_token_id,
            device,
        )
        return {
            "batch": batch,
            "advantages": torch.tensor([s.advantage for s in samples], device=device),
            "weights": torch.tensor([s.weight for s in samples], device=device),
        }

    def _logps(self, model: Any, batch: Any) -> torch.Tensor:
        return token_logps(model, batch, self.args.temperature)

    def optimize(self, micro: Sequence[Sequence[EpisodeRecord]]) -> dict[str, float]:
        """`num_optimization_steps` updates of every agent on these micro-batches."""
        a = self.args
        data = [
            [self._tensors(self._samples(records, i)) for records in micro]
            for i in range(len(self.roles))
        ]
        with torch.no_grad():
            for i, per_micro in enumerate(data):
                for d in per_micro:
                    if a.num_optimization_steps > 1:
                        d["old"] = self._logps(self.agents.generation_model(i), d["batch"])
                    if a.kl_beta > 0:
                        with self.agents.reference(i) as ref:
                            d["ref"] = self._logps(ref, d["batch"])
        out: dict[str, float] = {}
        for k in range(a.num_optimization_steps):
            stats = self.accumulate_gradients(data, first=k == 0)
            for i, role in enumerate(self.roles):
                norm = self._clip(i)
                lr = self.schedulers[i].get_last_lr()[0]
                self.optimizers[i].step()
                self.schedulers[i].step()
                self.optimizers[i].zero_grad(set_to_none=True)
                if k == 0:
                    out[f"{role}/grad_norm"] = norm
                    out[f"{role}/lr"] = lr
            if k == 0:
                out.update(stats)
        self.generator.sync_weights()
        return out

    def accumulate_gradients(
        self, data: Sequence[Sequence[dict[str, Any]]], *, first: bool = True
    ) -> dict[str, float]:
        """Backward passes of every agent over every micro-batch (one backward per agent per
        micro-batch, the same count on every process, as DDP needs)."""
        a = self.args
        stats: dict[str, list[float]] = {}
        n_micro = len(data[0])
        for i, role in enumerate(self.roles):
            model = self.agents.train_model(i)
            for d in data[i]:
                logps = self._logps(model, d["batch"])
                loss, s = policy_loss(
                    logps,
                    d["advantages"],
                    d["batch"].completion_mask,
                    d["weights"],
                    old_logps=None if first else d.get("old"),
                    ref_logps=d.get("ref"),
                    clip_epsilon=a.clip_epsilon,
                    kl_beta=a.kl_beta,
                )
                self.accelerator.backward(loss / n_micro)
                # On-policy with no KL the loss is -mean(advantage) = 0 by construction: not a
                # number worth a curve. |advantage| says how much signal the step had.
                if not first or a.kl_beta > 0 or a.num_optimization_steps > 1:
                    stats.setdefault(f"{role}/loss", []).append(s.policy_loss)
                live = d["weights"] != 0
                if bool(live.any()):
                    stats.setdefault(f"{role}/advantage_abs", []).append(
                        float(d["advantages"][live].abs().mean())
                    )
                if s.kl is not None:
                    stats.setdefault(f"{role}/kl", []).append(s.kl)
                if s.clip_fraction is not None and a.num_optimization_steps > 1:
                    stats.setdefault(f"{role}/clip_fraction", []).append(s.clip_fraction)
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def _clip(self, agent: int) -> float:
        params = [p for p in self.agents.parameters(agent) if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.args.max_grad_norm
        if max_norm is None:
            norm = torch.norm(torch.stack([p.grad.detach().norm() for p in params if p.grad is not None]))
            return float(norm)
        return float(self.accelerator.clip_grad_norm_(params, max_norm))

    # ---- evaluation -----------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Greedy episodes on the first `eval_num_samples` eval tasks (main process)."""
        acc = self.accelerator
        out: dict[str, float] = {}
        if acc.is_main_process and self.eval_tasks:
            records = rollout(
                self.env,
                self.eval_tasks,
                self.generator,
                SamplingParams(num_samples=1, max_new_tokens=self.args.max_new_tokens, temperature=0.0),
                num_turns=self.args.num_turns,
                handoff="best",
            )
            out = eval_metrics(records, self.roles, self.args.num_turns)
        acc.wait_for_everyone()
        return out

    # ---- checkpoints ----------------------------------------------------------------------

    def _manifest(self, step: int, config_path: str, prefix: str = "") -> Any:
        from collabcoder.server.agents.manifest import AgentEntry, AgentsManifest, TurnProtocol

        if not set(self.roles) <= {"aux", "main"}:
            return None  # the server composes aux + main only
        a = self.args
        kind = self.agents.kind
        base = self.config.model.name if kind == "lora" else None
        return AgentsManifest(
            agents=tuple(
                AgentEntry.model_validate(
                    {"role": r, "path": f"{prefix}{r}", "kind": kind, "base_model": base}
                )
                for r in self.roles
            ),
            turn_protocol=TurnProtocol(
                num_turns=a.num_turns,
                external_mode=a.external_mode,
                original_prompt=a.external_original_prompt,
                previous_response=a.external_previous_response,
                sandbox_slice=a.sandbox_slice,
            ),
            trained_with={
                "trainer": self.config.trainer_name,
                "config": config_path,
                "step": step,
                "base_model": self.config.model.name,
            },
        )

    def save_checkpoint(self, step: int) -> Path:
        """A sealed `checkpoints/step-N` (checkpoint.save_sealed)."""

        def write(stage: Path) -> None:
            self.agents.save(stage)
            state = {
                "step": step,
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers],
                "world_size": self.accelerator.num_processes,
            }
            ckpt.save_torch(state, stage / ckpt.TRAINER_STATE)
            manifest = self._manifest(step, "../../config.yaml")
            if manifest is not None:
                manifest.save(stage)

        return ckpt.save_sealed(self.accelerator, self.run_dir, step, roles=self.roles,
                                total_steps=self.total_steps, keep=self.args.save_total_limit,
                                write=write)

    def _finish(self, step: int) -> None:
        """Final agents + manifest at the top of the run folder (or, without
        save_final_model, a manifest pointing into the last checkpoint)."""
        acc = self.accelerator
        saved = ckpt.latest_checkpoint(self.run_dir)
        if not self.config.output.save_final_model and (saved is None or saved[0] != step):
            self.save_checkpoint(step)
            saved = ckpt.latest_checkpoint(self.run_dir)
        if acc.is_main_process:
            if self.config.output.save_final_model:
                stage = self.run_dir / ".final.tmp"
                shutil.rmtree(stage, ignore_errors=True)
                self.agents.save(stage)
                for role in self.roles:  # each folder appears whole; the manifest comes last
                    shutil.rmtree(self.run_dir / role, ignore_errors=True)
                    (stage / role).rename(self.run_dir / role)
                shutil.rmtree(stage, ignore_errors=True)
                manifest = self._manifest(step, "config.yaml")
            else:
                assert saved is not None
                prefix = f"{saved[1].relative_to(self.run_dir).as_posix()}/"
                manifest = self._manifest(step, "config.yaml", prefix)
            if manifest is not None:
                manifest.save(self.run_dir)
            ckpt.write_json(
                self.run_dir / ckpt.STATE_FILE,
                {"step": step, "total_steps": self.total_steps, "finished": True},
            )
        acc.wait_for_everyone()
