"""Rollouts: sampling completions (HF `generate`, vLLM) and the episode loop over environments.

`rollout(env, tasks, generator, params, ...)` plays one episode per task and returns records the
trainers turn into losses. Environments: `CodeCollabEnv` (MAGRPO's cooperative coding),
`TextRewardEnv` (a reward computed from text); a new environment implements `Environment`.
"""

from collabcoder.training.rollout.code_env import CodeCollabEnv
from collabcoder.training.rollout.env import (
    Environment,
    Episode,
    Judgement,
    TextRewardEnv,
    TextTask,
)
from collabcoder.training.rollout.expert import ExpertClient, ExpertConfigError, resolve_expert
from collabcoder.training.rollout.generation import (
    Generator,
    HFGenerator,
    Sample,
    SamplingParams,
    encode_prompt,
    eos_token_ids,
)
from collabcoder.training.rollout.rollout import (
    EpisodeRecord,
    TurnRecord,
    joint_indices,
    pick_handoff,
    rollout,
)

__all__ = [
    "CodeCollabEnv",
    "Environment",
    "Episode",
    "EpisodeRecord",
    "ExpertClient",
    "ExpertConfigError",
    "Generator",
    "HFGenerator",
    "Judgement",
    "Sample",
    "SamplingParams",
    "TextRewardEnv",
    "TextTask",
    "TurnRecord",
    "encode_prompt",
    "eos_token_ids",
    "joint_indices",
    "pick_handoff",
    "resolve_expert",
    "rollout",
]
