"""The environment interface the rollout loop drives, and a text-reward environment.

An episode is one task played over up to `num_turns` turns. In each turn every agent sees one
prompt and samples a group of completions; the rollout loop forms joint actions (one completion
per agent), the episode judges them all, and one joint action is handed back to the episode,
which renders each agent's next prompt (or ends the episode).

    env.reset(task) -> episode                   # episode.prompts: one prompt per agent
    episode.judge(joint_actions) -> judgements   # one reward (None: infra error) per joint action
    episode.step(joint_action, judgement) -> bool  # next prompts; False: the episode is over

`CodeCollabEnv` (code_env.py) is MAGRPO's cooperative coding environment; a code-agentic
environment (one agent debugging its own program with an execution tool) is one more
implementation of the same three calls. `TextRewardEnv` scores text with a plain function (toy
tasks, benchmarks, the TRL cross-check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Judgement:
    """How good one joint action is."""

    reward: float | None  # None: the judge itself failed (sandbox down): drop, never score 0
    solved: bool = False  # nothing left to improve: a later turn would add nothing
    # Numbers averaged into the logged metrics (reward components, pass, timeout, ...).
    info: dict[str, float] = field(default_factory=dict)


class Episode(Protocol):
    @property
    def task_id(self) -> str: ...

    @property
    def prompts(self) -> list[str]:
        """The current prompt of each agent, in agent order."""
        ...

    def judge(self, joint_actions: Sequence[Sequence[str]]) -> list[Judgement]:
        """One judgement per joint action (each: one completion text per agent)."""
        ...

    def step(self, joint_action: Sequence[str], judgement: Judgement) -> bool:
        """Hand one joint action over: update `prompts` for the next turn, or return False to
        end the episode (e.g. the joint action solved the task)."""
        ...


class Environment(Protocol):
    num_agents: int

    def reset(self, task: Any) -> Episode: ...


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextTask:
    task_id: str
    prompt: str


class _TextEpisode:
    def __init__(self, task: TextTask, reward_fn: Callable[[str], float], target: float) -> None:
        self._task = task
        self._reward_fn = reward_fn
        self._target = target

    @property
    def task_id(self) -> str:
        return self._task.task_id

    @property
    def prompts(self) -> list[str]:
        return [self._task.prompt]

    def judge(self, joint_actions: Sequence[Sequence[str]]) -> list[Judgement]:
        out = []
        for (text,) in joint_actions:
            reward = float(self._reward_fn(text))
            out.append(Judgement(reward, solved=reward >= self._target, info={"reward": reward}))
        return out

    def step(self, joint_action: Sequence[str], judgement: Judgement) -> bool:
        return False  # single-turn


class TextRewardEnv:
    """One agent, one turn: the reward is `reward_fn(completion_text)`."""

    num_agents = 1

    def __init__(self, reward_fn: Callable[[str], float], target: float = float("inf")) -> None:
        self.reward_fn = reward_fn
        self.target = target

    def reset(self, task: Any) -> Episode:
        if not isinstance(task, TextTask):
            raise TypeError(f"TextRewardEnv plays TextTask, got {type(task).__name__}")
        return _TextEpisode(task, self.reward_fn, self.target)
