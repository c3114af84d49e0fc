"""Sample files: JSONL, one sample a line, in the official harness's shape.

    {"task_id": "HumanEval/0", "completion": "    return ..."}       # prompt + completion
    {"task_id": "HumanEval/0", "program": "def has_close_elements..."}  # a whole program
    {"task_id": "CoopHumanEval/3", "completions": {"aux": "def aux...", "main": "def f..."}}

The order of a task's lines is its sample order: PassOrNot@k, Accuracy@k and MaxCoop@k look at
the first k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collabcoder.training.data.tasks import Task

AGENT_ROLES = ("aux", "main")
Mode = Literal["single", "joint"]


class SampleFileError(ValueError):
    """A samples file that cannot be evaluated; the message names the line."""


@dataclass(frozen=True)
class Sample:
    task_id: str
    line: int  # 1-based line in the samples file
    completion: str | None = None
    program: str | None = None
    completions: dict[str, str] | None = None  # per agent role: {"aux": ..., "main": ...}
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # echoed into results

    @property
    def mode(self) -> Mode:
        return "joint" if self.completions is not None else "single"


def read_samples(path: str | Path) -> list[Sample]:
    """Every sample of `path` in file order; blank lines are skipped, as the harness does."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SampleFileError(f"samples file {str(path)!r} does not exist") from exc
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            samples.append(parse_sample(line, number, path))
    if not samples:
        raise SampleFileError(f"{path}: no samples")
    return samples


def parse_sample(line: str, number: int, path: str | Path = "samples") -> Sample:
    where = f"{path}, line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SampleFileError(f"{where}: invalid JSON ({exc})") from exc
    if not isinstance(row, dict):
        raise SampleFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    task_id = row.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise SampleFileError(f"{where}: 'task_id' must be a non-empty string")

    given = [key for key in ("completion", "program", "completions") if key in row]
    if len(given) != 1:
        raise SampleFileError(
            f"{where}: give exactly one of 'completion' (appended to the prompt), 'program' "
            f"(a whole program) or 'completions' ({{'aux': ..., 'main': ...}}); got {given or 'none'}"
        )
    key = given[0]
    value = row[key]
    if key == "completions":
        if not isinstance(value, dict) or set(value) != set(AGENT_ROLES):
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise SampleFileError(
                f"{where}: 'completions' must have keys 'aux' and 'main', got {got}"
            )
        for role in AGENT_ROLES:
            if not isinstance(value[role], str):
                raise SampleFileError(f"{where}: 'completions.{role}' must be a string")
        return Sample(task_id, number, completions=dict(value), raw=row)
    if not isinstance(value, str):
        raise SampleFileError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if key == "completion":
        return Sample(task_id, number, completion=value, raw=row)
    return Sample(task_id, number, program=value, raw=row)


def build_program(sample: Sample, task: Task) -> str:
    """The program the sandbox runs for this sample (the tests are added by the sandbox)."""
    if sample.completion is not None:
        return task.prompt + sample.completion  # exactly the official harness's program
    if sample.program is not None:
        return sample.program
    assert sample.completions is not None
    # Imported here: only joint samples need it, and it lives in the analyzers' program module.
    from collabcoder.analyzers.protocol.program import compose_program

    return compose_program(task.prompt, sample.completions["aux"], sample.completions["main"])
