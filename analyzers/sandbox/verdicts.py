"""The zygote's reports -> Verdicts, on the client side.

A run's result lines count only when they carry its nonce (printed text cannot fake them), and
an assert run passes only with its final "done" line: one that ended early never does. A report
we cannot read is an INFRA_ERROR verdict (ours to fix), never the program's fault.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from typing import Any

from collabcoder.analyzers.sandbox.io_compare import outputs_match
from collabcoder.analyzers.sandbox.jobs import AssertJob, IOJob
from collabcoder.analyzers.sandbox.limits import SandboxLimits
from collabcoder.analyzers.testcases import AssertSuite, IOCase, IOSuite
from collabcoder.analyzers.verdict import Outcome, SyntaxErrorInfo, TestResult, Verdict

_MB = 1024 * 1024
_MAX_TEST_TEXT = 2000
_CHILD_OUTCOMES = {"passed", "wrong_answer", "runtime_error", "memory_exceeded"}

Raw = dict[str, Any]  # one answer of the zygote: {"runs": [...]} or {"error": "..."}


def to_verdict(job: AssertJob | IOJob, limits: SandboxLimits, raw: Raw) -> Verdict:
    try:
        if raw.get("error") or (not raw.get("runs") and isinstance(job, AssertJob)):
            return _infra_verdict(str(raw.get("error") or "no run was reported"))
        if isinstance(job, AssertJob):
            return _assert_verdict(job.suite, limits, raw["runs"][0])
        return _io_verdict(job.suite, limits, raw["runs"])
    except Exception as e:  # malformed report: ours to fix, never the program's fault
        return _infra_verdict(f"could not read the sandbox report: {e!r}")


def _infra_verdict(message: str) -> Verdict:
    return Verdict(outcome=Outcome.INFRA_ERROR, infra_error=message)


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _i(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _f(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _messages(run: Raw) -> list[Raw]:
    """The child's result lines that carry this run's nonce; anything else is not ours."""
    nonce = run.get("nonce")
    msgs = []
    for line in str(run.get("res", "")).split("\n"):
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if isinstance(m, dict) and nonce and m.pop("n", None) == nonce:
            msgs.append(m)
    return msgs


def _infra_message(run: Raw) -> str | None:
    # Only an "infra" report sent before confinement finished counts: the program runs after
    # confinement, so one it forges comes too late.
    for m in run["msgs"]:
        if m.get("t") == "confined":
            return None
        if m.get("t") == "infra":
            return _s(m.get("message")) or "the child could not be confined"
    return None


def _ended_early(run: Raw, limits: SandboxLimits) -> tuple[Outcome, str]:
    """Why a run ended without its final report."""
    sig = _i(run.get("sig"))
    if run.get("timed_out"):
        return Outcome.TIMEOUT, f"timed out after {limits.timeout_s:g} s"
    cpu = limits.effective_cpu_s
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and _f(run.get("cpu_s")) >= cpu - 0.05):
        return Outcome.TIMEOUT, f"CPU time limit of {cpu} s exceeded"
    big = _f(run.get("maxrss_kb")) * 1024 >= 0.5 * limits.memory_mb * _MB
    crash = sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGKILL)
    if "MemoryError" in str(run.get("stderr", ""))[-4000:] or (crash and big):
        return Outcome.MEMORY_EXCEEDED, f"memory limit of {limits.memory_mb} MB exceeded"
    if sig:
        return Outcome.RUNTIME_ERROR, f"killed by signal {signal.Signals(sig).name}"
    code = _i(run.get("code"))
    return (
        Outcome.RUNTIME_ERROR,
        f"the process exited with status {code} before reporting its results",
    )


def _extra(runs: Sequence[Raw]) -> dict[str, Any]:
    return {
        "cpu_s": sum(_f(r.get("cpu_s")) for r in runs),
        "max_rss_kb": max((_i(r.get("maxrss_kb")) or 0 for r in runs), default=0),
        "exit_code": _i(runs[-1].get("code")) if runs else None,
        "signal": _i(runs[-1].get("sig")) if runs else None,
    }


def _child_outcome(v: Any) -> Outcome:
    return Outcome(v) if v in _CHILD_OUTCOMES else Outcome.RUNTIME_ERROR


def _common(run: Raw) -> dict[str, Any]:
    return {
        "stdout": str(run.get("stdout", "")),
        "stderr": str(run.get("stderr", "")),
        "duration_s": _f(run.get("wall_s")),
    }


def _assert_verdict(suite: AssertSuite, limits: SandboxLimits, run: Raw) -> Verdict:
    msgs = run["msgs"] = _messages(run)
    common = _common(run)
    extra = _extra([run])
    infra = _infra_message(run)
    if infra is not None:
        return Verdict(outcome=Outcome.INFRA_ERROR, infra_error=infra, **common, extra=extra)
    kinds = {m.get("t") for m in msgs}
    first = {m.get("t"): m for m in reversed(msgs)}
    if "syntax" in kinds and "loaded" not in kinds:
        m = first["syntax"]
        info = SyntaxErrorInfo(_s(m.get("message")) or "invalid syntax", _i(m.get("line")),
                               _i(m.get("col")), _s(m.get("text")))  # fmt: skip
        return Verdict(outcome=Outcome.SYNTAX_ERROR, syntax_error=info, **common, extra=extra)
    if "loaded" not in kinds:
        if "load_error" in kinds:
            m = first["load_error"]
            err = {"error_type": _s(m.get("error_type")), "message": _s(m.get("message")),
                   "line": _i(m.get("line"))}  # fmt: skip
            mem = err["error_type"] == "MemoryError"
            outcome = Outcome.MEMORY_EXCEEDED if mem else Outcome.RUNTIME_ERROR
        else:
            outcome, message = _ended_early(run, limits)
            err = {"error_type": None, "message": message, "line": None}
        return Verdict(outcome=outcome, **common, extra={**extra, "error": err})

    reported = {m.get("i"): m for m in msgs if m.get("t") == "test"}
    ended = None if "done" in kinds else _ended_early(run, limits)
    tests: list[TestResult] = []
    missing_seen = False
    for n, (i, step) in enumerate((i, s) for i, s in enumerate(suite.steps) if s.is_test):
        r = reported.get(i)
        if r is not None:
            tests.append(TestResult(
                index=n, test=step.source, outcome=_child_outcome(r.get("o")),
                expected=_s(r.get("expected")), actual=_s(r.get("actual")),
                error_type=_s(r.get("error_type")), message=_s(r.get("message")),
                line=_i(r.get("line")), duration_s=_f(r.get("dur")),
            ))  # fmt: skip
            continue
        outcome, message = ended or (Outcome.RUNTIME_ERROR, "no result was reported")
        tests.append(TestResult(index=n, test=step.source, outcome=outcome,
                                message=f"not run: {message}" if missing_seen else message))  # fmt: skip
        missing_seen = True
    failures = [t.outcome for t in tests if not t.passed]
    if ended is not None and not failures:
        failures = [ended[0]]  # every test passed, yet the run never said it was done
    outcome = failures[0] if failures else Outcome.PASSED
    return Verdict(outcome=outcome, tests=tuple(tests), **common, extra=extra)


def _io_verdict(suite: IOSuite, limits: SandboxLimits, runs: list[Raw]) -> Verdict:
    for run in runs:
        run["msgs"] = _messages(run)
        infra = _infra_message(run)
        if infra is not None:
            return Verdict(outcome=Outcome.INFRA_ERROR, infra_error=infra, **_common(run))
    if runs:
        syntax = [m for m in runs[0]["msgs"] if m.get("t") == "syntax"]
        if syntax:
            m = syntax[0]
            info = SyntaxErrorInfo(_s(m.get("message")) or "invalid syntax", _i(m.get("line")),
                                   _i(m.get("col")), _s(m.get("text")))  # fmt: skip
            return Verdict(outcome=Outcome.SYNTAX_ERROR, syntax_error=info, **_common(runs[0]),
                           extra=_extra(runs))  # fmt: skip
    tests: list[TestResult] = []
    for n, case in enumerate(suite.cases):
        stdin = (
            case.stdin if len(case.stdin) <= _MAX_TEST_TEXT else case.stdin[:_MAX_TEST_TEXT] + "..."
        )
        if n < len(runs):
            tests.append(_io_case(n, stdin, case, runs[n], limits))
        else:  # the zygote stops after a timeout: later cases would time out too
            prev = tests[-1] if tests else None
            outcome = prev.outcome if prev else Outcome.INFRA_ERROR
            tests.append(TestResult(index=n, test=stdin, outcome=outcome, expected=case.expected_stdout,
                                    message="not run: an earlier case timed out"))  # fmt: skip
    failing = [i for i, t in enumerate(tests) if not t.passed]
    outcome = tests[failing[0]].outcome if failing else Outcome.PASSED
    shown = runs[min(failing[0], len(runs) - 1)] if failing and runs else (runs[-1] if runs else {})
    if any(t.outcome is Outcome.INFRA_ERROR for t in tests):
        return _infra_verdict("the sandbox reported no runs")
    return Verdict(outcome=outcome, tests=tuple(tests), **_common(shown), extra=_extra(runs))


def _io_case(n: int, stdin: str, case: IOCase, run: Raw, limits: SandboxLimits) -> TestResult:
    stdout = str(run.get("stdout", ""))
    exits = [m for m in run["msgs"] if m.get("t") == "io_exit"]
    base: dict[str, Any] = {"index": n, "test": stdin, "expected": case.expected_stdout,
                            "actual": stdout, "duration_s": _f(run.get("wall_s"))}  # fmt: skip
    if exits:
        m = exits[0]
        error = m.get("error")
        if isinstance(error, dict):
            mem = error.get("error_type") == "MemoryError"
            return TestResult(outcome=Outcome.MEMORY_EXCEEDED if mem else Outcome.RUNTIME_ERROR,
                              error_type=_s(error.get("error_type")), message=_s(error.get("message")),
                              line=_i(error.get("line")), **base)  # fmt: skip
        if _i(m.get("code")):
            return TestResult(outcome=Outcome.RUNTIME_ERROR, error_type="SystemExit",
                              message=f"exit status {m.get('code')}", **base)  # fmt: skip
    elif not (run.get("code") == 0 and run.get("sig") is None and not run.get("timed_out")):
        outcome, message = _ended_early(run, limits)
        return TestResult(outcome=outcome, message=message, **base)
    # Finished normally (or left by os._exit(0), a legitimate way for a script to end).
    if outputs_match(case.expected_stdout, stdout):
        return TestResult(outcome=Outcome.PASSED, **base)
    note = " (stdout was truncated)" if run.get("out_trunc") else ""
    return TestResult(
        outcome=Outcome.WRONG_ANSWER,
        message=f"stdout differs from the expected output{note}",
        **base,
    )
