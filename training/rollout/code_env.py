"""MAGRPO's environment: agents write one program together, the sandbox judges it.

One agent: it writes the entry point. Two agents: `aux` writes a helper `aux`, `main` writes the
entry point, which may call it. A joint action's program is the prompt's context + aux + main
(`compose_program`); its reward is the leveled `magrpo_reward` (`score_programs`, the one scorer).
The turns are the turn driver's steps (`analyzers.protocol.driver`), which the language server's
team of agents plays too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from collabcoder.analyzers.protocol.driver import agent_codes, first_prompts, next_prompts
from collabcoder.analyzers.protocol.feedback import FeedbackOptions, parse_mode
from collabcoder.analyzers.protocol.program import FeedbackTask
from collabcoder.analyzers.protocol.rewards import (
    MagrpoRewardWeights,
    ScoredProgram,
    score_programs,
)
from collabcoder.analyzers.testcases import AssertSuite
from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.training.rollout.env import Judgement
from collabcoder.training.rollout.expert import ExpertClient


class BatchSandbox(Protocol):
    def run_many(self, jobs: Sequence[Any]) -> list[Verdict]: ...


def _timed_out(verdict: Verdict | None) -> bool:
    if verdict is None:
        return False
    return verdict.outcome is Outcome.TIMEOUT or any(
        t.outcome is Outcome.TIMEOUT for t in verdict.tests
    )


class CodeEpisode:
    def __init__(self, env: CodeCollabEnv, task: Any) -> None:
        self.env = env
        self.task = task
        self.suite: AssertSuite = task.assert_suite()
        self.ftask = FeedbackTask(task.prompt, task.entry_point, task.task_id, self.suite)
        self._prompts = first_prompts(self.ftask, env.num_agents)
        # joint action -> ((aux code, main code), its score), for the one handed to step()
        self._judged: dict[tuple[str, ...], tuple[tuple[str, str], ScoredProgram]] = {}

    @property
    def task_id(self) -> str:
        return str(self.task.task_id)

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    def _run(self, programs: Sequence[str]) -> list[Verdict]:
        from collabcoder.analyzers.sandbox import AssertJob

        return self.env.sandbox.run_many([AssertJob(p, self.suite) for p in programs])

    def judge(self, joint_actions: Sequence[Sequence[str]]) -> list[Judgement]:
        n = self.env.num_agents
        codes = [agent_codes(self.ftask, joint, n) for joint in joint_actions]
        # One retry for sandbox failures; what fails twice is dropped (reward None), not scored.
        scored = score_programs(
            self.task.prompt, codes, self.task.entry_point, self._run,
            weights=self.env.weights, attempts=2,
        )
        best = self.env.weights.max_reward(n)
        out: list[Judgement] = []
        for joint, code, s in zip(joint_actions, codes, scored, strict=True):
            self._judged[tuple(joint)] = (code, s)
            b, v = s.breakdown, s.verdict
            info = {
                "level1": b.aux_defined + b.main_defined,
                "level2": b.syntax,
                "level3": b.tests,
                "pass_rate": float(v is not None and v.all_passed),
                "timeout_rate": float(_timed_out(v)),
            }
            if n > 1:
                info["bonus"] = b.main_calls_aux + b.not_thin_wrapper + b.aux_result_ignored
            reward = b.reward
            out.append(Judgement(reward, reward is not None and reward >= best - 1e-9, info))
        return out

    def step(self, joint_action: Sequence[str], judgement: Judgement) -> bool:
        if judgement.solved:
            return False
        judged = self._judged.get(tuple(joint_action))
        if judged is None:
            raise ValueError("step() needs a joint action this episode judged")
        (aux, main), scored = judged
        env = self.env
        expert = None
        if env.mode == "expert_edits":
            if env.expert is None:
                raise ValueError("external_mode 'expert_edits' needs an ExpertClient")
            expert = env.expert.review(self.ftask, aux, main, env.num_agents)
        self._prompts = next_prompts(
            env.mode, self.ftask, aux, main, env.options, scored.verdict, scored.facts,
            expert=expert,
        )
        self._judged.clear()
        return True


class CodeCollabEnv:
    """HumanEval-style tasks (`collabcoder.training.data.Task`) for one or two agents."""

    def __init__(
        self,
        num_agents: int,
        *,
        external_mode: str = "level_feedback",
        sandbox_slice: int | None = None,
        original_prompt: bool = False,
        previous_response: bool = True,
        expert: ExpertClient | None = None,
        sandbox: BatchSandbox | None = None,
        weights: MagrpoRewardWeights | None = None,
    ) -> None:
        if num_agents not in (1, 2):
            raise ValueError(
                f"code collaboration has one agent (main) or two (aux + main), got {num_agents}"
            )
        self.num_agents = num_agents
        self.mode = parse_mode(external_mode).value
        self.options = FeedbackOptions(
            num_agents=num_agents,
            original_prompt=original_prompt,
            previous_response=previous_response,
            sandbox_slice=sandbox_slice,
        )
        self.expert = expert
        self._sandbox = sandbox
        self.weights = weights or MagrpoRewardWeights()

    @property
    def sandbox(self) -> BatchSandbox:
        if self._sandbox is None:  # started on first use: building an env stays cheap
            from collabcoder.analyzers.sandbox import default_sandbox

            self._sandbox = default_sandbox()
        return self._sandbox

    def reset(self, task: Any) -> CodeEpisode:
        return CodeEpisode(self, task)
