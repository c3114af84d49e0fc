"""Real training steps on a tiny random Qwen2 (CPU, seconds per step): GRPO, MAGRPO,
multi-turn MAGRPO, and every trainer knob doing what it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from collabcoder.server.agents.manifest import AgentsManifest
from collabcoder.training.config import TrainConfig, config_from_dict
from collabcoder.training.data import load_tasks
from collabcoder.training.rollout import (
    CodeCollabEnv,
    Judgement,
    Sample,
    TextRewardEnv,
    TextTask,
    TurnRecord,
)
from collabcoder.training.rollout.rollout import EpisodeRecord
from collabcoder.training.trainers import MAGRPOTrainer, RunFolderError, training_samples
from collabcoder.training.trainers.checkpoint import list_checkpoints
from collabcoder.training.trainers.logging import read_metrics

torch.set_num_threads(1)


def make_config(model_dir: Path, out: Path, section: str = "grpo", **knobs: Any) -> TrainConfig:
    model_cfg = knobs.pop("model", {})
    data = {
        "model": {"name": str(model_dir), "dtype": "float32", "max_length": 512, **model_cfg},
        "dataset": {"name": "humaneval", "train_split": "test[:2]", "eval_split": "test[2:3]"},
        "output": {"base_dir": str(out)},
        section: {
            "num_generations": 2,
            "max_new_tokens": 6,
            "num_train_epochs": 1,
            "per_device_train_batch_size": 2,
            "logging_steps": 1,
            "save_steps": 0,
            "eval_interval": 0,
            "external_mode": "level_feedback",
            **({"num_agents": 2} if section == "magrpo" else {}),
            **knobs,
        },
    }
    return config_from_dict(data)


def code_env(cfg: TrainConfig) -> CodeCollabEnv:
    a = cfg.trainer
    return CodeCollabEnv(a.num_agents, external_mode=a.external_mode, sandbox_slice=a.sandbox_slice)


# A reward the tiny model can move: the share of completion characters that are digits.
def digit_share(text: str) -> float:
    return sum(c.isdigit() for c in text) / max(1, len(text))


TEXT_TASKS = [TextTask(f"t{i}", f"Write numbers {i}") for i in range(4)]


def text_trainer(model_dir: Path, out: Path, **knobs: Any) -> MAGRPOTrainer:
    cfg = make_config(model_dir, out, **{"num_generations": 4, "max_new_tokens": 8, **knobs})
    return MAGRPOTrainer(cfg, TextRewardEnv(digit_share), TEXT_TASKS)


def params_of(trainer: MAGRPOTrainer, agent: int = 0) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.agents.parameters(agent)]).clone()


# ---- end to end -----------------------------------------------------------------------------


def test_grpo_steps_on_humaneval_write_a_run_folder_the_server_loads(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    run = tmp_path / "grpo"
    cfg = make_config(tiny_model_dir, run, eval_interval=1, save_steps=1)
    tasks = load_tasks("humaneval", "test[:2]")
    trainer = MAGRPOTrainer(cfg, code_env(cfg), tasks, load_tasks("humaneval", "test[2:3]"))
    result = trainer.train()
    assert result.step == result.total_steps == 1
    assert (run / "config.yaml").is_file()
    rows = read_metrics(run)
    train_row = next(r for r in rows if "reward/mean" in r)
    eval_row = next(r for r in rows if "eval/reward/mean" in r)
    assert {"main/grad_norm", "main/lr", "judge/pass_rate", "judge/level1"} <= set(train_row)
    assert "eval/final_pass_rate" in eval_row
    assert not any(k.startswith(("turn_", "aux/")) or "bonus" in k for k in train_row)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert [s for s, _ in list_checkpoints(run)] == [1]
    manifest = AgentsManifest.load(run)
    assert [a.role for a in manifest.agents] == ["main"] and manifest.agents[0].kind == "full"
    assert AgentsManifest.load(run / "checkpoints" / "step-0000001").trained_with["step"] == 1
    AutoModelForCausalLM.from_pretrained(run / "main")
    assert json.loads((run / "state.json").read_text())["finished"] is True


def test_magrpo_two_agents_shared_lora_saves_one_adapter_per_agent(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = tmp_path / "magrpo"
    cfg = make_config(
        tiny_model_dir, run, "magrpo", model={"agents": "shared_lora", "lora": {"r": 4}}
    )
    trainer = MAGRPOTrainer(cfg, code_env(cfg), load_tasks("humaneval", "test[:2]"))
    before = [params_of(trainer, i) for i in (0, 1)]
    trainer.train()
    manifest = AgentsManifest.load(run)
    assert [(a.role, a.kind) for a in manifest.agents] == [("aux", "lora"), ("main", "lora")]
    assert manifest.agents[0].base_model == str(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(manifest.agents[0].base_model)
    PeftModel.from_pretrained(base, run / "aux")
    # One adapter per agent, same shape, trained separately.
    assert before[0].numel() == before[1].numel() > 0
    assert trainer.agents.parameters(0)[0] is not trainer.agents.parameters(1)[0]
    rows = read_metrics(run)
    assert {"aux/grad_norm", "main/grad_norm", "judge/bonus"} <= set(rows[0])


def test_multi_turn_magrpo_with_level_feedback(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "mt"
    cfg = make_config(
        tiny_model_dir, run, "magrpo", num_turns=2, turn_gradient_weights=[1.2, 0.8],
        sandbox_slice=-2, per_device_train_batch_size=1, gradient_accumulation_steps=2,
    )  # fmt: skip
    MAGRPOTrainer(cfg, code_env(cfg), load_tasks("humaneval", "test[:2]")).train()
    row = read_metrics(run)[0]
    assert {"turn_1/reward_mean", "turn_2/reached", "episode/turns"} <= set(row)
    assert AgentsManifest.load(run).turn_protocol.num_turns == 2


def test_a_step_moves_the_policy_toward_higher_reward(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = text_trainer(tiny_model_dir, tmp_path / "r", learning_rate=1e-2)
    before = params_of(trainer)
    report = trainer.train_step(1)
    assert report.metrics["main/advantage_abs"] > 0
    assert not torch.equal(before, params_of(trainer))


# ---- knobs ----------------------------------------------------------------------------------


def test_each_step_takes_batch_size_times_accumulation_tasks(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(
        tiny_model_dir, tmp_path / "b", per_device_train_batch_size=2, gradient_accumulation_steps=2,
        num_train_epochs=2,
    )  # fmt: skip
    tasks = [TextTask(f"t{i}", "x") for i in range(5)]
    trainer = MAGRPOTrainer(cfg, TextRewardEnv(digit_share), tasks)
    assert (trainer.steps_per_epoch, trainer.total_steps) == (2, 4)
    first, second = trainer.tasks_for_step(1), trainer.tasks_for_step(2)
    assert len(first) == len(second) == 4
    assert {t.task_id for t in first + second} == {t.task_id for t in tasks}  # whole epoch
    assert len({t.task_id for t in first}) == 4
    assert trainer.tasks_for_step(3) != first  # reshuffled per epoch, reproducibly:
    assert trainer.tasks_for_step(3) == trainer.tasks_for_step(3)
    report = trainer.train_step(1)
    assert report.metrics["main/completion_tokens"] > 0


def _record(turns: list[tuple[list[float], bool]]) -> EpisodeRecord:
    """An episode of scripted turns: (rewards of G=2 aligned joint actions, ends_early)."""
    out = []
    for t, (rewards, early) in enumerate(turns):
        samples = [[Sample((11, 12, 13 + t), (40 + k, 41, 2), "x", True) for k in range(2)]]
        out.append(
            TurnRecord(t, ["p"], samples, [(0,), (1,)], [Judgement(r) for r in rewards],
                       handoff=0, ends_early=early)
        )  # fmt: skip
    return EpisodeRecord("e", out)


def _grads(trainer: MAGRPOTrainer, micro: list[list[EpisodeRecord]], et_weight: float = 2.0) -> torch.Tensor:
    trainer.optimizers[0].zero_grad(set_to_none=True)
    data = [[
        trainer._tensors(training_samples(
            m, 0, turn_weights=[1.0, 1.0], early_termination_weight=et_weight,
            normalize=False, clip=None))
        for m in micro
    ]]  # fmt: skip
    trainer.accumulate_gradients(data)
    return torch.cat([p.grad.flatten() for p in trainer.agents.parameters(0)]).clone()  # type: ignore[union-attr]


def test_early_termination_weight_changes_the_update(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = text_trainer(tiny_model_dir, tmp_path / "et", num_turns=2)
    ended = _record([([2.0, 0.0], True)])  # solved at turn 1 of 2
    went_on = _record([([1.0, 0.0], False), ([0.0, 1.0], False)])
    g1 = _grads(trainer, [[ended]], et_weight=1.0)
    g3 = _grads(trainer, [[ended]], et_weight=3.0)
    torch.testing.assert_close(g3, 3 * g1)
    mixed1 = _grads(trainer, [[ended, went_on]], et_weight=1.0)
    mixed3 = _grads(trainer, [[ended, went_on]], et_weight=3.0)
    cos = torch.nn.functional.cosine_similarity(mixed1, mixed3, dim=0)
    assert cos < 0.999  # the direction changes, not only the size (Adam ignores size)


def test_gradient_accumulation_equals_one_bigger_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = text_trainer(tiny_model_dir, tmp_path / "acc")
    a = _record([([1.0, 0.0], False)])
    b = _record([([0.0, 3.0], False)])
    torch.testing.assert_close(_grads(trainer, [[a], [b]]), _grads(trainer, [[a, b]]))


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_gradients_are_clipped_to_max_grad_norm(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = text_trainer(tiny_model_dir, tmp_path / "clip", max_grad_norm=1e-3)
    seen: list[float] = []
    step = trainer.optimizers[0].step

    def spy(*args: Any, **kwargs: Any) -> Any:
        grads = [p.grad for p in trainer.agents.parameters(0) if p.grad is not None]
        seen.append(float(torch.norm(torch.stack([g.norm() for g in grads]))))
        return step(*args, **kwargs)

    trainer.optimizers[0].step = spy  # type: ignore[method-assign]
    metrics = trainer.optimize([[_record([([1.0, 0.0], False)])]])
    assert metrics["main/grad_norm"] > 1e-3  # logged: the norm before clipping
    assert seen and seen[0] <= 1e-3 * 1.001


def test_lr_warmup_schedule_and_logging_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "lr"
    trainer = text_trainer(
        tiny_model_dir, run, per_device_train_batch_size=1, learning_rate=1e-3,
        lr_scheduler_type="linear", warmup_steps=2, num_train_epochs=1,
    )  # fmt: skip
    trainer.train()
    lrs = [r["main/lr"] for r in read_metrics(run)]
    assert lrs == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])  # up over 2 updates, then linear decay


def test_logging_save_and_eval_intervals(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "intervals"
    cfg = make_config(
        tiny_model_dir, run, num_generations=2, max_new_tokens=4, per_device_train_batch_size=1,
        num_train_epochs=5, logging_steps=2, save_steps=2, eval_interval=3,
    )  # fmt: skip
    tasks = [TextTask("only", "count")]
    MAGRPOTrainer(cfg, TextRewardEnv(digit_share), tasks, tasks).train()
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "reward/mean" in r] == [2, 4, 5]
    assert [r["step"] for r in rows if "eval/reward/mean" in r] == [3, 5]
    assert [s for s, _ in list_checkpoints(run)] == [2, 4]
    assert rows[0]["epoch"] == pytest.approx(2.0)  # epochs done, as a float (one task each)


def test_same_seed_same_run_other_seed_other_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    def run(name: str, seed: int) -> tuple[list[float], torch.Tensor]:
        trainer = text_trainer(tiny_model_dir, tmp_path / name, seed=seed, learning_rate=1e-3)
        trainer.train()
        return [r["reward/mean"] for r in read_metrics(tmp_path / name)], params_of(trainer)

    r1, p1 = run("a", 1)
    r2, p2 = run("b", 1)
    r3, p3 = run("c", 2)
    assert r1 == r2 and torch.equal(p1, p2)
    assert r1 != r3 or not torch.equal(p1, p3)


def test_importance_ratio_and_kl_with_several_optimization_steps(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "ppo"
    trainer = text_trainer(
        tiny_model_dir, run, num_optimization_steps=2, kl_beta=0.05, learning_rate=1e-2,
        model={"lora": {"enabled": True, "r": 4}},
    )  # fmt: skip
    trainer.train()
    row = read_metrics(run)[0]
    assert {"main/kl", "main/clip_fraction", "main/loss"} <= set(row)
    assert trainer.schedulers[0].last_epoch == 2 * trainer.total_steps  # one per update


def test_a_folder_holding_a_run_is_not_overwritten(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "twice"
    text_trainer(tiny_model_dir, run, num_generations=2, max_new_tokens=2).train()
    with pytest.raises(RunFolderError, match="--resume"):
        text_trainer(tiny_model_dir, run)
    with pytest.raises(RunFolderError, match="finished"):
        cfg = make_config(tiny_model_dir, run)
        MAGRPOTrainer(cfg, TextRewardEnv(digit_share), TEXT_TASKS, resume=True)


def test_wandb_offline_needs_no_network(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb", reason="wandb is optional: pip install wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "wb"
    cfg = make_config(tiny_model_dir, run, num_generations=2, max_new_tokens=2)
    cfg.logging.report_to = ["jsonl", "wandb"]
    cfg.logging.wandb.mode = "offline"
    MAGRPOTrainer(cfg, TextRewardEnv(digit_share), TEXT_TASKS[:1]).train()
    assert list((run / "wandb").glob("offline-run-*"))
