"""The turn protocol's feedback: the next-turn prompt of each agent, in a named mode.

Multi-turn training and the language server (its team of agents, its loop's `feedback_format`)
call `render_next_prompts` / `feedback_text`, so a model trained on, say, `level_feedback` turns
is served exactly the text it was trained on. Every text is a pure function of its inputs (no
clocks, no randomness, no dict-order surprises).

Modes (external feedback between turns):

- `level_feedback`: definitions found/missing, syntax with line/column, tests passed p/t with
  each failing case (its assert, expected vs actual or the error), aux usage, a thin-wrapper
  warning, and a debugging hint per failure category.
- `level_passed`: one pass signal per level (implementation, syntax, tests summary, aux usage).
- `passed`: "All levels passed" or "Not all levels passed".
- `plain`: no signal at all.
- `expert_edits`: edits proposed by an expert model (`prompts.expert_messages` asks for them,
  `replies.parse_expert_reply` reads them; calling the model is the backends' job).

Options: `original_prompt` repeats the agent's first-turn prompt, `previous_response` shows
the agent its own previous code, `sandbox_slice` keeps the first N tests (N > 0), the last |N|
(N < 0) or all (0/None) in what the analysis modes report. As in the reference,
`sandbox_slice` has no effect on `expert_edits` (nor on `plain`, which reports no tests).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import Enum

from collabcoder.analyzers import debug_hints
from collabcoder.analyzers.protocol.program import (
    AUX_NAME,
    AUX_ROLE,
    CONTEXT_ROLE,
    MAIN_ROLE,
    FeedbackTask,
    ProgramFacts,
    SandboxLike,
    analyze_program,
    compose_layout,
    compose_program,
    function_of,
    roles,
    run_program,
)
from collabcoder.analyzers.protocol.prompts import (
    closing_text,
    initial_prompts,
    previous_code_text,
)
from collabcoder.analyzers.protocol.replies import ExpertEdits
from collabcoder.analyzers.verdict import Outcome, SyntaxErrorInfo, TestResult, Verdict


class FeedbackMode(str, Enum):
    LEVEL_FEEDBACK = "level_feedback"
    LEVEL_PASSED = "level_passed"
    PASSED = "passed"
    PLAIN = "plain"
    EXPERT_EDITS = "expert_edits"


# Modes whose text reports test results: the ones `sandbox_slice` applies to.
ANALYSIS_MODES = frozenset(
    {FeedbackMode.LEVEL_FEEDBACK, FeedbackMode.LEVEL_PASSED, FeedbackMode.PASSED}
)

ALL_LEVELS_PASSED = "All levels passed"
NOT_ALL_LEVELS_PASSED = "Not all levels passed"


def parse_mode(mode: str | FeedbackMode) -> FeedbackMode:
    """The mode named by a config string; a helpful error for unknown names."""
    if isinstance(mode, FeedbackMode):
        return mode
    try:
        return FeedbackMode(str(mode).strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in FeedbackMode)
        raise ValueError(f"unknown feedback mode {mode!r}; expected one of: {names}") from None



@dataclass(frozen=True)
class FeedbackOptions:
    num_agents: int = 2  # 2: aux + main; 1: main only
    original_prompt: bool = True  # repeat the first-turn prompt in the next-turn prompt
    previous_response: bool = True  # show the agent its own previous code
    sandbox_slice: int | None = None  # N > 0 first N tests, N < 0 last |N|, 0/None all
    max_value_chars: int = 200  # longer expected/actual values and messages are cut

    def __post_init__(self) -> None:
        if self.num_agents not in (1, 2):
            raise ValueError(f"num_agents must be 1 or 2, got {self.num_agents}")



# ---------------------------------------------------------------------------------------------
# Verdict helpers
# ---------------------------------------------------------------------------------------------


def slice_verdict(verdict: Verdict, sandbox_slice: int | None) -> Verdict:
    """Keep the first N test results (N > 0), the last |N| (N < 0), or all (0/None).

    Idempotent, so it is safe on a verdict that was already run on a sliced suite. The outcome
    is recomputed from the kept tests (PASSED if they all passed, else the first failure's).
    """
    if not sandbox_slice or not verdict.tests:
        return verdict
    n = sandbox_slice
    tests = verdict.tests[:n] if n > 0 else verdict.tests[n:]
    if len(tests) == len(verdict.tests):
        return verdict
    outcome: Outcome
    if verdict.outcome in (Outcome.INFRA_ERROR, Outcome.SYNTAX_ERROR):
        outcome = verdict.outcome
    else:
        failed = [t for t in tests if not t.passed]
        outcome = failed[0].outcome if failed else Outcome.PASSED
    return dataclasses.replace(verdict, tests=tests, outcome=outcome)


def all_levels_passed(facts: ProgramFacts, verdict: Verdict | None) -> bool:
    """Main defined, syntax OK and every (sliced) test passed: the `passed` mode's signal."""
    return (
        facts.main_defined
        and facts.syntax_ok
        and verdict is not None
        and not verdict.is_infra_error
        and verdict.all_passed
    )


def run_feedback_tests(
    task: FeedbackTask,
    aux_code: str,
    main_code: str,
    options: FeedbackOptions | None = None,
    *,
    sandbox: SandboxLike | None = None,
) -> Verdict:
    """Run the task's sandbox tests, sliced by `options.sandbox_slice`, on the composed program.

    Uses the default sandbox when none is given (imported lazily).
    """
    opts = options or FeedbackOptions()
    if task.suite is None:
        raise ValueError(f"task {task.task_id or task.entry_point!r} has no test suite to run")
    aux = aux_code if opts.num_agents >= 2 else ""
    program = compose_program(task.prompt, aux, main_code)
    return run_program(program, task.suite.sliced(opts.sandbox_slice), sandbox)


# ---------------------------------------------------------------------------------------------
# Text pieces
# ---------------------------------------------------------------------------------------------


def _short(text: str, limit: int) -> str:
    text = text if "\n" not in text.rstrip("\n") else repr(text)
    text = text.rstrip("\n")
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


class _Context:
    """Everything one role's feedback needs, computed once."""

    def __init__(
        self,
        role: str,
        task: FeedbackTask,
        aux_code: str,
        main_code: str,
        verdict: Verdict | None,
        facts: ProgramFacts,
        options: FeedbackOptions,
    ) -> None:
        self.role = role
        self.task = task
        self.aux_code = aux_code
        self.main_code = main_code
        self.verdict = verdict
        self.facts = facts
        self.options = options
        self.single = options.num_agents < 2
        self.entry = task.entry_point
        self.layout = compose_layout(task.prompt, aux_code, main_code)

    def code_name(self, role: str) -> str:
        if role == CONTEXT_ROLE:
            return "the code from the task"
        if self.single or role == self.role:
            return "your code"
        return "the aux code" if role == AUX_ROLE else "the main code"

    def where(self, line: int | None) -> str:
        located = self.layout.locate(line)
        if located is None:
            return f" (line {line} of the program)" if line else ""
        role, rel = located
        return f" (line {rel} of {self.code_name(role)})"


def _definition_state(found: bool, returns: bool) -> str:
    if not found:
        return "missing"
    return "defined" if returns else "defined, but it never returns a value"


def _definition_lines(ctx: _Context) -> list[str]:
    f = ctx.facts
    main_line = f"- `{ctx.entry}`: {_definition_state(f.main_found, f.main_returns)}"
    if ctx.single:
        return [main_line]
    aux_line = f"- `{AUX_NAME}`: {_definition_state(f.aux_found, f.aux_returns)}"
    if ctx.role == AUX_ROLE:
        return [aux_line + " (your function)", main_line + " (the main agent's function)"]
    return [main_line + " (your function)", aux_line + " (the helper agent's function)"]


def _syntax_error_text(info: SyntaxErrorInfo, where: str) -> list[str]:
    pos = ""
    if info.line is not None:
        pos = f" at line {info.line}" + (f", column {info.column}" if info.column else "")
    lines = [f"- Syntax: error in {where}{pos}: {info.message}"]
    if info.text and info.text.strip():
        lines.append(f"    {info.text.strip()}")
    return lines


def _syntax_lines(ctx: _Context) -> list[str]:
    f = ctx.facts
    out: list[str] = []
    if f.aux_syntax_error is not None:
        out += _syntax_error_text(f.aux_syntax_error, ctx.code_name(AUX_ROLE))
    if f.main_syntax_error is not None:
        out += _syntax_error_text(f.main_syntax_error, ctx.code_name(MAIN_ROLE))
    if out:
        return out
    if not f.syntax_ok:
        return [f"- Syntax: not checked (no code for `{ctx.entry}`)"]
    v = ctx.verdict
    if v is not None and v.syntax_error is not None:
        located = ctx.layout.locate(v.syntax_error.line)
        where = ctx.code_name(located[0]) if located else "the program"
        info = v.syntax_error
        if located:
            info = dataclasses.replace(info, line=located[1])
        return _syntax_error_text(info, where)
    return ["- Syntax: OK"]


def _is_assert(test: TestResult) -> bool:
    src = test.test.lstrip()
    return src.startswith("assert") or "candidate" in src


def _test_source(ctx: _Context, test: TestResult) -> str:
    if _is_assert(test):
        src = re.sub(r"\bcandidate\b", ctx.entry, test.test.strip("\n"))
        return src.replace("\n", "\n      ")
    # stdin/stdout case: repr keeps newlines and trailing spaces visible
    return f"input {_short(repr(test.test), ctx.options.max_value_chars)}"


def _failure_detail(ctx: _Context, test: TestResult) -> str:
    limit = ctx.options.max_value_chars
    message = f": {_short(test.message, limit)}" if test.message else ""
    outcome = test.outcome
    if outcome is Outcome.WRONG_ANSWER:
        # Assert tests carry reprs already ("5", "actual < 3", "a truthy value"); stdout does not.
        show = (lambda v: v) if _is_assert(test) else repr
        bits = []
        if test.expected is not None:
            bits.append(f"expected {_short(show(test.expected), limit)}")
        if test.actual is not None:
            bits.append(f"got {_short(show(test.actual), limit)}")
        text = "Wrong answer: " + (", ".join(bits) if bits else "the assertion failed")
        if test.message:
            text += f" ({_short(test.message, limit)})" if bits else message
        return text
    if outcome is Outcome.TIMEOUT:
        return "Timeout: no result within the time limit"
    if outcome is Outcome.MEMORY_EXCEEDED:
        return "Memory limit exceeded"
    if outcome is Outcome.SYNTAX_ERROR:
        return "SyntaxError" + message
    if outcome is Outcome.INFRA_ERROR:
        return "Not run: the test sandbox failed"
    return f"{test.error_type or 'Error'}{message}{ctx.where(test.line)}"


def _load_failure(ctx: _Context, verdict: Verdict) -> str:
    """Why a verdict with no test results never reached its tests."""
    limit = ctx.options.max_value_chars
    what = {
        Outcome.TIMEOUT: "timed out",
        Outcome.MEMORY_EXCEEDED: "ran out of memory",
    }.get(verdict.outcome, "failed")
    etype, message, line = debug_hints.load_error(verdict)
    if message:
        detail = f"{etype or 'Error'}: {_short(message, limit)}{ctx.where(line)}"
    else:
        last = (ln.strip() for ln in reversed(verdict.stderr.splitlines()) if ln.strip())
        detail = _short(next(last, etype or ""), limit)
    return f"the program {what} before its tests" + (f" ({detail})" if detail else "")


def _test_lines(ctx: _Context) -> tuple[list[str], list[str]]:
    """Lines about the tests and the hint categories of the failures, in order."""
    v, f = ctx.verdict, ctx.facts
    if v is None:
        if not f.main_defined:
            return [f"- Tests: not run (`{ctx.entry}` is missing)"], []
        if not f.syntax_ok:
            return ["- Tests: not run (syntax error)"], []
        return ["- Tests: not run"], []
    if v.is_infra_error:
        return ["- Tests: not run: the test sandbox failed (not a problem in the code)"], []
    if not v.tests:
        if v.outcome is Outcome.PASSED:
            return ["- Tests: no tests to run"], []
        if v.outcome is Outcome.SYNTAX_ERROR or v.syntax_error is not None:
            return ["- Tests: not run (syntax error)"], [debug_hints.SYNTAX]
        return [f"- Tests: none ran: {_load_failure(ctx, v)}"], [debug_hints.categorize(v)]
    lines = [f"- Tests: {v.passed_count}/{v.total} passed"]
    categories: list[str] = []
    for test in v.failures():
        lines.append(f"  Failed: {_test_source(ctx, test)}")
        lines.append(f"    {_failure_detail(ctx, test)}")
        categories.append(debug_hints.categorize(test))
    return lines, categories


def _aux_usage(ctx: _Context) -> str:
    f = ctx.facts
    entry = ctx.entry
    if not f.main_found:
        return f"not checked (`{entry}` is missing)"
    if f.main_syntax_error is not None:
        return "not checked (syntax error in the main code)"
    if f.main_redefines_aux:
        return f"the main code defines its own `{AUX_NAME}`, which replaces the helper agent's"
    if not f.main_calls_aux:
        return f"`{entry}` does not call `{AUX_NAME}`"
    if not f.aux_found:
        return f"`{entry}` calls `{AUX_NAME}`, but `{AUX_NAME}` is missing"
    if f.aux_result_ignored:
        where = ", ".join(str(n) for n in f.ignored_aux_calls)
        suffix = f" (line {where} of {ctx.code_name(MAIN_ROLE)})" if where else ""
        return f"`{entry}` calls `{AUX_NAME}` but ignores its result{suffix}"
    return f"`{entry}` calls `{AUX_NAME}` and uses its result"


def _wrapper_warning(ctx: _Context) -> list[str]:
    if ctx.single or not ctx.facts.main_is_thin_wrapper:
        return []
    return [
        f"- Warning: `{ctx.entry}` only forwards its arguments to `{AUX_NAME}`; do part of the "
        f"work in `{ctx.entry}` itself"
    ]


def _level_feedback(ctx: _Context) -> str:
    f = ctx.facts
    lines = ["Feedback on the previous attempt:", *_definition_lines(ctx), *_syntax_lines(ctx)]
    test_lines, categories = _test_lines(ctx)
    lines += test_lines
    if not ctx.single:
        lines.append(f"- Use of `{AUX_NAME}`: {_aux_usage(ctx)}")
        lines += _wrapper_warning(ctx)
    hints: list[str] = []
    own_found = f.aux_found if ctx.role == AUX_ROLE else f.main_found
    if not own_found:
        hints.append(debug_hints.MISSING_FUNCTION)
    if f.syntax_error is not None:
        hints.append(debug_hints.SYNTAX)
    hints += categories
    hints = list(dict.fromkeys(h for h in hints if h != debug_hints.PASSED))
    if hints:
        lines.append("Hints:")
        lines += [f"- {debug_hints.label(h)}: {debug_hints.suggestion(h)}" for h in hints]
    return "\n".join(lines)


def _tests_signal(verdict: Verdict | None) -> str:
    if verdict is None:
        return "not run"
    if verdict.is_infra_error:
        return "not run (the test sandbox failed)"
    if not verdict.tests:
        if verdict.outcome is Outcome.PASSED:
            return "no tests to run"
        return "none ran (the program failed before its tests)"
    if verdict.passed_count == verdict.total:
        return f"passed all {verdict.total}"
    if verdict.passed_count == 0:
        return f"passed none of {verdict.total}"
    return f"passed {verdict.passed_count}/{verdict.total}"


def _level_passed(ctx: _Context) -> str:
    f = ctx.facts
    own = f.aux_defined if ctx.role == AUX_ROLE else f.main_defined
    syntax_ok = f.syntax_ok and (ctx.verdict is None or ctx.verdict.syntax_error is None)
    lines = [
        "Signals:",
        f"- Implementation: {'found' if own else 'missing'}",
        f"- Syntax: {'correct' if syntax_ok else 'incorrect'}",
        f"- Tests: {_tests_signal(ctx.verdict)}",
    ]
    if not ctx.single:
        lines.append(f"- Use of `{AUX_NAME}`: {_aux_usage(ctx)}")
    return "\n".join(lines)


def _expert(ctx: _Context, expert: ExpertEdits | None) -> str:
    if expert is None:
        raise ValueError(
            "mode 'expert_edits' needs the expert's edits: pass "
            "expert=parse_expert_reply(reply) (build the request with expert_messages)"
        )
    edits = expert.for_role(ctx.role).strip()
    if not edits:
        return "A reviewer looked at the previous attempt and proposed no edits."
    return "Edits proposed by a reviewer:\n" + edits


def _previous(ctx: _Context) -> str:
    code = ctx.aux_code if ctx.role == AUX_ROLE else ctx.main_code
    return previous_code_text(function_of(ctx.role, ctx.task), code)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _prepare(
    mode: str | FeedbackMode,
    task: FeedbackTask,
    aux_code: str,
    main_code: str,
    verdict: Verdict | None,
    facts: ProgramFacts | None,
    options: FeedbackOptions | None,
) -> tuple[FeedbackMode, FeedbackOptions, str, Verdict | None, ProgramFacts]:
    m = parse_mode(mode)
    opts = options or FeedbackOptions()
    aux = aux_code if opts.num_agents >= 2 else ""
    if facts is None:
        facts = analyze_program(aux, main_code, task.entry_point)
    if verdict is not None and m in ANALYSIS_MODES:
        verdict = slice_verdict(verdict, opts.sandbox_slice)
    return m, opts, aux, verdict, facts


def _feedback(m: FeedbackMode, ctx: _Context, expert: ExpertEdits | None) -> str:
    if m is FeedbackMode.LEVEL_FEEDBACK:
        return _level_feedback(ctx)
    if m is FeedbackMode.LEVEL_PASSED:
        return _level_passed(ctx)
    if m is FeedbackMode.PASSED:
        ok = all_levels_passed(ctx.facts, ctx.verdict)
        return f"Signal: {ALL_LEVELS_PASSED if ok else NOT_ALL_LEVELS_PASSED}"
    if m is FeedbackMode.EXPERT_EDITS:
        return _expert(ctx, expert)
    return ""


def _check_role(role: str, num_agents: int) -> None:
    if role not in roles(num_agents):
        raise ValueError(
            f"unknown role {role!r} for {num_agents} agent(s); expected one of "
            f"{', '.join(roles(num_agents))}"
        )


def feedback_text(
    mode: str | FeedbackMode,
    role: str,
    task: FeedbackTask,
    aux_code: str,
    main_code: str,
    verdict: Verdict | None = None,
    facts: ProgramFacts | None = None,
    options: FeedbackOptions | None = None,
    *,
    expert: ExpertEdits | None = None,
) -> str:
    """Only the feedback block one role gets (no original prompt, no previous code, no closing
    instruction); "" for `plain`. `facts` are computed from the code when not given."""
    m, opts, aux, v, f = _prepare(mode, task, aux_code, main_code, verdict, facts, options)
    _check_role(role, opts.num_agents)
    return _feedback(m, _Context(role, task, aux, main_code, v, f, opts), expert)


def render_next_prompts(
    mode: str | FeedbackMode,
    task: FeedbackTask,
    aux_code: str,
    main_code: str,
    verdict: Verdict | None = None,
    facts: ProgramFacts | None = None,
    options: FeedbackOptions | None = None,
    *,
    expert: ExpertEdits | None = None,
) -> dict[str, str]:
    """The next-turn prompt of each role ('aux' and 'main'; only 'main' for one agent).

    Each prompt is: the first-turn prompt (option `original_prompt`), the agent's own previous
    code (option `previous_response`), the mode's feedback block, and a closing instruction.
    `aux_code`/`main_code` are the cleaned previous code (`replies.extract_function`). `verdict` is the
    sandbox's verdict on the composed program (needed by the analysis modes to report tests;
    sliced here by `sandbox_slice`), `expert` the parsed reply of the expert (`expert_edits`).
    """
    m, opts, aux, v, f = _prepare(mode, task, aux_code, main_code, verdict, facts, options)
    first = initial_prompts(task, opts.num_agents) if opts.original_prompt else {}
    out: dict[str, str] = {}
    for role in roles(opts.num_agents):
        ctx = _Context(role, task, aux, main_code, v, f, opts)
        parts: list[str] = []
        if opts.original_prompt:
            parts.append(first[role])
        if opts.previous_response:
            parts.append(_previous(ctx))
        block = _feedback(m, ctx, expert)
        if block:
            parts.append(block)
        if_needed = m in (FeedbackMode.PASSED, FeedbackMode.PLAIN)
        parts.append(closing_text(function_of(role, task), if_needed=if_needed))
        out[role] = "\n\n".join(parts)
    return out
