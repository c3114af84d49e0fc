"""MAGRPO's environment: agents write one program together, the sandbox judges it.

One agent: it writes the entry point. Two agents: `aux` writes a helper `aux`, `main` writes the
entry point, which may call it. A joint action's program is the prompt's context + aux + main
(`compose_program`); its reward is the leveled `magrpo_reward`. Between turns, the handed-off
joint action is turned into each agent's next prompt by the turn protocol
(`render_next_prompts`), the same text the language server's loop uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collabcoder.analyzers.feedback import (
    FeedbackOptions,
    FeedbackTask,
    initial_prompts,
    parse_mode,
    render_next_prompts,
    roles,
)
from collabcoder.analyzers.program import (
    AUX_NAME,
    ProgramFacts,
    analyze_program,
    clean_completion,
    compose_program,
)
from collabcoder.analyzers.rewards import MagrpoRewardWeights, magrpo_reward
from collabcoder.analyzers.testcases import AssertSuite
from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.training.rollout.env import Judgement
from collabcoder.training.rollout.expert import ExpertClient


class BatchSandbox(Protocol):
    def run_many(self, jobs: Sequence[Any]) -> list[Verdict]: ...


@dataclass(frozen=True)
class _Judged:
    aux_code: str
    main_code: str
    facts: ProgramFacts
    verdict: Verdict | None


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
        first = initial_prompts(self.ftask, env.num_agents)
        self._prompts = [first[r] for r in roles(env.num_agents)]
        self._judged: dict[tuple[str, ...], _Judged] = {}

    @property
    def task_id(self) -> str:
        return str(self.task.task_id)

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    def _codes(self, joint: Sequence[str]) -> tuple[str, str]:
        entry = self.task.entry_point
        if self.env.num_agents == 1:
            return "", clean_completion(joint[0], entry, prompt=self.task.prompt)
        aux = clean_completion(joint[0], AUX_NAME)
        # The main agent's own `aux` must not replace the helper agent's.
        main = clean_completion(joint[1], entry, exclude=(AUX_NAME,), prompt=self.task.prompt)
        return aux, main

    def judge(self, joint_actions: Sequence[Sequence[str]]) -> list[Judgement]:
        from collabcoder.analyzers.sandbox import AssertJob

        codes = [self._codes(j) for j in joint_actions]
        facts = [analyze_program(a, m, self.task.entry_point) for a, m in codes]
        programs = [compose_program(self.task.prompt, a, m) for a, m in codes]
        verdicts: list[Verdict | None] = [None] * len(codes)
        todo = [i for i, f in enumerate(facts) if f.runnable]
        suite = self.suite
        # One retry for sandbox failures; what fails twice is dropped (reward None), not scored.
        for _ in range(2):
            if not todo:
                break
            results = self.env.sandbox.run_many([AssertJob(programs[i], suite) for i in todo])
            for i, verdict in zip(todo, results, strict=True):
                verdicts[i] = verdict
            todo = [i for i, v in zip(todo, results, strict=True) if v.is_infra_error]
        weights = self.env.weights
        best = weights.max_reward(self.env.num_agents)
        out: list[Judgement] = []
        for joint, (aux, main), f, v in zip(joint_actions, codes, facts, verdicts, strict=True):
            self._judged[tuple(joint)] = _Judged(aux, main, f, v)
            b = magrpo_reward(f, v, weights)
            info = {
                "level1": b.aux_defined + b.main_defined,
                "level2": b.syntax,
                "level3": b.tests,
                "pass_rate": float(v is not None and v.all_passed),
                "timeout_rate": float(_timed_out(v)),
            }
            if self.env.num_agents > 1:
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
        env = self.env
        expert = None
        if env.mode == "expert_edits":
            if env.expert is None:
                raise ValueError("external_mode 'expert_edits' needs an ExpertClient")
            expert = env.expert.review(
                self.ftask, judged.aux_code, judged.main_code, env.num_agents
            )
        prompts = render_next_prompts(
            env.mode,
            self.ftask,
            judged.aux_code,
            judged.main_code,
            judged.verdict,
            judged.facts,
            env.options,
            expert=expert,
        )
        self._prompts = [prompts[r] for r in roles(env.num_agents)]
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
