"""`collab-train loop complete|evaluate|metrics` against a real backend (the tiny test model in
process), and every kind of bad input: a message and exit code 2, or a recorded result."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import collabcoder.training.cli.loop_cmd  # noqa: F401  (registers `loop` on the app)
from collabcoder.training.cli import app
from collabcoder.training.data.pairs import level_dirs
from collabcoder.training.evaluation.loop_config import load_loop_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(__file__).parent / "fixtures" / "pairs_demo"
runner = CliRunner()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(DEMO, root / "demo")
    return root


def write_config(path: Path, **keys: object) -> Path:
    path.write_text(yaml.safe_dump({"dataset": "demo/level_0", **keys}))
    return path


def tiny_args(model: Path) -> list[str]:
    return ["--model", str(model), "--dtype", "float32", "--max-tokens", "8", "--seed", "0"]


def test_loop_commands_have_help() -> None:
    result = runner.invoke(app, ["loop", "--help"])
    assert result.exit_code == 0
    for command in ("complete", "evaluate", "metrics", "export", "preprocess"):
        assert command in result.output
        sub = runner.invoke(app, ["loop", command, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output


# ---- complete --------------------------------------------------------------------------------------


def test_complete_prints_the_completion_and_logs_the_conversation(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = runner.invoke(app, [
        "loop", "complete", "-u", "def add(a: int, b: int) -> int:\\n    return ",
        "-a", "signature_analyzer_v1", "-a", "syntax", "-i", "1", "-t", "0", "-mt", "0",
        "--no-backtracking", "--feedback-variant", "separate", "-l", str(logs),
        *tiny_args(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    [record_file] = logs.glob("*.json")
    record = json.loads(record_file.read_text())
    # stdout is the completion alone; the summary goes to stderr.
    assert result.stdout == record["completion"] + "\n"
    assert "feedback iteration(s)" in result.stderr
    assert record["messages"][0]["role"] == "system"
    assert record["messages"][1]["content"].count("<CURSOR>") == 1
    # The prefilled reply (logged with what the model added) carries the function down to the
    # cursor (\n became a newline); the user message shows the code around it, here none.
    assert record["messages"][2]["role"] == "assistant"
    assert record["messages"][2]["content"].startswith("```python\ndef add(a: int, b: int) -> int:\n    return ")
    assert record["iterations"] <= 1 and record["n_tokens_generated"] > 0
    assert {"signature", "syntax"} <= set(record["analyzer_results"][0])
    readable = record_file.with_suffix(".txt").read_text()
    assert "--- assistant ---" in readable and "--- result ---" in readable


def test_complete_from_a_file_verbose(tiny_model_dir: Path, tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text("import os\n\nfiles = os.")
    result = runner.invoke(app, ["loop", "complete", "-f", str(code), "-i", "0", "-v",
                                 *tiny_args(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "R.0 (iteration 0)" in result.stderr and "[loop] done" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-u", "x = ", "-a", "mypyy"], "unknown analyzer 'mypyy'; did you mean 'mypy'?"),
    (["-u", "x = ", "--backend", "tranformers"], "did you mean 'transformers'?"),
    (["-u", "x = ", "--feedback-variant", "cowork"], "unknown feedback variant"),
    (["-u", "x = ", "-f", "a.py"], "exactly one of"),
    ([], "exactly one of"),
    (["-f", "/nonexistent/code.py"], "file not found: /nonexistent/code.py"),
])
def test_complete_bad_input_is_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["loop", "complete", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_complete_with_an_unreachable_backend_is_exit_2() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = runner.invoke(app, ["loop", "complete", "-u", "x = ", "--backend", "openai",
                                 "--endpoint", url, "--model", "m"])
    assert result.exit_code == 2, result.output
    assert url in result.stderr and "connection refused" in result.stderr
    assert result.stdout == ""


# ---- evaluate and metrics -------------------------------------------------------------------------


def test_evaluate_writes_the_layout_then_metrics(
        tiny_model_dir: Path, data_root: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "tiny.yaml", model=str(tiny_model_dir),
        backend_options={"dtype": "float32"}, analyzers=["signature_analyzer_v1"],
        max_iter=1, max_tokens=8, temperature=0.0, seed=0,
        scores=["levenshtein_distance", "bleu", "sequence_matcher", "loops_required",
                "tokens_used", "time", "all_analyzers_passed", "total_tokens_generated"])
    result = runner.invoke(app, ["loop", "evaluate", "-c", str(config), "-n", "2",
                                 "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    eval_dir = data_root / "demo" / "level_0" / "eval" / "tiny"
    stamps = sorted(p for p in eval_dir.iterdir() if p.is_dir())
    assert len(stamps) == 2  # one timestamp folder per repetition
    for stamp in stamps:
        results = json.loads((stamp / "results.json").read_text())
        assert sorted(results) == ["0", "1", "2", "3", "4"]
        assert sorted(p.name for p in (stamp / "readable_logs").iterdir()) == [
            f"{i}.txt" for i in range(5)]
        first = results["0"]
        for key in ("messages", "analyzer_results", "log", "time", "n_tokens_generated",
                    "passed", "iterations", "stop_reason"):
            assert key in first
        assert first["pair"] == "pair1" and first["error"] is None
        assert "signature" in first["analyzer_results"][0]
    assert not list(eval_dir.glob("*/.results.json*"))  # no temp files left behind

    metrics = runner.invoke(app, ["loop", "metrics", "-c", str(config),
                                  "--data-root", str(data_root)])
    assert metrics.exit_code == 0, metrics.output
    lines = (eval_dir / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 5
    assert lines[0].startswith("level,repetition,index,pair,stop_reason,error,"
                               "levenshtein_distance,bleu,sequence_matcher")


def test_evaluate_records_a_failing_backend_and_goes_on(data_root: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = write_config(tmp_path / "down.yaml", backend="openai", model="m", endpoint=url,
                          backend_options={"max_retries": 0}, analyzers=["syntax"])
    result = runner.invoke(app, ["loop", "evaluate", "-c", str(config),
                                 "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    [stamp] = (data_root / "demo" / "level_0" / "eval" / "down").iterdir()
    results = json.loads((stamp / "results.json").read_text())
    assert len(results) == 5
    for record in results.values():
        assert record["stop_reason"] == "backend_error" and url in record["error"]
    assert "5 pair run(s) failed" in result.stderr


@pytest.mark.parametrize("keys, message", [
    ({"max_iters": 3}, "unknown key 'max_iters' in {cfg}; did you mean 'max_iter'?"),
    ({"reviewer": {"modle": "x"}}, "unknown key 'reviewer.modle' in {cfg}; did you mean "
                                   "'reviewer.model'?"),
    ({"analyzers": ["mypy", "halucination"]}, "unknown analyzer 'halucination'; did you mean "
                                              "'hallucination'?"),
    ({"scores": ["bleu_scor"]}, "unknown metric 'bleu_scor'; did you mean 'bleu'?"),
    ({"dataset": "demo/level_9"}, "dataset folder not found"),
    ({"backend": "tgi"}, "invalid value for 'backend'"),
    ({"max_iter": -1}, "invalid value for 'max_iter'"),
    ({"backend_options": {"dtpye": "float32"}}, "did you mean 'dtype'?"),
    ({"backend": "openai", "api_key_env": "COLLAB_TEST_UNSET_KEY"},
     "'COLLAB_TEST_UNSET_KEY', which is not set"),
])
def test_evaluate_bad_config_is_exit_2_before_any_work(
        keys: dict[str, object], message: str, data_root: Path, tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", analyzers=["syntax"])
    bad = write_config(tmp_path / "bad.yaml", **keys)
    result = runner.invoke(app, ["loop", "evaluate", "-c", str(good), "-c", str(bad),
                                 "--data-root", str(data_root)])
    assert result.exit_code == 2, result.output
    assert message.format(cfg=bad) in result.stderr
    assert "Traceback" not in result.output
    assert not (data_root / "demo" / "level_0" / "eval").exists()  # nothing ran


def test_evaluate_missing_config_or_yaml_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["loop", "evaluate", "-c", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    result = runner.invoke(app, ["loop", "evaluate", "-c", str(broken)])
    assert result.exit_code == 2 and "is not valid YAML" in result.stderr


def test_shipped_config_points_at_the_demo_pairs() -> None:
    cfg = load_loop_config(ROOT / "configs" / "loop_eval_embedded.yaml")
    assert cfg.analyzers == ["mypy", "signature", "hallucination"] and cfg.max_iter == 3
    assert cfg.model == "smollm2-135m-instruct"
    assert level_dirs(ROOT / "tests" / "fixtures", cfg.dataset)


@pytest.mark.slow
def test_complete_with_the_embedded_model() -> None:
    result = runner.invoke(app, ["loop", "complete", "-u",
                                 "def square(x: int) -> int:\\n    return x", "-a", "syntax",
                                 "-i", "0", "-t", "0", "--max-tokens", "24"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert "static checks only" in result.stderr  # only syntax ran: never called passed


def test_readable_log_pairs_each_reply_with_its_verdicts() -> None:
    """With the `separate` variant the messages hold only the last turn: its verdicts, not the
    first turn's, follow the reply."""
    from collabcoder.training.evaluation.loop_eval import readable_log

    def turn(passed: bool) -> dict[str, object]:
        return {"mypy": {"type": "critical", "score": 1.0 if passed else 0.5, "pass": passed,
                         "message": "ok" if passed else "bad"}}

    record = {"messages": [{"role": "system", "content": "s"},
                           {"role": "user", "content": "fix it"},
                           {"role": "assistant", "content": "x = 1"}],
              "analyzer_results": [turn(False), turn(True)], "log": "", "passed": True,
              "stop_reason": "passed", "iterations": 1, "n_tokens_generated": 9, "time": 0.5,
              "completion": "x = 1"}
    text = readable_log(record)
    assert "x = 1\n[mypy] pass, score 1.00: ok" in text
    assert "FAIL" not in text
