r"""Degeneracy of the head's pullback metric along augmentation directions (PAPER §14.5).

Augmentation tangents. For an augmentation :math:`t_\xi` with continuous parameters :math:`\xi`
(:data:`geomhead.augment.PARAM_NAMES`, :math:`\xi = 0` the identity) and an encoder ``f`` (the
backbone, or the backbone followed by the first blocks of the head), the tangent of parameter
:math:`a` at image ``x`` is

.. math:: v_a(x) = \frac{\partial}{\partial \xi_a} f(t_\xi x)\Big|_{\xi = 0},

computed by one ``torch.func.jvp`` per parameter through the differentiable augmentations
(:func:`geomhead.augment.tangent`). Bicubic resampling is the default here because bilinear
resampling is only one-sided differentiable at the identity.

Degeneracy index. With :math:`J` the Jacobian of the head from the layer where ``v`` lives to the
output (optionally L2-normalised, see :mod:`geomhead.pullback`) and :math:`q(w) = \|Jw\|^2/\|w\|^2`
the Rayleigh quotient of :math:`G = J^\top J`,

.. math:: D(v) = \frac{q(v)}{\operatorname{mean}_w q(w)} ,

with two references: ``random`` — isotropic random directions, whose mean Rayleigh quotient is
exactly :math:`\mathrm{tr}\,G/d` (for :math:`w \sim N(0, I)`, :math:`E[w^\top G w/w^\top w] = \mathrm{tr}\,G/d`),
so no sampling is needed (:func:`sampled_reference` checks it); ``principal`` — the top-``m``
principal directions :math:`u_j` of the data at that layer, :math:`\frac1m\sum_j u_j^\top G u_j`.
:math:`D = 0` means the head is exactly invariant along ``v`` (to first order), :math:`D = 1` means
``v`` is treated like a typical direction. A head with random weights gives :math:`D \approx 1` in
expectation for the ``random`` reference (the untrained control, reported beside the trained head).
That holds without normalisation: under the loss's L2 normalisation every head is blind to
rescaling of h, so tangents that mostly rescale z (brightness and contrast, for a nearly
homogeneous head) come out degenerate even for an untrained head — read ``l2`` values against the
untrained control, not against 1.

Position in the spectrum. :math:`\pi(v) = \#\{i: \lambda_i(G) < q(v) - \mathrm{rtol}\,\lambda_{max}\}/d
\in [0, 1)`: 0 when ``v`` sits at the bottom of the metric's spectrum (in its null space if
:math:`\lambda_{min} = 0`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from geomhead import augment
from geomhead.checks import float_tensor

__all__ = [
    "REFERENCES",
    "augmentation_tangents",
    "degeneracy_index",
    "direction_reference",
    "isotropic_reference",
    "principal_directions",
    "rayleigh_quotient",
    "sampled_reference",
    "spectrum_position",
]

REFERENCES: tuple[str, ...] = ("random", "principal")
"""Reference directions of the degeneracy index."""


def augmentation_tangents(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    names: Sequence[str],
    *,
    noise: augment.AugmentNoise | None = None,
    interpolation: augment.Interpolation = "bicubic",
    padding_mode: augment.PaddingMode = "reflection",
    base: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    r"""Tangents :math:`v_a = \partial_{\xi_a} f(t_\xi x)` at :math:`\xi` = ``base`` (default 0) for each name.

    One ``jvp`` per parameter, batched over images (``f`` must act on images independently).

    Args:
        f: Encoder of a batch of images (e.g. the backbone in eval mode).
        x: Images ``(B, C, H, W)``.
        names: Parameters from :data:`geomhead.augment.PARAM_NAMES`.
        noise: Flip signs and unit noise field (needed for ``"noise"``, whose tangent is
            :math:`\partial f \cdot \varepsilon`).
        interpolation: Resampling of the geometric part (bicubic: two-sided tangent at 0).
        padding_mode: Padding outside the image.
        base: Parameters to differentiate at; default the identity.

    Returns:
        ``{name: (B, d)}``, in the order of ``names``.

    Raises:
        ValueError: On an unknown or repeated name, or ``"noise"`` without ``noise``.
    """
    unknown = [n for n in names if n not in augment.PARAM_NAMES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"names must be distinct entries of {list(augment.PARAM_NAMES)}, got {list(names)}")
    return {
        name: augment.tangent(f, x, name, base=base, noise=noise, interpolation=interpolation, padding_mode=padding_mode) for name in names
    }


def rayleigh_quotient(jac: Tensor, v: Tensor) -> Tensor:
    r""":math:`q(v) = \|J v\|^2 / \|v\|^2` per point: ``jac (B, k, d)``, ``v (B, d)`` → ``(B,)``; NaN where ``v = 0``."""
    float_tensor("jac", jac, 3)
    float_tensor("v", v, 2)
    if v.shape != (jac.shape[0], jac.shape[2]):
        raise ValueError(f"v must have shape {(jac.shape[0], jac.shape[2])} to match jac {tuple(jac.shape)}, got {tuple(v.shape)}")
    num = torch.einsum("bkd,bd->bk", jac, v).square().sum(dim=1)
    den = v.square().sum(dim=1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, torch.nan))


def isotropic_reference(jac: Tensor) -> Tensor:
    r"""Mean Rayleigh quotient over isotropic random directions, exactly :math:`\mathrm{tr}(J^\top J)/d = \|J\|_F^2/d`."""
    float_tensor("jac", jac, 3)
    return jac.square().sum(dim=(1, 2)) / jac.shape[2]


def sampled_reference(jac: Tensor, n: int, generator: torch.Generator) -> Tensor:
    r"""Monte-Carlo mean of :math:`q(w)` over ``n`` Gaussian directions per point (checks :func:`isotropic_reference`).

    Raises:
        ValueError: If ``n`` is not a positive int.
    """
    float_tensor("jac", jac, 3)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    b, _, d = jac.shape
    w = torch.randn(b, n, d, generator=generator, dtype=torch.float64).to(dtype=jac.dtype, device=jac.device)
    num = torch.einsum("bkd,bnd->bnk", jac, w).square().sum(dim=2)
    return (num / w.square().sum(dim=2)).mean(dim=1)


def principal_directions(reps: Tensor, m: int) -> Tensor:
    r"""Top-``m`` principal directions (unit rows) of representations ``reps (n, d)``: eigenvectors of the covariance.

    Raises:
        ValueError: If ``m`` is not in ``[1, min(n - 1, d)]``.
    """
    float_tensor("reps", reps, 2)
    n, d = reps.shape
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= min(n - 1, d):
        raise ValueError(f"m must be an int in [1, {min(n - 1, d)}] for {n} representations of dim {d}, got {m!r}")
    centred = reps - reps.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (n - 1)
    _, vecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    return vecs[:, -m:].flip(-1).T.contiguous()


def direction_reference(jac: Tensor, directions: Tensor) -> Tensor:
    r"""Mean Rayleigh quotient over fixed directions ``(m, d)`` (shared by all points): :math:`\frac1m\sum_j q(u_j)`."""
    float_tensor("jac", jac, 3)
    float_tensor("directions", directions, 2)
    if directions.shape[1] != jac.shape[2]:
        raise ValueError(f"directions must have {jac.shape[2]} columns to match jac {tuple(jac.shape)}, got {tuple(directions.shape)}")
    num = torch.einsum("bkd,md->bmk", jac, directions).square().sum(dim=2)
    return (num / directions.square().sum(dim=1)).mean(dim=1)


def degeneracy_index(jac: Tensor, v: Tensor, reference: Tensor) -> Tensor:
    r""":math:`D(v) = q(v)/\mathrm{reference}` per point (``reference`` from :func:`isotropic_reference` or :func:`direction_reference`)."""
    q = rayleigh_quotient(jac, v)
    if not isinstance(reference, Tensor) or reference.shape != q.shape:
        raise ValueError(f"reference must be a tensor of shape {tuple(q.shape)}, got {tuple(getattr(reference, 'shape', ()))}")
    return q / reference


def spectrum_position(eigenvalues: Tensor, q: Tensor, *, rtol: float = 1e-10) -> Tensor:
    r""":math:`\#\{i: \lambda_i < q - \mathrm{rtol}\,\lambda_{max}\}/d` per point: ``eigenvalues (B, d)``, ``q (B,)`` → ``(B,)``.

    The tolerance keeps a tangent in the null space (``q`` zero up to rounding) at position 0 instead
    of above the numerically zero eigenvalues. NaN where ``q`` is NaN.
    """
    float_tensor("eigenvalues", eigenvalues, 2)
    if not isinstance(q, Tensor) or q.shape != eigenvalues.shape[:1]:
        raise ValueError(f"q must have shape {tuple(eigenvalues.shape[:1])}, got {tuple(getattr(q, 'shape', ()))}")
    if not 0.0 <= rtol < 1.0:
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    tol = rtol * eigenvalues.amax(dim=1)
    below = (eigenvalues < (q - tol).unsqueeze(1)).to(eigenvalues.dtype).mean(dim=1)
    return torch.where(torch.isnan(q), q, below)
