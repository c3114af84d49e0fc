"""`collab-train loop ...`: the feedback loop from the terminal (LLMcoder's CLI, done over).

    collab-train loop complete -u "def add(a: int, b: int) -> int:\n    return " -a mypy
    collab-train loop evaluate -c configs/loop_eval_embedded.yaml -n 3 --data-root data
    collab-train loop metrics -c configs/loop_eval_embedded.yaml [-i -1]
    collab-train loop export -n my_set/level_0 [--format loop]
    collab-train loop preprocess -n my_set --source path/to/python/files -s 100 --seed 0

Printing and progress bars live here; the work is in `training.evaluation.loop_eval`,
`training.evaluation.loop_metrics` and `training.data.pairs`. Bad input (an unknown analyzer,
config key or dataset, a backend that cannot be built or reached) ends with a one-line message
and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from collabcoder.analyzers.static import UnknownAnalyzerError, canonical_name
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT
from collabcoder.server.loop import LoopConfig
from collabcoder.training.cli.app import app
from collabcoder.training.data.pairs import (
    PairsError,
    build_samples,
    export_conversations,
    level_dir_for,
    write_pairs,
)
from collabcoder.training.evaluation.loop_config import LoopConfigError, load_loop_config

loop_app = typer.Typer(
    name="loop",
    help="The analyzer-guided feedback loop: complete, evaluate, metrics, export, preprocess.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.add_typer(loop_app, name="loop")

err = Console(stderr=True, highlight=False)

DataRoot = Annotated[
    Path, typer.Option("--data-root", help="Folder holding the datasets (NAME/level_k/pairs).")
]
DEFAULT_DATA_ROOT = Path("data")


def _fail(message: str) -> NoReturn:
    # soft_wrap: one line per message, whatever the terminal width (logs, CI, grep).
    err.print(f"[red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _bad_input() -> Iterator[None]:
    """Turn the errors that mean 'wrong input' into a message and exit code 2."""
    try:
        yield
    except (LoopConfigError, PairsError, UnknownAnalyzerError, IndexError) as exc:
        _fail(str(exc))
    except ValueError as exc:  # backend construction: unknown kind, option, endpoint misuse
        _fail(str(exc))


def _updater(progress: Progress, bar: TaskID) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    return update


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


# ---- complete ---------------------------------------------------------------------------------------

# The options that set a LoopConfig field take its default and description from the model, and
# the model validates them: its limits and Literal choices are stated there once.
_LOOP = LoopConfig()
_FLAGS = {"n": "--n-completions", "time_budget_s": "--time-budget"}  # where not --field-name


def _about(field: str) -> str | None:
    return LoopConfig.model_fields[field].description


def _loop_config(**values: Any) -> LoopConfig:
    """The LoopConfig for the options' values; a bad value ends the command naming its option."""
    try:
        return LoopConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            field = str(e["loc"][0])
            if e["type"] == "literal_error":  # e.g. "unknown feedback variant 'x'; expected ..."
                expected = (e.get("ctx") or {}).get("expected", "")
                problems.append(f"unknown {field.replace('_', ' ')} {e['input']!r}; "
                                f"expected {expected}")
            else:
                flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
                problems.append(f"invalid value for {flag}: {e['msg']} (got {e['input']!r})")
        _fail("; ".join(problems))


@loop_app.command("complete")
def complete(
    user_input: Annotated[str | None, typer.Option(
        "-u", "--user-input", help="Code to complete (the cursor is at its end).")] = None,
    file: Annotated[Path | None, typer.Option(
        "-f", "--file", help="File to complete (the cursor is at its end).")] = None,
    analyzers: Annotated[list[str] | None, typer.Option(
        "-a", "--analyzers", help="Analyzer, repeatable or comma-separated: syntax, mypy, "
        "signature, hallucination, tests, score (LLMcoder names accepted). None: syntax only.",
    )] = None,
    backend: Annotated[str, typer.Option(
        "--backend", help="auto (llamacpp for GGUF models such as the embedded default, "
        "transformers for checkpoints) | llamacpp | openai | vllm | transformers.")] = "auto",
    model: Annotated[str, typer.Option("--model", help="Model for every request.")] = (
        EMBEDDED_DEFAULT),
    model_first: Annotated[str | None, typer.Option(
        "-mf", "--model-first", help="Model for the first completion (default: --model).")] = None,
    model_feedback: Annotated[str | None, typer.Option(
        "-ml", "--model-feedback", help="Model for feedback turns (default: --model-first).",
    )] = None,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", help="OpenAI-compatible base URL (backend openai).")] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="COLLABCODER_API_KEY", show_default=False,
        help="API key for the endpoint (or set COLLABCODER_API_KEY).")] = None,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="Weights dtype for in-process backends (bfloat16, float32).")] = None,
    n: Annotated[int, typer.Option("-n", "--n-completions", help=_about("n"))] = _LOOP.n,
    max_iter: Annotated[int, typer.Option(
        "-i", "--max-iter", help=_about("max_iter"))] = _LOOP.max_iter,
    temperature: Annotated[float, typer.Option("-t", "--temperature")] = _LOOP.temperature,
    meta_temperature: Annotated[float, typer.Option(
        "-mt", "--meta-temperature", help=_about("meta_temperature"))] = _LOOP.meta_temperature,
    backtracking: Annotated[bool, typer.Option(
        "--backtracking/--no-backtracking", "-b/-B", help=_about("backtracking"))] = (
        _LOOP.backtracking),
    feedback_variant: Annotated[str, typer.Option(
        "-fv", "--feedback-variant", help=_about("feedback_variant"))] = _LOOP.feedback_variant,
    system_prompt: Annotated[Path | None, typer.Option(
        "-p", "--system-prompt", help="File with a system prompt replacing the default.")] = None,
    prompt_style: Annotated[str, typer.Option(
        "--prompt-style", help=_about("prompt_style"))] = _LOOP.prompt_style,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = _LOOP.max_tokens,
    seed: Annotated[int | None, typer.Option("--seed")] = _LOOP.seed,
    time_budget_s: Annotated[float | None, typer.Option(
        "--time-budget", help=_about("time_budget_s"))] = _LOOP.time_budget_s,
    require_unique: Annotated[bool, typer.Option(
        "--require-unique/--allow-repeats", "-uq/-UQ", help=_about("require_unique"))] = (
        _LOOP.require_unique),
    log_conversation: Annotated[Path | None, typer.Option(
        "-l", "--log-conversation",
        help="Folder to write the conversation to (readable .txt and .json).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Show every candidate and the loop's log.")] = False,
) -> None:
    """Complete code with the feedback loop; the completion goes to stdout, a summary to stderr."""
    from collabcoder.server.loop import Iteration
    from collabcoder.training.evaluation.loop_eval import (
        build_backend,
        result_record,
        run_once,
        write_conversation,
    )

    if (user_input is None) == (file is None):
        _fail("give exactly one of -u/--user-input TEXT and -f/--file FILE")
    if file is not None:
        if not file.is_file():
            _fail(f"file not found: {file}")
        code = file.read_text(encoding="utf-8")
    else:
        code = (user_input or "").replace("\\n", "\n")  # a shell argument cannot hold newlines
    names = [part.strip() for item in analyzers or [] for part in item.split(",") if part.strip()]
    with _bad_input():
        names = list(dict.fromkeys(canonical_name(a) for a in names)) or ["syntax"]
        if system_prompt is not None and not system_prompt.is_file():
            raise ValueError(f"system prompt file not found: {system_prompt}")
        prompt = ({"system_prompt": system_prompt.read_text(encoding="utf-8")}
                  if system_prompt is not None else {})
        config = _loop_config(
            analyzers=names, max_iter=max_iter, n=n, temperature=temperature,
            meta_temperature=meta_temperature, backtracking=backtracking,
            feedback_variant=feedback_variant, prompt_style=prompt_style, max_tokens=max_tokens,
            seed=seed, time_budget_s=time_budget_s, require_unique=require_unique, **prompt)
        opts = {"dtype": dtype} if dtype and backend != "openai" else {}
        first_name = model_first or model
        feedback_name = model_feedback or first_name
        first = build_backend(backend, first_name, endpoint, api_key, opts)
        feedback = first if feedback_name == first_name else build_backend(
            backend, feedback_name, endpoint, api_key, opts)

    def show(event: Iteration) -> None:
        state = "[green]passing[/]" if event.passing else "[yellow]failing[/]"
        err.print(f"[bold]{event.node_id}[/] (iteration {event.iteration}) score "
                  f"{event.score:.2f} {state}", markup=True)
        err.print(event.completion, markup=False)
        if not event.passing:
            err.print(event.feedback, markup=False, style="dim")

    async def go() -> Any:
        try:
            return await run_once(first, feedback, config, code,
                                  on_iteration=show if verbose else None)
        finally:
            for b in dict.fromkeys((first, feedback)):
                await b.aclose()

    result = asyncio.run(go())
    record = result_record(result)
    if verbose:
        err.print("\n".join(result.log), markup=False, style="dim")
    if log_conversation is not None:
        path = write_conversation(log_conversation, record)
        err.print(f"conversation: {path} (+ .json)")
    if result.stop_reason == "backend_error" and not result.completion:
        _fail(f"the {backend} backend failed for model {first_name!r}: "
              f"{'; '.join(result.errors) or 'no reply'}")
    sys.stdout.write(result.completion + "\n")
    sys.stdout.flush()
    verdicts = ", ".join(
        f"{r.name} {'ok' if r.passed else 'FAIL'}" for r in (result.best.results if result.best
                                                            else []))
    # The verdict names the evidence: static checks alone are never reported as a pass.
    style = "green" if result.verified else "red" if result.verdict.startswith("failed") else ""
    words = f"[{style}]{result.verdict}[/]" if style else result.verdict
    err.print(f"[bold]{words}[/] ({result.stop_reason}); "
              f"{result.iterations} feedback iteration(s), {result.tokens_generated} tokens, "
              f"{result.time_s:.1f} s; {verdicts}", markup=True)


# ---- evaluate ---------------------------------------------------------------------------------------


@loop_app.command("evaluate")
def evaluate(
    config: Annotated[list[Path], typer.Option(
        "-c", "--config", help="Loop evaluation YAML, repeatable.")],
    n_repeat: Annotated[int, typer.Option("-n", "--n-repeat", min=1,
                                          help="Repetitions of the whole dataset.")] = 1,
    data_root: DataRoot = DEFAULT_DATA_ROOT,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Only the first N pairs of each level.")] = None,
) -> None:
    """Run the loop over each config's pairs dataset; write results.json and readable logs."""
    from collabcoder.training.data.pairs import level_dirs
    from collabcoder.training.evaluation.loop_eval import backends_for, evaluate_config, summarize

    # Every config, dataset and backend must be valid before the first model call (backends
    # load their model on first use, so building them here is cheap).
    with _bad_input():
        runs = []
        for path in config:
            cfg = load_loop_config(path)
            level_dirs(data_root, cfg.dataset)
            runs.append((path, cfg, backends_for(cfg, cfg.first_model, cfg.feedback_model)))
    for path, cfg, backends in runs:
        with _progress() as progress:
            bar = progress.add_task(f"{path.stem}", total=None)

            def on_pair(rep: int, done: int, total: int, bar: Any = bar,
                        name: str = path.stem) -> None:
                progress.update(bar, completed=done, total=total,
                                description=f"{name} [{rep + 1}/{n_repeat}]")

            with _bad_input():
                run = evaluate_config(cfg, path.stem, data_root, n_repeat, limit, on_pair,
                                      backends)
        table = Table(title=f"{path.stem}: {cfg.dataset}")
        for col in ("results", "pairs", "verified", "static pass", "errors", "mean time (s)",
                    "mean tokens"):
            table.add_column(col, justify="right" if col != "results" else "left")
        for rep in run.repetitions:
            s = summarize(list(rep.records.values()))
            table.add_row(f"{rep.level_dir.name}/{rep.folder.name}", f"{s['pairs']:.0f}",
                          f"{s['verified']:.0%}", f"{s['passed']:.0%}", f"{s['errors']:.0f}",
                          f"{s['mean_time_s']:.1f}", f"{s['mean_tokens']:.0f}")
        err.print(table)
        failed = sum(rep.errors for rep in run.repetitions)
        if failed:
            first_error = next(r["error"] for rep in run.repetitions
                               for r in rep.records.values() if r.get("error"))
            err.print(f"[yellow]warning:[/] {failed} pair run(s) failed; first error: "
                      f"{first_error}", markup=True)


# ---- metrics ----------------------------------------------------------------------------------------


@loop_app.command("metrics")
def metrics(
    config: Annotated[list[Path], typer.Option(
        "-c", "--config", help="Loop evaluation YAML, repeatable.")],
    index: Annotated[int | None, typer.Option(
        "-i", "--index", help="Only the i-th repetition (oldest first; -1 = latest); "
        "written to metrics_<i>.csv.")] = None,
    data_root: DataRoot = DEFAULT_DATA_ROOT,
) -> None:
    """Compute metrics.csv (one row per pair per repetition) next to the timestamp folders."""
    from collabcoder.training.evaluation.loop_eval import build_backend
    from collabcoder.training.evaluation.loop_metrics import compute_metrics

    with _bad_input():
        loaded = [(path, load_loop_config(path)) for path in config]
    for path, cfg in loaded:
        reviewer: Callable[[], Any] | None = None
        settings = cfg.reviewer
        if settings is not None and "reviewer_score" in cfg.scores:
            reviewer = functools.partial(build_backend, settings.backend, settings.model,
                                         settings.endpoint, settings.api_key(),
                                         settings.backend_options)
            with _bad_input():  # build once now so a bad setting fails before any work
                reviewer()
        with _progress() as progress:
            bar = progress.add_task(f"metrics {path.stem}", total=None)
            with _bad_input():
                reports = compute_metrics(cfg, path.stem, data_root, index, reviewer,
                                          _updater(progress, bar))
        for report in reports:
            for warning in report.warnings:
                err.print(f"[yellow]warning:[/] {warning}", markup=True)
            table = Table(title=f"{path.stem}: means over {len(report.rows)} row(s)")
            table.add_column("metric")
            table.add_column("mean", justify="right")
            for name, value in report.means().items():
                table.add_row(name, f"{value:.4g}")
            err.print(table)
            err.print(f"metrics: {report.path}")


# ---- export, preprocess ---------------------------------------------------------------------------


@loop_app.command("export")
def export(
    name: Annotated[str, typer.Option("-n", "--name", help="Dataset: NAME or NAME/level_k.")],
    data_root: DataRoot = DEFAULT_DATA_ROOT,
    fmt: Annotated[str, typer.Option(
        "--format", help="raw: user = input, assistant = output (LLMcoder's); loop: the "
        "messages the feedback loop sends and the fenced reply it reads.")] = "raw",
    system_prompt: Annotated[Path | None, typer.Option(
        "-p", "--system-prompt", help="File with the system prompt of every row.")] = None,
) -> None:
    """Write DATA_ROOT/NAME/conversations.jsonl: chat-format fine-tuning rows."""
    if fmt not in ("raw", "loop"):
        _fail(f"unknown format {fmt!r}; expected raw or loop")
    if system_prompt is not None and not system_prompt.is_file():
        _fail(f"system prompt file not found: {system_prompt}")
    prompt = system_prompt.read_text(encoding="utf-8") if system_prompt else None
    with _progress() as progress, _bad_input():
        bar = progress.add_task(f"export {name}", total=None)
        path, count = export_conversations(
            data_root, name, "loop" if fmt == "loop" else "raw", prompt,
            _updater(progress, bar))
    err.print(f"{count} conversation(s) written to {path}")


@loop_app.command("preprocess")
def preprocess(
    name: Annotated[str, typer.Option(
        "-n", "--name", help="Dataset to write: NAME (-> NAME/level_0) or NAME/level_k.")],
    source: Annotated[Path, typer.Option("--source", help="Folder of Python files to cut.")],
    size: Annotated[int, typer.Option("-s", "--size", min=1, help="Pairs to write.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same pairs.")] = 0,
    per_file: Annotated[int, typer.Option("--per-file", min=1,
                                          help="Pairs cut from one file at most.")] = 1,
    max_lines: Annotated[int, typer.Option(
        "--max-lines", min=1, help="Longest reference output, in lines.")] = 6,
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="Replace existing pairs.")] = False,
    data_root: DataRoot = DEFAULT_DATA_ROOT,
) -> None:
    """Cut pairs (code up to a cursor inside a function body, the rest of that statement) out
    of the Python files under SOURCE; files that do not parse are skipped."""
    level_dir = level_dir_for(data_root, name)
    with _bad_input():
        if (level_dir / "pairs").exists() and any((level_dir / "pairs").iterdir()) \
                and not overwrite:
            raise PairsError(f"{level_dir / 'pairs'} already holds pairs; pass --overwrite "
                             "to replace them")
        with _progress() as progress:
            bar = progress.add_task("cutting", total=size)
            samples = build_samples(
                source, size, seed, per_file, max_lines,
                _updater(progress, bar))
        if not samples:
            raise PairsError(f"no Python file under {source} gave a pair")
        pairs_dir = write_pairs(level_dir, samples, overwrite)
    short = f" (asked for {size}: not enough usable code)" if len(samples) < size else ""
    err.print(f"{len(samples)} pair(s) written to {pairs_dir}{short}")
