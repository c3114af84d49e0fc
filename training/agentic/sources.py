"""Where the agentic commands get their model and their tasks from.

A model is a hub id, a local `from_pretrained` folder, a short name the server knows
(`smollm2-135m-instruct`: the embedded model's transformers copy), or a collab-train run folder
holding `agents.json` (an `agentic sft` or `agentic rl` output, or a checkpoint): its `main`
agent is loaded. So the RL stage and the evaluator take the SFT stage's folder as it is.

Tasks are a code-agentic file (JSON, JSONL, parquet) or `humaneval` / `coophumaneval`
converted to stdin/stdout tasks (`convert.py`), each with an optional Python slice:
`coophumaneval[:20]`, `data/tasks.jsonl[5:10]`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from collabcoder.training.data.tasks import CodeAgenticTask, DatasetError

_SLICE = re.compile(r"^(?P<name>.+?)\[(?P<a>-?\d*):(?P<b>-?\d*)\]$")
CONVERTED = ("humaneval", "coophumaneval")


def resolve_model_source(name: str) -> str:
    """A path or id `from_pretrained` loads (see the module docstring)."""
    path = Path(name).expanduser()
    manifest = path / "agents.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        main = next((a for a in data.get("agents", []) if a.get("role") == "main"), None)
        if main is None:
            raise DatasetError(f"{manifest} names no 'main' agent")
        if main.get("kind", "full") != "full":
            raise DatasetError(
                f"{manifest}: the main agent is a LoRA adapter; merge it or pass its base model"
            )
        return str((path / main["path"]).resolve())
    if path.is_dir():
        return str(path)
    from collabcoder.server.backends.embedded_model import KNOWN_MODELS, resolve_model

    if name.lower() in KNOWN_MODELS:
        return resolve_model(name, allow_hub=False).source
    return name


def _split(spec: str) -> tuple[str, slice]:
    """`name[a:b]` -> (name, slice(a, b)); no slice -> everything."""
    m = _SLICE.match(spec)
    if not m:
        return spec, slice(None)
    return m["name"], slice(int(m["a"]) if m["a"] else None, int(m["b"]) if m["b"] else None)


def load_tasks(spec: str) -> list[CodeAgenticTask]:
    """Tasks from a file or a converted dataset name, optionally sliced."""
    from collabcoder.training.data.code_agentic import load_code_agentic, parse_code_agentic_row

    name, part = _split(spec)
    if name in CONVERTED:
        from collabcoder.training.agentic.convert import load_converted

        rows = load_converted(name).rows
        tasks = [parse_code_agentic_row(r, where=f"{name} {r['query_id']}") for r in rows]
    else:
        tasks = load_code_agentic(name)
    chosen = tasks[part]
    if not chosen:
        raise DatasetError(f"task source {spec!r} selects no task ({len(tasks)} available)")
    return chosen
