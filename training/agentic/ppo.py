"""PPO for multi-turn tool-use episodes: a value head, GAE, clipped policy and value losses.

Written by hand on our trainer because nothing maintained runs it here: TRL no longer ships
PPO (its `PPOTrainer` was removed), and verl, which has it, needs Ray and GPUs and does not run
on CPU. The algorithm is the classic RLHF PPO (Ziegler et al. 2019; Ouyang et al. 2022):

* the value head is a linear layer on the policy's last hidden state (the shared-backbone
  design of TRL's old `AutoModelForCausalLMWithValueHead`); its gradient flows into the
  backbone scaled by `vf_coef`;
* the per-token reward is `-kl_coef x (log pi_old - log pi_ref)` on every model token plus the
  episode's `code_agentic_reward` on its last model token;
* GAE (gamma, lambda) runs over the model's tokens only, in order: a tool response is part of
  the environment's transition between two actions, not an action, so it has neither a value
  nor a loss (its mask bit is 0);
* the losses: the clipped ratio objective on whitened advantages and the clipped value loss
  `0.5 x max((V - R)^2, (V_clip - R)^2)`, each a mean over the batch's model tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from collabcoder.training.trainers.loss import PackedBatch, completion_logps


class ValueHead(torch.nn.Module):
    """hidden state -> scalar value, one per position."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.normal_(self.summary.weight, std=1.0 / (hidden_size + 1))
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def logps_and_values(
    model: Any, head: torch.nn.Module, batch: PackedBatch, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) log-probs of the completion tokens and (B, C) values of the states they were
    sampled in (the hidden state one position earlier, where their logits come from)."""
    width = batch.completion_width
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=width + 1,
        output_hidden_states=True,
    )
    logps = completion_logps(out.logits, batch, temperature)
    hidden = out.hidden_states[-1][:, -(width + 1) : -1, :]
    return logps, head(hidden).float()


def token_rewards(
    final: torch.Tensor,
    mask: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    kl_coef: float,
) -> torch.Tensor:
    """(B, C): the KL penalty on model tokens and the episode reward on the last one."""
    rewards = torch.zeros_like(old_logps)
    if ref_logps is not None and kl_coef > 0:
        rewards = -kl_coef * (old_logps - ref_logps) * mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values
    rows = torch.nonzero(last >= 0).squeeze(-1)
    rewards[rows, last[rows]] += final[rows].to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), (B, C), over the masked positions only: position t's successor
    is the next model token of the same episode (after any tool response); after the last one
    the value is 0 (the episode ended)."""
    adv = torch.zeros_like(rewards)
    r_rows, v_rows = rewards.tolist(), values.tolist()
    for b in range(rewards.shape[0]):
        idx = torch.nonzero(mask[b] > 0).squeeze(-1).tolist()
        running = 0.0
        next_value = 0.0
        out = [0.0] * len(idx)
        for j in range(len(idx) - 1, -1, -1):
            t = idx[j]
            delta = r_rows[b][t] + gamma * next_value - v_rows[b][t]
            running = delta + gamma * lam * running
            out[j] = running
            next_value = v_rows[b][t]
        if idx:
            adv[b, idx] = torch.tensor(out, dtype=adv.dtype, device=adv.device)
    return adv, (adv + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalize over the masked entries (of the whole rollout batch)."""
    n = mask.sum().clamp(min=1.0)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / n
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


@dataclass
class PPOLossStats:
    policy_loss: float
    value_loss: float
    clip_fraction: float
    approx_kl: float


def ppo_loss(
    logps: torch.Tensor,
    values: torch.Tensor,
    old_logps: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_value: float,
    vf_coef: float,
) -> tuple[torch.Tensor, PPOLossStats]:
    """Clipped policy loss + vf_coef x clipped value loss, token means over `mask`."""
    n = mask.sum().clamp(min=1.0)
    ratio = torch.exp(logps - old_logps)
    pg = torch.maximum(
        -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    )
    policy = (pg * mask).sum() / n
    v_clip = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    vf = 0.5 * torch.maximum((values - returns) ** 2, (v_clip - returns) ** 2)
    value = (vf * mask).sum() / n
    with torch.no_grad():
        clipped = (((ratio - 1).abs() > clip_range).float() * mask).sum() / n
        approx_kl = (0.5 * (logps - old_logps) ** 2 * mask).sum() / n
    stats = PPOLossStats(
        float(policy.detach()), float(value.detach()), float(clipped), float(approx_kl)
    )
    return policy + vf_coef * value, stats
