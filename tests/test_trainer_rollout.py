"""The episode loop and the coding environment, with scripted completions (no model)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from collabcoder.training.data import load_tasks
from collabcoder.training.rollout import (
    CodeCollabEnv,
    Judgement,
    Sample,
    SamplingParams,
    TextRewardEnv,
    TextTask,
    pick_handoff,
    rollout,
)
from collabcoder.training.trainers import training_samples


class ScriptedGenerator:
    """Answers from a script: script[agent][call] is the list of G texts of each prompt."""

    def __init__(self, script: dict[int, list[list[str]]]) -> None:
        self.script = script
        self.calls: dict[int, int] = {}
        self.prompts: list[tuple[int, str]] = []

    def sync_weights(self) -> None:
        pass

    def generate(self, agent: int, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        call = self.calls.get(agent, 0)
        self.calls[agent] = call + 1
        texts = self.script[agent][call]
        assert len(texts) == params.num_samples
        out = []
        for p in prompts:
            self.prompts.append((agent, p))
            out.append([Sample((1, 2), (3, 4), t, True) for t in texts])
        return out


def test_text_env_single_turn_one_group() -> None:
    env = TextRewardEnv(lambda text: float(len(text)))
    gen = ScriptedGenerator({0: [["a", "abc"]]})
    [record] = rollout(env, [TextTask("t0", "say")], gen, SamplingParams(num_samples=2))
    [turn] = record.turns
    assert turn.rewards == [1.0, 3.0]
    assert turn.handoff is None and not turn.ends_early


def test_handoff_best_or_random_ignores_failed_judgements() -> None:
    js = [Judgement(1.0), Judgement(None), Judgement(3.0), Judgement(3.0)]
    assert pick_handoff(js, "best", random.Random(0)) == 2  # first of equals
    picks = {pick_handoff(js, "random", random.Random(s)) for s in range(30)}
    assert picks == {0, 2, 3}
    assert pick_handoff([Judgement(None)], "best", random.Random(0)) is None


HE0 = load_tasks("humaneval", "test[:1]")[0]  # has_close_elements
GOOD_MAIN = (
    "```python\ndef has_close_elements(numbers, threshold):\n"
    "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
    " for j, b in enumerate(numbers) if i != j)\n```"
)
BAD_MAIN = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"


def test_code_env_scores_joint_programs_in_the_sandbox() -> None:
    env = CodeCollabEnv(1, external_mode="level_feedback")
    episode = env.reset(HE0)
    good, bad, junk = episode.judge([[GOOD_MAIN], [BAD_MAIN], ["no code here"]])
    assert good.reward == pytest.approx(2.1) and good.solved
    assert good.info["pass_rate"] == 1.0 and good.info["level3"] == 1.0
    assert bad.reward is not None and 1.1 <= bad.reward < 2.1 and not bad.solved
    assert junk.reward == 0.0 and junk.info["level1"] == 0.0
    assert "bonus" not in good.info  # one agent: no aux bonuses, no always-zero metric


def test_multi_turn_feedback_reaches_the_next_prompt_with_the_sandbox_slice() -> None:
    env = CodeCollabEnv(1, external_mode="level_feedback", sandbox_slice=-2)
    gen = ScriptedGenerator({0: [[BAD_MAIN, BAD_MAIN], [GOOD_MAIN, BAD_MAIN]]})
    [record] = rollout(env, [HE0], gen, SamplingParams(num_samples=2), num_turns=2)
    assert len(record.turns) == 2
    first, second = record.turns
    assert first.handoff == 0 and not first.ends_early
    turn2_prompt = gen.prompts[-1][1]
    assert "Feedback on the previous attempt" in turn2_prompt
    assert "Tests: " in turn2_prompt and "/2 passed" in turn2_prompt  # sliced to the last 2
    assert "return False" in turn2_prompt  # previous_response on by default
    assert second.rewards[0] == pytest.approx(2.1)


def test_a_solved_handoff_ends_the_episode_early_and_weights_that_turn() -> None:
    env = CodeCollabEnv(1, external_mode="passed")
    gen = ScriptedGenerator({0: [[GOOD_MAIN, BAD_MAIN]]})
    [record] = rollout(env, [HE0], gen, SamplingParams(num_samples=2), num_turns=3)
    [turn] = record.turns
    assert turn.ends_early and turn.handoff == 0
    samples = training_samples(
        [record], 0, turn_weights=[1.5, 1.0, 1.0], early_termination_weight=2.0,
        normalize=False, clip=None,
    )  # fmt: skip
    assert [s.weight for s in samples] == [3.0, 3.0]  # turn weight x early-termination weight
    assert samples[0].advantage > 0 > samples[1].advantage


def test_two_agents_aux_and_main_compose_and_earn_the_aux_bonus() -> None:
    env = CodeCollabEnv(2, external_mode="level_passed")
    aux = "```python\ndef aux(numbers, threshold):\n    return sorted(numbers)\n```"
    main = (
        "```python\ndef has_close_elements(numbers, threshold):\n    s = aux(numbers, threshold)\n"
        "    return any(b - a < threshold for a, b in zip(s, s[1:]))\n```"
    )
    gen = ScriptedGenerator({0: [[aux, aux]], 1: [[main, BAD_MAIN]]})
    [record] = rollout(env, [HE0], gen, SamplingParams(num_samples=2), joint_mode="cross")
    [turn] = record.turns
    assert len(turn.judgements) == 4  # G^N joint actions
    best = turn.judgements[0]
    assert best.reward == pytest.approx(4.0) and best.solved and best.info["bonus"] == 1.5


class _FlakySandbox:
    """Fails every run once (infra error), then delegates: the retry must hide it."""

    def __init__(self, fail_always: bool = False) -> None:
        from collabcoder.analyzers.sandbox import default_sandbox

        self.inner = default_sandbox()
        self.fail_always = fail_always
        self.calls = 0

    def run_many(self, jobs: Sequence[object]) -> list[object]:
        from collabcoder.analyzers.verdict import Outcome, Verdict

        self.calls += 1
        if self.fail_always or self.calls == 1:
            return [Verdict(Outcome.INFRA_ERROR, infra_error="boom") for _ in jobs]
        return list(self.inner.run_many(jobs))  # type: ignore[arg-type]


def test_infra_errors_are_retried_then_dropped_never_scored() -> None:
    env = CodeCollabEnv(1, external_mode="plain", sandbox=_FlakySandbox())
    [good] = env.reset(HE0).judge([[GOOD_MAIN]])
    assert good.reward == pytest.approx(2.1)
    env = CodeCollabEnv(1, external_mode="plain", sandbox=_FlakySandbox(fail_always=True))
    gen = ScriptedGenerator({0: [[GOOD_MAIN, BAD_MAIN]]})
    [record] = rollout(env, [HE0], gen, SamplingParams(num_samples=2))
    assert record.turns[0].dropped
    samples = training_samples(
        [record], 0, turn_weights=[1.0], early_termination_weight=2.0, normalize=False, clip=None
    )
    assert all(s.weight == 0.0 and s.advantage == 0.0 for s in samples)


def test_expert_edits_turn_asks_a_real_openai_compatible_server(
    openai_server: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from collabcoder.training.rollout import ExpertClient, resolve_expert

    server = openai_server
    monkeypatch.setenv("COLLABCODER_EXPERT_BASE_URL", server.base_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("COLLABCODER_EXPERT_API_KEY", server.api_key)  # type: ignore[attr-defined]
    endpoint = resolve_expert("tiny")
    assert "test-key" not in repr(endpoint)
    expert = ExpertClient(endpoint, max_tokens=8)
    try:
        env = CodeCollabEnv(2, external_mode="expert_edits", expert=expert)
        aux = "```python\ndef aux(x):\n    return x\n```"
        gen = ScriptedGenerator({0: [[aux, aux], [aux, aux]], 1: [[BAD_MAIN, BAD_MAIN]] * 2})
        [record] = rollout(env, [HE0], gen, SamplingParams(num_samples=2), num_turns=2)
    finally:
        expert.close()
    assert expert.calls == 1 and expert.failures == 0
    assert len(record.turns) == 2
    turn2 = [p for agent, p in gen.prompts[-2:]]
    # The tiny model writes no JSON: the turn says the reviewer proposed no edits.
    assert all("reviewer" in p for p in turn2)


def test_expert_endpoint_comes_from_the_environment() -> None:
    from collabcoder.training.rollout import ExpertConfigError, resolve_expert

    ep = resolve_expert("deepseek-coder", {"DEEPSEEK_API_KEY": "k"})
    assert ep.base_url.startswith("https://api.deepseek.com") and ep.api_key == "k"
    with pytest.raises(ExpertConfigError, match="DEEPSEEK_API_KEY"):
        resolve_expert("deepseek-coder", {})
    with pytest.raises(ExpertConfigError, match="COLLABCODER_EXPERT_BASE_URL"):
        resolve_expert("my-local-model", {})
