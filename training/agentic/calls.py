"""The one text format of tool calls and tool responses, for rendering and for parsing.

The hermes / Qwen2.5 format, which Qwen2.5's own chat template emits for `tool_calls`:

    <tool_call>
    {"name": "code_interpreter", "arguments": {"code": "...", "test_case_index": 0}}
    </tool_call>

and a tool's reply, as the fallback format puts it in a user message (Qwen2.5's template does
the same for `role: tool` messages):

    <tool_response>
    Test case 0 of 3: PASSED ...
    </tool_response>

Parsing is written here (not taken from transformers or TRL) because it must tell the caller
*why* a call is malformed, so that the tool can answer it and count it; the libraries' parsers
drop or raise on a bad call.

The final answer (`final_answer`): the last ```python (or untagged) fenced block that comes
after the last tool call, i.e. code the model writes once it is done calling the tool. A reply
with no tool call at all has its last fenced block as the answer. Code inside a tool call is
never the final answer, and a reply that ends with a tool call has none.

Every malformed block carries a `reason` code as well as its message, so that evaluation can
count why calls fail (`PARSE_REASONS`; the tool adds the argument-level ones). A reply with no
`<tool_call>` block whose text still looks like a call (`looks_like_call`: JSON with
`"arguments"`, the tool's name as a call, a misspelled tag) is counted as `no_call_format`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collabcoder.analyzers.protocol.replies import code_blocks

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESPONSE_OPEN = "<tool_response>"
RESPONSE_CLOSE = "</tool_response>"

# A call runs to its closing tag, or to the end of the text when generation stopped on the
# closing tag (a stop string is not part of the output) or ran out of tokens.
_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|\Z)", re.DOTALL)

# Why a `<tool_call>` block is malformed (`ParsedCall.reason`).
EMPTY_CALL = "empty_call"
BAD_JSON = "bad_json"
TRUNCATED_CALL = "truncated_call"  # no closing tag and the JSON stops short: out of tokens
NOT_OBJECT = "not_object"
MISSING_NAME = "missing_name"
UNKNOWN_KEY = "unknown_key"  # keys besides name/arguments, e.g. `code` beside `name`
PARSE_REASONS = (EMPTY_CALL, BAD_JSON, TRUNCATED_CALL, NOT_OBJECT, MISSING_NAME, UNKNOWN_KEY)
NO_CALL_FORMAT = "no_call_format"  # call-like text outside any `<tool_call>` block


@dataclass(frozen=True)
class ParsedCall:
    """One `<tool_call>` block of model output."""

    name: str | None  # None when the block could not be decoded
    arguments: dict[str, Any] | None  # None when malformed
    raw: str  # the text between the tags
    error: str | None = None  # why the call is malformed; None for a well-formed call
    start: int = 0  # character span of the whole block in the parsed text
    end: int = 0
    reason: str | None = None  # `error` as a code (PARSE_REASONS)

    @property
    def ok(self) -> bool:
        return self.error is None


def render_tool_call(name: str, arguments: Mapping[str, Any]) -> str:
    """The text of one call, as the model writes it (no trailing newline)."""
    payload = json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{payload}\n{CALL_CLOSE}"


def render_tool_response(text: str) -> str:
    """A tool's reply wrapped for the fallback format (in a user message)."""
    return f"{RESPONSE_OPEN}\n{text}\n{RESPONSE_CLOSE}"


def parse_tool_calls(text: str) -> list[ParsedCall]:
    """Every `<tool_call>` block of `text`, in order, malformed ones included (with `error`)."""
    calls = []
    for m in _CALL.finditer(text):
        raw = m.group(1)
        closed = m.group(0).endswith(CALL_CLOSE)
        calls.append(_decode(raw.strip(), m.start(), m.end(), closed))
    return calls


def _decode(raw: str, start: int, end: int, closed: bool = True) -> ParsedCall:
    def bad(error: str, reason: str, name: str | None = None) -> ParsedCall:
        return ParsedCall(name, None, raw, error, start, end, reason)

    if not raw:
        return bad("the tool call is empty", EMPTY_CALL)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        # Unclosed, and the JSON breaks off at its end (or inside a string): cut short.
        cut = not closed and (exc.pos >= len(raw) or exc.msg.startswith("Unterminated string"))
        return bad(f"the tool call is not valid JSON ({exc})", TRUNCATED_CALL if cut else BAD_JSON)
    if not isinstance(obj, dict):
        return bad(f"the tool call must be a JSON object, got {type(obj).__name__}", NOT_OBJECT)
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return bad("the tool call has no tool `name`", MISSING_NAME)
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        return bad(f"the tool call has unknown key(s) {', '.join(extra)}", UNKNOWN_KEY, name)
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI's wire form: arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return bad(f"the tool call's arguments are not valid JSON ({exc})", BAD_JSON, name)
    if not isinstance(arguments, dict):
        return bad(
            f"the tool call's arguments must be an object, got {type(arguments).__name__}",
            NOT_OBJECT,
            name,
        )
    return ParsedCall(name, arguments, raw, None, start, end)


# A tag spelled otherwise (`<tool-call>`, `<|tool_call|>`, a lone closing tag), JSON with an
# `"arguments"` key, or the tool's name used as a function or a `"name"` value.
_CALL_LIKE = r"<\|?/?\s*tool[_\- ]?call|\"arguments\"\s*:|\b{name}\s*\(|\"name\"\s*:\s*\"{name}\""


def looks_like_call(text: str, tool_name: str) -> bool:
    """True for text without a `<tool_call>` block that still looks like an attempt at one."""
    if _CALL.search(text):
        return False
    pattern = _CALL_LIKE.format(name=re.escape(tool_name))
    return re.search(pattern, text, re.IGNORECASE) is not None


def final_answer(text: str) -> str | None:
    """The final answer's code (see the module docstring for the rule), or None."""
    calls = list(_CALL.finditer(text))
    tail = text[calls[-1].end() :] if calls else text
    # A tool response echoed into the text (fallback transcripts) is not the model's answer.
    cut = tail.rfind(RESPONSE_CLOSE)
    if cut >= 0:
        tail = tail[cut + len(RESPONSE_CLOSE) :]
    blocks = [b for b in code_blocks(tail) if b.strip()]
    return blocks[-1] if blocks else None
