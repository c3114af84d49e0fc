"""The turn protocol: first-turn prompts and next-turn prompts in every feedback mode."""

from __future__ import annotations

import json
import textwrap

import pytest

from collabcoder.analyzers.protocol.feedback import (
    ALL_LEVELS_PASSED,
    NOT_ALL_LEVELS_PASSED,
    FeedbackMode,
    FeedbackOptions,
    feedback_text,
    parse_mode,
    render_next_prompts,
    run_feedback_tests,
    slice_verdict,
)
from collabcoder.analyzers.protocol.program import FeedbackTask
from collabcoder.analyzers.protocol.prompts import expert_messages, initial_prompts
from collabcoder.analyzers.protocol.replies import ExpertEdits, parse_expert_reply
from collabcoder.analyzers.testcases import AssertSuite, IOCase, IOSuite
from collabcoder.analyzers.testcases import TestStep as Step
from collabcoder.analyzers.verdict import Outcome, SyntaxErrorInfo, Verdict
from collabcoder.analyzers.verdict import TestResult as Result

PROMPT = textwrap.dedent(
    """\
    def x_or_y(n, x, y):
        '''Return x if n is a prime number and y otherwise.

    For example:
    >>> x_or_y(7, 34, 12)
    34
    '''
    """
)
TASK = FeedbackTask(prompt=PROMPT, entry_point="x_or_y", task_id="CHE/0")
AUX = "def aux(n):\n    return n > 1 and all(n % d for d in range(2, n))"
MAIN = "def x_or_y(n, x, y):\n    if aux(n):\n        return x\n    return y // (n - 1)"
NO_EXTRAS = FeedbackOptions(original_prompt=False, previous_response=False)

PASSING = Verdict(
    outcome=Outcome.PASSED,
    tests=tuple(
        Result(i, f"assert candidate({n}, 1, 2) == {r}", Outcome.PASSED)
        for i, (n, r) in enumerate([(7, 1), (4, 2), (13, 1)])
    ),
)
FAILING = Verdict(
    outcome=Outcome.WRONG_ANSWER,
    tests=(
        Result(0, "assert candidate(7, 34, 12) == 34", Outcome.PASSED),
        Result(
            1, "assert candidate(15, 8, 5) == 5", Outcome.WRONG_ANSWER, expected="5", actual="0"
        ),
        Result(
            2,
            "assert candidate(1, 100, 200) == 200",
            Outcome.RUNTIME_ERROR,
            error_type="ZeroDivisionError",
            message="integer division or modulo by zero",
            line=8,  # line 4 of the main code in the composed program
        ),
    ),
)


def render(
    mode: str,
    verdict: Verdict | None,
    options: FeedbackOptions = NO_EXTRAS,
    expert: ExpertEdits | None = None,
) -> dict[str, str]:
    return render_next_prompts(mode, TASK, AUX, MAIN, verdict, options=options, expert=expert)


# --- first turn ------------------------------------------------------------------------------


def test_initial_prompts_for_two_agents() -> None:
    prompts = initial_prompts(TASK, num_agents=2)
    assert set(prompts) == {"aux", "main"}
    assert PROMPT.strip() in prompts["aux"] and PROMPT.strip() in prompts["main"]
    assert "helper function named `aux`" in prompts["aux"]
    assert "Do not write `x_or_y` itself" in prompts["aux"]
    assert "Call `aux(...)`" in prompts["main"]
    assert "Do not define `aux` yourself" in prompts["main"]
    assert "`def x_or_y(n, x, y):`" in prompts["main"]


def test_initial_prompt_for_a_single_agent_never_mentions_aux() -> None:
    prompts = initial_prompts(TASK, num_agents=1)
    assert list(prompts) == ["main"]
    assert "aux" not in prompts["main"]
    assert "Implement `x_or_y` completely" in prompts["main"]


# --- level_feedback --------------------------------------------------------------------------


def test_level_feedback_failing_main_prompt() -> None:
    assert render("level_feedback", FAILING)["main"] == textwrap.dedent(
        """\
        Feedback on the previous attempt:
        - `x_or_y`: defined (your function)
        - `aux`: defined (the helper agent's function)
        - Syntax: OK
        - Tests: 1/3 passed
          Failed: assert x_or_y(15, 8, 5) == 5
            Wrong answer: expected 5, got 0
          Failed: assert x_or_y(1, 100, 200) == 200
            ZeroDivisionError: integer division or modulo by zero (line 4 of your code)
        - Use of `aux`: `x_or_y` calls `aux` and uses its result
        Hints:
        - Wrong answer: The code runs but returns a wrong result. Compare the expected and actual values, re-read the task's requirements and examples, and check edge cases (empty input, negatives, duplicates, boundaries).
        - ZeroDivisionError: A division or modulo by zero. Handle zero divisors and empty inputs (averages of nothing) before dividing.

        Revise `x_or_y` accordingly. Reply with the code of `x_or_y` only, in one ```python block: no explanations, no examples, no tests."""
    )


def test_level_feedback_aux_prompt_speaks_from_the_aux_side() -> None:
    text = render("level_feedback", FAILING)["aux"]
    assert "- `aux`: defined (your function)" in text
    assert "- `x_or_y`: defined (the main agent's function)" in text
    assert "(line 4 of the main code)" in text
    assert text.endswith("Revise `aux` accordingly. " + text.split("accordingly. ")[-1])


def test_level_feedback_passing() -> None:
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, PASSING)
    assert "- Tests: 3/3 passed" in text
    assert "Failed:" not in text and "Hints:" not in text


def test_level_feedback_reports_missing_definitions_and_untested_program() -> None:
    text = feedback_text("level_feedback", "main", TASK, "", "def other(n):\n    return n", None)
    assert "- `x_or_y`: missing (your function)" in text
    assert "- `aux`: missing (the helper agent's function)" in text
    assert "- Tests: not run (`x_or_y` is missing)" in text
    assert "- Use of `aux`: not checked (`x_or_y` is missing)" in text
    assert "Missing function:" in text


def test_level_feedback_syntax_error_with_line_and_column() -> None:
    broken = "def x_or_y(n, x, y):\n    return (x if aux(n) else y\n"
    text = feedback_text("level_feedback", "main", TASK, AUX, broken, None)
    assert "- Syntax: error in your code at line 2, column 12: '(' was never closed" in text
    assert "    return (x if aux(n) else y" in text
    assert "- Tests: not run (syntax error)" in text
    assert "SyntaxError: The code does not parse" in text
    other_side = feedback_text("level_feedback", "aux", TASK, AUX, broken, None)
    assert "error in the main code at line 2" in other_side


def test_level_feedback_aux_usage_warnings() -> None:
    thin = "def x_or_y(n, x, y):\n    return aux(n, x, y)"
    text = feedback_text("level_feedback", "main", TASK, AUX, thin, PASSING)
    assert "- Warning: `x_or_y` only forwards its arguments to `aux`" in text
    ignores = "def x_or_y(n, x, y):\n    aux(n)\n    return x"
    text = feedback_text("level_feedback", "main", TASK, AUX, ignores, FAILING)
    assert "`x_or_y` calls `aux` but ignores its result (line 2 of your code)" in text
    solo = "def x_or_y(n, x, y):\n    return x"
    text = feedback_text("level_feedback", "main", TASK, AUX, solo, FAILING)
    assert "`x_or_y` does not call `aux`" in text


def test_level_feedback_infra_error_is_not_blamed_on_the_code() -> None:
    infra = Verdict(outcome=Outcome.INFRA_ERROR, infra_error="fork failed")
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, infra)
    assert "not run: the test sandbox failed (not a problem in the code)" in text
    assert "Hints:" not in text


def test_level_feedback_program_that_crashed_before_its_tests() -> None:
    crashed = Verdict(
        outcome=Outcome.RUNTIME_ERROR, stderr="Traceback ...\nNameError: name 'q' is not defined"
    )
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, crashed)
    assert "- Tests: none ran: the program failed before its tests (NameError: name 'q'" in text
    assert "NameError: A name is used before it is defined" in text


def test_level_feedback_timeout_and_long_values_are_cut() -> None:
    v = Verdict(
        outcome=Outcome.TIMEOUT,
        tests=(
            Result(0, "assert candidate(2, 1, 0) == 1", Outcome.TIMEOUT),
            Result(1, "assert candidate(3, 1, 0) == 1", Outcome.WRONG_ANSWER, "1", "9" * 500),
        ),
    )
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, v)
    assert "Timeout: no result within the time limit" in text
    assert "Timeout: The code ran past the time limit" in text
    assert "9" * 500 not in text and "9" * 190 + "..." in text


def test_level_feedback_shows_stdin_for_io_tests() -> None:
    v = Verdict(
        outcome=Outcome.WRONG_ANSWER,
        tests=(Result(0, "3 4\n", Outcome.WRONG_ANSWER, expected="7\n", actual="12\n"),),
    )
    text = feedback_text(
        "level_feedback", "main", TASK, "", MAIN, v, options=FeedbackOptions(num_agents=1)
    )
    assert "Failed: input '3 4\\n'" in text
    assert "Wrong answer: expected '7\\n', got '12\\n'" in text


def test_level_feedback_single_agent_has_no_aux_lines() -> None:
    solo = "def x_or_y(n, x, y):\n    return x"
    out = render_next_prompts(
        "level_feedback", TASK, "", solo, FAILING, options=FeedbackOptions(num_agents=1)
    )
    assert list(out) == ["main"]
    assert "aux" not in out["main"]


# --- level_passed / passed / plain -----------------------------------------------------------


def test_level_passed_failing() -> None:
    assert render("level_passed", FAILING)["main"].split("\n\n")[0] == textwrap.dedent(
        """\
        Signals:
        - Implementation: found
        - Syntax: correct
        - Tests: passed 1/3
        - Use of `aux`: `x_or_y` calls `aux` and uses its result"""
    )


def test_level_passed_passing_and_missing() -> None:
    assert "- Tests: passed all 3" in render("level_passed", PASSING)["aux"]
    text = feedback_text("level_passed", "aux", TASK, "", MAIN, None)
    assert "- Implementation: missing" in text and "- Tests: not run" in text
    none_passed = slice_verdict(FAILING, -2)
    assert "- Tests: passed none of 2" in feedback_text(
        "level_passed", "main", TASK, AUX, MAIN, none_passed
    )


def test_passed_mode_signals() -> None:
    assert f"Signal: {ALL_LEVELS_PASSED}" in render("passed", PASSING)["main"]
    assert f"Signal: {NOT_ALL_LEVELS_PASSED}" in render("passed", FAILING)["aux"]
    assert render("passed", FAILING)["main"].endswith(
        "Revise `x_or_y` if needed. Reply with the code of `x_or_y` only, in one ```python block: "
        "no explanations, no examples, no tests."
    )


def test_plain_mode_has_no_signals() -> None:
    failing = render("plain", FAILING, FeedbackOptions(original_prompt=False))
    passing = render("plain", PASSING, FeedbackOptions(original_prompt=False))
    assert failing == passing
    assert "Tests" not in failing["main"] and "Signal" not in failing["main"]
    assert feedback_text("plain", "main", TASK, AUX, MAIN, FAILING) == ""


# --- flags -----------------------------------------------------------------------------------


def test_original_prompt_flag_repeats_the_first_turn_prompt() -> None:
    first = initial_prompts(TASK)
    with_prompt = render(
        "level_feedback", FAILING, FeedbackOptions(original_prompt=True, previous_response=False)
    )
    assert with_prompt["aux"].startswith(first["aux"] + "\n\n")
    assert with_prompt["main"].startswith(first["main"] + "\n\n")
    without = render("level_feedback", FAILING, NO_EXTRAS)
    assert "Problem:" not in without["main"]


def test_previous_response_flag_shows_each_agent_its_own_code() -> None:
    out = render("plain", None, FeedbackOptions(original_prompt=False, previous_response=True))
    assert out["aux"].startswith("Your previous code:\n```python\n" + AUX + "\n```")
    assert out["main"].startswith("Your previous code:\n```python\n" + MAIN + "\n```")
    assert MAIN not in out["aux"] and AUX not in out["main"]
    empty = render_next_prompts(
        "plain", TASK, "", MAIN, None, options=FeedbackOptions(original_prompt=False)
    )
    assert empty["aux"].startswith("Your previous reply contained no `aux` function.")


def test_defaults_include_prompt_and_previous_code() -> None:
    out = render_next_prompts("level_feedback", TASK, AUX, MAIN, FAILING)
    assert out["main"].startswith(initial_prompts(TASK)["main"])
    assert (
        "Your previous code:" in out["main"] and "Feedback on the previous attempt:" in out["main"]
    )


# --- sandbox_slice ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sandbox_slice", "tests_line"),
    [
        (None, "- Tests: 1/3 passed"),
        (0, "- Tests: 1/3 passed"),
        (1, "- Tests: 1/1 passed"),
        (2, "- Tests: 1/2 passed"),
        (-1, "- Tests: 0/1 passed"),
        (-2, "- Tests: 0/2 passed"),
    ],
)
def test_sandbox_slice_selects_the_reported_tests(
    sandbox_slice: int | None, tests_line: str
) -> None:
    opts = FeedbackOptions(
        original_prompt=False, previous_response=False, sandbox_slice=sandbox_slice
    )
    assert tests_line in render("level_feedback", FAILING, opts)["main"]


def test_sandbox_slice_decides_the_passed_signal() -> None:
    first_only = FeedbackOptions(original_prompt=False, previous_response=False, sandbox_slice=1)
    assert ALL_LEVELS_PASSED in render("passed", FAILING, first_only)["main"]


def test_slice_verdict_recomputes_the_outcome_and_is_idempotent() -> None:
    first = slice_verdict(FAILING, 1)
    assert first.outcome is Outcome.PASSED and first.total == 1
    assert slice_verdict(first, 1) == first
    last = slice_verdict(FAILING, -1)
    assert last.outcome is Outcome.RUNTIME_ERROR and last.tests[0].index == 2
    assert slice_verdict(FAILING, 0) is FAILING and slice_verdict(FAILING, 10) is FAILING


def test_sandbox_slice_has_no_effect_on_expert_edits() -> None:
    edits = ExpertEdits(aux="No changes needed.", main="Return y when n < 2.")
    plain = render("expert_edits", FAILING, NO_EXTRAS, expert=edits)
    sliced = render(
        "expert_edits",
        FAILING,
        FeedbackOptions(original_prompt=False, previous_response=False, sandbox_slice=1),
        expert=edits,
    )
    assert plain == sliced


def test_run_feedback_tests_runs_the_sliced_suite() -> None:
    runs: list[tuple[str, int]] = []

    class FakeSandbox:
        def run_asserts(self, program: str, suite: AssertSuite) -> Verdict:
            runs.append((program, len(suite.tests)))
            return PASSING

        def run_io(self, program: str, io_suite: IOSuite) -> Verdict:
            raise AssertionError("assert suite expected")

    steps = tuple(Step(f"assert candidate({i}, 1, 2)", True, i + 2) for i in range(4))
    task = FeedbackTask(PROMPT, "x_or_y", suite=AssertSuite("x_or_y", "", steps))
    opts = FeedbackOptions(sandbox_slice=-3)
    assert run_feedback_tests(task, AUX, MAIN, opts, sandbox=FakeSandbox()) is PASSING
    assert runs[0][1] == 3 and "def aux" in runs[0][0] and "def x_or_y" in runs[0][0]
    with pytest.raises(ValueError, match="no test suite"):
        run_feedback_tests(TASK, AUX, MAIN)
    io_task = FeedbackTask(PROMPT, "x_or_y", suite=IOSuite((IOCase("1\n", "1\n"),)))
    with pytest.raises(AssertionError, match="assert suite expected"):
        run_feedback_tests(io_task, AUX, MAIN, sandbox=FakeSandbox())


# --- expert_edits ----------------------------------------------------------------------------


def test_expert_messages_show_the_program_and_ask_for_json() -> None:
    messages = expert_messages(TASK, AUX, MAIN)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert PROMPT.strip() in user
    assert "```python\ndef aux(n):" in user and "def x_or_y(n, x, y):" in user
    assert '{"aux": "<edits for aux>", "main": "<edits for x_or_y>"}' in user
    solo = expert_messages(TASK, AUX, MAIN, num_agents=1)[1]["content"]
    assert '{"main": "<edits for x_or_y>"}' in solo and "def aux" not in solo


def test_parse_expert_reply_reads_the_last_json_object() -> None:
    reply = (
        "Let me look.\n```json\n"
        + json.dumps({"aux": "No changes needed.", "main": "Guard n < 2: `if n < 2: return y`"})
        + "\n```\nDone."
    )
    edits = parse_expert_reply(reply)
    assert edits == ExpertEdits(aux="No changes needed.", main="Guard n < 2: `if n < 2: return y`")
    bare = parse_expert_reply('Thoughts {not json}. {"main": "use {} for dicts"}')
    assert bare.main == "use {} for dicts" and bare.aux == "" and bare.parsed
    assert parse_expert_reply("I have no idea.") == ExpertEdits(parsed=False)


def test_expert_edits_next_turn_prompts() -> None:
    edits = ExpertEdits(aux="No changes needed.", main="Return y when n < 2.")
    out = render("expert_edits", None, expert=edits)
    assert out["aux"].startswith("Edits proposed by a reviewer:\nNo changes needed.\n\n")
    assert out["main"].startswith("Edits proposed by a reviewer:\nReturn y when n < 2.\n\n")
    assert out["main"].endswith(
        "Revise `x_or_y` accordingly. Reply with the code of `x_or_y` only, in one ```python "
        "block: no explanations, no examples, no tests."
    )
    nothing = render("expert_edits", None, expert=ExpertEdits(parsed=False))
    assert nothing["main"].startswith(
        "A reviewer looked at the previous attempt and proposed no edits."
    )


def test_expert_edits_without_the_expert_reply_is_an_error() -> None:
    with pytest.raises(ValueError, match="expert_edits"):
        render("expert_edits", None)


# --- protocol details ------------------------------------------------------------------------


def test_texts_are_deterministic() -> None:
    for mode in FeedbackMode:
        expert = ExpertEdits("a", "b") if mode is FeedbackMode.EXPERT_EDITS else None
        assert render(mode.value, FAILING, FeedbackOptions(), expert) == render(
            mode.value, FAILING, FeedbackOptions(), expert
        )


def test_modes_by_name() -> None:
    assert parse_mode("Level_Feedback") is FeedbackMode.LEVEL_FEEDBACK
    with pytest.raises(ValueError, match="unknown feedback mode 'levels'"):
        parse_mode("levels")


def test_unknown_role_and_agent_count() -> None:
    with pytest.raises(ValueError, match="unknown role 'aux'"):
        feedback_text("plain", "aux", TASK, AUX, MAIN, options=FeedbackOptions(num_agents=1))
    with pytest.raises(ValueError, match="num_agents"):
        FeedbackOptions(num_agents=3)


def test_sandbox_syntax_error_is_mapped_to_the_agent_code() -> None:
    # The facts found no error but the sandbox did (e.g. a compile-time check it runs).
    v = Verdict(outcome=Outcome.SYNTAX_ERROR, syntax_error=SyntaxErrorInfo("bad thing", 7, 5))
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, v)
    assert "- Syntax: error in your code at line 3, column 5: bad thing" in text


def test_level_feedback_main_calls_a_missing_aux() -> None:
    text = feedback_text("level_feedback", "aux", TASK, "", MAIN, None)
    assert "- `aux`: missing (your function)" in text
    assert "- Use of `aux`: `x_or_y` calls `aux`, but `aux` is missing" in text
    assert "Missing function: The required function was not found." in text


def test_level_feedback_wrong_answer_variants() -> None:
    v = Verdict(
        outcome=Outcome.WRONG_ANSWER,
        tests=(
            Result(0, "assert candidate(4, 1, 0)", Outcome.WRONG_ANSWER, "a truthy value", "0"),
            Result(1, "assert candidate(9, 1, 0) < 1", Outcome.WRONG_ANSWER, "actual < 1", "3"),
            Result(2, "assert candidate(2, 1, 0) == 1", Outcome.WRONG_ANSWER, message="oops"),
            Result(
                3,
                "assert candidate(3, 1, 0) == 1",
                Outcome.WRONG_ANSWER,
                actual="<Weird object>",
                message="untrusted comparison",
            ),
        ),
    )
    text = feedback_text("level_feedback", "main", TASK, AUX, MAIN, v)
    assert "Wrong answer: expected a truthy value, got 0" in text
    assert "Wrong answer: expected actual < 1, got 3" in text
    assert "Wrong answer: the assertion failed: oops" in text
    assert "Wrong answer: got <Weird object> (untrusted comparison)" in text


def test_level_feedback_load_error_reported_by_the_sandbox() -> None:
    # The sandbox puts an error raised while loading the program into extra["error"].
    crashed = Verdict(
        outcome=Outcome.RUNTIME_ERROR,
        extra={
            "error": {
                "error_type": "ModuleNotFoundError",
                "message": "No module named 'np'",
                "line": 1,
            }
        },
    )
    numpy_aux = "import np\n\n\ndef aux(n):\n    return np.sqrt(n)"
    text = feedback_text("level_feedback", "main", TASK, numpy_aux, MAIN, crashed)
    assert (
        "- Tests: none ran: the program failed before its tests "
        "(ModuleNotFoundError: No module named 'np' (line 1 of the aux code))"
    ) in text
    assert "ImportError: A module or name could not be imported." in text
