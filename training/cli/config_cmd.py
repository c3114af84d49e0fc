"""`collab-train config`: print the merged, validated config."""

from __future__ import annotations

import typer

from collabcoder.training.cli.app import app
from collabcoder.training.config import config_to_yaml
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


@app.command("config", cls=ConfigCommand)
def config_command(
    config: ConfigOption = None,
    override: OverrideOption = None,
    model_name: ModelNameOption = None,
    num_epochs: NumEpochsOption = None,
    num_turns: NumTurnsOption = None,
    turn_gradient_weights: TurnGradientWeightsOption = None,
    output_base_dir: OutputBaseDirOption = None,
) -> None:
    # Rich help keeps a docstring's line breaks, so each paragraph is one line.
    """Print the merged, validated training config as YAML, defaults included.

    Layers apply in order: the --config file, each --override, then the legacy flags. A bad key or value is reported with the file line or the override that set it (exit status 2).

    Example: collab-train config -c configs/mt_magrpo_he.yaml -o magrpo.num_turns=3 magrpo.turn_gradient_weights=[1.2,0.8,0.5] dataset.train_split=test[:20] --num_epochs 4
    """
    cfg = resolve(
        config, override, model_name, num_epochs, num_turns, turn_gradient_weights, output_base_dir
    )
    typer.echo(config_to_yaml(cfg), nl=False)
