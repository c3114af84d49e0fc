"""`collab-train agentic sft | rl | evaluate`: the code-agentic pipeline's training commands.

    collab-train agentic sft -c configs/code_agentic_sft.yaml -o model.name=smollm2-135m-instruct
    collab-train agentic rl  -c configs/code_agentic_ppo.yaml -o model.name=output/agentic_sft
    collab-train agentic rl  -c configs/code_agentic_ppo.yaml -o rl.algorithm=grpo --resume
    collab-train agentic evaluate --model base=smollm2-135m-instruct \
        --model trained=output/agentic_rl --tasks "coophumaneval[:20]" --out eval.json

`--override` takes OmegaConf dotlist pairs (several after one flag, or the flag repeated);
`--resume` continues the run in `output.base_dir` from its newest whole checkpoint. The run
folder is checked (writable, resumable) before any model or data is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from collabcoder.training.cli.agentic_cmd import agentic_app
from collabcoder.training.cli.train_cmd import ResumeOption, fail
from collabcoder.training.config.cli_options import ConfigCommand, ConfigOption, OverrideOption

err = Console(stderr=True)


def _load(kind: Any, config: Path | None, override: list[str] | None) -> Any:
    from collabcoder.training.agentic.config import load_agentic_config
    from collabcoder.training.config import ConfigError

    if config is None:
        fail(ConfigError("no config given: pass --config FILE, e.g. configs/code_agentic_sft.yaml"))
    try:
        return load_agentic_config(kind, config, list(override or []))
    except ConfigError as exc:
        fail(exc)


@agentic_app.command("sft", cls=ConfigCommand)
def sft(
    config: ConfigOption = None, override: OverrideOption = None, resume: ResumeOption = False
) -> None:
    """Supervised fine-tuning on debugging conversations (TRL SFTTrainer, assistant tokens only).

    Tool responses, prompts and role headers never count in the loss.

    Example: collab-train agentic sft -c configs/code_agentic_sft.yaml -o data.train_file=conv.jsonl
    """
    from collabcoder.training.agentic.config import AgenticSFTConfig
    from collabcoder.training.agentic.sft import plan_sft_start, run_sft
    from collabcoder.training.data.tasks import DatasetError
    from collabcoder.training.trainers.resume import RunFolderError

    cfg = _load(AgenticSFTConfig, config, override)
    try:
        plan_sft_start(Path(cfg.output.base_dir), resume)  # before the model loads
        run_dir = run_sft(
            cfg,
            resume=resume,
            on_log=lambda step, m: err.print(
                f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()),
                highlight=False,
            ),
        )
    except (RunFolderError, DatasetError) as exc:
        fail(exc)
    err.print(f"done: run folder {run_dir} (main/, agents.json, checkpoints/, metrics.jsonl)")


@agentic_app.command("rl", cls=ConfigCommand)
def rl(
    config: ConfigOption = None, override: OverrideOption = None, resume: ResumeOption = False
) -> None:
    """Multi-turn RL with the code-execution tool: rl.algorithm ppo (value head, GAE) or grpo.

    Example: collab-train agentic rl -c configs/code_agentic_ppo.yaml -o rl.algorithm=grpo rl.max_steps=50
    """
    from collabcoder.training.agentic.config import AgenticRLConfig
    from collabcoder.training.agentic.rl import ROLES, AgenticRLTrainer, RLStepReport
    from collabcoder.training.agentic.sources import load_tasks
    from collabcoder.training.agentic.tool import ToolConfigError
    from collabcoder.training.data.tasks import DatasetError
    from collabcoder.training.trainers.checkpoint import CheckpointError
    from collabcoder.training.trainers.resume import RunFolderError, check_writable, plan_start

    cfg = _load(AgenticRLConfig, config, override)
    run_dir = Path(cfg.output.base_dir)
    try:
        check_writable(run_dir)
        start = plan_start(run_dir, resume, ROLES)
        tool_config = cfg.tool.load()
        train = load_tasks(cfg.data.train)
        evals = load_tasks(cfg.data.eval) if cfg.data.eval else []
    except (RunFolderError, DatasetError, ToolConfigError) as exc:
        fail(exc)
    for note in start.notes:
        err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)

    def on_step(report: RLStepReport) -> None:
        m = report.metrics
        line = (
            f"step {report.step}/{report.total_steps}: reward {m['reward/mean']:.3f} "
            f"solved {m['solve_rate']:.2f} calls {m['tool/calls_per_episode']:.2f} "
            f"({m['time/step_s']:.0f}s)"
        )
        if report.eval:
            line += f" | eval reward {report.eval['eval/reward/mean']:.3f}"
        err.print(line, highlight=False)

    try:
        trainer = AgenticRLTrainer(cfg, tool_config, train, evals, start=start, callback=on_step)
        result = trainer.train()
    except (RunFolderError, CheckpointError) as exc:
        fail(exc, 1)
    err.print(
        f"done: step {result.step}/{cfg.rl.max_steps} ({cfg.rl.algorithm}); run folder "
        f"{result.run_dir} (main/, agents.json, checkpoints/, metrics.jsonl)",
        highlight=False,
    )


ModelOpt = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        metavar="LABEL=MODEL",
        help="A model to evaluate (hub id, folder, run folder, smollm2-135m-instruct); repeat "
        "it: --model base=... --model trained=...",
    ),
]


TASKS_HELP = (
    "Held-out tasks: a code-agentic file or humaneval/coophumaneval, with an optional slice: "
    "coophumaneval[:20]."
)


@agentic_app.command("evaluate")
def evaluate(
    model: ModelOpt,
    tasks: Annotated[str, typer.Option(help=TASKS_HELP)] = "coophumaneval",
    tool_config: Annotated[Path | None, typer.Option("--tool-config")] = None,
    max_debug_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    samples: Annotated[int, typer.Option(min=1, help="Episodes per task.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, help="0: greedy.")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Per assistant turn.")] = 512,
    max_total_tokens: Annotated[int, typer.Option(min=1)] = 4096,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16 | auto")] = "float32",
    out: Annotated[Path | None, typer.Option(help="Write the full report (JSON) here.")] = None,
) -> None:
    """Compare models (e.g. base and trained) on the same held-out tasks.

    Reports the solve rate within k attempts, mean attempts on solved problems, the valid
    tool-call rate and the reward components.
    """
    from collabcoder.analyzers.files import atomic_write
    from collabcoder.training.agentic.config import ToolSection
    from collabcoder.training.agentic.evaluate import EvalSettings, compare_models, table_rows
    from collabcoder.training.agentic.rollout import RolloutSettings
    from collabcoder.training.agentic.sources import load_tasks
    from collabcoder.training.agentic.tool import ToolConfigError
    from collabcoder.training.data.tasks import DatasetError

    models: dict[str, str] = {}
    for item in model:
        label, sep, name = item.partition("=")
        if not sep or not label or not name:
            fail(
                ValueError(
                    f"--model {item!r}: expected LABEL=MODEL, e.g. base=smollm2-135m-instruct"
                )
            )
        models[label] = name
    try:
        section = ToolSection(
            config=str(tool_config) if tool_config else None, max_debug_attempts=max_debug_attempts
        )
        tcfg = section.load()
        chosen = load_tasks(tasks)
    except (DatasetError, ToolConfigError) as exc:
        fail(exc)
    settings = EvalSettings(
        samples=samples,
        rollout=RolloutSettings(max_new_tokens, max_total_tokens, temperature),
        batch_size=batch_size,
        dtype=dtype,
    )
    report = compare_models(models, chosen, tcfg, settings)
    table = Table(title=f"{len(chosen)} tasks x {samples} sample(s)")
    table.add_column("metric")
    for label in models:
        table.add_column(label, justify="right")

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    for name, values in table_rows(report):
        table.add_row(name, *(fmt(v) for v in values))
    Console().print(table)
    if out is not None:
        atomic_write(out, json.dumps(report, indent=2) + "\n")
        err.print(f"report: {out}")
