"""Datasets: HumanEval, CoopHumanEval (local copies behind their hub ids), code-agentic IO data."""

from collabcoder.training.data.code_agentic import (
    CodeAgenticFormatError,
    load_code_agentic,
    parse_code_agentic_row,
)
from collabcoder.training.data.coophumaneval import load_coophumaneval
from collabcoder.training.data.humaneval import load_humaneval
from collabcoder.training.data.registry import (
    DATASETS,
    DatasetSpec,
    UnknownDatasetError,
    dataset_names,
    load_hf_dataset,
    load_tasks,
    resolve_dataset,
)
from collabcoder.training.data.splits import SplitError, split_indices
from collabcoder.training.data.tasks import CodeAgenticTask, DatasetError, Task

__all__ = [
    "DATASETS",
    "CodeAgenticFormatError",
    "CodeAgenticTask",
    "DatasetError",
    "DatasetSpec",
    "SplitError",
    "Task",
    "UnknownDatasetError",
    "dataset_names",
    "load_code_agentic",
    "load_coophumaneval",
    "load_hf_dataset",
    "load_humaneval",
    "load_tasks",
    "parse_code_agentic_row",
    "resolve_dataset",
    "split_indices",
]
