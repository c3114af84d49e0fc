"""MAGRPO's leveled reward and the code-agentic reward, on hand-written programs and verdicts."""

from __future__ import annotations

import pytest

from collabcoder.analyzers.protocol.program import analyze_program
from collabcoder.analyzers.protocol.rewards import (
    LEVEL_DEFINITIONS,
    LEVEL_NONE,
    LEVEL_SYNTAX,
    LEVEL_TESTS,
    CodeAgenticRewardWeights,
    MagrpoRewardWeights,
    code_agentic_reward,
    magrpo_reward,
    score_program,
)
from collabcoder.analyzers.testcases import AssertSuite
from collabcoder.analyzers.testcases import TestStep as Step
from collabcoder.analyzers.verdict import Outcome, SyntaxErrorInfo, Verdict
from collabcoder.analyzers.verdict import TestResult as Result

ENTRY = "x_or_y"
AUX = "def aux(n):\n    return n > 1 and all(n % d for d in range(2, n))\n"
MAIN = "def x_or_y(n, x, y):\n    if aux(n):\n        return x\n    return y\n"
THIN = "def x_or_y(n, x, y):\n    return aux(n, x, y)\n"
IGNORES = "def x_or_y(n, x, y):\n    aux(n)\n    return x\n"
SOLO = (
    "def x_or_y(n, x, y):\n"
    "    if n > 1 and all(n % d for d in range(2, n)):\n"
    "        return x\n"
    "    return y\n"
)


def verdict(passed: int, total: int) -> Verdict:
    """`passed` tests pass, the rest are wrong answers."""
    tests = tuple(
        Result(
            index=i,
            test=f"assert candidate({i}, 1, 2) == 1",
            outcome=Outcome.PASSED if i < passed else Outcome.WRONG_ANSWER,
        )
        for i in range(total)
    )
    outcome = Outcome.PASSED if passed == total else Outcome.WRONG_ANSWER
    return Verdict(outcome=outcome, tests=tests)


INFRA = Verdict(outcome=Outcome.INFRA_ERROR, infra_error="fork failed: EAGAIN")


def test_full_collaboration_earns_the_maximum_4() -> None:
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), verdict(5, 5))
    assert b.aux_defined == 0.4 and b.main_defined == 0.6 and b.syntax == 0.5
    assert b.tests == 1.0 and b.main_calls_aux == 0.5 and b.not_thin_wrapper == 1.0
    assert b.aux_result_ignored == 0.0
    assert b.total == pytest.approx(4.0) == MagrpoRewardWeights().max_reward(2)
    assert b.reward == b.total
    assert b.level == LEVEL_TESTS and (b.tests_passed, b.tests_total) == (5, 5)


def test_single_agent_maximum_is_2_1() -> None:
    b = magrpo_reward(analyze_program("", SOLO, ENTRY), verdict(5, 5))
    assert b.total == pytest.approx(2.1) == MagrpoRewardWeights().max_reward(1)
    assert b.aux_defined == b.main_calls_aux == b.not_thin_wrapper == 0.0


def test_test_reward_is_proportional_to_the_pass_fraction() -> None:
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), verdict(2, 5))
    assert b.tests == pytest.approx(0.4)
    assert b.total == pytest.approx(0.4 + 0.6 + 0.5 + 0.4 + 0.5 + 1.0)
    assert b.level == LEVEL_SYNTAX


def test_thin_wrapper_gets_no_anti_wrapper_bonus() -> None:
    b = magrpo_reward(analyze_program(AUX, THIN, ENTRY), verdict(5, 5))
    assert b.main_calls_aux == 0.5 and b.not_thin_wrapper == 0.0
    assert b.total == pytest.approx(3.0)


def test_ignored_aux_result_is_penalised() -> None:
    b = magrpo_reward(analyze_program(AUX, IGNORES, ENTRY), verdict(3, 5))
    assert b.aux_result_ignored == -0.5
    assert b.total == pytest.approx(0.4 + 0.6 + 0.5 + 0.6 + 0.5 + 1.0 - 0.5)


def test_main_not_calling_aux_gets_no_collaboration_terms() -> None:
    b = magrpo_reward(analyze_program(AUX, SOLO, ENTRY), verdict(5, 5))
    assert b.main_calls_aux == b.not_thin_wrapper == b.aux_result_ignored == 0.0
    assert b.total == pytest.approx(2.5)


def test_no_bonus_without_a_passing_test() -> None:
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), verdict(0, 5))
    assert b.tests == 0.0 and b.main_calls_aux == 0.0 and b.not_thin_wrapper == 0.0
    assert b.total == pytest.approx(1.5)


def test_missing_main_stops_at_level_one() -> None:
    facts = analyze_program(AUX, "def other(n):\n    return n\n", ENTRY)
    b = magrpo_reward(facts, None)  # no need to run the program
    assert b.total == pytest.approx(0.4) and b.level == LEVEL_NONE
    assert b.main_defined == 0.0 and b.syntax == 0.0


def test_missing_aux_is_not_a_gate() -> None:
    b = magrpo_reward(analyze_program("def helper(n):\n    return n\n", SOLO, ENTRY), verdict(5, 5))
    assert b.aux_defined == 0.0 and b.total == pytest.approx(2.1)


def test_syntax_error_stops_at_level_two() -> None:
    broken = "def x_or_y(n, x, y):\n    return (x if aux(n) else y\n"
    b = magrpo_reward(analyze_program(AUX, broken, ENTRY), None)
    assert b.total == pytest.approx(1.0) and b.level == LEVEL_DEFINITIONS


def test_a_syntax_error_reported_by_the_sandbox_is_a_syntax_failure() -> None:
    v = Verdict(outcome=Outcome.SYNTAX_ERROR, syntax_error=SyntaxErrorInfo("bad", 1, 1))
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), v)
    assert b.syntax == 0.0 and b.level == LEVEL_DEFINITIONS


def test_aux_definition_reward_can_be_switched_off() -> None:
    w = MagrpoRewardWeights(score_aux_definition=False)
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), verdict(5, 5), w)
    assert b.aux_defined == 0.0 and b.total == pytest.approx(3.6) == w.max_reward(2)


def test_custom_weights() -> None:
    w = MagrpoRewardWeights(tests=2.0, aux_result_ignored_penalty=1.0)
    b = magrpo_reward(analyze_program(AUX, IGNORES, ENTRY), verdict(1, 2), w)
    assert b.tests == pytest.approx(1.0) and b.aux_result_ignored == -1.0


def test_infra_error_is_flagged_not_scored() -> None:
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), INFRA)
    assert b.infra_error and b.reward is None
    assert b.infra_message == "fork failed: EAGAIN"
    assert b.total == 0.0  # components are zeroed: nothing here may be trained on
    assert b.to_dict()["reward"] is None


def test_infra_error_does_not_matter_when_a_gate_already_failed() -> None:
    # The reward of a program without its main function does not depend on execution.
    b = magrpo_reward(analyze_program(AUX, "", ENTRY), INFRA)
    assert not b.infra_error and b.reward == pytest.approx(0.4)


def test_runnable_program_without_verdict_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs the sandbox verdict"):
        magrpo_reward(analyze_program(AUX, MAIN, ENTRY), None)


def test_program_that_crashed_before_its_tests_scores_zero_tests() -> None:
    v = Verdict(outcome=Outcome.RUNTIME_ERROR, stderr="NameError: name 'q' is not defined")
    b = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), v)
    assert b.tests == 0.0 and b.main_calls_aux == 0.0 and b.level == LEVEL_SYNTAX


def test_breakdown_to_dict_has_total_and_components() -> None:
    d = magrpo_reward(analyze_program(AUX, MAIN, ENTRY), verdict(5, 5)).to_dict()
    assert d["total"] == pytest.approx(4.0) and d["level"] == LEVEL_TESTS
    assert {"aux_defined", "main_defined", "syntax", "tests", "infra_error"} <= set(d)


def test_score_program_skips_the_sandbox_when_a_gate_fails() -> None:
    class ExplodingSandbox:
        def run_asserts(self, program: str, suite: AssertSuite) -> Verdict:
            raise AssertionError("must not run")

        def run_io(self, program: str, io_suite: object) -> Verdict:
            raise AssertionError("must not run")

    suite = AssertSuite(ENTRY, "", (Step("assert candidate(7, 1, 2) == 1", True, 2),))
    scored = score_program("", AUX, "", suite, sandbox=ExplodingSandbox())
    assert scored.verdict is None and scored.breakdown.total == pytest.approx(0.4)


def test_score_program_uses_the_given_sandbox() -> None:
    seen: list[str] = []

    class FakeSandbox:
        def run_asserts(self, program: str, suite: AssertSuite) -> Verdict:
            seen.append(program)
            return verdict(1, 1)

        def run_io(self, program: str, io_suite: object) -> Verdict:
            raise AssertionError("assert suite expected")

    suite = AssertSuite(ENTRY, "", (Step("assert candidate(7, 1, 2) == 1", True, 2),))
    scored = score_program("", AUX, MAIN, suite, sandbox=FakeSandbox())
    assert seen and "def aux" in seen[0] and "def x_or_y" in seen[0]
    assert scored.breakdown.total == pytest.approx(4.0)


# --- code-agentic ----------------------------------------------------------------------------


def test_code_agentic_correct_first_try_with_the_tool() -> None:
    b = code_agentic_reward(verdict(4, 4), tool_calls=1)
    assert b.correctness == 1.0 and b.tool_bonus == 0.05 and b.test_case_bonus == 0.3
    assert b.debug_penalty == 0.0
    assert b.total == pytest.approx(1.35) and b.reward == b.total


def test_code_agentic_partial_without_the_tool() -> None:
    b = code_agentic_reward(verdict(1, 4), tool_calls=0)
    assert b.correctness == 0.0 and b.tool_bonus == 0.0
    assert b.test_case_bonus == pytest.approx(0.075)
    assert b.total == pytest.approx(0.075)


def test_code_agentic_debug_penalty_counts_attempts_beyond_the_first() -> None:
    b = code_agentic_reward(verdict(4, 4), tool_calls=3)
    assert b.debug_penalty == pytest.approx(-0.2)
    assert b.total == pytest.approx(1.15)
    explicit = code_agentic_reward(verdict(4, 4), tool_calls=3, debug_attempts=1)
    assert explicit.debug_penalty == 0.0


def test_code_agentic_weights_and_scale() -> None:
    w = CodeAgenticRewardWeights(tool_bonus=0.1, debug_penalty=0.5, reward_scale=2.0)
    b = code_agentic_reward(verdict(2, 2), tool_calls=2, weights=w)
    assert b.total == pytest.approx(2.0 * (1.0 + 0.1 + 0.3 - 0.5))


def test_code_agentic_infra_error_is_flagged() -> None:
    b = code_agentic_reward(INFRA, tool_calls=1)
    assert b.infra_error and b.reward is None and b.infra_message == "fork failed: EAGAIN"


def test_code_agentic_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        code_agentic_reward(verdict(1, 1), tool_calls=-1)


# --- with the real sandbox -------------------------------------------------------------------

CHE_PROMPT = '''def x_or_y(n, x, y):
    """Return x if n is a prime number and y otherwise.
    >>> x_or_y(7, 34, 12)
    34
    """
'''
CHE_TEST = """def check(candidate):
    assert candidate(7, 34, 12) == 34
    assert candidate(15, 8, 5) == 5
    assert candidate(2, 10, 20) == 10
    assert candidate(1, 100, 200) == 200
"""


def test_real_sandbox_run_then_reward() -> None:
    module = pytest.importorskip("collabcoder.analyzers.sandbox")
    if not hasattr(module, "default_sandbox"):
        pytest.skip("collabcoder.analyzers.sandbox does not export default_sandbox yet")
    from collabcoder.analyzers.protocol.replies import extract_function
    from collabcoder.analyzers.testcases import extract_assert_suite

    suite = extract_assert_suite(CHE_TEST, "x_or_y")
    aux_reply = (
        "Helper:\n```python\ndef aux(n):\n    return n > 1 and all(n % d for d in range(2, n))\n```"
    )
    main_reply = f"```python\n{MAIN}```\nThis uses aux."
    aux = extract_function(aux_reply, "aux")
    main = extract_function(main_reply, "x_or_y", exclude={"aux"})
    scored = score_program(CHE_PROMPT, aux, main, suite, sandbox=module.default_sandbox())
    assert scored.verdict is not None and scored.verdict.all_passed, scored.verdict
    assert scored.breakdown.total == pytest.approx(4.0)

    # Off by one: 1 counts as prime, so the last assert fails with a wrong answer.
    buggy_aux = "def aux(n):\n    return all(n % d for d in range(2, n))\n"
    buggy = score_program(CHE_PROMPT, buggy_aux, main, suite, sandbox=module.default_sandbox())
    assert buggy.verdict is not None
    assert (buggy.verdict.passed_count, buggy.verdict.total) == (3, 4)
    assert buggy.verdict.failures()[0].outcome is Outcome.WRONG_ANSWER
    assert buggy.breakdown.total == pytest.approx(4.0 - 0.25)

    # The same verdict drives the next turn's feedback.
    from collabcoder.analyzers.protocol.feedback import feedback_text
    from collabcoder.analyzers.protocol.program import FeedbackTask

    task = FeedbackTask(CHE_PROMPT, "x_or_y")
    text = feedback_text("level_feedback", "aux", task, buggy_aux, main, buggy.verdict)
    assert "- Tests: 3/4 passed" in text
    assert "Failed: assert x_or_y(1, 100, 200) == 200" in text
    assert "Wrong answer: expected 200, got 100" in text
