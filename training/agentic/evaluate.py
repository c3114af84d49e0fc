"""`collab-train agentic evaluate`: models compared on the same held-out tasks, in one run.

Each model plays one episode per task and sample (greedy by default) with the same tool config
and the same rollout as RL (`rollout.run_episodes`). Reported per model:

* `solve_rate@k` for k = 1..max_debug_attempts: the share of episodes whose final program
  passes every case after at most k attempts (attempts = tool executions, or 1 for a program
  given without running anything);
* `mean_attempts_solved`: mean attempts over solved episodes;
* `valid_call_rate`: the tool calls the tool accepted over every `<tool_call>` the model wrote
  (None when it wrote none), and `episodes_with_calls`: the share of episodes with any call;
* `invalid_call_reasons`: why calls were refused, as counts by the tool's reason code
  (`tool.INVALID_REASONS`: bad_json, truncated_call, unknown_key, unknown_argument,
  missing_code, index_out_of_range, unsupported_language, ...), most frequent first; the
  tool's codes sum to `invalid_calls`. One more, `no_call_format`, counts model turns with no
  `<tool_call>` block whose text still looks like a call (`calls.looks_like_call`); those are
  not in `valid_call_rate`'s denominator, which counts only tagged calls;
* the reward and its components (`code_agentic_reward`), as RL sees them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collabcoder.analyzers.protocol.rewards import CodeAgenticRewardWeights
from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.training.agentic.calls import NO_CALL_FORMAT, looks_like_call
from collabcoder.training.agentic.rollout import EpisodeResult, RolloutSettings, run_episodes
from collabcoder.training.agentic.tool import TOOL_NAME, ToolConfig
from collabcoder.training.data.tasks import CodeAgenticTask


def episode_metrics(results: Sequence[EpisodeResult], prefix: str = "") -> dict[str, float]:
    """Means over episodes: reward and its components, solve rate, tool use (RL's curves)."""
    n = max(1, len(results))
    rewards = [r.reward.total for r in results]
    parsed = sum(r.parsed_calls for r in results)

    def mean(values: Sequence[float]) -> float:
        return sum(values) / n

    return {
        f"{prefix}reward/mean": mean(rewards),
        f"{prefix}reward/std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        f"{prefix}reward/correctness": mean([r.reward.correctness for r in results]),
        f"{prefix}reward/tool_bonus": mean([r.reward.tool_bonus for r in results]),
        f"{prefix}reward/test_case_bonus": mean([r.reward.test_case_bonus for r in results]),
        f"{prefix}reward/debug_penalty": mean([r.reward.debug_penalty for r in results]),
        f"{prefix}solve_rate": mean([float(r.solved) for r in results]),
        f"{prefix}tool/calls_per_episode": parsed / n,
        f"{prefix}tool/executions_per_episode": mean([float(r.tool_calls) for r in results]),
        f"{prefix}tool/valid_call_rate": (
            sum(r.valid_calls for r in results) / parsed if parsed else 0.0
        ),
        f"{prefix}episode/model_tokens": mean([float(sum(r.mask)) for r in results]),
        f"{prefix}episode/tool_tokens": mean([float(len(r.mask) - sum(r.mask)) for r in results]),
    }


def invalid_call_reasons(result: EpisodeResult, tool_name: str = TOOL_NAME) -> Counter[str]:
    """The tool's refusals by reason, plus `no_call_format` for each call-like untagged turn."""
    reasons = Counter(result.invalid_reasons)
    untagged = sum(looks_like_call(turn, tool_name) for turn in result.turns)
    if untagged:
        reasons[NO_CALL_FORMAT] += untagged
    return reasons


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize(
    results: Sequence[EpisodeResult], max_attempts: int, tool_name: str = TOOL_NAME
) -> dict[str, Any]:
    """The evaluation figures of one model (see the module docstring)."""
    n = len(results)
    solved = [r for r in results if r.solved]
    parsed = sum(r.parsed_calls for r in results)
    valid = sum(r.valid_calls for r in results)
    reasons = [invalid_call_reasons(r, tool_name) for r in results]
    m = episode_metrics(results)
    return {
        "episodes": n,
        "solve_rate_at_k": {
            str(k): sum(r.attempts <= k for r in solved) / n if n else 0.0
            for k in range(1, max_attempts + 1)
        },
        "mean_attempts_solved": (sum(r.attempts for r in solved) / len(solved) if solved else None),
        "valid_call_rate": valid / parsed if parsed else None,
        "tool_calls": parsed,
        "invalid_calls": parsed - valid,
        "invalid_call_reasons": _ranked(sum(reasons, Counter())),
        "episodes_with_calls": sum(r.parsed_calls > 0 for r in results) / n if n else 0.0,
        "answered_rate": sum(r.answered for r in results) / n if n else 0.0,
        "reward": {
            key.removeprefix("reward/"): value
            for key, value in m.items()
            if key.startswith("reward/")
        },
        "per_task": [
            {
                "query_id": r.query_id,
                "solved": r.solved,
                "attempts": r.attempts,
                "tool_calls": r.parsed_calls,
                "valid_calls": r.valid_calls,
                "invalid_call_reasons": _ranked(why),
                "reward": r.reward.total,
            }
            for r, why in zip(results, reasons, strict=True)
        ],
    }


@dataclass(frozen=True)
class EvalSettings:
    samples: int = 1  # episodes per task
    rollout: RolloutSettings = field(default_factory=lambda: RolloutSettings(temperature=0.0))
    batch_size: int = 8
    dtype: str = "float32"


def load_policy(name: str, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) for a model name, path or run folder (`sources.resolve_model_source`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from collabcoder.training.agentic.sources import resolve_model_source
    from collabcoder.training.config import ModelConfig
    from collabcoder.training.trainers.policies import _dtype, load_tokenizer

    source = resolve_model_source(name)
    tokenizer = load_tokenizer(ModelConfig(name=source))
    model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(dtype))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    return model, tokenizer


def evaluate_model(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[CodeAgenticTask],
    tool_config: ToolConfig,
    settings: EvalSettings,
    weights: CodeAgenticRewardWeights,
    sandbox: Sandbox | None = None,
) -> dict[str, Any]:
    from transformers import set_seed

    from collabcoder.training.rollout.generation import eos_token_ids

    set_seed(0)  # sampled evaluations repeat
    episodes = [t for t in tasks for _ in range(settings.samples)]
    results = run_episodes(
        model,
        tokenizer,
        episodes,
        tool_config,
        settings.rollout,
        eos_token_ids(tokenizer, model),
        weights,
        sandbox=sandbox,
        batch_size=settings.batch_size,
    )
    return summarize(results, tool_config.config.max_debug_attempts, tool_config.name)


def table_rows(report: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """(metric, one value per model) for the CLI's table, in the report's model order; one row
    per invalid-call reason any model has (0 where another has none)."""
    ms = list(report["models"].values())
    rows: list[tuple[str, list[Any]]] = []
    for k in ms[0]["solve_rate_at_k"]:
        rows.append((f"solve rate @{k}", [m["solve_rate_at_k"][k] for m in ms]))
    keys = ("mean_attempts_solved", "valid_call_rate", "tool_calls", "invalid_calls")
    for key in (*keys, "episodes_with_calls"):
        rows.append((key.replace("_", " "), [m[key] for m in ms]))
    totals = sum((Counter(m["invalid_call_reasons"]) for m in ms), Counter())
    for reason in _ranked(totals):
        rows.append(
            (f"  invalid: {reason}", [m["invalid_call_reasons"].get(reason, 0) for m in ms])
        )
    for key in ms[0]["reward"]:
        rows.append((f"reward {key}", [m["reward"][key] for m in ms]))
    return rows


def compare_models(
    models: Mapping[str, str],
    tasks: Sequence[CodeAgenticTask],
    tool_config: ToolConfig,
    settings: EvalSettings,
    weights: CodeAgenticRewardWeights | None = None,
    sandbox: Sandbox | None = None,
) -> dict[str, Any]:
    """Every model (label -> name/path/run folder) on the same tasks; one report."""
    w = weights or CodeAgenticRewardWeights()
    report: dict[str, Any] = {
        "tasks": [t.query_id for t in tasks],
        "max_debug_attempts": tool_config.config.max_debug_attempts,
        "samples": settings.samples,
        "temperature": settings.rollout.temperature,
        "models": {},
    }
    for label, name in models.items():
        model, tokenizer = load_policy(name, settings.dtype)
        summary = evaluate_model(model, tokenizer, tasks, tool_config, settings, w, sandbox)
        report["models"][label] = {"model": name, **summary}
        del model
    return report
