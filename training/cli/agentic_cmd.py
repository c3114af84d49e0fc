"""`collab-train agentic`: the code-agentic pipeline's data commands (`convert`, `prepare`,
`export`). The training commands (`sft`, `rl`, `evaluate`) register on the same `agentic_app`
from `agentic_train_cmd.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from collabcoder.training.cli.app import app

agentic_app = typer.Typer(
    name="agentic",
    help="Code-agentic training: debugging conversations with a code-execution tool.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.add_typer(agentic_app, name="agentic")

err = Console(stderr=True)
DEFAULT_TOOL_CONFIG = Path("configs/code_agentic_tool_config.yaml")

SourcesArg = Annotated[
    list[str],
    typer.Argument(help="Data files (.json/.jsonl/.parquet) or humaneval / coophumaneval."),
]
ToolConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--tool-config",
        help="Tool config YAML (default: the built-in one, as in "
        "configs/code_agentic_tool_config.yaml).",
    ),
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def _tool_config(path: Path | None):  # type: ignore[no-untyped-def]
    from collabcoder.training.agentic.tool import ToolConfig, ToolConfigError, load_tool_config

    if path is None:
        return ToolConfig()
    try:
        return load_tool_config(path)
    except ToolConfigError as exc:
        raise _fail(str(exc)) from exc


def _sources(inputs: list[str]):  # type: ignore[no-untyped-def]
    from collabcoder.training.agentic.prepare import converted_source, read_source
    from collabcoder.training.data.tasks import DatasetError

    rows = []
    try:
        for item in inputs:
            if item in ("humaneval", "coophumaneval"):
                rows += converted_source(item)
            else:
                rows += read_source(item)
    except DatasetError as exc:
        raise _fail(str(exc)) from exc
    return rows


@agentic_app.command("convert")
def convert(
    dataset: Annotated[str, typer.Argument(help="humaneval | coophumaneval")],
    out: Annotated[Path, typer.Option(help="Output .jsonl or .parquet of code-agentic rows.")],
) -> None:
    """Convert a function-style dataset to stdin/stdout rows (docs/code_agentic.md, Converter)."""
    from collabcoder.training.agentic.convert import load_converted
    from collabcoder.training.agentic.prepare import write_rows

    try:
        conversion = load_converted(dataset)
        write_rows(out, conversion.rows)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    err.print(
        f"{len(conversion.rows)} rows -> {out}; skipped (no usable assert): "
        f"{', '.join(conversion.skipped) or 'none'}"
    )


@agentic_app.command("prepare")
def prepare(
    inputs: SourcesArg,
    out: Annotated[Path, typer.Option(help="Output .jsonl or .parquet of conversations.")],
    tool_config: ToolConfigOpt = None,
    conversations_per_row: Annotated[int, typer.Option(min=1)] = 1,
    clean_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of conversations without a bug.")
    ] = 0.2,
    bug_kinds: Annotated[
        str | None, typer.Option(help="Comma-separated bug kinds (default: all).")
    ] = None,
    train_on_buggy: Annotated[
        bool, typer.Option(help="Also train on the buggy first attempt.")
    ] = False,
    seed: int = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N rows.")] = None,
    teacher_backend: Annotated[
        str | None,
        typer.Option(help="Backend kind for rows without a solution (llamacpp, openai, ...)."),
    ] = None,
    teacher_model: Annotated[str | None, typer.Option(help="The teacher's model.")] = None,
    teacher_endpoint: Annotated[str | None, typer.Option(help="openai backend: base URL.")] = None,
    teacher_samples: Annotated[int, typer.Option(min=1)] = 4,
    report: Annotated[Path | None, typer.Option(help="Also write the report as JSON.")] = None,
) -> None:
    """Generate multi-turn debugging conversations (real sandbox runs) with provenance."""
    from collabcoder.analyzers.sandbox import Sandbox
    from collabcoder.training.agentic.bugs import BUG_KINDS
    from collabcoder.training.agentic.prepare import PrepareOptions, write_rows
    from collabcoder.training.agentic.prepare import prepare as run_prepare
    from collabcoder.training.agentic.teacher import TeacherError

    kinds = tuple(k.strip() for k in bug_kinds.split(",")) if bug_kinds else BUG_KINDS
    unknown = [k for k in kinds if k not in BUG_KINDS]
    if unknown:
        raise _fail(f"unknown bug kind(s) {', '.join(unknown)}; expected {', '.join(BUG_KINDS)}")
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        raise _fail(f"--out {out}: must end in .jsonl or .parquet")
    options = PrepareOptions(
        tool_config=_tool_config(tool_config),
        bug_kinds=kinds,
        conversations_per_row=conversations_per_row,
        clean_fraction=clean_fraction,
        seed=seed,
        train_on_buggy=train_on_buggy,
        teacher_samples=teacher_samples,
    )
    if teacher_backend:
        from collabcoder.server.backends.factory import make_backend

        try:
            options.teacher = (
                make_backend(teacher_backend, teacher_model or "", endpoint=teacher_endpoint)
                if teacher_backend == "openai"
                else make_backend(teacher_backend, teacher_model or "")
            )
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(f"--teacher-backend: {exc}") from exc
    rows = _sources(inputs)[:limit]
    with Sandbox() as sandbox:
        try:
            made, rep = run_prepare(rows, options, sandbox)
        except TeacherError as exc:
            raise _fail(str(exc)) from exc
    write_rows(out, made)
    if report is not None:
        from collabcoder.analyzers.files import atomic_write

        atomic_write(report, json.dumps(rep.to_dict(), indent=2) + "\n")
    err.print(f"{rep.conversations} conversations from {rep.rows_in} rows -> {out}")
    err.print(f"bug kinds: {dict(rep.by_kind)}; solutions: {dict(rep.by_solution_source)}")
    for line in rep.skipped:
        err.print(f"  skipped {line}", highlight=False)


@agentic_app.command("export")
def export(
    inputs: SourcesArg,
    out: Annotated[Path, typer.Option(help="Output folder.")],
    format: Annotated[str, typer.Option("--format", help="Only 'verl'.")] = "verl",
    tool_config: ToolConfigOpt = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.0,
) -> None:
    """Write the tasks for verl: train/val parquet + a verl tool config (docs/code_agentic.md)."""
    from collabcoder.training.agentic.export_verl import export_verl

    if format != "verl":
        raise _fail(f"--format {format!r}: only 'verl' is supported")
    tasks = [r.task for r in _sources(inputs)]
    written = export_verl(tasks, _tool_config(tool_config), out, val_fraction=val_fraction)
    for name, path in written.items():
        err.print(f"{name}: {path}")
