"""Sampling completions from the agents: one interface, an HF `generate` implementation.

A generator turns prompts (text, one user message each) into token-level samples: the prompt's
ids exactly as the policy saw them and the completion's ids cut after the first end-of-sequence
token. The trainer scores those same ids, so what was sampled is what gets the gradient.
`VLLMGenerator` (vllm_generation.py) implements the same interface on vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    num_samples: int = 1  # completions per prompt (the group size G)
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0


@dataclass(frozen=True)
class Sample:
    prompt_ids: tuple[int, ...]
    # Up to and including the first EOS token: the model must learn to stop, and nothing after
    # the EOS was ever part of the action.
    completion_ids: tuple[int, ...]
    text: str  # the completion decoded without special tokens
    finished: bool  # ended with EOS (False: cut at max_new_tokens)


class Generator(Protocol):
    def generate(
        self, agent: int, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Sample]]:
        """`params.num_samples` samples for each prompt: result[prompt][k]."""
        ...

    def sync_weights(self) -> None:
        """Called after every optimizer step (engines holding their own copy reload it)."""
        ...


def eos_token_ids(tokenizer: Any, model: Any | None = None) -> tuple[int, ...]:
    """Every id that ends a completion: the tokenizer's EOS and the model's generation EOS ids
    (chat models stop at <|im_end|> while the tokenizer's EOS is <|endoftext|>)."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list | tuple):
            ids.extend(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer has no EOS token; set one (tokenizer_kwargs.eos_token)")
    return tuple(dict.fromkeys(ids))


def encode_prompt(tokenizer: Any, text: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of one user message: through the chat template when the tokenizer has one
    (instruct models answer a bare prompt with prose), else the raw text. Over-long prompts
    keep their end, where the generation prompt is."""
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(text)["input_ids"]
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    return list(ids)


def cut_at_eos(ids: Sequence[int], eos_ids: Sequence[int]) -> tuple[tuple[int, ...], bool]:
    """The ids up to and including the first EOS, and whether there was one."""
    eos = set(eos_ids)
    for i, token in enumerate(ids):
        if token in eos:
            return tuple(ids[: i + 1]), True
    return tuple(ids), False


class HFGenerator:
    """Samples with `model.generate` (left-padded batch, `num_return_sequences` = G).

    `policy(agent)` returns the model to sample from for that agent (unwrapped from DDP, with the
    agent's LoRA adapter active where agents share a base model).
    """

    def __init__(
        self,
        policy: Callable[[int], Any],
        tokenizer: Any,
        eos_ids: Sequence[int],
        max_prompt_tokens: int | None = None,
    ) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.eos_ids = tuple(eos_ids)
        self.max_prompt_tokens = max_prompt_tokens

    def sync_weights(self) -> None:  # generation reads the trained weights directly
        pass

    def generate(
        self, agent: int, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Sample]]:
        import torch

        if not prompts:
            return []
        model = self.policy(agent)
        encoded = [encode_prompt(self.tokenizer, p, self.max_prompt_tokens) for p in prompts]
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id
        device = next(model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in encoded], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in encoded], device=device)
        greedy = params.temperature <= 0
        sampling: dict[str, Any] = (
            {"do_sample": False}
            if greedy
            else {
                "do_sample": True,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": 0,  # the config has no top-k: temperature and top-p only
            }
        )
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            with torch.no_grad():
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=params.max_new_tokens,
                    num_return_sequences=params.num_samples,
                    eos_token_id=list(self.eos_ids),
                    pad_token_id=pad,
                    **sampling,
                )
        finally:
            model.train(was_training)
        generated = out[:, width:].tolist()
        result: list[list[Sample]] = []
        for p, prompt_ids in enumerate(encoded):
            group: list[Sample] = []
            for k in range(params.num_samples):
                ids, finished = cut_at_eos(generated[p * params.num_samples + k], self.eos_ids)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                group.append(Sample(tuple(prompt_ids), ids, text, finished))
            result.append(group)
        return result
