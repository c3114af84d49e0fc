"""The `collab-train` typer app. Commands live in sibling modules and register on `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="collab-train",
    help="Train and evaluate the models Collab Coder serves (GRPO, MAGRPO, multi-turn MAGRPO).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
