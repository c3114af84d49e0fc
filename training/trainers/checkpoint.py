"""Run folders, checkpoints and atomic writes.

A run folder (`output.base_dir`):

    config.yaml            the merged config
    metrics.jsonl          one line per logged step (train and eval)
    tensorboard/           event files
    checkpoints/step-0000200/
        agents.json aux/ main/     an agents folder the server can load as it is
        trainer_state.pt           optimizers, schedulers, counters
        rng_rank0.pt ...           every process's random state
    agents.json aux/ main/  the final agents (with `output.save_final_model`)
    state.json             progress: last step, finished or not

A checkpoint is written into a hidden temp folder and renamed into place, and every JSON file is
written to a temp file and renamed: a crash at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from collabcoder.analyzers.files import atomic_write, atomic_write_with

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
TRAINER_STATE = "trainer_state.pt"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:07d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _NAME.match(path.name)
        if m and (path / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune(run_dir: Path, keep: int | None) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (none when `keep` is None)."""
    if keep is None:
        return []
    old = [path for _, path in list_checkpoints(run_dir)[:-keep]]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, fsync, rename)."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def staging_dir(final: Path) -> Path:
    """The temp folder a checkpoint is written into before `publish` renames it."""
    return final.parent / f".{final.name}.tmp"


def publish(stage: Path, final: Path) -> None:
    """Move a fully written folder into place (replacing an older one of the same name)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage, final)


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Single-process form: yield a temp folder, rename it to `final` when the block ends."""
    stage = staging_dir(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    publish(stage, final)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through a temp file, so a reader never sees half a file."""
    atomic_write_with(path, lambda fh: torch.save(obj, fh))


def load_torch(path: Path) -> Any:
    # Our own files: optimizer states and RNG states hold more than tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
