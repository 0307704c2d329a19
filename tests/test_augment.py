"""Tests for geomhead.augment: exact identity, formulas, determinism, jvp tangents vs finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geomhead import augment as A
from geomhead.augment import PARAM_NAMES, AugmentConfig, AugmentNoise, apply, apply_native, sample_params

F64 = torch.float64
GEOMETRIC = ("angle", "tx", "ty", "log_scale", "log_aspect")

# torch's first forward-mode call (when a test calls torch.func.jvp directly) warns about torch.jit.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def _images(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _params(n: int, **values: float) -> dict[str, torch.Tensor]:
    p = A.identity_params(n, dtype=F64)
    for k, v in values.items():
        p[k] = torch.full((n,), v, dtype=F64)
    return p


def _generic(shape: tuple[int, int, int, int], seed: int = 1) -> tuple[dict[str, torch.Tensor], AugmentNoise]:
    """A random non-identity base point (no sample point on a pixel centre, almost surely)."""
    cfg = AugmentConfig(
        rotation_deg=20.0,
        translate=0.1,
        hflip=0.5,
        crop_scale=(0.5, 1.0),
        noise_std=0.05,
    )
    return A.sample_params(cfg, shape[0], torch.Generator().manual_seed(seed), image_shape=shape[1:], dtype=F64)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 3, 32, 32), (2, 2, 8, 12)])
@pytest.mark.parametrize("interpolation", A.INTERPOLATIONS)
@pytest.mark.parametrize("padding_mode", A.PADDING_MODES)
def test_identity_params_reproduce_x_exactly(dtype, shape, interpolation, padding_mode):
    x = _images(shape, dtype=dtype)
    p = A.identity_params(shape[0], dtype=dtype)
    assert set(p) == set(PARAM_NAMES) and all(torch.equal(v, torch.zeros(shape[0], dtype=dtype)) for v in p.values())
    y = A.apply(x, p, interpolation=interpolation, padding_mode=padding_mode)
    assert y.dtype == dtype and torch.equal(y, x)


def test_identity_with_noise_field_and_no_flip_is_exact():
    x = _images((2, 3, 8, 8))
    noise = AugmentNoise(flip=torch.ones(2, dtype=F64), eps=_images((2, 3, 8, 8), seed=5))
    assert torch.equal(A.apply(x, A.identity_params(2, dtype=F64), noise), x)


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("interpolation", A.INTERPOLATIONS)
@pytest.mark.parametrize("padding_mode", A.PADDING_MODES)
def test_geometry_matches_affine_grid_and_grid_sample(interpolation, padding_mode):
    shape = (4, 2, 8, 12)  # non-square, so aspect handling is checked too
    x = _images(shape)
    cfg = AugmentConfig(rotation_deg=90.0, translate=0.5, scale=(0.5, 1.5), hflip=0.5, crop_scale=(0.2, 1.0))
    p, noise = A.sample_params(cfg, 4, torch.Generator().manual_seed(3), image_shape=shape[1:], dtype=F64)
    assert (noise.flip == -1).any() and (noise.flip == 1).any()
    geometric_only = {**p, "brightness": p["brightness"] * 0, "contrast": p["contrast"] * 0, "noise": p["noise"] * 0}
    grid = F.affine_grid(A.affine_theta(p, shape[1:], noise.flip), list(shape), align_corners=False)
    ref = F.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=False)
    out = A.apply(x, geometric_only, noise, interpolation=interpolation, padding_mode=padding_mode)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("interpolation", A.INTERPOLATIONS)
def test_quarter_turn_is_counter_clockwise_rot90_and_exactly_invertible(interpolation):
    x = _images((2, 3, 8, 8))
    plus, minus = _params(2, angle=math.pi / 2), _params(2, angle=-math.pi / 2)
    y = A.apply(x, plus, interpolation=interpolation)
    torch.testing.assert_close(y, torch.rot90(x, 1, (-2, -1)), rtol=0, atol=1e-12)
    torch.testing.assert_close(A.apply(y, minus, interpolation=interpolation), x, rtol=0, atol=1e-12)


def test_translation_and_flip_directions():
    x = _images((2, 1, 8, 8))
    right = A.apply(x, _params(2, tx=1 / 8))  # one pixel right
    down = A.apply(x, _params(2, ty=1 / 8))  # one pixel down
    torch.testing.assert_close(right[..., 1:], x[..., :-1], rtol=0, atol=1e-12)
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :], rtol=0, atol=1e-12)
    flip = AugmentNoise(flip=-torch.ones(2, dtype=F64), eps=torch.zeros(2, 1, 8, 8, dtype=F64))
    torch.testing.assert_close(A.apply(x, _params(2), flip), torch.flip(x, dims=(-1,)), rtol=0, atol=1e-12)


def test_zoom_enlarges_about_the_centre():
    x = torch.zeros(1, 1, 9, 9, dtype=F64)
    x[..., 4, 5] = 1.0  # one pixel right of the centre
    y = A.apply(x, _params(1, log_scale=math.log(2.0)))
    assert y[0, 0, 4, 6] == pytest.approx(1.0)  # now two pixels right of the centre
    assert y[0, 0, 4, 5] == pytest.approx(0.5) and y[0, 0, 4, 4] == pytest.approx(0.0)


@pytest.mark.parametrize("interpolation", A.INTERPOLATIONS)
@pytest.mark.parametrize("angle", [0.3, 0.6])
def test_rotation_then_inverse_is_identity_away_from_borders(interpolation, angle):
    h = w = 32
    i = torch.arange(h, dtype=F64)[:, None]
    j = torch.arange(w, dtype=F64)[None, :]
    smooth = 0.5 + 0.25 * torch.sin(0.35 * i + 0.2 * j) + 0.2 * torch.cos(0.3 * j - 0.1 * i)
    x = smooth.expand(2, 3, h, w).clone()
    inner = ((i - 15.5) ** 2 + (j - 15.5) ** 2) < 10.0**2
    p, q = _params(2, angle=angle), _params(2, angle=-angle)
    back = A.apply(A.apply(x, p, interpolation=interpolation), q, interpolation=interpolation)
    twice = A.apply(A.apply(x, p, interpolation=interpolation), p, interpolation=interpolation)
    assert (back - x)[..., inner].abs().max() < 0.02
    assert (twice - x)[..., inner].abs().max() > 0.3


# ---------------------------------------------------------------------------------------------- photometry


def test_photometric_ops_follow_their_formulas():
    x = _images((3, 3, 8, 8))
    eps = _images((3, 3, 8, 8), seed=7) - 0.5
    noise = AugmentNoise(flip=torch.ones(3, dtype=F64), eps=eps)
    b, c, n = 0.2, -0.3, 0.07

    def mean(y: torch.Tensor) -> torch.Tensor:
        return y.mean(dim=(1, 2, 3), keepdim=True)

    torch.testing.assert_close(A.apply(x, _params(3, brightness=b), noise), math.exp(b) * x, rtol=1e-14, atol=0)
    contrast = mean(x) + math.exp(c) * (x - mean(x))
    torch.testing.assert_close(A.apply(x, _params(3, contrast=c), noise), contrast, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(A.apply(x, _params(3, noise=n), noise), x + n * eps, rtol=0, atol=1e-15)
    bright = math.exp(b) * x
    combined = mean(bright) + math.exp(c) * (bright - mean(bright)) + n * eps
    out = A.apply(x, _params(3, brightness=b, contrast=c, noise=n), noise)
    torch.testing.assert_close(out, combined, rtol=1e-14, atol=1e-15)
    assert (out > 1).any()  # no clamp by default
    clamped = A.apply(x, _params(3, brightness=b, contrast=c, noise=n), noise, clamp=True)
    torch.testing.assert_close(clamped, combined.clamp(0, 1), rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------------------------------------- batching


def test_batched_apply_equals_per_sample_apply():
    shape = (5, 3, 16, 16)
    x = _images(shape)
    p, noise = _generic(shape)
    for interpolation in A.INTERPOLATIONS:
        out = A.apply(x, p, noise, interpolation=interpolation)
        for i in range(shape[0]):
            pi = {k: v[i : i + 1] for k, v in p.items()}
            ni = AugmentNoise(flip=noise.flip[i : i + 1], eps=noise.eps[i : i + 1])
            torch.testing.assert_close(out[i : i + 1], A.apply(x[i : i + 1], pi, ni, interpolation=interpolation), rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("shape", [(6, 1, 8, 8), (4, 3, 32, 32)])
def test_two_views_deterministic_given_generator(shape):
    x = _images(shape, dtype=torch.float32)
    cfg = AugmentConfig(hflip=0.5, crop_scale=(0.3, 1.0))
    a1, a2 = A.two_views(x, cfg, torch.Generator().manual_seed(11))
    b1, b2 = A.two_views(x, cfg, torch.Generator().manual_seed(11))
    c1, _ = A.two_views(x, cfg, torch.Generator().manual_seed(12))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1) and not torch.allclose(a1, a2)
    assert a1.shape == x.shape and a1.dtype == torch.float32
    d1, d2 = A.two_views(x.double(), cfg, torch.Generator().manual_seed(11))
    torch.testing.assert_close(d1.float(), a1, rtol=0, atol=1e-4)
    torch.testing.assert_close(d2.float(), a2, rtol=0, atol=1e-4)


def test_sampling_never_touches_the_global_rng():
    x = _images((4, 1, 8, 8), dtype=torch.float32)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    v = A.two_views(x, AugmentConfig(hflip=0.5), torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(456)
    w = A.two_views(x, AugmentConfig(hflip=0.5), torch.Generator().manual_seed(0))
    assert torch.equal(v[0], w[0]) and torch.equal(v[1], w[1])


def test_default_sampling_ranges():
    cfg = AugmentConfig(hflip=0.5)
    n = 4000
    p, noise = A.sample_params(cfg, n, torch.Generator().manual_seed(0), image_shape=(1, 8, 8), dtype=F64)
    assert p["angle"].abs().max() <= math.radians(30.0) and p["angle"].abs().max() > math.radians(29.0)
    for k in ("tx", "ty"):
        assert p[k].abs().max() <= 0.125 and p[k].abs().max() > 0.12
    assert math.log(0.9) <= p["log_scale"].min() and p["log_scale"].max() <= math.log(1.1)
    for k in ("brightness", "contrast"):
        assert math.log(0.8) <= p[k].min() and p[k].max() <= math.log(1.2)
    assert torch.equal(p["noise"], torch.full((n,), 0.05, dtype=F64))
    assert torch.equal(p["log_aspect"], torch.zeros(n, dtype=F64))  # no crop → no aspect change
    assert set(noise.flip.unique().tolist()) == {-1.0, 1.0}
    assert 0.45 < (noise.flip == -1).double().mean() < 0.55
    assert noise.eps.shape == (n, 1, 8, 8)
    assert abs(float(noise.eps.mean())) < 0.01 and abs(float(noise.eps.std()) - 1.0) < 0.01


@pytest.mark.parametrize("hw", [(32, 32), (24, 32)])
def test_paper_crop_stays_inside_image_with_torchvision_ranges(hw):
    h, w = hw
    cfg = A.paper_cifar_config()
    n = 4000
    p, noise = A.sample_params(cfg, n, torch.Generator().manual_seed(0), image_shape=(3, h, w), dtype=F64)
    for k in ("angle", "brightness", "contrast", "noise"):
        assert torch.equal(p[k], torch.zeros(n, dtype=F64))
    # invert the parametrisation: crop width/height fractions and centre offset in pixels
    fw = torch.exp(-p["log_scale"] + 0.5 * p["log_aspect"])
    fh = torch.exp(-p["log_scale"] - 0.5 * p["log_aspect"])
    ox, oy = -p["tx"] * fw * w, -p["ty"] * fh * h
    tol = 1e-9
    assert (fw <= 1 + tol).all() and (fh <= 1 + tol).all()
    assert (ox.abs() <= (1 - fw) * w / 2 + tol).all() and (oy.abs() <= (1 - fh) * h / 2 + tol).all()
    area, ratio = fw * fh, (fw * w) / (fh * h)
    fallback = (fw == 1) & (fh == 1)  # whole-image fallback when no attempt fits
    assert ((area >= 0.2 - tol) & (area <= 1 + tol)).all()
    ok = (ratio >= 0.75 - tol) & (ratio <= 4 / 3 + tol)
    assert (ok | fallback).all() and ok.float().mean() > 0.95
    assert area.min() < 0.21 and area.max() > 0.95
    assert 0.45 < (noise.flip == -1).double().mean() < 0.55


# ---------------------------------------------------------------------------------------------- tangents


def _mlp(in_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(in_dim, 16, generator=g, dtype=F64) / math.sqrt(in_dim)
    b1 = torch.randn(16, generator=g, dtype=F64)
    w2 = torch.randn(16, 4, generator=g, dtype=F64) / 4.0

    def f(y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(y.flatten(1) @ w1 + b1) @ w2

    return f


def _fd(f, x, name, base, noise, h, interpolation="bilinear"):
    def at(delta: float) -> torch.Tensor:
        p = dict(base)
        p[name] = base[name] + delta
        return f(A.apply(x, p, noise, interpolation=interpolation))

    return (at(h) - at(-h)) / (2 * h)


@pytest.mark.parametrize("name", PARAM_NAMES)
@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 3, 32, 32)])
@pytest.mark.parametrize("model", ["image", "mlp"])
def test_tangent_matches_central_differences(name, shape, model):
    x = _images(shape)
    base, noise = _generic(shape)
    f = (lambda y: y) if model == "image" else _mlp(math.prod(shape[1:]))
    t = A.tangent(f, x, name, base=base, noise=noise)
    fd = _fd(f, x, name, base, noise, 1e-6)
    assert t.shape == fd.shape and fd.norm() > 0
    assert _rel_err(t, fd) < 1e-5


@pytest.mark.parametrize("name", GEOMETRIC)
def test_bicubic_tangent_at_identity_matches_central_differences(name):
    x = _images((3, 3, 8, 8))
    f = _mlp(3 * 8 * 8)
    base = A.identity_params(3, dtype=F64)
    t = A.tangent(f, x, name, interpolation="bicubic")
    fd = _fd(f, x, name, base, None, 1e-7, interpolation="bicubic")
    assert _rel_err(t, fd) < 1e-5


def test_bilinear_tangent_at_identity_is_one_sided():
    x = _images((2, 1, 8, 8))
    t = A.tangent(lambda y: y, x, "tx")
    h = 1e-7
    from_above = (A.apply(x, _params(2, tx=h)) - x) / h
    from_below = (x - A.apply(x, _params(2, tx=-h))) / h
    # bilinear is only piecewise smooth at pixel centres: the jvp takes the side on which the
    # sample coordinate grows (tx < 0 reads to the right), i.e. the forward pixel difference
    torch.testing.assert_close(t, from_below, rtol=1e-6, atol=1e-6)
    assert _rel_err(t, from_above) > 0.1
    right = torch.cat([x[..., 1:], x[..., -1:]], dim=-1)  # reflection padding at the right edge
    torch.testing.assert_close(t, (x - right) * 8, rtol=1e-12, atol=1e-12)


def test_tangent_is_per_sample():
    shape = (4, 3, 8, 8)
    x = _images(shape)
    base, noise = _generic(shape)
    f = _mlp(3 * 8 * 8)
    t = A.tangent(f, x, "angle", base=base, noise=noise)
    for i in range(shape[0]):
        bi = {k: v[i : i + 1] for k, v in base.items()}
        ni = AugmentNoise(flip=noise.flip[i : i + 1], eps=noise.eps[i : i + 1])
        torch.testing.assert_close(t[i : i + 1], A.tangent(f, x[i : i + 1], "angle", base=bi, noise=ni), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["angle", "log_scale", "contrast"])
def test_second_derivative_by_nested_jvp(name):
    shape = (2, 1, 8, 8)
    x = _images(shape)
    base, noise = _generic(shape)
    f = _mlp(64)

    def first(value: torch.Tensor) -> torch.Tensor:
        return A.tangent(f, x, name, base={**base, name: value}, noise=noise, interpolation="bicubic")

    _, second = torch.func.jvp(first, (base[name],), (torch.ones_like(base[name]),))
    h = 1e-5
    fd = (first(base[name] + h) - first(base[name] - h)) / (2 * h)
    assert fd.norm() > 0 and _rel_err(second, fd) < 1e-5


def test_tangent_rejects_bad_names_and_missing_noise():
    x = _images((2, 1, 8, 8))
    with pytest.raises(ValueError, match="name must be one of"):
        A.tangent(lambda y: y, x, "shear")
    with pytest.raises(ValueError, match="noise"):
        A.tangent(lambda y: y, x, "noise")


# ---------------------------------------------------------------------------------------------- validation


def test_from_dict_accepts_lists_and_rejects_unknown_keys():
    cfg = AugmentConfig.from_dict({"scale": [0.5, 2], "rotation_deg": 10, "hflip": 0.5})
    assert cfg.scale == (0.5, 2.0) and cfg.rotation_deg == 10.0 and isinstance(cfg.rotation_deg, float)
    assert AugmentConfig.from_dict({}) == AugmentConfig()
    with pytest.raises(ValueError, match=r"unknown augmentation config keys \['rotate'\].*rotation_deg"):
        AugmentConfig.from_dict({"rotate": 10})
    with pytest.raises(ValueError, match="mapping"):
        AugmentConfig.from_dict([("rotation_deg", 1.0)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rotation_deg", -1.0),
        ("rotation_deg", 181.0),
        ("translate", 1.5),
        ("scale", (1.1, 0.9)),
        ("scale", (0.0, 1.0)),
        ("scale", (1.0,)),
        ("brightness", (0.8, float("inf"))),
        ("contrast", "wide"),
        ("noise_std", -0.1),
        ("noise_std", True),
        ("hflip", 2.0),
        ("crop_scale", (0.2, 1.5)),
        ("crop_ratio", (0.0, 1.0)),
        ("clamp", 1),
        ("interpolation", "nearest"),
        ("padding_mode", "circular"),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        AugmentConfig.from_dict({key: value})


def test_apply_rejects_bad_inputs():
    x = _images((2, 1, 8, 8))
    p = A.identity_params(2, dtype=F64)
    with pytest.raises(ValueError, match="missing.*angle"):
        A.apply(x, {k: v for k, v in p.items() if k != "angle"})
    with pytest.raises(ValueError, match="unknown.*shear"):
        A.apply(x, {**p, "shear": p["angle"]})
    with pytest.raises(ValueError, match=r"params\['tx'\]"):
        A.apply(x, {**p, "tx": torch.zeros(3, dtype=F64)})
    with pytest.raises(ValueError, match=r"params\['tx'\]"):
        A.apply(x, {**p, "tx": torch.zeros(2)})
    with pytest.raises(ValueError, match="x must be"):
        A.apply(x[0], p)
    with pytest.raises(ValueError, match="interpolation"):
        A.apply(x, p, interpolation="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise.eps"):
        A.apply(x, p, AugmentNoise(flip=torch.ones(2, dtype=F64), eps=torch.zeros(2, 1, 4, 4, dtype=F64)))
    with pytest.raises(ValueError, match="image_shape"):
        A.sample_params(AugmentConfig(), 2, torch.Generator(), image_shape=(8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        A.identity_params(0)


# ---------------------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_views_and_tangents():
    x = _images((4, 3, 32, 32), dtype=torch.float32).cuda()
    cfg = A.paper_cifar_config()
    for gen in (torch.Generator(device="cuda").manual_seed(0), torch.Generator().manual_seed(0)):
        v1, v2 = A.two_views(x, cfg, gen)
        assert v1.device == x.device and v1.shape == x.shape and not torch.equal(v1, v2)
    assert torch.equal(A.apply(x, A.identity_params(4, device="cuda")), x)
    cpu = A.two_views(x.cpu(), cfg, torch.Generator().manual_seed(0))
    gpu = A.two_views(x, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=0, atol=1e-5)
    t = A.tangent(lambda y: y.sum(dim=(1, 2, 3)), x.double(), "angle")
    assert t.device == x.device and t.shape == (4,)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["reflection", "border", "zeros"])
def test_native_resampling_equals_differentiable_apply(interpolation: str, padding_mode: str) -> None:
    cfg = AugmentConfig(rotation_deg=40.0, translate=0.2, scale=(0.7, 1.3), hflip=0.5, crop_scale=(0.5, 1.0))
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 3, 12, 10, dtype=torch.float64, generator=gen)
    params, noise = sample_params(cfg, 16, gen, image_shape=(3, 12, 10), dtype=torch.float64)
    exact = apply(x, params, noise, interpolation=interpolation, padding_mode=padding_mode)
    native = apply_native(x, params, noise, interpolation=interpolation, padding_mode=padding_mode)
    torch.testing.assert_close(native, exact, rtol=0, atol=1e-10)
