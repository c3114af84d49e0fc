"""`collab-train`: importing this package registers every command on `app`."""

from __future__ import annotations

from collabcoder.training.cli import (  # noqa: F401  (importing registers the commands)
    agentic_cmd,
    agentic_train_cmd,
    config_cmd,
    evaluate_cmd,
    loop_cmd,
    sample_cmd,
    train_cmd,
)
from collabcoder.training.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
