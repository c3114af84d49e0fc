"""The multi-agent program: its parts, its composition, and the AST facts read off it.

Two agents write one program: the `aux` agent writes a helper function named `aux`, the `main`
agent writes the task's entry point, which may call `aux`. The program is the prompt's context
(its imports and the helper functions the prompt itself defines) followed by the aux code and the
main code. `analyze_program` reads facts off each agent's code (pulled out of its reply by
`replies.extract_function`) with the `ast` module, never with regexes over source text (except
where the code does not parse, to still tell "missing" from "broken").
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

from collabcoder.analyzers.protocol.source import (
    IMPORT_LINE,
    FunctionNode,
    dedupe,
    def_pattern,
    function_text,
    is_stub,
    names_used,
    parse,
    segment,
)
from collabcoder.analyzers.testcases import AssertSuite, IOSuite
from collabcoder.analyzers.verdict import SyntaxErrorInfo, Verdict

AUX_NAME = "aux"
AUX_ROLE = "aux"
MAIN_ROLE = "main"
CONTEXT_ROLE = "context"  # the part of the program taken from the task's prompt

_PART_SEPARATOR = "\n\n\n"


def roles(num_agents: int) -> tuple[str, ...]:
    """Agent roles in order: ('aux', 'main') for two agents, ('main',) for one."""
    return (AUX_ROLE, MAIN_ROLE) if num_agents >= 2 else (MAIN_ROLE,)


@dataclass(frozen=True)
class FeedbackTask:
    """The task as the turn protocol sees it (HumanEval / CoopHumanEval style)."""

    prompt: str  # the original prompt: imports, signature and docstring of the entry point
    entry_point: str
    task_id: str = ""
    suite: AssertSuite | IOSuite | None = (
        None  # tests the feedback modes run (`run_feedback_tests`)
    )


def function_of(role: str, task: FeedbackTask) -> str:
    """The function an agent of `role` writes for `task`."""
    return AUX_NAME if role == AUX_ROLE else task.entry_point


# ---------------------------------------------------------------------------------------------
# The prompt's context
# ---------------------------------------------------------------------------------------------


def extract_imports(prompt: str) -> str:
    """The prompt's top-level import statements, one per line, in order, without duplicates."""
    tree = parse(prompt)
    if tree is not None:
        lines = prompt.splitlines()
        return "\n".join(
            dedupe(
                segment(lines, n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)
            )
        )
    # A prompt that does not parse (truncated docstring, ...): keep lines that parse as imports.
    found = [ln.strip() for ln in prompt.splitlines() if IMPORT_LINE.match(ln)]
    return "\n".join(dedupe(ln for ln in found if parse(ln) is not None))


def extract_prompt_context(prompt: str) -> str:
    """What of the prompt the program needs: imports, plus helpers the prompt fully defines.

    Some HumanEval prompts define a complete helper next to the entry-point stub (e.g.
    `encode_cyclic` before `decode_cyclic`) and the solution is expected to call it; keeping only
    import lines, as the reference did, makes those tasks unsolvable. Stubs (signature +
    docstring) are dropped: the entry point comes from the main agent.
    """
    tree = parse(prompt)
    if tree is None:
        return extract_imports(prompt)
    lines = prompt.splitlines()
    keep: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign):
            keep.append(segment(lines, node))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not is_stub(node):
                keep.append(segment(lines, node))
    imports = [k for k in keep if k.startswith(("import ", "from "))]
    others = [k for k in keep if not k.startswith(("import ", "from "))]
    parts = ["\n".join(dedupe(imports))] if imports else []
    parts.extend(others)
    return "\n\n\n".join(parts)


def function_signature(prompt: str, function_name: str) -> str | None:
    """`def name(args) -> ret:` as written in the prompt, or None when it is not there."""
    tree = parse(prompt)
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name == function_name
            ):
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
                return f"{prefix} {function_name}({ast.unparse(node.args)}){returns}:"
    m = re.search(
        rf"(?m)^\s*((?:async\s+)?def\s+{re.escape(function_name)}\s*\(.*?\).*?:)\s*$",
        prompt,
        re.DOTALL,
    )
    return " ".join(m.group(1).split()) if m else None


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramLayout:
    """The composed program and where each part starts, to map program lines back to a part."""

    program: str
    # (role, first line in the program (1-based), number of lines) for each non-empty part
    parts: tuple[tuple[str, int, int], ...]

    def locate(self, line: int | None) -> tuple[str, int] | None:
        """(role, line within that part) for a 1-based program line, or None outside any part."""
        if line is None:
            return None
        for role, start, count in self.parts:
            if start <= line < start + count:
                return role, line - start + 1
        return None


def compose_layout(prompt: str, aux_code: str, main_code: str) -> ProgramLayout:
    """Compose the program (prompt context, aux, main) and remember where each part lies."""
    pieces = [
        (CONTEXT_ROLE, extract_prompt_context(prompt).strip("\n")),
        (AUX_ROLE, aux_code.strip("\n")),
        (MAIN_ROLE, main_code.strip("\n")),
    ]
    chunks: list[str] = []
    parts: list[tuple[str, int, int]] = []
    line = 1
    for role, text in pieces:
        if not text.strip():
            continue
        if chunks:
            line += _PART_SEPARATOR.count("\n")
        count = text.count("\n") + 1
        parts.append((role, line, count))
        chunks.append(text)
        line += count - 1
    program = _PART_SEPARATOR.join(chunks)
    return ProgramLayout(program + "\n" if program else "", tuple(parts))


def compose_program(prompt: str, aux_code: str, main_code: str) -> str:
    """The program the sandbox runs: the prompt's context, then the aux code, then the main code.

    Main comes last so that, should both parts define a name, main's definition wins.
    """
    return compose_layout(prompt, aux_code, main_code).program


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramFacts:
    """What the rewards and the feedback texts need to know about one aux + main program.

    `*_found`: a `def` of that name exists; `*_returns`: it has a `return <value>` (or `yield`)
    in its own body. A function counts as defined when both hold, as in the reference reward.
    `syntax_ok` is False when either part fails to compile or the main code is empty.
    """

    entry_point: str
    single_agent: bool  # the aux code is empty
    aux_found: bool
    aux_returns: bool
    main_found: bool
    main_returns: bool
    syntax_ok: bool
    # Lines and columns are relative to that agent's code, not to the composed program.
    aux_syntax_error: SyntaxErrorInfo | None = None
    main_syntax_error: SyntaxErrorInfo | None = None
    main_calls_aux: bool = False  # main (or a helper of main) calls or passes on `aux`
    main_redefines_aux: bool = False  # main's code defines its own `aux`, hiding the aux agent's
    main_is_thin_wrapper: bool = False
    aux_result_ignored: bool = False
    ignored_aux_calls: tuple[int, ...] = ()  # lines in the main code

    @property
    def aux_defined(self) -> bool:
        return self.aux_found and self.aux_returns

    @property
    def main_defined(self) -> bool:
        return self.main_found and self.main_returns

    @property
    def syntax_error(self) -> SyntaxErrorInfo | None:
        return self.aux_syntax_error or self.main_syntax_error

    @property
    def syntax_error_role(self) -> str | None:
        if self.aux_syntax_error is not None:
            return AUX_ROLE
        return MAIN_ROLE if self.main_syntax_error is not None else None

    @property
    def runnable(self) -> bool:
        """Worth running in the sandbox: the reward's first two gates are passed."""
        return self.main_defined and self.syntax_ok


def _check_syntax(code: str, filename: str) -> SyntaxErrorInfo | None:
    if not code.strip():
        return None
    try:
        # compile, not ast.parse: also catches `return` outside a function and the like.
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return SyntaxErrorInfo(
            message=exc.msg or "invalid syntax",
            line=exc.lineno,
            column=exc.offset,
            text=exc.text.rstrip("\n") if exc.text else None,
        )
    except ValueError as exc:  # null bytes
        return SyntaxErrorInfo(message=str(exc), line=None, column=None)
    return None


def _top_functions(tree: ast.Module) -> dict[str, FunctionNode]:
    out: dict[str, FunctionNode] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = node  # the last definition wins
    return out


def _own_nodes(func: FunctionNode) -> Iterator[ast.AST]:
    """Nodes of a function's body, not descending into nested functions, lambdas or classes."""
    todo: list[ast.AST] = list(func.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        todo.extend(ast.iter_child_nodes(node))


def _returns_value(func: FunctionNode) -> bool:
    return any(
        (isinstance(n, ast.Return) and n.value is not None)
        or isinstance(n, ast.Yield | ast.YieldFrom)
        for n in _own_nodes(func)
    )


def _text_defines(code: str, name: str) -> bool:
    return def_pattern(name).search(code) is not None


def _binds_locally(func: FunctionNode, name: str) -> bool:
    """`name` is a parameter of `func` or assigned/defined inside it (shadowing the global)."""
    args = func.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    if any(p is not None and p.arg == name for p in params):
        return True
    for node in _own_nodes(func):
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name == name
        ):
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name) == name:
            return True
    return False


def _reachable(entry: FunctionNode, functions: dict[str, FunctionNode]) -> list[FunctionNode]:
    """The entry function and the top-level functions of the same code it uses, transitively."""
    out = [entry]
    seen = {entry.name}
    i = 0
    while i < len(out):
        for used in sorted(names_used(out[i])):
            if used not in seen and used in functions:
                seen.add(used)
                out.append(functions[used])
        i += 1
    return out


def _parents(func: FunctionNode) -> dict[int, ast.AST]:
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(func):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return parents


def _carries_value(parent: ast.AST, node: ast.AST) -> bool:
    """`parent` only holds `node`'s value, so whether it is used is decided further up."""
    if isinstance(parent, ast.ListComp | ast.SetComp | ast.GeneratorExp):
        return node is parent.elt
    return isinstance(parent, ast.Tuple | ast.List | ast.Set | ast.Starred | ast.Await)


def _name_read_later(
    func: FunctionNode, stmt: ast.stmt, names: set[str], parents: dict[int, ast.AST]
) -> bool:
    """Is any of `names` read after `stmt`, or anywhere in a loop that encloses `stmt`?"""
    end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
    loop: ast.AST | None = None
    node: ast.AST | None = stmt
    while node is not None and node is not func:
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            loop = node
        node = parents.get(id(node))
    for n in ast.walk(func):
        if not (isinstance(n, ast.Name) and n.id in names and isinstance(n.ctx, ast.Load)):
            continue
        if (n.lineno, n.col_offset) >= end:
            return True
        if loop is not None and any(n is x for x in ast.walk(loop)):
            return True
    return False


def _ignored_calls(func: FunctionNode, aux_name: str) -> list[int]:
    """Lines of calls to aux whose value is thrown away.

    A call's value is discarded when, climbing through containers and comprehensions that merely
    carry it, one reaches an expression statement (`aux(x)`, `[aux(v) for v in xs]`), or an
    assignment whose target names are never read afterwards (`r = aux(x)` then no use of `r`,
    `_ = aux(x)`). Attribute/subscript targets, augmented assignments and any other expression
    (arguments, conditions, returns) count as uses.
    """
    parents = _parents(func)
    lines: list[int] = []
    for call in ast.walk(func):
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == aux_name
        ):
            continue
        node: ast.AST = call
        parent = parents.get(id(node))
        while parent is not None and _carries_value(parent, node):
            node, parent = parent, parents.get(id(parent))
        if isinstance(parent, ast.Expr):
            lines.append(call.lineno)
        elif isinstance(parent, ast.Assign | ast.AnnAssign) and parent.value is node:
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            names: set[str] = set()
            simple = True
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute | ast.Subscript):
                        simple = False
                    elif isinstance(sub, ast.Name):
                        names.add(sub.id)
            if simple and not _name_read_later(func, parent, names, parents):
                lines.append(call.lineno)
    return sorted(set(lines))


def _pass_through(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Starred):
        return _pass_through(expr.value)
    return isinstance(expr, ast.Name | ast.Constant)


def _is_aux_call(expr: ast.expr | None, aux_name: str, *, any_args: bool = False) -> bool:
    if not (
        isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == aux_name
    ):
        return False
    if any_args:
        return True
    return all(_pass_through(a) for a in expr.args) and all(
        _pass_through(k.value) for k in expr.keywords
    )


def _is_thin_wrapper(func: FunctionNode, aux_name: str) -> bool:
    """The body (docstring and `pass` aside) only forwards to aux: `return aux(a, b)`,
    `r = aux(a, b); return r`, or a lone `aux(...)` call. Arguments must be passed through
    unchanged (names, constants, *args/**kwargs): `return aux(sorted(xs))` does work itself."""
    body = [
        s
        for s in func.body
        if not isinstance(s, ast.Pass)
        and not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    if len(body) == 1:
        stmt = body[0]
        if isinstance(stmt, ast.Return):
            return _is_aux_call(stmt.value, aux_name)
        if isinstance(stmt, ast.Expr):
            return _is_aux_call(stmt.value, aux_name, any_args=True)
        return False
    if len(body) == 2:
        first, second = body
        if (
            isinstance(first, ast.Assign)
            and len(first.targets) == 1
            and isinstance(first.targets[0], ast.Name)
            and _is_aux_call(first.value, aux_name)
            and isinstance(second, ast.Return)
            and isinstance(second.value, ast.Name)
            and second.value.id == first.targets[0].id
        ):
            return True
    return False


def _uses_name(funcs: list[FunctionNode], name: str) -> bool:
    for func in funcs:
        if _binds_locally(func, name):
            continue
        if any(
            isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
            for n in ast.walk(func)
        ):
            return True
    return False


def analyze_program(
    aux_code: str, main_code: str, entry_point: str, *, aux_name: str = AUX_NAME
) -> ProgramFacts:
    """Facts about cleaned aux and main code (see `replies.extract_function`).

    An empty `aux_code` means a single-agent program. The main function is looked up in the main
    code only: an entry point written by the aux agent does not count for the main agent.
    """
    single = not aux_code.strip()
    aux_err = _check_syntax(aux_code, "<aux>")
    main_err = _check_syntax(main_code, "<main>")
    # Empty main code is no syntax error, but no program either.
    syntax_ok = aux_err is None and main_err is None and bool(main_code.strip())

    aux_tree = parse(aux_code) if not single else None
    aux_found = aux_returns = False
    if not single:
        if aux_tree is not None:
            aux_fn = _top_functions(aux_tree).get(aux_name)
            aux_found = aux_fn is not None
            aux_returns = aux_fn is not None and _returns_value(aux_fn)
        else:
            aux_found = _text_defines(aux_code, aux_name)
            aux_returns = bool(
                re.search(r"\b(return\s*[^\s#;]|yield\b)", function_text(aux_code, aux_name))
            )

    main_tree = parse(main_code)
    if main_tree is None:
        text = function_text(main_code, entry_point)
        return ProgramFacts(
            entry_point=entry_point,
            single_agent=single,
            aux_found=aux_found,
            aux_returns=aux_returns,
            main_found=bool(text),
            main_returns=bool(re.search(r"\b(return\s*[^\s#;]|yield\b)", text)),
            syntax_ok=False,
            aux_syntax_error=aux_err,
            main_syntax_error=main_err,
            main_calls_aux=bool(re.search(rf"\b{re.escape(aux_name)}\s*\(", text)),
        )

    functions = _top_functions(main_tree)
    main_fn = functions.get(entry_point)
    redefines = aux_name in functions or any(
        isinstance(n, ast.ClassDef) and n.name == aux_name for n in main_tree.body
    )
    calls = thin = False
    ignored: list[int] = []
    # Computed for an empty aux too: "calls aux, but aux is missing" is worth telling the agent.
    if main_fn is not None:
        reachable = _reachable(main_fn, functions)
        calls = not redefines and _uses_name(reachable, aux_name)
        if calls:
            thin = _is_thin_wrapper(main_fn, aux_name)
            for fn in reachable:
                if not _binds_locally(fn, aux_name):
                    ignored.extend(_ignored_calls(fn, aux_name))
    return ProgramFacts(
        entry_point=entry_point,
        single_agent=single,
        aux_found=aux_found,
        aux_returns=aux_returns,
        main_found=main_fn is not None,
        main_returns=main_fn is not None and _returns_value(main_fn),
        syntax_ok=syntax_ok,
        aux_syntax_error=aux_err,
        main_syntax_error=main_err,
        main_calls_aux=calls,
        main_redefines_aux=redefines and not single,
        main_is_thin_wrapper=thin,
        aux_result_ignored=bool(ignored),
        ignored_aux_calls=tuple(sorted(set(ignored))),
    )


# ---------------------------------------------------------------------------------------------
# Running (the sandbox is imported lazily: analyzers must import without it)
# ---------------------------------------------------------------------------------------------


class SandboxLike(Protocol):
    def run_asserts(self, program: str, suite: AssertSuite) -> Verdict: ...

    def run_io(self, program: str, suite: IOSuite) -> Verdict: ...


def get_default_sandbox() -> SandboxLike:
    module = importlib.import_module("collabcoder.analyzers.sandbox")
    return cast(SandboxLike, module.default_sandbox())


def run_program(
    program: str, suite: AssertSuite | IOSuite, sandbox: SandboxLike | None = None
) -> Verdict:
    """Run a composed program against assert tests or stdin/stdout pairs."""
    box = sandbox if sandbox is not None else get_default_sandbox()
    if isinstance(suite, IOSuite):
        return box.run_io(program, suite)
    return box.run_asserts(program, suite)
