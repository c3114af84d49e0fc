"""`collab-train agentic sft | rl | evaluate` end to end on the tiny model, with real sandbox runs.

The tiny model is random, so it never writes a tool call by itself: the tests of the tool-call
path give `rollout._step` a model turn as token ids (what a model would have sampled) and check
the real tool's response, the sandbox run and the mask; everything else (generation, training,
checkpoints, evaluation) runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from collabcoder.analyzers.protocol.rewards import CodeAgenticRewardWeights
from collabcoder.analyzers.sandbox import default_sandbox
from collabcoder.training.agentic import ppo
from collabcoder.training.agentic.calls import RESPONSE_OPEN, render_tool_call
from collabcoder.training.agentic.prepare import converted_source, write_rows
from collabcoder.training.agentic.rollout import (
    RolloutSettings,
    _step,
    finish_episode,
    start_episode,
)
from collabcoder.training.agentic.sft import tokenize_with_mask
from collabcoder.training.agentic.tool import ToolConfig, ToolSettings
from collabcoder.training.cli import app
from collabcoder.training.trainers import checkpoint as ckpt
from collabcoder.training.trainers.logging import read_metrics

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SFT_YAML = str(ROOT / "configs/code_agentic_sft.yaml")
PPO_YAML = str(ROOT / "configs/code_agentic_ppo.yaml")


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def source_rows() -> list[Any]:
    return converted_source("humaneval")[:3]


@pytest.fixture(scope="module")
def conversations(source_rows: list[Any]) -> list[dict[str, Any]]:
    """Debugging conversations made with real sandbox runs (prepare's own building blocks)."""
    from collabcoder.training.agentic.prepare import PrepareOptions, prepare

    rows, report = prepare(source_rows, PrepareOptions(clean_fraction=0.0), default_sandbox())
    assert report.conversations == len(rows) > 0
    return rows


@pytest.fixture(scope="module")
def conv_file(
    conversations: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return write_rows(tmp_path_factory.mktemp("conv") / "conv.jsonl", conversations)


# ---- loss masks ---------------------------------------------------------------------------------


def test_sft_mask_excludes_tool_responses(tiny_model_dir: Path, conversations: list[dict]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = conversations[0]
    enc = tokenize_with_mask(tok, row)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    ignored = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    tool_texts = [m["content"] for m in row["messages"] if m["role"] == "tool"]
    assert tool_texts
    for text in tool_texts:  # every tool response is wholly outside the loss
        assert text.splitlines()[0] in ignored
        assert text.splitlines()[0] not in trained
    assert RESPONSE_OPEN not in trained and "Suggestion:" not in trained
    # The fix, its tool call and the final answer are trained on; the prompts are not.
    assert "Final answer:" in trained and "<tool_call>" in trained
    assert row["messages"][1]["content"][:60] not in trained
    # Token-level: every token of the first tool response's text has mask 0.
    full = tok.decode(ids)
    start = full.index(tool_texts[0])
    enc2 = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    assert enc2["input_ids"] == ids
    inside = [
        m for (b, e), m in zip(enc2["offset_mapping"], mask, strict=True)
        if b >= start and e <= start + len(tool_texts[0])
    ]  # fmt: skip
    assert inside and not any(inside)


def _tokens(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def test_rollout_masks_tool_response_and_rewards(tiny_model_dir: Path, source_rows: list) -> None:
    """A model turn calling the tool (real sandbox run), then the final answer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    src = source_rows[0]
    tool_cfg = ToolConfig(config=ToolSettings(max_debug_attempts=3))
    ep = start_episode(tok, src.task, tool_cfg, default_sandbox())
    settings = RolloutSettings()
    call = "Let me test it.\n" + render_tool_call(
        tool_cfg.name, {"code": src.solution, "test_case_index": 0}
    )
    call_ids = _tokens(tok, call)
    _step(ep, call_ids, False, tok, tool_cfg, settings)
    assert ep.tool.tool_calls == 1 and ep.valid_calls == 1 and not ep.done
    assert ep.mask[: len(call_ids)] == [1] * len(call_ids)
    glue = ep.ids[len(call_ids) :]
    assert glue and ep.mask[len(call_ids) :] == [0] * len(glue)
    glue_text = tok.decode(glue)
    assert "Test case 0 of" in glue_text and "PASSED" in glue_text  # the real response
    final = f"It passes. Final answer:\n```python\n{src.solution}\n```<|im_end|>"
    final_ids = _tokens(tok, final)
    _step(ep, final_ids, True, tok, tool_cfg, settings)
    assert ep.done and ep.mask[-len(final_ids) :] == [1] * len(final_ids)
    result = finish_episode(ep, CodeAgenticRewardWeights())
    assert result.answered and result.solved and result.attempts == 1
    assert result.reward.total == pytest.approx(1.0 + 0.05 + 0.3)
    # The text after the prompt is exactly what the ids say (no token is dropped or added).
    assert tok.decode(list(result.prompt_ids) + list(result.ids)).endswith("```<|im_end|>")


def test_rollout_counts_malformed_call(tiny_model_dir: Path, source_rows: list) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tool_cfg = ToolConfig()
    ep = start_episode(tok, source_rows[0].task, tool_cfg, default_sandbox())
    bad = _tokens(
        tok, '<tool_call>\n{"name": "code_interpreter", "arguments": {"cod": 1}}\n</tool_call>'
    )
    _step(ep, bad, False, tok, tool_cfg, RolloutSettings())
    assert ep.parsed_calls == 1 and ep.valid_calls == 0 and ep.tool.invalid_calls == 1
    assert "unknown argument" in tok.decode(ep.ids[len(bad) :])


def test_gae_skips_tool_tokens() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 9.0, 9.0, 0.1, 0.0]]) * mask
    rewards = ppo.token_rewards(torch.tensor([1.0]), mask, torch.zeros(1, 6), None, 0.0)
    assert rewards.tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]]
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: the advantage is the return (1.0) minus the value; tool tokens get none.
    assert adv[0].tolist() == pytest.approx([0.5, 0.8, 0.0, 0.0, 0.9, 0.0])
    assert ret[0, [2, 3, 5]].abs().sum() == 0


# ---- commands -----------------------------------------------------------------------------------


def _sft_args(tiny: Path, conv: Path, out: Path, *extra: str) -> list[str]:
    return [
        "agentic", "sft", "-c", SFT_YAML, "-o", f"model.name={tiny}", "model.dtype=float32",
        f"data.train_file={conv}", f"output.base_dir={out}", "sft.max_steps=2",
        "sft.gradient_accumulation_steps=1", "sft.save_steps=1", "sft.logging_steps=1",
        "logging.report_to=[jsonl]", "tool.config=null", *extra,
    ]  # fmt: skip


def test_sft_end_to_end_resume_and_override(
    tiny_model_dir: Path, conv_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft"
    result = invoke(*_sft_args(tiny_model_dir, conv_file, out, "sft.learning_rate=1e-4"))
    assert result.exit_code == 0, result.output
    assert (out / "main" / "model.safetensors").is_file()
    manifest = json.loads((out / "agents.json").read_text())
    assert manifest["agents"][0] == {
        "role": "main",
        "path": "main",
        "kind": "full",
        "base_model": None,
    }
    from collabcoder.server.lsp.team import AgentTeam

    assert AgentTeam.is_team(str(out))  # the language server loads the run folder as it is
    assert AgentTeam(out, dtype="float32").roles == ("main",)
    saved = (out / "config.yaml").read_text()
    assert "learning_rate: 0.0001" in saved and "gradient_accumulation_steps: 1" in saved
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2]
    # A used folder needs --resume; a finished one cannot be resumed.
    again = invoke(*_sft_args(tiny_model_dir, conv_file, out))
    assert again.exit_code == 2 and "already holds a run" in again.output
    # An interrupted run (no final state) resumes from its newest checkpoint.
    (out / ckpt.STATE_FILE).unlink()
    resumed = invoke(*_sft_args(tiny_model_dir, conv_file, out, "sft.max_steps=3"), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3]


def test_sft_override_error_names_key(tmp_path: Path) -> None:
    result = invoke("agentic", "sft", "-c", SFT_YAML, "-o", "sft.learnin_rate=1")
    assert result.exit_code == 2
    assert "unknown key 'sft.learnin_rate' in --override sft.learnin_rate=1" in result.output


def _rl_args(model: Path, out: Path, algo: str, *extra: str) -> list[str]:
    return [
        "agentic", "rl", "-c", PPO_YAML, "-o", f"model.name={model}", "model.dtype=float32",
        "data.train=humaneval[:2]", "data.eval=coophumaneval[:1]", f"output.base_dir={out}",
        f"rl.algorithm={algo}", "rl.max_steps=2", "rl.tasks_per_step=1", "rl.num_generations=2",
        "rl.max_new_tokens=12", "rl.save_steps=1", "rl.eval_interval=2", "rl.learning_rate=1e-4",
        "logging.report_to=[jsonl]", "tool.max_debug_attempts=2", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_rl_end_to_end(tiny_model_dir: Path, tmp_path: Path, algo: str) -> None:
    out = tmp_path / algo
    result = invoke(*_rl_args(tiny_model_dir, out, algo))
    assert result.exit_code == 0, result.output
    for step in (1, 2):
        folder = ckpt.checkpoint_dir(out, step)
        assert ckpt.verify(folder, ("main",)) == []
        assert (folder / "value_head.pt").is_file() == (algo == "ppo")
    assert json.loads((out / ckpt.STATE_FILE).read_text())["finished"] is True
    rows = read_metrics(out)
    train = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in train] == [1, 2]
    if algo == "ppo":  # the value loss always has a gradient (GRPO's is 0 on equal rewards)
        assert all(r["grad_norm"] > 0 for r in train)
    assert any("eval/solve_rate" in r for r in rows)
    assert ("ppo/value_loss" if algo == "ppo" else "grpo/loss") in train[0]
    assert f"algorithm: {algo}" in (out / "config.yaml").read_text()


def test_rl_resume_after_crash(tiny_model_dir: Path, tmp_path: Path) -> None:
    from collabcoder.training.agentic.config import AgenticRLConfig, load_agentic_config
    from collabcoder.training.agentic.rl import AgenticRLTrainer
    from collabcoder.training.agentic.sources import load_tasks
    from collabcoder.training.trainers.resume import RunStart

    out = tmp_path / "crash"
    args = _rl_args(tiny_model_dir, out, "ppo")
    overrides = args[args.index("-o") + 1 :]
    cfg = load_agentic_config(AgenticRLConfig, PPO_YAML, [*overrides, "rl.max_steps=3"])

    class Crash(Exception):
        pass

    def crash(report: Any) -> None:
        if report.step == 1:
            raise Crash

    trainer = AgenticRLTrainer(
        cfg, cfg.tool.load(), load_tasks(cfg.data.train), start=RunStart(), callback=crash
    )
    with pytest.raises(Crash):
        trainer.train()
    assert ckpt.latest_checkpoint(out) is not None
    result = invoke(*args, "rl.max_steps=3", "--resume")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(out) if "reward/mean" in r] == [1, 2, 3]


def test_evaluate_two_models(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rl"
    assert invoke(*_rl_args(tiny_model_dir, out, "grpo", "rl.max_steps=1")).exit_code == 0
    report_path = tmp_path / "eval.json"
    result = invoke(
        "agentic", "evaluate", "--model", f"base={tiny_model_dir}", "--model", f"trained={out}",
        "--tasks", "coophumaneval[:2]", "--max-new-tokens", "12", "--out", str(report_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert set(report["models"]) == {"base", "trained"} and len(report["tasks"]) == 2
    for m in report["models"].values():
        assert list(m["solve_rate_at_k"]) == ["1", "2", "3", "4", "5"]
        assert m["episodes"] == 2 and set(m["reward"]) >= {"mean", "tool_bonus", "debug_penalty"}
    assert "solve rate @5" in result.output


# ---- why tool calls are invalid -----------------------------------------------------------------


class ScriptedPolicy(torch.nn.Module):
    """A stand-in for a model's sampling only: `generate` answers each episode's turn with the
    text scripted for its task and turn number, as token ids. Everything around it is real:
    `run_episodes` batching and turn cutting, the tool, the sandbox, `evaluate_model`."""

    def __init__(self, tokenizer: Any, script: dict[str, list[str]], generation_config: Any):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the device
        self.tok, self.script, self.generation_config = tokenizer, script, generation_config

    def generate(self, input_ids: torch.Tensor, **_: Any) -> torch.Tensor:
        turns = []
        for row in input_ids.tolist():
            context = self.tok.decode(row, skip_special_tokens=False)
            entry = next(name for name in self.script if f"`{name}`" in context)
            turn = context.count("<|im_start|>assistant") - 1
            turns.append(_tokens(self.tok, self.script[entry][turn]))
        width = max(len(t) for t in turns)
        pad = self.tok.pad_token_id  # an EOS id: the turn ends there
        new = [t + [pad] * (width - len(t)) for t in turns]
        return torch.cat([input_ids, torch.tensor(new, dtype=input_ids.dtype)], dim=1)


def _call_text(arguments: dict[str, Any]) -> str:
    return render_tool_call("code_interpreter", arguments)


def test_evaluate_counts_invalid_calls_by_reason(tiny_model_dir: Path, source_rows: list) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from collabcoder.training.agentic.evaluate import EvalSettings, evaluate_model, table_rows

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tiny = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    a, b, c = source_rows
    end = "<|im_end|>"
    script = {
        a.task.question.split("`")[1]: [
            '<tool_call>\n{"name": "code_interpreter", "arguments": {"code": "print(1)",}}\n'
            "</tool_call>",  # a trailing comma: bad JSON
            _call_text({"cod": a.solution}),
            _call_text({"code": a.solution, "test_case_index": 99}),
            _call_text({"code": a.solution, "test_case_index": 0}),  # the one valid call
            f"Final answer:\n```python\n{a.solution}```{end}",
        ],
        b.task.question.split("`")[1]: [
            _call_text({"code": "console.log(1)", "language": "javascript"}),
            _call_text({"test_case_index": 0}),
            # The call's JSON, but no <tool_call> tags: no call at all, and the episode ends.
            '{"name": "code_interpreter", "arguments": {"code": "print(1)"}}' + end,
        ],
        c.task.question.split("`")[1]: [
            '<tool_call>\n{"name": "code_interpreter", "arguments": {"code": "print(' + end,
            f"Final answer:\n```python\nprint(0)\n```{end}",
        ],
    }
    policy = ScriptedPolicy(tok, script, tiny.generation_config)
    tasks = [r.task for r in source_rows]
    report = evaluate_model(
        policy, tok, tasks, ToolConfig(), EvalSettings(), CodeAgenticRewardWeights(),
        default_sandbox(),
    )  # fmt: skip
    assert report["tool_calls"] == 7 and report["invalid_calls"] == 6
    assert report["valid_call_rate"] == pytest.approx(1 / 7)
    assert report["invalid_call_reasons"] == {
        "bad_json": 1, "index_out_of_range": 1, "missing_code": 1, "no_call_format": 1,
        "truncated_call": 1, "unknown_argument": 1, "unsupported_language": 1,
    }  # fmt: skip
    per_task = {t["query_id"]: t for t in report["per_task"]}
    assert per_task[a.task.query_id]["solved"] and per_task[a.task.query_id]["attempts"] == 1
    assert per_task[b.task.query_id]["invalid_call_reasons"] == {
        "missing_code": 1, "no_call_format": 1, "unsupported_language": 1,
    }  # fmt: skip
    assert per_task[c.task.query_id]["invalid_call_reasons"] == {"truncated_call": 1}
    # The CLI's table: one row per reason, per model.
    trained = {**report, "invalid_call_reasons": {}}
    rows = dict(table_rows({"models": {"base": report, "trained": trained}}))
    assert rows["invalid calls"] == [6, 6]
    assert rows["  invalid: bad_json"] == [1, 0]
    assert rows["  invalid: no_call_format"] == [1, 0]


def test_evaluate_cli_reports_invalid_call_reasons(tiny_model_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "eval.json"
    result = invoke(
        "agentic", "evaluate", "--model", f"base={tiny_model_dir}", "--tasks",
        "coophumaneval[:1]", "--max-new-tokens", "12", "--out", str(report_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    base = json.loads(report_path.read_text())["models"]["base"]
    calls = base["tool_calls"] - (base["valid_call_rate"] or 0) * base["tool_calls"]
    assert base["invalid_calls"] == round(calls)
    tool_reasons = {k: v for k, v in base["invalid_call_reasons"].items() if k != "no_call_format"}
    assert sum(tool_reasons.values()) == base["invalid_calls"]
    assert "invalid calls" in result.output


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("<tool_call>\n</tool_call>", "empty_call"),
        ('<tool_call>["code_interpreter"]</tool_call>', "not_object"),
        ('<tool_call>{"arguments": {"code": "1"}}</tool_call>', "missing_name"),
        ('<tool_call>{"name": "code_interpreter", "code": "1"}</tool_call>', "unknown_key"),
        ('<tool_call>{"name": "python", "arguments": {"code": "1"}}</tool_call>', "unknown_tool"),
        ('<tool_call>{"name": "code_interpreter", "arguments": "{x"}</tool_call>', "bad_json"),
        ('<tool_call>{"name": "code_interpreter", "arguments": [1]}</tool_call>', "not_object"),
        (_call_text({"code": 1}), "code_not_string"),
        (_call_text({"code": "  "}), "empty_code"),
        (_call_text({"code": "1", "language": 3}), "language_not_string"),
        (_call_text({"code": "1", "test_case_index": "0"}), "index_not_integer"),
        (_call_text({"code": "1", "test_case_index": -1}), "index_out_of_range"),
        (_call_text({"code": "1", "timeout": 0}), "bad_timeout"),
    ],
)
def test_every_refused_call_has_a_reason(source_rows: list, call: str, reason: str) -> None:
    from collabcoder.training.agentic.calls import parse_tool_calls
    from collabcoder.training.agentic.tool import INVALID_REASONS, CodeExecutionTool

    tool = CodeExecutionTool(ToolConfig(), source_rows[0].task, default_sandbox())
    (parsed,) = parse_tool_calls(call)
    response = tool.call_parsed(parsed)
    assert not response.valid and response.reason == reason and reason in INVALID_REASONS
    assert tool.invalid_reasons == {reason: 1} and tool.tool_calls == 0


def test_a_call_without_arguments_has_a_reason(source_rows: list) -> None:
    """The verl tool passes the arguments as JSON text: empty text is `no_arguments`."""
    from collabcoder.training.agentic.tool import CodeExecutionTool

    tool = CodeExecutionTool(ToolConfig(), source_rows[0].task, default_sandbox())
    assert tool.call(" ").reason == "no_arguments"
    assert tool.call_named("code_interpreter", None).reason == "no_arguments"
