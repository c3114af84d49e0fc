"""`collab-train evaluate`: judge a samples file in the sandbox and report pass@k and friends.

Printing and the progress bar live here; the work is `training.evaluation.run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from collabcoder.training.cli.app import app
from collabcoder.training.data.tasks import DatasetError
from collabcoder.training.evaluation.passk import parse_ks
from collabcoder.training.evaluation.run import (
    DEFAULT_TIMEOUT_S,
    EvaluationReport,
    default_out_path,
    evaluate_samples,
    write_report,
)
from collabcoder.training.evaluation.samples import SampleFileError

err = Console(stderr=True)
out_console = Console()


@app.command("evaluate")
def evaluate(
    samples: Annotated[
        Path,
        typer.Argument(
            help="JSONL of samples: {task_id, completion} | {task_id, program} | "
            "{task_id, completions: {aux, main}}."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Option(help="humaneval | coophumaneval | a hub id (openai/openai_humaneval, ...)."),
    ] = "humaneval",
    split: Annotated[str, typer.Option(help="Split with optional slice, e.g. 'test[66:]'.")] = (
        "test"
    ),
    k: Annotated[str, typer.Option("--k", help="Comma-separated k values.")] = "1,3,5,10",
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Wall-clock seconds per program run.")
    ] = DEFAULT_TIMEOUT_S,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Sandbox workers (default: the sandbox's choice).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Results JSON (default: <samples>_results.json beside the samples)."),
    ] = None,
) -> None:
    """Judge SAMPLES against the dataset's tests; write results JSON + per-sample JSONL."""
    try:
        ks = parse_ks(k)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--k") from exc

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            bar = progress.add_task(f"judging {samples.name}", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total)

            report = evaluate_samples(
                samples,
                dataset=dataset,
                split=split,
                ks=ks,
                timeout_s=timeout,
                workers=workers,
                progress=on_progress,
            )
    except (DatasetError, SampleFileError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc

    results_path, per_sample = write_report(report, out or default_out_path(samples))
    out_console.print(_table(report))
    if report.skipped_ks:
        err.print(
            f"[yellow]note:[/] k={', '.join(map(str, report.skipped_ks))} left out: "
            "some task has fewer samples than k"
        )
    if report.infra_errors:
        err.print(
            f"[yellow]warning:[/] {report.infra_errors} sample(s) hit sandbox infrastructure "
            "errors twice; they are left out of every metric (see 'infra_error' in the JSONL)"
        )
    err.print(f"results: {results_path}\nper-sample verdicts: {per_sample}", highlight=False)


def _table(report: EvaluationReport) -> Table:
    table = Table(title=f"{report.dataset} {report.split} ({report.mode} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.metrics.items():
        table.add_row(name, f"{value:.4f}")
    summary = report.summary()
    table.add_section()
    table.add_row("tasks", str(summary["num_tasks"]))
    table.add_row("samples", str(summary["num_samples"]))
    table.add_row("samples passed", str(summary["num_passed"]))
    table.add_row("infra errors (not scored)", str(report.infra_errors))
    table.add_row("infra re-runs", str(report.infra_reruns))
    if report.tasks_without_samples:
        table.add_row("tasks without samples", str(report.tasks_without_samples))
    return table
