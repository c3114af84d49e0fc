"""The pairs dataset: layout, export to chat rows, preprocess from real Python files."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import collabcoder.training.cli.loop_cmd  # noqa: F401  (registers `loop` on the app)
from collabcoder.training.cli import app
from collabcoder.training.data.pairs import (
    PairsError,
    build_samples,
    conversation_row,
    level_dir_for,
    level_dirs,
    load_dataset,
    load_pairs,
)

DEMO = Path(__file__).parent / "fixtures" / "pairs_demo"


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    """A copy of the demo dataset: commands write next to the pairs."""
    root = tmp_path / "data"
    shutil.copytree(DEMO, root / "demo")
    return root


def test_demo_pairs_load_in_natural_order(data_root: Path) -> None:
    pairs = load_pairs(data_root / "demo" / "level_0")
    assert [p.name for p in pairs] == ["pair1", "pair2", "pair3", "pair4", "pair5"]
    assert pairs[2].input.endswith("self.") and pairs[2].output == "balance += amount"
    # Every demo pair is real code: input + output parses.
    for pair in pairs:
        ast.parse(pair.input + pair.output)


def test_name_may_be_a_level_or_a_whole_dataset(data_root: Path) -> None:
    assert level_dirs(data_root, "demo") == [data_root / "demo" / "level_0"]
    assert level_dirs(data_root, "demo/level_0") == [data_root / "demo" / "level_0"]
    assert len(load_dataset(data_root, "demo")) == 5


def test_a_missing_dataset_names_the_folder_and_what_exists(data_root: Path) -> None:
    with pytest.raises(PairsError) as info:
        level_dirs(data_root, "demo/level_7")
    assert "demo/level_7" in str(info.value) and "demo/level_0" in str(info.value)


def test_export_writes_chat_rows(data_root: Path) -> None:
    result = CliRunner().invoke(app, ["loop", "export", "-n", "demo/level_0",
                                      "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    path = data_root / "demo" / "level_0" / "conversations.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 5
    roles = [m["role"] for m in rows[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    pair1 = load_pairs(data_root / "demo" / "level_0")[0]
    assert rows[0]["messages"][1]["content"] == pair1.input
    assert rows[0]["messages"][2]["content"] == pair1.output
    assert "5 conversation(s)" in result.stderr


def test_loop_format_reads_back_as_the_reference() -> None:
    """A model tuned on `--format loop` rows answers the loop's prompt in the form the loop's
    reply parser turns back into exactly the reference output."""
    from collabcoder.server.loop.messages import continuation_from_reply

    for pair in load_pairs(DEMO / "level_0"):
        row = conversation_row(pair, "loop")
        assert "<CURSOR>" in row["messages"][1]["content"]
        reply = row["messages"][2]["content"]
        assert continuation_from_reply(pair.input, reply) == pair.output.rstrip()


def test_export_of_a_missing_dataset_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["loop", "export", "-n", "nope",
                                      "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "dataset folder not found" in result.stderr and "Traceback" not in result.output


def _sources(root: Path) -> Path:
    src = root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "maths.py").write_text(
        "def mean(xs: list[float]) -> float:\n"
        "    \"\"\"The mean.\"\"\"\n"
        "    total = sum(xs)\n"
        "    if not xs:\n"
        "        return 0.0\n"
        "    return total / len(xs)\n\n\n"
        "def clamp(x: int, lo: int, hi: int) -> int:\n"
        "    return max(lo, min(hi, x))\n"
    )
    (src / "pkg" / "text.py").write_text(
        "import re\n\n\nclass Words:\n    def split(self, text: str) -> list[str]:\n"
        "        words = re.findall(r'\\w+', text)\n        return [w.lower() for w in words]\n"
    )
    (src / "broken.py").write_text("def f(:\n    pass\n")  # does not parse: skipped
    (src / "latin1.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))  # not UTF-8: skipped
    return src


def test_preprocess_cuts_inside_function_bodies(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    samples = build_samples(src, size=10, seed=3, per_file=3)
    assert samples and {s.source for s in samples} <= {"pkg/maths.py", "pkg/text.py"}
    for s in samples:
        original = (src / s.source).read_text()
        assert original.startswith(s.input + s.output)  # a real cut of the real file
        assert s.output.strip()
        assert len(s.output.splitlines()) <= 6
        # The cursor is inside a function: the last `def` before it is indented below it.
        assert "def " in s.input


def test_preprocess_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    assert build_samples(src, 4, seed=1, per_file=2) == build_samples(src, 4, seed=1, per_file=2)


def test_preprocess_command_writes_the_layout(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    root = tmp_path / "data"
    args = ["loop", "preprocess", "-n", "mine", "--source", str(src), "-s", "3",
            "--seed", "0", "--per-file", "2", "--data-root", str(root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    pairs = load_pairs(level_dir_for(root, "mine"))
    assert len(pairs) == 3 and (root / "mine" / "level_0" / "preprocess.json").is_file()
    again = CliRunner().invoke(app, args)  # existing pairs are not overwritten silently
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_preprocess_works_on_site_packages(tmp_path: Path) -> None:
    """Offline, on a big real tree: only the files needed are parsed."""
    import rich

    site = Path(rich.__file__).parent
    samples = build_samples(site, size=20, seed=0)
    assert len(samples) == 20
    assert len({s.source for s in samples}) == 20  # one per file by default


def test_preprocess_of_a_missing_source_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["loop", "preprocess", "-n", "x", "--source",
                                      str(tmp_path / "nope"), "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "source folder not found" in result.stderr
