"""Typed schema of a `collab-train` config: one pydantic model per YAML section.

Every section forbids unknown keys, so a typo is an error instead of a silently ignored setting
(the reference scripts read dicts with `.get(key, default)` and ignored typos). Defaults are the
paper's where it had one, so a YAML only states what differs.

A config holds exactly one trainer section (`grpo:` or `magrpo:`); `TrainConfig.trainer` returns
it. A new trainer (e.g. `code_agentic:`) is one more optional field plus an entry in
`TRAINER_SECTIONS`.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

ExternalMode = Literal["expert_edits", "level_feedback", "level_passed", "passed", "plain"]
JointMode = Literal["aligned", "cross"]
Handoff = Literal["best", "random"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
AgentsMode = Literal["separate", "shared_lora"]
DatasetType = Literal["humaneval", "coophumaneval"]
ReportTo = Literal["jsonl", "tensorboard", "wandb"]
WandbMode = Literal["online", "offline", "disabled"]
Backend = Literal["hf", "vllm"]
# The transformers schedulers that need no extra arguments.
SchedulerType = Literal[
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
]

TRAINER_SECTIONS: tuple[str, ...] = ("grpo", "magrpo")


def config_conflict(message: str, *keys: str) -> PydanticCustomError:
    """A cross-field error; `keys` (relative to the section) let the loader say where each
    conflicting value came from."""
    return PydanticCustomError("config_conflict", message, {"keys": list(keys)})


class Section(BaseModel):
    """Base of every section: unknown keys are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(Section):
    enabled: bool = Field(
        default=False,
        description="LoRA for separate agents; `agents: shared_lora` always uses LoRA",
    )
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"


class ModelConfig(Section):
    name: str = "Qwen/Qwen2.5-Coder-3B"
    type: str | None = Field(default=None, description="model family hint (qwen, starcoder)")
    dtype: Dtype = "auto"
    max_length: int = Field(
        default=2048, ge=1, description="context window used to truncate prompts"
    )
    agents: AgentsMode = Field(
        default="separate",
        description="separate: one model per agent; shared_lora: one base, one adapter each",
    )
    lora: LoraSettings = Field(default_factory=lambda: LoraSettings())
    tokenizer_kwargs: dict[str, Any] = Field(default_factory=dict)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @property
    def uses_lora(self) -> bool:
        return self.agents == "shared_lora" or self.lora.enabled

    @model_validator(mode="after")
    def _dtype_in_one_place(self) -> ModelConfig:
        # The reference configs put torch_dtype in model_kwargs; two places would disagree.
        for key in ("torch_dtype", "dtype"):
            if key in self.model_kwargs:
                raise config_conflict(
                    f"set the dtype with 'dtype', not 'model_kwargs.{key}'",
                    f"model_kwargs.{key}",
                )
        return self


class DatasetConfig(Section):
    name: str = "openai/openai_humaneval"
    type: DatasetType = "humaneval"
    train_split: str = "test[33:133]"
    eval_split: str | None = "test[:32]"


class OutputConfig(Section):
    base_dir: str = "output"
    save_final_model: bool = True
    verbose: bool = False


class WandbSettings(Section):
    project: str = "collabcoder"
    entity: str | None = None
    mode: WandbMode = Field(default="offline", description="offline needs no account or network")
    name: str | None = None
    tags: list[str] = Field(default_factory=list)


class LoggingConfig(Section):
    report_to: list[ReportTo] = Field(
        default_factory=lambda: list[ReportTo](["jsonl", "tensorboard"])
    )
    wandb: WandbSettings = Field(default_factory=lambda: WandbSettings())


class VllmSettings(Section):
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    enforce_eager: bool = False


class GenerationConfig(Section):
    backend: Backend = "hf"
    vllm: VllmSettings = Field(default_factory=lambda: VllmSettings())


class GroupRelativeSection(Section):
    """Settings shared by GRPO and MAGRPO (GRPO is MAGRPO with one agent)."""

    num_agents: int = Field(default=2, ge=1)
    num_generations: int = Field(
        default=4, ge=2, description="group size; advantages need at least 2"
    )
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    learning_rate: float = Field(default=2e-5, gt=0.0)
    num_train_epochs: int = Field(default=10, ge=1)
    per_device_train_batch_size: int = Field(default=1, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    lr_scheduler_type: SchedulerType = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = 42
    logging_steps: int = Field(default=50, ge=1)
    save_steps: int = Field(default=200, ge=0, description="0: no intermediate checkpoints")
    save_total_limit: int | None = Field(
        default=None, ge=1, description="keep only the newest N checkpoints; unset: keep all"
    )
    eval_interval: int = Field(default=4, ge=0, description="evaluate every N steps; 0: never")
    eval_num_samples: int = Field(default=4, ge=1)
    joint_mode: JointMode = Field(
        default="aligned",
        description="aligned: agent i's k-th sample pairs with the others' k-th; cross: all combinations",
    )
    normalize_advantage: bool = Field(
        default=False, description="divide by the group's std, not only centre"
    )
    advantage_clip: float | None = Field(default=None, gt=0.0)
    num_optimization_steps: int = Field(
        default=1, ge=1, description="optimizer steps per rollout batch"
    )
    clip_epsilon: float | None = Field(
        default=0.2,
        gt=0.0,
        description="PPO ratio clip; only bites when num_optimization_steps > 1",
    )
    kl_beta: float = Field(default=0.0, ge=0.0, description="0: no reference model is loaded")
    num_turns: int = Field(default=1, ge=1)
    turn_gradient_weights: list[Annotated[float, Field(ge=0.0)]] | None = Field(
        default=None, description="one loss weight per turn; unset: all 1.0"
    )
    early_termination_weight: float = 2.0
    external_mode: ExternalMode = "expert_edits"
    expert_model: str | None = "deepseek-coder"
    sandbox_slice: int | None = Field(
        default=None, description="keep the first N (or last -N) asserts for feedback; None/0: all"
    )
    external_handoff: Handoff = "best"
    external_original_prompt: bool = False
    external_previous_response: bool = True

    @property
    def turn_weights(self) -> list[float]:
        """The weight of each turn, with the uniform default filled in."""
        if self.turn_gradient_weights is None:
            return [1.0] * self.num_turns
        return list(self.turn_gradient_weights)

    @model_validator(mode="after")
    def _consistent(self) -> GroupRelativeSection:
        weights = self.turn_gradient_weights
        if weights is not None and len(weights) != self.num_turns:
            raise config_conflict(
                f"'turn_gradient_weights' has {len(weights)} values but 'num_turns' is "
                f"{self.num_turns}; give one weight per turn, e.g. {[1.0] * self.num_turns}",
                "turn_gradient_weights",
                "num_turns",
            )
        if self.warmup_steps and self.warmup_ratio:
            raise config_conflict(
                "set 'warmup_steps' or 'warmup_ratio', not both", "warmup_steps", "warmup_ratio"
            )
        if self.num_turns > 1 and self.external_mode == "expert_edits" and not self.expert_model:
            raise config_conflict(
                "'external_mode' expert_edits needs 'expert_model'", "external_mode", "expert_model"
            )
        return self


class GRPOSection(GroupRelativeSection):
    num_agents: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-5, gt=0.0)

    @model_validator(mode="after")
    def _one_agent(self) -> GRPOSection:
        if self.num_agents != 1:
            raise config_conflict(
                "grpo trains one agent ('num_agents' 1); use a magrpo section for more",
                "num_agents",
            )
        return self


class MAGRPOSection(GroupRelativeSection):
    pass


class TrainConfig(Section):
    """A whole training run: what `load_config` returns and `save_config` writes."""

    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    dataset: DatasetConfig = Field(default_factory=lambda: DatasetConfig())
    output: OutputConfig = Field(default_factory=lambda: OutputConfig())
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig())
    grpo: GRPOSection | None = None
    magrpo: MAGRPOSection | None = None

    @property
    def trainer_name(self) -> str:
        """The one trainer section present ("grpo" or "magrpo")."""
        return next(name for name in TRAINER_SECTIONS if getattr(self, name) is not None)

    @property
    def trainer(self) -> GroupRelativeSection:
        section = getattr(self, self.trainer_name)
        assert isinstance(section, GroupRelativeSection)
        return section

    @model_validator(mode="after")
    def _one_trainer(self) -> TrainConfig:
        present = [name for name in TRAINER_SECTIONS if getattr(self, name) is not None]
        if len(present) != 1:
            found = ", ".join(f"'{p}'" for p in present) or "none"
            raise config_conflict(
                "a config needs exactly one trainer section ("
                + ", ".join(f"'{s}'" for s in TRAINER_SECTIONS)
                + f"); found {found}",
                *present,
            )
        return self


# --- key paths: "did you mean" suggestions and which override values stay text --------------


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The members of an optional/union annotation (the annotation itself otherwise)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _section_of(annotation: Any) -> type[BaseModel] | None:
    for alt in _alternatives(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return alt
    return None


@functools.cache
def schema_fields() -> dict[str, FieldInfo]:
    """Every dotted key path the schema knows, sections included, in schema order."""
    out: dict[str, FieldInfo] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            out[prefix + name] = field
            nested = _section_of(field.annotation)
            if nested is not None:
                walk(nested, f"{prefix}{name}.")

    walk(TrainConfig, "")
    return out


def keys_at(path: str) -> list[str] | None:
    """Valid keys directly under a section path ("" for the top level); None if not a section."""
    field = schema_fields().get(path)
    if path and (field is None or _section_of(field.annotation) is None):
        return None
    return [key.rpartition(".")[2] for key in schema_fields() if key.rpartition(".")[0] == path]


def takes_only_strings(path: str) -> bool:
    """True when the field at `path` accepts only strings (str, string Literals, optional)."""
    field = schema_fields().get(path)
    alts = [a for a in _alternatives(field.annotation) if a is not type(None)] if field else []

    def is_stringy(alt: Any) -> bool:
        return alt is str or (
            get_origin(alt) is Literal and all(isinstance(v, str) for v in get_args(alt))
        )

    return bool(alts) and all(is_stringy(a) for a in alts)
