"""Rollouts on vLLM in the training process (`generation.backend: vllm`), for CUDA machines.

One engine per agent model (separate agents), or one engine with one LoRA adapter per agent
(`model.agents: shared_lora`). After every optimizer step `sync_weights` copies the trained
weights into the engines (full models: `load_weights`; adapters: saved to a folder and loaded
under a fresh LoRA id, since vLLM caches adapters by id). Sampling ids are returned as
`Sample`s, and the trainer recomputes their log-probabilities with the training model, so the
loss never trusts the engine's numbers.

vLLM is imported only when a VLLMGenerator is built.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collabcoder.training.rollout.generation import (
    Sample,
    SamplingParams,
    cut_at_eos,
    encode_prompt,
)

INSTALL_HINT = (
    "generation.backend 'vllm' needs vLLM and a CUDA GPU: pip install 'collabcoder[gpu]'; "
    "use generation.backend 'hf' elsewhere"
)


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from None
    return vllm


class VLLMGenerator:
    """`Generator` on vLLM. `policy(agent)` gives the training model of that agent (unwrapped,
    adapter active); `lora_roles` names the adapters when the agents share one base model."""

    def __init__(
        self,
        model_name: str,
        num_agents: int,
        policy: Callable[[int], Any],
        tokenizer: Any,
        eos_ids: Sequence[int],
        *,
        lora_roles: Sequence[str] | None = None,
        max_prompt_tokens: int | None = None,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        max_lora_rank: int = 64,
        dtype: str = "auto",
    ) -> None:
        # In-process engine: its workers must live in this process to receive the weights.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self._vllm = import_vllm()
        self.policy = policy
        self.tokenizer = tokenizer
        self.eos_ids = tuple(eos_ids)
        self.max_prompt_tokens = max_prompt_tokens
        self.lora_roles = list(lora_roles or [])
        engines = 1 if self.lora_roles else num_agents
        common = {
            "model": model_name,
            "gpu_memory_utilization": gpu_memory_utilization / engines,
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
            "enforce_eager": enforce_eager,
            "dtype": dtype,
        }
        if self.lora_roles:
            common.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=num_agents)
        self.engines = [self._vllm.LLM(**common) for _ in range(engines)]
        self._adapter_dir = Path(tempfile.mkdtemp(prefix="collab-vllm-lora-"))
        self._lora_version = 0
        self._lora_requests: dict[int, Any] = {}
        self.sync_weights()

    def sync_weights(self) -> None:
        if self.lora_roles:
            self._lora_version += 1
            for i, role in enumerate(self.lora_roles):
                peft_model = self.policy(i)
                folder = self._adapter_dir / f"v{self._lora_version}"
                peft_model.save_pretrained(folder, selected_adapters=[role])
                self._lora_requests[i] = self._vllm.lora.request.LoRARequest(
                    f"{role}-v{self._lora_version}",
                    self._lora_version * 100 + i + 1,
                    str(folder / role),
                )
            return
        for i, engine in enumerate(self.engines):
            runner = engine.llm_engine.model_executor.driver_worker.model_runner
            runner.model.load_weights(
                (name, p.data) for name, p in self.policy(i).named_parameters()
            )
            engine.reset_prefix_cache()

    def generate(
        self, agent: int, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Sample]]:
        if not prompts:
            return []
        encoded = [encode_prompt(self.tokenizer, p, self.max_prompt_tokens) for p in prompts]
        sampling = self._vllm.SamplingParams(
            n=params.num_samples,
            max_tokens=params.max_new_tokens,
            temperature=max(params.temperature, 0.0),
            top_p=params.top_p,
            stop_token_ids=list(self.eos_ids),
        )
        engine = self.engines[0 if self.lora_roles else agent]
        outputs = engine.generate(
            [{"prompt_token_ids": ids} for ids in encoded],
            sampling,
            lora_request=self._lora_requests.get(agent),
            use_tqdm=False,
        )
        result: list[list[Sample]] = []
        for ids, out in zip(encoded, outputs, strict=True):
            group = []
            for choice in out.outputs:
                completion, finished = cut_at_eos(list(choice.token_ids), self.eos_ids)
                text = self.tokenizer.decode(completion, skip_special_tokens=True)
                group.append(Sample(tuple(ids), completion, text, finished))
            result.append(group)
        return result
