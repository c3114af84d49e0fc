"""Schema of a loop evaluation YAML (`collab-train loop evaluate -c CONFIG`).

Keys follow LLMcoder's evaluation configs where they exist (`analyzers`, `model_first`,
`model_feedback`, `feedback_variant`, `dataset`, `max_iter`, `n_choices`, `backtracking`,
`log_conversation`, `scores`), so its configs mostly carry over. The loop's own settings are
the fields of `server.loop.config.LoopConfig`, inherited, not repeated. Unknown keys are errors
that name the key and the nearest valid one. LLMcoder's metric names (`extrinsic.bleu_score`) and
analyzer names (`mypy_analyzer_v1`) are accepted.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collabcoder.analyzers.static import UnknownAnalyzerError, canonical_name
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT
from collabcoder.server.loop.config import LoopConfig

BackendKindName = Literal["openai", "vllm", "transformers"]

# Metric columns of metrics.csv, in order. The reviewer's two orders stay two columns: their
# difference is the judge's position bias, which an average would hide.
METRIC_NAMES: tuple[str, ...] = (
    "levenshtein_distance",
    "bleu",
    "sequence_matcher",
    "embedding_similarity",
    "reviewer_score",
    "loops_required",
    "tokens_used",
    "time",
    "all_analyzers_passed",
    "total_tokens_generated",
)
# Off unless asked for: it needs a reviewer backend and costs two model calls per pair.
DEFAULT_METRICS: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m != "reviewer_score")

_LLMCODER_METRICS: dict[str, str] = {
    "extrinsic.levenshtein_distance_score": "levenshtein_distance",
    "extrinsic.bleu_score": "bleu",
    "extrinsic.trf_similarity_score": "embedding_similarity",
    "extrinsic.sequence_matcher_score": "sequence_matcher",
    "extrinsic.gpt_reviewer_score": "reviewer_score",
    "intrinsic.loops_required_score": "loops_required",
    "intrinsic.tokens_used_score": "tokens_used",
    "intrinsic.time_score": "time",
    "intrinsic.all_analyzers_passed_score": "all_analyzers_passed",
    "intrinsic.total_tokens_generated_score": "total_tokens_generated",
}


class LoopConfigError(ValueError):
    """A loop evaluation config that cannot be used; the message names the file and key."""


def canonical_metric(name: str) -> str:
    key = _LLMCODER_METRICS.get(name.strip(), name.strip())
    if key in METRIC_NAMES:
        return key
    bare = key.rpartition(".")[2].removesuffix("_score")  # LLMcoder-style spellings too
    close = difflib.get_close_matches(bare, METRIC_NAMES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown metric {name!r}{hint} Valid: {', '.join(METRIC_NAMES)}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendSettings(_Section):
    """A backend by kind and model; the API key is read from the environment variable named by
    `api_key_env`, never from the YAML (configs get committed)."""

    backend: BackendKindName = "transformers"
    model: str = EMBEDDED_DEFAULT
    endpoint: str | None = None
    api_key_env: str | None = None
    backend_options: dict[str, Any] = Field(default_factory=dict)

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:  # fail before the run, not with 401s on every pair
            raise LoopConfigError(f"api_key_env names the environment variable "
                                  f"{self.api_key_env!r}, which is not set")
        return key


class ReviewerSettings(BackendSettings):
    max_tokens: int = Field(default=8, ge=1)


# LLMcoder's name for a LoopConfig field, where it differs.
_LLMCODER_KEYS: dict[str, str] = {"n": "n_choices"}


class LoopEvalConfig(BackendSettings, LoopConfig):
    """One evaluation: the backend, the loop's settings (the `LoopConfig` fields, `n` spelled
    `n_choices`), and what to evaluate on and score."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=lambda name: _LLMCODER_KEYS.get(name, name)
    )

    dataset: str = Field(description="pairs dataset, relative to --data-root: NAME[/level_k]")
    # LLMcoder names accepted; none named: the loop gates on syntax (see `loop_config`).
    # A list, as in LLMcoder's YAML (and as users read it back); `loop_config` makes the tuple.
    analyzers: list[str] = Field(default_factory=list)  # type: ignore[assignment]
    model_first: str | None = None  # default: `model`
    model_feedback: str | None = None  # default: `model_first`
    log_conversation: bool = True
    scores: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    reviewer: ReviewerSettings | None = None

    @field_validator("analyzers")
    @classmethod
    def _known_analyzers(cls, names: list[str]) -> list[str]:
        out = []
        for name in names:
            try:
                out.append(canonical_name(name))
            except UnknownAnalyzerError as exc:
                raise ValueError(str(exc)) from None
        return out

    @field_validator("scores")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        return list(dict.fromkeys(canonical_metric(n) for n in names))

    def loop_config(self) -> LoopConfig:
        """The plain `LoopConfig` to run; no analyzers would leave every candidate "not
        passing", so none named gates on syntax."""
        values = {name: getattr(self, name) for name in LoopConfig.model_fields}
        return LoopConfig(**{**values, "analyzers": tuple(self.analyzers) or ("syntax",)})

    @property
    def first_model(self) -> str:
        return self.model_first or self.model

    @property
    def feedback_model(self) -> str:
        return self.model_feedback or self.first_model


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _explain(exc: ValidationError, origin: str) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc)
        if err["type"] == "extra_forbidden":
            section: type[BaseModel] = ReviewerSettings if loc[0] == "reviewer" else LoopEvalConfig
            close = difflib.get_close_matches(loc[-1], _valid_keys(section), n=1, cutoff=0.5)
            prefix = "reviewer." if loc[0] == "reviewer" and len(loc) > 1 else ""
            hint = (f"; did you mean '{prefix}{close[0]}'?" if close
                    else f"; valid keys: {', '.join(_valid_keys(section))}")
            problems.append(f"unknown key '{path}' in {origin}{hint}")
        elif err["type"] == "missing":
            problems.append(f"missing key '{path}' in {origin}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"invalid value for '{path}' in {origin}: {msg}")
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in {origin}:\n" + "\n".join(f"  - {p}" for p in problems)


def config_from_dict(data: Any, origin: str = "<config>") -> LoopEvalConfig:
    if not isinstance(data, dict):
        raise LoopConfigError(f"{origin}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return LoopEvalConfig.model_validate(data)
    except ValidationError as exc:
        raise LoopConfigError(_explain(exc, origin)) from None


def load_loop_config(path: Path) -> LoopEvalConfig:
    """Read and validate one YAML; every problem becomes a `LoopConfigError`."""
    if not path.is_file():
        raise LoopConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LoopConfigError(f"{path} is not valid YAML: {exc}") from None
    return config_from_dict(data if data is not None else {}, str(path))
