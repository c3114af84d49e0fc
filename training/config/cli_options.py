"""Config options shared by every `collab-train` command that loads a training config.

A command gets `--config`, `--override` and the legacy flags in one go::

    @app.command("magrpo", cls=ConfigCommand)
    def magrpo(
        config: ConfigOption = None,
        override: OverrideOption = None,
        model_name: ModelNameOption = None,
        num_epochs: NumEpochsOption = None,
        num_turns: NumTurnsOption = None,
        turn_gradient_weights: TurnGradientWeightsOption = None,
        output_base_dir: OutputBaseDirOption = None,
    ) -> None:
        cfg = resolve(config, override, model_name, num_epochs, num_turns,
                      turn_gradient_weights, output_base_dir)

`ConfigCommand` accepts the reference scripts' multi-value forms, which click options cannot
take: `--override a=1 b=2` and `--turn_gradient_weights 1.2 0.8`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from collabcoder.training.config.load import ConfigError, load_config
from collabcoder.training.config.schema import TrainConfig

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML config, e.g. configs/mt_magrpo_he.yaml.",
        show_default=False,
    ),
]
OverrideOption = Annotated[
    list[str] | None,
    typer.Option(
        "--override",
        "-o",
        metavar="KEY.PATH=VALUE",
        help=(
            "Set one key; repeatable, and one --override may take several pairs. Values are "
            "YAML literals ([1.5,0.5], True, 3e-5); string keys keep the text as typed "
            "(dataset.train_split=test[:20]). model_name=X is model.name=X."
        ),
        show_default=False,
    ),
]


def _legacy(flag: str, help: str, **extra: Any) -> Any:
    return typer.Option(
        flag,
        help=help,
        rich_help_panel="Legacy flags (applied after --override)",
        show_default=False,
        **extra,
    )


ModelNameOption = Annotated[
    str | None, _legacy("--model_name", "Same as --override model.name=NAME.")
]
NumEpochsOption = Annotated[
    int | None, _legacy("--num_epochs", "The trainer section's num_train_epochs.")
]
NumTurnsOption = Annotated[int | None, _legacy("--num_turns", "The trainer section's num_turns.")]
TurnGradientWeightsOption = Annotated[
    list[float] | None,
    _legacy(
        "--turn_gradient_weights",
        "One loss weight per turn, space separated: --turn_gradient_weights 1.2 0.8.",
        metavar="W",
    ),
]
OutputBaseDirOption = Annotated[
    str | None, _legacy("--output_base_dir", "Same as --override output.base_dir=DIR.")
]


def _is_pair(token: str) -> bool:
    return "=" in token and not token.startswith("-")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


# Options whose value may continue over the following tokens, and which tokens continue it.
MULTI_VALUE_OPTIONS: dict[str, Callable[[str], bool]] = {
    "--override": _is_pair,
    "-o": _is_pair,
    "--turn_gradient_weights": _is_number,
}


def expand_multi_value_args(args: Sequence[str]) -> list[str]:
    """`--override a=1 b=2` -> `--override a=1 --override b=2` (same for the weights), so
    click parses them as a repeated option and their order is kept."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        out.append(token)
        i += 1
        if token == "--":
            out.extend(args[i:])
            break
        name, inline, _ = token.partition("=")
        continues = MULTI_VALUE_OPTIONS.get(name if token.startswith("--") else token)
        if continues is None:
            continue
        token = name
        if not inline:  # `--override a=1` rather than `--override=a=1`
            if i >= len(args):
                continue
            out.append(args[i])  # the option's own value; click reports it if it is wrong
            i += 1
        while i < len(args) and continues(args[i]):
            out.extend([token, args[i]])
            i += 1
    return out


class ConfigCommand(TyperCommand):
    """A typer command that also takes the multi-value option forms (see module docs)."""

    # `ctx` is typed Any: typer >= 0.29 vendors click (typer._click) and older typer uses click
    # itself, so no public Context type matches both.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_args(args))


def resolve(
    config: Path | None,
    override: Sequence[str] | None = None,
    model_name: str | None = None,
    num_epochs: int | None = None,
    num_turns: int | None = None,
    turn_gradient_weights: Sequence[float] | None = None,
    output_base_dir: str | None = None,
) -> TrainConfig:
    """Load the config for a command; on a ConfigError print it (no traceback) and exit 2."""
    flags: dict[str, Any] = {
        "model_name": model_name,
        "num_epochs": num_epochs,
        "num_turns": num_turns,
        "turn_gradient_weights": list(turn_gradient_weights) if turn_gradient_weights else None,
        "output_base_dir": output_base_dir,
    }
    try:
        if config is None:
            raise ConfigError("no config given: pass --config FILE, e.g. configs/magrpo_he.yaml")
        return load_config(config, list(override or []), flags)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
