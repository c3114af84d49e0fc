"""`collab-train agentic sft`: TRL's SFTTrainer on debugging conversations, loss on the
assistant's own text only.

The conversations (`collab-train agentic prepare`) are rendered with `render_conversation`,
which gives the character spans of the text the assistant wrote. Chat templates such as
SmolLM2's or Qwen2.5's have no `{% generation %}` markers, so TRL's `assistant_only_loss` cannot
find them; instead each row is tokenized here with offsets and carries `assistant_masks`
(1 on a token inside an assistant span). SFTTrainer takes such a pre-tokenized dataset as it is
and turns the mask into labels (-100 elsewhere): the system and user prompts, the template's
role headers and every tool response are never trained on. A row longer than `max_length` is
truncated by TRL from its end.

Run folder: `checkpoints/checkpoint-N` (TRL's own, resumable), `metrics.jsonl` and
`tensorboard/`, and at the end `main/` + `agents.json` (see `outputs.py`).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collabcoder.training.agentic.config import AgenticSFTConfig, config_dict, save_agentic_config
from collabcoder.training.agentic.conversations import render_conversation
from collabcoder.training.agentic.outputs import publish_final
from collabcoder.training.data.tasks import DatasetError
from collabcoder.training.trainers import checkpoint as ckpt
from collabcoder.training.trainers.logging import MetricsLogger
from collabcoder.training.trainers.resume import RunFolderError, RunStart, check_writable

HF_CHECKPOINT_PREFIX = "checkpoint-"


class ConversationFormatError(DatasetError):
    """A conversations row that cannot be trained on; the message names the file and row."""


def read_conversations(path: str | Path, max_rows: int | None = None) -> list[dict[str, Any]]:
    """Rows `{messages, tools, ...}` of a `prepare` output (JSONL or parquet), checked."""
    from collabcoder.training.agentic.prepare import load_conversations

    path = Path(path)
    if not path.is_file():
        raise ConversationFormatError(f"conversations file {path} does not exist")
    raw = load_conversations(path)
    rows = [_clean_row(r, f"{path} row {n}") for n, r in enumerate(raw[:max_rows], 1)]
    if not rows:
        raise ConversationFormatError(f"{path} holds no conversation")
    return rows


def _clean_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ConversationFormatError(f"{where}: expected an object, got {type(row).__name__}")
    out = dict(row)
    for key in ("messages", "tools"):
        value = out.get(key)
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, list) or not value:
            raise ConversationFormatError(f"{where}: field {key!r} must be a non-empty list")
        out[key] = value
    # Parquet fills every struct field of every message; a None key is an absent one.
    out["messages"] = [_drop_none(m) for m in out["messages"]]
    if not any(m.get("role") == "assistant" for m in out["messages"]):
        raise ConversationFormatError(f"{where}: no assistant message to train on")
    return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def tokenize_with_mask(tokenizer: Any, row: dict[str, Any]) -> dict[str, list[int]]:
    """`input_ids` of the rendered conversation and `assistant_masks` (1: the assistant wrote
    the token's text; a token that starts inside a span belongs to it)."""
    rendered = render_conversation(tokenizer, row["messages"], row["tools"])
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [s for s, _ in rendered.spans]
    mask = []
    for begin, end in enc["offset_mapping"]:
        i = bisect_right(starts, begin) - 1
        inside = i >= 0 and begin < rendered.spans[i][1] and end > begin
        mask.append(1 if inside else 0)
    return {"input_ids": list(enc["input_ids"]), "assistant_masks": mask}


def build_dataset(tokenizer: Any, rows: Sequence[dict[str, Any]]) -> Any:
    from datasets import Dataset

    encoded = [tokenize_with_mask(tokenizer, r) for r in rows]
    return Dataset.from_dict(
        {
            "input_ids": [e["input_ids"] for e in encoded],
            "assistant_masks": [e["assistant_masks"] for e in encoded],
        }
    )


# ---- run folder ---------------------------------------------------------------------------------


def hf_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    root = run_dir / ckpt.CHECKPOINTS
    found = []
    if root.is_dir():
        for p in root.iterdir():
            tail = p.name.removeprefix(HF_CHECKPOINT_PREFIX)
            if p.is_dir() and p.name.startswith(HF_CHECKPOINT_PREFIX) and tail.isdigit():
                found.append((int(tail), p))
    return sorted(found)


def plan_sft_start(run_dir: Path, resume: bool) -> RunStart:
    """As `resume.plan_start` for TRL's checkpoints: without `resume` a used folder is refused;
    with it the newest checkpoint whose files are whole (each checked by its format) wins,
    and each damaged one passed over is named."""
    check_writable(run_dir)
    state, _ = ckpt.read_state(run_dir)
    found = hf_checkpoints(run_dir)
    if not resume:
        if found or state is not None:
            raise RunFolderError(
                f"{run_dir} already holds a run; pass --resume to continue it, or set "
                "output.base_dir to a new folder"
            )
        return RunStart()
    if state is not None and state.get("finished"):
        raise RunFolderError(f"{run_dir} holds a finished run; nothing to resume")
    notes: list[str] = []
    for step, folder in reversed(found):
        damaged = [
            f"{p} {problem}"
            for p in sorted(folder.rglob("*"))
            if p.is_file() and (problem := ckpt.inspect_file(p)) is not None
        ]
        if not (folder / "trainer_state.json").is_file():
            damaged.append(f"{folder / 'trainer_state.json'} is missing")
        if not damaged:
            return RunStart(step, folder, tuple(notes))
        notes.append(f"checkpoint {folder.name} is damaged: {', '.join(damaged)}")
    if notes:
        raise RunFolderError(f"no good checkpoint to resume in {run_dir}: {'; '.join(notes)}")
    return RunStart()


def run_sft(
    cfg: AgenticSFTConfig,
    *,
    resume: bool = False,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train; returns the run folder. RunFolderError / ConversationFormatError before loading
    any model when the folder or the data is wrong."""
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from collabcoder.training.agentic.sources import resolve_model_source
    from collabcoder.training.trainers.policies import _dtype, load_tokenizer

    run_dir = Path(cfg.output.base_dir)
    start = plan_sft_start(run_dir, resume)
    rows = read_conversations(cfg.data.train_file, cfg.data.max_rows)
    eval_rows = read_conversations(cfg.data.eval_file) if cfg.data.eval_file else None
    source = resolve_model_source(cfg.model.name)
    tokenizer = load_tokenizer(cfg.model, source)
    train_ds = build_dataset(tokenizer, rows)
    eval_ds = build_dataset(tokenizer, eval_rows) if eval_rows else None
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=_dtype(cfg.model.dtype), **cfg.model.model_kwargs
    )
    s = cfg.sft
    args = SFTConfig(
        output_dir=str(run_dir / ckpt.CHECKPOINTS),
        per_device_train_batch_size=s.per_device_train_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        learning_rate=s.learning_rate,
        num_train_epochs=s.num_train_epochs,
        max_steps=s.max_steps,
        lr_scheduler_type=s.lr_scheduler_type,
        warmup_steps=s.warmup_ratio,  # transformers 5 takes a ratio (< 1) here
        weight_decay=s.weight_decay,
        max_grad_norm=s.max_grad_norm,
        logging_steps=s.logging_steps,
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        activation_checkpointing=s.gradient_checkpointing,
        seed=s.seed,
        max_length=cfg.model.max_length,
        report_to="none",  # every sink goes through MetricsLogger, as in the other trainers
        use_cpu=not torch.cuda.is_available(),
        # TRL defaults to bf16 autocast, which on CPU is slow and imprecise, and which
        # accelerate keeps in its process-wide state for every trainer that follows.
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        eval_strategy="epoch" if eval_ds is not None else "no",
        disable_tqdm=True,
    )
    save_agentic_config(cfg, run_dir)
    logger = MetricsLogger(
        run_dir,
        cfg.logging,
        run_config=config_dict(cfg),
        resume_step=start.step if start.checkpoint is not None else None,
    )

    class _Log(TrainerCallback):
        def on_log(self, _args: Any, state: Any, _control: Any, logs: Any = None, **_: Any) -> None:
            numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            logger.log(int(state.global_step), numbers)
            if on_log is not None:
                on_log(int(state.global_step), numbers)

    peft_config = None
    if cfg.model.lora.enabled:
        from peft import LoraConfig

        lc = cfg.model.lora
        peft_config = LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
            target_modules=lc.target_modules, bias=lc.bias, task_type="CAUSAL_LM",
        )  # fmt: skip
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[_Log()],
        peft_config=peft_config,
    )
    try:
        result = trainer.train(
            resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None
        )
    finally:
        logger.close()
        # accelerate's state is a process-wide singleton: leave none behind for the next trainer
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    trained_with = {
        "trainer": "agentic_sft",
        "config": "config.yaml",
        "step": int(result.global_step),
        "base_model": cfg.model.name,
    }
    publish_final(run_dir, trainer.model, tokenizer, trained_with, int(result.global_step))
    return run_dir
