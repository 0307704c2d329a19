"""Degeneracy index: jvp tangents vs finite differences, exact invariance gives 0, the random-head control gives 1."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from geomhead import augment
from geomhead.backbones import MLPBackbone
from geomhead.degeneracy import (
    augmentation_tangents,
    degeneracy_index,
    direction_reference,
    isotropic_reference,
    principal_directions,
    rayleigh_quotient,
    sampled_reference,
    spectrum_position,
)
from geomhead.pullback import batched_jacobian, metric_spectrum

NAMES = ("angle", "tx", "ty", "log_scale", "brightness", "contrast", "noise")


def _images(n: int = 4, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 10, 10, generator=gen, dtype=torch.float64), 3, stride=1)
    return smooth  # (n, 1, 8, 8), smooth-ish like digits


def _noise(x: Tensor) -> augment.AugmentNoise:
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    return augment.AugmentNoise(flip=torch.ones(len(x), dtype=torch.float64), eps=eps)


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return MLPBackbone((1, 8, 8), z_dim=12, width=24).double().eval().requires_grad_(False)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_tangent_equals_central_finite_difference(name: str) -> None:
    f, x = _backbone(), _images()
    noise = _noise(x)
    v = augmentation_tangents(f, x, [name], noise=noise, interpolation="bicubic")[name]
    # bicubic resampling is C1 but not C2 at the identity grid: the central difference is O(step) there
    step = 1e-7

    def at(value: float) -> Tensor:
        params = augment.identity_params(len(x), dtype=torch.float64)
        params[name] = torch.full((len(x),), value, dtype=torch.float64)
        return f(augment.apply(x, params, noise, interpolation="bicubic"))

    fd = (at(step) - at(-step)) / (2 * step)
    assert float(v.norm()) > 0
    torch.testing.assert_close(v, fd, rtol=1e-5, atol=1e-6 * float(fd.abs().max()))


class _CentredDirection(nn.Module):
    """h(z) = W (z - mean z)/||z - mean z||: exactly invariant to brightness and contrast of the image."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3)), requires_grad=False)

    def forward(self, z: Tensor) -> Tensor:
        c = z - z.mean(dim=1, keepdim=True)
        return (c / torch.linalg.vector_norm(c, dim=1, keepdim=True)) @ self.weight.T


def test_exactly_invariant_head_has_zero_degeneracy_along_its_invariance() -> None:
    x = _images(6)
    encode = nn.Flatten()  # z = the image itself, so t_xi acts linearly on z
    head = _CentredDirection(64, 20)
    z = encode(x)
    tangents = augmentation_tangents(encode, x, ["brightness", "contrast", "angle", "tx"], interpolation="bicubic")
    jac = batched_jacobian(head, z)
    ref = isotropic_reference(jac)
    spec = metric_spectrum(jac)
    for name in ("brightness", "contrast"):
        d = degeneracy_index(jac, tangents[name], ref)
        assert float(d.abs().max()) < 1e-12, name
        assert (spectrum_position(spec.eigenvalues, rayleigh_quotient(jac, tangents[name])) == 0).all()
    for name in ("angle", "tx"):
        assert float(degeneracy_index(jac, tangents[name], ref).min()) > 1e-3, name


def test_untrained_random_head_control_is_one_in_expectation() -> None:
    """Random Gaussian heads, a fixed direction: E[q(v)] = k = E[tr G]/d, so the index averages to 1."""
    gen = torch.Generator().manual_seed(11)
    d, k, heads = 16, 32, 400
    v = torch.randn(1, d, generator=gen, dtype=torch.float64).expand(heads, d)
    jac = torch.randn(heads, k, d, generator=gen, dtype=torch.float64)
    index = degeneracy_index(jac, v, isotropic_reference(jac))
    # the index is about chi2_k/k: sd sqrt(2/k) = 0.25, standard error over 400 heads 0.0125
    assert abs(float(index.mean()) - 1.0) < 0.05
    trained_like = jac.clone()
    trained_like[:, :, 0] = 0.0  # kill one input direction: v along it is degenerate
    e0 = torch.zeros(heads, d, dtype=torch.float64)
    e0[:, 0] = 1.0
    assert float(degeneracy_index(trained_like, e0, isotropic_reference(trained_like)).abs().max()) == 0.0


def test_random_reference_is_the_mean_over_random_directions() -> None:
    jac = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    jac = jac * torch.tensor([5.0, 1.0, 0.5, 0.1, 0.0], dtype=torch.float64)  # anisotropic metric
    exact = isotropic_reference(jac)
    sampled = sampled_reference(jac, 20000, torch.Generator().manual_seed(5))
    torch.testing.assert_close(sampled, exact, rtol=0.03, atol=0)


def test_principal_directions_and_their_reference() -> None:
    gen = torch.Generator().manual_seed(6)
    reps = torch.randn(500, 4, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 2.0], dtype=torch.float64)
    dirs = principal_directions(reps, 2)
    assert torch.allclose(dirs.abs(), torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64), atol=0.05)
    jac = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)).expand(2, 4, 4)
    exact = torch.eye(4, dtype=torch.float64)[[1, 3]]
    torch.testing.assert_close(direction_reference(jac, exact), torch.full((2,), (4.0 + 16.0) / 2, dtype=torch.float64))


def test_spectrum_position_of_eigenvectors() -> None:
    lam = torch.tensor([9.0, 4.0, 1.0, 0.0], dtype=torch.float64)
    jac = torch.diag(lam.sqrt()).expand(4, 4, 4)
    v = torch.eye(4, dtype=torch.float64)
    q = rayleigh_quotient(jac, v)
    torch.testing.assert_close(q, lam)
    pos = spectrum_position(metric_spectrum(jac).eigenvalues, q)
    torch.testing.assert_close(pos, torch.tensor([0.75, 0.5, 0.25, 0.0], dtype=torch.float64))


def test_zero_tangent_gives_nan_and_bad_inputs_raise() -> None:
    jac = torch.ones(2, 3, 4, dtype=torch.float64)
    q = rayleigh_quotient(jac, torch.zeros(2, 4, dtype=torch.float64))
    assert torch.isnan(q).all()
    assert torch.isnan(spectrum_position(torch.ones(2, 4, dtype=torch.float64), q)).all()
    with pytest.raises(ValueError, match="v must have shape"):
        rayleigh_quotient(jac, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="names must be distinct entries"):
        augmentation_tangents(nn.Flatten(), _images(1), ["angle", "angle"])
    with pytest.raises(ValueError, match="names must be distinct entries"):
        augmentation_tangents(nn.Flatten(), _images(1), ["spin"])
    with pytest.raises(ValueError, match="m must be an int in"):
        principal_directions(torch.zeros(3, 5, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="reference must be a tensor of shape"):
        degeneracy_index(jac, torch.ones(2, 4, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n must be a positive int"):
        sampled_reference(jac, 0, torch.Generator())
