"""The cursor site: prefix and suffix from the server's copy of the document, the mode
(single line or a block) read off the code around the cursor, and the prompt-sized window.

Positions arrive in UTF-16 code units (LSP's default encoding); pygls' position codec turns
them into code points, so an emoji or CJK text before the cursor never shifts the split.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from collabcoder.analyzers.static import AnalysisContext

Mode = Literal["single", "multi"]

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
# How far back the bracket scan looks: a statement longer than this is rare and the cost of a
# wrong guess is one suggestion cut short.
SCAN_LINES = 200
CHARS_PER_TOKEN = 3.0  # code is dense; an underestimate keeps HTTP prompts inside the context


@dataclass(frozen=True)
class CursorSite:
    """Where the editor asks for a completion. `prefix`/`suffix` are the whole document around
    the cursor (what the analyzers judge); `prompt_prefix`/`prompt_suffix` the window the model
    sees. (The analyzers' own view of a candidate is an `AnalysisContext`.)"""

    uri: str
    path: str | None
    position: types.Position  # as the client sent it (UTF-16)
    prefix: str
    suffix: str
    mode: Mode
    prompt_prefix: str = ""
    prompt_suffix: str = ""

    @property
    def line_before(self) -> str:
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_after(self) -> str:
        end = self.suffix.find("\n")
        return self.suffix if end < 0 else self.suffix[:end]


@dataclass(frozen=True)
class EditorEnvironment:
    """What the analyzers need from the editor besides the document (not the training
    `Environment` of rollouts)."""

    workspace_root: str | None = None
    python: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)  # path -> unsaved text


def split_at(doc: TextDocument, position: types.Position) -> tuple[str, str]:
    """(prefix, suffix) of the document at a client (UTF-16) position. A line past the end is
    refused (an answer there would name a line that does not exist); a character past the end
    of its line is clamped to it."""
    source = doc.source
    lines = doc.lines
    # After a final newline (or in an empty document) the cursor can stand on one more line.
    line_count = len(lines) + (1 if not lines or lines[-1].endswith(("\n", "\r")) else 0)
    if position.line >= line_count:
        raise JsonRpcInvalidParams(
            f"position.line {position.line} is past the end of {doc.uri} ({line_count} lines)"
        )
    # The codec clamps `character` in place: give it a copy, keep the client's position intact.
    at = types.Position(line=position.line, character=position.character)
    server = doc.position_codec.position_from_client_units(lines, at)
    if position.line >= len(lines):  # the empty line after a final newline
        return source, ""
    offset = sum(len(line) for line in lines[: server.line]) + server.character
    return source[:offset], source[offset:]


def scan_brackets(code: str, stack: list[str] | None = None) -> tuple[list[str], int | None]:
    """Open brackets left after `code` (strings and comments skipped), and the index of the
    first closer that matches nothing (None if all match). Starts from `stack` if given."""
    stack = list(stack or [])
    i, n = 0, len(code)
    quote: str | None = None
    while i < n:
        ch = code[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if code.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if ch == "\n" and len(quote) == 1:
                quote = None  # an unterminated one-line string ends at the line end
            i += 1
            continue
        if ch == "#":
            end = code.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "'\"":
            quote = ch * 3 if code.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
            else:
                return stack, i
        i += 1
    return stack, None


def in_string_or_comment(line: str) -> bool:
    """Whether the end of `line` (the text before the cursor) is inside a string or comment."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif ch == "#":
            return True
        elif ch in "'\"":
            quote = ch * 3 if line.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        i += 1
    return quote is not None


@functools.lru_cache(maxsize=16)
def open_brackets(recent: str) -> tuple[str, ...]:
    """Brackets still open at the end of `recent` (cached: streaming asks for every line)."""
    return tuple(scan_brackets(recent)[0])


def recent_lines(prefix: str, count: int = SCAN_LINES) -> str:
    start = len(prefix)
    for _ in range(count):
        start = prefix.rfind("\n", 0, start)
        if start < 0:
            return prefix
    return prefix[start + 1 :]


def completion_mode(prefix: str, suffix: str) -> Mode:
    """Single line mid-line after text, inside brackets, strings and comments; a block at an
    empty line (inside a block, after a `:`, or at module level) and right after a `:`."""
    line_before = prefix[prefix.rfind("\n") + 1 :]
    newline = suffix.find("\n")
    line_after = suffix if newline < 0 else suffix[:newline]
    if in_string_or_comment(line_before):
        return "single"
    if line_after.strip() and not all(c in ")]}:,; \t" for c in line_after):
        return "single"  # text to the right of the cursor: finish this line only
    if open_brackets(recent_lines(prefix)):
        return "single"  # inside a call or literal: arguments, not statements
    stripped = line_before.strip()
    if stripped:
        return "multi" if stripped.endswith(":") else "single"
    return "multi"


def _tokenizer_offsets(tokenizer: Any, text: str) -> Sequence[tuple[int, int]] | None:
    if not getattr(tokenizer, "is_fast", False):
        return None
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["offset_mapping"])
    except Exception:  # an odd tokenizer: the character estimate will do
        return None


def trim_context(
    prefix: str, suffix: str, max_tokens: int, tokenizer: Any = None
) -> tuple[str, str]:
    """The window around the cursor the model sees: at most `max_tokens` tokens, three
    quarters before the cursor. Counted with the model's own tokenizer when there is one,
    estimated from characters otherwise; cut at line boundaries."""
    prefix_budget = max(16, max_tokens * 3 // 4)
    suffix_budget = max(0, max_tokens - prefix_budget)
    # Characters first (cheap, generous), then tokens on what is left.
    head = prefix[-int(prefix_budget * (8 if tokenizer is not None else CHARS_PER_TOKEN)) :]
    tail = suffix[: int(suffix_budget * (8 if tokenizer is not None else CHARS_PER_TOKEN))]
    if tokenizer is not None:
        offsets = _tokenizer_offsets(tokenizer, head)
        if offsets is not None and len(offsets) > prefix_budget:
            head = head[offsets[-prefix_budget][0] :]
        offsets = _tokenizer_offsets(tokenizer, tail)
        if offsets is not None and len(offsets) > suffix_budget:
            tail = tail[: offsets[suffix_budget - 1][1]] if suffix_budget else ""
    if len(head) < len(prefix):  # start at a line start, not mid-line
        cut = head.find("\n")
        head = head[cut + 1 :] if 0 <= cut < len(head) - 1 else head
        head = _snap_start(prefix, head)
    if len(tail) < len(suffix):
        cut = tail.rfind("\n")
        tail = tail[:cut] if cut > 0 else tail
    return head, tail


WINDOW_STEP_LINES = 16


def _snap_start(prefix: str, head: str) -> str:
    """Move the window's first line down to a multiple of `WINDOW_STEP_LINES`, so that it
    stays put while the user types: a window that slid a line at every new line changed the
    prompt's first tokens, and the backend's KV cache (llama.cpp's) could keep nothing."""
    dropped = prefix.count("\n", 0, len(prefix) - len(head))
    snapped = -(-dropped // WINDOW_STEP_LINES) * WINDOW_STEP_LINES
    if snapped == dropped:
        return head
    lines = head.split("\n")
    keep = lines[snapped - dropped :]
    return "\n".join(keep) if len(keep) > 1 else head


def document_path(doc: TextDocument) -> str | None:
    """The file behind a document; None for unsaved `untitled:` buffers."""
    return doc.path if doc.uri.startswith("file:") else None


def make_site(
    doc: TextDocument,
    position: types.Position,
    context_tokens: int,
    tokenizer: Any = None,
    around: tuple[str, str] | None = None,
) -> CursorSite:
    """The site at a client (UTF-16) position, its prompt window `context_tokens` long.
    `around`: the (prefix, suffix) split when the caller already made it."""
    prefix, suffix = around if around is not None else split_at(doc, position)
    prompt_prefix, prompt_suffix = trim_context(prefix, suffix, context_tokens, tokenizer)
    return CursorSite(
        uri=doc.uri,
        path=document_path(doc),
        position=types.Position(line=position.line, character=position.character),
        prefix=prefix,
        suffix=suffix,
        mode=completion_mode(prefix, suffix),
        prompt_prefix=prompt_prefix,
        prompt_suffix=prompt_suffix,
    )


def analysis_context(
    site: CursorSite, env: EditorEnvironment, completion: str = ""
) -> AnalysisContext:
    """What the analyzers judge: `completion` in place in the whole document."""
    return AnalysisContext(
        prefix=site.prefix,
        completion=completion,
        suffix=site.suffix,
        document_path=site.path,
        workspace_root=env.workspace_root,
        python_executable=env.python or None,
        overrides=dict(env.overrides),
    )
