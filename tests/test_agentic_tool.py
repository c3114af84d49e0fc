"""The code-agentic tool: config loading, real sandbox runs, every error category, every kind of
malformed call, counters, and the tool-call text format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.analyzers.testcases import IOCase, IOSuite
from collabcoder.training.agentic.calls import (
    final_answer,
    parse_tool_calls,
    render_tool_call,
    render_tool_response,
)
from collabcoder.training.agentic.tool import (
    CodeExecutionTool,
    ToolConfig,
    ToolConfigError,
    ToolSettings,
    load_tool_config,
)
from collabcoder.training.data.tasks import CodeAgenticTask

ROOT = Path(__file__).resolve().parents[1]
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2) as sb:
        yield sb


def add_task() -> CodeAgenticTask:
    suite = IOSuite((IOCase("1 2\n", "3\n"), IOCase("2 2\n", "4\n"), IOCase("5 0\n", "5\n")))
    return CodeAgenticTask("You are an expert.", "Add two numbers.", "add", suite)


def make_tool(sandbox: Sandbox, **settings: object) -> CodeExecutionTool:
    config = ToolConfig(config=ToolSettings(**settings))
    return CodeExecutionTool(config, add_task(), sandbox)


def test_shipped_config_has_the_seed_values() -> None:
    cfg = load_tool_config(ROOT / "configs/code_agentic_tool_config.yaml")
    assert cfg.name == "code_interpreter"
    assert cfg.config == ToolSettings(default_timeout=30, max_debug_attempts=5,
                                      enable_debug_prints=True)
    props = cfg.tool_schema["function"]["parameters"]["properties"]
    assert set(props) == {"code", "test_case_index", "timeout", "language"}
    assert props["language"]["default"] == "python"
    assert cfg.tool_schema["function"]["parameters"]["required"] == ["code"]
    assert cfg == ToolConfig()  # the built-in default is the shipped file


def test_config_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "tool.yaml"
    bad.write_text("tools:\n  - name: code_interpreter\n    config:\n      default_timeout: -1\n")
    with pytest.raises(ToolConfigError, match=r"tool\.yaml.*'tools\[0\]\.config\.default_timeout'"):
        load_tool_config(bad)
    bad.write_text("name: x\nconfig:\n  max_debug_attemps: 3\n")
    with pytest.raises(ToolConfigError, match=r"'config\.max_debug_attemps'"):
        load_tool_config(bad)
    bad.write_text("name: other\n")
    with pytest.raises(ToolConfigError, match=r"'name'.*tool_schema\.function\.name"):
        load_tool_config(bad)
    with pytest.raises(ToolConfigError, match="cannot read"):
        load_tool_config(tmp_path / "missing.yaml")


def test_passing_call(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox)
    r = tool.call(json.dumps({"code": ADD, "test_case_index": 1}))
    assert (r.valid, r.passed, r.error_category, r.case_index) == (True, True, None, 1)
    assert r.text.startswith("Test case 1 of 3: PASSED")
    assert "Attempts left: 4." in r.text
    all_cases = tool.call({"code": ADD})
    assert all_cases.passed and all_cases.case_index is None and "(3/3)" in all_cases.text
    assert (tool.tool_calls, tool.invalid_calls) == (2, 0)


CATEGORY_PROGRAMS = {
    "NameError": "a, b = map(int, input().split())\nprint(a + c)\n",
    "SyntaxError": "a, b = map(int, input().split()\nprint(a)\n",
    "TypeError": "a, b = input().split()\nprint(a + 1)\n",
    "IndexError": "xs = input().split()\nprint(xs[5])\n",
    "ZeroDivisionError": "a, b = map(int, input().split())\nprint(a // 0)\n",
    "AttributeError": "print(input().splt())\n",
    "wrong_output": "a, b = map(int, input().split())\nprint(a - b)\n",
    "timeout": "while True:\n    pass\n",
    "memory": "x = [0] * (10 ** 10)\n",
}


@pytest.mark.parametrize("category", list(CATEGORY_PROGRAMS))
def test_every_error_category(sandbox: Sandbox, category: str) -> None:
    tool = make_tool(sandbox, default_timeout=1.0)
    r = tool.call({"code": CATEGORY_PROGRAMS[category], "test_case_index": 0})
    assert (r.valid, r.passed, r.error_category) == (True, False, category)
    assert r.text.startswith(f"Test case 0 of 3: FAILED ({category})")
    assert "Input:\n1 2" in r.text and "Suggestion: " in r.text
    if category == "wrong_output":
        assert "Expected output:\n3\nActual output:\n-1" in r.text
    elif category not in ("timeout", "memory", "SyntaxError"):
        assert f"Error: {category} (line " in r.text
        assert "Traceback" in r.text and "runner.py" not in r.text  # sandbox frames dropped


def test_debug_prints_can_be_turned_off(sandbox: Sandbox) -> None:
    code = "import sys\nprint('dbg', file=sys.stderr)\nprint(undefined)\n"
    on = make_tool(sandbox).call({"code": code, "test_case_index": 0})
    off = make_tool(sandbox, enable_debug_prints=False).call({"code": code, "test_case_index": 0})
    assert "Stderr:" in on.text and "dbg" in on.text
    assert "Stderr:" not in off.text and "dbg" not in off.text


MALFORMED = [
    ("{not json", "not valid JSON"),
    ("", "no arguments"),
    ("[1, 2]", "must be a JSON object"),
    ({"code": ADD, "test_case": 0}, "unknown argument(s) 'test_case'"),
    ({"test_case_index": 0}, "`code` is missing"),
    ({"code": 42}, "`code` must be a string"),
    ({"code": "  "}, "`code` is empty"),
    ({"code": ADD, "test_case_index": 3}, "out of range; this problem has 3 test case(s)"),
    ({"code": ADD, "test_case_index": -1}, "out of range"),
    ({"code": ADD, "test_case_index": "0"}, "must be an integer"),
    ({"code": ADD, "test_case_index": True}, "must be an integer"),
    ({"code": ADD, "timeout": 0}, "`timeout` must be a positive number"),
    ({"code": ADD, "language": 3}, "`language` must be a string"),
]


@pytest.mark.parametrize(("arguments", "message"), MALFORMED)
def test_malformed_calls_answer_and_count(
    sandbox: Sandbox, arguments: object, message: str
) -> None:
    tool = make_tool(sandbox)
    r = tool.call(arguments)
    assert (r.valid, r.passed, r.error_category) == (False, None, "malformed_call")
    assert message in r.text
    assert (tool.invalid_calls, tool.tool_calls) == (1, 0)


def test_other_languages_get_a_clear_error(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox)
    r = tool.call({"code": "console.log(1)", "language": "javascript"})
    assert (r.valid, r.error_category) == (False, "unsupported_language")
    assert "only Python" in r.text
    assert tool.call({"code": ADD, "language": "Python3", "test_case_index": 0}).passed


def test_parsed_calls_wrong_name_and_bad_json(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox)
    text = (
        render_tool_call("code_interpreter", {"code": ADD, "test_case_index": 2})
        + "\n<tool_call>\n{oops}\n</tool_call>\n"
        + render_tool_call("python", {"code": ADD})
    )
    first, second, third = (tool.call_parsed(c) for c in parse_tool_calls(text))
    assert first.passed
    assert second.error_category == "malformed_call" and "not valid JSON" in second.text
    assert third.error_category == "unknown_tool" and "'code_interpreter'" in third.text
    assert (tool.tool_calls, tool.invalid_calls, tool.total_calls) == (1, 2, 3)


def test_attempt_limit(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox, max_debug_attempts=2)
    assert tool.call({"code": ADD, "test_case_index": 0}).passed
    assert "Attempts left: 0." in tool.call({"code": ADD, "test_case_index": 0}).text
    r = tool.call({"code": ADD, "test_case_index": 0})
    assert (r.valid, r.passed, r.error_category) == (True, None, "attempt_limit")
    assert tool.tool_calls == 2


def test_timeout_argument_is_capped_by_the_config(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox, default_timeout=0.5)
    r = tool.call({"code": "while True:\n    pass\n", "timeout": 100, "test_case_index": 0})
    assert r.error_category == "timeout" and r.duration_s < 5


def test_run_all_is_not_counted(sandbox: Sandbox) -> None:
    tool = make_tool(sandbox)
    verdict = tool.run_all("a, b = map(int, input().split())\nprint(a * b if a == 5 else a + b)")
    assert (verdict.passed_count, verdict.total) == (2, 3)
    assert tool.total_calls == 0


# --- the text format --------------------------------------------------------------------------


def test_call_round_trip_and_spans() -> None:
    call = render_tool_call("code_interpreter", {"code": "print('<tool_call>')", "timeout": 2})
    text = f"Let me run it.\n{call}"
    (parsed,) = parse_tool_calls(text)
    assert parsed.ok and parsed.name == "code_interpreter"
    assert parsed.arguments == {"code": "print('<tool_call>')", "timeout": 2}
    assert text[parsed.start : parsed.end] == call
    assert render_tool_response("ok") == "<tool_response>\nok\n</tool_response>"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", "empty"),
        ('{"name": "x", "arguments": {"code": 1}', "not valid JSON"),
        ('["x"]', "must be a JSON object"),
        ('{"arguments": {}}', "no tool `name`"),
        ('{"name": "x", "arguments": {}, "id": 1}', "unknown key(s) id"),
        ('{"name": "x", "arguments": "{bad"}', "arguments are not valid JSON"),
        ('{"name": "x", "arguments": [1]}', "arguments must be an object"),
    ],
)
def test_malformed_call_texts(raw: str, error: str) -> None:
    (parsed,) = parse_tool_calls(f"<tool_call>\n{raw}\n</tool_call>")
    assert not parsed.ok and error in (parsed.error or "")


def test_string_arguments_and_unclosed_call() -> None:
    text = '<tool_call>\n{"name": "x", "arguments": "{\\"code\\": \\"1\\"}"}'  # stopped early
    (parsed,) = parse_tool_calls(text)
    assert parsed.arguments == {"code": "1"}


def test_final_answer_rule() -> None:
    call = render_tool_call("code_interpreter", {"code": "```python\nprint(0)\n```"})
    assert final_answer("```python\nprint(1)\n```\n" + call) is None  # ends with a call
    done = f"```python\nprint(1)\n```\n{call}\nPasses. Final answer:\n```python\nprint(2)\n```"
    assert final_answer(done) == "print(2)"
    assert final_answer("no tool:\n```python\nprint(3)\n```\n```py\nprint(4)\n```") == "print(4)"
    echoed = f"{call}\n<tool_response>\n```python\nx\n```\n</tool_response>\n"
    assert final_answer(echoed) is None
    assert final_answer("just prose") is None
