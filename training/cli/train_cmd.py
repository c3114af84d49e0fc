"""`collab-train grpo` and `collab-train magrpo`: train agents from a config.

    collab-train grpo   --config configs/grpo_he.yaml
    collab-train magrpo --config configs/magrpo_che.yaml
    collab-train magrpo --config configs/mt_magrpo_he.yaml \
        --override magrpo.num_turns=2 magrpo.external_mode=level_feedback magrpo.sandbox_slice=-2
    accelerate launch --multi_gpu --num_processes 2 $(which collab-train) magrpo -c ...   # DDP

The run folder is `output.base_dir`; `--resume` continues its newest whole checkpoint. The
folder is checked (writable, resumable) before any model or data is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from collabcoder.training.cli.app import app
from collabcoder.training.config import TrainConfig
from collabcoder.training.config.cli_options import (
    ConfigCommand,
    ConfigOption,
    ModelNameOption,
    NumEpochsOption,
    NumTurnsOption,
    OutputBaseDirOption,
    OverrideOption,
    TurnGradientWeightsOption,
    resolve,
)

err = Console(stderr=True)


def fail(exc: Exception, code: int = 2) -> NoReturn:
    """One unwrapped line on stderr (paths in it stay whole and greppable), then exit."""
    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from exc


ResumeOption = Annotated[
    bool,
    typer.Option("--resume", help="Continue the run in output.base_dir from its last checkpoint."),
]


def build_env(cfg: TrainConfig) -> Any:
    """The coding environment the config describes (the expert only for expert_edits turns)."""
    from collabcoder.training.rollout import CodeCollabEnv, ExpertClient, resolve_expert

    a = cfg.trainer
    expert = None
    if a.num_turns > 1 and a.external_mode == "expert_edits":
        assert a.expert_model is not None  # the schema requires it for expert_edits
        expert = ExpertClient(resolve_expert(a.expert_model))
    return CodeCollabEnv(
        a.num_agents,
        external_mode=a.external_mode,
        sandbox_slice=a.sandbox_slice,
        original_prompt=a.external_original_prompt,
        previous_response=a.external_previous_response,
        expert=expert,
    )


def run_training(cfg: TrainConfig, resume: bool) -> None:
    from transformers.utils import logging as hf_logging

    from collabcoder.training.data import DatasetError, load_tasks
    from collabcoder.training.rollout import ExpertConfigError
    from collabcoder.training.trainers import MAGRPOTrainer, RunFolderError, StepReport, agent_roles
    from collabcoder.training.trainers.checkpoint import CheckpointError
    from collabcoder.training.trainers.resume import check_writable, plan_start

    # Under `accelerate launch` every process runs this command; one bar is enough.
    quiet = os.environ.get("RANK", "0") != "0"
    run_dir = Path(cfg.output.base_dir)
    try:  # before anything is loaded: a bad folder costs a second, not a model load
        check_writable(run_dir)
        start = plan_start(run_dir, resume, agent_roles(cfg.trainer.num_agents))
    except RunFolderError as exc:
        fail(exc)
    for note in () if quiet else start.notes:
        err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)

    hf_logging.disable_progress_bar()  # one bar here, not one per saved shard
    try:
        train = load_tasks(cfg.dataset.name, cfg.dataset.train_split)
        evals = load_tasks(cfg.dataset.name, cfg.dataset.eval_split) if cfg.dataset.eval_split else []
        env = build_env(cfg)
    except (DatasetError, ExpertConfigError) as exc:
        fail(exc)

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False, disable=quiet) as progress:
        bar = progress.add_task(f"{cfg.trainer_name} {cfg.model.name}", total=None, info="")

        def on_step(report: StepReport) -> None:
            m = report.metrics
            info = f"reward {m.get('reward/mean', float('nan')):.3f}"
            if report.eval:
                info += f" | eval {report.eval.get('eval/reward/mean', float('nan')):.3f}"
            progress.update(bar, completed=report.step, total=report.total_steps, info=info)

        try:
            trainer = MAGRPOTrainer(cfg, env, train, evals, resume=start, callback=on_step)
        except RunFolderError as exc:
            fail(exc)
        progress.update(bar, completed=trainer.start_step, total=trainer.total_steps)
        try:
            result = trainer.train()
        except CheckpointError as exc:  # the previous checkpoint is still the latest
            fail(exc, 1)
    if trainer.accelerator.is_main_process:
        err.print(
            f"done: step {result.step}/{result.total_steps}; run folder {result.run_dir} "
            "(config.yaml, metrics.jsonl, tensorboard/, checkpoints/, agents.json)",
            highlight=False,
        )


def _command(expected: str) -> Any:
    def command(
        config: ConfigOption = None,
        override: OverrideOption = None,
        model_name: ModelNameOption = None,
        num_epochs: NumEpochsOption = None,
        num_turns: NumTurnsOption = None,
        turn_gradient_weights: TurnGradientWeightsOption = None,
        output_base_dir: OutputBaseDirOption = None,
        resume: ResumeOption = False,
    ) -> None:
        cfg = resolve(
            config, override, model_name, num_epochs, num_turns, turn_gradient_weights,
            output_base_dir,
        )  # fmt: skip
        if cfg.trainer_name != expected:
            err.print(
                f"[red]error:[/] {config} has a '{cfg.trainer_name}' section; run "
                f"`collab-train {cfg.trainer_name}` for it",
                highlight=False,
            )
            raise typer.Exit(2)
        run_training(cfg, resume)

    return command


grpo = _command("grpo")
grpo.__doc__ = """Train one agent with GRPO (MAGRPO with one agent).

Example: collab-train grpo -c configs/grpo_he.yaml -o grpo.num_train_epochs=2 dataset.train_split=test[:20]
"""
magrpo = _command("magrpo")
magrpo.__doc__ = """Train cooperating agents with MAGRPO, single- or multi-turn.

Example: collab-train magrpo -c configs/mt_magrpo_he.yaml -o magrpo.num_turns=2 magrpo.external_mode=level_feedback magrpo.sandbox_slice=-2
"""
app.command("grpo", cls=ConfigCommand)(grpo)
app.command("magrpo", cls=ConfigCommand)(magrpo)


if __name__ == "__main__":  # `python -m collabcoder.training.cli.train_cmd magrpo -c ...`
    app()
