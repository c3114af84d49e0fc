"""Reward functions: MAGRPO's leveled code reward and the code-agentic reward.

Both return a frozen breakdown (each component, the total, the counts behind them) so trainers
log the components and tests assert on them.

Infrastructure errors: when the sandbox itself failed (`Outcome.INFRA_ERROR`) and the score
depends on the tests, the breakdown has `infra_error=True`, every component 0 and
`reward is None`. The trainer must drop such samples (for group-relative advantages: drop or
re-run the whole group) instead of scoring them 0, which would teach the model that correct code
is bad. A program that fails a gate before the tests (main missing, syntax error) is scored
normally even with a sandbox failure: its reward does not depend on execution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from collabcoder.analyzers.protocol.program import (
    AUX_NAME,
    ProgramFacts,
    SandboxLike,
    analyze_program,
    compose_program,
    run_program,
)
from collabcoder.analyzers.testcases import AssertSuite, IOSuite
from collabcoder.analyzers.verdict import Outcome, Verdict

# Runs programs against the task's tests; one verdict per program, in order.
RunPrograms = Callable[[Sequence[str]], Sequence[Verdict]]

# ---------------------------------------------------------------------------------------------
# MAGRPO
# ---------------------------------------------------------------------------------------------

LEVEL_NONE = 0  # main function missing (or without a return): gate 1 failed
LEVEL_DEFINITIONS = 1  # definitions passed, syntax failed
LEVEL_SYNTAX = 2  # syntax passed, not every test passed
LEVEL_TESTS = 3  # every test passed


@dataclass(frozen=True)
class MagrpoRewardWeights:
    """Weights of the leveled reward. Defaults give 4.0 at most with two agents, 2.1 with one.

    Level 1: aux defined (+0.4, optional: never a gate, and off with `score_aux_definition`),
    main defined (+0.6, gate). Level 2: syntax (+0.5, gate). Level 3: tests (+1.0 x pass
    fraction); then, only if at least one test passed and an aux function exists: main calls
    aux (+0.5) and, only when it does, main is not a thin wrapper (+1.0) and aux's result
    ignored (-0.5). The anti-wrapper bonus is nested under "calls aux" (as in the reference):
    otherwise a main that ignores aux entirely would earn it.
    """

    aux_defined: float = 0.4
    score_aux_definition: bool = True
    main_defined: float = 0.6
    syntax: float = 0.5
    tests: float = 1.0
    main_calls_aux: float = 0.5
    not_thin_wrapper: float = 1.0
    aux_result_ignored_penalty: float = 0.5  # subtracted

    def max_reward(self, num_agents: int = 2) -> float:
        base = self.main_defined + self.syntax + self.tests
        if num_agents < 2:
            return base  # no aux, so none of the aux terms: 0.6 + 0.5 + 1.0 = 2.1

        aux = self.aux_defined if self.score_aux_definition else 0.0
        return base + aux + self.main_calls_aux + self.not_thin_wrapper


@dataclass(frozen=True)
class RewardBreakdown:
    """Components of one MAGRPO reward; `total` is their sum, `reward` is None on infra errors."""

    aux_defined: float = 0.0
    main_defined: float = 0.0
    syntax: float = 0.0
    tests: float = 0.0
    main_calls_aux: float = 0.0
    not_thin_wrapper: float = 0.0
    aux_result_ignored: float = 0.0  # zero or negative
    level: int = LEVEL_NONE
    tests_passed: int = 0
    tests_total: int = 0
    infra_error: bool = False
    infra_message: str | None = None

    @property
    def total(self) -> float:
        return round(
            self.aux_defined
            + self.main_defined
            + self.syntax
            + self.tests
            + self.main_calls_aux
            + self.not_thin_wrapper
            + self.aux_result_ignored,
            10,
        )

    @property
    def reward(self) -> float | None:
        """The scalar to train on, or None when the sample must be dropped (infra error)."""
        return None if self.infra_error else self.total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "reward": self.reward}


def magrpo_reward(
    facts: ProgramFacts,
    verdict: Verdict | None,
    weights: MagrpoRewardWeights | None = None,
) -> RewardBreakdown:
    """The leveled reward of one aux + main program.

    `verdict` may be None when `facts.runnable` is False (no need to run a program that misses
    its main function or does not parse); it is required otherwise.
    """
    w = weights or MagrpoRewardWeights()
    aux = w.aux_defined if (w.score_aux_definition and facts.aux_defined) else 0.0
    if not facts.main_defined:
        return RewardBreakdown(aux_defined=aux, level=LEVEL_NONE)
    main = w.main_defined
    syntax_ok = facts.syntax_ok and (verdict is None or verdict.outcome is not Outcome.SYNTAX_ERROR)
    if not syntax_ok:
        return RewardBreakdown(aux_defined=aux, main_defined=main, level=LEVEL_DEFINITIONS)
    if verdict is None:
        raise ValueError(
            "magrpo_reward needs the sandbox verdict for a program that passed the definition "
            "and syntax gates (facts.runnable is True); run the tests first"
        )
    if verdict.is_infra_error:
        return RewardBreakdown(
            level=LEVEL_SYNTAX,
            tests_total=verdict.total,
            infra_error=True,
            infra_message=verdict.infra_error or "sandbox failure",
        )
    passed, total = verdict.passed_count, verdict.total
    tests = w.tests * verdict.pass_fraction
    calls = wrapper = ignored = 0.0
    if passed > 0 and facts.aux_found and facts.main_calls_aux:
        calls = w.main_calls_aux
        if not facts.main_is_thin_wrapper:
            wrapper = w.not_thin_wrapper
        if facts.aux_result_ignored:
            ignored = -w.aux_result_ignored_penalty
    return RewardBreakdown(
        aux_defined=aux,
        main_defined=main,
        syntax=w.syntax,
        tests=tests,
        main_calls_aux=calls,
        not_thin_wrapper=wrapper,
        aux_result_ignored=ignored,
        level=LEVEL_TESTS if verdict.all_passed else LEVEL_SYNTAX,
        tests_passed=passed,
        tests_total=total,
    )


@dataclass(frozen=True)
class ScoredProgram:
    program: str
    facts: ProgramFacts
    verdict: Verdict | None  # None when the gates failed and the program was not run
    breakdown: RewardBreakdown


def score_programs(
    prompt: str,
    codes: Sequence[tuple[str, str]],
    entry_point: str,
    run: RunPrograms,
    *,
    weights: MagrpoRewardWeights | None = None,
    aux_name: str = AUX_NAME,
    attempts: int = 1,
) -> list[ScoredProgram]:
    """Compose, analyze, run (only what passes the gates) and score (aux, main) code pairs.

    The one scorer of MAGRPO programs: training scores a group at once, `score_program` one.
    `run` gets the runnable programs together (one sandbox batch). Programs whose verdict is
    an infrastructure error are run again, up to `attempts` runs in all; what still fails is
    scored as an infra error (reward None), never as a model failure.
    """
    programs = [compose_program(prompt, aux, main) for aux, main in codes]
    facts = [analyze_program(aux, main, entry_point, aux_name=aux_name) for aux, main in codes]
    verdicts: list[Verdict | None] = [None] * len(codes)
    todo = [i for i, f in enumerate(facts) if f.runnable]
    for _ in range(attempts):
        if not todo:
            break
        results = list(run([programs[i] for i in todo]))
        for i, verdict in zip(todo, results, strict=True):
            verdicts[i] = verdict
        todo = [i for i, v in zip(todo, results, strict=True) if v.is_infra_error]
    return [
        ScoredProgram(p, f, v, magrpo_reward(f, v, weights))
        for p, f, v in zip(programs, facts, verdicts, strict=True)
    ]


def score_program(
    prompt: str,
    aux_code: str,
    main_code: str,
    suite: AssertSuite,
    *,
    sandbox: SandboxLike | None = None,
    weights: MagrpoRewardWeights | None = None,
    aux_name: str = AUX_NAME,
) -> ScoredProgram:
    """`score_programs` for one program, run with `sandbox` (default: the default sandbox,
    imported lazily)."""

    def run(programs: Sequence[str]) -> list[Verdict]:
        return [run_program(p, suite, sandbox) for p in programs]

    [scored] = score_programs(
        prompt, [(aux_code, main_code)], suite.entry_point, run, weights=weights, aux_name=aux_name
    )
    return scored


# ---------------------------------------------------------------------------------------------
# Code-agentic (stdin/stdout tests, a code-execution tool, multi-turn debugging)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeAgenticRewardWeights:
    """Correctness (all tests pass) + tool bonus + test-case bonus - debug penalty, scaled."""

    correctness: float = 1.0
    tool_bonus: float = 0.05  # the model ran code with the tool at least once
    test_case_bonus: float = 0.3  # x fraction of cases passed
    debug_penalty: float = 0.1  # per debug attempt beyond the first
    reward_scale: float = 1.0


@dataclass(frozen=True)
class CodeAgenticBreakdown:
    correctness: float = 0.0
    tool_bonus: float = 0.0
    test_case_bonus: float = 0.0
    debug_penalty: float = 0.0  # zero or negative
    reward_scale: float = 1.0
    tests_passed: int = 0
    tests_total: int = 0
    debug_attempts: int = 0
    infra_error: bool = False
    infra_message: str | None = None

    @property
    def total(self) -> float:
        raw = self.correctness + self.tool_bonus + self.test_case_bonus + self.debug_penalty
        return round(self.reward_scale * raw, 10)

    @property
    def reward(self) -> float | None:
        """The scalar to train on, or None when the sample must be dropped (infra error)."""
        return None if self.infra_error else self.total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "reward": self.reward}


def code_agentic_reward(
    verdict: Verdict,
    *,
    tool_calls: int,
    debug_attempts: int | None = None,
    weights: CodeAgenticRewardWeights | None = None,
) -> CodeAgenticBreakdown:
    """Reward of a final solution judged on its stdin/stdout cases.

    `tool_calls`: how many times the model ran code with the execution tool. `debug_attempts`:
    how many attempts it made (defaults to `tool_calls`); each one beyond the first costs
    `debug_penalty`. The total is not clipped: many attempts can make it negative.
    """
    w = weights or CodeAgenticRewardWeights()
    attempts = tool_calls if debug_attempts is None else debug_attempts
    if tool_calls < 0 or attempts < 0:
        raise ValueError(f"counts must be >= 0, got tool_calls={tool_calls}, attempts={attempts}")
    if verdict.is_infra_error:
        return CodeAgenticBreakdown(
            reward_scale=w.reward_scale,
            tests_total=verdict.total,
            debug_attempts=attempts,
            infra_error=True,
            infra_message=verdict.infra_error or "sandbox failure",
        )
    return CodeAgenticBreakdown(
        correctness=w.correctness if verdict.all_passed else 0.0,
        tool_bonus=w.tool_bonus if tool_calls > 0 else 0.0,
        test_case_bonus=w.test_case_bonus * verdict.pass_fraction,
        debug_penalty=-w.debug_penalty * max(0, attempts - 1),
        reward_scale=w.reward_scale,
        tests_passed=verdict.passed_count,
        tests_total=verdict.total,
        debug_attempts=attempts,
    )


def score_io_program(
    program: str,
    suite: IOSuite,
    *,
    tool_calls: int,
    debug_attempts: int | None = None,
    sandbox: SandboxLike | None = None,
    weights: CodeAgenticRewardWeights | None = None,
) -> tuple[Verdict, CodeAgenticBreakdown]:
    """Run a stdin/stdout program (default sandbox, imported lazily) and score it."""
    verdict = run_program(program, suite, sandbox)
    breakdown = code_agentic_reward(
        verdict, tool_calls=tool_calls, debug_attempts=debug_attempts, weights=weights
    )
    return verdict, breakdown
