"""The episode loop: sample a group per agent, judge the joint actions, hand one off, repeat.

Turn t of an episode: every agent samples G completions of its prompt; joint actions pair them
(`aligned`: the k-th of each agent, G joint actions; `cross`: every combination, G^N); the
episode judges each; unless this is the last turn, one joint action (the best, or a random one)
is handed to the episode, which renders the next prompts or ends the episode. Episodes of a batch
advance together so each turn is one batched `generate` per agent.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collabcoder.training.rollout.env import Environment, Episode, Judgement
from collabcoder.training.rollout.generation import Generator, Sample, SamplingParams


def joint_indices(group_size: int, num_agents: int, mode: str) -> list[tuple[int, ...]]:
    """Joint actions as one sample index per agent."""
    if mode == "aligned":
        return [(k,) * num_agents for k in range(group_size)]
    if mode == "cross":
        return list(itertools.product(range(group_size), repeat=num_agents))
    raise ValueError(f"unknown joint mode {mode!r}; expected 'aligned' or 'cross'")


@dataclass
class TurnRecord:
    turn: int  # 0-based
    prompts: list[str]  # per agent
    samples: list[list[Sample]]  # [agent][k]
    joints: list[tuple[int, ...]]
    judgements: list[Judgement]  # one per joint action
    handoff: int | None = None  # index into `joints` handed to the next turn
    ends_early: bool = False  # the episode stopped after this turn before its last turn

    @property
    def rewards(self) -> list[float | None]:
        return [j.reward for j in self.judgements]

    @property
    def dropped(self) -> bool:
        """A judge failure in the group: its advantages would be wrong, so it trains nothing."""
        return any(r is None for r in self.rewards)


@dataclass
class EpisodeRecord:
    task_id: str
    turns: list[TurnRecord]


def pick_handoff(judgements: Sequence[Judgement], how: str, rng: random.Random) -> int | None:
    """The joint action passed to the next turn: the best (first of equals) or a random one,
    among those judged; None when none was."""
    judged = [i for i, j in enumerate(judgements) if j.reward is not None]
    if not judged:
        return None
    if how == "random":
        return rng.choice(judged)
    if how == "best":
        return max(judged, key=lambda i: judgements[i].reward)  # type: ignore[arg-type, return-value]
    raise ValueError(f"unknown handoff {how!r}; expected 'best' or 'random'")


def rollout(
    env: Environment,
    tasks: Sequence[Any],
    generator: Generator,
    params: SamplingParams,
    *,
    num_turns: int = 1,
    joint_mode: str = "aligned",
    handoff: str = "best",
    rng: random.Random | None = None,
) -> list[EpisodeRecord]:
    """Play one episode per task; see the module docs."""
    rng = rng or random.Random(0)
    n = env.num_agents
    episodes: list[Episode] = [env.reset(t) for t in tasks]
    records = [EpisodeRecord(e.task_id, []) for e in episodes]
    joints = joint_indices(params.num_samples, n, joint_mode)
    active = list(range(len(episodes)))
    for turn in range(num_turns):
        if not active:
            break
        prompts = {e: episodes[e].prompts for e in active}
        # samples[agent][position in `active`][k]
        samples = [generator.generate(i, [prompts[e][i] for e in active], params) for i in range(n)]
        still: list[int] = []
        for pos, e in enumerate(active):
            group = [samples[i][pos] for i in range(n)]
            texts = [[group[i][j[i]].text for i in range(n)] for j in joints]
            judgements = episodes[e].judge(texts)
            record = TurnRecord(turn, prompts[e], group, joints, judgements)
            records[e].turns.append(record)
            if turn == num_turns - 1:
                continue
            choice = pick_handoff(judgements, handoff, rng)
            if choice is None:
                continue  # nothing judged: nothing to build the next turn on
            record.handoff = choice
            if episodes[e].step(texts[choice], judgements[choice]):
                still.append(e)
            else:
                record.ends_early = True
        active = still
    return records
