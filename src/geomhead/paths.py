r"""Curvature of augmentation paths: representations along a sweep of one augmentation parameter.

A path is :math:`r_i = \phi(f(t_{\xi_i} x))`, :math:`i = 0..n-1`, for a sweep :math:`\xi_0 < \dots < \xi_{n-1}`
of one parameter (the paper: rotation 0°..45° in 10 steps) and a representation map :math:`\phi`
(z, or the head output h), rows L2-normalised when ``normalize`` (the paper does). With segments
:math:`\Delta_i = r_i - r_{i-1}` and the turning angle :math:`\varphi_i` between :math:`\Delta_i` and
:math:`\Delta_{i+1}` at each interior point :math:`i = 1..n-2`, three curvatures, each the mean over
interior points:

* ``second_difference`` (the paper's): :math:`\|r_{i+1} - 2 r_i + r_{i-1}\|` — a discrete
  acceleration: no division by :math:`\Delta\xi^2`, no arc-length normalisation, so it grows with
  the speed of the path (PAPER §10, §17.9);
* ``turning``: :math:`\varphi_i / \big(\tfrac12(\|\Delta_i\| + \|\Delta_{i+1}\|)\big)`, turning angle per
  unit arc length;
* ``menger``: :math:`4A_i/(abc) = 2\sin\varphi_i/\|r_{i+1} - r_{i-1}\|`, the inverse radius of the
  circle through the three points.

Both arc-length-normalised curvatures equal :math:`1/R` on a circle of radius R (Menger exactly,
turning in the limit of fine steps) and do not depend on how fast the sweep moves along the path.
The angle is :math:`2\,\mathrm{atan2}(\|\hat a - \hat b\|, \|\hat a + \hat b\|)` (stable for tiny
angles). A point with an adjacent segment no longer than ``rtol`` times the largest representation
norm on the path (zero up to rounding: an invariant representation) has no defined turning angle:
it is left out of the mean (NaN if no interior point is left). Ratios h/z are ratios of the means over
paths, as in the paper (``mean κ_h / mean κ_z``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from geomhead import augment

__all__ = [
    "CURVATURES",
    "augmentation_path",
    "menger_curvature",
    "path_curvatures",
    "second_difference_curvature",
    "turning_curvature",
]

CURVATURES: tuple[str, ...] = ("second_difference", "turning", "menger")
DEFAULT_RTOL = 1e-12


def _check_path(r: object) -> Tensor:
    if not isinstance(r, Tensor) or r.ndim < 2 or r.shape[-2] < 3 or not r.is_floating_point():
        raise ValueError(
            f"r must be a floating tensor (..., n_steps >= 3, dim), got {type(r).__name__} "
            f"{getattr(r, 'dtype', '')} {tuple(getattr(r, 'shape', ()))}"
        )
    return r


def _prepare(r: Tensor, normalize: bool) -> Tensor:
    _check_path(r)
    if normalize:
        norm = torch.linalg.vector_norm(r, dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("r has a zero representation; it cannot be L2-normalised (pass normalize=False)")
        r = r / norm
    return r


def _nanmean_last(x: Tensor) -> Tensor:
    finite = ~torch.isnan(x)
    count = finite.sum(dim=-1)
    total = torch.where(finite, x, torch.zeros_like(x)).sum(dim=-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, torch.nan))


def second_difference_curvature(r: Tensor, *, normalize: bool = True) -> Tensor:
    r"""The paper's :math:`\operatorname{mean}_i \|r_{i+1} - 2r_i + r_{i-1}\|` per path: ``(..., n, d) → (...)``."""
    r = _prepare(r, normalize)
    acc = r[..., 2:, :] - 2.0 * r[..., 1:-1, :] + r[..., :-2, :]
    return torch.linalg.vector_norm(acc, dim=-1).mean(dim=-1)


def _angles(r: Tensor, rtol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Turning angles and the adjacent segment lengths at interior points (NaN angle at degenerate segments)."""
    if not 0.0 <= rtol < 1.0:
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    seg = r[..., 1:, :] - r[..., :-1, :]
    length = torch.linalg.vector_norm(seg, dim=-1)
    scale = torch.linalg.vector_norm(r, dim=-1).amax(dim=-1, keepdim=True)
    ok = length > rtol * scale
    unit = seg / torch.where(ok, length, torch.ones_like(length)).unsqueeze(-1)
    a, b = unit[..., :-1, :], unit[..., 1:, :]
    angle = 2.0 * torch.atan2(torch.linalg.vector_norm(a - b, dim=-1), torch.linalg.vector_norm(a + b, dim=-1))
    valid = ok[..., :-1] & ok[..., 1:]
    return torch.where(valid, angle, torch.full_like(angle, torch.nan)), length[..., :-1], length[..., 1:]


def turning_curvature(r: Tensor, *, normalize: bool = True, rtol: float = DEFAULT_RTOL) -> Tensor:
    r"""Mean turning angle per unit arc length :math:`\varphi_i / (\tfrac12(\|\Delta_i\| + \|\Delta_{i+1}\|))`: ``(..., n, d) → (...)``."""
    r = _prepare(r, normalize)
    angle, a, b = _angles(r, rtol)
    return _nanmean_last(angle / (0.5 * (a + b)))


def menger_curvature(r: Tensor, *, normalize: bool = True, rtol: float = DEFAULT_RTOL) -> Tensor:
    r"""Mean Menger curvature :math:`2\sin\varphi_i/\|r_{i+1} - r_{i-1}\|`: ``(..., n, d) → (...)``."""
    r = _prepare(r, normalize)
    angle, _, _ = _angles(r, rtol)
    chord = torch.linalg.vector_norm(r[..., 2:, :] - r[..., :-2, :], dim=-1)
    kappa = 2.0 * torch.sin(angle) / chord
    return _nanmean_last(torch.where(chord > 0, kappa, torch.full_like(kappa, torch.nan)))


def path_curvatures(r: Tensor, *, normalize: bool = True, rtol: float = DEFAULT_RTOL) -> dict[str, Tensor]:
    """All of :data:`CURVATURES` for a batch of paths ``(..., n_steps, d)``; each ``(...)``."""
    return {
        "second_difference": second_difference_curvature(r, normalize=normalize),
        "turning": turning_curvature(r, normalize=normalize, rtol=rtol),
        "menger": menger_curvature(r, normalize=normalize, rtol=rtol),
    }


def augmentation_path(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    name: str,
    values: Sequence[float] | Tensor,
    *,
    base: Mapping[str, Tensor] | None = None,
    noise: augment.AugmentNoise | None = None,
    interpolation: augment.Interpolation = "bilinear",
    padding_mode: augment.PaddingMode = "reflection",
) -> Tensor:
    r"""Representations :math:`f(t_{\xi} x)` along a sweep of parameter ``name`` over ``values``, in one batch.

    Args:
        f: Map of a batch of images to representations ``(N, d)``, acting on images independently.
        x: Images ``(B, C, H, W)``.
        name: One of :data:`geomhead.augment.PARAM_NAMES`.
        values: The ``n`` swept values (radians for ``angle``, log factors for scale/brightness/contrast, …).
        base: Values of the other parameters (default the identity).
        noise: Flip signs and unit noise field (``noise`` sweeps scale it).
        interpolation: Resampling.
        padding_mode: Padding outside the image.

    Returns:
        ``(B, n, d)``.

    Raises:
        ValueError: On an unknown ``name``, fewer than 3 values, or ``"noise"`` without ``noise``.
    """
    if name not in augment.PARAM_NAMES:
        raise ValueError(f"name must be one of {list(augment.PARAM_NAMES)}, got {name!r}")
    vals = torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1)
    if vals.numel() < 3:
        raise ValueError(f"values must hold at least 3 parameter values, got {vals.numel()}")
    if name == "noise" and noise is None:
        raise ValueError("name='noise' needs noise=AugmentNoise(...) holding the unit field eps")
    b, n = x.shape[0], vals.numel()
    params0 = dict(augment.identity_params(b, dtype=x.dtype, device=x.device) if base is None else base)
    params = {k: v.repeat_interleave(n) for k, v in params0.items()}
    params[name] = params[name] + vals.repeat(b)
    rep_noise = (
        None if noise is None else augment.AugmentNoise(flip=noise.flip.repeat_interleave(n), eps=noise.eps.repeat_interleave(n, dim=0))
    )
    images = augment.apply(x.repeat_interleave(n, dim=0), params, rep_noise, interpolation=interpolation, padding_mode=padding_mode)
    out = f(images)
    return out.reshape(b, n, *out.shape[1:])
