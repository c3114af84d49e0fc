"""Names and attributes the completion made up (`np.arrray`, `os.path.joinn`, `df.groupbyy`).

An attribute is flagged only when jedi resolves its owner with certainty (every inferred value is
a module, a class or an instance, never a guess from untyped code) and the name is not among the
owner's members. Owners that answer any attribute (`__getattr__`: numpy's module, pandas' frames,
mocks) are flagged only when the name is a near miss of a real member, i.e. a typo. A bare name
is flagged when nothing in the document binds it and it is not a builtin. `from m import x` is
checked against `m`'s names. At most five suggestions per name, closest first.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

from collabcoder.analyzers.static.base import BlockingAnalyzer, locked
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.jedi_support import (
    JEDI_LOCK,
    goto_names,
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

MAX_SUGGESTIONS = 5
SUGGEST_CUTOFF = 60.0  # fuzz.ratio, 0-100
TYPO_CUTOFF = 85.0  # for owners with __getattr__: only near misses of a real name count
_CERTAIN_TYPES = frozenset({"module", "class", "instance"})
_MODULE_DUNDERS = frozenset({
    "__name__", "__file__", "__doc__", "__package__", "__spec__", "__loader__", "__path__",
    "__builtins__", "__annotations__", "__dict__", "__class__", "__debug__", "__qualname__",
    "__module__", "reveal_type", "reveal_locals",
})


# Builtins plus the attributes every module has: names nothing in the document needs to bind.
_BUILTIN_NAMES = frozenset(dir(builtins)) | _MODULE_DUNDERS


@dataclass(frozen=True)
class Finding:
    line: int  # document, 1-based
    column: int  # document, 0-based chars
    end_column: int
    text: str  # message for the model
    name: str
    suggestions: tuple[str, ...]


def suggest(name: str, candidates: set[str] | list[str]) -> tuple[str, ...]:
    """Up to MAX_SUGGESTIONS real names closest to `name` (private ones only for private names)."""
    pool = [c for c in candidates if c != name and (name.startswith("_") or not c.startswith("_"))]
    found = process.extract(name, pool, scorer=fuzz.ratio, limit=MAX_SUGGESTIONS,
                            score_cutoff=SUGGEST_CUTOFF)
    return tuple(match for match, _score, _idx in found)


def _did_you_mean(suggestions: tuple[str, ...]) -> str:
    return f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""


# -- bare names ---------------------------------------------------------------------------------


def bound_names(doc: ParsedDocument) -> set[str]:
    """Every name the module binds anywhere, in any scope (a deliberately generous set)."""
    names = {n.id for n in doc.of(ast.Name) if not isinstance(n.ctx, ast.Load)}
    names.update(n.name for n in doc.of(ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    names.update(n.arg for n in doc.of(ast.arg))
    names.update((n.asname or n.name).split(".")[0] for n in doc.of(ast.alias))
    for node in doc.of(ast.Global, ast.Nonlocal):
        names.update(node.names)
    names.update(n.name for n in doc.of(ast.ExceptHandler, ast.MatchAs, ast.MatchStar) if n.name)
    names.update(n.rest for n in doc.of(ast.MatchMapping) if n.rest)
    return names


def _dynamic_namespace(doc: ParsedDocument) -> bool:
    """Star imports, exec or globals() writes: the module's names cannot be listed statically."""
    if any(a.name == "*" for node in doc.of(ast.ImportFrom) for a in node.names):
        return True
    return any(
        isinstance(node.func, ast.Name)
        and node.func.id in ("exec", "globals", "locals", "vars", "__import__")
        for node in doc.of(ast.Call)
    )


def _undefined_names(ctx: AnalysisContext, doc: ParsedDocument) -> list[Finding]:
    if _dynamic_namespace(doc):
        return []
    known = bound_names(doc) | _BUILTIN_NAMES
    lines = ctx.completion_lines
    findings = []
    for node in doc.of(ast.Name):
        if node.lineno not in lines or not isinstance(node.ctx, ast.Load) or node.id in known:
            continue
        col = doc.char_col(node.lineno, node.col_offset)
        if not ctx.in_completion(node.lineno, col, node.lineno, col + len(node.id)):
            continue
        hints = suggest(node.id, known)
        findings.append(Finding(node.lineno, col, col + len(node.id),
                                f"name '{node.id}' is not defined{_did_you_mean(hints)}",
                                node.id, hints))
    return findings


# -- attributes and from-imports ----------------------------------------------------------------


def _stored_attributes(doc: ParsedDocument) -> set[str]:
    """Attribute names assigned somewhere (`obj.x = ...`, setattr/hasattr strings): such
    attributes may exist at runtime without jedi seeing them, so they are never flagged."""
    names = {n.attr for n in doc.of(ast.Attribute) if not isinstance(n.ctx, ast.Load)}
    for node in doc.of(ast.Call):
        if (isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "hasattr", "getattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            names.add(node.args[1].value)
    return names


def _owner_values(script: Any, leaf: Any) -> list[Any] | None:
    """jedi's values for the expression before `.attr` (None when jedi cannot say)."""
    from jedi.inference.helpers import infer_call_of_leaf

    dot = leaf.get_previous_leaf()
    if dot is None or dot.value != ".":
        return None
    owner_leaf = dot.get_previous_leaf()
    if owner_leaf is None:
        return None
    script._inference_state.reset_recursion_limitations()
    context = script._get_module_context().create_context(owner_leaf)
    return list(infer_call_of_leaf(context, owner_leaf))


def _describe(values: list[Any]) -> str:
    value = values[0]
    name = value.name.string_name if value.name is not None else "?"
    if value.api_type == "module":
        return f"module '{'.'.join(getattr(value, 'string_names', None) or [name])}'"
    if value.api_type == "class":
        return f"class '{name}'"
    return f"'{name}' object"


def _attribute_findings(
    ctx: AnalysisContext, doc: ParsedDocument, script: Any
) -> list[Finding]:
    stored = _stored_attributes(doc)
    lines = ctx.completion_lines
    findings = []
    for node in doc.of(ast.Attribute):
        if node.end_lineno not in lines or not isinstance(node.ctx, ast.Load):
            continue
        if node.attr in stored or node.end_lineno is None or node.end_col_offset is None:
            continue
        line = node.end_lineno
        end = doc.char_col(line, node.end_col_offset)
        start = end - len(node.attr)
        if not ctx.in_completion(line, start, line, end):
            continue
        finding = _check_attribute(script, node, line, start, end)
        if finding is not None:
            findings.append(finding)
    return findings


def _check_attribute(
    script: Any, node: ast.Attribute, line: int, start: int, end: int
) -> Finding | None:
    try:
        leaf = name_leaf_at(script, line, start)
        if leaf is None or leaf.value != node.attr:
            return None
        values = _owner_values(script, leaf)
        if not values or any(v.api_type not in _CERTAIN_TYPES for v in values):
            return None  # unresolved or dynamic owner: no opinion
        if goto_names(script, leaf):
            return None  # a real definition (goto does not answer through __getattr__)
        # Only now the full member list: completing is the expensive part of jedi here.
        members = {c.name for c in script.complete(line, start)}
        if not members or node.attr in members:
            return None
        dynamic = "__getattr__" in members
        if not dynamic and infer_values(script, leaf):
            return None
    except Exception:
        return None  # jedi failed on this expression: no opinion, never a false alarm
    hints = suggest(node.attr, members)
    owner = _describe(values)
    if dynamic:
        # Any name "exists"; only a near miss of a real member is a mistake worth reporting.
        best = process.extractOne(node.attr, hints, scorer=fuzz.ratio) if hints else None
        if best is None or best[1] < TYPO_CUTOFF:
            return None
        text = (f"{owner} has no attribute '{node.attr}' (it resolves unknown names "
                f"dynamically, but this looks like a typo){_did_you_mean(hints)}")
    else:
        text = f"{owner} has no attribute '{node.attr}'{_did_you_mean(hints)}"
    return Finding(line, start, end, text, node.attr, hints)


def _import_findings(ctx: AnalysisContext, doc: ParsedDocument, script: Any) -> list[Finding]:
    findings = []
    for node in doc.of(ast.ImportFrom):
        if node.module is None:
            continue
        for alias in node.names:
            if alias.name == "*" or not hasattr(alias, "lineno"):
                continue
            line, col = alias.lineno, doc.char_col(alias.lineno, alias.col_offset)
            if not ctx.in_completion(line, col, line, col + len(alias.name)):
                continue
            try:
                leaf = name_leaf_at(script, line, col)
                if leaf is None or goto_names(script, leaf) or infer_values(script, leaf):
                    continue
                members = {c.name for c in script.complete(line, col)}
            except Exception:
                continue
            if not members or alias.name in members or "__getattr__" in members:
                continue  # module not found (mypy reports that) or resolved dynamically
            hints = suggest(alias.name, members)
            module = "." * node.level + node.module
            findings.append(Finding(
                line, col, col + len(alias.name),
                f"module '{module}' has no name '{alias.name}'{_did_you_mean(hints)}",
                alias.name, hints,
            ))
    return findings


class HallucinationAnalyzer(BlockingAnalyzer):
    name = "hallucination"
    kind = "critical"

    def check(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        doc = parse_document(ctx)
        if doc is None:
            return passed_result(self.name, self.kind, "Not checked: the code does not parse.")
        findings = _undefined_names(ctx, doc)
        if self._has_attributes_or_imports(ctx, doc):
            with locked(JEDI_LOCK, deadline, "jedi"):
                script = script_for(ctx)
                findings += _attribute_findings(ctx, doc, script)
                findings += _import_findings(ctx, doc, script)
        if not findings:
            return passed_result(self.name, self.kind,
                                 "All names and attributes in the completion exist.")
        findings.sort(key=lambda f: (f.line, f.column))
        diagnostics = []
        for f in findings:
            line, col = ctx.to_completion_position(f.line, f.column)
            end_line, end_col = ctx.to_completion_position(f.line, f.end_column)
            diagnostics.append(Diagnostic(line, col, f.text, "error", "hallucination",
                                          end_line, end_col))
        message = "\n".join(
            ["The completion uses names that do not exist; use only the real names (closest "
             "ones suggested):"] + [d.render() for d in diagnostics]
        )
        return failed_result(
            self.name, self.kind, tuple(diagnostics), message,
            details={"suggestions": {f.name: list(f.suggestions) for f in findings}},
        )

    @staticmethod
    def _has_attributes_or_imports(ctx: AnalysisContext, doc: ParsedDocument) -> bool:
        """Skip jedi entirely (and its lock) for completions without `.x` or `from m import`."""
        return "." in ctx.completion or "import" in ctx.completion
