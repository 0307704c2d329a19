r"""Seeded, batched, differentiable image augmentations with continuous parameters.

An augmentation :math:`t_\xi` acts on a batch ``x`` of shape ``(B, C, H, W)`` and is described per
sample by continuous parameters :math:`\xi` (one ``(B,)`` tensor per name in :data:`PARAM_NAMES`)
plus discrete/fixed randomness held in :class:`AugmentNoise` (a horizontal flip sign and a unit
Gaussian field). :math:`\xi = 0` is the identity, and every continuous parameter enters through
smooth functions (``cos``, ``sin``, ``exp``, products), with no rounding and no Python control flow on
its value, so ``torch.func.jvp``/``grad``/``hessian`` work through :func:`apply` (see :func:`tangent`).

Geometry (one affine resampling). In pixel units centred on the image centre (x right, y down), the
output pixel ``u`` reads the input at

.. math:: q = F\,S^{-1} R(\theta)^{-1} (u - t),

with :math:`R(\theta)` a counter-clockwise (as displayed) rotation by ``angle`` θ (radians),
:math:`S = \mathrm{diag}(e^{s - a/2}, e^{s + a/2})` (``s = log_scale``: zoom, ``a = log_aspect``:
log of the width/height ratio of the region that is stretched onto the output),
:math:`t = (t_x W, t_y H)` (``tx``, ``ty`` in fractions of the image size; positive moves content
right/down) and :math:`F = \mathrm{diag}(\pm 1, 1)` the flip. In words: flip, zoom, rotate, translate.
The input is read by bilinear (default) or bicubic interpolation with reflection padding (default;
the paper's code used nearest interpolation with black corners, PAPER §17.9), matching
``torch.nn.functional.grid_sample(..., align_corners=False)`` with the grid of :func:`affine_theta`.
``grid_sample`` has no forward-mode derivative, so the resampling is written here with ``gather``.

Photometry, applied after the geometry with per-image mean :math:`m` over ``(C, H, W)``:
:math:`y \leftarrow e^{b} y` (``brightness`` ``b``: log factor),
:math:`y \leftarrow e^{c} y + (1 - e^{c}) m` (``contrast`` ``c``: log factor; equals
:math:`m + e^{c}(y - m)`), :math:`y \leftarrow y + n\,\varepsilon` (``noise`` ``n`` times the fixed
unit field ε). Optional clamping to ``[0, 1]`` comes last.

Randomness only ever comes from the ``torch.Generator`` argument, never from global RNGs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from geomhead.checks import dataclass_from_mapping

__all__ = [
    "INTERPOLATIONS",
    "PADDING_MODES",
    "PARAM_NAMES",
    "AugmentConfig",
    "AugmentNoise",
    "affine_theta",
    "apply",
    "apply_native",
    "augment",
    "identity_params",
    "paper_cifar_config",
    "sample_params",
    "tangent",
    "two_views",
]

PARAM_NAMES: tuple[str, ...] = (
    "angle",
    "tx",
    "ty",
    "log_scale",
    "brightness",
    "contrast",
    "noise",
    "log_aspect",
)
"""Continuous augmentation parameters; all zeros is the identity.

``angle`` rotation in radians; ``tx``, ``ty`` translation in fractions of width/height;
``log_scale`` log zoom factor; ``brightness``, ``contrast`` log intensity/contrast factors;
``noise`` amplitude of the unit noise field; ``log_aspect`` log width/height ratio of the stretched
region (non-zero only from random resized crops).
"""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")
PADDING_MODES: tuple[str, ...] = ("reflection", "border", "zeros")

Interpolation = Literal["bilinear", "bicubic"]
PaddingMode = Literal["reflection", "border", "zeros"]

_CROP_ATTEMPTS = 10  # as torchvision.transforms.RandomResizedCrop
_CUBIC_A = -0.75  # Keys' cubic convolution constant, as torch's bicubic grid_sample
_JIT_WARNING = r"`torch\.jit\.script` is deprecated"


@dataclass(frozen=True)
class AugmentConfig:
    """Distribution of augmentation parameters (see the module docstring for the transform).

    Attributes:
        rotation_deg: ``angle ~ U(-r, r)`` degrees (stored in radians), ``0 <= r <= 180``.
        translate: ``tx, ty ~ U(-t, t)`` independently, fractions of the image size, ``0 <= t <= 1``.
        scale: Zoom factor ``~ U(lo, hi)``, ``0 < lo <= hi``; the parameter is its log.
        brightness: Intensity factor ``~ U(lo, hi)``, ``0 < lo <= hi``; the parameter is its log.
        contrast: Contrast factor ``~ U(lo, hi)``, ``0 < lo <= hi``; the parameter is its log.
        noise_std: σ of additive Gaussian noise ``σ ε``: the parameter ``noise`` is set to σ, ε is
            a fresh unit normal field, ``σ >= 0``.
        hflip: Probability of a horizontal flip, in ``[0, 1]`` (discrete, lives in
            :class:`AugmentNoise`).
        crop_scale: Area fraction range of a RandomResizedCrop-style crop, ``0 < lo <= hi <= 1``;
            ``(1, 1)`` disables cropping. The crop is realised as extra zoom, aspect and offset in
            the parameters ``log_scale``, ``log_aspect``, ``tx``, ``ty``.
        crop_ratio: Width/height ratio range of the crop box, log-uniform, ``0 < lo <= hi``
            (torchvision's default ``(3/4, 4/3)``).
        clamp: Clamp the output to ``[0, 1]`` (off by default: clamping zeroes gradients).
        interpolation: ``"bilinear"`` or ``"bicubic"`` resampling.
        padding_mode: ``"reflection"``, ``"border"`` or ``"zeros"`` outside the image.

    Raises:
        ValueError: If a field is out of range (the message names the field, value and allowed range).
    """

    rotation_deg: float = 30.0
    translate: float = 0.125
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.8, 1.2)
    noise_std: float = 0.05
    hflip: float = 0.0
    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    clamp: bool = False
    interpolation: Interpolation = "bilinear"
    padding_mode: PaddingMode = "reflection"

    def __post_init__(self) -> None:
        _set_scalar(self, "rotation_deg", 0.0, 180.0)
        _set_scalar(self, "translate", 0.0, 1.0)
        _set_scalar(self, "noise_std", 0.0, math.inf)
        _set_scalar(self, "hflip", 0.0, 1.0)
        for name in ("scale", "brightness", "contrast", "crop_ratio"):
            _set_range(self, name, math.inf)
        _set_range(self, "crop_scale", 1.0)
        if not isinstance(self.clamp, bool):
            raise ValueError(f"clamp must be a bool, got {self.clamp!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {list(PADDING_MODES)}, got {self.padding_mode!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AugmentConfig:
        """Build a config from a mapping (e.g. a ``params.yaml`` section); lists become tuples.

        Args:
            d: Field values; missing fields take their defaults.

        Returns:
            The validated config.

        Raises:
            ValueError: If ``d`` is not a mapping, has unknown keys, or a value is out of range.
        """
        return dataclass_from_mapping(cls, d, "augmentation config keys")


@dataclass(frozen=True)
class AugmentNoise:
    """The non-continuous part of a sampled augmentation.

    Attributes:
        flip: ``(B,)`` signs in ``{1, -1}``; ``-1`` flips the sample horizontally.
        eps: ``(B, C, H, W)`` unit normal field that the ``noise`` parameter multiplies.
    """

    flip: Tensor
    eps: Tensor

    def __post_init__(self) -> None:
        if self.flip.dim() != 1 or self.eps.dim() != 4 or self.eps.shape[0] != self.flip.shape[0]:
            raise ValueError(
                f"AugmentNoise needs flip of shape (B,) and eps of shape (B, C, H, W), got "
                f"{tuple(self.flip.shape)} and {tuple(self.eps.shape)}"
            )


def identity_params(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Parameters of the identity transform: zeros of shape ``(n,)`` for every name in :data:`PARAM_NAMES`.

    Args:
        n: Batch size.
        dtype: Floating dtype.
        device: Device.

    Returns:
        ``{name: zeros(n)}``.
    """
    _check_n(n)
    return {name: torch.zeros(n, dtype=dtype, device=device) for name in PARAM_NAMES}


def sample_params(
    cfg: AugmentConfig,
    n: int,
    generator: torch.Generator,
    *,
    image_shape: tuple[int, int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[dict[str, Tensor], AugmentNoise]:
    """Draw ``n`` augmentations from ``cfg``.

    All random numbers are drawn in float64 on ``generator.device`` in a fixed order (jitter, flip,
    crop, noise field — all of them whatever the config), then cast to ``dtype`` and moved to
    ``device``; so the float32 and float64 draws of one seed agree up to rounding.

    The crop follows torchvision's RandomResizedCrop without pixel rounding: up to 10 attempts of
    area fraction ``~ U(crop_scale)`` and log ratio ``~ U(log crop_ratio)`` per sample, the first that
    fits is used (else the whole image, ratio-clamped and centred), with a uniform offset inside the
    image. It contributes ``-log(f_w f_h)/2`` to ``log_scale``, ``log(f_w / f_h)`` to ``log_aspect`` and
    the offset to ``tx``, ``ty`` (``f_w, f_h``: crop width/height fractions). The crop stays inside
    the image exactly when rotation, translation and scale jitter are off (as in
    :func:`paper_cifar_config`); otherwise the jitter composes on top of it.

    Args:
        cfg: Augmentation distribution.
        n: Number of samples.
        generator: Source of all randomness.
        image_shape: ``(C, H, W)`` of the images.
        dtype: Floating dtype of the result.
        device: Device of the result; default ``generator.device``.

    Returns:
        ``(params, noise)``: ``{name: (n,)}`` for every name in :data:`PARAM_NAMES`, and the flips
        and unit noise field.

    Raises:
        ValueError: On a bad ``n``, ``image_shape``, ``generator`` or ``dtype``.
    """
    _check_n(n)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W) of positive ints, got {image_shape!r}")
    c, h, w = image_shape
    gen_dev = generator.device

    def uniform(lo: float, hi: float, *size: int) -> Tensor:
        u = torch.rand(*size, generator=generator, device=gen_dev, dtype=torch.float64)
        return lo + (hi - lo) * u

    r = math.radians(cfg.rotation_deg)
    angle = uniform(-r, r, n)
    tx = uniform(-cfg.translate, cfg.translate, n)
    ty = uniform(-cfg.translate, cfg.translate, n)
    log_scale = torch.log(uniform(*cfg.scale, n))
    brightness = torch.log(uniform(*cfg.brightness, n))
    contrast = torch.log(uniform(*cfg.contrast, n))
    flip = torch.where(uniform(0.0, 1.0, n) < cfg.hflip, -1.0, 1.0).to(torch.float64)

    crop_ls, crop_la, crop_tx, crop_ty = _sample_crop(cfg, n, h, w, uniform)
    eps = torch.randn(n, c, h, w, generator=generator, device=gen_dev, dtype=torch.float64)

    out_dev = gen_dev if device is None else torch.device(device)
    params64 = {
        "angle": angle,
        "tx": tx + crop_tx,
        "ty": ty + crop_ty,
        "log_scale": log_scale + crop_ls,
        "brightness": brightness,
        "contrast": contrast,
        "noise": torch.full((n,), cfg.noise_std, dtype=torch.float64, device=gen_dev),
        "log_aspect": crop_la,
    }
    params = {k: params64[k].to(device=out_dev, dtype=dtype) for k in PARAM_NAMES}
    noise = AugmentNoise(flip=flip.to(device=out_dev, dtype=dtype), eps=eps.to(device=out_dev, dtype=dtype))
    return params, noise


def affine_theta(params: Mapping[str, Tensor], image_shape: tuple[int, int, int], flip: Tensor | None = None) -> Tensor:
    r"""The geometric part of :func:`apply` as ``theta`` for ``torch.nn.functional.affine_grid``.

    ``F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)``
    reproduces :func:`apply`'s geometry (for reverse-mode-only use; it has no forward-mode AD).
    In normalised coordinates :math:`\theta = [K^{-1} A K \mid -K^{-1} A t]` with
    :math:`K = \mathrm{diag}(W/2, H/2)` and :math:`A = F S^{-1} R^{-1}`.

    Args:
        params: Continuous parameters (``angle``, ``tx``, ``ty``, ``log_scale``, ``log_aspect`` used).
        image_shape: ``(C, H, W)``.
        flip: ``(B,)`` flip signs, default no flip.

    Returns:
        ``(B, 2, 3)`` affine matrices.
    """
    _, h, w = image_shape
    a11, a12, a21, a22 = _inverse_linear(params, flip)
    kx, ky = w / 2.0, h / 2.0
    n11, n12, n21, n22 = a11, a12 * (ky / kx), a21 * (kx / ky), a22
    tnx, tny = 2.0 * params["tx"], 2.0 * params["ty"]
    row0 = torch.stack([n11, n12, -(n11 * tnx + n12 * tny)], dim=-1)
    row1 = torch.stack([n21, n22, -(n21 * tnx + n22 * tny)], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def apply(
    x: Tensor,
    params: Mapping[str, Tensor],
    noise: AugmentNoise | None = None,
    *,
    interpolation: Interpolation = "bilinear",
    padding_mode: PaddingMode = "reflection",
    clamp: bool = False,
) -> Tensor:
    """Apply per-sample augmentations ``t_ξ`` to a batch (see the module docstring for the formulas).

    Differentiable (forward and reverse mode, to any order) in ``x`` and every continuous parameter.
    With :func:`identity_params` and ``noise=None`` it returns ``x`` exactly (bit for bit): the
    identity grid lands on pixel centres, interpolation weights are exactly 0/1 and the photometric
    factors exactly 1; nothing is special-cased. Samples never interact: row ``i`` of the result
    depends only on row ``i`` of every input.

    Args:
        x: Images ``(B, C, H, W)``, floating.
        params: ``(B,)`` tensors for exactly the names in :data:`PARAM_NAMES`, dtype and device of ``x``.
        noise: Flips and unit noise field; ``None`` means no flip and ``ε = 0`` (the ``noise``
            parameter then has no effect).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        padding_mode: ``"reflection"``, ``"border"`` or ``"zeros"``.
        clamp: Clamp the result to ``[0, 1]``.

    Returns:
        Augmented images, same shape, dtype and device as ``x``.

    Raises:
        ValueError: On bad shapes, dtypes, devices, parameter names or options.
    """
    _check_images(x)
    _check_params(params, x)
    if noise is not None:
        if tuple(noise.eps.shape) != tuple(x.shape) or noise.eps.dtype != x.dtype or noise.eps.device != x.device:
            raise ValueError(
                f"noise.eps must match x (shape {tuple(x.shape)}, {x.dtype}, {x.device}), got "
                f"shape {tuple(noise.eps.shape)}, {noise.eps.dtype}, {noise.eps.device}"
            )
        if noise.flip.dtype != x.dtype or noise.flip.device != x.device:
            raise ValueError(f"noise.flip must have dtype {x.dtype} on {x.device}, got {noise.flip.dtype} on {noise.flip.device}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {list(PADDING_MODES)}, got {padding_mode!r}")

    b, _, h, w = x.shape
    a11, a12, a21, a22 = (a[:, None, None] for a in _inverse_linear(params, None if noise is None else noise.flip))
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    u = torch.arange(w, dtype=x.dtype, device=x.device) - cx
    v = torch.arange(h, dtype=x.dtype, device=x.device) - cy
    du = (u[None, :] - (params["tx"] * w)[:, None])[:, None, :]  # (B, 1, W)
    dv = (v[None, :] - (params["ty"] * h)[:, None])[:, :, None]  # (B, H, 1)
    ix = a11 * du + a12 * dv + cx  # (B, H, W) input column coordinate
    iy = a21 * du + a22 * dv + cy  # (B, H, W) input row coordinate
    y = _resample(x, ix, iy, interpolation, padding_mode)
    return _photometric(y, params, noise, clamp)


def _photometric(y: Tensor, params: Mapping[str, Tensor], noise: AugmentNoise | None, clamp: bool) -> Tensor:
    """Brightness, contrast, noise and optional clamp (the module docstring's formulas)."""
    gain = torch.exp(params["brightness"])[:, None, None, None]
    y = y * gain
    k = torch.exp(params["contrast"])[:, None, None, None]
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = y * k + mean * (1.0 - k)
    if noise is not None:
        y = y + params["noise"][:, None, None, None] * noise.eps
    if clamp:
        y = y.clamp(0.0, 1.0)
    return y


def apply_native(
    x: Tensor,
    params: Mapping[str, Tensor],
    noise: AugmentNoise | None = None,
    *,
    interpolation: Interpolation = "bilinear",
    padding_mode: PaddingMode = "reflection",
    clamp: bool = False,
) -> Tensor:
    """:func:`apply` through ``F.affine_grid`` + ``F.grid_sample``: the same transform (equal to
    float rounding), several times faster, differentiable in reverse mode only (no ``jvp``).

    Training draws its views with it; analyses that take tangents use :func:`apply`.
    """
    _check_images(x)
    _check_params(params, x)
    theta = affine_theta(params, tuple(x.shape[1:]), None if noise is None else noise.flip)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    y = torch.nn.functional.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=False)
    return _photometric(y, params, noise, clamp)


def augment(x: Tensor, cfg: AugmentConfig, generator: torch.Generator, *, native: bool = True) -> Tensor:
    """One random view of every image: :func:`sample_params` then the transform with ``cfg``'s options.

    Args:
        x: Images ``(B, C, H, W)``.
        cfg: Augmentation distribution and options.
        generator: Source of randomness (may live on another device than ``x``).
        native: Resample with ``grid_sample`` (:func:`apply_native`, fast, reverse mode only) instead
            of :func:`apply` (forward- and reverse-mode differentiable).

    Returns:
        The augmented batch.
    """
    _check_images(x)
    params, noise = sample_params(cfg, x.shape[0], generator, image_shape=tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    transform = apply_native if native else apply
    return transform(x, params, noise, interpolation=cfg.interpolation, padding_mode=cfg.padding_mode, clamp=cfg.clamp)


def two_views(x: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two independent random views (first view drawn first), deterministic given the generator state.

    Args:
        x: Images ``(B, C, H, W)``.
        cfg: Augmentation distribution and options.
        generator: Source of randomness.

    Returns:
        ``(view1, view2)``.
    """
    return augment(x, cfg, generator), augment(x, cfg, generator)


def tangent(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    name: str,
    *,
    base: Mapping[str, Tensor] | None = None,
    noise: AugmentNoise | None = None,
    interpolation: Interpolation = "bilinear",
    padding_mode: PaddingMode = "reflection",
    clamp: bool = False,
) -> Tensor:
    r"""Tangent :math:`\partial_\xi f(t_\xi x)` along one parameter at :math:`\xi = ` ``base``, via ``torch.func.jvp``.

    The tangent direction is 1 for every sample's parameter ``name``, so for an ``f`` that acts on
    samples independently row ``i`` of the result is that sample's own derivative (for an ``f`` that
    couples samples, e.g. train-mode batch norm, it is the derivative of the joint shift). Units: per
    radian for ``angle``, per image size for ``tx``/``ty``, per unit log factor otherwise.

    Bilinear resampling is only piecewise smooth: where sample points sit exactly on pixel centres
    (the identity, integer-pixel shifts, multiples of 90°) the jvp is one-sided — it takes the
    forward pixel difference ``x[k+1] - x[k]``, i.e. the derivative from the side on which the
    sample coordinate grows — and differs from the symmetric (central-difference) limit. Use
    ``interpolation="bicubic"`` (C¹) for a two-sided tangent at the identity.

    Args:
        f: Function of the augmented batch (e.g. a network), differentiable by ``torch.func``.
        x: Images ``(B, C, H, W)``.
        name: One of :data:`PARAM_NAMES`.
        base: Full parameter mapping to differentiate at; default :func:`identity_params`.
        noise: Flips and noise field (required for ``name="noise"``).
        interpolation: Passed to :func:`apply`.
        padding_mode: Passed to :func:`apply`.
        clamp: Passed to :func:`apply`.

    Returns:
        The tangent, shaped like ``f``'s output.

    Raises:
        ValueError: If ``name`` is unknown, or ``name="noise"`` without ``noise``.
    """
    if name not in PARAM_NAMES:
        raise ValueError(f"name must be one of {list(PARAM_NAMES)}, got {name!r}")
    if name == "noise" and noise is None:
        raise ValueError("name='noise' needs noise=AugmentNoise(...) holding the unit field eps")
    _check_images(x)
    params0 = dict(identity_params(x.shape[0], dtype=x.dtype, device=x.device) if base is None else base)
    _check_params(params0, x)

    def along(value: Tensor) -> Tensor:
        p = dict(params0)
        p[name] = value
        return f(apply(x, p, noise, interpolation=interpolation, padding_mode=padding_mode, clamp=clamp))

    primal = params0[name]
    with warnings.catch_warnings():
        # torch's first forward-mode call scripts its jvp decompositions and warns about torch.jit.
        warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
        _, out = torch.func.jvp(along, (primal,), (torch.ones_like(primal),))
    return out


def paper_cifar_config() -> AugmentConfig:
    """The paper's SimSiam-style CIFAR augmentation (PAPER §4) as continuous parameters.

    ``RandomResizedCrop(32, scale=(0.2, 1.0))`` (default ratio ``(3/4, 4/3)``) →
    ``RandomHorizontalFlip(0.5)``; no rotation, translation, scale, photometric jitter or noise.
    Deviations: the crop box is continuous (no rounding to whole pixels) and is resampled from the
    full image in one bilinear pass (upsampling, so PIL's antialiasing is irrelevant).

    Returns:
        The config.
    """
    return AugmentConfig(
        rotation_deg=0.0,
        translate=0.0,
        scale=(1.0, 1.0),
        brightness=(1.0, 1.0),
        contrast=(1.0, 1.0),
        noise_std=0.0,
        hflip=0.5,
        crop_scale=(0.2, 1.0),
        crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
    )


# ----------------------------------------------------------------------------------------------
# internals


def _set_scalar(cfg: AugmentConfig, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    object.__setattr__(cfg, name, float(value))


def _set_range(cfg: AugmentConfig, name: str, hi: float) -> None:
    value = getattr(cfg, name)
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value)
        and 0.0 < value[0] <= value[1] <= hi
    )
    if not ok:
        bound = "" if math.isinf(hi) else f" <= {hi}"
        raise ValueError(f"{name} must be a pair (lo, hi) of finite numbers with 0 < lo <= hi{bound}, got {value!r}")
    object.__setattr__(cfg, name, (float(value[0]), float(value[1])))


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.dtype.is_floating_point or x.shape[0] < 1:
        raise ValueError(
            f"x must be a floating tensor of shape (B, C, H, W) with B >= 1, got "
            f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
        )


def _check_params(params: Mapping[str, Tensor], x: Tensor) -> None:
    keys = set(params)
    if keys != set(PARAM_NAMES):
        raise ValueError(
            f"params must have exactly the keys {list(PARAM_NAMES)}; missing {sorted(set(PARAM_NAMES) - keys)}, "
            f"unknown {sorted(str(k) for k in keys - set(PARAM_NAMES))}"
        )
    for name in PARAM_NAMES:
        p = params[name]
        if not isinstance(p, Tensor) or tuple(p.shape) != (x.shape[0],) or p.dtype != x.dtype or p.device != x.device:
            raise ValueError(
                f"params[{name!r}] must be a tensor of shape ({x.shape[0]},), dtype {x.dtype}, device {x.device}; "
                f"got {type(p).__name__} {tuple(getattr(p, 'shape', ()))} {getattr(p, 'dtype', '')} "
                f"{getattr(p, 'device', '')}"
            )


def _inverse_linear(params: Mapping[str, Tensor], flip: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Entries of ``A = F S^{-1} R(θ)^{-1}`` (pixel units, y down), each ``(B,)``."""
    cos, sin = torch.cos(params["angle"]), torch.sin(params["angle"])
    half_aspect = 0.5 * params["log_aspect"]
    inv_sx = torch.exp(half_aspect - params["log_scale"])
    inv_sy = torch.exp(-half_aspect - params["log_scale"])
    fx = inv_sx if flip is None else flip * inv_sx
    return fx * cos, -(fx * sin), inv_sy * sin, inv_sy * cos


def _sample_crop(cfg: AugmentConfig, n: int, h: int, w: int, uniform: Callable[..., Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Vectorised continuous RandomResizedCrop → (log_scale, log_aspect, tx, ty) contributions."""
    k = _CROP_ATTEMPTS
    area = uniform(*cfg.crop_scale, n, k) * (h * w)
    ratio = torch.exp(uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), n, k))
    cw, ch = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (cw <= w) & (ch <= h)
    first = torch.argmax(fits.to(torch.int64), dim=1, keepdim=True)
    found = fits.any(dim=1)
    # fallback (no attempt fits): whole image with its ratio clamped into crop_ratio, centred
    in_ratio = w / h
    fb_w, fb_h = float(w), float(h)
    if in_ratio < cfg.crop_ratio[0]:
        fb_h = w / cfg.crop_ratio[0]
    elif in_ratio > cfg.crop_ratio[1]:
        fb_w = h * cfg.crop_ratio[1]
    fw = torch.where(found, cw.gather(1, first).squeeze(1), fb_w) / w
    fh = torch.where(found, ch.gather(1, first).squeeze(1), fb_h) / h
    centre = uniform(-1.0, 1.0, n, 2)
    ox = torch.where(found, centre[:, 0] * (1.0 - fw) * (w / 2.0), 0.0)  # crop-centre offset, pixels
    oy = torch.where(found, centre[:, 1] * (1.0 - fh) * (h / 2.0), 0.0)
    log_scale = -0.5 * torch.log(fw * fh)
    log_aspect = torch.log(fw / fh)
    return log_scale, log_aspect, -ox / (fw * w), -oy / (fh * h)


def _resample(x: Tensor, ix: Tensor, iy: Tensor, interpolation: str, padding_mode: str) -> Tensor:
    """Sample ``x`` at pixel coordinates ``(ix, iy)`` (``(B, Ho, Wo)``) like ``grid_sample``, via gather."""
    b, c, h, w = x.shape
    idx_x, w_x = _taps(ix, w, interpolation, padding_mode)  # (B, Ho, Wo, K)
    idx_y, w_y = _taps(iy, h, interpolation, padding_mode)
    index = idx_y[..., :, None] * w + idx_x[..., None, :]  # (B, Ho, Wo, K, K)
    weight = w_y[..., :, None] * w_x[..., None, :]
    flat_index = index.reshape(b, 1, -1).expand(b, c, -1)
    values = torch.gather(x.reshape(b, c, h * w), 2, flat_index).reshape(b, c, *index.shape[1:])
    return (values * weight[:, None]).sum(dim=(-2, -1))


def _taps(coord: Tensor, size: int, interpolation: str, padding_mode: str) -> tuple[Tensor, Tensor]:
    """Integer tap indices (after padding) and interpolation weights along one axis, stacked last."""
    base = torch.floor(coord)
    t = coord - base
    base_i = base.to(torch.int64)
    if interpolation == "bilinear":
        offsets: tuple[int, ...] = (0, 1)
        weights = [1.0 - t, t]
    else:
        offsets = (-1, 0, 1, 2)
        weights = _cubic_weights(t)
    indices = []
    for j, off in enumerate(offsets):
        k = base_i + off
        if padding_mode == "reflection":  # symmetric about -1/2 and size - 1/2, period 2·size
            m = torch.remainder(k, 2 * size)
            k = torch.where(m < size, m, 2 * size - 1 - m)
        elif padding_mode == "border":
            k = k.clamp(0, size - 1)
        else:
            inside = (k >= 0) & (k < size)
            weights[j] = weights[j] * inside.to(t.dtype)
            k = k.clamp(0, size - 1)
        indices.append(k)
    return torch.stack(indices, dim=-1), torch.stack(weights, dim=-1)


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """Keys cubic-convolution weights (A = -0.75) of taps at offsets -1, 0, 1, 2 for fraction ``t``."""
    a = _CUBIC_A

    def near(d: Tensor) -> Tensor:  # |d| <= 1
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

    def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
