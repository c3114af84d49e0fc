"""Every prompt text of the code-agentic pipeline (retool style), in one place.

The conversation is: system = the row's `prompt` (plus, for chat templates without tool
support, the tool block below); user = `user_prompt(question, n_cases)`; then the assistant's
turns with tool calls, the tool's responses, and a final answer in a ```python block.
"""

from __future__ import annotations

import json
from typing import Any

from collabcoder.training.agentic.calls import CALL_CLOSE, CALL_OPEN

ROW_PROMPT = (
    "You are an expert Python programmer. You write complete programs that read their input "
    "from stdin and print their answer to stdout, and you test them before you answer."
)

# ReTool's user prompt, with its interpreter replaced by our test-case tool.
_USER = """Solve the following programming problem step by step. You can run Python code with \
the `{tool}` tool: it runs your complete program on one of the problem's test cases (the case's \
input on stdin) and tells you whether the printed output is right; when it is not, it shows the \
error or the expected and actual output, and a debugging suggestion. The problem has {n} test \
case(s), indexes 0 to {last}. Test your program, fix it until it passes, and use as few \
attempts as you can.

The last part of your response must be your final program in this format:
Final answer:
```python
# the complete program
```

*user question:*
{question}

Remember to end with the final program in a ```python block after "Final answer:"."""

# Qwen2.5's own tool block (its chat template's wording), for templates that know no tools.
_TOOLS_BLOCK = """

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

# Assistant texts of generated conversations.
FIRST_ATTEMPT = "Let me write a first version of the program and run it on test case {i}."
CLEAN_ATTEMPT = "Let me write the program and check it on test case {i}."
FIX_ATTEMPT = "The test failed ({category}). {diagnosis} Let me fix it and run test case {i} again."
FINAL = "The program passes the test. Final answer:\n```python\n{code}\n```"

BUG_DIAGNOSES: dict[str, str] = {
    "off_by_one": "A bound is off by one: `{buggy}` should be `{fixed}`.",
    "wrong_operator": "The wrong operator is used: `{buggy}` should be `{fixed}`.",
    "wrong_comparison": "The comparison is wrong: `{buggy}` should be `{fixed}`.",
    "missing_return": "A function does not return its result: `{buggy}` should be `{fixed}`.",
    "misspelled_name": "A name is misspelled: `{buggy}` should be `{fixed}`.",
    "wrong_index": "The wrong index or slice is used: `{buggy}` should be `{fixed}`.",
    "wrong_base_case": "The base case is wrong: `{buggy}` should be `{fixed}`.",
    "swapped_arguments": "Two arguments are swapped: `{buggy}` should be `{fixed}`.",
}


def user_prompt(question: str, n_cases: int, tool_name: str) -> str:
    return _USER.format(tool=tool_name, n=n_cases, last=max(0, n_cases - 1), question=question)


def tools_block(tools: list[dict[str, Any]]) -> str:
    """The system prompt's tool block of the fallback format."""
    return _TOOLS_BLOCK.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))


def converted_question(prompt: str, entry_point: str) -> str:
    """The question of a converted function-style task (format: see `convert.py`)."""
    return (
        f"Implement `{entry_point}` as specified below, in a complete program.\n\n"
        f"```python\n{prompt.rstrip()}\n```\n\n"
        "Input/output: each test case is one call. stdin holds the call's arguments, one per "
        "line, each a Python literal (read each line with `ast.literal_eval`). Print "
        f"`repr({entry_point}(*args))` on one line."
    )


assert CALL_OPEN in _TOOLS_BLOCK and CALL_CLOSE in _TOOLS_BLOCK  # one format for both


_TEACHER = """Solve the following programming problem with a complete Python program that reads \
the input from stdin and prints the answer to stdout.

{question}

Answer with the complete program in one ```python block."""


def teacher_prompt(question: str) -> str:
    return _TEACHER.format(question=question)
