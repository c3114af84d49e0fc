"""The code stays ruff- and mypy-clean (the same checks as `make lint`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "lint", Path(__file__).resolve().parents[1] / "bench" / "lint.py"
)
assert _spec and _spec.loader
lint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lint)


def test_ruff_clean() -> None:
    assert lint.run_ruff() == 0


def test_mypy_clean() -> None:
    assert lint.run_mypy() == 0
