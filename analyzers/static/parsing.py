"""One parse of the document per candidate, shared by every analyzer.

The syntax gate parses first (alone, before the others start), so the analyzers that run
concurrently after it find the tree in the cache instead of parsing the same text again.
"""

from __future__ import annotations

import ast
import functools
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from collabcoder.analyzers.static.context import AnalysisContext

# CPython 3.11's AST construction is not thread-safe ("AST constructor recursion depth mismatch"
# under concurrent compile()): every ast.parse / compile of ours goes through this lock.
AST_LOCK = threading.Lock()


@dataclass(frozen=True)
class ParsedDocument:
    """A module's AST, its nodes by type (one walk for every check), and a byte -> character
    column converter (ast counts UTF-8 bytes, jedi and editors count characters)."""

    code: str
    tree: ast.Module
    lines: list[str]
    nodes: dict[type[ast.AST], list[ast.AST]]

    def of(self, *types: type[ast.AST]) -> list[Any]:
        if len(types) == 1:
            return self.nodes.get(types[0], [])
        return [n for t in types for n in self.nodes.get(t, [])]

    def char_col(self, line: int, byte_col: int) -> int:
        if not 1 <= line <= len(self.lines):
            return byte_col
        text = self.lines[line - 1]
        if text.isascii():
            return byte_col
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


@functools.lru_cache(maxsize=8)
def parse_code(code: str) -> ParsedDocument | None:
    """The parsed module, or None when `code` does not parse. Cached (immutable result)."""
    try:
        with AST_LOCK:
            tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    nodes: dict[type[ast.AST], list[ast.AST]] = defaultdict(list)
    stack: list[ast.AST] = [tree]
    while stack:  # ast.walk, without its generator overhead (this runs on every candidate)
        node = stack.pop()
        nodes[type(node)].append(node)
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST))
    return ParsedDocument(code, tree, code.splitlines(), dict(nodes))


def parse_document(ctx: AnalysisContext) -> ParsedDocument | None:
    """The document with the completion; if the code after the cursor spoils it,
    prefix + completion; None if neither parses."""
    return parse_code(ctx.code) or parse_code(ctx.prefix + ctx.completion)
