"""Cooperation score of one joint (aux + main) sample, the per-sample input of MaxCoop@k.

The score is the cooperation part of the MAGRPO reward (`analyzers.protocol.rewards.magrpo_reward`):
main calls aux (+0.5), main is not a thin wrapper of aux (+1.0), aux's result ignored (-0.5),
all awarded only when at least one test passed. The paper's MaxCoop@k takes the best of these
"bonus" sums (0 to 1.5) among the first k samples; using the trainer's own reward keeps the
metric and the training signal from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from collabcoder.analyzers.protocol.program import analyze_program
from collabcoder.analyzers.protocol.rewards import (
    MagrpoRewardWeights,
    RewardBreakdown,
    magrpo_reward,
)
from collabcoder.analyzers.verdict import Verdict
from collabcoder.training.data.tasks import Task

MAX_COOP_SCORE = MagrpoRewardWeights().main_calls_aux + MagrpoRewardWeights().not_thin_wrapper


def magrpo_breakdown(
    completions: Mapping[str, str], task: Task, verdict: Verdict
) -> RewardBreakdown:
    """The MAGRPO reward of a judged joint sample (its code as written in the samples file)."""
    facts = analyze_program(completions["aux"], completions["main"], task.entry_point)
    return magrpo_reward(facts, verdict)


def coop_score(completions: Mapping[str, str], task: Task, verdict: Verdict) -> float:
    """main_calls_aux + not_thin_wrapper + aux_result_ignored of the MAGRPO reward (0 to 1.5)."""
    b = magrpo_breakdown(completions, task, verdict)
    return round(b.main_calls_aux + b.not_thin_wrapper + b.aux_result_ignored, 10)
