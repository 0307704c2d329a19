"""Tests for geomhead.heads: structure, re-entry at any layer, linear-algebra identities, init and torch.func."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geomhead.heads import (
    ACTIVATIONS,
    ProjectionHead,
    activation,
    active_fraction,
    build_predictor,
    build_projector,
    pseudo_collapse_,
)

IN, HID, OUT = 5, 7, 4
# torch.func.hessian uses forward-mode AD, whose first use imports jvp decompositions that call the deprecated
# torch.jit.script (a torch-internal FutureWarning that pytest's filterwarnings=error would turn into a failure).
JIT_SCRIPT_WARNING = "ignore:`torch.jit.script` is deprecated:FutureWarning"
GRID = list(itertools.product((1, 2, 3), ACTIVATIONS, (False, True), (False, True)))


def _z(batch: int = 6, dim: int = IN, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _head(depth: int, act: str, bn: bool, bias: bool, seed: int = 0) -> ProjectionHead:
    torch.manual_seed(seed)
    return ProjectionHead(IN, HID, OUT, depth, act, bn, bias).double()


def test_activation_modules() -> None:
    assert isinstance(activation("linear"), nn.Identity)
    relu = activation("relu")
    assert isinstance(relu, nn.ReLU) and not relu.inplace
    gelu = activation("gelu")
    assert isinstance(gelu, nn.GELU) and gelu.approximate == "none"
    silu = activation("swish")
    assert isinstance(silu, nn.SiLU) and not silu.inplace
    x = _z()
    torch.testing.assert_close(gelu(x), 0.5 * x * (1 + torch.erf(x / 2**0.5)), rtol=0, atol=1e-14)
    torch.testing.assert_close(silu(x), x * torch.sigmoid(x), rtol=0, atol=1e-14)


def test_activation_unknown_names_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"activation must be one of .*'linear'.*'swish'.*'tanh'"):
        activation("tanh")


@pytest.mark.parametrize(("depth", "act", "bn", "bias"), GRID)
def test_structure(depth: int, act: str, bn: bool, bias: bool) -> None:
    head = _head(depth, act, bn, bias)
    widths = [IN] + [HID] * (depth - 1) + [OUT]
    assert len(head.blocks) == depth
    assert len(head.linears) == depth
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == depth
    assert [(m.in_features, m.out_features) for m in head.linears] == list(itertools.pairwise(widths))
    assert all((m.bias is not None) == bias for m in head.linears)
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == (depth if bn else 0)
    for i, block in enumerate(head.blocks):
        assert block[0] is head.linears[i]
        assert any(isinstance(m, nn.BatchNorm1d) for m in block) == bn
        n_act = sum(isinstance(m, (nn.ReLU, nn.GELU, nn.SiLU, nn.Identity)) for m in block)
        assert n_act == (1 if i < depth - 1 else 0)
    assert head.layer_names == ["z"] + [f"block{k}" for k in range(1, depth)]
    assert head(_z()).shape == (6, OUT)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("depth", "act", "bn", "bias"), GRID)
def test_forward_from_layer_inputs(depth: int, act: str, bn: bool, bias: bool, train: bool) -> None:
    head = _head(depth, act, bn, bias).train(train)
    z = _z()
    inputs = head.layer_inputs(z)
    assert len(inputs) == depth == len(head.layer_names)
    assert inputs[0] is z
    out = head(z)
    for k, x in enumerate(inputs):
        torch.testing.assert_close(head.forward_from(x, k), out, rtol=0, atol=1e-12)
    torch.testing.assert_close(head.forward_from(out, depth), out, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_linear_head_is_product_of_weights(depth: int) -> None:
    head = _head(depth, "linear", bn=False, bias=False)
    product = torch.eye(IN, dtype=torch.float64)
    for lin in head.linears:
        product = lin.weight @ product
    z = _z()
    torch.testing.assert_close(head(z), z @ product.T, rtol=0, atol=1e-12)


def test_depth2_relu_bn_matches_explicit_formula() -> None:
    head = _head(2, "relu", bn=True, bias=True).train()
    z = _z(batch=9)
    w0, w1 = head.linears
    bn0, bn1 = head.blocks[0][1], head.blocks[1][1]

    def bn(x: torch.Tensor, m: nn.BatchNorm1d) -> torch.Tensor:
        mean, var = x.mean(0), x.var(0, unbiased=False)
        return (x - mean) / torch.sqrt(var + m.eps) * m.weight + m.bias

    hidden = torch.relu(bn(z @ w0.weight.T + w0.bias, bn0))
    expected = bn(hidden @ w1.weight.T + w1.bias, bn1)
    torch.testing.assert_close(head(z), expected, rtol=0, atol=1e-12)


def test_linear_activation_honours_batchnorm() -> None:
    head = _head(2, "linear", bn=True, bias=False).train()
    out = head(_z(batch=16))
    torch.testing.assert_close(out.mean(0), torch.zeros(OUT, dtype=torch.float64), rtol=0, atol=1e-12)


def test_builders() -> None:
    torch.manual_seed(0)
    proj = build_projector(IN, HID, OUT, 3, "gelu", True, False)
    torch.manual_seed(0)
    same = ProjectionHead(IN, HID, OUT, 3, "gelu", True, False)
    assert all(torch.equal(a, b) for a, b in zip(proj.state_dict().values(), same.state_dict().values(), strict=True))
    pred = build_predictor(OUT, 3, "relu", True, True)
    assert pred.depth == 2 and pred.activation == "relu" and pred.batchnorm and pred.bias
    assert [(m.in_features, m.out_features) for m in pred.linears] == [(OUT, 3), (3, OUT)]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_same_seed_same_initial_weights(depth: int) -> None:
    a = _head(depth, "swish", True, True, seed=11)
    b = _head(depth, "swish", True, True, seed=11)
    c = _head(depth, "swish", True, True, seed=12)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.linears[0].weight, c.linears[0].weight)


def test_pseudo_collapse_scales_weights_only() -> None:
    torch.manual_seed(0)
    projector = ProjectionHead(IN, HID, OUT, 3, "relu", batchnorm=True, bias=True)
    predictor = ProjectionHead(OUT, HID, OUT, 2, "relu", batchnorm=True, bias=True)
    model = nn.ModuleDict({"projector": projector, "predictor": predictor})
    before = copy.deepcopy(model.state_dict())
    rng_before = torch.get_rng_state()
    pseudo_collapse_(projector, scale=0.25)
    assert torch.equal(torch.get_rng_state(), rng_before)
    after = model.state_dict()
    for key, value in after.items():
        if key.startswith("projector.") and key.endswith(".0.weight"):
            assert torch.equal(value, before[key] * 0.25), key
        else:
            assert torch.equal(value, before[key]), key
    assert all(p.requires_grad and p.is_leaf for p in projector.parameters())


def test_pseudo_collapse_default_scale_and_arbitrary_modules() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2, bias=False)))
    w = [seq[0].weight.detach().clone(), seq[2][0].weight.detach().clone()]
    pseudo_collapse_(seq)
    assert torch.equal(seq[0].weight, w[0] * 0.1)
    assert torch.equal(seq[2][0].weight, w[1] * 0.1)


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_pseudo_collapse_rejects_bad_scale(scale: object) -> None:
    head = _head(2, "relu", False, False)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        pseudo_collapse_(head, scale=scale)  # type: ignore[arg-type]


def test_pseudo_collapse_rejects_module_without_linear() -> None:
    with pytest.raises(ValueError, match="nn.Linear"):
        pseudo_collapse_(nn.ReLU())


def test_active_fraction_relu() -> None:
    head = _head(3, "relu", bn=False, bias=False)
    z = _z(batch=32)
    inputs = head.layer_inputs(z)
    expected = torch.stack([(x > 0).double().mean() for x in inputs[1:]])
    frac = active_fraction(head, z)
    assert frac.shape == (2,) and frac.dtype == torch.float64
    torch.testing.assert_close(frac, expected, rtol=0, atol=0)
    assert bool(((frac > 0) & (frac < 1)).all())
    # With W_0 = 0 and no bias every first-layer pre-activation is 0, so no unit of that layer is active.
    with torch.no_grad():
        head.linears[0].weight.zero_()
    torch.testing.assert_close(active_fraction(head, z)[0], torch.tensor(0.0, dtype=torch.float64))


def test_active_fraction_smooth_depth1_and_bn_side_effects() -> None:
    z = _z(batch=16)
    assert active_fraction(_head(1, "relu", False, False), z).shape == (0,)
    torch.testing.assert_close(
        active_fraction(_head(3, "swish", False, True), z), torch.ones(2, dtype=torch.float64), rtol=0, atol=0
    )
    head = _head(2, "relu", bn=True, bias=False).train()
    state = copy.deepcopy(head.state_dict())
    frac = active_fraction(head, z)
    assert not frac.requires_grad
    for key, value in head.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.filterwarnings(JIT_SCRIPT_WARNING)
@pytest.mark.parametrize(("depth", "act", "bias"), list(itertools.product((1, 2, 3), ACTIVATIONS, (False, True))))
def test_torch_func_eval_mode(depth: int, act: str, bias: bool) -> None:
    head = _head(depth, act, bn=True, bias=bias)
    with torch.no_grad():  # non-trivial running statistics
        head.train()(_z(batch=32, seed=5) * 2 + 1)
    head.eval()
    z1 = _z(batch=1, seed=1)[0]

    def g(z: torch.Tensor) -> torch.Tensor:
        return head(z.unsqueeze(0)).squeeze(0)

    jac = torch.func.jacrev(g)(z1)
    assert jac.shape == (OUT, IN)
    ref = torch.autograd.functional.jacobian(g, z1)
    torch.testing.assert_close(jac, ref, rtol=0, atol=1e-12)

    def loss(z: torch.Tensor) -> torch.Tensor:
        return g(z).square().sum()

    hess = torch.func.hessian(loss)(z1)
    torch.testing.assert_close(hess, torch.autograd.functional.hessian(loss, z1), rtol=0, atol=1e-10)
    torch.testing.assert_close(hess, hess.T, rtol=0, atol=1e-10)
    if act == "linear":  # affine head in eval mode: loss Hessian = 2 JᵀJ
        torch.testing.assert_close(hess, 2 * jac.T @ jac, rtol=0, atol=1e-10)


@pytest.mark.filterwarnings(JIT_SCRIPT_WARNING)
@pytest.mark.parametrize(("depth", "act"), list(itertools.product((1, 2, 3), ACTIVATIONS)))
def test_torch_func_train_mode_batchnorm(depth: int, act: str) -> None:
    head = _head(depth, act, bn=True, bias=False).train()
    torch.func.replace_all_batch_norm_modules_(head)
    z = _z(batch=4, dim=IN, seed=2)

    def loss(zb: torch.Tensor) -> torch.Tensor:
        return F.softplus(head(zb)).sum()

    hess = torch.func.hessian(loss)(z)
    assert hess.shape == (4, IN, 4, IN)
    ref = torch.autograd.functional.hessian(loss, z)
    torch.testing.assert_close(hess, ref, rtol=0, atol=1e-9)
    flat = hess.reshape(4 * IN, 4 * IN)
    torch.testing.assert_close(flat, flat.T, rtol=0, atol=1e-9)
    jac = torch.func.jacrev(head)(z)
    assert jac.shape == (4, OUT, 4, IN)
    # Batch statistics couple samples: output of sample 0 depends on the input of sample 1.
    assert jac[0, :, 1, :].abs().max() > 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 0}, r"depth must be one of \(1, 2, 3\), got 0"),
        ({"depth": 4}, r"depth must be one of \(1, 2, 3\), got 4"),
        ({"depth": 2.0}, "depth must be one of"),
        ({"activation": "tanh"}, r"activation must be one of \('linear', 'relu', 'gelu', 'swish'\), got 'tanh'"),
        ({"in_dim": 0}, "in_dim must be a positive int"),
        ({"hidden_dim": -3}, "hidden_dim must be a positive int"),
        ({"out_dim": 1.5}, "out_dim must be a positive int"),
        ({"batchnorm": 1}, "batchnorm must be a bool"),
        ({"bias": None}, "bias must be a bool"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"in_dim": IN, "hidden_dim": HID, "out_dim": OUT} | kwargs
    with pytest.raises(ValueError, match=match):
        ProjectionHead(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", [-1, 4, 1.0])
def test_forward_from_bad_start(start: object) -> None:
    head = _head(3, "relu", False, False)
    with pytest.raises(ValueError, match=r"start must be an int in \[0, 3\]"):
        head.forward_from(_z(), start)  # type: ignore[arg-type]
