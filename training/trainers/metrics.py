"""Metrics of a batch of episodes: rewards overall and per turn, what the judge reported,
completion lengths. Only what can vary is reported: per-turn keys only with several turns,
dropped groups only when there were some."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from collabcoder.training.rollout.rollout import EpisodeRecord


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def rollout_metrics(
    records: Sequence[EpisodeRecord], roles: Sequence[str], num_turns: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    rewards: list[float] = []
    group_max: list[float] = []
    info: dict[str, list[float]] = defaultdict(list)
    per_turn: dict[int, list[float]] = defaultdict(list)
    per_turn_pass: dict[int, list[float]] = defaultdict(list)
    improvements: dict[int, list[float]] = defaultdict(list)
    dropped = 0
    flat: list[float] = []  # groups whose rewards are all equal: no advantage, no gradient
    for rec in records:
        means: list[float | None] = []
        for turn in rec.turns:
            judged = [j for j in turn.judgements if j.reward is not None]
            dropped += turn.dropped
            values = [float(j.reward) for j in judged if j.reward is not None]
            rewards.extend(values)
            if values:
                group_max.append(max(values))
                flat.append(float(max(values) - min(values) < 1e-12))
                per_turn[turn.turn].extend(values)
            for j in judged:
                for key, value in j.info.items():
                    info[key].append(value)
                if "pass_rate" in j.info:
                    per_turn_pass[turn.turn].append(j.info["pass_rate"])
            means.append(_mean(values))
        for t in range(1, len(means)):
            now, before = means[t], means[t - 1]
            if now is not None and before is not None:
                improvements[t].append(now - before)
    if rewards:
        out["reward/mean"] = statistics.fmean(rewards)
        out["reward/std"] = statistics.pstdev(rewards)
        out["reward/group_max"] = statistics.fmean(group_max)
        out["reward/flat_group_rate"] = statistics.fmean(flat)
    for key, values in sorted(info.items()):
        out[f"judge/{key}"] = statistics.fmean(values)
    if dropped:
        out["rollout/dropped_groups"] = float(dropped)
    for a, role in enumerate(roles):
        lengths = [
            len(s.completion_ids) for r in records for t in r.turns for s in t.samples[a]
        ]
        finished = [s.finished for r in records for t in r.turns for s in t.samples[a]]
        if lengths:
            out[f"{role}/completion_tokens"] = statistics.fmean(lengths)
            out[f"{role}/eos_rate"] = statistics.fmean(float(f) for f in finished)
    if num_turns > 1 and records:
        for t in range(num_turns):
            reached = sum(len(r.turns) > t for r in records) / len(records)
            out[f"turn_{t + 1}/reached"] = reached
            if per_turn[t]:
                out[f"turn_{t + 1}/reward_mean"] = statistics.fmean(per_turn[t])
            if per_turn_pass[t]:
                out[f"turn_{t + 1}/pass_rate"] = statistics.fmean(per_turn_pass[t])
            if improvements[t]:
                out[f"turn_{t + 1}/improvement"] = statistics.fmean(improvements[t])
        ended = [any(t.ends_early for t in r.turns) for r in records]
        out["episode/early_termination_rate"] = statistics.fmean(float(e) for e in ended)
        out["episode/turns"] = statistics.fmean(len(r.turns) for r in records)
    return out


def eval_metrics(records: Sequence[EpisodeRecord], roles: Sequence[str], num_turns: int) -> dict[str, float]:
    """`rollout_metrics` under eval/, plus how many episodes ended solved or passing."""
    out = {f"eval/{k}": v for k, v in rollout_metrics(records, roles, num_turns).items()}
    if records:
        solved = [any(j.solved for t in r.turns for j in t.judgements) for r in records]
        out["eval/solved_rate"] = statistics.fmean(float(s) for s in solved)
        final = [r.turns[-1].judgements[0].info.get("pass_rate") for r in records if r.turns]
        passes = [p for p in final if p is not None]
        if passes:
            out["eval/final_pass_rate"] = statistics.fmean(passes)
    return out


def average(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean over the rows that have the key."""
    acc: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            acc[key].append(value)
    return {k: statistics.fmean(v) for k, v in acc.items()}
