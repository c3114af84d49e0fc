"""Source-text helpers shared by reply parsing and program facts.

Model code often does not parse, so next to `parse` (which never raises) there is a text-based
block finder (`block`) that follows indentation, open strings and brackets.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

IMPORT_LINE = re.compile(
    r"^(?:from\s+\.*[\w.]*\s+import\s+.+|import\s+[\w.]+(?:\s+as\s+\w+)?"
    r"(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)\s*$"
)
ANY_DEF = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+([A-Za-z_]\w*)\s*[(:]")


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: source contains null bytes
        return None


def segment(lines: list[str], node: ast.stmt) -> str:
    """Source lines of a top-level statement, decorators included."""
    start = node.lineno
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        start = min([start, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno or node.lineno
    return "\n".join(lines[start - 1 : end])


def dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def is_stub(node: FunctionNode | ast.ClassDef) -> bool:
    """True when the body holds nothing but a docstring, `pass` or `...`."""
    for stmt in node.body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring or Ellipsis
        return False
    return True


def names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def def_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^([ \t]*)(?:async\s+)?def\s+{re.escape(name)}\s*\(", re.MULTILINE)


@dataclass
class _ScanState:
    """Lexical state carried across lines: open triple-quoted string, bracket depth."""

    triple: str | None = None
    depth: int = 0
    continued: bool = False  # the previous line ended with a backslash

    @property
    def open(self) -> bool:
        return self.triple is not None or self.depth > 0 or self.continued


def _scan_line(line: str, state: _ScanState) -> None:
    i, n = 0, len(line)
    while i < n:
        if state.triple is not None:
            end = line.find(state.triple, i)
            if end < 0:
                return
            i, state.triple = end + 3, None
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith(('"""', "'''"), i):
            state.triple, i = line[i : i + 3], i + 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            state.depth += 1
        elif c in ")]}":
            state.depth = max(0, state.depth - 1)
        i += 1
    state.continued = state.triple is None and line.rstrip().endswith("\\")


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def block(lines: list[str], start: int) -> tuple[int, int]:
    """[start, end) of the indented block opened by the `def`/`class` line at `start`.

    Text-based so it works on replies that do not parse: a line belongs to the block while it is
    blank, indented deeper than the header, or inside an open string/bracket (docstrings of
    HumanEval prompts have lines at column 0).
    """
    indent = indent_of(lines[start])
    state = _ScanState()
    _scan_line(lines[start], state)
    end = start + 1
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if state.open or not line.strip() or indent_of(line) > indent:
            _scan_line(line, state)
            i += 1
            if line.strip():
                end = i
            continue
        break
    while (
        start > 0
        and lines[start - 1].strip().startswith("@")
        and (indent_of(lines[start - 1]) == indent)
    ):
        start -= 1
    return start, end


def function_text(code: str, name: str) -> str:
    """The last `def name` block of `code`, found by indentation ("" when there is none)."""
    lines = code.split("\n")
    pattern = def_pattern(name)
    for i in range(len(lines) - 1, -1, -1):
        if pattern.match(lines[i]):
            start, end = block(lines, i)
            return "\n".join(lines[start:end])
    return ""
