"""Tolerances derived from float32, for runs that compute the same numbers with sums in another order (other batch
sizes, process counts or gradient accumulation, whose kernels differ from CPU to CPU)."""

from __future__ import annotations

import torch

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7: one ulp at 1.0
ERROR_ULPS = 4  # how far, in ulp, reordered kernels move a denoising error (seen: 0.07 on one CPU, 0.7 on another)


def record_errors(trainer) -> list[float]:
    """Make `trainer` record, for every loss it computes, the largest of its denoising errors."""
    errors: list[float] = []
    loss_fn = trainer.loss_fn

    def recording(*terms: torch.Tensor, **scales):
        errors.append(max(float(t.detach().max()) for t in terms))
        return loss_fn(*terms, **scales)

    trainer.loss_fn = recording
    return errors


def livo_loss_atol(beta: float, alpha: float, max_error: float, loss: float, terms: int) -> float:
    """The absolute difference float32 rounding alone can make to a logged LiVO loss.

    Another batch size or process count runs other kernels, which sum the UNet's products in another order: a
    denoising error e (the mean of the squared errors of one image's latents) moves by at most ERROR_ULPS ulp,
    ERROR_ULPS * EPS32 * e. Per pair, the loss is relu(g1 + beta (Lp_w - Lr_w)) + relu(g2 + alpha (Lr_l - Lp_l)):
    the hinges scale those moves by beta and alpha, so a pair's loss moves by at most
    (beta + alpha) * ERROR_ULPS * EPS32 * max_error, and the mean over pairs no more. Adding up `terms` partial
    losses (micro-batches, processes) rounds once per term: terms * EPS32 * loss.
    """
    return (beta + alpha) * ERROR_ULPS * EPS32 * max_error + terms * EPS32 * abs(loss)
