"""Test suites the sandbox runs: assert-style (HumanEval's `check(candidate)`) and stdin/stdout.

`extract_assert_suite` turns a HumanEval-style test module into ordered steps so the sandbox can
report each assert on its own. Unlike the reference, multi-line asserts, loops of asserts and
helper code (imports, helper functions, local variables used by later asserts) are kept.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class TestStep:
    """One top-level statement of the body of `check(candidate)`."""

    source: str  # dedented source; refers to the function under test as `candidate`
    is_test: bool  # True: contains an assert (scored); False: setup (assignments, defs, imports)
    line: int  # 1-based line of the statement in the original test source


@dataclass(frozen=True)
class AssertSuite:
    """Assert-style tests of one problem.

    The sandbox runs `preamble` (module-level code of the test file outside `check`: imports,
    helpers, METADATA) in a namespace of its own, binds `candidate` to the program's
    `entry_point`, then runs `steps` in order in that namespace.
    """

    entry_point: str
    preamble: str
    steps: tuple[TestStep, ...]

    @property
    def tests(self) -> tuple[TestStep, ...]:
        return tuple(s for s in self.steps if s.is_test)

    def sliced(self, sandbox_slice: int | None) -> AssertSuite:
        """Keep the first N tests (N > 0), the last |N| (N < 0), or all (0/None).

        Setup steps are kept wherever they stand, so sliced tests still find their variables.
        """
        if not sandbox_slice:
            return self
        test_idx = [i for i, s in enumerate(self.steps) if s.is_test]
        keep = set(test_idx[:sandbox_slice] if sandbox_slice > 0 else test_idx[sandbox_slice:])
        steps = tuple(s for i, s in enumerate(self.steps) if not s.is_test or i in keep)
        return AssertSuite(self.entry_point, self.preamble, steps)


@dataclass(frozen=True)
class IOCase:
    """One stdin/stdout pair of the code-agentic format."""

    stdin: str
    expected_stdout: str


@dataclass(frozen=True)
class IOSuite:
    cases: tuple[IOCase, ...]

    def sliced(self, sandbox_slice: int | None) -> IOSuite:
        if not sandbox_slice:
            return self
        cases = self.cases[:sandbox_slice] if sandbox_slice > 0 else self.cases[sandbox_slice:]
        return IOSuite(cases)


def extract_assert_suite(test_source: str, entry_point: str) -> AssertSuite:
    """Split a HumanEval-style test module into a preamble and the ordered steps of `check`.

    A step is scored (`is_test`) when it contains an assert that depends on the candidate,
    directly or through a variable the check body set up; `assert True` lines and plain setup
    are kept as unscored steps so pass fractions are not inflated.
    """
    try:
        module = ast.parse(test_source)
    except SyntaxError as exc:
        raise ValueError(f"test source for {entry_point!r} does not parse: {exc}") from exc
    check = next(
        (n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None
    )
    if check is None:
        raise ValueError(f"test source for {entry_point!r} has no `def check(candidate):`")

    lines = test_source.splitlines(keepends=True)
    start = min([check.lineno, *(d.lineno for d in check.decorator_list)]) - 1
    end = check.end_lineno or check.lineno
    preamble = "".join(lines[:start] + lines[end:])

    param = check.args.args[0].arg if check.args.args else "candidate"
    dependent = {param}  # names whose value depends on the candidate or on the check's setup
    steps: list[TestStep] = []
    if param != "candidate":  # the sandbox binds the function under test as `candidate`
        steps.append(TestStep(f"{param} = candidate\n", is_test=False, line=check.lineno))
    for stmt in check.body:
        source = textwrap.dedent(ast.get_source_segment(test_source, stmt, padded=True) or "")
        names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        has_assert = any(isinstance(n, ast.Assert) for n in ast.walk(stmt))
        bare_call = isinstance(stmt, ast.Expr) and param in names
        is_test = (has_assert and bool(names & dependent)) or bare_call
        if not is_test:
            dependent |= {
                n.id
                for n in ast.walk(stmt)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
        steps.append(TestStep(source=source, is_test=is_test, line=stmt.lineno))
    return AssertSuite(entry_point=entry_point, preamble=preamble, steps=tuple(steps))
