"""Collapse metrics of a batch of features (PAPER §6, with the degenerate condition number fixed).

All spectra are computed in float64 from at least ``d + 1`` samples, so that the covariance of
``d``-dimensional features is not rank-deficient by construction (the paper's 2B = 1024 < 2048
made its condition number ``1e7 * λ_max``, PAPER §17.3).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def normalized_std(features: Tensor) -> Tensor:
    r"""The paper's collapse "variance": mean over dimensions of the (unbiased) std of L2-normalised rows.

    .. math:: s = \frac1d \sum_j \operatorname{std}_b\big(u_{bj}\big),\quad u_b = f_b / \|f_b\|.

    Isotropic unit vectors in ``d`` dimensions give about ``1/sqrt(d)``; full collapse gives 0.
    """
    u = nn.functional.normalize(features.detach().double(), dim=1)
    return u.std(dim=0, unbiased=True).mean()


def covariance_spectrum(features: Tensor, normalize: bool = True) -> Tensor:
    r"""Eigenvalues (descending, float64) of the feature covariance :math:`C = \frac{1}{n-1} X_c^\top X_c`.

    Args:
        features: ``(n, d)`` with ``n > d`` (else the spectrum is rank-deficient by construction).
        normalize: L2-normalise rows first (the paper's convention).
    """
    n, d = features.shape
    if n <= d:
        raise ValueError(f"covariance spectrum of {d}-dim features needs more than {d} samples, got {n}")
    x = features.detach().double()
    if normalize:
        x = nn.functional.normalize(x, dim=1)
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / (n - 1)
    return torch.linalg.eigvalsh(cov).flip(0).clamp_min(0.0)


def effective_rank(eigenvalues: Tensor) -> Tensor:
    r"""Roy & Vetterli's effective rank :math:`\exp(-\sum_i p_i \log p_i)`, :math:`p = \lambda/\sum\lambda`,
    along the last dim (0 where every eigenvalue is 0; negative ones count as 0)."""
    lam = eigenvalues.clamp_min(0.0)
    total = lam.sum(dim=-1, keepdim=True)
    p = torch.where(total > 0, lam / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(lam))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    return torch.where(total.squeeze(-1) > 0, torch.exp(-plogp.sum(dim=-1)), torch.zeros_like(total.squeeze(-1)))


def condition_number(eigenvalues: Tensor) -> Tensor:
    r""":math:`\lambda_{max}/\lambda_{min}` of the full spectrum along the last dim: ``inf`` when the smallest
    is not positive, NaN when the largest is not (no spectrum to condition)."""
    lo, hi = eigenvalues.amin(dim=-1), eigenvalues.amax(dim=-1)
    ratio = torch.where(lo > 0, hi / torch.where(lo > 0, lo, torch.ones_like(lo)), torch.full_like(hi, torch.inf))
    return torch.where(hi > 0, ratio, torch.full_like(hi, torch.nan))


def grad_norm(params: Iterable[nn.Parameter]) -> float:
    r""":math:`\|\nabla_w L\|_2` over the given parameters (those without a gradient count as 0)."""
    total = torch.zeros((), dtype=torch.float64)
    for p in params:
        if p.grad is not None:
            total = total + p.grad.detach().double().pow(2).sum().cpu()
    return float(total.sqrt())


def flat_params(params: Iterable[nn.Parameter]) -> Tensor:
    """All parameters concatenated into one float64 vector (a copy)."""
    parts = [p.detach().double().reshape(-1).cpu() for p in params]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def relative_update(before: Tensor, after: Tensor) -> float:
    r"""The real displacement of one optimiser step, momentum included: :math:`\|w_{t+1}-w_t\|/\|w_t\|`."""
    denom = before.norm()
    return float((after - before).norm() / denom) if denom > 0 else float("nan")
