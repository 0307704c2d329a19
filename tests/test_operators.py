"""Matrix-free curvature operators (geomhead.operators) against dense torch.func references."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import hessian, jacrev

from geomhead.heads import ProjectionHead
from geomhead.hessian import affine_chain, interaction_blocks, linearise, output_jacobian
from geomhead.losses import barlow_loss, ntxent_loss, vicreg_loss
from geomhead.operators import (
    BACKENDS,
    CurvatureOperator,
    FactoredOperator,
    barlow_gram,
    head_function,
    vicreg_gram,
    vicreg_hessian_product,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
N, D, HID, K = 5, 4, 6, 5


def _head(act: str = "swish", bn: bool = True, seed: int = 0) -> ProjectionHead:
    torch.manual_seed(seed)
    head = ProjectionHead(D, HID, K, 2, act, bn, bias=False).double()
    head.train()
    with torch.no_grad():
        head(torch.randn(64, D, dtype=torch.float64))  # non-trivial running statistics
    return head.requires_grad_(False)


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, N, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _vicreg(h: torch.Tensor) -> torch.Tensor:
    return N * vicreg_loss(h[0], h[1])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_mode_batchnorm_operator_matches_dense_hessian(backend: str) -> None:
    head_module = _head()
    head = head_function((head_module,), 0, batchnorm="train")
    x = _x()
    buffers = {name: b.clone() for name, b in head_module.named_buffers()}
    op = CurvatureOperator(head, _vicreg, x, backend=backend)
    dense = hessian(lambda z: _vicreg(head(z)))(x).reshape(op.size, op.size)
    h_eff, g, m, h_l = (op.dense(t) for t in ("H_eff", "G", "M", "H_L"))
    assert _rel(h_eff, dense) <= 1e-10
    jac = jacrev(head)(x).reshape(op.h_size, op.size)
    loss_hessian = hessian(_vicreg)(head(x)).reshape(op.h_size, op.h_size)
    assert _rel(g, jac.T @ loss_hessian @ jac) <= 1e-10
    assert _rel(h_l, loss_hessian) <= 1e-10
    torch.testing.assert_close(h_eff, g + m, rtol=0, atol=1e-12 * float(dense.abs().max()))
    # train-mode BN couples the samples: cross-sample blocks are non-zero
    blocks = h_eff.reshape(2 * N, D, 2 * N, D)
    assert float(blocks[0, :, 1, :].abs().max()) > 1e-8
    assert op.counts["H_eff"] == op.size and op.counts["H_L"] == op.h_size
    for name, b in head_module.named_buffers():
        assert torch.equal(b, buffers[name]), f"running statistics changed: {name}"


def test_backends_agree_on_single_products() -> None:
    head = head_function((_head(),), 0, batchnorm="train")
    x = _x()
    ops = [CurvatureOperator(head, _vicreg, x, backend=b, tangential=True) for b in BACKENDS]
    v = torch.randn(ops[0].size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.randn(ops[0].h_size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for term in ("H_eff", "G", "M"):
        torch.testing.assert_close(ops[0].matvec(term, v), ops[1].matvec(term, v), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ops[0].matvec("H_L", w), ops[1].matvec("H_L", w), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "loss"),
    [("vicreg", _vicreg), ("ntxent", lambda h: N * ntxent_loss(h[0], h[1], 0.5)), ("barlow", lambda h: N * barlow_loss(h[0], h[1]))],
)
def test_factored_operator_equals_autograd_operator_for_row_wise_heads(name: str, loss: object) -> None:
    head_module = _head("gelu").eval()
    x = _x()
    auto = CurvatureOperator(head_function((head_module,), 0, batchnorm="eval"), loss, x)  # type: ignore[arg-type]
    chain = affine_chain((head_module,), 0)
    lin = linearise(chain, x.reshape(2 * N, D))
    h = lin.head_out.reshape(2, N, K)
    rho = torch.func.grad(loss)(h).reshape(2 * N, K)  # type: ignore[arg-type]
    fac = FactoredOperator(output_jacobian(chain, lin), interaction_blocks(chain, lin, rho), loss, h)  # type: ignore[arg-type]
    for term in ("H_eff", "G", "M", "H_L"):
        assert _rel(fac.dense(term), auto.dense(term)) <= 1e-10, term


@pytest.mark.parametrize("both", [False, True])
def test_vicreg_closed_form_loss_hessian_equals_autograd(both: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    h = 0.3 * torch.randn(2, 7, 9, generator=gen, dtype=torch.float64)
    h[:, :, 0] *= 20  # one feature with std above 1: its variance hinge is inactive
    target = h if both else h[0]
    settings = {"sim_coeff": 3.0, "std_coeff": 5.0, "cov_coeff": 2.0, "eps": 1e-3}

    def loss(y: torch.Tensor) -> torch.Tensor:
        return 7 * (vicreg_loss(y[0], y[1], **settings) if both else vicreg_loss(y, h[1], **settings))

    dense = hessian(loss)(target).reshape(target.numel(), -1)
    product = vicreg_hessian_product(target, **settings)
    eye = torch.eye(target.numel(), dtype=torch.float64).reshape(target.numel(), *target.shape)
    assert _rel(product(eye).reshape(target.numel(), -1), dense) <= 1e-12


def test_gram_forms_equal_the_official_losses() -> None:
    gen = torch.Generator().manual_seed(4)
    h1, h2 = torch.randn(6, 10, generator=gen, dtype=torch.float64), torch.randn(6, 10, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(vicreg_gram(h1, h2, 2.0, 3.0, 4.0), vicreg_loss(h1, h2, 2.0, 3.0, 4.0), rtol=1e-13, atol=0)
    torch.testing.assert_close(barlow_gram(h1, h2, 0.01), barlow_loss(h1, h2, 0.01), rtol=1e-13, atol=0)
    for gram, official in ((vicreg_gram, vicreg_loss), (barlow_gram, barlow_loss)):
        a = hessian(lambda y, f=gram: f(y, h2))(h1).reshape(60, 60)
        b = hessian(lambda y, f=official: f(y, h2))(h1).reshape(60, 60)
        assert _rel(a, b) <= 1e-10


def test_head_function_matches_the_module() -> None:
    head = _head("relu")
    x = _x()[0]
    train_out = head_function((head,), 0, batchnorm="train")(x)
    eval_out = head_function((head,), 0, batchnorm="eval")(x)
    copy = ProjectionHead(D, HID, K, 2, "relu", True, bias=False).double()
    copy.load_state_dict(head.state_dict())
    torch.testing.assert_close(eval_out, copy.eval()(x))
    torch.testing.assert_close(head_function((head,), 0, 1, batchnorm="eval")(x), copy.eval().layer_inputs(x)[1])
    torch.testing.assert_close(train_out, copy.train()(x))  # (updates the copy's running statistics, not head's)


def test_bad_input_is_rejected() -> None:
    head = head_function((_head(),), 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        CurvatureOperator(head, _vicreg, _x(), backend="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        CurvatureOperator(head, _vicreg, _x().fill_(math.nan))
    op = CurvatureOperator(head, _vicreg, _x())
    with pytest.raises(ValueError, match=r"v must have shape \(40,\)"):
        op.matvec("H_eff", torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="term must be one of"):
        op.matvec("Q", torch.zeros(40, dtype=torch.float64))
    with pytest.raises(ValueError, match="loss must return a finite scalar"):
        CurvatureOperator(head, lambda h: h.sum() * math.nan, _x())
    with pytest.raises(ValueError, match="start must be an int"):
        head_function((_head(),), 2)
    with pytest.raises(ValueError, match="batchnorm must be 'train' or 'eval'"):
        head_function((_head(),), 0, batchnorm="frozen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"h must have shape \(n, d\) or \(2, n, d\)"):
        vicreg_hessian_product(torch.zeros(3, 2, 4, 5))
