"""The agentic commands' output folders: the layout every collab-train run has.

    <run>/config.yaml  metrics.jsonl  tensorboard/  state.json
    <run>/checkpoints/...            (per trainer: sealed step-N folders for RL, TRL's for SFT)
    <run>/main/  <run>/agents.json   the final model, a folder `from_pretrained` loads, and the
                                     manifest the language server loads (`collab.model` = <run>)

`agentic rl` and `agentic evaluate` take <run> itself as a model (`sources.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

from collabcoder.training.trainers import checkpoint as ckpt

ROLE: Final = "main"


def manifest(trained_with: dict[str, Any], prefix: str = "") -> Any:
    """The one-agent `agents.json` (a full model in `<prefix>main`)."""
    from collabcoder.server.agents.manifest import AgentEntry, AgentsManifest

    return AgentsManifest(
        agents=(AgentEntry(role=ROLE, path=f"{prefix}{ROLE}", kind="full"),),
        trained_with=trained_with,
    )


def save_model(model: Any, tokenizer: Any, target: Path) -> None:
    """`save_pretrained` model + tokenizer into `target` (a LoRA model is merged first, so the
    folder loads without its base)."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def publish_final(
    run_dir: Path, model: Any, tokenizer: Any, trained_with: dict[str, Any], step: int
) -> Path:
    """Write the final model to `<run>/main` (whole or not at all), then `agents.json`, then
    mark the run finished in `state.json`."""
    stage = run_dir / ".main.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    save_model(model, tokenizer, stage)
    final = run_dir / ROLE
    shutil.rmtree(final, ignore_errors=True)
    stage.rename(final)
    manifest(trained_with).save(run_dir)
    ckpt.write_json(run_dir / ckpt.STATE_FILE, {"step": step, "finished": True})
    return final
