"""Whitening of linear heads: anchor loss Hessians vs explicit ones, and Thm 3.1's construction whitens exactly."""

from __future__ import annotations

import pytest
import torch

from geomhead.heads import ProjectionHead
from geomhead.losses import ssl_loss
from geomhead.whitening import (
    affine_jacobian,
    anchor_loss_hessians,
    covariance,
    positive_part,
    range_basis,
    whitening_report,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _psd(k: int, rank: int, seed: int) -> torch.Tensor:
    a = torch.randn(k, rank, generator=_gen(seed), dtype=torch.float64)
    return a @ a.T


def test_anchor_hessians_of_a_per_sample_quadratic_loss() -> None:
    b, k = 5, 4
    a = _psd(k, k, 1) + torch.eye(k, dtype=torch.float64)
    c = torch.randn(b, k, generator=_gen(2), dtype=torch.float64)

    def loss(h: torch.Tensor) -> torch.Tensor:  # mean over the batch of (1/2)(h - c)^T A (h - c)
        d = h - c
        return 0.5 * torch.einsum("bi,ij,bj->b", d, a, d).mean()

    h = torch.randn(b, k, generator=_gen(3), dtype=torch.float64)
    hess = anchor_loss_hessians(loss, h, [0, 3], scale=float(b))
    torch.testing.assert_close(hess, a.expand(2, k, k))
    q = range_basis(torch.randn(k, 2, generator=_gen(4), dtype=torch.float64))
    torch.testing.assert_close(anchor_loss_hessians(loss, h, [1], scale=float(b), basis=q)[0], q.T @ a @ q)


def test_anchor_hessians_of_a_coupled_loss_are_the_diagonal_blocks_of_the_batch_hessian() -> None:
    b, k = 4, 3
    h1 = torch.randn(b, k, generator=_gen(5), dtype=torch.float64)
    h2 = torch.randn(b, k, generator=_gen(6), dtype=torch.float64)
    for name in ("vicreg", "infonce"):

        def loss(h: torch.Tensor, name: str = name) -> torch.Tensor:
            return ssl_loss(name, {"h1": h, "h2": h2})

        full = torch.autograd.functional.hessian(lambda flat: loss(flat.reshape(b, k)), h1.reshape(-1)).reshape(b, k, b, k)
        blocks = anchor_loss_hessians(loss, h1, [0, 2])
        torch.testing.assert_close(blocks[0], full[0, :, 0, :], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(blocks[1], full[2, :, 2, :], rtol=1e-10, atol=1e-12)


def test_theorem_3_1_construction_whitens_the_effective_hessian() -> None:
    """W = U_r Lambda_r^{-1/2} B^T makes B^T W^T H_L W B = I_r: every condition number on S is 1."""
    k, d, r = 7, 5, 3
    h_l = _psd(k, r, 7)  # rank r loss Hessian
    lam, u = torch.linalg.eigh(h_l)
    u_r, lam_r = u[:, -r:], lam[-r:]
    basis, _ = torch.linalg.qr(torch.randn(d, r, generator=_gen(8), dtype=torch.float64))
    w = u_r @ torch.diag(lam_r.rsqrt()) @ basis.T  # (k, d)
    z = torch.randn(200, d, generator=_gen(9), dtype=torch.float64)
    rep = whitening_report(w, h_l.expand(3, k, k), z, r)
    torch.testing.assert_close(torch.as_tensor(rep.heff_eigenvalues), torch.ones(r, dtype=torch.float64))
    assert rep.heff_condition == pytest.approx(1.0, abs=1e-10)
    assert rep.hl_condition == pytest.approx(float(lam_r[-1] / lam_r[0]), rel=1e-10)


def test_inverse_square_root_of_the_covariance_whitens_the_data() -> None:
    d = 4
    z = torch.randn(300, d, generator=_gen(10), dtype=torch.float64) @ torch.randn(d, d, generator=_gen(11), dtype=torch.float64)
    lam, vec = torch.linalg.eigh(covariance(z))
    w = vec @ torch.diag(lam.rsqrt()) @ vec.T  # Sigma^{-1/2}
    h_l = _psd(d, d, 12) + torch.eye(d, dtype=torch.float64)
    rep = whitening_report(w, h_l[None], z, d)
    assert rep.metric_condition == pytest.approx(1.0, abs=1e-9)
    assert rep.metric_alignment == pytest.approx(1.0, abs=1e-12)
    # an isometric head (W^T W = I) leaves the data as conditioned as it was
    q, _ = torch.linalg.qr(torch.randn(9, d, generator=_gen(13), dtype=torch.float64))
    iso = whitening_report(q, _psd(9, 9, 14)[None], z, d)
    assert iso.metric_condition == pytest.approx(iso.data_condition, rel=1e-9)
    assert iso.metric_condition == pytest.approx(float(lam.max() / lam.min()), rel=1e-9)


def test_report_in_a_range_basis_equals_the_full_report() -> None:
    k, d = 8, 3
    w = torch.randn(k, d, generator=_gen(15), dtype=torch.float64)
    z = torch.randn(50, d, generator=_gen(17), dtype=torch.float64)
    q = range_basis(w)
    h_l = _psd(k, k, 16)  # PSD: only its compression to the range of W matters
    full = whitening_report(w, h_l[None], z, 2)
    compressed = whitening_report(w, (q.T @ h_l @ q)[None], z, 2, basis=q)
    for key in ("heff_condition", "metric_condition", "data_condition", "metric_alignment"):
        assert getattr(compressed, key) == pytest.approx(getattr(full, key), rel=1e-9), key
    torch.testing.assert_close(torch.as_tensor(compressed.heff_eigenvalues), torch.as_tensor(full.heff_eigenvalues))
    indefinite = h_l - 3.0 * torch.eye(k, dtype=torch.float64)  # like the cosine losses: the positive part is used
    rep = whitening_report(w, (q.T @ indefinite @ q)[None], z, 2, basis=q)
    expected = torch.linalg.eigvalsh(w.T @ q @ positive_part(q.T @ indefinite @ q) @ q.T @ w).flip(0)[:2]
    torch.testing.assert_close(torch.as_tensor(rep.heff_eigenvalues), expected)
    with pytest.raises(ValueError, match="basis must span the range"):
        whitening_report(w, torch.eye(2, dtype=torch.float64)[None], z, 1, basis=torch.eye(k, dtype=torch.float64)[:, :2])


def test_affine_jacobian_of_heads() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(4, 6, 5, 2, "linear").double().eval().requires_grad_(False)
    w = affine_jacobian(head, 4, generator=_gen(18))
    torch.testing.assert_close(w, head.blocks[1][0].weight @ head.blocks[0][0].weight)
    swish = ProjectionHead(4, 6, 5, 2, "swish").double().eval().requires_grad_(False)
    with pytest.raises(ValueError, match="not affine"):
        affine_jacobian(swish, 4, generator=_gen(18))


def test_helpers_and_bad_inputs() -> None:
    m = torch.diag(torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(positive_part(m), torch.diag(torch.tensor([2.0, 0.0, 0.5], dtype=torch.float64)))
    x = torch.randn(10, 3, generator=_gen(19), dtype=torch.float64)
    torch.testing.assert_close(covariance(x), torch.cov(x.T))
    assert range_basis(torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]], dtype=torch.float64)).shape == (3, 1)
    with pytest.raises(ValueError, match="anchors must be non-empty row indices"):
        anchor_loss_hessians(lambda h: h.sum(), torch.zeros(2, 2, dtype=torch.float64), [2])
    with pytest.raises(ValueError, match="rank must be an int in"):
        whitening_report(torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[None], x, 4)
    with pytest.raises(ValueError, match="loss_hessians must have shape"):
        whitening_report(torch.eye(3, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[None], x, 1)
    with pytest.raises(ValueError, match="weight is zero"):
        range_basis(torch.zeros(2, 2))
