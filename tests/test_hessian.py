"""Closed-form per-sample effective Hessians (geomhead.hessian) against dense autograd, finite differences and
the closed-form spectra of PAPER §8.1."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import hessian, jacrev, vmap

from geomhead.heads import ProjectionHead
from geomhead.hessian import (
    AffineChain,
    activation_derivatives,
    affine_chain,
    cosine_derivatives,
    effective_hessian_blocks,
    infonce_anchor_derivatives,
    mse_derivatives,
    negative_count,
)
from geomhead.losses import infonce_loss, negative_cosine

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
D, HID, K, PH = 5, 9, 7, 4


def _randomise_bn(*heads: ProjectionHead) -> None:
    gen = torch.Generator().manual_seed(1)
    for head in heads:
        for module in head.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen, dtype=torch.float64))
                module.running_var.copy_(torch.rand(module.num_features, generator=gen, dtype=torch.float64) + 0.5)
                module.weight.data.copy_(torch.randn(module.num_features, generator=gen, dtype=torch.float64))
                module.bias.data.copy_(torch.randn(module.num_features, generator=gen, dtype=torch.float64))


def _heads(act: str, bn: bool = False, bias: bool = False, depth: int = 2, seed: int = 3) -> tuple[ProjectionHead, ProjectionHead]:
    torch.manual_seed(seed)
    proj = ProjectionHead(D, HID, K, depth, act, bn, bias).double().eval()
    pred = ProjectionHead(K, PH, K, 2, act, bn, bias).double().eval()
    _randomise_bn(proj, pred)
    return proj.requires_grad_(False), pred.requires_grad_(False)


def _data(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=gen, dtype=torch.float64), torch.randn(n, K, generator=gen, dtype=torch.float64)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "swish"])
@pytest.mark.parametrize(("bn", "bias", "depth", "start"), [(False, False, 2, 0), (True, True, 2, 1), (False, True, 3, 2)])
def test_simsiam_chain_matches_dense_torch_func_hessian(act: str, bn: bool, bias: bool, depth: int, start: int) -> None:
    proj, pred = _heads(act, bn, bias, depth)
    z, c = _data()
    x = proj.layer_inputs(z)[start]

    def loss(xb: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
        return 0.5 * negative_cosine(pred(proj.forward_from(xb[None], start)), cb[None]).sum()

    dense = vmap(hessian(loss))(x, c)
    blocks = effective_hessian_blocks(affine_chain((proj, pred), start), x, lambda h: cosine_derivatives(h, c, 0.5))
    assert _rel(blocks.full("H_eff"), dense) <= 1e-10
    torch.testing.assert_close(blocks.full("H_eff"), blocks.full("G") + blocks.full("M"), rtol=0, atol=1e-14 * float(dense.abs().max()))
    # G = Jᵀ H_L J from autograd's Jacobian and loss Hessian.
    jac = vmap(jacrev(lambda xb: pred(proj.forward_from(xb[None], start))[0]))(x)
    h_l = vmap(hessian(lambda hb, cb: 0.5 * negative_cosine(hb[None], cb[None]).sum()))(blocks.head_out, c)
    assert _rel(blocks.full("G"), jac.mT @ h_l @ jac) <= 1e-10
    torch.testing.assert_close(blocks.loss.dense(), h_l, rtol=0, atol=1e-12 * float(h_l.abs().max()))


def test_matches_central_finite_differences_of_the_gradient() -> None:
    proj, pred = _heads("swish", bn=True, bias=True)
    z, c = _data(n=1)

    def loss(zz: torch.Tensor) -> torch.Tensor:
        return 0.5 * negative_cosine(pred(proj(zz)), c).sum()

    grad = torch.func.grad(loss)
    eps = 1e-5
    cols = []
    for i in range(D):
        e = torch.zeros_like(z)
        e[0, i] = eps
        cols.append(((grad(z + e) - grad(z - e)) / (2 * eps))[0])
    fd = torch.stack(cols, dim=1)
    h = effective_hessian_blocks(affine_chain((proj, pred)), z, lambda h: cosine_derivatives(h, c, 0.5)).full("H_eff")[0]
    assert _rel(h, fd) <= 1e-7


@pytest.mark.parametrize("act", ["linear", "relu"])
def test_interaction_term_vanishes_for_linear_and_relu_heads(act: str) -> None:
    proj, pred = _heads(act)
    z, c = _data()
    blocks = effective_hessian_blocks(affine_chain((proj, pred)), z, lambda h: cosine_derivatives(h, c, 0.5))
    assert not blocks.M.any()
    dense = vmap(hessian(lambda zb, cb: 0.5 * negative_cosine(pred(proj(zb[None])), cb[None]).sum()))(z, c)
    # M from autograd: H − G with G built independently.
    m_auto = dense - blocks.full("G")
    assert float(torch.linalg.matrix_norm(m_auto).max() / torch.linalg.matrix_norm(dense).max()) <= 1e-12


@pytest.mark.parametrize("act", ["gelu", "swish"])
def test_interaction_term_is_indefinite_for_smooth_heads(act: str) -> None:
    proj, pred = _heads(act)
    z, c = _data()
    blocks = effective_hessian_blocks(affine_chain((proj, pred)), z, lambda h: mse_derivatives(h, c))
    ratio = blocks.frobenius("M") / blocks.frobenius("H_eff")
    assert float(ratio.min()) > 1e-3
    eig = blocks.spectra("M")
    assert bool((eig[:, 0] < 0).all()) and bool((eig[:, -1] > 0).all())
    # Under the MSE premise (H_L = I) G = JᵀJ is PSD: any negative curvature of H_eff comes from M.
    assert float(blocks.spectra("G").min()) >= -1e-12 * float(blocks.spectra("G").abs().max())


def test_cosine_loss_hessian_has_the_closed_form_spectrum() -> None:
    gen = torch.Generator().manual_seed(3)
    h, c = torch.randn(3, K, generator=gen, dtype=torch.float64), torch.randn(3, K, generator=gen, dtype=torch.float64)
    for weight in (0.5, 2.0):
        deriv = cosine_derivatives(h, c, weight)
        dense = vmap(hessian(lambda hb, cb, w=weight: -w * torch.nn.functional.cosine_similarity(hb, cb, dim=0)))(h, c)
        torch.testing.assert_close(deriv.dense(), dense, rtol=0, atol=1e-12 * float(dense.abs().max()))
        r = h.norm(dim=1)
        cos = torch.nn.functional.cosine_similarity(h, c, dim=1)
        sin2 = 1 - cos**2
        root = torch.sqrt(cos**2 + 4 * sin2)
        expected = torch.cat(
            [
                (weight / r**2 * (cos - root) / 2)[:, None],
                (weight * cos / r**2)[:, None].expand(3, K - 2),
                (weight / r**2 * (cos + root) / 2)[:, None],
            ],
            dim=1,
        )
        expected = torch.sort(expected, dim=1).values
        torch.testing.assert_close(torch.linalg.eigvalsh(dense), expected, rtol=0, atol=1e-12 * float(expected.abs().max()))
        torch.testing.assert_close(deriv.spectrum(), expected, rtol=0, atol=1e-12 * float(expected.abs().max()))
        # Not aligned (sin θ ≠ 0): exactly one negative eigenvalue beyond the cosθ block.
        assert bool((expected[:, 0] < 0).all())
    # Aligned: no negative eigenvalue.
    aligned = cosine_derivatives(h, 3.0 * h, 0.5).spectrum()
    assert int(negative_count(aligned, 1e-10).sum()) == 0


def test_tangential_and_mse_readings() -> None:
    gen = torch.Generator().manual_seed(4)
    h, c = torch.randn(3, K, generator=gen, dtype=torch.float64), torch.randn(3, K, generator=gen, dtype=torch.float64)
    deriv = cosine_derivatives(h, c, 0.5)
    u = h / h.norm(dim=1, keepdim=True)
    p = torch.eye(K, dtype=torch.float64) - u[:, :, None] * u[:, None, :]
    tangential = deriv.tangential(h)
    torch.testing.assert_close(tangential.dense(), p @ deriv.dense() @ p, rtol=0, atol=1e-13)
    cos = (u * c / c.norm(dim=1, keepdim=True)).sum(dim=1)
    torch.testing.assert_close(tangential.dense(), (0.5 * cos / h.norm(dim=1) ** 2)[:, None, None] * p, rtol=0, atol=1e-13)
    torch.testing.assert_close(tangential.spectrum(), torch.linalg.eigvalsh(tangential.dense()), rtol=0, atol=1e-13)
    mse = mse_derivatives(h, c)
    torch.testing.assert_close(mse.dense(), torch.eye(K, dtype=torch.float64).expand(3, K, K))
    torch.testing.assert_close(mse.rho, h - c)


def test_infonce_anchor_derivatives_match_autograd() -> None:
    gen = torch.Generator().manual_seed(5)
    h1, h2 = torch.randn(4, K, generator=gen, dtype=torch.float64), torch.randn(4, K, generator=gen, dtype=torch.float64)
    deriv = infonce_anchor_derivatives(h1, h2, 0.2)

    def total(h: torch.Tensor) -> torch.Tensor:
        return 4 * infonce_loss(h, h2, 0.2)

    dense = hessian(total)(h1)
    blocks = torch.stack([dense[b, :, b, :] for b in range(4)])
    torch.testing.assert_close(deriv.dense(), blocks, rtol=0, atol=1e-12 * float(blocks.abs().max()))
    torch.testing.assert_close(deriv.rho, torch.func.grad(total)(h1), rtol=0, atol=1e-13)
    torch.testing.assert_close(deriv.value.mean(), infonce_loss(h1, h2, 0.2), rtol=0, atol=1e-13)
    torch.testing.assert_close(deriv.spectrum(), torch.linalg.eigvalsh(blocks), rtol=0, atol=1e-12 * float(blocks.abs().max()))


def test_bottleneck_reduction_pads_exact_zeros() -> None:
    proj, pred = _heads("gelu")  # from block1 (width 9) the predictor's bottleneck has width 4
    z, c = _data()
    x = proj.layer_inputs(z)[1]
    blocks = effective_hessian_blocks(affine_chain((proj, pred), 1), x, lambda h: cosine_derivatives(h, c, 0.5))
    assert blocks.basis is not None and blocks.H_eff.shape[-1] < HID
    full = blocks.full("H_eff")
    torch.testing.assert_close(blocks.spectra("H_eff"), torch.linalg.eigvalsh(full), rtol=0, atol=1e-13 * float(full.abs().max()))
    assert blocks.spectra("H_eff").shape == (4, HID)


def test_activation_second_derivatives() -> None:
    u = torch.linspace(-4, 4, 41, dtype=torch.float64)
    for name, module in (("gelu", nn.GELU()), ("swish", nn.SiLU()), ("relu", nn.ReLU())):
        value, d1, d2 = activation_derivatives(name, u)
        torch.testing.assert_close(value, module(u))
        torch.testing.assert_close(d1, vmap(torch.func.grad(lambda x, f=module: f(x)))(u))
        expected = vmap(torch.func.grad(torch.func.grad(lambda x, f=module: f(x))))(u)
        if d2 is None:
            assert not expected.any()
        else:
            torch.testing.assert_close(d2, expected)


def test_chain_forward_equals_heads() -> None:
    proj, pred = _heads("swish", bn=True, bias=True)
    z, _ = _data()
    chain = affine_chain((proj, pred))
    assert isinstance(chain, AffineChain) and chain.activations == ("swish", "swish")
    torch.testing.assert_close(chain.forward(z), pred(proj(z)))
    assert chain.in_dim == D and chain.out_dim == K


def test_negative_count_uses_a_relative_floor() -> None:
    eig = torch.tensor([[-1e-17, 1e-17, 0.5, 1.0], [-0.2, -1e-12, 0.3, 1.0]], dtype=torch.float64)
    assert negative_count(eig, 1e-10).tolist() == [0, 1]
    assert negative_count(eig, 0.0).tolist() == [1, 2]
    with pytest.raises(ValueError, match="floor must be a finite number >= 0"):
        negative_count(eig, -1.0)


def test_bad_input_is_rejected_with_a_clear_error() -> None:
    proj, pred = _heads("swish")
    chain = affine_chain((proj, pred))
    z, c = _data()
    loss = lambda h: cosine_derivatives(h, c, 0.5)  # noqa: E731
    with pytest.raises(ValueError, match=r"x must have shape \(n, 5\)"):
        effective_hessian_blocks(chain, z[:, :3], loss)
    with pytest.raises(ValueError, match="non-finite"):
        effective_hessian_blocks(chain, z.clone().fill_(math.nan), loss)
    with pytest.raises(ValueError, match="dtype"):
        effective_hessian_blocks(chain, z.float(), loss)
    with pytest.raises(ValueError, match="target has shape|h has shape"):
        cosine_derivatives(c, c[:2])
    with pytest.raises(ValueError, match="norm"):
        cosine_derivatives(torch.zeros_like(c), c)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        infonce_anchor_derivatives(c, c, 0.0)
    with pytest.raises(ValueError, match="start must be an int"):
        affine_chain((proj, pred), 5)
    with pytest.raises(ValueError, match="do not connect"):
        affine_chain((pred, proj))
    with pytest.raises(ValueError, match="activation must be one of"):
        activation_derivatives("tanh", c)
