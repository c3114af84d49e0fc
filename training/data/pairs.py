"""The pairs dataset of the loop's evaluation (LLMcoder's layout), its export and preprocessing.

    DATA_ROOT/NAME/level_k/pairs/pairN/input.txt    code up to the cursor
    DATA_ROOT/NAME/level_k/pairs/pairN/output.txt   the reference continuation

`NAME` may name one level (`my_set/level_0`) or a whole dataset (`my_set`, every level).
`export` writes chat-format fine-tuning rows to `DATA_ROOT/NAME/conversations.jsonl`;
`preprocess` cuts pairs out of real Python files at points inside function bodies.
"""

from __future__ import annotations

import ast
import io
import json
import random
import re
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.protocol.prompts import RAW_PAIRS_SYSTEM_PROMPT

ExportFormat = Literal["raw", "loop"]

_LEVEL = re.compile(r"^level_\d+$")
_PAIR = re.compile(r"^pair(\d+)$")
# Files bigger than this are generated code or data tables, not what people type.
MAX_SOURCE_BYTES = 200_000


class PairsError(ValueError):
    """A pairs dataset that is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class Pair:
    name: str  # folder name, "pair3"
    input: str
    output: str
    path: Path  # the pair's folder


def _natural_key(path: Path) -> tuple[int, str]:
    match = _PAIR.match(path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def available_datasets(data_root: Path) -> list[str]:
    """Every `NAME/level_k` under `data_root` that has a `pairs/` folder."""
    if not data_root.is_dir():
        return []
    return sorted(str(p.parent.relative_to(data_root)) for p in data_root.glob("*/level_*/pairs"))


def level_dirs(data_root: Path, name: str) -> list[Path]:
    """The level folders `name` stands for: itself if it has `pairs/`, else its `level_*`."""
    root = data_root / name
    if (root / "pairs").is_dir():
        return [root]
    levels = sorted(p.parent for p in root.glob("level_*/pairs") if p.is_dir())
    if levels:
        return levels
    known = available_datasets(data_root)
    hint = f"; datasets under {data_root}: {', '.join(known)}" if known else (
        f"; {data_root} holds no dataset (set --data-root?)")
    raise PairsError(f"dataset folder not found: {root} (expected {root}/pairs/pairN/"
                     f"{{input.txt,output.txt}} or {root}/level_k/pairs/...){hint}")


def load_pairs(level_dir: Path) -> list[Pair]:
    """The pairs of one level, in natural order (pair2 before pair10)."""
    pairs_dir = level_dir / "pairs"
    if not pairs_dir.is_dir():
        raise PairsError(f"no pairs folder: {pairs_dir}")
    out: list[Pair] = []
    for folder in sorted((p for p in pairs_dir.iterdir() if p.is_dir()), key=_natural_key):
        files = [folder / "input.txt", folder / "output.txt"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise PairsError(f"{folder} lacks {' and '.join(missing)}")
        text_in, text_out = (f.read_text(encoding="utf-8") for f in files)
        out.append(Pair(folder.name, text_in, text_out, folder))
    if not out:
        raise PairsError(f"{pairs_dir} holds no pairN folders")
    return out


def load_dataset(data_root: Path, name: str) -> list[Pair]:
    return [pair for level in level_dirs(data_root, name) for pair in load_pairs(level)]


# ---- export ----------------------------------------------------------------------------------


def conversation_row(pair: Pair, fmt: ExportFormat = "raw",
                     system_prompt: str | None = None) -> dict[str, Any]:
    """One fine-tuning row. `raw`: user = input, assistant = output (LLMcoder's export).
    `loop`: the messages our feedback loop sends, so a model tuned on them answers the loop's
    prompt in the form `continuation_from_reply` reads back."""
    if fmt == "raw":
        messages = [
            {"role": "system", "content": system_prompt or RAW_PAIRS_SYSTEM_PROMPT},
            {"role": "user", "content": pair.input},
            {"role": "assistant", "content": pair.output},
        ]
        return {"messages": messages}
    from collabcoder.analyzers.protocol.prompts import SYSTEM_PROMPT, first_user_message

    # The loop asks for the cursor's line from its start, fenced: restate it.
    cursor_line = pair.input.rsplit("\n", 1)[-1]
    reply = f"```python\n{cursor_line}{pair.output.rstrip()}\n```"
    messages = [
        {"role": "system", "content": system_prompt or SYSTEM_PROMPT},
        {"role": "user", "content": first_user_message(pair.input, "")},
        {"role": "assistant", "content": reply},
    ]
    return {"messages": messages}


def export_conversations(data_root: Path, name: str, fmt: ExportFormat = "raw",
                         system_prompt: str | None = None,
                         progress: Callable[[int, int], None] | None = None) -> tuple[Path, int]:
    """Write `data_root/name/conversations.jsonl`; returns (path, rows written)."""
    pairs = load_dataset(data_root, name)
    lines = []
    for i, pair in enumerate(pairs, 1):
        lines.append(json.dumps(conversation_row(pair, fmt, system_prompt), ensure_ascii=False))
        if progress is not None:
            progress(i, len(pairs))
    path = data_root / name / "conversations.jsonl"
    atomic_write(path, "".join(f"{line}\n" for line in lines))
    return path, len(lines)


# ---- preprocess --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutSample:
    """A pair cut out of a source file, with where it came from."""

    input: str
    output: str
    source: str  # path relative to the source folder
    line: int  # 1-based line of the cursor
    column: int  # 0-based column of the cursor


def python_files(source: Path) -> list[Path]:
    """`.py` files under `source`, sorted, so a seed picks the same files on every machine."""
    if not source.is_dir():
        raise PairsError(f"source folder not found: {source}")
    return sorted(p for p in source.rglob("*.py") if p.is_file() and not p.is_symlink())


def _read_source(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        text = path.read_text(encoding="utf-8")
        ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return None  # unreadable, not UTF-8, not Python 3 we can parse, or null bytes
    return text


def _body_statements(tree: ast.AST) -> list[ast.stmt]:
    """Statements inside function bodies, without docstrings: where people type code."""
    out: list[ast.stmt] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for stmt in ast.walk(node):
            if not isinstance(stmt, ast.stmt) or stmt is node:
                continue
            is_docstring = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                            and isinstance(stmt.value.value, str))
            if not is_docstring:
                out.append(stmt)
    return out


def _token_starts(line: str) -> list[int]:
    """Columns where tokens start on `line` (mid-line cuts fall on token boundaries, like a
    cursor after a word, a dot or an opening bracket)."""
    starts: list[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.lstrip() + "\n").readline):
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT):
                continue
            starts.append(tok.start[1] + len(line) - len(line.lstrip()))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a line of a multi-line string or bracket: cut at its start only
    return starts


def cut_file(text: str, rng: random.Random, max_lines: int = 6,
             per_file: int = 1) -> list[tuple[int, int, int, int]]:
    """Pick up to `per_file` cut points in `text`: (line, column, end_line, end_col).

    A cut lies in the first line of a statement inside a function body that spans at most
    `max_lines` lines: at the statement's start (cursor after the indentation) or mid-line at a
    token boundary. The output runs to the end of that statement (a whole block for compound
    statements), so it is a few lines of real code.
    """
    tree = ast.parse(text)
    lines = text.split("\n")
    stmts = [s for s in _body_statements(tree)
             if s.end_lineno is not None and s.end_col_offset is not None
             and s.end_lineno - s.lineno < max_lines]
    rng.shuffle(stmts)
    cuts: list[tuple[int, int, int, int]] = []
    used: set[int] = set()
    for stmt in stmts:
        if len(cuts) >= per_file:
            break
        assert stmt.end_lineno is not None and stmt.end_col_offset is not None
        if stmt.lineno in used:
            continue
        line = lines[stmt.lineno - 1]
        if len(line) - len(line.lstrip()) != stmt.col_offset:
            continue  # `a = 1; b = 2` or similar: the statement is not at the line start
        end_col = _char_col(lines[stmt.end_lineno - 1], stmt.end_col_offset)
        mid = [c for c in _token_starts(line) if c > stmt.col_offset]
        if stmt.lineno == stmt.end_lineno:
            mid = [c for c in mid if c < end_col]
        column = rng.choice(mid) if mid and rng.random() < 0.5 else stmt.col_offset
        used.add(stmt.lineno)
        cuts.append((stmt.lineno, column, stmt.end_lineno, end_col))
    return cuts


def _char_col(line: str, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; text slicing counts characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def _sample_at(text: str, cut: tuple[int, int, int, int]) -> tuple[str, str]:
    line, column, end_line, end_col = cut
    lines = text.split("\n")
    prefix = "\n".join([*lines[: line - 1], lines[line - 1][:column]])
    if line == end_line:
        output = lines[line - 1][column:end_col]
    else:
        output = "\n".join([lines[line - 1][column:], *lines[line:end_line - 1],
                            lines[end_line - 1][:end_col]])
    return prefix, output


def build_samples(source: Path, size: int, seed: int = 0, per_file: int = 1,
                  max_lines: int = 6,
                  progress: Callable[[int, int], None] | None = None) -> list[CutSample]:
    """Cut `size` samples from the Python files under `source`, deterministically for `seed`.

    Files are visited in a seeded random order and parsed lazily, so a large tree (a
    site-packages folder) costs only the files needed. Files that do not parse are skipped.
    """
    if size < 1:
        raise PairsError(f"size must be at least 1, got {size}")
    files = python_files(source)
    rng = random.Random(seed)
    rng.shuffle(files)
    samples: list[CutSample] = []
    for path in files:
        if len(samples) >= size:
            break
        text = _read_source(path)
        if text is None:
            continue
        file_rng = random.Random(f"{seed}:{path.relative_to(source)}")
        for cut in cut_file(text, file_rng, max_lines, per_file):
            prefix, output = _sample_at(text, cut)
            if not output.strip() or len(samples) >= size:
                continue
            samples.append(CutSample(prefix, output, str(path.relative_to(source)),
                                     cut[0], cut[1]))
            if progress is not None:
                progress(len(samples), size)
    return samples


def level_dir_for(data_root: Path, name: str) -> Path:
    """`NAME` -> `data_root/NAME/level_0`; a name that already ends in `level_k` is kept."""
    path = data_root / name
    return path if _LEVEL.match(path.name) else path / "level_0"


def write_pairs(level_dir: Path, samples: Sequence[CutSample], overwrite: bool = False) -> Path:
    """Write `level_dir/pairs/pairN/{input,output}.txt` and `level_dir/preprocess.json` (where
    each pair came from). Refuses to mix with existing pairs unless `overwrite`."""
    pairs_dir = level_dir / "pairs"
    if pairs_dir.exists() and any(pairs_dir.iterdir()):
        if not overwrite:
            raise PairsError(f"{pairs_dir} already holds pairs; pass --overwrite to replace them")
        import shutil

        shutil.rmtree(pairs_dir)
    manifest = []
    for i, sample in enumerate(samples, 1):
        folder = pairs_dir / f"pair{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "input.txt").write_text(sample.input, encoding="utf-8")
        (folder / "output.txt").write_text(sample.output, encoding="utf-8")
        manifest.append({"pair": folder.name, "source": sample.source, "line": sample.line,
                         "column": sample.column})
    atomic_write(level_dir / "preprocess.json", json.dumps(manifest, indent=2) + "\n")
    return pairs_dir

