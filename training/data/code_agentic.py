"""Code-agentic data: problems judged by stdin/stdout pairs.

A file is a JSON list, JSONL (one row a line) or parquet, each row

    {"prompt": str, "question": str, "query_id": str | int,
     "input_output": {"inputs": [str, ...], "outputs": [str, ...], "remote": bool}}

`input_output` may also be that object JSON-encoded as a string, as many such datasets store it
(a parquet column of mixed-shape objects does not round-trip otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collabcoder.analyzers.testcases import IOCase, IOSuite
from collabcoder.training.data.tasks import CodeAgenticTask, DatasetError


class CodeAgenticFormatError(DatasetError):
    """A code-agentic file or row that does not have the expected shape."""


def load_code_agentic(path: str | Path) -> list[CodeAgenticTask]:
    """Every row of `path` (.json, .jsonl or .parquet), in file order."""
    path = Path(path)
    if not path.is_file():
        raise CodeAgenticFormatError(f"code-agentic data file {str(path)!r} does not exist")
    return [parse_code_agentic_row(row, where=f"{path}, {loc}") for loc, row in _read_rows(path)]


def parse_code_agentic_row(row: Any, where: str = "row") -> CodeAgenticTask:
    """One row -> task; `where` (file and row) starts every error message."""

    def fail(field: str, problem: str) -> CodeAgenticFormatError:
        return CodeAgenticFormatError(f"{where}: field {field!r} {problem}")

    if not isinstance(row, dict):
        raise CodeAgenticFormatError(f"{where}: expected an object, got {type(row).__name__}")
    for key in ("prompt", "question"):
        if key not in row:
            raise fail(key, "is missing")
        if not isinstance(row[key], str):
            raise fail(key, f"must be a string, got {type(row[key]).__name__}")
    query_id = row.get("query_id")
    if query_id is None:
        raise fail("query_id", "is missing")
    if isinstance(query_id, bool) or not isinstance(query_id, (str, int)):
        raise fail("query_id", f"must be a string or an integer, got {type(query_id).__name__}")

    io = row.get("input_output")
    if io is None:
        raise fail("input_output", "is missing")
    if isinstance(io, str):
        try:
            io = json.loads(io)
        except json.JSONDecodeError as exc:
            raise fail("input_output", f"is a string but not valid JSON ({exc})") from exc
    if not isinstance(io, dict):
        raise fail("input_output", f"must be an object, got {type(io).__name__}")

    columns: dict[str, list[str]] = {}
    for key in ("inputs", "outputs"):
        values = io.get(key)
        if not isinstance(values, list):
            problem = (
                "is missing" if values is None else f"must be a list, got {type(values).__name__}"
            )
            raise fail(f"input_output.{key}", problem)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise fail(
                    f"input_output.{key}[{i}]", f"must be a string, got {type(value).__name__}"
                )
        columns[key] = values
    if len(columns["inputs"]) != len(columns["outputs"]):
        raise fail(
            "input_output",
            f"has {len(columns['inputs'])} inputs but {len(columns['outputs'])} outputs",
        )
    remote = io.get("remote")
    if remote is None:  # absent, or null in a parquet struct column
        remote = False
    if not isinstance(remote, bool):
        raise fail("input_output.remote", f"must be a boolean, got {type(remote).__name__}")

    suite = IOSuite(
        tuple(IOCase(i, o) for i, o in zip(columns["inputs"], columns["outputs"], strict=True))
    )
    return CodeAgenticTask(
        prompt=row["prompt"],
        question=row["question"],
        query_id=str(query_id),
        io_suite=suite,
        remote=remote,
    )


def _read_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(location for messages, row): `line N` (1-based) for JSONL, `row N` (0-based) otherwise."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {number}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CodeAgenticFormatError(
                        f"{path}, line {number}: invalid JSON ({exc})"
                    ) from exc
    elif suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CodeAgenticFormatError(f"{path}: invalid JSON ({exc})") from exc
        if not isinstance(rows, list):
            raise CodeAgenticFormatError(
                f"{path}: expected a JSON list of rows, got {type(rows).__name__}"
            )
        yield from ((f"row {i} (0-based)", row) for i, row in enumerate(rows))
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pyarrow comes with the `train` extra
            raise CodeAgenticFormatError(
                f"{path}: reading parquet needs pyarrow: pip install 'collabcoder[train]'"
            ) from exc
        rows = pq.read_table(path).to_pylist()
        yield from ((f"row {i} (0-based)", row) for i, row in enumerate(rows))
    else:
        raise CodeAgenticFormatError(
            f"{path}: unknown file type {suffix!r}; expected .json, .jsonl or .parquet"
        )
