"""Collapse metrics: normalised std, covariance spectra, effective rank, condition number, updates."""

from __future__ import annotations

import math

import pytest
import torch

from geomhead.metrics import condition_number, covariance_spectrum, effective_rank, flat_params, grad_norm, normalized_std, relative_update


def test_normalized_std_isotropic_and_collapsed() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 16, generator=gen, dtype=torch.float64)
    assert float(normalized_std(x)) == pytest.approx(1 / math.sqrt(16), rel=0.02)
    collapsed = torch.ones(50, 16) * torch.linspace(0.5, 2.0, 50)[:, None]  # one direction, many norms
    assert float(normalized_std(collapsed)) < 1e-7


def test_covariance_spectrum_matches_numpy_and_refuses_rank_deficiency() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64) @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64))
    lam = covariance_spectrum(x, normalize=False)
    expected = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    torch.testing.assert_close(lam, expected, rtol=1e-12, atol=1e-14)
    assert torch.all(lam[:-1] >= lam[1:])
    with pytest.raises(ValueError, match="needs more than 5 samples, got 5"):
        covariance_spectrum(x[:5])


def test_effective_rank_and_condition_number() -> None:
    lam = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [4.0, 2.0, 1.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(effective_rank(lam)[:3], torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    p = lam[3] / lam[3].sum()
    assert float(effective_rank(lam)[3]) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    cond = condition_number(lam)
    assert cond[0] == 1.0 and math.isinf(cond[1]) and math.isnan(cond[2]) and cond[3] == 8.0
    assert float(condition_number(torch.tensor([2.0, -1e-18]))) == math.inf, "a bare negative round-off is not conditioned"


def test_grad_norm_and_relative_update() -> None:
    layer = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    assert grad_norm(layer.parameters()) == 0.0
    layer.weight.grad = torch.ones_like(layer.weight)
    assert grad_norm(layer.parameters()) == pytest.approx(math.sqrt(6))
    before = flat_params(layer.parameters())
    with torch.no_grad():
        layer.weight.mul_(1.5)
    assert relative_update(before, flat_params(layer.parameters())) == pytest.approx(0.5)
    assert math.isnan(relative_update(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)))
