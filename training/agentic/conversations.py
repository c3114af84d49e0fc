"""Debugging conversations and their rendering with a chat template, for SFT and for rollouts.

A conversation is a list of OpenAI-style messages: `system` (the row's prompt), `user` (the
retool-style prompt), `assistant` messages with `tool_calls` (`{"type": "function", "id",
"function": {"name", "arguments": <dict>}}`, the transformers convention), `tool` messages with
the tool's real responses, and a final assistant answer. An assistant message may carry
`"train": False` (the buggy first attempt, by default): it is rendered but not trained on.

Rendering (`render_conversation`):
* native: when the tokenizer's chat template supports `tools=` and renders a tool call in the
  hermes format that `calls.py` parses, the template renders everything (Qwen2.5 does);
* fallback (any other template, or none: then ChatML): the tool block (Qwen2.5's wording, with
  the schema) is appended to the system prompt, each call is `<tool_call>` text at the end of
  the assistant's content, and consecutive tool responses become one user message of
  `<tool_response>` blocks.

Rollouts build the same text turn by turn: `rollout_prompt` (system + user + generation
prompt), then `append_turn` for each assistant turn that called the tool (the model's text
verbatim + the template's end of turn + the tool turn + the next generation prompt), and
`close_turn` for the final one. `render_conversation` of the same messages gives the same text
(tests check this), so SFT data and RL episodes look alike to the model.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.training.agentic import prompts
from collabcoder.training.agentic.bugs import VerifiedBug
from collabcoder.training.agentic.calls import (
    parse_tool_calls,
    render_tool_call,
    render_tool_response,
)
from collabcoder.training.agentic.tool import CodeExecutionTool, ToolConfig
from collabcoder.training.data.tasks import CodeAgenticTask

Message = dict[str, Any]

# Used when a tokenizer has no chat template at all.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_MARK = "\x1eMARK\x1e"


# --- building conversations ------------------------------------------------------------------


def _call_message(content: str, name: str, arguments: dict[str, Any], n: int) -> Message:
    call = {
        "type": "function",
        "id": f"call_{n}",
        "function": {"name": name, "arguments": arguments},
    }
    return {"role": "assistant", "content": content, "tool_calls": [call]}


def _tool_message(name: str, text: str, n: int) -> Message:
    return {"role": "tool", "name": name, "tool_call_id": f"call_{n}", "content": text}


def opening_messages(task: CodeAgenticTask, tool_config: ToolConfig) -> list[Message]:
    n = len(task.io_suite.cases)
    return [
        {"role": "system", "content": task.prompt},
        {"role": "user", "content": prompts.user_prompt(task.question, n, tool_config.name)},
    ]


@dataclass
class Conversation:
    messages: list[Message]
    bug_kind: str | None  # None: a clean conversation (correct at the first attempt)
    case_index: int
    responses: list[dict[str, Any]] = field(default_factory=list)  # ToolResponse.to_dict()s


class ConversationError(RuntimeError):
    """The tool did not answer as the conversation needs (a bug passed, a solution failed)."""


def debugging_conversation(
    task: CodeAgenticTask,
    solution: str,
    tool_config: ToolConfig,
    bug: VerifiedBug | None,
    *,
    sandbox: Sandbox | None = None,
    case_index: int = 0,
    train_on_buggy: bool = False,
) -> Conversation:
    """buggy code -> call on the failing case -> real response -> fix -> call passes -> answer.

    With `bug=None` the conversation is clean: one passing call on `case_index`, then the
    answer. Every response comes from a real `CodeExecutionTool` run.
    """
    tool = CodeExecutionTool(tool_config, task, sandbox)
    name = tool_config.name
    messages = opening_messages(task, tool_config)
    responses: list[dict[str, Any]] = []
    n = 0
    if bug is not None:
        case_index = bug.failing_case
        args = {"code": bug.bug.code, "test_case_index": case_index}
        first = _call_message(prompts.FIRST_ATTEMPT.format(i=case_index), name, args, n)
        first["train"] = train_on_buggy
        response = tool.call(args)
        if response.passed is not False:
            raise ConversationError(f"{task.query_id}: the {bug.bug.kind} bug did not fail")
        messages += [first, _tool_message(name, response.text, n)]
        responses.append(response.to_dict())
        n += 1
        diagnosis = prompts.BUG_DIAGNOSES[bug.bug.kind].format(
            buggy=bug.bug.buggy.strip(), fixed=bug.bug.fixed.strip()
        )
        text = prompts.FIX_ATTEMPT.format(
            category=response.error_category, diagnosis=diagnosis, i=case_index
        )
    else:
        text = prompts.CLEAN_ATTEMPT.format(i=case_index)
    args = {"code": solution, "test_case_index": case_index}
    response = tool.call(args)
    if response.passed is not True:
        raise ConversationError(
            f"{task.query_id}: the solution failed test case {case_index} "
            f"({response.error_category})"
        )
    messages += [_call_message(text, name, args, n), _tool_message(name, response.text, n)]
    responses.append(response.to_dict())
    messages.append({"role": "assistant", "content": prompts.FINAL.format(code=solution.rstrip())})
    return Conversation(messages, bug.bug.kind if bug else None, case_index, responses)


def pick_case(task: CodeAgenticTask, rng: random.Random) -> int:
    return rng.randrange(len(task.io_suite.cases))


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: list[tuple[int, int]]  # char spans of trainable assistant text (loss goes here)
    assistant_spans: list[tuple[int, int]]  # every assistant message's span
    native: bool  # rendered by the tokenizer's own tool-calling template


def _template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) else None


def _apply(
    tokenizer: Any,
    messages: Sequence[Message],
    tools: list[dict[str, Any]] | None,
    generation: bool,
) -> str:
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation}
    if tools is not None:
        kwargs["tools"] = tools
    if _template(tokenizer) is None:
        kwargs["chat_template"] = CHATML_TEMPLATE
    text = tokenizer.apply_chat_template(list(messages), **kwargs)
    return str(text)


def supports_tools(tokenizer: Any, tools: list[dict[str, Any]]) -> bool:
    """True when the template takes `tools=` and writes tool calls as `calls.py` parses them."""
    template = _template(tokenizer)
    if template is None or "tool_calls" not in template or "tools" not in template:
        return False
    name = tools[0]["function"]["name"]
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        _call_message("a", name, {"code": "print(1)"}, 0),
        _tool_message(name, "r", 0),
    ]
    try:
        text = _apply(tokenizer, probe, tools, False)
    except Exception:  # a template that cannot render tool calls at all
        return False
    calls = parse_tool_calls(text)  # the system prompt's tool block may show a call too
    return (
        render_tool_call(name, {"code": "print(1)"}) in text
        and bool(calls)
        and calls[-1].arguments == {"code": "print(1)"}
        and render_tool_response("r") in text
    )


def to_fallback(messages: Sequence[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """The messages in the fallback format: plain roles and contents only."""
    out: list[Message] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "system" and not out:
            out.append({"role": "system", "content": content + prompts.tools_block(tools)})
        elif role == "assistant":
            calls = [c.get("function", c) for c in m.get("tool_calls") or []]
            parts = [content] if content else []
            parts += [render_tool_call(c["name"], _arguments(c["arguments"])) for c in calls]
            out.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            block = render_tool_response(content)
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": True})
        else:
            out.append({"role": role, "content": content})
    for m in out:
        m.pop("_tool", None)
    return out


def _arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        import json

        decoded = json.loads(arguments)
        return dict(decoded) if isinstance(decoded, Mapping) else {}
    return dict(arguments)


def render_conversation(
    tokenizer: Any, messages: Sequence[Message], tools: list[dict[str, Any]]
) -> Rendered:
    """The conversation's text and the char spans of assistant-written text.

    A span starts after the template's generation prompt and ends after the assistant's
    end-of-turn token (the model must learn to stop), before any newline that follows it.
    """
    native = supports_tools(tokenizer, tools)
    msgs = list(messages) if native else to_fallback(messages, tools)
    train_flags = [m.get("train", True) for m in messages if m["role"] == "assistant"]
    use_tools = tools if native else None
    text = _apply(tokenizer, msgs, use_tools, False)
    spans: list[tuple[int, int]] = []
    every: list[tuple[int, int]] = []
    k = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _apply(tokenizer, msgs[:i], use_tools, True)
        through = _apply(tokenizer, msgs[: i + 1], use_tools, False)
        if not (text.startswith(before) and text.startswith(through)):
            raise ValueError(
                "the chat template does not render conversations incrementally (message "
                f"{i} changes earlier text); spans cannot be computed"
            )
        end = len(through.rstrip("\n"))
        every.append((len(before), end))
        if train_flags[k]:
            spans.append((len(before), end))
        k += 1
    return Rendered(text, spans, every, native)


# --- rollouts --------------------------------------------------------------------------------


def _tools(tool_config: ToolConfig) -> list[dict[str, Any]]:
    return [tool_config.tool_schema]


def rollout_prompt(tokenizer: Any, task: CodeAgenticTask, tool_config: ToolConfig) -> str:
    """The text a policy continues at the start of an episode (ends with the generation prompt)."""
    tools = _tools(tool_config)
    native = supports_tools(tokenizer, tools)
    msgs = opening_messages(task, tool_config)
    if native:
        return _apply(tokenizer, msgs, tools, True)
    return _apply(tokenizer, to_fallback(msgs, tools), None, True)


def _end_of_turn(tokenizer: Any, tools: list[dict[str, Any]], native: bool) -> str:
    base = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    msgs = [*base, {"role": "assistant", "content": _MARK}]
    if not native:
        msgs = to_fallback(msgs, tools)
    text = _apply(tokenizer, msgs, tools if native else None, False)
    return text[text.index(_MARK) + len(_MARK) :].rstrip("\n") if _MARK in text else ""


def close_turn(tokenizer: Any, tool_config: ToolConfig, text: str, assistant_text: str) -> str:
    """`text` + the model's final turn + the template's end-of-turn token."""
    tools = _tools(tool_config)
    return text + assistant_text + _end_of_turn(tokenizer, tools, supports_tools(tokenizer, tools))


def append_turn(
    tokenizer: Any,
    tool_config: ToolConfig,
    text: str,
    assistant_text: str,
    responses: Sequence[str],
) -> str:
    """`text` + the model's turn (verbatim) + end of turn + the tool turn + generation prompt.

    `responses` are the `ToolResponse.text`s of the calls in `assistant_text`, in order. The
    model's text must include the closing `</tool_call>` (generate with it as a stop string
    that is kept in the output).
    """
    tools = _tools(tool_config)
    native = supports_tools(tokenizer, tools)
    name = tool_config.name
    base: list[Message] = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    asst = _call_message("a", name, {"code": "x"}, 0)
    tool_msgs = [_tool_message(name, r, i) for i, r in enumerate(responses)]
    msgs = [*base, asst, *tool_msgs]
    if not native:
        msgs = to_fallback(msgs, tools)
    upto = _apply(
        tokenizer,
        msgs[: len(msgs) - (len(tool_msgs) if native else 1)],
        tools if native else None,
        False,
    )
    full = _apply(tokenizer, msgs, tools if native else None, True)
    if not full.startswith(upto):
        raise ValueError("the chat template does not render tool turns incrementally")
    end = _end_of_turn(tokenizer, tools, native)
    after_end = upto[len(upto.rstrip("\n")) :]  # the newline(s) the template puts after a turn
    return text + assistant_text + end + after_end + full[len(upto) :]
