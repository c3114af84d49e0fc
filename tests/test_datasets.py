"""Datasets: local HumanEval/CoopHumanEval behind their hub ids, `datasets` split semantics,
code-agentic files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collabcoder.analyzers.testcases import IOCase
from collabcoder.training.data import (
    CodeAgenticFormatError,
    DatasetError,
    SplitError,
    UnknownDatasetError,
    dataset_names,
    load_code_agentic,
    load_hf_dataset,
    load_tasks,
    resolve_dataset,
)


def test_humaneval_has_164_tasks_with_canonical_solutions() -> None:
    tasks = load_tasks("humaneval")
    assert len(tasks) == 164
    assert [t.task_id for t in tasks[:2]] == ["HumanEval/0", "HumanEval/1"]
    assert all(t.canonical_solution for t in tasks)
    first = tasks[0]
    assert first.entry_point == "has_close_elements"
    assert len(first.assert_suite().tests) == 7


def test_coophumaneval_has_82_tasks_from_the_shipped_file() -> None:
    tasks = load_tasks("coophumaneval")
    assert len(tasks) == 82
    assert tasks[-1].task_id == "CoopHumanEval/81"
    assert all(t.canonical_solution is None for t in tasks)
    # PROVENANCE.md: every test is a check() with 4-9 asserts.
    assert all(4 <= len(t.assert_suite().tests) <= 9 for t in tasks)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("openai/openai_humaneval", "humaneval"),
        ("openai_humaneval", "humaneval"),
        ("he", "humaneval"),
        ("HumanEval", "humaneval"),
        ("OpenMLRL/CoopHumanEval", "coophumaneval"),
        ("LovelyBuggies/CoopHumaneval", "coophumaneval"),
        ("CoMLRL/CoopHumanEval", "coophumaneval"),
        ("che", "coophumaneval"),
    ],
)
def test_hub_ids_and_short_names_resolve(name: str, canonical: str) -> None:
    assert resolve_dataset(name).name == canonical
    assert len(load_tasks(name)) == {"humaneval": 164, "coophumaneval": 82}[canonical]


def test_unknown_dataset_error_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(UnknownDatasetError) as info:
        load_tasks("openai/humaneval-x")
    message = str(info.value)
    assert "'openai/humaneval-x'" in message
    for name in dataset_names():
        assert name in message


def test_unknown_split_error_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(SplitError, match=r"'train\[:10\]'.*valid splits of 'humaneval': 'test'"):
        load_tasks("humaneval", "train[:10]")
    with pytest.raises(SplitError, match="test\\[a:b\\]"):
        load_tasks("he", "test[a:b]")
    assert issubclass(SplitError, DatasetError)


SPECS = [
    "test",
    "test[:32]",
    "test[33:133]",
    "test[50:66]",
    "test[66:]",
    "test[16:]",
    "test[:16]",
    "test[-10:]",
    "test[-200:]",
    "test[:-150]",
    "test[5:3]",
    "test[:10%]",
    "test[10%:20%]",
    "test[-5%:]",
    "test[:33%]+test[-3:]",
    "test[:10%](pct1_dropremainder)",
    # errors in `datasets` must be errors here too
    "test[200:]",
    "test[0:0]",
    "test[ :3]",
    "TEST[:3]",
    "validation",
]


@pytest.fixture(scope="module")
def hub_like_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each benchmark written as a local JSONL file `datasets` can load with `split=...`."""
    root = tmp_path_factory.mktemp("hub")
    files = {}
    for name in ("humaneval", "coophumaneval"):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(t.to_row()) + "\n" for t in load_tasks(name)))
        files[name] = path
    return files


@pytest.mark.parametrize("dataset", ["humaneval", "coophumaneval"])
@pytest.mark.parametrize("spec", SPECS)
def test_split_slicing_equals_datasets_load_dataset(
    dataset: str,
    spec: str,
    hub_like_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    try:
        expected = datasets.load_dataset(
            "json",
            data_files={"test": str(hub_like_files[dataset])},
            split=spec,
            cache_dir=str(tmp_path / "cache"),
        )["task_id"]
    except ValueError:
        expected = None

    if expected is None:
        with pytest.raises(SplitError):
            load_tasks(dataset, spec)
        with pytest.raises(SplitError):
            load_hf_dataset(dataset, spec)
        return
    assert [t.task_id for t in load_tasks(dataset, spec)] == expected
    assert load_hf_dataset(dataset, spec)["task_id"] == expected


def test_hf_dataset_has_the_hub_columns() -> None:
    he = load_hf_dataset("openai/openai_humaneval", "test[:3]")
    assert set(he.column_names) == {
        "task_id",
        "prompt",
        "canonical_solution",
        "test",
        "entry_point",
    }
    assert he[0]["task_id"] == "HumanEval/0"
    che = load_hf_dataset("OpenMLRL/CoopHumanEval")
    assert set(che.column_names) == {"task_id", "prompt", "test", "entry_point"}
    assert len(che) == 82


# -- code-agentic ---------------------------------------------------------------------------


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "prompt": "Solve it.",
            "question": "Read two ints, print their sum.",
            "query_id": "q-1",
            "input_output": {
                "inputs": ["1 2\n", "3 4\n"],
                "outputs": ["3\n", "7\n"],
                "remote": False,
            },
        },
        {
            "prompt": "Solve it.",
            "question": "Echo the line.",
            "query_id": 7,
            # many such datasets store the object JSON-encoded
            "input_output": json.dumps({"inputs": ["hi\n"], "outputs": ["hi\n"]}),
        },
    ]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        # One column type for the whole file: encode input_output everywhere, as hub parquet does.
        flat = [
            {
                **r,
                "input_output": r["input_output"]
                if isinstance(r["input_output"], str)
                else json.dumps(r["input_output"]),
                "query_id": str(r["query_id"]),
            }
            for r in rows
        ]
        pq.write_table(pa.Table.from_pylist(flat), path)
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_code_agentic_loads_json_jsonl_parquet(tmp_path: Path, suffix: str) -> None:
    tasks = load_code_agentic(_write(tmp_path / f"data{suffix}", _rows()))
    assert [t.query_id for t in tasks] == ["q-1", "7"]
    assert tasks[0].io_suite.cases == (IOCase("1 2\n", "3\n"), IOCase("3 4\n", "7\n"))
    assert tasks[1].io_suite.cases == (IOCase("hi\n", "hi\n"),)
    assert tasks[1].question == "Echo the line."
    assert tasks[0].remote is False


def test_code_agentic_parquet_with_struct_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "struct.parquet"
    pq.write_table(pa.Table.from_pylist(_rows()[:1]), path)
    (task,) = load_code_agentic(path)
    assert task.io_suite.cases[1] == IOCase("3 4\n", "7\n")


@pytest.mark.parametrize(
    ("suffix", "location"), [(".json", "row 1 (0-based)"), (".jsonl", "line 2")]
)
@pytest.mark.parametrize(
    ("corrupt", "field"),
    [
        (lambda r: r.pop("question"), "'question' is missing"),
        (lambda r: r.update(query_id=None), "'query_id' is missing"),
        (
            lambda r: r.update(input_output="{not json"),
            "'input_output' is a string but not valid JSON",
        ),
        (lambda r: r.update(input_output={"inputs": ["1"]}), "'input_output.outputs' is missing"),
        (
            lambda r: r.update(input_output={"inputs": ["1", 2], "outputs": ["1", "2"]}),
            "'input_output.inputs[1]' must be a string, got int",
        ),
        (
            lambda r: r.update(input_output={"inputs": ["1", "2"], "outputs": ["1"]}),
            "has 2 inputs but 1 outputs",
        ),
    ],
)
def test_malformed_code_agentic_row_names_file_row_and_field(
    tmp_path: Path, suffix: str, location: str, corrupt: Any, field: str
) -> None:
    rows = _rows()
    corrupt(rows[1])
    path = _write(tmp_path / f"bad{suffix}", rows)
    with pytest.raises(CodeAgenticFormatError) as info:
        load_code_agentic(path)
    message = str(info.value)
    assert str(path) in message
    assert location in message
    assert field in message


def test_code_agentic_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CodeAgenticFormatError, match="does not exist"):
        load_code_agentic(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(CodeAgenticFormatError, match=r"expected \.json, \.jsonl or \.parquet"):
        load_code_agentic(tmp_path / "x.csv")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(CodeAgenticFormatError, match="expected a JSON list"):
        load_code_agentic(tmp_path / "obj.json")
    (tmp_path / "broken.jsonl").write_text(json.dumps(_rows()[0]) + "\n{oops\n")
    with pytest.raises(CodeAgenticFormatError, match="line 2: invalid JSON"):
        load_code_agentic(tmp_path / "broken.jsonl")
