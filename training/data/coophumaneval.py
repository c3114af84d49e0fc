"""CoopHumanEval (82 problems), shipped with the package (see files/coophumaneval/PROVENANCE.md)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from collabcoder.training.data.tasks import DatasetError, Task

COOPHUMANEVAL_SIZE = 82


@lru_cache(maxsize=1)
def load_coophumaneval() -> tuple[Task, ...]:
    """All 82 problems in file order (CoopHumanEval/0 .. CoopHumanEval/81); no canonical solutions."""
    # importlib.resources, not a path next to __file__: works from a wheel or a zip too.
    resource = resources.files("collabcoder.training.data").joinpath("files/coophumaneval/che_raw.json")
    try:
        rows = json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(
            "CoopHumanEval data file files/coophumaneval/che_raw.json is missing from the package"
        ) from exc
    tasks = tuple(Task.from_row(row) for row in rows)
    if len(tasks) != COOPHUMANEVAL_SIZE:
        raise DatasetError(f"CoopHumanEval data file has {len(tasks)} problems, expected 82")
    return tasks
