"""Every prompt text of the project: what the agents, the loop's model, the expert and the
reviewer are asked.

- The turn protocol (MAGRPO training and the server's team): `initial_prompts`, and the framing
  of a next-turn prompt (`previous_code_text`, `closing_text`); the feedback blocks between
  them are in `feedback.py`.
- The expert of `expert_edits` turns: `expert_messages` (its reply is read by
  `replies.parse_expert_reply`).
- The completion loop: `SYSTEM_PROMPT`, `first_user_message`, `feedback_user_message`, and
  `fim_feedback_prefix` for base models.
- The reviewer models: the optional `score` analyzer's (`review_messages`) and the loop
  evaluation's, which compares a completion with a reference (`reference_review_messages`).
- The system prompt of `raw` fine-tuning rows (`collab-train` pairs export):
  `RAW_PAIRS_SYSTEM_PROMPT`.

Every text is a pure function of its inputs, so a model trained on a prompt is served exactly
that prompt.
"""

from __future__ import annotations

from typing import Literal

from collabcoder.analyzers.protocol.program import (
    AUX_NAME,
    AUX_ROLE,
    MAIN_ROLE,
    FeedbackTask,
    compose_program,
    function_signature,
)

Messages = tuple[dict[str, str], ...]

# ---------------------------------------------------------------------------------------------
# The turn protocol
# ---------------------------------------------------------------------------------------------

_REPLY_RULE = (
    "Reply with the code of `{fn}` only, in one ```python block: no explanations, no examples, "
    "no tests."
)


def initial_prompts(task: FeedbackTask, num_agents: int = 2) -> dict[str, str]:
    """What each agent is asked to write in the first turn, keyed by role."""
    entry = task.entry_point
    signature = function_signature(task.prompt, entry) or f"def {entry}(...):"
    problem = task.prompt.strip("\n")
    if num_agents < 2:
        main = "\n".join(
            [
                "Solve this Python problem.",
                "",
                "Problem:",
                problem,
                "",
                f"Implement `{entry}` completely.",
                "",
                "Rules:",
                "- " + _REPLY_RULE.format(fn=entry),
                f"- Keep the signature `{signature}`",
                "- Return the result; do not print it.",
            ]
        )
        return {MAIN_ROLE: main}
    aux = "\n".join(
        [
            "You are the helper agent of a two-agent team solving a Python problem. Your "
            f"teammate writes `{entry}`, the function the problem asks for, and can call the "
            "helper you write.",
            "",
            "Problem:",
            problem,
            "",
            f"Write a helper function named `{AUX_NAME}` that does a useful part of the work "
            "(for example a sub-computation or a check) and returns its result.",
            "",
            "Rules:",
            "- " + _REPLY_RULE.format(fn=AUX_NAME),
            f"- `{AUX_NAME}` must return its result.",
            f"- Do not write `{entry}` itself.",
            "",
            "Format:",
            f"def {AUX_NAME}(...):",
            "    # your code",
            "    return result",
        ]
    )
    main = "\n".join(
        [
            "You are the main agent of a two-agent team solving a Python problem. Your teammate "
            f"writes a helper function `{AUX_NAME}(...)` that will be defined next to your code.",
            "",
            "Problem:",
            problem,
            "",
            f"Implement `{entry}`. Call `{AUX_NAME}(...)` where it helps and use the value it "
            f"returns; do the rest of the work in `{entry}` yourself.",
            "",
            "Rules:",
            "- " + _REPLY_RULE.format(fn=entry),
            f"- Do not define `{AUX_NAME}` yourself.",
            f"- Keep the signature `{signature}`",
            "- Return the result; do not print it.",
        ]
    )
    return {AUX_ROLE: aux, MAIN_ROLE: main}


def previous_code_text(fn: str, code: str) -> str:
    """The agent's own previous code, shown in its next-turn prompt."""
    if not code.strip():
        return f"Your previous reply contained no `{fn}` function."
    return f"Your previous code:\n```python\n{code.strip(chr(10))}\n```"


def closing_text(fn: str, *, if_needed: bool) -> str:
    """The instruction that ends a next-turn prompt; `if_needed` when the feedback gives no
    reason to change anything for sure (the `passed` and `plain` modes)."""
    how = "if needed" if if_needed else "accordingly"
    return f"Revise `{fn}` {how}. " + _REPLY_RULE.format(fn=fn)


# ---------------------------------------------------------------------------------------------
# The expert of `expert_edits` turns
# ---------------------------------------------------------------------------------------------

EXPERT_SYSTEM_PROMPT = (
    "You review Python code written by a team of coding agents and propose concrete edits that "
    "make it correct. You reply with one JSON object and nothing else."
)


def expert_messages(
    task: FeedbackTask, aux_code: str, main_code: str, num_agents: int = 2
) -> list[dict[str, str]]:
    """Chat messages for the expert model: the problem, the composed program, the JSON asked."""
    entry = task.entry_point
    aux = aux_code if num_agents >= 2 else ""
    program = compose_program(task.prompt, aux, main_code).rstrip("\n") or "# (no code)"
    if num_agents >= 2:
        team = (
            f"Two agents wrote this program together: the helper agent wrote `{AUX_NAME}`, the "
            f"main agent wrote `{entry}`, which may call `{AUX_NAME}`."
        )
        keys = f'{{"aux": "<edits for {AUX_NAME}>", "main": "<edits for {entry}>"}}'
        keep = f"- Keep `{AUX_NAME}` in the helper agent's edits and `{entry}` in the main agent's."
    else:
        team = f"An agent wrote `{entry}`."
        keys = f'{{"main": "<edits for {entry}>"}}'
        keep = ""
    rules = [
        "Propose edits so that the program solves the problem and passes its tests:",
        "- If a function is missing, write a minimal correct version of it.",
        '- If a function needs no change, write "No changes needed." for it.',
    ]
    if keep:
        rules.append(keep)
    user = "\n".join(
        [
            "Problem:",
            task.prompt.strip("\n"),
            "",
            team,
            "",
            "Program:",
            "```python",
            program,
            "```",
            "",
            *rules,
            "",
            f"Reply with only a JSON object: {keys}",
        ]
    )
    return [
        {"role": "system", "content": EXPERT_SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


# ---------------------------------------------------------------------------------------------
# The completion loop
# ---------------------------------------------------------------------------------------------

FeedbackVariant = Literal["coworker", "separate"]

CURSOR = "<CURSOR>"

SYSTEM_PROMPT = (
    "You are a code completion engine for Python. The user shows a file with the marker "
    f"{CURSOR} where the cursor is. Write the code that belongs at the cursor. Reply with one "
    "```python code block that contains the line the cursor is on, from its start, and the code "
    "that follows it up to the end of the current block. Never repeat code from below the cursor."
)


def first_user_message(prefix: str, suffix: str, max_chars: int = 12_000) -> str:
    """The code around the cursor, trimmed from the far ends to `max_chars`."""
    head = prefix[-(max_chars * 3 // 4):]
    tail = suffix[: max_chars - len(head)]
    return f"```python\n{head}{CURSOR}{tail}\n```"


def feedback_user_message(feedback: str, variant: FeedbackVariant, attempt: str,
                          prefix: str, suffix: str) -> str:
    """The feedback turn. `coworker` continues the conversation; `separate` starts afresh and
    so repeats the code and the attempt."""
    ask = "Fix these problems. Reply with the corrected code block only."
    if variant == "coworker":
        return f"{feedback}\n\n{ask}"
    return (
        f"{first_user_message(prefix, suffix)}\n\nAn earlier completion at the cursor was:\n"
        f"```python\n{attempt}\n```\n{feedback}\n\n{ask}"
    )


def fim_feedback_prefix(prefix: str, feedback: str, max_lines: int = 6) -> str:
    """Feedback for base models: comments inserted above the statement the cursor is in."""
    lines = prefix.split("\n")
    cursor_line = lines[-1]
    indent = cursor_line[: len(cursor_line) - len(cursor_line.lstrip())]
    notes = [ln for ln in feedback.splitlines() if ln.strip()][:max_lines]
    comment = "".join(f"{indent}# {ln.strip()}\n" for ln in ["Avoid these errors:", *notes])
    return "\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else "") + comment + cursor_line


RAW_PAIRS_SYSTEM_PROMPT = (
    "You are a Python code completion engine. Continue the user's code from where it stops. "
    "Reply with the continuation only."
)


# ---------------------------------------------------------------------------------------------
# Reviewer models: the `score` analyzer's, and the loop evaluation's (against a reference)
# ---------------------------------------------------------------------------------------------

REVIEWER_SYSTEM_PROMPT = (
    "You review code completions. Rate how good the completion is as a continuation of the "
    "code before the cursor: correct, consistent with the surrounding code, idiomatic. Reply "
    "with one integer from 0 (useless or wrong) to 10 (exactly what belongs here), nothing else."
)


def review_messages(prefix: str, completion: str, suffix: str,
                    context_lines: int = 60) -> Messages:
    """The reviewer's request: the code around the cursor, the completion, a 0-10 score asked."""
    before = "\n".join(prefix.splitlines()[-context_lines:])
    after = "\n".join(suffix.splitlines()[:20])
    user = (f"Code before the cursor:\n```python\n{before}\n```\n"
            f"Completion:\n```python\n{completion}\n```\n"
            f"Code after the cursor:\n```python\n{after}\n```\nScore (0-10):")
    return ({"role": "system", "content": REVIEWER_SYSTEM_PROMPT},
            {"role": "user", "content": user})


REFERENCE_REVIEWER_SYSTEM_PROMPT = (
    "You compare a code completion with the reference continuation the author wrote. Rate from "
    "0 (unrelated or wrong) to 10 (does the same as the reference) how well the completion "
    "matches the reference in behaviour. Reply with one integer, nothing else."
)


def reference_review_messages(prefix: str, completion: str, reference: str,
                              reference_first: bool) -> Messages:
    """The loop evaluation's reviewer request: the completion against the reference, in the
    order given (both orders are asked, to expose the reviewer's position bias)."""
    before = "\n".join(prefix.splitlines()[-40:])
    shown = [("Reference", reference), ("Completion", completion)]
    if not reference_first:
        shown.reverse()
    body = "".join(f"{label}:\n```python\n{text}\n```\n" for label, text in shown)
    user = f"Code before the cursor:\n```python\n{before}\n```\n{body}Score (0-10):"
    return ({"role": "system", "content": REFERENCE_REVIEWER_SYSTEM_PROMPT},
            {"role": "user", "content": user})
