"""From a model's text to what is shown at the cursor (Continue/Tabby-style clean-up).

In order: one line only in single-line mode; stop where the text runs into the code below the
cursor; stop where it leaves the cursor's block; cut at a closing bracket that matches nothing;
drop trailing lines that repeat the lines below; strip the overlap with the rest of the line;
close brackets a single line opened; trailing whitespace off. An empty result means "show
nothing".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collabcoder.server.loop.messages import trim_to_block
from collabcoder.server.lsp.context import (
    OPENERS,
    Mode,
    in_string_or_comment,
    open_brackets,
    recent_lines,
    scan_brackets,
)

MAX_LINES = 40
REPEAT_WINDOW = 3  # lines below the cursor a trailing completion line may not repeat
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_OVERLAP_SINGLE = frozenset(")]}:,;\"'")


@dataclass(frozen=True)
class Cleaned:
    text: str
    truncated: bool  # something was cut: the model went past what is wanted (stop streaming)


def _norm(line: str) -> str:
    return " ".join(line.split())


def _below(suffix: str, count: int) -> list[str]:
    """The first `count` non-blank lines after the cursor's line."""
    out: list[str] = []
    for line in suffix.split("\n")[1:]:
        if line.strip():
            out.append(_norm(line))
            if len(out) == count:
                break
    return out


def _line_overlap(text: str, line_after: str) -> int:
    """How many characters at the end of `text` the rest of the line already holds."""
    rest = line_after.rstrip()
    for k in range(min(len(text), len(rest)), 0, -1):
        if text.endswith(rest[:k]) and (k >= 2 or rest[0] in _OVERLAP_SINGLE):
            return k
    return 0


def _cut_at_unmatched_closer(text: str, prefix: str) -> tuple[str, bool]:
    _, bad = scan_brackets(text, list(open_brackets(recent_lines(prefix))))
    if bad is None:
        return text, False
    return text[:bad], True


def _close_brackets(text: str, prefix: str) -> str:
    """Close what the text itself opened (a single line cut short by the token limit)."""
    before = list(open_brackets(recent_lines(prefix)))
    after, _ = scan_brackets(text, before)
    if len(after) <= len(before) or after[: len(before)] != before:
        return text
    return text + "".join(OPENERS[b] for b in reversed(after[len(before) :]))


def fit_to_cursor(text: str, prefix: str, suffix: str, mode: Mode) -> Cleaned:
    """The model's text cut and trimmed to what belongs at the cursor (see the module doc)."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    truncated = False
    newline = suffix.find("\n")
    line_after = suffix if newline < 0 else suffix[:newline]
    line_before = prefix[prefix.rfind("\n") + 1 :]
    in_literal = in_string_or_comment(line_before)

    if line_before.endswith((" ", "\t")) and re.match(r" \S", text):
        # " list(...)" after "return ": the model's word token carries its space, but the
        # cursor already stands after one (prompts that end in a space or an indentation).
        text = text[1:]
    if mode == "single":
        if "\n" in text:
            text, truncated = text[: text.index("\n")], True
    else:
        if not line_before.strip() and text.startswith("\n"):
            text = text.lstrip("\n")  # a blank first line: the cursor already sits on one
            if line_before and text.startswith(line_before):
                text = text[len(line_before) :]
        lines = text.split("\n")
        below = _below(suffix, 1)
        first_below = below[0] if below else _norm(line_after)
        for i, line in enumerate(lines):
            candidate = _norm(line if i else line_before + line)
            if first_below and candidate == first_below:
                lines, truncated = lines[:i], True  # ran into the code below the cursor
                break
        if len(lines) > MAX_LINES:
            lines, truncated = lines[:MAX_LINES], True
        text = "\n".join(lines)
        trimmed = trim_to_block(prefix, text)
        if len(trimmed) < len(text.rstrip()):
            truncated = True
        text = trimmed

    if not in_literal:
        text, cut = _cut_at_unmatched_closer(text, prefix)
        truncated = truncated or cut

    if mode == "multi":
        lines = text.rstrip().split("\n")
        repeated = set(_below(suffix, REPEAT_WINDOW))
        while len(lines) > 1 and _norm(lines[-1]) and _norm(lines[-1]) in repeated:
            lines.pop()
            truncated = True
        text = "\n".join(line.rstrip() for line in lines)

    if line_after.strip():
        k = _line_overlap(text, line_after)
        if k:
            text = text[: len(text) - k]
        rest = line_after.strip()
        if len(rest) >= 2 and rest in text:  # the model wrote the rest of the line and more
            text, truncated = text[: text.index(rest)], True
    elif mode == "single" and not in_literal:
        text = _close_brackets(text, prefix)

    text = text.rstrip()
    if not text.strip():
        return Cleaned("", truncated)
    return Cleaned(text, truncated)


__all__ = ["Cleaned", "fit_to_cursor"]
