"""A bounded view of a large document for the analyzers.

CPython's parser and compiler hold the GIL for the whole call: a 50,000-line module takes
1-2 s to parse, and no thread can run meanwhile, the language server's event loop included.
So past `LARGE_DOCUMENT_LINES` the analyzers see a window instead of the whole file: the
module's top-level imports, then the code from a top-level statement about `BEFORE_LINES`
above the cursor to a top-level statement about `AFTER_LINES` below it. The cuts fall on lines
that start a top-level `def`, `class`, decorator or import, so the window parses whenever the
file does, and the completion's own coordinates (line and column within it) are unchanged.
The sizes keep one parse under about 50 ms on a slow core (about 25 us a line here), which is
the longest the server's event loop may wait for the GIL.

What it costs: a name defined outside the window and not imported looks undefined to the
name-level checks (hallucination, mypy) on such files.
"""

from __future__ import annotations

import dataclasses
import re

from collabcoder.analyzers.static.context import AnalysisContext

LARGE_DOCUMENT_LINES = 2000
BEFORE_LINES = 600
AFTER_LINES = 150

_TOP_LEVEL = re.compile(r"(?:async[ \t]+def|def|class|import|from)[ \t]|@")
# Only lines shaped like imports: a docstring line "from the start ..." must not become code.
_NAME = r"[A-Za-z_][\w.]*(?:[ \t]+as[ \t]+\w+)?"
_IMPORT = re.compile(
    rf"^(?:import[ \t]+{_NAME}(?:[ \t]*,[ \t]*{_NAME})*"
    rf"|from[ \t]+\.*[\w.]*[ \t]+import[ \t]+(?:\(|\*|{_NAME}(?:[ \t]*,[ \t]*{_NAME})*[ \t]*\\?))"
    r"[ \t]*(?:#[^\n]*)?$",
    re.MULTILINE,
)


def _line_start_before(text: str, end: int, lines: int) -> int:
    """The offset of the line `lines` lines above offset `end` (0 when there are fewer)."""
    pos = end
    for _ in range(lines):
        pos = text.rfind("\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


def _prefix_cut(prefix: str) -> int:
    """The start of the last top-level statement at least BEFORE_LINES above the cursor."""
    pos = _line_start_before(prefix, len(prefix), BEFORE_LINES)
    while pos > 0 and not _TOP_LEVEL.match(prefix, pos):
        pos = prefix.rfind("\n", 0, pos - 1) + 1  # the previous line's start
    return pos


def _suffix_cut(suffix: str) -> int:
    """The start of the first top-level statement at least AFTER_LINES below the cursor."""
    pos = 0
    for _ in range(AFTER_LINES):
        nxt = suffix.find("\n", pos)
        if nxt < 0:
            return len(suffix)
        pos = nxt + 1
    while pos < len(suffix) and not _TOP_LEVEL.match(suffix, pos):
        nxt = suffix.find("\n", pos)
        pos = nxt + 1 if nxt >= 0 else len(suffix)
    return pos


def _imports(code: str) -> str:
    """The top-level import statements of `code`, continuation lines included."""
    out: list[str] = []
    for match in _IMPORT.finditer(code):
        line, end = match.group(0), match.end()
        while (line.count("(") > line.count(")") or line.endswith("\\")) and end < len(code):
            nxt = code.find("\n", end + 1)
            nxt = len(code) if nxt < 0 else nxt
            line += code[end:nxt]
            end = nxt
        out.append(line + "\n")
    return "".join(out)


def bounded(ctx: AnalysisContext) -> AnalysisContext:
    """`ctx` itself for an ordinary document, else the window described above."""
    if ctx.prefix.count("\n") + ctx.suffix.count("\n") <= LARGE_DOCUMENT_LINES:
        return ctx
    start, end = _prefix_cut(ctx.prefix), _suffix_cut(ctx.suffix)
    if start == 0 and end == len(ctx.suffix):
        return ctx
    prefix = _imports(ctx.prefix[:start]) + ctx.prefix[start:]
    return dataclasses.replace(ctx, prefix=prefix, suffix=ctx.suffix[:end])
