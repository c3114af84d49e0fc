"""Examples the docstring promises, in the forms HumanEval-style prompts write them.

Besides doctest's `>>>` (doctests.py), prompts state examples as prose lines:

    will_it_fly([1, 2], 5) ➞ False
    search([4, 1, 2, 2, 3, 1]) == 2
    count_up_to(5) => [2,3]          digitSum("abAB") ==> 131
    eat(5, 6, 10) -> [11, 4]         choose_num(12, 15) = 14
    count_upper('aBCdEf') returns 1  multiply(148, 412) should return 16.

Each line becomes `assert candidate(args) == expected`. Only lines whose call and expected
value are plain literals are taken (`is_happy(a) => False` names an undefined `a`; `find_max(..)
== ""aaaaaaa"` does not parse): they are parsed with `ast`, never evaluated here; the sandbox
runs them. `true`/`false` are read as Python's booleans.
"""

from __future__ import annotations

import ast
import re

from collabcoder.analyzers.testcases import TestStep

# Longest first, so `==>` is not read as `==` followed by `>`.
_SEPARATORS = ("should return", "# returns", "returns", "# =>", "==>", "=>", "->", "➞", "==",
               "=")  # fmt: skip
_LEAD = re.compile(r"^\s*(?:[*\-•]\s*|for\s+|e\.g\.\s*)?")
_LITERAL_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.USub,
                  ast.UAdd, ast.Load, ast.Name, ast.keyword)  # fmt: skip
_NAMES = {"True": "True", "False": "False", "None": "None", "true": "True", "false": "False"}


def _literal(node: ast.AST) -> bool:
    """Plain data only: constants, containers of them, signs, and True/False/None."""
    for sub in ast.walk(node):
        if not isinstance(sub, _LITERAL_NODES):
            return False
        if isinstance(sub, ast.Name) and sub.id not in _NAMES:
            return False
    return True


def _normalized(node: ast.AST) -> str:
    """Source of a literal with `true`/`false` spelled the Python way."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            sub.id = _NAMES[sub.id]
    return ast.unparse(node)


def _split_call(text: str, name: str) -> tuple[ast.Call, str] | None:
    """`name(...)` at the start of `text` (parsed), and the text after its closing parenthesis."""
    if not text.startswith(name + "("):
        return None
    depth, quote = 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                try:
                    call = ast.parse(text[: i + 1], mode="eval").body
                except SyntaxError:
                    return None
                return (call, text[i + 1 :]) if isinstance(call, ast.Call) else None
    return None


def _expected(rest: str) -> ast.expr | None:
    rest = rest.strip()
    for sep in _SEPARATORS:
        if rest.startswith(sep):
            rest = rest[len(sep) :].strip()
            break
    else:
        return None
    rest = rest.split("  #")[0].split(" # ")[0].strip().rstrip(".").strip()
    # `== 1 + 9 + 0 + 0 = 10`, `-> 19 - 5 - 6 = 8`: the value is after the last ` = `.
    candidates = [rest, rest.rsplit(" = ", 1)[-1]] if " = " in rest else [rest]
    for text in candidates:
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            continue
        if _literal(node):
            return node
    return None


def prose_examples(docstring: str, name: str, first_line: int) -> list[TestStep]:
    """One assert step per example line of `docstring` that calls `name` with literals.

    `first_line` is the document line of the docstring's first line, so a failure points at
    its example. `>>>` lines are left to doctest.
    """
    steps: list[TestStep] = []
    for offset, raw in enumerate(docstring.splitlines()):
        if ">>>" in raw:
            continue
        text = _LEAD.sub("", raw, count=1).rstrip()
        split = _split_call(text, name)
        if split is None:
            continue
        call, rest = split
        expected = _expected(rest)
        if expected is None or not all(_literal(a) for a in [*call.args, *call.keywords]):
            continue
        call.func = ast.Name("candidate", ast.Load())
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            _normalized(arg)
        source = f"assert {ast.unparse(call)} == {_normalized(expected)}\n"
        steps.append(TestStep(source, is_test=True, line=first_line + offset))
    return steps


def doctest_assert(source: str, want: str) -> str | None:
    """A `>>>` example as a value comparison, when it is one: `>>> f(x) == y` with no output
    (HumanEval writes these), or an expression whose expected output is a plain literal
    (`"21"` then matches a result printed as `'21'`). None: leave it to doctest's text match."""
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not want.strip():
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            return f"assert {ast.unparse(node)}\n"
        return None
    try:
        expected = ast.parse(want.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not _literal(expected) or isinstance(node, ast.Compare):
        return None
    return f"assert {ast.unparse(node)} == {_normalized(expected)}\n"
