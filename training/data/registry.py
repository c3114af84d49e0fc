"""Dataset names -> local data, and the loaders trainers and the evaluator call.

Configs written for the paper's code name hub ids (`openai/openai_humaneval`,
`OpenMLRL/CoopHumanEval`, ...); they resolve here to the local copies, so the same config runs
offline and selects the same rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collabcoder.training.data.coophumaneval import load_coophumaneval
from collabcoder.training.data.humaneval import load_humaneval
from collabcoder.training.data.splits import split_indices
from collabcoder.training.data.tasks import DatasetError, Task

if TYPE_CHECKING:
    import datasets


class UnknownDatasetError(DatasetError):
    """A dataset name that is neither a short name nor a known hub id."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # canonical short name
    aliases: tuple[str, ...]  # other short names and hub ids that mean this dataset
    load: Callable[[], tuple[Task, ...]]
    split: str = "test"  # the only split on the hub for both benchmarks

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "humaneval", ("he", "openai/openai_humaneval", "openai_humaneval"), load_humaneval
        ),
        DatasetSpec(
            "coophumaneval",
            (
                "che",
                "OpenMLRL/CoopHumanEval",
                "LovelyBuggies/CoopHumaneval",  # older hub ids of the same file
                "CoMLRL/CoopHumanEval",
            ),
            load_coophumaneval,
        ),
    )
}

# Case-insensitive: hub ids differ only in case across renames (CoopHumaneval / CoopHumanEval).
_BY_NAME: dict[str, DatasetSpec] = {n.lower(): s for s in DATASETS.values() for n in s.names}


def dataset_names() -> list[str]:
    """Every accepted name: short names first, then hub ids."""
    return [n for spec in DATASETS.values() for n in spec.names]


def resolve_dataset(name: str) -> DatasetSpec:
    spec = _BY_NAME.get(name.strip().lower())
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name.lower(), list(_BY_NAME), n=1, cutoff=0.6)
    hint = f"did you mean {_BY_NAME[close[0]].name!r}? " if close else ""
    valid = "; ".join(f"{s.name} ({', '.join(s.aliases)})" for s in DATASETS.values())
    raise UnknownDatasetError(f"unknown dataset {name!r}; {hint}valid datasets: {valid}")


def _indices(spec: DatasetSpec, split: str, size: int) -> list[int]:
    return [i for _, i in split_indices(split, {spec.split: size}, spec.name)]


def load_tasks(name: str, split: str = "test") -> list[Task]:
    """The tasks `load_dataset(name, split=split)` would give, in the same order."""
    spec = resolve_dataset(name)
    tasks = spec.load()
    if split == spec.split:  # the common case needs no `datasets` import
        return list(tasks)
    return [tasks[i] for i in _indices(spec, split, len(tasks))]


def load_hf_dataset(name: str, split: str = "test") -> datasets.Dataset:
    """A `datasets.Dataset` with the hub's columns, for trainers built on `datasets`."""
    import datasets

    spec = resolve_dataset(name)
    tasks = spec.load()
    full = datasets.Dataset.from_list([t.to_row() for t in tasks], split=datasets.Split.TEST)
    if split == spec.split:
        return full
    return full.select(_indices(spec, split, len(tasks)))
