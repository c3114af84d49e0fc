"""Group-relative advantages and the masked policy-gradient loss.

Only an agent's own completion tokens carry loss: the prompt, the padding and anything after
the first EOS never do (the reference summed log-probs over padded completions, so padding
after an early EOS was trained on). Each sequence's loss is the mean over its own tokens, then
sequences are averaged (GRPO's original aggregation, TRL's `loss_type="grpo"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

STD_EPS = 1e-4  # as TRL: a group with one distinct reward gets advantages ~0, not NaN


def agent_values(
    rewards: Sequence[float], joints: Sequence[tuple[int, ...]], agent: int, group_size: int
) -> list[float]:
    """The reward credited to each of one agent's G completions: with aligned joint actions its
    own joint reward; with `cross` the mean over the joint actions it is part of."""
    sums = [0.0] * group_size
    counts = [0] * group_size
    for reward, joint in zip(rewards, joints, strict=True):
        sums[joint[agent]] += reward
        counts[joint[agent]] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]


def group_advantages(
    values: Sequence[float], *, normalize: bool = False, clip: float | None = None
) -> list[float]:
    """Value minus the group mean; divided by the group's (unbiased) std when `normalize`;
    clipped to [-clip, clip]."""
    n = len(values)
    mean = sum(values) / n
    out = [v - mean for v in values]
    if normalize:
        std = math.sqrt(sum(a * a for a in out) / (n - 1)) if n > 1 else 0.0
        out = [a / (std + STD_EPS) for a in out]
    if clip is not None:
        out = [max(-clip, min(clip, a)) for a in out]
    return out


@dataclass
class PackedBatch:
    """Sequences laid out as [left-padded prompt | right-padded completion]."""

    input_ids: torch.Tensor  # (B, P + C)
    attention_mask: torch.Tensor  # (B, P + C)
    position_ids: torch.Tensor  # (B, P + C): left padding must not shift positions
    completion_ids: torch.Tensor  # (B, C)
    completion_mask: torch.Tensor  # (B, C) float: 1 on completion tokens, 0 on padding

    @property
    def completion_width(self) -> int:
        return int(self.completion_ids.shape[1])


def pack(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
) -> PackedBatch:
    width_p = max(len(p) for p in prompts)
    width_c = max(1, max(len(c) for c in completions))
    ids, mask, comp, cmask = [], [], [], []
    for p, c in zip(prompts, completions, strict=True):
        lp, lc = width_p - len(p), width_c - len(c)
        ids.append([pad_id] * lp + list(p) + list(c) + [pad_id] * lc)
        mask.append([0] * lp + [1] * (len(p) + len(c)) + [0] * lc)
        comp.append(list(c) + [pad_id] * lc)
        cmask.append([1.0] * len(c) + [0.0] * lc)
    attention = torch.tensor(mask, device=device)
    return PackedBatch(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=attention,
        position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
        completion_ids=torch.tensor(comp, device=device),
        completion_mask=torch.tensor(cmask, device=device),
    )


def token_logps(model: Any, batch: PackedBatch, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each completion token, (B, C), under `model` sampled at
    `temperature` (the policy being optimized is the sampling distribution)."""
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=batch.completion_width + 1,
    ).logits
    return completion_logps(logits, batch, temperature)


def completion_logps(logits: torch.Tensor, batch: PackedBatch,
                     temperature: float = 1.0) -> torch.Tensor:
    """(B, C) log-probabilities of the completion tokens from the model's last C + 1 logits
    (`logits_to_keep=C + 1`; the last position predicts nothing)."""
    logits = logits[:, :-1, :].float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


@dataclass
class LossStats:
    policy_loss: float
    kl: float | None = None
    clip_fraction: float | None = None


def policy_loss(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    clip_epsilon: float | None = None,
    kl_beta: float = 0.0,
) -> tuple[torch.Tensor, LossStats]:
    """The clipped-ratio policy-gradient loss, masked, per-sequence mean, weighted mean.

    `old_logps` None means on-policy (first optimization step): the ratio is exp(0) = 1 with
    the gradient of log-prob, i.e. REINFORCE with a group baseline. `weights` (B,) scale each
    sequence (turn weight x early-termination weight; 0 drops it); the mean is over sequences
    with a nonzero weight, so weights change the step size, not the average.
    """
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    adv = advantages.unsqueeze(-1)
    per_token = -(ratio * adv)
    clipped_frac = None
    if clip_epsilon is not None:
        clipped = torch.clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
        per_token = torch.maximum(per_token, -(clipped * adv))
        outside = ((ratio - clipped).abs() > 1e-8).float()
        clipped_frac = float((outside * mask).sum().detach() / mask.sum().clamp(min=1.0))
    kl_value = None
    if kl_beta > 0.0:
        if ref_logps is None:
            raise ValueError("kl_beta > 0 needs the reference model's log-probs")
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1.0  # k3 estimator: unbiased, always >= 0
        per_token = per_token + kl_beta * kl
        kl_value = float(((kl * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean().detach())
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    count = (weights != 0).sum().clamp(min=1)
    loss = (per_seq * weights).sum() / count
    return loss, LossStats(float(loss.detach()), kl_value, clipped_frac)
