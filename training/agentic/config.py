"""Typed configs of `collab-train agentic sft` and `collab-train agentic rl`, and their loader.

The sections reuse the trainers' own (`model`, `output`, `logging` from `training.config`), so a
model, a run folder and metric sinks are set the same way in every collab-train config. The
loader reads YAML with each key's line (the training config loader's reader), applies
`--override` entries as OmegaConf dotlist values and validates with pydantic; every error names
the key and the file line or override that set it.

Defaults are the seed's ("Enhanced Code Agentic Training"): SFT batch size 1 x gradient
accumulation 8, learning rate 5e-6, 3 epochs, max length 4096; PPO learning rate 1e-6, max steps
1000, reward scale 1.0, debug penalty 0.1, tool bonus 0.05, test-case bonus 0.3.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, Field, ValidationError, model_validator

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.protocol.rewards import CodeAgenticRewardWeights
from collabcoder.training.agentic.tool import ToolConfig, load_tool_config
from collabcoder.training.config.load import (
    ConfigError,
    KeySources,
    dotted_key,
    parse_value,
    plain_data,
    read_config_file,
    short_repr,
)
from collabcoder.training.config.schema import (
    LoggingConfig,
    ModelConfig,
    OutputConfig,
    SchedulerType,
    Section,
)

SEED_MODEL = "Qwen/Qwen2.5-32B-Instruct"
DEFAULT_TOOL_CONFIG = "configs/code_agentic_tool_config.yaml"


def _model(max_length: int) -> ModelConfig:
    return ModelConfig(name=SEED_MODEL, max_length=max_length)


class ToolSection(Section):
    """Which tool config the conversations and rollouts use, and optional overrides of it."""

    config: str | None = Field(
        default=None,
        description=f"tool config YAML, e.g. {DEFAULT_TOOL_CONFIG}; null: the built-in defaults "
        "(the seed's values, the same as that file)",
    )
    max_debug_attempts: int | None = Field(
        default=None, ge=1, description="overrides the tool config's max_debug_attempts"
    )
    default_timeout: float | None = Field(default=None, gt=0)

    def load(self) -> ToolConfig:
        """The tool config this section names, with its overrides applied."""
        cfg = load_tool_config(self.config) if self.config else ToolConfig()
        changes = {
            k: v
            for k, v in (
                ("max_debug_attempts", self.max_debug_attempts),
                ("default_timeout", self.default_timeout),
            )
            if v is not None
        }
        if changes:
            cfg = cfg.model_copy(update={"config": cfg.config.model_copy(update=changes)})
        return cfg


class SFTData(Section):
    train_file: str = Field(
        default="data/code_agentic_conversations.jsonl",
        description="conversations from `collab-train agentic prepare` (JSONL or parquet)",
    )
    eval_file: str | None = None
    max_rows: int | None = Field(default=None, ge=1, description="use only the first N rows")


class SFTSection(Section):
    per_device_train_batch_size: int = Field(default=1, ge=1)
    gradient_accumulation_steps: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=5e-6, gt=0.0)
    num_train_epochs: float = Field(default=3.0, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1, description="-1: run num_train_epochs")
    lr_scheduler_type: SchedulerType = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int = Field(default=200, ge=1)
    save_total_limit: int | None = Field(default=None, ge=1)
    gradient_checkpointing: bool = False
    seed: int = 42


class AgenticSFTConfig(Section):
    """`collab-train agentic sft`: TRL SFTTrainer on debugging conversations."""

    model: ModelConfig = Field(default_factory=lambda: _model(4096))
    data: SFTData = Field(default_factory=lambda: SFTData())
    tool: ToolSection = Field(default_factory=lambda: ToolSection())
    sft: SFTSection = Field(default_factory=lambda: SFTSection())
    output: OutputConfig = Field(
        default_factory=lambda: OutputConfig(base_dir="output/agentic_sft")
    )
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())


class RLData(Section):
    train: str = Field(
        default="humaneval[:100]",
        description="a code-agentic file (JSON/JSONL/parquet) or humaneval/coophumaneval, "
        "converted, with an optional slice: coophumaneval[:20]",
    )
    eval: str | None = None


class RewardSection(Section):
    """`code_agentic_reward`'s weights; every one configurable."""

    correctness: float = 1.0
    tool_bonus: float = 0.05
    test_case_bonus: float = 0.3
    debug_penalty: float = 0.1
    reward_scale: float = 1.0

    def weights(self) -> CodeAgenticRewardWeights:
        return CodeAgenticRewardWeights(**self.model_dump())


class PPOSettings(Section):
    gamma: float = Field(default=1.0, ge=0.0, le=1.0)
    lam: float = Field(default=0.95, ge=0.0, le=1.0, description="GAE lambda")
    clip_range: float = Field(default=0.2, gt=0.0)
    clip_range_value: float = Field(default=0.2, gt=0.0)
    vf_coef: float = Field(default=0.1, ge=0.0)
    kl_coef: float = Field(default=0.05, ge=0.0, description="per-token KL penalty in the reward")
    whiten_advantages: bool = True
    value_learning_rate: float | None = Field(
        default=None, gt=0.0, description="the value head's; unset: 100 x learning_rate"
    )


class GRPOSettings(Section):
    normalize_advantage: bool = True
    advantage_clip: float | None = Field(default=None, gt=0.0)
    clip_epsilon: float | None = Field(default=0.2, gt=0.0)
    kl_beta: float = Field(default=0.0, ge=0.0)


class RLSection(Section):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    learning_rate: float = Field(default=1e-6, gt=0.0)
    max_steps: int = Field(default=1000, ge=1, description="rollout batches")
    tasks_per_step: int = Field(default=4, ge=1)
    num_generations: int = Field(
        default=4, ge=1, description="episodes per task (the GRPO group; >= 2 for grpo)"
    )
    num_optimization_steps: int = Field(
        default=2, ge=1, description="passes over each rollout batch (PPO epochs)"
    )
    micro_batch_size: int = Field(default=4, ge=1, description="episodes per forward pass")
    max_new_tokens: int = Field(default=512, ge=1, description="per assistant turn")
    max_total_tokens: int = Field(default=4096, ge=1, description="episode length cap")
    temperature: float = Field(default=1.0, gt=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    lr_scheduler_type: SchedulerType = "constant"
    seed: int = 42
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(default=100, ge=0, description="0: only the final model")
    save_total_limit: int | None = Field(default=None, ge=1)
    eval_interval: int = Field(default=0, ge=0, description="0: never")
    eval_num_tasks: int = Field(default=8, ge=1)
    ppo: PPOSettings = Field(default_factory=lambda: PPOSettings())
    grpo: GRPOSettings = Field(default_factory=lambda: GRPOSettings())

    @model_validator(mode="after")
    def _group(self) -> RLSection:
        if self.algorithm == "grpo" and self.num_generations < 2:
            raise ValueError(
                "algorithm grpo needs num_generations >= 2 (a group to compare), got "
                f"{self.num_generations}"
            )
        return self


class AgenticRLConfig(Section):
    """`collab-train agentic rl`: multi-turn tool-use RL, PPO or GRPO."""

    model: ModelConfig = Field(default_factory=lambda: _model(4096))
    data: RLData = Field(default_factory=lambda: RLData())
    tool: ToolSection = Field(default_factory=lambda: ToolSection())
    reward: RewardSection = Field(default_factory=lambda: RewardSection())
    rl: RLSection = Field(default_factory=lambda: RLSection())
    output: OutputConfig = Field(default_factory=lambda: OutputConfig(base_dir="output/agentic_rl"))
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())


C = TypeVar("C", bound=BaseModel)
_TEXT_KEYS = ("model.name", "output.base_dir", "data.train", "data.eval", "tool.config")


def load_agentic_config(
    kind: type[C], path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()
) -> C:
    """The validated config: YAML at `path` (None: defaults), then `overrides` (KEY.PATH=VALUE,
    OmegaConf dotlist values). Raises ConfigError naming the key and where it was set."""
    sources = KeySources()
    data = read_config_file(Path(path), sources) if path is not None else {}
    origin = str(path) if path is not None else "the defaults"
    cfg = OmegaConf.create(dict(data))
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"bad --override {text!r}: expected KEY.PATH=VALUE, e.g. rl.max_steps=2"
            )
        value = parse_value(raw)
        text_key = key in _TEXT_KEYS or key.endswith("_file")
        if text_key and raw.strip() not in ("null", "~") and raw.strip()[:1] not in "'\"":
            value = raw.strip()  # paths and names stay text as typed (`model.name=1.5`)
        try:
            OmegaConf.update(cfg, key, plain_data(value), merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot apply --override {text}: {exc}") from None
        sources.set(key, f"--override {text}", value)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
        return kind.model_validate(container)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = dotted_key(err["loc"])
            where = sources.find(key) or origin
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}' in {where}")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(
                    f"invalid value for '{key}' in {where}: {msg} (got {short_repr(err['input'])})"
                )
        if len(problems) == 1:
            raise ConfigError(problems[0]) from None
        raise ConfigError(
            f"{len(problems)} problems in the config:\n" + "\n".join(f"  - {p}" for p in problems)
        ) from None


def save_agentic_config(cfg: BaseModel, run_dir: Path) -> Path:
    """`run_dir/config.yaml`, atomically."""
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return atomic_write(run_dir / "config.yaml", text)


def config_dict(cfg: BaseModel) -> dict[str, Any]:
    return dict(cfg.model_dump(mode="json"))
