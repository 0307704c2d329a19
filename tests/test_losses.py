"""Tests for geomhead.losses: formulas, stop-gradients, BN-mode independence, Hessians."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomhead import losses as L

# The first forward-mode call (torch.func.hessian / jvp) makes torch emit its own FutureWarning
# about torch.jit.script; pyproject turns warnings into errors and only ignores torch's
# Deprecation/UserWarnings.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

F64 = torch.float64

# Rows of a 4x4 Hadamard matrix without the all-ones column: centred, orthogonal columns of
# entries ±1, so the biased per-feature variance is 1 and ZᵀZ/4 = I.
HADAMARD_COLS = torch.tensor(
    [[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]], dtype=F64
)


def _randn(*shape: int, seed: int, scale: float = 1.0, dtype: torch.dtype = F64) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen, dtype=dtype)


# --------------------------------------------------------------------------- independent references


def _cos_loop(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors by explicit sums."""
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(float(x) ** 2 for x in a))
    nb = math.sqrt(sum(float(y) ** 2 for y in b))
    return dot / (na * nb)


def _ntxent_loop(h1: Tensor, h2: Tensor, tau: float) -> float:
    """NT-Xent with explicit loops over anchors, the positive and the 2N−2 negatives."""
    u = [row for row in h1.numpy()] + [row for row in h2.numpy()]
    n2 = len(u)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = i + n if i < n else i - n
        negatives = [j for j in range(n2) if j != i and j != pos]
        assert len(negatives) == n2 - 2
        s_pos = math.exp(_cos_loop(u[i], u[pos]) / tau)
        s_neg = sum(math.exp(_cos_loop(u[i], u[j]) / tau) for j in negatives)
        total += -math.log(s_pos / (s_pos + s_neg))
    return total / n2


def _infonce_loop(h1: Tensor, h2: Tensor, tau: float) -> float:
    """One-directional InfoNCE with explicit loops: anchor b of view 1 against all of view 2."""
    a, b = h1.numpy(), h2.numpy()
    total = 0.0
    for i in range(len(a)):
        scores = [math.exp(_cos_loop(a[i], b[j]) / tau) for j in range(len(b))]
        total += -math.log(scores[i] / sum(scores))
    return total / len(a)


def _off_diagonal(x: Tensor) -> Tensor:
    """Official helper of facebookresearch/vicreg and barlowtwins."""
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def _vicreg_official(x: Tensor, y: Tensor, sim: float, std: float, cov: float) -> Tensor:
    """Transcription of facebookresearch/vicreg main_vicreg.py VICReg.forward (single process)."""
    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = _off_diagonal(cov_x).pow_(2).sum().div(num_features) + _off_diagonal(
        cov_y
    ).pow_(2).sum().div(num_features)
    return sim * repr_loss + std * std_loss + cov * cov_loss


def _vicreg_loop(h1: Tensor, h2: Tensor, sim: float, std: float, cov: float, eps: float) -> float:
    """VICReg by explicit loops over samples and feature pairs."""
    a, b = h1.numpy(), h2.numpy()
    n, d = a.shape
    repr_term = sum((a[i, k] - b[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
    std_term, cov_term = 0.0, 0.0
    for x in (a, b):
        mu = [sum(x[i, k] for i in range(n)) / n for k in range(d)]
        for k in range(d):
            var = sum((x[i, k] - mu[k]) ** 2 for i in range(n)) / (n - 1)
            std_term += 0.5 * max(0.0, 1.0 - math.sqrt(var + eps)) / d
        for k in range(d):
            for m in range(d):
                if k != m:
                    c = sum((x[i, k] - mu[k]) * (x[i, m] - mu[m]) for i in range(n)) / (n - 1)
                    cov_term += c**2 / d
    return sim * repr_term + std * std_term + cov * cov_term


def _barlow_loop(h1: Tensor, h2: Tensor, lambd: float, eps: float) -> float:
    """Barlow Twins by explicit loops (biased batch variance)."""
    n, d = h1.shape

    def standardise(x: np.ndarray) -> list[list[float]]:
        cols = []
        for k in range(d):
            mu = sum(x[i, k] for i in range(n)) / n
            var = sum((x[i, k] - mu) ** 2 for i in range(n)) / n
            cols.append([(x[i, k] - mu) / math.sqrt(var + eps) for i in range(n)])
        return cols

    za, zb = standardise(h1.numpy()), standardise(h2.numpy())
    total = 0.0
    for k in range(d):
        for m in range(d):
            c = sum(za[k][i] * zb[m][i] for i in range(n)) / n
            total += (1.0 - c) ** 2 if k == m else lambd * c**2
    return total


class _OfficialBarlow(nn.Module):
    """facebookresearch/barlowtwins loss head: BatchNorm1d(affine=False) + cross-correlation."""

    def __init__(self, dim: int, lambd: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False).double()
        self.lambd = lambd

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        c = self.bn(z1).T @ self.bn(z2)
        c.div_(z1.shape[0])
        on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
        off_diag = _off_diagonal(c).pow_(2).sum()
        return on_diag + self.lambd * off_diag


class _LinearBarlow(nn.Module):
    """A projector whose forward returns geomhead's barlow_loss of the two projected views."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim).double()

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return L.barlow_loss(self.proj(x1), self.proj(x2))


# ----------------------------------------------------------------------------- constants


def test_name_tables_are_consistent() -> None:
    assert L.LOSS_NAMES == ("simsiam", "byol", "ntxent", "infonce", "vicreg", "barlow")
    assert set(L.USES_PREDICTOR) == set(L.LOSS_NAMES) == set(L.USES_TARGET)
    assert [n for n in L.LOSS_NAMES if L.USES_PREDICTOR[n]] == ["simsiam", "byol"]
    assert [n for n in L.LOSS_NAMES if L.USES_TARGET[n]] == ["byol"]


# ----------------------------------------------------------------------------- cosine family


def test_negative_cosine_hand_values() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0], [2.0, 0.0]], dtype=F64)
    z = torch.tensor([[0.0, 1.0], [1.0, 0.0], [6.0, 8.0], [-5.0, 0.0]], dtype=F64)
    out = L.negative_cosine(p, z)
    assert out.shape == (4,)
    torch.testing.assert_close(out, torch.tensor([0.0, -1 / math.sqrt(2), -1.0, 1.0], dtype=F64))
    torch.testing.assert_close(out, -F.cosine_similarity(p, z, dim=1, eps=1e-8))


def test_simsiam_hand_value() -> None:
    p1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=F64)
    z2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)  # cos 0, 1/√2
    p2 = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=F64)
    z1 = torch.tensor([[3.0, 4.0], [-1.0, 0.0]], dtype=F64)  # cos 1, −1
    expected = 0.5 * (-(0.0 + 1 / math.sqrt(2)) / 2 + -(1.0 - 1.0) / 2)
    assert L.simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected, abs=1e-15)


def test_byol_hand_value() -> None:
    p1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=F64)
    t2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    p2 = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=F64)
    t1 = torch.tensor([[3.0, 4.0], [-1.0, 0.0]], dtype=F64)
    expected = (2.0 + (2.0 - math.sqrt(2))) / 2 + (0.0 + 4.0) / 2
    assert L.byol_loss(p1, p2, t1, t2).item() == pytest.approx(expected, abs=1e-14)


def test_aligned_views_simsiam_minus_one_byol_zero() -> None:
    z1, z2 = _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    scale = torch.rand(5, 1, generator=torch.Generator().manual_seed(3), dtype=F64) + 0.5
    p1, p2 = scale * z2, 2.0 * scale * z1  # same directions as the targets
    assert L.simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(-1.0, abs=1e-14)
    assert L.byol_loss(p1, p2, z1, z2).item() == pytest.approx(0.0, abs=1e-14)
    assert L.simsiam_loss(-p1, -p2, z1, z2).item() == pytest.approx(1.0, abs=1e-14)
    assert L.byol_loss(-p1, -p2, z1, z2).item() == pytest.approx(8.0, abs=1e-13)


def _cos_grad_wrt_p(p: Tensor, z: Tensor) -> Tensor:
    """Closed form ∂cos(p_b, z_b)/∂p_b = (ẑ − cos·p̂) / ‖p‖, per row."""
    pn, zn = p.norm(dim=1, keepdim=True), z.norm(dim=1, keepdim=True)
    p_hat, z_hat = p / pn, z / zn
    cos = (p_hat * z_hat).sum(dim=1, keepdim=True)
    return (z_hat - cos * p_hat) / pn


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_stop_gradient_targets_get_zero_grad_predictions_exact_grad(name: str) -> None:
    p1, p2, z1, z2 = (_randn(4, 3, seed=s) for s in (10, 11, 12, 13))
    fn = L.simsiam_loss if name == "simsiam" else L.byol_loss
    grads = torch.func.grad(fn, argnums=(0, 1, 2, 3))(p1, p2, z1, z2)
    g_p1, g_p2, g_z1, g_z2 = grads
    assert torch.equal(g_z1, torch.zeros_like(z1))
    assert torch.equal(g_z2, torch.zeros_like(z2))
    # simsiam: L = −½ mean cos → ∂/∂p = −1/(2B) ∂cos; byol: L = mean(2 − 2cos) → −2/B ∂cos.
    factor = -0.5 / 4 if name == "simsiam" else -2.0 / 4
    torch.testing.assert_close(g_p1, factor * _cos_grad_wrt_p(p1, z2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_p2, factor * _cos_grad_wrt_p(p2, z1), rtol=1e-12, atol=1e-14)
    assert g_p1.abs().min() > 0


def test_simsiam_z1_reaches_loss_only_through_its_own_prediction() -> None:
    """With p = zA, ∂L/∂z1 comes only from the p1 term; the sg(z1) target term contributes 0."""
    z1, z2 = _randn(4, 3, seed=20), _randn(4, 3, seed=21)
    a = _randn(3, 3, seed=22)

    def full(z1_: Tensor) -> Tensor:
        return L.simsiam_loss(z1_ @ a, z2 @ a, z1_, z2)

    def p1_term_only(z1_: Tensor) -> Tensor:
        return 0.5 * L.negative_cosine(z1_ @ a, z2).mean()

    def without_stop_gradient(z1_: Tensor) -> Tensor:
        nc = L.negative_cosine
        return 0.5 * (nc(z1_ @ a, z2).mean() + nc(z2 @ a, z1_).mean())

    g = torch.func.grad(full)(z1)
    torch.testing.assert_close(g, torch.func.grad(p1_term_only)(z1), rtol=1e-13, atol=1e-15)
    assert (g - torch.func.grad(without_stop_gradient)(z1)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- contrastive


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_ntxent_matches_explicit_loops(tau: float) -> None:
    h1, h2 = _randn(4, 3, seed=30), _randn(4, 3, seed=31)
    assert L.ntxent_loss(h1, h2, temperature=tau).item() == pytest.approx(
        _ntxent_loop(h1, h2, tau), rel=1e-12
    )


def test_ntxent_matches_masked_cross_entropy_and_is_symmetric() -> None:
    h1, h2 = _randn(5, 4, seed=32), _randn(5, 4, seed=33)
    n, tau = 5, 0.5
    u = F.normalize(torch.cat([h1, h2]), dim=1)
    logits = (u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(L.ntxent_loss(h1, h2, tau), expected, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(L.ntxent_loss(h1, h2, tau), L.ntxent_loss(h2, h1, tau))


@pytest.mark.parametrize(("n", "tau"), [(2, 0.5), (3, 0.1), (4, 1.0)])
def test_ntxent_closed_form_orthonormal_identical_views(n: int, tau: float) -> None:
    """Identical orthonormal views: s_pos = 1/τ, the 2N−2 negatives 0 ⇒ log(1 + (2N−2)e^{−1/τ})."""
    h = torch.eye(5, dtype=F64)[:n] * torch.arange(1, n + 1, dtype=F64).unsqueeze(1)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert L.ntxent_loss(h, h.clone(), tau).item() == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_infonce_matches_cross_entropy_and_loops(tau: float) -> None:
    h1, h2 = _randn(4, 3, seed=40), _randn(4, 3, seed=41)
    logits = F.normalize(h1, dim=1) @ F.normalize(h2, dim=1).T / tau
    expected = F.cross_entropy(logits, torch.arange(4))
    torch.testing.assert_close(L.infonce_loss(h1, h2, tau), expected, rtol=1e-12, atol=0.0)
    assert L.infonce_loss(h1, h2, tau).item() == pytest.approx(
        _infonce_loop(h1, h2, tau), rel=1e-12
    )


def test_infonce_one_directional_closed_form_and_grads_through_both_views() -> None:
    b, tau = 3, 0.1
    h = torch.eye(4, dtype=F64)[:b]
    expected = math.log(1 + (b - 1) * math.exp(-1 / tau))
    assert L.infonce_loss(h, h.clone(), tau).item() == pytest.approx(expected, rel=1e-13)
    h1, h2 = _randn(4, 3, seed=42), _randn(4, 3, seed=43)
    assert abs(L.infonce_loss(h1, h2).item() - L.infonce_loss(h2, h1).item()) > 1e-6
    g1, g2 = torch.func.grad(L.infonce_loss, argnums=(0, 1))(h1, h2)
    assert g1.abs().max() > 0 and g2.abs().max() > 0


# ----------------------------------------------------------------------------- VICReg


def test_vicreg_hand_values() -> None:
    h = HADAMARD_COLS  # unbiased var 4/3 > 1 ⇒ std term 0; orthogonal columns ⇒ cov 0
    assert L.vicreg_loss(h, h.clone()).item() == pytest.approx(0.0, abs=1e-15)
    half = 0.5 * h  # unbiased var 1/3 per feature, both views
    std_term = 1.0 - math.sqrt(1 / 3 + 1e-4)  # (mean over features)/2 per view, summed
    assert L.vicreg_loss(half, half + 1.0).item() == pytest.approx(
        25.0 * 1.0 + 25.0 * std_term, rel=1e-14
    )


@pytest.mark.parametrize(
    ("seed", "scale", "coeffs"),
    [(50, 1.0, (25.0, 25.0, 1.0)), (51, 0.3, (25.0, 25.0, 1.0)), (52, 0.8, (1.0, 3.0, 7.0))],
)
def test_vicreg_matches_official_and_loops(
    seed: int, scale: float, coeffs: tuple[float, float, float]
) -> None:
    h1, h2 = _randn(6, 4, seed=seed, scale=scale), _randn(6, 4, seed=seed + 100, scale=scale)
    h2 = h2 + 0.5 * h1  # correlated views, non-trivial covariance
    sim, std, cov = coeffs
    ours = L.vicreg_loss(h1, h2, sim_coeff=sim, std_coeff=std, cov_coeff=cov)
    torch.testing.assert_close(ours, _vicreg_official(h1, h2, sim, std, cov), rtol=1e-12, atol=0.0)
    assert ours.item() == pytest.approx(_vicreg_loop(h1, h2, sim, std, cov, 1e-4), rel=1e-12)


# ----------------------------------------------------------------------------- Barlow Twins


def test_barlow_identity_cross_correlation_gives_zero() -> None:
    z = HADAMARD_COLS  # already standardised (biased var 1, mean 0), ZᵀZ/N = I
    assert L.barlow_loss(z, z.clone(), eps=0.0).item() == pytest.approx(0.0, abs=1e-28)
    # With BatchNorm's eps: C = I/(1 + eps) ⇒ L = d (eps/(1 + eps))².
    eps = 1e-5
    assert L.barlow_loss(z, z.clone()).item() == pytest.approx(
        3 * (eps / (1 + eps)) ** 2, rel=1e-9
    )
    # Standardisation makes the loss invariant to per-feature affine maps of each view.
    assert L.barlow_loss(3.0 * z + 7.0, 0.5 * z - 2.0, eps=0.0).item() == pytest.approx(
        0.0, abs=1e-26
    )


@pytest.mark.parametrize(("seed", "lambd"), [(60, 0.0051), (61, 0.5)])
def test_barlow_matches_loops_and_official_train_mode_batchnorm(seed: int, lambd: float) -> None:
    h1 = _randn(5, 3, seed=seed)
    h2 = 0.7 * h1 + _randn(5, 3, seed=seed + 100, scale=0.5)
    ours = L.barlow_loss(h1, h2, lambd=lambd)
    assert ours.item() == pytest.approx(_barlow_loop(h1, h2, lambd, 1e-5), rel=1e-12)
    official = _OfficialBarlow(3, lambd).train()
    torch.testing.assert_close(ours, official(h1, h2), rtol=1e-12, atol=0.0)
    # The official module in eval mode uses running statistics: a different loss.
    assert abs(official.eval()(h1, h2).item() - ours.item()) > 1e-3


def test_barlow_has_no_train_eval_mode_dependence() -> None:
    torch.manual_seed(0)
    module = _LinearBarlow(3)
    x1, x2 = _randn(6, 3, seed=62), _randn(6, 3, seed=63)
    with torch.no_grad():
        in_train = module.train()(x1, x2)
        in_eval = module.eval()(x1, x2)
        again = module.train()(x1, x2)
    assert torch.equal(in_train, in_eval) and torch.equal(in_train, again)
    with torch.no_grad():
        z1, z2 = module.proj(x1), module.proj(x2)
    official = _OfficialBarlow(3, 0.0051).train()(z1, z2)
    torch.testing.assert_close(in_eval, official, rtol=1e-12, atol=0.0)


# ----------------------------------------------------------------------------- twice differentiable


def _outputs_of_h1(h1: Tensor, h2: Tensor, a: Tensor) -> dict[str, Tensor]:
    """Model-like outputs as functions of h1: linear predictor p = hA, a target t ≠ h."""
    return {"h1": h1, "h2": h2, "p1": h1 @ a, "p2": h2 @ a, "t1": 0.9 * h1, "t2": 1.1 * h2}


def _loss_of_h1(name: str, h2: Tensor, a: Tensor) -> Callable[[Tensor], Tensor]:
    def f(h1: Tensor) -> Tensor:
        return L.ssl_loss(name, _outputs_of_h1(h1, h2, a))

    return f


@pytest.mark.parametrize("name", L.LOSS_NAMES)
def test_hessian_symmetric_and_matches_finite_differences_of_grad(name: str) -> None:
    b, d = 5, 3
    # Scale 0.3 keeps VICReg's per-feature std well below 1 (away from the relu kink).
    h1, h2 = _randn(b, d, seed=70, scale=0.3), _randn(b, d, seed=71, scale=0.3)
    a = _randn(d, d, seed=72)
    f = _loss_of_h1(name, h2, a)
    hess = torch.func.hessian(f)(h1).reshape(b * d, b * d)
    assert torch.isfinite(hess).all() and hess.abs().max() > 1e-3
    torch.testing.assert_close(hess, hess.T, rtol=0.0, atol=1e-12 * hess.abs().max().item())

    grad = torch.func.grad(f)
    delta = 1e-6  # truncation O(δ²) and round-off O(ε/δ) both ≲ 1e-8 here
    columns = []
    for k in range(b * d):
        e = torch.zeros(b * d, dtype=F64)
        e[k] = delta
        e = e.reshape(b, d)
        columns.append(((grad(h1 + e) - grad(h1 - e)) / (2 * delta)).reshape(-1))
    fd = torch.stack(columns, dim=1)
    rel = (torch.linalg.matrix_norm(hess - fd) / torch.linalg.matrix_norm(hess)).item()
    assert rel < 1e-6

    # Forward-over-reverse HVP agrees with the dense Hessian.
    v = _randn(b, d, seed=73)
    _, hvp = torch.func.jvp(grad, (h1,), (v,))
    torch.testing.assert_close(hvp.reshape(-1), hess @ v.reshape(-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", L.LOSS_NAMES)
def test_hessian_in_float32_agrees_with_float64(name: str) -> None:
    b, d = 4, 3
    h1, h2 = _randn(b, d, seed=80, scale=0.3), _randn(b, d, seed=81, scale=0.3)
    a = _randn(d, d, seed=82)
    h64 = torch.func.hessian(_loss_of_h1(name, h2, a))(h1)
    f32 = _loss_of_h1(name, h2.float(), a.float())
    h32 = torch.func.hessian(f32)(h1.float())
    assert h32.dtype == torch.float32
    torch.testing.assert_close(h32.double(), h64, rtol=1e-3, atol=1e-4 * h64.abs().max().item())


# ----------------------------------------------------------------------------- dispatch


def test_ssl_loss_dispatches_to_each_loss_with_its_inputs_and_settings() -> None:
    out = {k: _randn(4, 3, seed=90 + i) for i, k in enumerate(("h1", "h2", "p1", "p2", "t1", "t2"))}
    out["extra"] = _randn(2, 2, seed=99)  # ignored
    h1, h2, p1, p2, t1, t2 = (out[k] for k in ("h1", "h2", "p1", "p2", "t1", "t2"))
    pairs = {
        "simsiam": (L.ssl_loss("simsiam", out), L.simsiam_loss(p1, p2, h1, h2)),
        "byol": (L.ssl_loss("byol", out), L.byol_loss(p1, p2, t1, t2)),
        "ntxent": (L.ssl_loss("ntxent", out, temperature=0.2), L.ntxent_loss(h1, h2, 0.2)),
        "infonce": (L.ssl_loss("infonce", out), L.infonce_loss(h1, h2, 0.1)),
        "vicreg": (
            L.ssl_loss("vicreg", out, sim_coeff=2.0, cov_coeff=3.0),
            L.vicreg_loss(h1, h2, sim_coeff=2.0, cov_coeff=3.0),
        ),
        "barlow": (L.ssl_loss("barlow", out, lambd=0.1), L.barlow_loss(h1, h2, lambd=0.1)),
    }
    assert set(pairs) == set(L.LOSS_NAMES)
    for got, want in pairs.values():
        assert torch.equal(got, want)
    assert not torch.equal(L.ssl_loss("ntxent", out, temperature=0.2), L.ssl_loss("ntxent", out))


def test_ssl_loss_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown loss name 'simclr'.*allowed.*'ntxent'"):
        L.ssl_loss("simclr", {"h1": _randn(2, 2, seed=0), "h2": _randn(2, 2, seed=1)})


def test_ssl_loss_unknown_setting() -> None:
    out = {"h1": _randn(3, 2, seed=0), "h2": _randn(3, 2, seed=1)}
    with pytest.raises(ValueError, match=r"ssl_loss\('vicreg'\).*\['temperature'\].*'sim_coeff'"):
        L.ssl_loss("vicreg", out, temperature=0.1)
    with pytest.raises(ValueError, match=r"unknown setting.*\['tau'\].*allowed: \['temperature'\]"):
        L.ssl_loss("infonce", out, tau=0.1)


def test_ssl_loss_missing_output() -> None:
    out = {"h1": _randn(3, 2, seed=0), "h2": _randn(3, 2, seed=1), "p1": _randn(3, 2, seed=2)}
    pattern = r"ssl_loss\('byol'\).*missing output.*\['p2', 't1', 't2'\]"
    with pytest.raises(ValueError, match=pattern):
        L.ssl_loss("byol", out)
    with pytest.raises(ValueError, match=r"missing output.*\['h2'\]"):
        L.ssl_loss("barlow", {"h1": out["h1"]})
    with pytest.raises(ValueError, match="outputs must be a mapping"):
        L.ssl_loss("barlow", [out["h1"], out["h2"]])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("name", L.LOSS_NAMES)
def test_shape_validation(name: str) -> None:
    good = _randn(4, 3, seed=0)
    keys = ("h1", "h2", "p1", "p2", "t1", "t2")
    with pytest.raises(ValueError, match=r"must be 2-D.*got shape \(12,\)"):
        L.ssl_loss(name, {k: good.reshape(-1) for k in keys})
    mismatched = {k: good for k in keys} | {"h2": _randn(4, 2, seed=1), "t2": _randn(4, 2, seed=1)}
    with pytest.raises(ValueError, match=r"shape \(4, 2\).*same shape"):
        L.ssl_loss(name, mismatched)
    with pytest.raises(ValueError, match="floating dtype"):
        L.ssl_loss(name, {k: torch.ones(4, 3, dtype=torch.int64) for k in keys})
    mixed = {k: good for k in keys} | {"h2": good.float(), "t2": good.float()}
    with pytest.raises(ValueError, match="same dtype"):
        L.ssl_loss(name, mixed)


@pytest.mark.parametrize("name", ["ntxent", "infonce", "vicreg", "barlow"])
def test_batch_statistics_need_two_samples(name: str) -> None:
    one = _randn(1, 3, seed=0)
    with pytest.raises(ValueError, match=r"h1 has batch size 1.*batch >= 2"):
        L.ssl_loss(name, {"h1": one, "h2": one})


def test_single_sample_allowed_for_cosine_losses() -> None:
    p, z = _randn(1, 3, seed=0), _randn(1, 3, seed=1)
    assert L.simsiam_loss(p, p, z, z).shape == ()
    assert L.byol_loss(p, p, z, z).shape == ()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda h: L.ntxent_loss(h, h, temperature=0.0), r"ntxent: temperature .*> 0, got 0\.0"),
        (lambda h: L.infonce_loss(h, h, temperature=-1), r"infonce: temperature .*got -1"),
        (lambda h: L.infonce_loss(h, h, temperature=float("nan")), "temperature"),
        (lambda h: L.infonce_loss(h, h, temperature=True), r"temperature.*got True"),
        (lambda h: L.barlow_loss(h, h, lambd=-0.1), r"barlow: lambd .*>= 0, got -0\.1"),
        (lambda h: L.vicreg_loss(h, h, std_coeff="25"), r"vicreg: std_coeff.*got '25'"),
        (lambda h: L.vicreg_loss(h, h, eps=float("inf")), r"vicreg: eps"),
        (lambda h: L.negative_cosine(h, h, eps=0.0), r"negative_cosine: eps .*> 0"),
        (lambda h: L.simsiam_loss(h, h, h, h.numpy()), r"simsiam: z2 must be a torch.Tensor"),
    ],
)
def test_setting_validation(call: Callable[[Tensor], Tensor], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call(_randn(3, 2, seed=0))
