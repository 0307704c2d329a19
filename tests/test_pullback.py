"""Pullback metric: batched Jacobians against explicit ones, the L2-normalised metric, spectra and summaries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geomhead.heads import ProjectionHead
from geomhead.pullback import (
    batched_jacobian,
    condition_number,
    effective_rank,
    head_layer_jacobians,
    metric_spectrum,
    normalized_jacobian,
    normalized_metric,
    numerical_rank,
    pullback_metric,
    spectrum,
)


def _head(
    activation: str = "swish", depth: int = 2, in_dim: int = 6, hidden: int = 9, out: int = 7, seed: int = 0, batchnorm: bool = False
) -> ProjectionHead:
    torch.manual_seed(seed)
    head = ProjectionHead(in_dim, hidden, out, depth, activation, batchnorm=batchnorm).double().eval()
    return head.requires_grad_(False)


def _explicit(fn, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians with a Python loop over samples (the reference, not the method under test)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], row) for row in x])


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
@pytest.mark.parametrize("activation", ["linear", "relu", "gelu", "swish"])
def test_batched_jacobian_equals_explicit_jacobian(mode: str, activation: str) -> None:
    head = _head(activation)
    z = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jac = batched_jacobian(head, z, mode=mode)
    assert jac.shape == (5, 7, 6)
    torch.testing.assert_close(jac, _explicit(head, z), rtol=1e-12, atol=1e-14)


def test_pullback_metric_and_spectrum_match_explicit_matrices() -> None:
    head = _head("gelu")
    z = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    jac = _explicit(head, z)
    g = pullback_metric(jac)
    torch.testing.assert_close(g, jac.transpose(1, 2) @ jac)
    spec = metric_spectrum(jac)
    expected = torch.linalg.eigvalsh(jac.transpose(1, 2) @ jac).flip(-1).clamp_min(0)
    torch.testing.assert_close(spec.eigenvalues, expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(spec.trace, jac.square().sum(dim=(1, 2)))
    torch.testing.assert_close(spectrum(g).eigenvalues, expected, rtol=1e-10, atol=1e-14)


def test_spectrum_of_a_narrow_head_is_padded_with_zeros() -> None:
    head = _head("swish", in_dim=8, hidden=5, out=3)
    z = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    jac = batched_jacobian(head, z)
    spec = metric_spectrum(jac)
    assert spec.eigenvalues.shape == (3, 8)
    expected = torch.linalg.eigvalsh(jac.transpose(1, 2) @ jac).flip(-1).clamp_min(0)
    torch.testing.assert_close(spec.eigenvalues, expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(spec.rank, torch.full((3,), 3))
    assert (spec.eigenvalues[:, 3:] == 0).all()


def test_normalized_jacobian_and_metric_are_those_of_h_over_its_norm() -> None:
    head = _head("swish")
    z = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def unit(v: torch.Tensor) -> torch.Tensor:
        h = head(v)
        return h / torch.linalg.vector_norm(h, dim=1, keepdim=True)

    jac = batched_jacobian(head, z)
    h = head(z)
    tilde = normalized_jacobian(jac, h)
    torch.testing.assert_close(tilde, _explicit(unit, z), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(normalized_metric(pullback_metric(jac), jac, h), tilde.transpose(1, 2) @ tilde, rtol=1e-10, atol=1e-13)


def test_l2_metric_of_a_homogeneous_head_is_singular_along_z() -> None:
    """For a bias-free ReLU head J z = h, so the normalised metric annihilates z (scale invariance)."""
    head = _head("relu")
    z = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (layer, _) = head_layer_jacobians(head, z)
    jac, metric = layer.metrics()["l2"]
    torch.testing.assert_close(torch.einsum("bkd,bd->bk", jac, z), torch.zeros(6, 7, dtype=torch.float64), atol=1e-13, rtol=0)
    quad = torch.einsum("bd,bde,be->b", z, metric, z)
    assert float(quad.abs().max()) < 1e-12 * float(metric.abs().max())
    assert (spectrum(metric).rank <= 5).all()


def test_layer_jacobians_follow_the_chain_rule() -> None:
    head = _head("gelu", depth=3)
    z = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    layers = head_layer_jacobians(head, z)
    assert [layer.name for layer in layers] == ["z", "block1", "block2"]
    inner = batched_jacobian(lambda v: head.forward_from(head.blocks[0](v), 1), z)
    torch.testing.assert_close(layers[0].jac, inner)
    to_block1 = batched_jacobian(head.blocks[0], z)
    torch.testing.assert_close(layers[0].jac, layers[1].jac @ to_block1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(layers[1].x, head.blocks[0](z))


def test_constant_jacobians_are_solved_once_with_the_same_answer() -> None:
    head = _head("linear")
    z = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    jac = batched_jacobian(head, z)
    assert torch.equal(jac, jac[:1].expand_as(jac))
    fast = metric_spectrum(jac)
    one_by_one = torch.cat([metric_spectrum(jac[i : i + 1]).eigenvalues for i in range(len(jac))])
    torch.testing.assert_close(fast.eigenvalues, one_by_one, rtol=0, atol=0)


def test_eval_mode_batchnorm_head_acts_row_wise() -> None:
    head = _head("swish", batchnorm=True)
    for module in head.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    z = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(batched_jacobian(head, z), _explicit(head, z), rtol=1e-12, atol=1e-14)


def test_summaries_on_known_spectra() -> None:
    lam = torch.tensor([[4.0, 4.0, 4.0, 4.0], [5.0, 0.0, 0.0, 0.0], [8.0, 2.0, 1e-14, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(
        effective_rank(lam),
        torch.tensor(
            [4.0, 1.0, float(torch.exp(-(0.8 * torch.log(torch.tensor(0.8)) + 0.2 * torch.log(torch.tensor(0.2))))), 0.0],
            dtype=torch.float64,
        ),
        rtol=1e-6,
        atol=1e-12,
    )
    assert numerical_rank(lam).tolist() == [4, 1, 2, 0]
    cond = condition_number(lam)
    assert cond[:3].tolist() == [1.0, 1.0, 4.0] and torch.isnan(cond[3])


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="x must be a floating tensor with 2 dims"):
        batched_jacobian(lambda v: v, torch.zeros(3))
    with pytest.raises(ValueError, match="mode must be"):
        batched_jacobian(lambda v: v, torch.zeros(2, 3), mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero row"):
        normalized_jacobian(torch.ones(1, 2, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="h must have shape"):
        normalized_jacobian(torch.ones(1, 2, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="rtol must be in"):
        metric_spectrum(torch.ones(1, 2, 2), rtol=2.0)
    with pytest.raises(ValueError, match="square"):
        spectrum(torch.ones(1, 2, 3))
