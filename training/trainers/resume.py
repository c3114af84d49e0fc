"""Where a run starts, decided before any model is loaded.

`check_writable` proves the output folder takes a file: otherwise the first save fails after the
models, the tokenizer and the data have been loaded for nothing. `plan_start` picks the
checkpoint `--resume` continues: the newest one `checkpoint.verify` finds whole. Each damaged
one it passes over is named, file and fault, in a note for the user; when none is whole the run
stops with one error naming every damaged file, and nothing in the folder is changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collabcoder.training.trainers import checkpoint as ckpt


class RunFolderError(RuntimeError):
    """The output folder cannot take this run: it holds another run, a finished one, no whole
    checkpoint to resume, or it cannot be written."""


@dataclass(frozen=True)
class RunStart:
    """The step training continues after (0: from the start), the checkpoint to load (None: the
    base model) and one-line notes on anything damaged that was passed over."""

    step: int = 0
    checkpoint: Path | None = None
    notes: tuple[str, ...] = ()


def check_writable(run_dir: Path) -> None:
    """Create `run_dir` and a file in it, or raise RunFolderError saying why not.

    Writing a file is the only test that holds for every user: permission bits say nothing to
    root, and a read-only mount or a path through a regular file defeats any user."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunFolderError(
            f"output folder {run_dir} is not writable: {_why(run_dir, exc)}; set "
            "output.base_dir to a folder you can write"
        ) from exc


def _why(run_dir: Path, exc: OSError) -> str:
    for place in (run_dir, *run_dir.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                return f"{place} is a file, not a folder"
            break
    return (exc.strerror or str(exc)).lower()


def plan_start(run_dir: Path, resume: bool, roles: Sequence[str]) -> RunStart:
    """Where training in `run_dir` starts; RunFolderError when it cannot.

    Without `resume` a folder holding a run is refused. With it: a finished run is refused, a
    run killed before its first checkpoint starts over, and otherwise the newest whole
    checkpoint wins. `state.json` is only read for "finished": when it is damaged the
    checkpoints folder, scanned, says where the run stands."""
    state_path = run_dir / ckpt.STATE_FILE
    state, state_problem = ckpt.read_state(run_dir)
    found = ckpt.list_checkpoints(run_dir)
    if not resume:
        if found or state_path.exists():
            raise RunFolderError(
                f"{run_dir} already holds a run; pass --resume to continue it, or set "
                "output.base_dir to a new folder"
            )
        return RunStart()
    if state is not None and state.get("finished"):
        raise RunFolderError(
            f"{run_dir} holds a finished run (step {state.get('step')}); nothing to resume"
        )
    notes: list[str] = []
    if state_problem is not None:
        notes.append(
            f"{state_path} {state_problem}; looking for the newest whole checkpoint in "
            f"{run_dir / ckpt.CHECKPOINTS} instead"
        )
    skipped: list[str] = []
    for step, folder in reversed(found):
        damage = ckpt.verify(folder, roles)
        if not damage:
            if skipped:
                notes.append(f"{'; '.join(skipped)}; resuming from step {step} ({folder})")
            return RunStart(step, folder, tuple(notes))
        skipped.append(f"checkpoint {folder.name} is damaged: {', '.join(map(str, damage))}")
    if skipped:
        raise RunFolderError(
            f"no good checkpoint to resume in {run_dir / ckpt.CHECKPOINTS}: "
            f"{'; '.join(skipped)}; move these checkpoints away to start the run over"
        )
    return RunStart(notes=tuple(notes))  # stopped before its first checkpoint: start over


def load_trainer_state(
    folder: Path, optimizers: Sequence[Any], schedulers: Sequence[Any], process_index: int
) -> None:
    """Optimizers, schedulers and this rank's RNG from a checkpoint. `verify` passed its files,
    so a failure here is a state that does not fit this run: say so in one line, rather than a
    traceback, or a bare EOFError that click turns into "Aborted."."""
    rank_file = folder / f"rng_rank{process_index}.pt"
    try:
        state = ckpt.load_torch(folder / ckpt.TRAINER_STATE)
        for opt, sd in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(sd)
        for sched, sd in zip(schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(sd)
        if rank_file.is_file():
            ckpt.set_rng_state(ckpt.load_torch(rank_file))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunFolderError(
            f"checkpoint {folder} does not load into this run ({type(exc).__name__}: {first}); "
            "was the config changed since it was written?"
        ) from exc
