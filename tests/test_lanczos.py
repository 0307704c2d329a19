"""Lanczos with full reorthogonalisation, dense extremes and the paper's power iteration (geomhead.lanczos)."""

from __future__ import annotations

import math

import pytest
import torch

from geomhead.heads import ProjectionHead
from geomhead.lanczos import dense_extremes, lanczos_extremes, paper_power_iteration
from geomhead.losses import vicreg_loss
from geomhead.operators import CurvatureOperator, head_function

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def _symmetric(n: int, seed: int = 0) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a + a.T


def test_extremes_of_a_random_symmetric_matrix_with_honest_residuals() -> None:
    a = _symmetric(200)
    exact = torch.linalg.eigvalsh(a)
    res = lanczos_extremes(lambda v: a @ v, 200, k=3, tol=1e-10, max_iter=200, seed=1, vectors=True)
    scale = float(exact.abs().max())
    assert float((res.bottom.eigenvalues - exact[:3]).abs().max()) <= 1e-10 * scale
    assert float((res.top.eigenvalues - exact.flip(0)[:3]).abs().max()) <= 1e-10 * scale
    assert res.all_converged
    for end in (res.bottom, res.top):
        assert end.vectors is not None
        recomputed = torch.linalg.vector_norm(a @ end.vectors - end.vectors * end.eigenvalues, dim=0)
        torch.testing.assert_close(end.residuals, recomputed, rtol=1e-6, atol=1e-13 * scale)
        torch.testing.assert_close(torch.linalg.vector_norm(end.vectors, dim=0), torch.ones(3, dtype=torch.float64))
        assert end.n_products == end.iterations + 6  # Krylov steps + one residual product per Ritz pair
        assert end.seed == 1 and end.method == "lanczos"
    assert res.bottom.eigenvalues.tolist() == sorted(res.bottom.eigenvalues.tolist())
    assert res.top.eigenvalues.tolist() == sorted(res.top.eigenvalues.tolist(), reverse=True)


def test_unconverged_pairs_are_flagged_by_their_recomputed_residuals() -> None:
    a = _symmetric(300, seed=2)
    res = lanczos_extremes(lambda v: a @ v, 300, k=2, tol=1e-12, max_iter=15)
    assert not res.all_converged
    assert bool((res.bottom.residuals > res.bottom.threshold).any())
    assert res.bottom.iterations == 15


def test_lanczos_on_a_coupled_loss_agrees_with_dense_eigvalsh() -> None:
    torch.manual_seed(0)
    module = ProjectionHead(4, 8, 6, 2, "swish", True, bias=False).double().requires_grad_(False)
    head = head_function((module,), 0, batchnorm="train")
    x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = CurvatureOperator(head, lambda h: 6 * vicreg_loss(h[0], h[1]), x)
    for term in ("H_eff", "G", "M"):
        exact = torch.linalg.eigvalsh(op.dense(term))
        res = lanczos_extremes(op.matvec_fn(term), op.size, k=2, tol=1e-10, seed=3, vectors=True)
        scale = float(exact.abs().max())
        assert float((res.bottom.eigenvalues - exact[:2]).abs().max()) <= 1e-8 * scale, term
        assert float((res.top.eigenvalues - exact.flip(0)[:2]).abs().max()) <= 1e-8 * scale, term
        assert res.all_converged
        vectors = res.bottom.vectors
        assert vectors is not None
        applied = torch.stack([op.matvec(term, vectors[:, i]) for i in range(2)], dim=1)
        torch.testing.assert_close(
            res.bottom.residuals, torch.linalg.vector_norm(applied - vectors * res.bottom.eigenvalues, dim=0), rtol=1e-6, atol=1e-14 * scale
        )


def test_zero_and_low_rank_operators_restart_on_invariant_subspaces() -> None:
    zero = lanczos_extremes(lambda v: torch.zeros_like(v), 50, k=3, tol=1e-8, scale=1.0)
    assert zero.bottom.eigenvalues.tolist() == [0.0, 0.0, 0.0] and zero.all_converged
    u = torch.randn(80, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    low = u @ torch.diag(torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64)) @ u.T
    exact = torch.linalg.eigvalsh(low)
    res = lanczos_extremes(lambda v: low @ v, 80, k=2, tol=1e-10)
    scale = float(exact.abs().max())
    assert float((res.bottom.eigenvalues - exact[:2]).abs().max()) <= 1e-10 * scale
    assert float((res.top.eigenvalues - exact.flip(0)[:2]).abs().max()) <= 1e-10 * scale


def test_same_seed_same_result_and_seed_matters() -> None:
    a = _symmetric(60, seed=5)
    r1, r2 = (lanczos_extremes(lambda v: a @ v, 60, k=2, tol=1e-6, seed=7) for _ in range(2))
    assert torch.equal(r1.bottom.eigenvalues, r2.bottom.eigenvalues) and r1.bottom.n_products == r2.bottom.n_products
    r3 = lanczos_extremes(lambda v: a @ v, 60, k=2, tol=1e-6, seed=8)
    assert not torch.equal(r1.bottom.residuals, r3.bottom.residuals)


def test_dense_extremes() -> None:
    a = _symmetric(30, seed=6)
    exact = torch.linalg.eigvalsh(a)
    res = dense_extremes(a, k=2, n_products=30)
    torch.testing.assert_close(res.bottom.eigenvalues, exact[:2])
    torch.testing.assert_close(res.top.eigenvalues, exact.flip(0)[:2])
    assert res.all_converged and res.bottom.n_products == 30 and res.bottom.method == "dense"


def test_paper_power_iteration_reproduces_its_flaw() -> None:
    # The dominant-magnitude eigenvalue is negative: the shift by it makes "λ_min" the most *positive* one.
    a = torch.diag(torch.tensor([-10.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64))
    est = paper_power_iteration(lambda v: a.float() @ v, 5, seed=0)
    assert est.n_products == 42 and est.iterations == 20 and est.dtype == "float32"
    assert est.dominant == pytest.approx(-10.0, rel=1e-4)
    assert 2.0 < est.minimum <= 3.0  # the wrong end of the spectrum, with the wrong sign
    lanczos = lanczos_extremes(lambda v: a @ v, 5, k=1, tol=1e-10)
    assert float(lanczos.bottom.eigenvalues[0]) == pytest.approx(-10.0, rel=1e-12)
    # With a dominant positive end it does find the bottom.
    b = torch.diag(torch.tensor([-1.0, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64))
    assert paper_power_iteration(lambda v: b.float() @ v, 5, seed=0).minimum == pytest.approx(-1.0, rel=1e-2)


def test_bad_arguments_are_rejected() -> None:
    a = _symmetric(10)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, size=10\]"):
        lanczos_extremes(lambda v: a @ v, 10, k=11)
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        lanczos_extremes(lambda v: a @ v, 10, tol=0.0)
    with pytest.raises(ValueError, match="max_iter must be an int >= k=2"):
        lanczos_extremes(lambda v: a @ v, 10, k=2, max_iter=1)
    with pytest.raises(ValueError, match="matvec returned shape"):
        lanczos_extremes(lambda v: v[:3], 10, k=1)
    with pytest.raises(ValueError, match="non-finite"):
        lanczos_extremes(lambda v: v * math.nan, 10, k=1)
    with pytest.raises(ValueError, match="square"):
        dense_extremes(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="iterations must be a positive int"):
        paper_power_iteration(lambda v: v, 4, iterations=0)
