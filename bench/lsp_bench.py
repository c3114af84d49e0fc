"""Language-server latency: the server's own overhead per inline request, forward-typing cache
hits, and end-to-end latency with the embedded model with and without one analyzer round.

    python bench/lsp_bench.py --out bench/results/lsp.json [--requests 200] [--no-docs]

Method. `collab-server` runs as the extension runs it (a subprocess over stdio); this script is
the client (pygls). The backend for the overhead runs is the OpenAI-compatible test server
serving the tiny 2-layer model with `maxTokens` 1, so the model costs a few milliseconds, and it
is measured rather than assumed: the server times every request in spans (model, analyzers,
debounce; `collab.getStats` returns them) and

    overhead = client round trip - the server's model span

which counts everything that is not the backend: JSON-RPC framing and parsing on both sides,
pygls dispatch, document position conversion, context trimming, prompt building, streaming
bookkeeping, clean-up, the status notifications. The model span starts when the server asks the
backend and ends when the stream is closed, so the HTTP exchange with the backend is in it.
Requests are sequential (no queueing), at distinct positions (no cache hits), invoked (no
debounce), analyzers off. The goals (p50 <= 15 ms, p95 <= 40 ms) apply to this overhead;
the server-internal part (handler entry to return, minus spans) is reported next to it.

Cache hits: a suggestion is made, then its first characters are typed one by one
(`didChange` + request); each answer comes from the forward-typing cache. Client round trip,
goal p95 <= 5 ms.

End to end: the embedded default (SmolLM2-135M-Instruct, in-process, CPU), single-line sites
in a real module, automatic requests with debounce 0, once with no analyzers and once with the
default four (one analyzer round fits the budget). Client round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "bench" / "fixtures" / "inventory.py"
DOCS = ROOT / "docs" / "server.md"
GOALS = {"overhead_p50_ms": 15.0, "overhead_p95_ms": 40.0, "cache_hit_p95_ms": 5.0}
MARK_START, MARK_END = "<!-- bench:lsp:start -->", "<!-- bench:lsp:end -->"
SERVER = [sys.executable, "-m", "collabcoder.server", "--log-level", "WARNING"]


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50_ms": round(pct(0.50), 3),
        "p95_ms": round(pct(0.95), 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "max_ms": round(ordered[-1], 3),
    }


# ---- processes --------------------------------------------------------------------------------


def start_openai_server(model_dir: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "collabcoder.server.openai_server", "--model", str(model_dir),
           "--served-model-name", "tiny", "--port", "0", "--dtype", "float32",
           "--log-level", "WARNING"]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"openai_server did not start: {line!r}")
    return proc, match.group(1)


class Session:
    """One collab-server process and a pygls client talking to it over stdio."""

    def __init__(self) -> None:
        self.client = LanguageClient("lsp-bench", "1")
        self.version: dict[str, int] = {}
        self._drain: asyncio.Future[bytes] | None = None
        for method in ("collab/status", "collab/iteration", types.WINDOW_LOG_MESSAGE,
                       types.WINDOW_SHOW_MESSAGE):  # fmt: skip
            self.client.feature(method)(lambda *args: None)

    async def start(self, options: dict[str, Any], root: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        await self.client.start_io(*SERVER, env=env)
        server = self.client._server
        if server is not None and server.stderr is not None:  # drain: a full pipe blocks it
            self._drain = asyncio.ensure_future(server.stderr.read())
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), initialization_options=options,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="bench")]))
        self.client.initialized(types.InitializedParams())

    def open(self, uri: str, text: str) -> None:
        self.version[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=text)))

    def type_at(self, uri: str, line: int, character: int, text: str) -> None:
        self.version[uri] += 1
        at = types.Position(line=line, character=character)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                version=self.version[uri]),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=at, end=at), text=text)]))

    async def inline(self, uri: str, line: int, character: int,
                     automatic: bool = False) -> tuple[float, list[str]]:
        kind = (types.InlineCompletionTriggerKind.Automatic if automatic
                else types.InlineCompletionTriggerKind.Invoked)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=kind))
        started = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(params)
        elapsed = (time.perf_counter() - started) * 1000
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        return elapsed, [str(i.insert_text) for i in items]

    async def stats(self) -> dict[str, Any]:
        result = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="collab.getStats", arguments=[]))
        return json.loads(json.dumps(result, default=lambda o: o._asdict()))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
            server = self.client._server
            if server is not None:
                await asyncio.wait_for(server.wait(), 10)
        finally:
            server = self.client._server
            if server is not None and server.returncode is None:
                server.kill()
            await self.client.stop()


# ---- runs -------------------------------------------------------------------------------------


def line_ends(text: str) -> list[tuple[int, int]]:
    """(line, end column) of every non-blank line: mid-line sites after text."""
    return [(i, len(ln)) for i, ln in enumerate(text.split("\n")) if ln.strip()]


async def overhead_run(url: str, root: Path, text: str, requests: int,
                       label: str) -> dict[str, Any]:
    session = Session()
    await session.start({"backend": "openai", "endpointUrl": url, "model": "tiny",
                         "analyzers": [], "debounceMs": 0, "maxTokens": 1,
                         "latencyBudgetMs": 60_000}, root)
    try:
        uri = (root / f"{label}.py").as_uri()
        session.open(uri, text)
        sites = line_ends(text)
        step = max(1, len(sites) // (requests + 20))
        sites = sites[::step]
        for line, col in sites[:20]:  # warm-up: imports, first HTTP connection
            await session.inline(uri, line, col)
        rtts: list[float] = []
        for line, col in sites[20:20 + requests]:
            rtt, _ = await session.inline(uri, line, col)
            rtts.append(rtt)
        timings = (await session.stats())["timings"][-len(rtts):]
        assert all(t["outcome"] != "cached" for t in timings)
        model = [t["modelMs"] for t in timings]
        return {
            "document_lines": text.count("\n"),
            "requests": len(rtts),
            "round_trip": stats(rtts),
            "model_span": stats(model),
            "overhead": stats([r - m for r, m in zip(rtts, model, strict=True)]),
            "server_internal_overhead": stats([t["overheadMs"] for t in timings]),
        }
    finally:
        await session.close()


async def cache_run(url: str, root: Path, text: str, suggestions: int) -> dict[str, Any]:
    session = Session()
    await session.start({"backend": "openai", "endpointUrl": url, "model": "tiny",
                         "analyzers": [], "debounceMs": 0, "maxTokens": 8,
                         "latencyBudgetMs": 60_000}, root)
    try:
        hits: list[float] = []
        misses: list[float] = []
        base = text.rstrip("\n") + "\n\n"
        last_line = base.count("\n")
        for i in range(suggestions):
            uri = (root / f"cache_{i}.py").as_uri()
            session.open(uri, base + f"# {i}\n")
            rtt, items = await session.inline(uri, last_line, 0)
            misses.append(rtt)
            if not items:
                continue
            for k, ch in enumerate(items[0][:5]):
                if ch == "\n":
                    break
                session.type_at(uri, last_line, k, ch)
                rtt, again = await session.inline(uri, last_line, k + 1)
                if again and again[0] == items[0][k + 1:]:
                    hits.append(rtt)
        stats_now = await session.stats()
        return {"hits": stats(hits) if hits else None, "first_requests": stats(misses),
                "cache_hits_counted": stats_now["cacheHits"]}
    finally:
        await session.close()


EMBEDDED_SITES = 8
ANALYZERS = ["syntax", "mypy", "signature", "hallucination"]


def embedded_sites(text: str) -> list[tuple[str, int, int]]:
    """Documents cut mid-line after `return ` in real functions: (text, line, column)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if line.strip().startswith("return ") and len(line.strip()) > 12:
            col = line.index("return ") + len("return ")
            cut = [*lines[:i], line[:col], *lines[i + 1:]]
            out.append(("\n".join(cut), i, col))
    step = max(1, len(out) // EMBEDDED_SITES)
    return out[::step][:EMBEDDED_SITES]


async def embedded_run(root: Path, text: str) -> list[dict[str, Any]]:
    """Each site twice, without and with the analyzer round, alternating which goes first, in
    one server (the settings change by didChangeConfiguration): both see the same load."""
    session = Session()
    settings: dict[str, Any] = {"analyzers": [], "debounceMs": 0, "maxTokens": 24,
                                "latencyBudgetMs": 120_000}
    await session.start(settings, root)
    samples: dict[str, list[tuple[float, dict[str, Any], bool]]] = {"none": [], "round": []}
    details: dict[str, list[dict[str, Any]]] = {"none": [], "round": []}

    async def measure(kind: str, n: int, doc: str, line: int, col: int) -> None:
        config = {**settings, "analyzers": ANALYZERS if kind == "round" else []}
        session.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"collab": config}))
        await asyncio.sleep(0.2)
        uri = (root / f"embedded_{kind}_{n}.py").as_uri()
        session.open(uri, doc)
        rtt, items = await session.inline(uri, line, col, automatic=True)
        timing = (await session.stats())["timings"][-1]
        if n >= 0:
            samples[kind].append((rtt, timing, bool(items)))
            details[kind].append({"site": n, "round_trip_ms": round(rtt, 1),
                                  "model_ms": timing["modelMs"],
                                  "analyzers_ms": timing["analyzersMs"],
                                  "suggestion": items[0] if items else None})

    try:
        sites = embedded_sites(text)
        for kind in ("none", "round"):  # warm-up: model load, first generation, mypy build
            await measure(kind, -1 if kind == "none" else -2, *sites[0])
            await asyncio.sleep(3 if kind == "round" else 0)  # the analyzer warm-up, once
        for n, site in enumerate(sites):
            for kind in (("none", "round") if n % 2 == 0 else ("round", "none")):
                await measure(kind, n, *site)
    finally:
        await session.close()
    out = []
    for kind, rows in samples.items():
        out.append({
            "analyzers": ANALYZERS if kind == "round" else [],
            "requests": len(rows),
            "suggestions_shown": sum(shown for _, _, shown in rows),
            "round_trip": stats([r for r, _, _ in rows]),
            "model_span": stats([t["modelMs"] for _, t, _ in rows]),
            "analyzer_span": stats([t["analyzersMs"] for _, t, _ in rows]),
            "samples": details[kind],
        })
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.tiny_model import build_tiny_model

    text = FIXTURE.read_text()
    big = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(10_000))
    with tempfile.TemporaryDirectory(prefix="lsp-bench-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model")
        proc, url = start_openai_server(model_dir)
        try:
            overhead = await overhead_run(url, root, text, args.requests, "inventory")
            overhead_big = await overhead_run(url, root, big, max(20, args.requests // 4), "big")
            cache = await cache_run(url, root, text, args.cache_suggestions)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        embedded = [] if args.skip_embedded else await embedded_run(root, text)
    goals = {
        "overhead_p50": overhead["overhead"]["p50_ms"] <= GOALS["overhead_p50_ms"],
        "overhead_p95": overhead["overhead"]["p95_ms"] <= GOALS["overhead_p95_ms"],
        "cache_hit_p95": bool(cache["hits"]) and cache["hits"]["p95_ms"]
        <= GOALS["cache_hit_p95_ms"],
    }
    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "goals": GOALS,
        "goals_met": goals,
        "overhead": overhead,
        "overhead_20000_lines": overhead_big,
        "cache": cache,
        "embedded": embedded,
    }


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title="collab-server latency (ms)")
    for col in ("", "n", "p50", "p95", "mean", "max"):
        table.add_column(col, justify="right" if col else "left")

    def row(label: str, s: dict[str, float] | None) -> None:
        if s:
            table.add_row(label, str(s["n"]), *(f"{s[k]:.1f}" for k in
                                                ("p50_ms", "p95_ms", "mean_ms", "max_ms")))

    o, b = report["overhead"], report["overhead_20000_lines"]
    row(f"overhead per request ({o['document_lines']}-line file)", o["overhead"])
    row("  server-internal part", o["server_internal_overhead"])
    row("  model span (tiny model, 1 token, over HTTP)", o["model_span"])
    row("  client round trip", o["round_trip"])
    row(f"overhead per request ({b['document_lines']}-line file)", b["overhead"])
    row("forward-typing cache hit (round trip)", report["cache"]["hits"])
    for e in report["embedded"]:
        label = ", ".join(e["analyzers"]) or "no analyzers"
        row(f"embedded model end to end ({label})", e["round_trip"])
        row("  model span", e["model_span"])
        row("  analyzer span", e["analyzer_span"])
    console.print(table)
    console.print(f"goals met: {report['goals_met']}; load average {report['machine']['load_average']}")


def docs_block(report: dict[str, Any]) -> str:
    o, b, c = report["overhead"], report["overhead_20000_lines"], report["cache"]
    g = report["goals"]

    def cell(s: dict[str, float] | None, k: str) -> str:
        return f"{s[k]:.1f} ms" if s else "n/a"

    lines = [
        MARK_START,
        f"Measured by `python bench/lsp_bench.py` on {report['machine']['cpus']} shared CPU cores "
        f"(load average {report['machine']['load_average'][0]:.1f} at the end), Python "
        f"{report['machine']['python']}; figures in `bench/results/lsp.json`.",
        "",
        "| what | n | p50 | p95 | goal |",
        "| --- | --- | --- | --- | --- |",
        f"| overhead per inline request ({o['document_lines']}-line file) | "
        f"{o['overhead']['n']} | {cell(o['overhead'], 'p50_ms')} | "
        f"{cell(o['overhead'], 'p95_ms')} | p50 <= {g['overhead_p50_ms']:.0f} ms, "
        f"p95 <= {g['overhead_p95_ms']:.0f} ms |",
        f"| of which inside the server | {o['server_internal_overhead']['n']} | "
        f"{cell(o['server_internal_overhead'], 'p50_ms')} | "
        f"{cell(o['server_internal_overhead'], 'p95_ms')} | |",
        f"| overhead per inline request ({b['document_lines']}-line file) | "
        f"{b['overhead']['n']} | {cell(b['overhead'], 'p50_ms')} | "
        f"{cell(b['overhead'], 'p95_ms')} | |",
        f"| forward-typing cache hit, round trip | {c['hits']['n'] if c['hits'] else 0} | "
        f"{cell(c['hits'], 'p50_ms')} | {cell(c['hits'], 'p95_ms')} | "
        f"p95 <= {g['cache_hit_p95_ms']:.0f} ms |",
    ]
    for e in report["embedded"]:
        label = "one analyzer round (" + ", ".join(e["analyzers"]) + ")" if e["analyzers"] \
            else "no analyzers"
        lines.append(
            f"| embedded SmolLM2-135M end to end, {label} (p95 column: max) | "
            f"{e['round_trip']['n']} | {cell(e['round_trip'], 'p50_ms')} | "
            f"{cell(e['round_trip'], 'max_ms')} | |")
        lines.append(
            f"| &nbsp;&nbsp;model / analyzers inside it | | "
            f"{e['model_span']['p50_ms']:.0f} / {e['analyzer_span']['p50_ms']:.0f} ms | "
            f"{e['model_span']['max_ms']:.0f} / {e['analyzer_span']['max_ms']:.0f} ms | |")
    met = report["goals_met"]
    lines += ["", "Goals met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items())
              + ".", MARK_END]
    return "\n".join(lines)


def replace_marked(doc: Path, start: str, end: str, block: str) -> None:
    """Put `block` (which carries the markers) between `start` and `end` in `doc`, if both are
    there; the benchmarks keep their generated tables in the docs this way."""
    text = doc.read_text() if doc.is_file() else ""
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + block + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lsp.json")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cache-suggestions", type=int, default=25)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/server.md")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    render(report, Console())
    if not args.no_docs:
        replace_marked(DOCS, MARK_START, MARK_END, docs_block(report))
    return 0 if all(report["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
