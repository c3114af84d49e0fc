"""Run folders, checkpoints and atomic writes.

A run folder (`output.base_dir`):

    config.yaml            the merged config
    metrics.jsonl          one line per logged step (train and eval)
    tensorboard/           event files
    checkpoints/step-0000200/
        agents.json aux/ main/     an agents folder the server can load as it is
        trainer_state.pt           optimizers, schedulers, counters
        rng_rank0.pt ...           every process's random state
        checkpoint.json            every file above with its size and sha256, written last
    agents.json aux/ main/  the final agents (with `output.save_final_model`)
    state.json             progress: last step, finished or not

A checkpoint is written into a hidden temp folder, sealed (`seal`: each file opens as what it
claims to be, `checkpoint.json` lists sizes and hashes and is read back) and only then renamed
into place, so the newest `step-N` folder is always a whole checkpoint. JSON files go through a
temp file and a rename: a crash at any moment leaves the previous checkpoint whole. Damage done
afterwards (a full disk, a copy cut short, a bad sector) is what `verify` finds on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from collabcoder.analyzers.files import atomic_write, atomic_write_with

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
TRAINER_STATE = "trainer_state.pt"
MANIFEST = "checkpoint.json"
DAMAGED_SUFFIX = ".damaged"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint failed its check right after it was written; the previous one stays latest."""


@dataclass(frozen=True)
class Damage:
    """One damaged file: `problem` reads after the path ("is truncated (10 of 20 bytes)")."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path} {self.problem}"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:07d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every published checkpoint, oldest first; `verify` says if it is whole.

    A published folder is one `publish` renamed into place (or, from runs before manifests, one
    holding a trainer state); staging folders and ones set aside as damaged are not listed."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _NAME.match(path.name)
        if m and ((path / MANIFEST).exists() or (path / TRAINER_STATE).exists()):
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune(run_dir: Path, keep: int | None, upto: int | None = None) -> list[Path]:
    """Delete all but the newest `keep` checkpoints at or before step `upto` (none when `keep`
    is None). Newer ones are left alone: after a resume from an older checkpoint they are the
    damaged ones it skipped, and `publish` sets each aside when its step is written again."""
    if keep is None:
        return []
    found = [(s, p) for s, p in list_checkpoints(run_dir) if upto is None or s <= upto]
    old = [path for _, path in found[:-keep]]
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
    """Move a fully written folder into place. A folder already there is only ever one a resume
    skipped as damaged (a whole one would have been resumed from, and its step never trained
    again): it is renamed to `step-N.damaged`, not deleted, so nothing is lost unseen."""
    if final.exists():
        aside = final.with_name(final.name + DAMAGED_SUFFIX)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
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


# ---- sealing and verifying ----------------------------------------------------------------------


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def inspect_file(path: Path) -> str | None:
    """What is wrong with a file judged by its own format (None: nothing found). Cheap: a
    safetensors header, a torch zip's central directory (at the file's end, so a cut-short file
    has none), a JSON parse. Other files are taken as they are."""
    suffix = path.suffix
    try:
        if suffix not in {".safetensors", ".pt", ".bin", ".json"}:
            return None
        if path.stat().st_size == 0:
            return "is empty"
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt"):
                pass
        elif suffix in {".pt", ".bin"}:
            with zipfile.ZipFile(path):
                pass
        else:
            json.loads(path.read_bytes())
    except OSError as exc:
        return f"is unreadable ({exc.strerror or exc})"
    except Exception as exc:  # BadZipFile, JSONDecodeError, safetensors' own SafetensorError
        return f"is not a whole {suffix[1:]} file ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def seal(stage: Path, step: int, roles: Sequence[str]) -> None:
    """Check every file in a staged checkpoint, write `checkpoint.json` last, read it back.

    Raises CheckpointError naming the file when anything is wrong, before the folder is
    published: a checkpoint that does not pass never becomes the latest."""
    files: dict[str, dict[str, Any]] = {}
    for path in _files(stage):
        problem = inspect_file(path)
        if problem is not None:
            raise CheckpointError(f"{path} {problem} right after it was written")
        files[path.relative_to(stage).as_posix()] = {
            "size": path.stat().st_size,
            "sha256": sha256(path),
        }
    write_json(stage / MANIFEST, {"step": step, "files": files})
    damage = verify(stage, roles, hashes=False)
    if damage:
        raise CheckpointError("; ".join(map(str, damage)) + " right after it was written")


def _size_problem(actual: int, expected: int) -> str | None:
    if actual == expected:
        return None
    if actual == 0:
        return f"is empty (0 of {expected} bytes)"
    if actual < expected:
        return f"is truncated ({actual} of {expected} bytes)"
    return f"has grown ({actual} bytes, {expected} written)"


def _read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in `path`, None), or (None, what is wrong with the file)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"is unreadable ({exc.strerror or exc})"
    if not raw.strip():
        return None, "is empty"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return None, f"is not valid JSON ({_first_line(exc)})"
    if not isinstance(data, dict):
        return None, "is not a JSON object"
    return data, None


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    data, problem = _read_json_object(path)
    if data is not None and not isinstance(data.get("files"), dict):
        return None, "is not a checkpoint manifest (no 'files' object)"
    return data, problem


def verify(folder: Path, roles: Sequence[str], *, hashes: bool = True) -> list[Damage]:
    """Every damaged file in a checkpoint folder (empty list: it is whole).

    With `checkpoint.json`: each listed file must be there with its size (and, with `hashes`,
    its sha256). Without one (checkpoints from before manifests): each file is inspected by its
    format. Either way the trainer state and one folder per role must be present."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return _verify_unlisted(folder, roles)
    data, problem = _read_manifest(manifest)
    if data is None:
        return [Damage(manifest, problem or "is damaged")]
    listed: dict[str, Any] = data["files"]
    damage = [
        Damage(folder / name, "is missing from the checkpoint")
        for name in (TRAINER_STATE, *roles)
        if not any(n == name or n.startswith(f"{name}/") for n in listed)
    ]
    for name, entry in listed.items():
        path = folder / name
        try:
            size = path.stat().st_size
            wrong = _size_problem(size, int(entry["size"]))
            if wrong is None and hashes and sha256(path) != entry["sha256"]:
                wrong = "has changed since it was written (sha256 mismatch)"
        except FileNotFoundError:
            wrong = "is missing"
        except OSError as exc:
            wrong = f"is unreadable ({exc.strerror or exc})"
        except (KeyError, TypeError, ValueError) as exc:
            wrong = f"has a bad entry in {manifest} ({_first_line(exc)})"
        if wrong is not None:
            damage.append(Damage(path, wrong))
    return damage


def _verify_unlisted(folder: Path, roles: Sequence[str]) -> list[Damage]:
    damage = [
        Damage(folder / name, "is missing")
        for name in (TRAINER_STATE, *roles)
        if not (folder / name).exists()
    ]
    for path in _files(folder):
        problem = inspect_file(path)
        if problem is not None:
            damage.append(Damage(path, problem))
    return damage


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


def read_state(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(state.json's content, None), (None, None) when there is none, or (None, what is wrong
    with it): a damaged progress file must not stop a resume, the checkpoints say the rest."""
    path = run_dir / STATE_FILE
    if not path.exists():
        return None, None
    return _read_json_object(path)


def save_sealed(acc: Any, run_dir: Path, step: int, *, roles: Sequence[str], total_steps: int,
                keep: int | None, write: Callable[[Path], None]) -> Path:
    """The checkpoint protocol every trainer follows: each process writes its RNG state into a
    staging folder, the main process `write`s the rest (weights, trainer state, manifest), seals
    it, renames it into place, points state.json at it and prunes old ones. `acc` is the
    trainer's accelerate `Accelerator`."""
    final = checkpoint_dir(run_dir, step)
    stage = staging_dir(final)
    if acc.is_main_process:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    acc.wait_for_everyone()
    save_torch(rng_state(), stage / f"rng_rank{acc.process_index}.pt")
    acc.wait_for_everyone()
    if acc.is_main_process:
        write(stage)
        seal(stage, step, roles)  # CheckpointError: the previous one stays latest
        publish(stage, final)
        write_json(run_dir / STATE_FILE, {"step": step, "total_steps": total_steps,
                                          "finished": False,
                                          "checkpoint": str(final.relative_to(run_dir))})
        # After state.json names the new one, so a crash never leaves it pointing at nothing.
        prune(run_dir, keep, upto=step)
    acc.wait_for_everyone()
    return final
