"""Judge a samples file with the sandbox and compute the metrics (`collab-train evaluate`).

Functions return data; the CLI prints and draws the progress bar. Infrastructure errors (the
sandbox, not the program, failed) are re-run once; those that fail again are reported apart and
left out of every metric, never counted as failures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.sandbox import AssertJob, Sandbox, SandboxLimits
from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.training.data.registry import load_tasks, resolve_dataset
from collabcoder.training.data.tasks import Task
from collabcoder.training.evaluation.coop import coop_score
from collabcoder.training.evaluation.passk import (
    DEFAULT_KS,
    accuracy_at_k,
    estimate_pass_at_k,
    max_coop_at_k,
    pass_or_not_at_k,
)
from collabcoder.training.evaluation.samples import (
    Mode,
    Sample,
    SampleFileError,
    build_program,
    read_samples,
)

DEFAULT_TIMEOUT_S = 3.0  # the official harness's default, per program
ProgressFn = Callable[[int, int], None]  # (judged so far, total to judge)


class Judge(Protocol):
    """What the evaluator needs of the sandbox: concurrent runs, results in job order."""

    def run_many(self, jobs: Sequence[Any]) -> list[Verdict]: ...


@dataclass(frozen=True)
class SampleResult:
    sample: Sample
    completion_id: int  # position among its task's samples (0-based), as in the harness
    verdict: Verdict
    coop: float | None = None  # joint samples only

    @property
    def passed(self) -> bool:
        return self.verdict.all_passed

    @property
    def result(self) -> str:
        """The harness's wording: 'passed', 'timed out' or 'failed: <reason>'."""
        v = self.verdict
        if v.is_infra_error:
            return f"infra error: {v.infra_error or 'sandbox failure'}"
        if self.passed:
            return "passed"
        if v.outcome is Outcome.TIMEOUT:
            return "timed out"
        if v.syntax_error is not None:
            return f"failed: syntax error: {v.syntax_error.message} (line {v.syntax_error.line})"
        failure = next(iter(v.failures()), None)
        if failure is not None:
            reason = failure.error_type or failure.outcome.value
            detail = failure.message or failure.test
            return f"failed: {reason}: {detail}"
        return f"failed: {v.outcome.value}" + (f": {v.stderr.strip()[-200:]}" if v.stderr else "")

    def to_json(self) -> dict[str, Any]:
        row = dict(self.sample.raw)
        row.update(
            completion_id=self.completion_id,
            passed=self.passed,
            result=self.result,
            outcome=self.verdict.outcome.value,
            passed_tests=self.verdict.passed_count,
            total_tests=self.verdict.total,
            infra_error=self.verdict.is_infra_error,
        )
        if self.coop is not None:
            row["coop"] = self.coop
        row["verdict"] = self.verdict.to_dict()
        return row


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    n: int  # samples judged (infrastructure errors left out)
    correct: int
    infra_errors: int
    metrics: dict[str, float]  # "pass@1", "PassOrNot@1", "Accuracy@1", "MaxCoop@1", ...


@dataclass(frozen=True)
class EvaluationReport:
    dataset: str
    split: str
    mode: Mode
    ks: tuple[int, ...]  # the k reported: requested ones no larger than every task's n
    skipped_ks: tuple[int, ...]  # requested, but some task has fewer samples
    metrics: dict[str, float]  # mean over tasks with at least one judged sample
    tasks: tuple[TaskResult, ...]
    samples: tuple[SampleResult, ...]
    infra_errors: int  # samples still failing for infrastructure reasons after the re-run
    infra_reruns: int  # samples re-run once because their first run was an infrastructure error
    tasks_without_samples: int  # tasks of the split that the file did not attempt
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "mode": self.mode,
            "ks": list(self.ks),
            "skipped_ks": list(self.skipped_ks),
            "metrics": self.metrics,
            "num_tasks": len(self.tasks),
            "num_samples": len(self.samples),
            "num_passed": sum(s.passed for s in self.samples),
            "infra_errors": self.infra_errors,
            "infra_reruns": self.infra_reruns,
            "tasks_without_samples": self.tasks_without_samples,
            "settings": self.settings,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "tasks": [
                {
                    "task_id": t.task_id,
                    "n": t.n,
                    "correct": t.correct,
                    "infra_errors": t.infra_errors,
                    "metrics": t.metrics,
                }
                for t in self.tasks
            ],
        }


# -- judging --------------------------------------------------------------------------------


def check_samples(samples: Sequence[Sample], tasks: Mapping[str, Task], where: str) -> Mode:
    """The file's mode; raises on an unknown task id or a file mixing single and joint samples."""
    for s in samples:
        if s.task_id not in tasks:
            examples = ", ".join(list(tasks)[:3])
            raise SampleFileError(
                f"line {s.line}: unknown task_id {s.task_id!r} for {where} "
                f"(its ids look like {examples}, ...)"
            )
    mode = samples[0].mode
    for s in samples:
        if s.mode != mode:
            raise SampleFileError(
                f"line {s.line}: a {s.mode} sample in a file of {mode} samples "
                f"(line {samples[0].line}); use 'completions' on every line or on none"
            )
    return mode


def judge_samples(
    samples: Sequence[Sample],
    tasks: Mapping[str, Task],
    judge: Judge,
    *,
    chunk_size: int = 64,
    progress: ProgressFn | None = None,
) -> tuple[list[SampleResult], int]:
    """Every sample's result in input order, and how many were re-run after an infra error."""
    jobs = [
        AssertJob(build_program(s, tasks[s.task_id]), tasks[s.task_id].assert_suite())
        for s in samples
    ]
    # In chunks so the caller's progress bar moves while the sandbox works.
    verdicts = _run_chunked(judge, jobs, chunk_size, progress, total=len(jobs))
    rerun = [i for i, v in enumerate(verdicts) if v.is_infra_error]
    if rerun:
        again = _run_chunked(
            judge,
            [jobs[i] for i in rerun],
            chunk_size,
            progress,
            total=len(jobs) + len(rerun),
            done=len(jobs),
        )
        for i, verdict in zip(rerun, again, strict=True):
            verdicts[i] = verdict

    seen: dict[str, int] = {}
    results = []
    for sample, verdict in zip(samples, verdicts, strict=True):
        completion_id = seen.get(sample.task_id, 0)
        seen[sample.task_id] = completion_id + 1
        coop = None
        if sample.completions is not None and not verdict.is_infra_error:
            coop = coop_score(sample.completions, tasks[sample.task_id], verdict)
        results.append(SampleResult(sample, completion_id, verdict, coop))
    return results, len(rerun)


def _run_chunked(
    judge: Judge,
    jobs: Sequence[Any],
    chunk_size: int,
    progress: ProgressFn | None,
    *,
    total: int,
    done: int = 0,
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    if progress:
        progress(done, total)
    for start in range(0, len(jobs), chunk_size):
        verdicts.extend(judge.run_many(jobs[start : start + chunk_size]))
        if progress:
            progress(done + len(verdicts), total)
    return verdicts


# -- metrics --------------------------------------------------------------------------------


def summarize(
    results: Sequence[SampleResult],
    *,
    ks: Iterable[int] = DEFAULT_KS,
    dataset: str,
    split: str,
    mode: Mode,
    infra_reruns: int = 0,
    tasks_without_samples: int = 0,
    settings: dict[str, Any] | None = None,
) -> EvaluationReport:
    by_task: dict[str, list[SampleResult]] = {}
    for r in results:
        by_task.setdefault(r.sample.task_id, []).append(r)
    judged = {tid: [r for r in rs if not r.verdict.is_infra_error] for tid, rs in by_task.items()}
    counts = [len(rs) for rs in judged.values() if rs]
    requested = sorted(set(ks))
    # As the official harness: a k is reported only when every task has at least k samples.
    reported = tuple(k for k in requested if counts and k <= min(counts))
    skipped = tuple(k for k in requested if k not in reported)

    tasks = []
    for tid, rs in by_task.items():
        ok = judged[tid]
        passed = [r.passed for r in ok]
        fractions = [r.verdict.pass_fraction for r in ok]
        coops = [r.coop or 0.0 for r in ok]
        ks_here = reported if ok else ()
        metrics = {f"pass@{k}": estimate_pass_at_k(len(ok), sum(passed), k) for k in ks_here}
        metrics.update({f"PassOrNot@{k}": pass_or_not_at_k(passed, k) for k in ks_here})
        metrics.update({f"Accuracy@{k}": accuracy_at_k(fractions, k) for k in ks_here})
        if mode == "joint":
            metrics.update({f"MaxCoop@{k}": max_coop_at_k(coops, k) for k in ks_here})
        tasks.append(TaskResult(tid, len(ok), sum(passed), len(rs) - len(ok), metrics))

    scored = [t for t in tasks if t.n]
    names = list(scored[0].metrics) if scored else []
    aggregate = {name: sum(t.metrics[name] for t in scored) / len(scored) for name in names}
    return EvaluationReport(
        dataset=dataset,
        split=split,
        mode=mode,
        ks=reported,
        skipped_ks=skipped,
        metrics=aggregate,
        tasks=tuple(tasks),
        samples=tuple(results),
        infra_errors=sum(t.infra_errors for t in tasks),
        infra_reruns=infra_reruns,
        tasks_without_samples=tasks_without_samples,
        settings=dict(settings or {}),
    )


# -- the whole command, minus printing ------------------------------------------------------


def evaluate_samples(
    samples_path: str | Path,
    *,
    dataset: str = "humaneval",
    split: str = "test",
    ks: Iterable[int] = DEFAULT_KS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    judge: Judge | None = None,
) -> EvaluationReport:
    """Read, check, judge and score a samples file. `judge` defaults to a fresh `Sandbox`."""
    spec = resolve_dataset(dataset)
    tasks = {t.task_id: t for t in load_tasks(dataset, split)}
    samples = read_samples(samples_path)
    try:
        mode = check_samples(samples, tasks, f"dataset {spec.name!r}, split {split!r}")
    except SampleFileError as exc:
        raise SampleFileError(f"{samples_path}, {exc}") from exc

    settings = {"timeout_s": timeout_s, "workers": workers, "samples": str(samples_path)}
    if judge is None:
        with Sandbox(workers=workers, limits=SandboxLimits(timeout_s=timeout_s)) as sandbox:
            results, reruns = judge_samples(samples, tasks, sandbox, progress=progress)
    else:
        results, reruns = judge_samples(samples, tasks, judge, progress=progress)
    attempted = {s.task_id for s in samples}
    return summarize(
        results,
        ks=ks,
        dataset=spec.name,
        split=split,
        mode=mode,
        infra_reruns=reruns,
        tasks_without_samples=len(set(tasks) - attempted),
        settings=settings,
    )


def default_out_path(samples_path: str | Path) -> Path:
    """`runs/samples.jsonl` -> `runs/samples_results.json`."""
    path = Path(samples_path)
    return path.with_name(f"{path.stem}_results.json")


def per_sample_path(out: str | Path) -> Path:
    """Where the per-sample verdicts go: the results path with a `.jsonl` suffix."""
    out = Path(out)
    return (
        out.with_suffix(".jsonl") if out.suffix == ".json" else out.with_name(out.name + ".jsonl")
    )


def write_report(report: EvaluationReport, out: str | Path) -> tuple[Path, Path]:
    """Results JSON at `out`, per-sample verdicts as JSONL beside it; both written atomically."""
    out = Path(out)
    samples_out = per_sample_path(out)
    atomic_write(samples_out, "".join(json.dumps(s.to_json()) + "\n" for s in report.samples))
    atomic_write(out, json.dumps(report.to_json(), indent=2) + "\n")
    return out, samples_out

