"""The agents' models: one model per agent, or one shared base model with a LoRA adapter each.

`model.agents: separate` loads one copy of `model.name` per agent (full fine-tuning, or a LoRA
adapter on each copy with `model.lora.enabled`). `model.agents: shared_lora` loads the base
once and gives every agent its own adapter (named after its role), which costs one base model of
memory whatever the number of agents. Either way agent i trains only its own parameters, with
its own optimizer.

Saved agents are folders the language server loads (`AgentsManifest`): a `from_pretrained`
model (kind `full`) or a peft adapter on `model.name` (kind `lora`), each with the tokenizer.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from collabcoder.training.config import ModelConfig


def _dtype(name: str) -> Any:
    return "auto" if name == "auto" else getattr(torch, name)


def load_tokenizer(cfg: ModelConfig, source: str | Path | None = None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source or cfg.name), **cfg.tokenizer_kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class AgentSet:
    """The policies being trained, in role order (e.g. ("aux", "main"))."""

    def __init__(
        self,
        cfg: ModelConfig,
        roles: Sequence[str],
        *,
        resume_from: Path | None = None,
        with_reference: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.roles = tuple(roles)
        self.shared = cfg.agents == "shared_lora"
        self.lora = cfg.uses_lora
        self.tokenizer = load_tokenizer(cfg)

        def base() -> Any:
            return AutoModelForCausalLM.from_pretrained(
                cfg.name, dtype=_dtype(cfg.dtype), **cfg.model_kwargs
            )

        if self.shared:
            self.modules: list[Any] = [self._shared_model(base(), resume_from)]
        else:
            self.modules = [self._agent_model(base, role, resume_from) for role in self.roles]
        self._adapter_params: dict[str, list[torch.nn.Parameter]] = {}
        if self.shared:
            for role in self.roles:
                pattern = re.compile(rf"\.lora_\w+\.{re.escape(role)}\.")
                self._adapter_params[role] = [
                    p for n, p in self.modules[0].named_parameters() if pattern.search(n)
                ]
        # The reference policy (KL): the initial model. LoRA agents get it for free by
        # switching their adapters off; fully trained agents need a frozen copy.
        self._reference: Any = None
        if with_reference and not self.lora:
            self._reference = base().eval().requires_grad_(False)
        self._wrapped: list[Any] = list(self.modules)

    # ---- building -----------------------------------------------------------------------------

    def _lora_config(self) -> Any:
        from peft import LoraConfig

        lc = self.cfg.lora
        return LoraConfig(
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            target_modules=lc.target_modules,
            bias=lc.bias,
            task_type="CAUSAL_LM",
        )

    def _agent_model(self, base: Any, role: str, resume_from: Path | None) -> Any:
        from transformers import AutoModelForCausalLM

        if not self.lora:
            if resume_from is not None:
                return AutoModelForCausalLM.from_pretrained(
                    resume_from / role, dtype=_dtype(self.cfg.dtype), **self.cfg.model_kwargs
                )
            return base()
        from peft import PeftModel, get_peft_model

        if resume_from is not None:
            return PeftModel.from_pretrained(base(), resume_from / role, is_trainable=True)
        return get_peft_model(base(), self._lora_config())

    def _shared_model(self, model: Any, resume_from: Path | None) -> Any:
        from peft import PeftModel, get_peft_model

        first, *rest = self.roles
        if resume_from is not None:
            peft = PeftModel.from_pretrained(
                model, resume_from / first, adapter_name=first, is_trainable=True
            )
            for role in rest:
                peft.load_adapter(resume_from / role, adapter_name=role, is_trainable=True)
        else:
            peft = get_peft_model(model, self._lora_config(), adapter_name=first)
            for role in rest:
                peft.add_adapter(role, self._lora_config())
        for name, p in peft.named_parameters():  # every adapter trainable: DDP sees them all
            if "lora_" in name:
                p.requires_grad_(True)
        return peft

    def prepare(self, accelerator: Any) -> None:
        """Wrap the trainable modules for the accelerator (DDP across processes)."""
        for m in self.modules:
            m.train()  # from_pretrained returns eval mode; LoRA dropout needs train mode
        self._wrapped = [accelerator.prepare(m) for m in self.modules]
        self._unwrap = accelerator.unwrap_model
        if self._reference is not None:
            self._reference.to(accelerator.device)

    # ---- use ----------------------------------------------------------------------------------

    def _index(self, agent: int) -> int:
        return 0 if self.shared else agent

    def unwrapped(self, agent: int) -> Any:
        model = self._wrapped[self._index(agent)]
        unwrap = getattr(self, "_unwrap", None)
        return unwrap(model) if unwrap is not None else model

    def _activate(self, agent: int) -> None:
        if not self.shared:
            return
        peft = self.unwrapped(agent)
        role = self.roles[agent]
        if peft.active_adapter != role:
            peft.set_adapter(role)
            # peft freezes the other adapters; they are not in this agent's graph anyway, and
            # keeping them trainable keeps DDP's view of the parameters fixed.
            for params in self._adapter_params.values():
                for p in params:
                    p.requires_grad_(True)

    def train_model(self, agent: int) -> Any:
        """The module to run forward passes through for `agent` (DDP-wrapped when distributed)."""
        self._activate(agent)
        return self._wrapped[self._index(agent)]

    def generation_model(self, agent: int) -> Any:
        self._activate(agent)
        return self.unwrapped(agent)

    def parameters(self, agent: int) -> list[torch.nn.Parameter]:
        if self.shared:
            return self._adapter_params[self.roles[agent]]
        return [p for p in self.modules[agent].parameters() if p.requires_grad]

    @contextmanager
    def reference(self, agent: int) -> Iterator[Any]:
        """A model computing the reference policy's log-probs (no gradients)."""
        if self._reference is not None:
            yield self._reference
            return
        model = self.generation_model(agent)
        ctx = model.disable_adapter() if self.lora else nullcontext()
        with ctx:
            yield model

    # ---- saving -------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "lora" if self.lora else "full"

    def save(self, folder: Path) -> None:
        """One sub-folder per role under `folder` (model or adapter + tokenizer)."""
        folder.mkdir(parents=True, exist_ok=True)
        for agent, role in enumerate(self.roles):
            target = folder / role
            model = self.unwrapped(agent)
            if self.shared:
                # peft writes a non-default adapter into <dir>/<name>; stage it, then move it.
                with tempfile.TemporaryDirectory(dir=folder) as stage:
                    model.save_pretrained(stage, selected_adapters=[role])
                    shutil.move(str(Path(stage) / role), target)
            else:
                model.save_pretrained(target, safe_serialization=True)
            self.tokenizer.save_pretrained(target)
