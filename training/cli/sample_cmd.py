"""`collab-train sample`: a model writes solutions for a dataset split, one JSONL line per sample.

The file is appended to and flushed per task, so a crash loses at most the task in flight and
`--resume` carries on where it stopped. `collab-train evaluate` judges the file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from collabcoder.training.cli.app import app

console = Console(stderr=True)


def _done_task_ids(path: Path) -> set[str]:
    done: set[str] = set()
    if not path.exists():
        return done
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                done.add(json.loads(line)["task_id"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise typer.BadParameter(f"{path}:{number}: not a sample line ({exc})") from exc
    return done


@app.command("sample")
def sample(
    out: Annotated[Path, typer.Option(help="JSONL file the samples are appended to.")],
    model: Annotated[str, typer.Option(help="Model name, hub id or local folder.")] = (
        "smollm2-135m-instruct"
    ),
    backend: Annotated[
        str,
        typer.Option(
            help="auto (in process: llamacpp for GGUF models such as the embedded default, "
            "transformers for checkpoints) | llamacpp | transformers | openai (HTTP endpoint) "
            "| vllm."
        ),
    ] = "auto",
    endpoint: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")
    ] = None,
    dataset: Annotated[str, typer.Option(help="humaneval, coophumaneval or a hub id.")] = (
        "humaneval"
    ),
    split: Annotated[str, typer.Option(help="Split with optional slice, e.g. 'test[:20]'.")] = (
        "test"
    ),
    n: Annotated[int, typer.Option(min=1, help="Samples per task.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 is greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 384,
    seed: Annotated[int, typer.Option()] = 0,
    stop: Annotated[
        list[str] | None,
        typer.Option(help="Stop sequence (repeatable). Default: the end of the first code block."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Skip tasks already in OUT instead of refusing to overwrite.")
    ] = False,
) -> None:
    """Generate solutions with a model (default: the embedded SmolLM2-135M-Instruct on CPU)."""
    from collabcoder.analyzers.protocol.program import FeedbackTask
    from collabcoder.analyzers.protocol.prompts import initial_prompts
    from collabcoder.analyzers.protocol.replies import extract_function
    from collabcoder.server.backends.base import CompletionRequest
    from collabcoder.server.backends.factory import make_backend
    from collabcoder.training.data import DatasetError, load_tasks

    try:
        tasks = load_tasks(dataset, split)
    except DatasetError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if out.exists() and not resume:
        console.print(f"[red]error:[/] {out} exists; pass --resume to continue it")
        raise typer.Exit(2)
    # Chat models close their code block, then explain it: the explanation is wasted tokens.
    # An opening fence is followed by a language name, so "\n```\n" only matches a closing one.
    stops = stop if stop is not None else ["\n```\n"]
    done = _done_task_ids(out)
    todo = [t for t in tasks if t.task_id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    engine = make_backend(backend, model=model, endpoint=endpoint)

    async def run() -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console) as progress, out.open("a") as sink:
            bar = progress.add_task(f"sampling {model}", total=len(todo))
            for task in todo:
                ftask = FeedbackTask(task.prompt, task.entry_point, task.task_id)
                prompt = initial_prompts(ftask, num_agents=1)["main"]
                request = CompletionRequest(
                    messages=({"role": "user", "content": prompt},), n=n,
                    temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                    stop=tuple(stops),
                )
                for cand in await engine.complete(request):
                    code = extract_function(cand.text, task.entry_point, prompt=task.prompt)
                    # prompt + "\n" + full function: the prompt's stub (a docstring body) stays
                    # valid Python and its helper functions stay defined, as in the harness.
                    line = {"task_id": task.task_id, "completion": "\n" + code,
                            "raw": cand.text, "completion_tokens": cand.completion_tokens,
                            "latency_s": round(cand.latency_s, 3)}
                    sink.write(json.dumps(line) + "\n")
                sink.flush()
                progress.advance(bar)
        await engine.aclose()

    asyncio.run(run())
    console.print(f"wrote {len(todo) * n} samples for {len(todo)} tasks to {out}")
