"""`collab-train agentic prepare`: code-agentic rows -> debugging conversations with provenance.

Input: the seed's rows (JSON, JSONL or parquet; `training/data/code_agentic.py` reads and checks
them, errors name the file and row), optionally with a reference `solution`; or a converted
function-style dataset (`humaneval`, `coophumaneval`). Rows without a solution get one from a
teacher model when one is given (only programs passing every case are kept); otherwise they are
skipped and reported.

Output, one row per conversation (JSONL, or parquet with `messages`, `tools` and
`input_output` JSON-encoded, since parquet has no column type for their mixed shapes):

    {prompt, question, query_id, input_output,      # the source row: a valid data row again
     solution, messages, tools, bug_kind, case_index,
     provenance: {source_file, source_row, query_id, bug_kind, solution_source}}

`solution_source` is `reference` or `teacher:<backend>/<model>`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collabcoder.analyzers.files import atomic_write
from collabcoder.analyzers.sandbox import IOJob, Sandbox, SandboxLimits
from collabcoder.server.backends.base import Backend
from collabcoder.training.agentic.bugs import BUG_KINDS, inject_verified
from collabcoder.training.agentic.conversations import (
    ConversationError,
    debugging_conversation,
    pick_case,
)
from collabcoder.training.agentic.convert import load_converted
from collabcoder.training.agentic.teacher import teacher_solutions
from collabcoder.training.agentic.tool import ToolConfig
from collabcoder.training.data.code_agentic import (
    CodeAgenticFormatError,
    _read_rows,
    parse_code_agentic_row,
)
from collabcoder.training.data.tasks import CodeAgenticTask

JSON_COLUMNS = ("messages", "tools", "input_output")  # JSON-encoded in parquet output


@dataclass(frozen=True)
class SourceRow:
    task: CodeAgenticTask
    row: dict[str, Any]
    source_file: str
    source_row: str  # "line N" (JSONL) or "row N (0-based)"
    solution: str | None


@dataclass
class PrepareOptions:
    tool_config: ToolConfig = field(default_factory=ToolConfig)
    bug_kinds: tuple[str, ...] = BUG_KINDS
    conversations_per_row: int = 1
    clean_fraction: float = 0.2  # share of conversations that are right at the first attempt
    seed: int = 0
    train_on_buggy: bool = False  # train on the buggy first attempt too (off: do not teach bugs)
    teacher: Backend | None = None
    teacher_samples: int = 4
    teacher_max_tokens: int = 1024


@dataclass
class PrepareReport:
    rows_in: int = 0
    conversations: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_solution_source: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # "<file>, <row>: <why>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "conversations": self.conversations,
            "by_kind": dict(self.by_kind),
            "by_solution_source": dict(self.by_solution_source),
            "skipped": list(self.skipped),
        }


def read_source(path: str | Path) -> list[SourceRow]:
    """Every row of a data file, checked; a malformed row is an error naming file and row."""
    path = Path(path)
    if not path.is_file():
        raise CodeAgenticFormatError(f"code-agentic data file {str(path)!r} does not exist")
    out = []
    for loc, row in _read_rows(path):
        where = f"{path}, {loc}"
        task = parse_code_agentic_row(row, where=where)
        solution = row.get("solution")
        if solution is not None and not isinstance(solution, str):
            raise CodeAgenticFormatError(
                f"{where}: field 'solution' must be a string, got {type(solution).__name__}"
            )
        if not task.io_suite.cases:
            raise CodeAgenticFormatError(f"{where}: field 'input_output' has no test cases")
        out.append(SourceRow(task, row, str(path), loc, solution or None))
    return out


def converted_source(name: str) -> list[SourceRow]:
    """A function-style dataset converted to stdin/stdout rows (see convert.py)."""
    conversion = load_converted(name)
    return [
        SourceRow(
            parse_code_agentic_row(row, where=f"{name}, row {i}"),
            row,
            name,
            f"row {i}",
            row.get("solution"),
        )
        for i, row in enumerate(conversion.rows)
    ]


def _check_references(rows: Sequence[SourceRow], sandbox: Sandbox) -> list[bool]:
    limits = SandboxLimits(timeout_s=10.0)
    jobs = [IOJob(r.solution or "", r.task.io_suite, limits) for r in rows if r.solution]
    verdicts = iter(sandbox.run_many(jobs))
    return [next(verdicts).all_passed if r.solution else False for r in rows]


def _solutions(
    rows: Sequence[SourceRow], options: PrepareOptions, sandbox: Sandbox
) -> list[tuple[str | None, str, str | None]]:
    """(solution, solution source, skip reason) per row: the reference when it passes its own
    tests, else the teacher's (every row asked in one go), else a reason to skip the row."""
    reference_ok = _check_references(rows, sandbox)
    out: list[tuple[str | None, str, str | None]] = []
    ask: list[int] = []  # rows for the teacher
    for index, (src, ok) in enumerate(zip(rows, reference_ok, strict=True)):
        if ok:
            out.append((src.solution, "reference", None))
        elif src.solution:
            out.append((None, "", "the reference solution fails its own tests"))
        elif options.teacher is None:
            out.append((None, "", "no solution (give a teacher model)"))
        else:
            out.append((None, "", None))
            ask.append(index)
    if options.teacher is None or not ask:
        return out
    teacher = options.teacher
    results = teacher_solutions(
        teacher,
        [(f"{rows[i].source_file}, {rows[i].source_row}", rows[i].task) for i in ask],
        sandbox,
        samples=options.teacher_samples,
        max_tokens=options.teacher_max_tokens,
        seed=options.seed,
    )
    source = f"teacher:{teacher.name}/{teacher.model}"
    for index, result in zip(ask, results, strict=True):
        out[index] = (
            (result.solution, source, None)
            if result.solution is not None
            else (None, "", result.skip_reason())
        )
    return out


def prepare(
    rows: Sequence[SourceRow], options: PrepareOptions, sandbox: Sandbox
) -> tuple[list[dict[str, Any]], PrepareReport]:
    """Conversations for `rows` (deterministic for a seed), and what was made or skipped.
    Raises TeacherError when the teacher cannot be reached at all."""
    report = PrepareReport(rows_in=len(rows))
    out: list[dict[str, Any]] = []
    solutions = _solutions(rows, options, sandbox)
    for index, (src, (solution, source, why)) in enumerate(zip(rows, solutions, strict=True)):
        where = f"{src.source_file}, {src.source_row}"
        if solution is None:
            report.skipped.append(f"{where}: {why}")
            continue
        rng = random.Random(f"{options.seed}:{src.task.query_id}:{index}")
        for k in range(options.conversations_per_row):
            # Kinds rotate over rows and conversations, so every kind gets its share.
            shift = (index * options.conversations_per_row + k) % len(options.bug_kinds)
            order = options.bug_kinds[shift:] + options.bug_kinds[:shift]
            bug = None
            if rng.random() >= options.clean_fraction:
                bug = inject_verified(solution, src.task.io_suite, sandbox, rng, kind_order=order)
            try:
                conv = debugging_conversation(
                    src.task,
                    solution,
                    options.tool_config,
                    bug,
                    sandbox=sandbox,
                    case_index=pick_case(src.task, rng),
                    train_on_buggy=options.train_on_buggy,
                )
            except ConversationError as exc:
                report.skipped.append(f"{where}: {exc}")
                continue
            kind = conv.bug_kind or "clean"
            report.by_kind[kind] += 1
            report.by_solution_source[source] += 1
            out.append(
                _output_row(
                    src,
                    solution,
                    source,
                    conv.messages,
                    conv.bug_kind,
                    conv.case_index,
                    options.tool_config,
                )
            )
    report.conversations = len(out)
    return out, report


def _output_row(
    src: SourceRow,
    solution: str,
    source: str,
    messages: list[dict[str, Any]],
    bug_kind: str | None,
    case_index: int,
    tool_config: ToolConfig,
) -> dict[str, Any]:
    io = src.task.io_suite
    return {
        "prompt": src.task.prompt,
        "question": src.task.question,
        "query_id": src.task.query_id,
        "input_output": {
            "inputs": [c.stdin for c in io.cases],
            "outputs": [c.expected_stdout for c in io.cases],
            "remote": src.task.remote,
        },
        "solution": solution,
        "messages": messages,
        "tools": [tool_config.tool_schema],
        "bug_kind": bug_kind,
        "case_index": case_index,
        "provenance": {
            "source_file": src.source_file,
            "source_row": src.source_row,
            "query_id": src.task.query_id,
            "bug_kind": bug_kind,
            "solution_source": source,
        },
    }


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """JSONL or parquet by suffix; written atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [
            {k: (json.dumps(v) if k in JSON_COLUMNS else v) for k, v in r.items()} for r in rows
        ]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(flat), buf)
        atomic_write(path, buf.getvalue())
    else:
        raise ValueError(f"{path}: output must end in .jsonl or .parquet, not {suffix!r}")
    return path


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by `write_rows`, with the parquet JSON columns decoded."""
    rows = [row for _, row in _read_rows(Path(path))]
    for row in rows:
        for key in JSON_COLUMNS:
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
    return rows
