"""Advantages and the masked policy-gradient loss: padding and tokens after EOS never count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from collabcoder.training.rollout import joint_indices
from collabcoder.training.trainers.loss import (
    agent_values,
    group_advantages,
    pack,
    policy_loss,
    token_logps,
)

torch.set_num_threads(1)


def test_aligned_advantages_are_reward_minus_group_mean() -> None:
    joints = joint_indices(4, 2, "aligned")
    rewards = [1.0, 2.0, 3.0, 6.0]
    for agent in (0, 1):
        values = agent_values(rewards, joints, agent, 4)
        assert values == rewards
        assert group_advantages(values) == [-2.0, -1.0, 0.0, 3.0]


def test_cross_mode_credits_each_completion_with_the_mean_of_its_joint_actions() -> None:
    joints = joint_indices(2, 2, "cross")  # (0,0) (0,1) (1,0) (1,1)
    assert joints == [(0, 0), (0, 1), (1, 0), (1, 1)]
    rewards = [0.0, 1.0, 2.0, 5.0]
    assert agent_values(rewards, joints, 0, 2) == [0.5, 3.5]  # aux sample k: mean over its row
    assert agent_values(rewards, joints, 1, 2) == [1.0, 3.0]  # main sample k: over its column


def test_normalization_and_clipping() -> None:
    adv = group_advantages([0.0, 0.0, 4.0, 4.0], normalize=True)
    std = (4 * 4 / 3) ** 0.5  # unbiased std of the centred values (-2, -2, 2, 2)
    assert adv == pytest.approx([-2 / (std + 1e-4), -2 / (std + 1e-4), 2 / (std + 1e-4), 2 / (std + 1e-4)])
    assert group_advantages([1.0, 1.0], normalize=True) == [0.0, 0.0]  # no spread: no NaN
    assert group_advantages([0.0, 10.0], clip=1.5) == [-1.5, 1.5]


def test_pack_masks_only_completion_tokens() -> None:
    batch = pack([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 1, 2, 0], [0, 0, 8, 3, 4, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch.completion_mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _loss_and_grad(model: torch.nn.Module, prompts: list[list[int]], completions: list[list[int]], adv: list[float]) -> tuple[float, torch.Tensor]:
    model.zero_grad()
    batch = pack(prompts, completions, pad_id=0)
    logps = token_logps(model, batch)
    loss, _ = policy_loss(logps, torch.tensor(adv), batch.completion_mask, torch.ones(len(adv)))
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grad.clone()


def test_padding_never_changes_the_loss_or_its_gradient(tiny: torch.nn.Module) -> None:
    alone = _loss_and_grad(tiny, [[11, 12, 13]], [[40, 41, 2]], [1.0])
    # The same sequence next to a longer prompt and a longer completion (more padding).
    padded = _loss_and_grad(
        tiny, [[11, 12, 13], [21, 22, 23, 24, 25, 26]], [[40, 41, 2], [50, 51, 52, 53, 54]], [1.0, 0.0]
    )
    assert padded[0] == pytest.approx(alone[0] / 2, rel=1e-5)
    # Loss is a mean over sequences: sequence 2 has advantage 0, so the gradient halves.
    torch.testing.assert_close(padded[1] * 2, alone[1], rtol=1e-4, atol=1e-6)


def test_tokens_after_eos_are_never_trained(tiny: torch.nn.Module) -> None:
    from collabcoder.training.rollout.generation import cut_at_eos

    eos = (0, 2)
    raw_a = [40, 41, 2, 77, 78, 79]  # garbage after the EOS (id 2)
    raw_b = [40, 41, 2, 0, 0, 0]  # padding after the EOS
    ids_a, done_a = cut_at_eos(raw_a, eos)
    ids_b, done_b = cut_at_eos(raw_b, eos)
    assert ids_a == ids_b == (40, 41, 2) and done_a and done_b  # EOS kept: learning to stop
    assert cut_at_eos([40, 41], eos) == ((40, 41), False)
    a = _loss_and_grad(tiny, [[11, 12]], [list(ids_a)], [1.0])
    b = _loss_and_grad(tiny, [[11, 12]], [list(ids_b)], [1.0])
    torch.testing.assert_close(a[1], b[1])
    # What the reference did: train on the padded completion. Its gradient differs.
    c = _loss_and_grad(tiny, [[11, 12]], [raw_b], [1.0])
    assert not torch.allclose(a[1], c[1])


def test_sequence_loss_is_a_per_token_mean_so_length_does_not_scale_it(tiny: torch.nn.Module) -> None:
    batch = pack([[11], [11]], [[40, 2], [40, 41, 42, 43, 2]], pad_id=0)
    logps = token_logps(tiny, batch).detach()
    mask = batch.completion_mask
    loss, stats = policy_loss(logps, torch.tensor([1.0, 1.0]), mask, torch.ones(2), old_logps=logps)
    assert float(loss) == pytest.approx(-1.0)  # ratio 1, advantage 1, mean over tokens
    assert stats.kl is None and stats.clip_fraction is None


def test_ratio_clipping_and_kl() -> None:
    logps = torch.log(torch.tensor([[0.5, 0.5]]))
    old = torch.log(torch.tensor([[0.25, 0.5]]))  # ratio 2 on token 0, 1 on token 1
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(
        logps.requires_grad_(), torch.tensor([1.0]), mask, torch.ones(1), old_logps=old, clip_epsilon=0.2
    )
    assert float(loss.detach()) == pytest.approx(-(1.2 + 1.0) / 2)  # token 0 clipped at 1 + eps
    assert stats.clip_fraction == pytest.approx(0.5)
    ref = torch.log(torch.tensor([[0.5, 0.25]]))
    loss_kl, stats_kl = policy_loss(
        logps, torch.tensor([0.0]), mask, torch.ones(1), ref_logps=ref, kl_beta=0.1
    )
    k3 = torch.exp(ref - logps) - (ref - logps) - 1
    assert stats_kl.kl == pytest.approx(float(k3.mean()))
    assert float(loss_kl) == pytest.approx(0.1 * float(k3.mean()))


def test_weights_scale_sequences_and_zero_weight_drops_them() -> None:
    logps = torch.zeros(3, 1, requires_grad=True)
    mask = torch.ones(3, 1)
    adv = torch.tensor([1.0, -1.0, 5.0])
    loss, _ = policy_loss(logps, adv, mask, torch.tensor([2.0, 1.0, 0.0]))
    loss.backward()
    assert logps.grad is not None
    # mean over the two live sequences; the dropped one gets no gradient
    assert logps.grad.flatten().tolist() == pytest.approx([-1.0, 0.5, 0.0])
