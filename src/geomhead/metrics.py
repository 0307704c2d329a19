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
    r"""Roy & Vetterli's effective rank :math:`\exp(-\sum_i p_i \log p_i)`, :math:`p = \lambda/\sum\lambda`."""
    lam = eigenvalues.double().clamp_min(0.0)
    total = lam.sum()
    if total <= 0:
        return torch.tensor(0.0, dtype=torch.float64)
    p = lam / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum())


def condition_number(eigenvalues: Tensor) -> Tensor:
    r""":math:`\lambda_{max}/\lambda_{min}` of the full spectrum; ``inf`` when the smallest is 0."""
    lam = eigenvalues.double()
    lo, hi = lam.min(), lam.max()
    return hi / lo if lo > 0 else torch.tensor(float("inf"), dtype=torch.float64)


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
