"""Which mypy errors outside the completion's lines the completion caused.

mypy reports some of a completion's consequences elsewhere: "Missing return statement" at the
`def` of a body the completion left without a return, a name the completion removed at its use
further down, a call below that no longer matches a signature the completion wrote. Those count
against the completion; errors that were in the document before it do not. How:

- the function around the cursor: a missing return / empty body reported at its `def` counts
  when the completion is where the function ends and it is the function's whole body or more
  than one line (a one-line completion in the middle of an unfinished body is not blamed for
  the lines the user has not written yet);
- everything else outside the completion counts when it is new: the document without the
  completion (prefix + suffix) is checked once per cursor site (cached, and only when the
  candidate has such errors at all), and errors are compared by (message, code, line), the line
  shifted by the lines the completion added.
"""

from __future__ import annotations

import ast
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.parsing import ParsedDocument, parse_code
from collabcoder.analyzers.static.result import Diagnostic

# What mypy reports at a `def` whose body falls off its end.
MISSING_RETURN_CODES = frozenset({"empty-body", "return"})
# Environment matters (untyped or missing packages), judged by the analyzer's own rules.
SKIPPED_CODES = frozenset({"import-untyped", "import-not-found", "import"})
ErrorKey = tuple[str, "str | None", int]  # (message, code, line in the document without it)


@dataclass(frozen=True)
class MypyMessage:
    line: int  # 1-based
    column: int  # 0-based
    end_line: int | None
    end_column: int | None  # 0-based, exclusive
    message: str
    severity: str
    code: str | None
    hint: str | None


@dataclass(frozen=True)
class MypyOutcome:
    messages: tuple[MypyMessage, ...]  # of the document only
    blocked: str | None = None  # a blocking error (syntax error mypy's parser found), if any


@dataclass(frozen=True)
class Site:
    """Where the completion sits: the function around the cursor and what mypy must keep."""

    function: ast.FunctionDef | ast.AsyncFunctionDef | None
    keep: range  # document lines whose functions are checked whole (others are elided)
    ends_function: bool  # the function around the cursor ends within the completion
    owns_body: bool  # ... and the completion is its whole body, or more than one line


def _statements(doc: ParsedDocument) -> list[ast.stmt]:
    return [
        n for t, nodes in doc.nodes.items() if issubclass(t, ast.stmt)
        for n in nodes if isinstance(n, ast.stmt)
    ]


def cursor_indent(prefix: str) -> int:
    """The indentation of the cursor's line: its leading whitespace up to the cursor."""
    line = prefix[prefix.rfind("\n") + 1 :]
    return len(line) - len(line.lstrip(" \t"))


def enclosing_function(
    doc: ParsedDocument, line: int, indent: int
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The innermost function whose body the 1-based `line` (indented by `indent`) belongs to.

    By indentation, not by the AST's spans: a body that is only a docstring followed by a
    comment at the cursor ends before the cursor's line, yet the cursor is in it.
    """
    stmts = _statements(doc)
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for fn in doc.of(ast.FunctionDef, ast.AsyncFunctionDef):
        if fn.lineno >= line or fn.col_offset >= indent:
            continue
        end = fn.end_lineno or fn.lineno
        if end < line and any(
            end < s.lineno <= line and s.col_offset <= fn.col_offset for s in stmts
        ):
            continue  # a statement at the def's level (or outer) closed it before the cursor
        if best is None or fn.lineno > best.lineno:
            best = fn
    return best


def site_of(ctx: AnalysisContext, doc: ParsedDocument | None) -> Site:
    """The site of `ctx`'s completion in its parsed document (None: unparsable, keep all)."""
    first = ctx.cursor[0] + 1
    lines = ctx.completion_lines if ctx.completion else range(first, first + 1)
    last = max(lines[-1] if lines else first, first)
    if doc is None:
        return Site(None, range(1, ctx.code.count("\n") + 2), False, False)
    fn = enclosing_function(doc, first, cursor_indent(ctx.prefix))
    inside = fn is not None and not any(
        first <= s.lineno <= last and s.col_offset <= fn.col_offset for s in _statements(doc)
    )
    if fn is None or not inside:
        # The completion writes module- or class-level code (or a def header): what it defines
        # is used anywhere, so every body is checked.
        return Site(fn, range(1, len(doc.lines) + 2), False, False)
    end = fn.end_lineno or fn.lineno
    keep = range(min(fn.lineno, first), max(end, last) + 1)
    ends = end <= last
    before = [s for s in fn.body if s.lineno < first and not _is_docstring(s, fn)]
    owns = ends and (not before or ctx.completion.strip().count("\n") > 0)
    return Site(fn, keep, ends, owns)


def _is_docstring(stmt: ast.stmt, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return (
        stmt is fn.body[0]
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def baseline_line(ctx: AnalysisContext, line: int) -> int:
    """A document line of the candidate -> the same line in the document without it."""
    cursor_line = ctx.cursor[0] + 1
    return line if line <= cursor_line else line - ctx.completion.count("\n")


def _at_def(site: Site, msg: MypyMessage) -> bool:
    """A missing return / empty body reported at the `def` of the function around the cursor."""
    return (
        site.function is not None
        and msg.code in MISSING_RETURN_CODES
        and msg.line == site.function.lineno
    )


BaselineGetter = Callable[[], "frozenset[ErrorKey] | None"]


def decide_outside(
    ctx: AnalysisContext, site: Site, outcome: MypyOutcome, baseline: BaselineGetter
) -> dict[int, bool]:
    """For each error the cause rules judge (index into `outcome.messages`): whether the
    completion caused it. Errors not in the result are left to the usual in-completion rule.

    `baseline()` is called at most once, and only when an error outside the completion needs
    it; it returns None when the document without the completion cannot be checked (then
    nothing outside is blamed on the completion but the missing return it owns).
    """
    if not ctx.completion or outcome.blocked:
        return {}
    decided: dict[int, bool] = {}
    pending: list[int] = []
    for i, msg in enumerate(outcome.messages):
        if msg.severity != "error" or msg.code in SKIPPED_CODES:
            continue
        if _at_def(site, msg):  # its range may span the body, so decided before "inside"
            if site.owns_body:
                decided[i] = True
            else:
                pending.append(i)
        elif not ctx.in_completion(msg.line, msg.column, msg.end_line, msg.end_column):
            pending.append(i)
    if pending:
        known = baseline()
        for i in pending:
            msg = outcome.messages[i]
            key = (msg.message, msg.code, baseline_line(ctx, msg.line))
            decided[i] = known is not None and key not in known
    return decided


class Baselines:
    """mypy's errors in the document without the completion, checked once per cursor site
    (all candidates of one site share it), at most `size` sites kept."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._known: OrderedDict[tuple[object, ...], frozenset[ErrorKey] | None] = OrderedDict()

    def getter(
        self,
        ctx: AnalysisContext,
        site: Site,
        scope: tuple[object, ...],
        check: Callable[[str], MypyOutcome],
    ) -> BaselineGetter:
        """A thunk for `decide_outside`; `check(text)` runs mypy on the document's text (the
        caller holds mypy's lock while the thunk may run)."""
        from collabcoder.analyzers.static.mypy_check import elide_bodies

        def get() -> frozenset[ErrorKey] | None:
            plain = ctx.prefix + ctx.suffix
            key = (*scope, plain, tuple(sorted(ctx.overrides.items())))
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
            doc = parse_code(plain)
            known: frozenset[ErrorKey] | None = None
            if doc is not None:
                delta = ctx.completion.count("\n")
                keep = range(site.keep.start, max(site.keep.start + 1, site.keep.stop - delta))
                outcome = check(elide_bodies(doc, keep))
                if not outcome.blocked:
                    known = frozenset((m.message, m.code, m.line) for m in outcome.messages)
            self._known[key] = known
            while len(self._known) > self.size:
                self._known.popitem(last=False)
            return known

        return get


def elsewhere_diagnostic(ctx: AnalysisContext, msg: MypyMessage) -> Diagnostic:
    """An error the completion caused outside its lines, placed on the completion's nearest
    line; the message says where mypy reported it, so the model can find it."""
    lines = ctx.code.split("\n")
    source = lines[msg.line - 1].strip() if 0 < msg.line <= len(lines) else ""
    source = source if len(source) <= 60 else source[:57] + "..."
    rel_line = 1 if msg.line <= ctx.cursor[0] + 1 else max(1, len(ctx.completion_lines))
    text = f"{msg.message} (reported at line {msg.line}, `{source}`; caused by the completion)"
    return Diagnostic(rel_line, 1, text, "error", msg.code)
