import math

import pytest
import torch

from livo_core.losses import denoising_error, diffusion_dpo_loss, livo_loss


def errors():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return t(0.10, 0.20), t(0.30, 0.40), t(0.1005, 0.1990), t(0.3010, 0.3990)  # policy_w, policy_l, ref_w, ref_l


def test_livo_loss_matches_hand_computation():
    out = livo_loss(*errors())
    # pair 1: relu(1 + 1000(-0.0005)) + relu(0.5 + 500(0.001)) = 0.5 + 1.0
    # pair 2: relu(1 + 1) + relu(0.5 - 0.5) = 2 + 0
    assert out.loss.item() == pytest.approx(1.75)
    assert out.hinge_active.item() == pytest.approx(0.75)
    assert out.margin_w.item() == pytest.approx(0.00025)
    assert out.margin_l.item() == pytest.approx(0.0, abs=1e-12)
    assert out.implicit_acc.item() == 0.0


def test_livo_loss_hyperparameters_are_used():
    out = livo_loss(*errors(), beta=0.0, alpha=0.0, gamma1=2.0, gamma2=3.0)
    assert out.loss.item() == pytest.approx(5.0)


def test_dpo_loss_matches_hand_computation():
    out = diffusion_dpo_loss(*errors())
    # logits: -2500((-0.0005) - (-0.001)) = -1.25 and -2500(0.001 - 0.001) = 0
    expected = (math.log(1 + math.exp(1.25)) + math.log(2)) / 2
    assert out.loss.item() == pytest.approx(expected)
    assert out.implicit_acc.item() == 0.0


def test_dpo_loss_rewards_correct_ranking():
    policy_w, policy_l, ref_w, ref_l = (torch.tensor([v], dtype=torch.float64) for v in (0.1, 0.3, 0.2, 0.2))
    out = diffusion_dpo_loss(policy_w, policy_l, ref_w, ref_l)
    assert out.implicit_acc.item() == 1.0
    assert out.loss.item() < 1e-6


def test_livo_gradient_only_through_active_hinges():
    policy_w = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    policy_l = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    ref_w, ref_l = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    livo_loss(policy_w, policy_l, ref_w, ref_l).loss.backward()
    assert policy_w.grad.item() == 0.0  # 1 + 1000(-0.1) < 0: winner hinge inactive
    assert policy_l.grad.item() == 0.0  # 0.5 + 500(-0.2) < 0: loser hinge inactive


def test_denoising_error_is_per_sample_mean():
    pred = torch.zeros(2, 4, 3, 3)
    target = torch.stack([torch.ones(4, 3, 3), 2 * torch.ones(4, 3, 3)])
    assert denoising_error(pred, target).tolist() == [1.0, 4.0]
