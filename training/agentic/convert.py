"""Function-style tasks (HumanEval, CoopHumanEval) -> stdin/stdout code-agentic rows.

The format (also in docs/code_agentic.md, "Converter"). One test case is one call of the
task's function `f`:

* stdin: the call's positional arguments, one per line, each written as a Python literal
  (`repr`), so a line is read back with `ast.literal_eval(line)`;
* stdout: `repr(f(*args))` on one line. The sandbox's stdout rule compares numbers with a
  fraction at a relative tolerance of 1e-6, so float results need no rounding.

Cases come from the task's asserts that call the function with constant arguments:
`assert f(args) == value` (either side), `assert f(args)` (-> `True`), `assert not f(args)`
(-> `False`), `assert f(args) is True/False/None`, and `assert abs(f(args) - value) < tol`
(-> `value`). "Constant" means literals and arithmetic on them (`2.0 / 3.0`, `"ab" * 3`);
asserts on computed inputs (loops, random inputs, helper results) are left out, and a task
with no usable assert is skipped and named in the result.

The converted reference solution is the task's prompt + canonical solution + this driver:

    if __name__ == "__main__":
        import ast, sys
        args = [ast.literal_eval(line) for line in sys.stdin.read().splitlines() if line.strip()]
        print(repr(f(*args)))
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collabcoder.training.agentic.prompts import ROW_PROMPT, converted_question
from collabcoder.training.data.tasks import Task

# Node types an expected value or argument may contain: constants and arithmetic on them.
_CONSTANT_NODES = (
    ast.Expression,
    ast.Constant,
    ast.UnaryOp,
    ast.BinOp,
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
    ast.Load,
    ast.operator,
    ast.unaryop,
)
_NOT_EVALUABLE = object()


def driver(entry_point: str) -> str:
    """The `__main__` block that turns a function into a stdin/stdout program."""
    return (
        '\n\nif __name__ == "__main__":\n'
        "    import ast\n"
        "    import sys\n\n"
        "    _args = [ast.literal_eval(line) for line in sys.stdin.read().splitlines()"
        " if line.strip()]\n"
        f"    print(repr({entry_point}(*_args)))\n"
    )


def encode_args(args: Iterable[Any]) -> str:
    """stdin of one call: one `repr` per line."""
    return "".join(f"{a!r}\n" for a in args)


def _constant(node: ast.expr) -> Any:
    """The value of a constant expression, or `_NOT_EVALUABLE`."""
    tree = ast.Expression(node)
    if not all(isinstance(n, _CONSTANT_NODES) for n in ast.walk(tree)):
        return _NOT_EVALUABLE
    try:  # only constants and operators (checked above): nothing to look up or call
        return eval(compile(tree, "<case>", "eval"), {"__builtins__": {}})
    except Exception:  # e.g. 1/0 in a test meant to raise
        return _NOT_EVALUABLE


def _call_args(node: ast.expr, fn: str) -> list[Any] | None:
    """Arguments of `fn(...)` when `node` is such a call with constant positional arguments."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == fn):
        return None
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        return None
    values = [_constant(a) for a in node.args]
    return None if any(v is _NOT_EVALUABLE for v in values) else values


def _case(test: ast.expr, fn: str) -> tuple[list[Any], Any] | None:
    """(arguments, expected value) of one assert's test expression, or None."""
    if (args := _call_args(test, fn)) is not None:
        return args, True
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        if (args := _call_args(test.operand, fn)) is not None:
            return args, False
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, (ast.Eq, ast.Is)):
            for call, other in ((left, right), (right, left)):
                args = _call_args(call, fn)
                value = _constant(other)
                if args is not None and value is not _NOT_EVALUABLE:
                    if isinstance(op, ast.Is) and value not in (True, False, None):
                        return None
                    return args, value
        if isinstance(op, (ast.Lt, ast.LtE)):  # abs(f(args) - value) < tol
            if (
                isinstance(left, ast.Call)
                and isinstance(left.func, ast.Name)
                and left.func.id == "abs"
                and len(left.args) == 1
                and isinstance(left.args[0], ast.BinOp)
                and isinstance(left.args[0].op, ast.Sub)
            ):
                diff = left.args[0]
                args = _call_args(diff.left, fn)
                value = _constant(diff.right)
                if args is not None and isinstance(value, (int, float)):
                    return args, value
    return None


def extract_cases(test_source: str) -> list[tuple[str, str]]:
    """(stdin, expected stdout) pairs from a HumanEval-style `check(candidate)`, deduplicated."""
    module = ast.parse(test_source)
    check = next(
        (n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None
    )
    if check is None:
        return []
    fn = check.args.args[0].arg if check.args.args else "candidate"
    cases: dict[str, str] = {}
    for stmt in check.body:  # top-level asserts only: nested ones depend on loop variables
        if isinstance(stmt, ast.Assert):
            found = _case(stmt.test, fn)
            if found is not None:
                stdin = encode_args(found[0])
                cases.setdefault(stdin, f"{found[1]!r}\n")
    return list(cases.items())


@dataclass
class Conversion:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # task ids without a usable assert


def convert_task(task: Task, source: str) -> dict[str, Any] | None:
    """One code-agentic row (the seed's format + `solution` when the task has one), or None."""
    cases = extract_cases(task.test)
    if not cases:
        return None
    row: dict[str, Any] = {
        "prompt": ROW_PROMPT,
        "question": converted_question(task.prompt, task.entry_point),
        "query_id": task.task_id,
        "input_output": {
            "inputs": [c[0] for c in cases],
            "outputs": [c[1] for c in cases],
            "remote": False,
        },
        "source": source,
    }
    if task.canonical_solution is not None:
        row["solution"] = task.prompt + task.canonical_solution.rstrip() + driver(task.entry_point)
    return row


def convert_tasks(tasks: Iterable[Task], source: str) -> Conversion:
    out = Conversion()
    for task in tasks:
        row = convert_task(task, source)
        if row is None:
            out.skipped.append(task.task_id)
        else:
            out.rows.append(row)
    return out


def load_converted(name: str) -> Conversion:
    """`humaneval` or `coophumaneval`, converted."""
    if name == "humaneval":
        from collabcoder.training.data.humaneval import load_humaneval

        return convert_tasks(load_humaneval(), "humaneval")
    if name == "coophumaneval":
        from collabcoder.training.data.coophumaneval import load_coophumaneval

        return convert_tasks(load_coophumaneval(), "coophumaneval")
    raise ValueError(
        f"unknown function-style dataset {name!r}; expected humaneval or coophumaneval"
    )
