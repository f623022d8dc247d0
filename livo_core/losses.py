"""Preference losses on per-sample denoising errors: LiVO (the paper's) and Diffusion-DPO.

Notation: `policy_w`/`policy_l` are the errors ||eps - U(z_t; c_v)||^2 of the value-conditioned model on the
aligned (w) and violating (l) image; `ref_w`/`ref_l` the same for the frozen model on the prompt alone. Each is
a 1-D tensor of shape (B,), computed with one noise and one timestep shared by w and l.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossOutput:
    """A batch loss and its diagnostics (all scalars, detached except `loss`)."""

    loss: torch.Tensor
    margin_w: torch.Tensor  # mean(policy_w - ref_w): < 0 means the aligned image got easier to denoise
    margin_l: torch.Tensor  # mean(policy_l - ref_l): > 0 means the violating image got harder
    hinge_active: torch.Tensor  # share of active hinges (LiVO) / of pairs with non-zero gradient (DPO)
    implicit_acc: torch.Tensor  # share of pairs where (policy_w - ref_w) < (policy_l - ref_l)

    def as_dict(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in vars(self).items()}


def denoising_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over all but the batch dimension: (B, C, H, W) -> (B,)."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def _diagnostics(policy_w, policy_l, ref_w, ref_l) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    delta_w, delta_l = (policy_w - ref_w).detach(), (policy_l - ref_l).detach()
    return delta_w.mean(), delta_l.mean(), (delta_w < delta_l).float().mean()


def livo_loss(policy_w, policy_l, ref_w, ref_l, beta=1000.0, alpha=500.0, gamma1=1.0, gamma2=0.5) -> LossOutput:
    """LiVO (arXiv 2410.12700, Eq. 9): mean[ max(0, g1 + beta (Lp_w - Lr_w)) + max(0, g2 + alpha (Lr_l - Lp_l)) ].

    The winner hinge keeps the aligned image at least as easy to denoise as under the frozen model (fidelity),
    the loser hinge pushes the violating image away (value conformity); the two are decoupled.
    """
    hinge_w = F.relu(gamma1 + beta * (policy_w - ref_w))
    hinge_l = F.relu(gamma2 + alpha * (ref_l - policy_l))
    margin_w, margin_l, acc = _diagnostics(policy_w, policy_l, ref_w, ref_l)
    active = torch.cat([hinge_w > 0, hinge_l > 0]).float().mean()
    return LossOutput((hinge_w + hinge_l).mean(), margin_w, margin_l, active, acc)


def diffusion_dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=2500.0) -> LossOutput:
    """Diffusion-DPO (Wallace et al. 2023, Eq. 14): mean[ -log sigmoid(-beta ((Lp_w - Lr_w) - (Lp_l - Lr_l))) ]."""
    logits = -beta * ((policy_w - ref_w) - (policy_l - ref_l))
    margin_w, margin_l, acc = _diagnostics(policy_w, policy_l, ref_w, ref_l)
    # The gradient weight sigmoid(-logits) is "active" while the pair is not yet confidently ranked.
    active = (torch.sigmoid(-logits.detach()) > 0.01).float().mean()
    return LossOutput(-F.logsigmoid(logits).mean(), margin_w, margin_l, active, acc)


LOSSES = {"livo": livo_loss, "dpo": diffusion_dpo_loss}
