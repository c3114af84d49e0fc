"""Agents of an `agents.json` folder as in-process transformers backends.

`full` agents are `from_pretrained` folders; `lora` agents are peft adapters merged once into a
private copy of their base model.
"""

from __future__ import annotations

import threading
from pathlib import Path

from collabcoder.server.agents.manifest import AgentEntry
from collabcoder.server.backends.base import BackendError
from collabcoder.server.backends.transformers_backend import LoadedModel, TransformersBackend


class LoraBackend(TransformersBackend):
    """A peft adapter merged into its own copy of the base model (the shared cache of
    `load_model` must not see merged weights)."""

    def __init__(self, adapter: str, base_model: str, dtype: str = "bfloat16") -> None:
        super().__init__(adapter, dtype=dtype, fim_template="none")
        self.base_model = base_model
        self._lm: LoadedModel | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> LoadedModel:
        with self._lock:
            if self._lm is None:
                self._lm = self._merge()
            return self._lm

    def _merge(self) -> LoadedModel:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from collabcoder.server.backends.embedded_model import resolve_model

        base_source = resolve_model(self.base_model).source
        try:
            base = AutoModelForCausalLM.from_pretrained(
                base_source, dtype=getattr(torch, self.dtype)
            )
            model = PeftModel.from_pretrained(base, self.model).merge_and_unload()
            has_tokenizer = (Path(self.model) / "tokenizer_config.json").is_file()
            tokenizer = AutoTokenizer.from_pretrained(self.model if has_tokenizer else base_source)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot load LoRA agent {self.model} on {self.base_model}: {exc}"
            ) from exc
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return LoadedModel(model, tokenizer, self.model, threading.Lock())


def check_weights(folder: Path) -> None:
    """Raise BackendError naming the first safetensors file in an agent's folder that does not
    decode (truncated, empty, garbage): the decoder's own error names no file. Reads headers
    only."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(
                f"agent weights {path} cannot be decoded ({reason}); the file is damaged or "
                "was cut short: copy the checkpoint again or point collab.model at another one"
            ) from None


def agent_backend(folder: Path, entry: AgentEntry, dtype: str = "bfloat16") -> TransformersBackend:
    """The backend of one agent of the manifest in `folder` (weights load on first use)."""
    path = str(folder / entry.path)
    if entry.kind == "lora":
        return LoraBackend(path, entry.base_model or "", dtype)
    return TransformersBackend(path, dtype=dtype, fim_template="none")
