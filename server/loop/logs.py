"""A loop run as files: a readable conversation (for people) and JSON (for tools)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from collabcoder.analyzers.files import atomic_write
from collabcoder.server.loop.search import LoopResult


def readable_conversation(result: LoopResult) -> str:
    """The best path's messages, then every candidate's analyzer verdicts, then the log."""
    out: list[str] = []
    best = result.best
    for message in best.messages if best else ():
        out.append(f"[{message['role']}]\n{message['content']}\n")
    out.append("[candidates]")
    for node in result.nodes:
        out.append(f"{node.id}  score {node.score:.2f}  {'PASS' if node.passing else 'fail'}")
        for r in node.results:
            state = "infra" if r.infra_error else "skip" if r.skipped else \
                "ok" if r.passed else "FAIL"
            out.append(f"    {r.name:<14}{state:<6}{r.message.splitlines()[0] if r.message else ''}")
    out.append("")
    out.extend(result.log)
    out.append(f"\ntime {result.time_s:.2f} s, tokens {result.tokens_generated}, "
               f"iterations {result.iterations}, stop: {result.stop_reason}")
    return "\n".join(out) + "\n"


def write_run_logs(result: LoopResult, folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write `<name>.txt` and `<name>.json` into `folder`; returns both paths."""
    target = Path(folder)
    txt, js = target / f"{name}.txt", target / f"{name}.json"
    atomic_write(txt, readable_conversation(result))
    atomic_write(js, json.dumps(result.to_dict(), indent=2, default=str))
    return txt, js
