"""Code-agentic data: converter, bug injection, conversations, chat rendering, prepare, verl export.
Every sandbox run is real."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collabcoder.analyzers.sandbox import IOJob, Sandbox
from collabcoder.analyzers.testcases import IOCase, IOSuite
from collabcoder.training.agentic.bugs import BUG_KINDS, candidates, inject_verified
from collabcoder.training.agentic.calls import final_answer, parse_tool_calls
from collabcoder.training.agentic.conversations import (
    append_turn,
    close_turn,
    debugging_conversation,
    render_conversation,
    rollout_prompt,
)
from collabcoder.training.agentic.convert import extract_cases, load_converted
from collabcoder.training.agentic.export_verl import (
    check_verl_rows,
    check_verl_tool_config,
    export_verl,
)
from collabcoder.training.agentic.prepare import (
    PrepareOptions,
    load_conversations,
    prepare,
    read_source,
    write_rows,
)
from collabcoder.training.agentic.tool import ToolConfig
from collabcoder.training.agentic.verl_tool import CodeAgenticVerlTool, compute_score
from collabcoder.training.data.code_agentic import CodeAgenticFormatError, parse_code_agentic_row
from collabcoder.training.data.tasks import CodeAgenticTask


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2) as sb:
        yield sb


# --- converter --------------------------------------------------------------------------------


def test_every_humaneval_canonical_solution_passes_its_converted_tests(sandbox: Sandbox) -> None:
    conversion = load_converted("humaneval")
    # These five test only computed inputs (random or helper-made): nothing constant to convert.
    assert conversion.skipped == [
        "HumanEval/32", "HumanEval/33", "HumanEval/37", "HumanEval/38", "HumanEval/50"
    ]
    tasks = [parse_code_agentic_row(r) for r in conversion.rows]
    verdicts = sandbox.run_many(
        [IOJob(r["solution"], t.io_suite) for r, t in zip(conversion.rows, tasks, strict=True)]
    )
    failed = [r["query_id"] for r, v in zip(conversion.rows, verdicts, strict=True)
              if not v.all_passed]
    assert failed == []
    assert len(conversion.rows) == 159 and sum(len(t.io_suite.cases) for t in tasks) > 1000


def test_coophumaneval_converts_without_solutions() -> None:
    conversion = load_converted("coophumaneval")
    assert conversion.skipped == [] and len(conversion.rows) == 82
    assert all("solution" not in r for r in conversion.rows)


def test_converter_assert_forms() -> None:
    test = (
        "def check(candidate):\n"
        "    assert candidate([1, 2], 'a') == (3, 'a')\n"
        "    assert (3, 'a') == candidate([1, 2], 'a')\n"  # duplicate: kept once
        "    assert candidate(2.0 / 4) is True\n"
        "    assert not candidate(0)\n"
        "    assert candidate(-1)\n"
        "    assert abs(candidate(3) - 1.5) < 1e-6\n"
        "    assert candidate('x' * 3) == 'xxx'\n"
        "    for x in range(3):\n"
        "        assert candidate(x) == x\n"  # loop variable: left out
        "    assert candidate(y) == 1\n"  # a name: left out
    )
    assert extract_cases(test) == [
        ("[1, 2]\n'a'\n", "(3, 'a')\n"),
        ("0.5\n", "True\n"),
        ("0\n", "False\n"),
        ("-1\n", "True\n"),
        ("3\n", "1.5\n"),
        ("'xxx'\n", "'xxx'\n"),
    ]


# --- bugs -------------------------------------------------------------------------------------

BUG_TABLE: dict[str, tuple[str, str, str]] = {
    # kind: (program, expected buggy segment, stdin) -- stdin gives a wrong result or an error
    "off_by_one": ("n = int(input())\nprint(sum(range(n)))\n", "n - 1", "4\n"),
    "wrong_operator": ("a = int(input())\nprint(a + 2)\n", "a - 2", "3\n"),
    "wrong_comparison": ("a = int(input())\nprint(a > 2)\n", "a >= 2", "2\n"),
    "missing_return": ("def f(x):\n    return x * 2\n\nprint(f(int(input())))\n", "x * 2", "3\n"),
    "misspelled_name": ("value = int(input())\nprint(value)\n", "valeu", "3\n"),
    "wrong_index": ("xs = input().split()\nprint(xs[0])\n", "1", "a b\n"),
    "wrong_base_case": (
        "def fact(n):\n    if n == 0:\n        return 1\n    return n * fact(n - 1)\n\n"
        "print(fact(int(input())))\n", "0", "3\n",
    ),
    "swapped_arguments": ("a, b = map(int, input().split())\nprint(pow(a, b))\n", "pow(b, a)",
                          "2 3\n"),
}


@pytest.mark.parametrize("kind", BUG_KINDS)
def test_bug_kind_table(sandbox: Sandbox, kind: str) -> None:
    program, segment, stdin = BUG_TABLE[kind]
    bugs = candidates(program, kind)
    assert bugs and all(b.kind == kind for b in bugs)
    assert segment in [b.buggy for b in bugs]
    expected = sandbox.run_io(program, IOSuite((IOCase(stdin, ""),))).tests[0].actual or ""
    suite = IOSuite((IOCase(stdin, expected),))
    verified = inject_verified(program, suite, sandbox, random.Random(0), kinds=(kind,))
    assert verified is not None and verified.bug.kind == kind
    assert not verified.verdict.all_passed
    # the fix is exactly the reverse edit
    assert verified.bug.code.replace(verified.bug.buggy, verified.bug.fixed, 1) == program or (
        program.count(verified.bug.fixed) > 1
    )


def test_bugs_skip_the_main_guard_and_annotations() -> None:
    program = (
        "from typing import List\n\ndef f(xs: List[int]) -> int:\n    return xs[0]\n\n"
        'if __name__ == "__main__":\n    print(f([int(x) for x in input().split()][1:]))\n'
    )
    segments = [b.buggy for b in candidates(program, "wrong_index")]
    assert segments == ["1"]  # xs[0] -> xs[1]; not List[int], not the driver's [1:]


def test_a_bug_the_tests_cannot_see_is_not_used(sandbox: Sandbox) -> None:
    program = "x = int(input())\nprint(x if x > 0 else 0)\n"  # > vs >= is the same at 0
    suite = IOSuite((IOCase("5\n", "5\n"),))
    assert inject_verified(program, suite, sandbox, random.Random(0),
                           kinds=("wrong_comparison",)) is None


# --- conversations and rendering ----------------------------------------------------------------


def _task_and_solution() -> tuple[CodeAgenticTask, str]:
    row = load_converted("humaneval").rows[3]
    return parse_code_agentic_row(row), row["solution"]


@pytest.fixture(scope="module")
def conversation(sandbox: Sandbox) -> Any:
    task, solution = _task_and_solution()
    bug = inject_verified(solution, task.io_suite, sandbox, random.Random(1))
    assert bug is not None
    return task, debugging_conversation(task, solution, ToolConfig(), bug, sandbox=sandbox)


def test_debugging_conversation_uses_real_tool_responses(conversation: Any) -> None:
    task, conv = conversation
    roles = [m["role"] for m in conv.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    first, fail, fix, ok, final = conv.messages[2:]
    assert first["train"] is False and "train" not in fix
    assert fail["content"].startswith(f"Test case {conv.case_index} of {len(task.io_suite.cases)}")
    assert "FAILED" in fail["content"] and "Suggestion:" in fail["content"]
    assert "PASSED" in ok["content"]
    assert fix["tool_calls"][0]["function"]["arguments"]["test_case_index"] == conv.case_index
    fixed = fix["tool_calls"][0]["function"]["arguments"]["code"]
    assert final_answer(final["content"]) == fixed.rstrip()
    assert [r["passed"] for r in conv.responses] == [False, True]


def _tokenizer(tiny_model_dir: Path, template: str | None) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if template is not None:
        tok.chat_template = template
    return tok


def _qwen25_template() -> str:
    from trl.chat_template_utils import qwen2_5_chat_template

    return str(qwen2_5_chat_template)


@pytest.mark.parametrize("template", ["qwen2.5", "chatml-no-tools"])
def test_render_and_rollout_give_the_same_text(
    tiny_model_dir: Path, conversation: Any, template: str
) -> None:
    tok = _tokenizer(tiny_model_dir, _qwen25_template() if template == "qwen2.5" else None)
    task, conv = conversation
    cfg = ToolConfig()
    rendered = render_conversation(tok, conv.messages, [cfg.tool_schema])
    assert rendered.native is (template == "qwen2.5")
    assert "# Tools" in rendered.text and '"name": "code_interpreter"' in rendered.text
    assert len(rendered.assistant_spans) == 3 and rendered.spans == rendered.assistant_spans[1:]
    texts = [rendered.text[a:b] for a, b in rendered.assistant_spans]
    assert all(t.endswith("<|im_end|>") for t in texts)
    masked = rendered.text
    for a, b in rendered.assistant_spans:
        masked = masked[:a] + "#" * (b - a) + masked[b:]
    assert "<tool_response>" in masked and "Suggestion:" in masked  # responses never in a span
    calls = parse_tool_calls(texts[1])
    assert len(calls) == 1 and calls[0].ok
    # the rollout path builds exactly the SFT text
    responses = [m["content"] for m in conv.messages if m["role"] == "tool"]
    text = rollout_prompt(tok, task, cfg)
    assert rendered.text.startswith(text) and text.endswith("<|im_start|>assistant\n")
    text = append_turn(tok, cfg, text, texts[0].removesuffix("<|im_end|>"), responses[:1])
    text = append_turn(tok, cfg, text, texts[1].removesuffix("<|im_end|>"), responses[1:])
    text = close_turn(tok, cfg, text, texts[2].removesuffix("<|im_end|>"))
    assert text == rendered.text.rstrip("\n")


def test_fallback_and_native_qwen_render_alike(tiny_model_dir: Path, conversation: Any) -> None:
    _, conv = conversation
    schema = [ToolConfig().tool_schema]
    native = render_conversation(_tokenizer(tiny_model_dir, _qwen25_template()), conv.messages,
                                 schema)
    fallback = render_conversation(_tokenizer(tiny_model_dir, None), conv.messages, schema)
    assert native.text == fallback.text  # the fallback is Qwen2.5's own layout


# --- prepare ------------------------------------------------------------------------------------


def _rows() -> list[dict[str, Any]]:
    rows = [dict(r) for r in load_converted("humaneval").rows[:4]]
    rows[1].pop("solution")  # no solution, no teacher: skipped and reported
    rows[2]["solution"] = rows[2]["solution"].replace("return", "return None and", 1)  # fails
    return rows


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_end_to_end(tmp_path: Path, sandbox: Sandbox) -> None:
    src = _write_jsonl(tmp_path / "data.jsonl", _rows())
    rows = read_source(src)
    made, report = prepare(rows, PrepareOptions(conversations_per_row=2, clean_fraction=0.5,
                                                 seed=3), sandbox)
    assert report.rows_in == 4 and report.conversations == len(made) == 4
    assert any("line 2: no solution" in s for s in report.skipped)
    assert any("line 3: the reference solution fails its own tests" in s for s in report.skipped)
    for row in made:
        prov = row["provenance"]
        assert prov["source_file"] == str(src) and prov["source_row"] in ("line 1", "line 4")
        assert prov["solution_source"] == "reference" and prov["bug_kind"] == row["bug_kind"]
        assert parse_code_agentic_row(row).query_id == prov["query_id"]  # still a data row
    for suffix in (".jsonl", ".parquet"):
        out = write_rows(tmp_path / f"conv{suffix}", made)
        back = load_conversations(out)
        assert [r["messages"] for r in back] == [r["messages"] for r in made]
    again, _ = prepare(rows, PrepareOptions(conversations_per_row=2, clean_fraction=0.5, seed=3),
                       sandbox)
    assert again == made  # deterministic for a seed


def test_malformed_row_names_file_and_row(tmp_path: Path) -> None:
    rows: list[Any] = _rows()
    rows[2] = {"prompt": "p", "question": "q", "query_id": 1, "input_output": {"inputs": ["1"]}}
    src = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CodeAgenticFormatError, match=r"bad\.jsonl, line 3: field 'input_output"):
        read_source(src)
    rows[2] = {**_rows()[0], "solution": 7}
    with pytest.raises(CodeAgenticFormatError, match=r"line 3: field 'solution' must be a string"):
        read_source(_write_jsonl(tmp_path / "bad.jsonl", rows))


# --- verl ---------------------------------------------------------------------------------------


def test_verl_export_matches_the_schema(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    tasks = [parse_code_agentic_row(r) for r in load_converted("humaneval").rows[:8]]
    written = export_verl(tasks, ToolConfig(), tmp_path, val_fraction=0.25)
    config = yaml.safe_load(written["tool_config"].read_text())
    names = check_verl_tool_config(config)
    assert names == {"code_interpreter"}
    assert config["tools"][0]["config"]["max_debug_attempts"] == 5
    train = pq.read_table(written["train"]).to_pylist()
    val = pq.read_table(written["val"]).to_pylist()
    assert len(train) == 6 and len(val) == 2
    check_verl_rows(train + val, names)
    row = train[0]
    assert row["ability"] == "code" and row["agent_name"] == "tool_agent"
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    truth = json.loads(row["reward_model"]["ground_truth"])
    kwargs = row["extra_info"]["tools_kwargs"]["code_interpreter"]["create_kwargs"]
    assert truth["inputs"] == kwargs["inputs"] and row["extra_info"]["need_tools_kwargs"]
    with pytest.raises(ValueError, match="verl row 0: key 'reward_model'"):
        check_verl_rows([{**row, "reward_model": {"style": "rule"}}], names)


def test_verl_tool_and_reward(tmp_path: Path) -> None:
    row = load_converted("humaneval").rows[0]
    schema = ToolConfig().tool_schema
    tool = CodeAgenticVerlTool({"type": "native", "default_timeout": 5}, schema)
    io = row["input_output"]

    async def episode() -> tuple[Any, dict[str, Any]]:
        iid = await tool.create(create_kwargs={"inputs": io["inputs"], "outputs": io["outputs"]})
        result, _, metrics = await tool.execute(iid, {"code": row["solution"],
                                                      "test_case_index": 0})
        await tool.release(iid)
        return result, metrics

    result, metrics = asyncio.run(episode())
    assert "PASSED" in result["text"] and metrics["passed"] is True
    truth = json.dumps({"inputs": io["inputs"], "outputs": io["outputs"]})
    from collabcoder.training.agentic.calls import render_tool_call

    trajectory = (render_tool_call("code_interpreter", {"code": row["solution"]})
                  + f"\nFinal answer:\n```python\n{row['solution']}\n```")
    score = compute_score("collabcoder/code_agentic", trajectory, truth)
    assert score["score"] == pytest.approx(1.0 + 0.05 + 0.3)
    assert compute_score("x", "no code", truth)["score"] == 0.0
