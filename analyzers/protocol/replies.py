"""Reading model replies: the code in a reply, one function of it, the expert's edits.

Model replies are messy (fences, prose, <think> blocks, chat special tokens, repeated
signatures, test code after the function). `extract_code` is the one fence parser of the
project (the loop's replies go through it too); `extract_function` pulls one definition, with
the helpers it needs, out of a reply; `parse_expert_reply` reads the expert's JSON edits.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from collabcoder.analyzers.protocol.program import AUX_ROLE
from collabcoder.analyzers.protocol.source import (
    ANY_DEF,
    IMPORT_LINE,
    block,
    dedupe,
    def_pattern,
    indent_of,
    is_stub,
    names_used,
    parse,
    segment,
)

# ---------------------------------------------------------------------------------------------
# Fenced code
# ---------------------------------------------------------------------------------------------

# A fence opens a line (after any indentation) and may carry a tag and more words, or follows
# prose on its line ("Here it is: ```python") and then carries only a tag. The block ends at a
# line holding only the same fence, or at the end of the reply (cut by a token limit).
_FENCE = re.compile(
    r"(?:^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*|(`{3,}|~{3,})[ \t]*([\w+-]*)[ \t]*)\n"
    r"(.*?)(?:(^[ \t]*(?:\1|\3)[ \t]*$)|\Z)",
    re.DOTALL | re.MULTILINE,
)
_FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})")
PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3", "ipython", "pycon", "sage"})


def code_blocks(reply: str, tags: Collection[str] = PYTHON_TAGS) -> list[str]:
    """The fenced blocks of a reply tagged with one of `tags` ("" for untagged), in order,
    without their fences."""
    blocks = []
    for m in _FENCE.finditer(reply):
        tag, body, closed = m.group(2) or m.group(4) or "", m.group(5), m.group(6) is not None
        if tag.lower() in tags:
            blocks.append(body[:-1] if closed and body.endswith("\n") else body)
    return blocks


def extract_code(reply: str) -> str:
    """The content of the last Python (or untagged) fenced block; the whole reply otherwise."""
    blocks = code_blocks(reply)
    return blocks[-1] if blocks else reply


# ---------------------------------------------------------------------------------------------
# One function out of a reply
# ---------------------------------------------------------------------------------------------

_SPECIAL_TOKENS = re.compile(r"<\|[^|<>\n]{1,40}\|>|<｜[^｜<>\n]{1,40}｜>|</s>|<s>|<eos>|<pad>")
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
_LEADING_WS = re.compile(r"^[ \t]+", re.MULTILINE)


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Leading tabs only (string literals keep theirs), at Python's own tab size of 8.
    text = _LEADING_WS.sub(lambda m: m.group(0).expandtabs(8), text)
    text = _THINK.sub("", text)
    return _SPECIAL_TOKENS.sub("", text)


def _code_sources(text: str) -> list[str]:
    """Candidate code: each Python fenced block (last first), then the text without fences."""
    unfenced = "\n".join(ln for ln in text.split("\n") if not _FENCE_LINE.match(ln))
    return [*reversed(code_blocks(text)), unfenced]


def _dedent_by(text: str, amount: int) -> str:
    if amount <= 0:
        return text
    out = []
    for line in text.split("\n"):
        out.append(line[amount:] if line[:amount].strip() == "" else line.lstrip(" "))
    return "\n".join(out)


@dataclass
class _Extracted:
    text: str
    parses: bool
    stub: bool


def _rank(candidates: list[_Extracted]) -> _Extracted | None:
    """Prefer the last full definition that parses, then the last full one, then the last."""
    for want in ((True, False), (None, False)):
        for cand in reversed(candidates):
            if (want[0] is None or cand.parses == want[0]) and cand.stub == want[1]:
                return cand
    return candidates[-1] if candidates else None


def _extract_ast(src: str, name: str, exclude: Collection[str]) -> str | None:
    tree = parse(src)
    if tree is None:
        return None
    lines = src.split("\n")
    defs: dict[str, ast.stmt] = {}
    assigns: dict[str, ast.stmt] = {}
    targets: list[_Extracted] = []
    target_nodes: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name and not isinstance(node, ast.ClassDef):
                targets.append(_Extracted(segment(lines, node), True, is_stub(node)))
                target_nodes.append(node)
            else:
                defs[node.name] = node  # the last definition wins, as in Python
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            tgts = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in tgts:
                if isinstance(t, ast.Name):
                    assigns[t.id] = node
    best = _rank(targets)
    if best is None:
        return None
    target = target_nodes[targets.index(best)]
    # Helpers the target needs, transitively; test code and demo calls are left behind.
    chosen: dict[int, ast.stmt] = {}
    todo = [target]
    seen = {name, *exclude}
    while todo:
        for used in sorted(names_used(todo.pop())):
            if used in seen:
                continue
            seen.add(used)
            dep = defs.get(used) or assigns.get(used)
            if dep is not None and id(dep) not in chosen:
                chosen[id(dep)] = dep
                todo.append(dep)
    chosen[id(target)] = target
    imports = dedupe(
        segment(lines, n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)
    )
    body = [segment(lines, n) for n in tree.body if id(n) in chosen]
    parts = (["\n".join(imports)] if imports else []) + body
    return "\n\n\n".join(p.rstrip() for p in parts)


def _extract_lines(src: str, name: str, exclude: Collection[str]) -> str | None:
    """Fallback for code that does not parse: indentation-based blocks."""
    lines = src.split("\n")
    pattern = def_pattern(name)
    candidates: list[_Extracted] = []
    spans: list[tuple[int, int, int]] = []
    for i, line in enumerate(lines):
        m = pattern.match(line)
        if m is None:
            continue
        start, end = block(lines, i)
        indent = len(m.group(1))
        text = _dedent_by("\n".join(lines[start:end]), indent)
        tree = parse(text)
        stub = False
        if tree is not None and tree.body:
            last = tree.body[-1]
            stub = isinstance(last, ast.FunctionDef | ast.AsyncFunctionDef) and is_stub(last)
        candidates.append(_Extracted(text, tree is not None, stub))
        spans.append((start, end, indent))
    best = _rank(candidates)
    if best is None:
        return None
    start, end, indent = spans[candidates.index(best)]
    # Other definitions at the same indentation that the target mentions by name.
    others: dict[str, tuple[int, int]] = {}
    for i, line in enumerate(lines):
        m = ANY_DEF.match(line)
        if m and len(m.group(1)) == indent and m.group(2) != name and not (start <= i < end):
            others[m.group(2)] = block(lines, i)
    chosen: set[tuple[int, int]] = set()
    todo = [best.text]
    seen = {name, *exclude}
    while todo:
        words = set(re.findall(r"[A-Za-z_]\w*", todo.pop()))
        for word in sorted(words & set(others) - seen):
            seen.add(word)
            span = others[word]
            chosen.add(span)
            todo.append("\n".join(lines[span[0] : span[1]]))
    imports = dedupe(
        ln.strip()
        for ln in lines
        if indent_of(ln) == indent and IMPORT_LINE.match(ln.strip()) and parse(ln.strip())
    )
    blocks = sorted([*chosen, (start, end)])
    body = [_dedent_by("\n".join(lines[s:e]), indent) for s, e in blocks]
    parts = (["\n".join(imports)] if imports else []) + body
    return "\n\n\n".join(p.rstrip() for p in parts)


def _extract(src: str, name: str, exclude: Collection[str]) -> str | None:
    if not def_pattern(name).search(src):
        return None
    found = _extract_ast(src, name, exclude)
    return found if found is not None else _extract_lines(src, name, exclude)


def _body_only(source: str) -> bool:
    """Starts indented: a continuation of the prompt (possibly opening with a nested helper)."""
    first = next((ln for ln in source.split("\n") if ln.strip()), "")
    return first.startswith((" ", "\t"))


def extract_function(
    text: str, function_name: str, *, exclude: Collection[str] = (), prompt: str | None = None
) -> str:
    """The definition of `function_name` pulled out of a model reply, or "" when there is none.

    Handles ```python fences (the last block that defines the function wins), prose around the
    code, chat special tokens and <think> blocks, a signature repeated from the prompt (the last
    full definition wins over stubs), and trailing junk (example calls, tests, `__main__`
    blocks). Top-level helpers and constants the function uses, and the reply's imports, are
    kept; names in `exclude` never are (the main agent's reply must not replace `aux`). With
    `prompt`, a reply that is only an indented body (a base model continuing the prompt) is
    joined to the prompt's signature. Code that does not parse is cut by indentation, so a broken
    function stays visible (a syntax error) rather than looking missing.
    """
    if not text or not function_name:
        return ""
    text = _normalize(text)
    sources = _code_sources(text)
    for src in sources:
        found = _extract(src, function_name, exclude)
        if found is not None:
            return found.strip("\n")
    if prompt:
        stub = _extract_lines(_normalize(prompt), function_name, ())
        if stub is not None:
            for src in sources:
                if _body_only(src):
                    joined = f"{stub.rstrip()}\n{src.rstrip()}"
                    found = _extract(joined, function_name, exclude)
                    if found is not None:
                        return found.strip("\n")
    return ""


# ---------------------------------------------------------------------------------------------
# The expert's edits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpertEdits:
    """Edits the expert proposed per role; `parsed` is False when its reply held no JSON."""

    aux: str = ""
    main: str = ""
    parsed: bool = True

    def for_role(self, role: str) -> str:
        return self.aux if role == AUX_ROLE else self.main


def _json_objects(text: str) -> Iterator[str]:
    """Balanced {...} spans of `text` (strings respected), in order of their start."""
    for start in [i for i, c in enumerate(text) if c == "{"]:
        depth, in_str, escaped = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : i + 1]
                    break


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_expert_reply(text: str) -> ExpertEdits:
    """The edits in the expert's reply: the last JSON object with an "aux" or "main" key.

    Fenced ```json blocks are read first. A reply without such an object gives empty edits with
    `parsed=False` (the next turn then says the reviewer proposed no edits).
    """
    fenced = code_blocks(text, ("", "json"))
    for source in [*reversed(fenced), text]:
        found: dict[str, object] | None = None
        for candidate in _json_objects(source):
            try:
                obj = json.loads(candidate)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and ({"aux", "main"} & set(obj)):
                found = obj
        if found is not None:
            return ExpertEdits(_as_text(found.get("aux")), _as_text(found.get("main")))
    return ExpertEdits(parsed=False)
