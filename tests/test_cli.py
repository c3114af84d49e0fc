"""Every `collab-train` command answers `--help`, and the installed script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from collabcoder.training.cli import app

COMMANDS = sorted(
    c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
)


def test_commands_are_registered() -> None:
    assert {"config", "evaluate", "sample", "grpo", "magrpo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_installed_script() -> None:
    # Beside the running interpreter: CI runs .venv/bin/python without activating the venv.
    exe = Path(sys.executable).parent / "collab-train"
    assert exe.is_file(), f"{exe} is missing: is the package installed?"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out


def test_typer_app_type() -> None:
    assert isinstance(app, typer.Typer)
