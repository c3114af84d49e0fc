"""The loop's model messages, and how a reply becomes the text inserted at the cursor.

The texts themselves (system prompt, user turns, the FIM feedback comment) are in
`collabcoder.analyzers.protocol.prompts`, and replies are read with its one fence parser
(`replies.extract_code`); this module builds the conversations and aligns replies with what the
user typed. Two prompt styles:
- `chat` (instruct models): the code with a cursor marker; the model replies with the code from
  the start of the current function (or just the continuation) in a fenced block, and
  `continuation_from_reply` aligns that with the prefix to find what goes after the cursor.
  With a backend that continues a trailing assistant message (`supports_prefill`), the reply is
  prefilled with a code fence and the code from the enclosing function down to the cursor, so
  the model can only continue at the cursor: small instruct models otherwise rewrite the whole
  function, which cannot always be aligned with what the user typed.
- `fim` (base coder models): a fill-in-the-middle prompt; feedback cannot be a conversation
  turn, so it goes into the prefix as comments above the cursor's statement
  (`prompts.fim_feedback_prefix`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from collabcoder.analyzers.protocol.prompts import (
    CURSOR,
    SYSTEM_PROMPT,
    FeedbackVariant,
    feedback_user_message,
    first_user_message,
)
from collabcoder.analyzers.protocol.replies import extract_code

PromptStyle = Literal["chat", "fim"]


def _norm(line: str) -> str:
    return " ".join(line.split())


def continuation_from_reply(prefix: str, reply: str) -> str:
    """What the reply adds after the cursor.

    The reply usually restates the cursor's line (and maybe earlier lines) before continuing;
    find the last prefix line in the reply and keep what follows. A reply that restates nothing
    is the continuation itself.
    """
    code = extract_code(reply).replace(CURSOR, "")
    reply_lines = code.split("\n")
    prefix_lines = prefix.split("\n")
    cursor_text = prefix_lines[-1]
    # 1. The cursor line restated, e.g. prefix ends "    return sor", reply has "    return sorted(x)".
    if cursor_text.strip():
        for i in range(len(reply_lines) - 1, -1, -1):
            if _norm(reply_lines[i]).startswith(_norm(cursor_text)) and reply_lines[i].strip():
                tail = _tail_after(reply_lines[i], cursor_text)
                if tail is not None:
                    return "\n".join([tail, *reply_lines[i + 1:]]).rstrip()
    # 2. The cursor sits at a line start: find the last non-empty prefix line in the reply.
    previous = [ln for ln in prefix_lines[:-1] if ln.strip()]
    if previous:
        anchor = _norm(previous[-1])
        for i in range(len(reply_lines) - 1, -1, -1):
            if _norm(reply_lines[i]) == anchor:
                rest = reply_lines[i + 1:]
                if cursor_text.strip() and rest and _norm(cursor_text).startswith(_norm(rest[0])):
                    return ""  # the reply restates the typed line and stops: nothing new
                return _strip_indent_prefix("\n".join(rest), cursor_text).rstrip()
    return _strip_indent_prefix(code, cursor_text).rstrip()


def trim_to_block(prefix: str, completion: str) -> str:
    """Cut the completion where it leaves the function the cursor is in (example calls, tests
    and `__main__` blocks that chat models append at module level). Outside a function, cut
    where it leaves the cursor's block."""
    prefix_lines = prefix.split("\n")
    cursor_line = prefix_lines[-1]
    indent = len(cursor_line) - len(cursor_line.lstrip())
    limit = indent - 1  # lines indented at most this much have left the block
    for line in reversed(prefix_lines[:-1]):
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped.startswith(("def ", "async def ")) and depth < max(indent, 1):
            limit = depth
            break
    if limit < 0:
        return completion.rstrip()
    lines = completion.split("\n")
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and len(line) - len(line.lstrip()) <= limit:
            return "\n".join(lines[:i]).rstrip()
    return completion.rstrip()


def _tail_after(reply_line: str, cursor_text: str) -> str | None:
    """The part of `reply_line` after the characters of `cursor_text` (whitespace-tolerant)."""
    want = cursor_text.lstrip()
    pos = reply_line.find(want)
    if pos < 0:
        return None
    return reply_line[pos + len(want):]


def _strip_indent_prefix(text: str, cursor_text: str) -> str:
    """The cursor already stands after `cursor_text` (indentation): don't insert it twice."""
    if cursor_text and not cursor_text.strip() and text.startswith(cursor_text):
        return text[len(cursor_text):]
    return text.lstrip("\n") if not cursor_text else text


@dataclass(frozen=True)
class PromptParts:
    """Everything the prompt builders need about one completion site."""

    prefix: str
    suffix: str = ""
    system_prompt: str = SYSTEM_PROMPT
    style: PromptStyle = "chat"
    prefill: bool = False  # start the reply with the code up to the cursor (see module doc)


PREFILL_FENCE = "```python\n"


def prefill_text(prefix: str, max_lines: int = 40) -> str:
    """The reply's start: a fence, then the prefix from the enclosing top-level statement (a
    function, a class) or the last `max_lines` lines, down to the cursor.

    When the cursor stands in the indentation of an empty line, the prefill stops one character
    short of it ("token healing"): BPE tokenizers glue the last space to the next word
    (`   ` + ` return`), so a prefill ending in the whole indentation leaves the model at a
    token boundary it rarely saw. SmolLM2 answered nothing, or a new function, for 10 of 12
    HumanEval prompts prefilled with the full indentation. `align_to_cursor` takes the
    character the model writes back off.
    """
    if prefix.split("\n")[-1].strip() == "" and prefix.endswith((" ", "\t")):
        prefix = prefix[:-1]
    lines = prefix.split("\n")
    return PREFILL_FENCE + "\n".join(lines[prefill_start(lines, max_lines) :])


def prefill_start(lines: list[str], max_lines: int = 40) -> int:
    """The prefix line a prefilled reply starts at: the enclosing top-level statement (with its
    decorators), or `max_lines` up."""
    start = max(0, len(lines) - max_lines)
    for i in range(len(lines) - 1, start - 1, -1):
        if lines[i][:1] not in ("", " ", "\t", "#", ")", "]", "}") and not lines[i].startswith(
            ("@",)
        ):
            start = i
            while start > 0 and lines[start - 1].startswith("@"):  # keep decorators
                start -= 1
            break
    return start


def prefilled_continuation(reply: str) -> str | None:
    """The continuation in a reply to a prefilled request, or None when the backend answered
    afresh (a new fenced block) instead of continuing."""
    if "```python" in reply or reply.lstrip().startswith("```"):
        return None
    return reply.split("\n```")[0].split("```")[0]


def align_to_cursor(prefix: str, text: str) -> str:
    """The cursor already stands after the indentation of an empty line: a continuation that
    opens with a line break starts on that line instead of leaving a blank one, and the
    indentation the model writes on the cursor's line (`prefill_text` left it the last
    character) is the cursor's own."""
    cursor_text = prefix.split("\n")[-1]
    if cursor_text.strip() or not cursor_text:
        return text
    if text.startswith("\n"):
        body = text.lstrip("\n")
        # less indented than the cursor: it left the block, which trim_to_block cuts
        return body[len(cursor_text):] if body.startswith(cursor_text) else text
    return text.lstrip(" \t")


def drop_cursor_marker(reply: str) -> str:
    """Remove an echoed cursor marker, and a partial one where the token limit cut the reply."""
    reply = reply.replace(CURSOR, "")
    for k in range(len(CURSOR) - 1, 1, -1):
        if reply.endswith(CURSOR[:k]):
            return reply[:-k]
    return reply


def completion_from_reply(prefix: str, reply: str, prefilled: bool) -> str:
    """The text a chat reply inserts at the cursor: the continuation of a prefilled reply, or
    the part of a fresh reply after the code already typed; cut at the end of the function."""
    reply = drop_cursor_marker(reply)
    continued = prefilled_continuation(reply) if prefilled else None
    if continued is not None:
        continued = align_to_cursor(prefix, continued)
    else:
        continued = continuation_from_reply(prefix, reply)
    return trim_to_block(prefix, continued)


def shown_prefix(parts: PromptParts) -> str:
    """The prefix the user message shows. With a prefilled reply, the code the prefill carries
    (the enclosing function down to the cursor) is shown there only: typing in a function
    then changes the prompt's last tokens alone, and the backend's KV cache (llama.cpp's)
    keeps the rest. Before, every keystroke evaluated the suffix and the prefill again."""
    if not parts.prefill:
        return parts.prefix
    lines = parts.prefix.split("\n")
    start = prefill_start(lines)
    return "\n".join(lines[:start]) + "\n" if start else ""


def first_user_content(parts: PromptParts) -> str:
    return first_user_message(shown_prefix(parts), parts.suffix)


def first_messages(parts: PromptParts) -> tuple[dict[str, str], ...]:
    messages = (
        {"role": "system", "content": parts.system_prompt},
        {"role": "user", "content": first_user_content(parts)},
    )
    if parts.prefill:
        return (*messages, {"role": "assistant", "content": prefill_text(parts.prefix)})
    return messages


def feedback_messages(parts: PromptParts, history: Sequence[dict[str, str]], attempt: str,
                      feedback: str, variant: FeedbackVariant) -> tuple[dict[str, str], ...]:
    turn = {"role": "user",
            "content": feedback_user_message(feedback, variant, attempt, shown_prefix(parts),
                                             parts.suffix)}
    prefill = ({"role": "assistant", "content": prefill_text(parts.prefix)},) if parts.prefill \
        else ()
    if variant == "coworker":
        return (*history, turn, *prefill)
    return ({"role": "system", "content": parts.system_prompt}, turn, *prefill)
