"""The syntax gate: does the document still compile with the completion inserted?

`compile()` rather than `ast.parse`: it also rejects `return` outside a function, misplaced
`from __future__`, duplicate parameters, which every later analyzer would trip over.
Only errors the completion is responsible for fail the check: an editor buffer is often broken
elsewhere (the user is typing below the cursor), and that is not the candidate's fault.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

from collabcoder.analyzers.static.base import BlockingAnalyzer
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.parsing import AST_LOCK, ParsedDocument, parse_code
from collabcoder.analyzers.static.result import (
    AnalyzerResult,
    Diagnostic,
    failed_result,
    passed_result,
)

_REFERENCED_LINE = re.compile(r"\bon line (\d+)")


@dataclass(frozen=True)
class CompileError:
    message: str
    line: int  # 1-based
    column: int  # 0-based, characters
    end_line: int | None
    end_column: int | None
    text: str


def _error(exc: SyntaxError, doc: ParsedDocument | None) -> CompileError:
    line = exc.lineno or 1
    col = max(0, (exc.offset or 1) - 1)
    end_line = exc.end_lineno if exc.end_lineno and exc.end_lineno > 0 else None
    end_col = exc.end_offset - 1 if exc.end_offset and exc.end_offset > 0 else None
    text = exc.text or (doc.lines[line - 1] if doc and 0 < line <= len(doc.lines) else "")
    return CompileError(exc.msg, line, col, end_line, end_col, text.rstrip())


def _statements_over(body: list[ast.stmt], lines: range) -> list[ast.stmt]:
    """The statements overlapping `lines` (and the line after); inside a class, its members
    (a method compiles the same at module level, and a whole class can be long)."""
    out: list[ast.stmt] = []
    for stmt in body:
        if stmt.lineno > lines[-1] + 1 or (stmt.end_lineno or stmt.lineno) < lines[0]:
            continue
        if isinstance(stmt, ast.ClassDef) and stmt.lineno < lines[0]:
            out.extend(_statements_over(stmt.body, lines))
        else:
            out.append(stmt)
    return out


def compile_error(
    code: str, filename: str = "<completion>", lines: range | None = None
) -> CompileError | None:
    """The first error `compile()` finds in `code`, or None.

    Parses through the shared cache (the analyzers after the gate reuse the tree), then compiles
    the tree for what only the compiler rejects (`return` outside a function, `nonlocal`
    without a binding, ...). Given `lines`, only the top-level statements that overlap them
    are compiled: those errors are local to a statement, and compiling 300 lines to check five
    costs more than the parse itself.
    """
    doc = parse_code(code)
    target: ast.Module | str = code
    if doc is not None:
        target = doc.tree
        touched = "".join(doc.lines[lines[0] - 1 : lines[-1]]) if lines is not None else ""
        if lines is not None and "__future__" not in touched:  # a new future import: all of it
            target = ast.Module(body=_statements_over(doc.tree.body, lines), type_ignores=[])
    try:
        with AST_LOCK, warnings.catch_warnings():
            # Invalid escape sequences etc. are warnings, not errors; keep them off stderr.
            warnings.simplefilter("ignore")
            compile(target, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return _error(exc, doc)
    except ValueError as exc:  # null bytes
        return CompileError(str(exc), 1, 0, None, None, "")
    return None


def _offset(code: str, line: int, column: int) -> int:
    """Character offset of a 1-based line / 0-based column."""
    start = 0
    for _ in range(line - 1):
        nxt = code.find("\n", start)
        if nxt < 0:
            return len(code)
        start = nxt + 1
    return start + column


def _same_error_without_completion(ctx: AnalysisContext, err: CompileError, base: CompileError) -> bool:
    """Is `err` (in the full document, after the completion) the error `base` already had?"""
    cut = len(ctx.prefix) + len(ctx.completion)
    off = _offset(ctx.code, err.line, err.column)
    if off < cut:
        return False
    base_code = ctx.prefix + ctx.suffix
    return err.message == base.message and off - len(ctx.completion) == _offset(
        base_code, base.line, base.column
    )


def _next_code_line(ctx: AnalysisContext) -> int:
    """1-based line of the first non-blank line after the completion."""
    line = ctx.completion_end[0] + 1
    rest = ctx.code[len(ctx.prefix) + len(ctx.completion):]
    for text in rest.splitlines():
        if text.strip():
            return line
        line += 1
    return line


class SyntaxAnalyzer(BlockingAnalyzer):
    name = "syntax"
    kind = "critical"

    def check(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        lines = ctx.completion_lines or None
        err = compile_error(ctx.code, str(ctx.document or "<document>"), lines)
        if err is None:
            return passed_result(self.name, self.kind, "The completion parses.")
        if ctx.in_completion(err.line, err.column, err.end_line, err.end_column):
            return self._fail(ctx, err, "")
        base = compile_error(ctx.prefix + ctx.suffix)
        if base is None:
            # The document parsed before the completion and does not now: an unclosed bracket
            # or string, a block without a body, a dedent that cuts the code below.
            return self._fail(ctx, err, " (in the code after your completion, which it breaks)")
        after_completion = (err.line, err.column) >= (
            ctx.completion_end[0] + 1,
            ctx.completion_end[1],
        )
        cause = _REFERENCED_LINE.search(err.message)
        if after_completion and not _same_error_without_completion(ctx, err, base):
            # "expected an indented block after 'if' statement on line 7": names its cause.
            if cause and int(cause.group(1)) in ctx.completion_lines:
                return self._fail(ctx, err, "")
            if err.line <= _next_code_line(ctx):  # right after the completion: its doing
                return self._fail(ctx, err, " (right after your completion)")
        elif (after_completion and cause and int(cause.group(1)) <= ctx.prefix.count("\n") + 1
              and err.line <= _next_code_line(ctx)):
            # The block the cursor opens had no body, and the completion (a comment, blank
            # lines) still gives it none: the one thing it had to do.
            return self._fail(ctx, err, " (the block at the cursor still has no body)")
        return passed_result(
            self.name,
            self.kind,
            f"The completion parses; the document has an unrelated syntax error at line "
            f"{err.line}: {err.message}.",
            details={"document_error_line": err.line},
        )

    def _fail(self, ctx: AnalysisContext, err: CompileError, where: str) -> AnalyzerResult:
        line, col = ctx.to_completion_position(err.line, err.column)
        end_line = end_col = None
        if err.end_line is not None and err.end_column is not None:
            end_line, end_col = ctx.to_completion_position(err.end_line, err.end_column)
        source = f": `{err.text.strip()}`" if err.text.strip() else ""
        diag = Diagnostic(
            line, col, f"SyntaxError: {err.message}{where}{source}", "error", "syntax",
            end_line, end_col,
        )
        return failed_result(self.name, self.kind, (diag,))
