"""Calls in the completion checked against the callee's real signature (jedi).

Finds too many or too few positional arguments, unknown keywords, missing keyword-only
arguments and arguments given twice, and gives the model the signature text so it can repair
the call. Only certain mismatches fail: calls with `*args`/`**kwargs` at the call site are
skipped, a signature's own `*args`/`**kwargs` absorb what they can, an overloaded callee fails
only when no overload accepts the call, and callees jedi may see wrongly (unknown decorators,
NamedTuple/TypedDict/Enum/metaclass classes) are skipped.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from collabcoder.analyzers.static.base import BlockingAnalyzer, locked
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.jedi_support import (
    JEDI_LOCK,
    infer_values,
    name_leaf_at,
    script_for,
)
from collabcoder.analyzers.static.parsing import ParsedDocument, parse_document
from collabcoder.analyzers.static.result import (
    AnalyzerResult,
    Diagnostic,
    failed_result,
    passed_result,
)

# Decorators that keep the signature jedi reports (others may replace it).
_SAFE_DECORATORS = frozenset({
    "staticmethod", "classmethod", "property", "abstractmethod", "abc.abstractmethod",
    "overload", "typing.overload", "final", "typing.final", "override", "typing.override",
    "typing_extensions.override", "functools.wraps", "wraps", "dataclass",
    "dataclasses.dataclass", "functools.total_ordering", "total_ordering", "cached_property",
    "functools.cached_property", "deprecated", "typing_extensions.deprecated",
    "warnings.deprecated", "runtime_checkable", "typing.runtime_checkable",
})
# Classes whose call signature jedi takes from the wrong place.
_SPECIAL_BASES = ("NamedTuple", "TypedDict", "Enum", "IntEnum", "StrEnum", "Flag", "IntFlag",
                  "Protocol", "BaseModel", "Struct")
# Through the MRO, minus Protocol: typeshed makes Iterable & co. protocols, so `range` has it.
_SPECIAL_BASE_NAMES = frozenset(_SPECIAL_BASES) - {"Protocol"}
_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # inspect.Parameter kind name
    has_default: bool


@dataclass(frozen=True)
class CallSite:
    node: ast.Call
    text: str  # `inv.receive(...)`, how the message names the call
    paren: tuple[int, int]  # 1-based line, 0-based char column of `(`
    n_positional: int
    keywords: tuple[str, ...]


def has_default(param_text: str) -> bool:
    """Whether `name: ann = default` (jedi's `to_string()`) has a top-level `=`."""
    depth, quote, prev = 0, "", ""
    for ch in param_text:
        if quote:
            if ch == quote and prev != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "=" and depth == 0 and prev not in "=<>!":
            return True
        prev = ch
    return False


def bind_problems(params: list[Param], n_positional: int, keywords: tuple[str, ...]) -> list[str]:
    """Why a call with these arguments cannot bind to `params` (empty: it can)."""
    problems: list[str] = []
    positional = [p for p in params if p.kind in _POSITIONAL]
    var_pos = any(p.kind == "VAR_POSITIONAL" for p in params)
    var_kw = any(p.kind == "VAR_KEYWORD" for p in params)
    by_name = {p.name: p for p in params}
    if n_positional > len(positional) and not var_pos:
        required = sum(1 for p in positional if not p.has_default)
        allowed = f"{len(positional)}" if required == len(positional) else (
            f"from {required} to {len(positional)}")
        problems.append(
            f"takes {allowed} positional argument{'s' if len(positional) != 1 else ''} "
            f"but {n_positional} were given"
        )
    bound = {p.name for p in positional[:n_positional]}
    for kw in keywords:
        param = by_name.get(kw)
        if param is None or param.kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if not var_kw:
                problems.append(f"got an unexpected keyword argument '{kw}'")
        elif param.kind == "POSITIONAL_ONLY":
            if not var_kw:
                problems.append(f"'{kw}' is positional-only and cannot be passed by keyword")
        elif kw in bound:
            problems.append(f"got multiple values for argument '{kw}'")
        else:
            bound.add(kw)
    missing = [p.name for p in positional if p.name not in bound and not p.has_default]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        problems.append(f"missing {len(missing)} required positional argument"
                        f"{'s' if len(missing) > 1 else ''}: {names}")
    kw_missing = [p.name for p in params
                  if p.kind == "KEYWORD_ONLY" and p.name not in bound and not p.has_default]
    if kw_missing:
        names = ", ".join(f"'{m}'" for m in kw_missing)
        problems.append(f"missing {len(kw_missing)} required keyword-only argument"
                        f"{'s' if len(kw_missing) > 1 else ''}: {names}")
    return problems


def _call_sites(ctx: AnalysisContext, doc: ParsedDocument) -> list[CallSite]:
    sites = []
    lines = ctx.completion_lines
    for node in doc.of(ast.Call):
        if (node.end_lineno or node.lineno) < lines.start or node.lineno >= lines.stop:
            continue  # cheap line filter before the exact range test below
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            continue  # *xs / **kw at the call site: the argument count is unknown
        func = node.func
        f_end_line = func.end_lineno or func.lineno
        f_end = doc.char_col(f_end_line, func.end_col_offset or 0)
        end_line = node.end_lineno or node.lineno
        end = doc.char_col(end_line, node.end_col_offset or 0)
        # The call is the completion's when its argument list (not just the callee) is in it.
        if not ctx.in_completion(f_end_line, f_end, end_line, end):
            continue
        paren = _find_paren(doc.lines, f_end_line, f_end)
        if paren is None:
            continue
        name = ast.unparse(func) if len(ast.unparse(func)) <= 60 else "call"
        sites.append(CallSite(node, f"{name}(...)", paren, len(node.args),
                              tuple(k.arg for k in node.keywords if k.arg)))
    sites.sort(key=lambda s: (s.node.lineno, s.node.col_offset))
    return sites


def _find_paren(lines: list[str], line: int, col: int) -> tuple[int, int] | None:
    """The `(` that opens the argument list, at or after the callee's end."""
    while line <= len(lines):
        idx = lines[line - 1].find("(", col)
        if idx >= 0:
            return line, idx
        line, col = line + 1, 0
    return None


def _definition_is_plain(script: Any, site: CallSite, doc: ParsedDocument) -> bool:
    """False when jedi's signature for this callee may not be what Python calls."""
    func = site.node.func
    target = func.attr if isinstance(func, ast.Attribute) else (
        func.id if isinstance(func, ast.Name) else None)
    if target is None:
        return True  # `f()(x)`, `xs[0](y)`: jedi's signature is all we have
    line = func.end_lineno or func.lineno
    col = doc.char_col(line, func.end_col_offset or 0) - len(target)
    try:
        leaf = name_leaf_at(script, line, col)
        values = infer_values(script, leaf) if leaf is not None else []
    except Exception:
        return False
    for value in values:
        definition = getattr(value, "tree_node", None)
        if definition is not None and definition.type not in ("classdef", "funcdef"):
            definition = None
        if definition is None:
            continue
        if definition.type == "classdef":
            bases = definition.get_super_arglist()
            text = bases.get_code() if bases is not None else ""
            if "metaclass" in text or any(b in text for b in _SPECIAL_BASES):
                return False
            try:  # also through a base class: `class P3(Point)` where Point is a NamedTuple
                mro = {str(c.py__name__()) for c in value.py__mro__()}
            except Exception:
                return False
            if mro & _SPECIAL_BASE_NAMES:
                return False
        parent = definition.parent
        if parent is not None and parent.type == "decorated":
            decorators = parent.children[0]
            items = decorators.children if decorators.type == "decorators" else [decorators]
            for deco in items:
                name = deco.get_code().strip().lstrip("@").split("(")[0].strip()
                if name not in _SAFE_DECORATORS and not name.endswith(".setter"):
                    return False
    return True


class SignatureAnalyzer(BlockingAnalyzer):
    name = "signature"
    kind = "critical"

    def check(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        doc = parse_document(ctx)
        if doc is None:
            return passed_result(self.name, self.kind, "Not checked: the code does not parse.")
        sites = _call_sites(ctx, doc)
        if not sites:
            return passed_result(self.name, self.kind, "No calls in the completion.")
        diagnostics: list[Diagnostic] = []
        checked = 0
        with locked(JEDI_LOCK, deadline, "jedi"):
            script = script_for(ctx)
            for site in sites:
                verdict = self._check_site(ctx, doc, script, site)
                if verdict is None:
                    continue
                checked += 1
                if verdict:
                    diagnostics.append(verdict[0])
        if diagnostics:
            message = "\n".join(
                ["These calls in the completion do not match the signatures of the functions "
                 "they call; use the signatures given to fix them:"]
                + [d.render() for d in diagnostics]
            )
            return failed_result(self.name, self.kind, tuple(diagnostics), message)
        text = (f"All {checked} calls with a known signature match it." if checked else
                "No call in the completion has a signature known with certainty.")
        return passed_result(self.name, self.kind, text,
                             details={"calls": len(sites), "checked": checked})

    def _check_site(
        self, ctx: AnalysisContext, doc: ParsedDocument, script: Any, site: CallSite
    ) -> list[Diagnostic] | None:
        """None: not checkable; []: matches; [diag]: certain mismatch."""
        line, col = site.paren
        try:
            signatures = script.get_signatures(line, col + 1)
        except Exception:
            return None
        if not signatures:
            return None
        problems_per_sig = []
        for sig in signatures:
            params = [Param(p.name, p.kind.name, has_default(p.to_string())) for p in sig.params]
            if any(p.kind == "VAR_POSITIONAL" for p in params) and any(
                p.kind == "VAR_KEYWORD" for p in params
            ):
                return None  # (*args, **kwargs): a wrapper; nothing certain to say
            problems = bind_problems(params, site.n_positional, site.keywords)
            if not problems:
                return []
            problems_per_sig.append((sig.to_string(), problems))
        # A mismatch is only reported when the signature is the one Python will call (asked
        # only now: most calls match, and this costs another inference).
        if not _definition_is_plain(script, site, doc):
            return None
        shown = problems_per_sig[:3]
        sig_text = " | ".join(s for s, _ in shown)
        why = "; ".join(shown[0][1])
        label = "Signature" if len(shown) == 1 else "Signatures"
        node = site.node
        start_line = node.lineno
        start_col = doc.char_col(start_line, node.col_offset)
        rel_line, rel_col = ctx.to_completion_position(start_line, start_col)
        return [Diagnostic(rel_line, rel_col, f"{site.text} {why}. {label}: {sig_text}",
                           "error", "call-signature")]
