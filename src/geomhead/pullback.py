r"""Pullback metric of a projection head, at every layer, with and without the loss's L2 normalisation.

For a head map :math:`g: \mathbb{R}^d \to \mathbb{R}^k` evaluated at a representation :math:`x`
(the backbone output z, or the input of a later block, see
:meth:`geomhead.heads.ProjectionHead.layer_inputs`), with Jacobian :math:`J = \partial g/\partial x
\in \mathbb{R}^{k\times d}`, the pullback of the Euclidean metric of the output space is

.. math:: G(x) = J^\top J \in \mathbb{R}^{d\times d},\qquad v^\top G v = \|J v\|^2 .

Losses that compare directions (SimSiam, BYOL, InfoNCE, NT-Xent) see :math:`\hat h = h/\|h\|`, whose
Jacobian is

.. math:: \tilde J = \frac{(I - \hat u\hat u^\top) J}{\|h\|},\qquad \hat u = h/\|h\|,

so the metric the loss actually sees is :math:`\tilde G = \tilde J^\top \tilde J` (normalisation
``"l2"``; ``"none"`` is :math:`G`). VICReg and Barlow Twins do not L2-normalise; both are reported
for every run. :math:`\tilde G` is singular along every direction that only rescales ``h`` — for a
bias-free linear or ReLU head (positively homogeneous, :math:`J x = h`) that includes ``x`` itself.

Spectra come from ``eigvalsh`` of the Gram matrix (:math:`J J^\top`, padded with zeros to ``d``,
when ``k < d``: same nonzero eigenvalues), clamped at 0: absolute accuracy about
:math:`\epsilon\,\lambda_{max}`, enough for the default ``rtol`` of 1e-10 in float64.
:meth:`LayerJacobian.metrics` gets :math:`\tilde G` from :math:`G` by the rank-one downdate
:math:`\tilde G = (G - g g^\top)/\|h\|^2`, :math:`g = J^\top\hat u`. Summaries per
point: effective rank :math:`\exp(-\sum_i p_i\log p_i)`, :math:`p = \lambda/\sum\lambda`; numerical
rank :math:`\#\{\lambda_i > \mathrm{rtol}\,\lambda_{max}\}`; condition number over the numerically
nonzero spectrum :math:`\lambda_{max}/\min\{\lambda_i > \mathrm{rtol}\,\lambda_{max}\}`; trace.

Jacobians of a batch of points are computed at once with ``torch.func.vmap`` of ``jacfwd`` (when
``d <= k``) or ``jacrev``; no Python loop runs over samples. A batch whose Jacobians are all equal
(a last Linear layer without BatchNorm) is eigen-decomposed once. Use float64 inputs and a float64 head for
anything that is checked numerically.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from geomhead.checks import float_tensor
from geomhead.metrics import effective_rank

__all__ = [
    "NORMALIZATIONS",
    "LayerJacobian",
    "MetricSpectrum",
    "batched_jacobian",
    "condition_number",
    "effective_rank",
    "head_layer_jacobians",
    "metric_spectrum",
    "normalized_jacobian",
    "normalized_metric",
    "numerical_rank",
    "pullback_metric",
    "spectrum",
]

NORMALIZATIONS: tuple[str, ...] = ("none", "l2")
"""``"none"``: the head output h as is; ``"l2"``: h/‖h‖ as the normalising losses see it."""

Normalization = Literal["none", "l2"]
JacobianMode = Literal["auto", "forward", "reverse"]
DEFAULT_RTOL = 1e-10
_JIT_WARNING = r"`torch\.jit\.script` is deprecated"


@dataclass(frozen=True)
class MetricSpectrum:
    """Spectrum of :math:`G = J^\\top J` at a batch of points, with per-point summaries.

    Attributes:
        eigenvalues: ``(B, d)``, descending, non-negative.
        effective_rank: ``(B,)`` Roy–Vetterli effective rank.
        rank: ``(B,)`` numerical rank (eigenvalues above ``rtol`` times the largest).
        condition_number: ``(B,)`` largest over smallest numerically nonzero eigenvalue (NaN if G = 0).
        trace: ``(B,)`` :math:`\\mathrm{tr}\\,G = \\|J\\|_F^2`.
    """

    eigenvalues: Tensor
    effective_rank: Tensor
    rank: Tensor
    condition_number: Tensor
    trace: Tensor


def batched_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, *, mode: JacobianMode = "auto") -> Tensor:
    r"""Per-sample Jacobians :math:`J_b = \partial\,\mathrm{fn}(x)_b / \partial x_b` of a row-wise map.

    ``fn`` maps a batch ``(n, d)`` to ``(n, k)`` and must act on rows independently (a head in eval
    mode, or without BatchNorm); it is called on single rows under ``torch.func.vmap``.

    Args:
        fn: Row-wise map, differentiable by ``torch.func``.
        x: Points ``(B, d)``.
        mode: ``"forward"`` (``jacfwd``, d forward passes), ``"reverse"`` (``jacrev``, k backward
            passes) or ``"auto"`` (forward when ``d <= k``).

    Returns:
        ``(B, k, d)``.

    Raises:
        ValueError: On a bad ``x`` or ``mode``.
    """
    float_tensor("x", x, 2)
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")

    def single(row: Tensor) -> Tensor:
        return fn(row.unsqueeze(0)).squeeze(0)

    if mode == "auto":
        with torch.no_grad():
            k = fn(x[:1]).shape[-1]
        mode = "forward" if x.shape[1] <= k else "reverse"
    jac = torch.func.jacfwd(single) if mode == "forward" else torch.func.jacrev(single)
    with warnings.catch_warnings():
        # torch's first forward-mode call scripts its jvp decompositions and warns about torch.jit.
        warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
        return torch.func.vmap(jac)(x)


def normalized_jacobian(jac: Tensor, h: Tensor) -> Tensor:
    r"""Jacobian of :math:`\hat h = h/\|h\|` given that of h: :math:`\tilde J = (I - \hat u\hat u^\top)J/\|h\|`.

    Args:
        jac: ``(B, k, d)`` Jacobians of h.
        h: ``(B, k)`` head outputs at the same points.

    Returns:
        ``(B, k, d)``.

    Raises:
        ValueError: On mismatched shapes or a zero ``h``.
    """
    float_tensor("jac", jac, 3)
    float_tensor("h", h, 2)
    if h.shape != jac.shape[:2]:
        raise ValueError(f"h must have shape {tuple(jac.shape[:2])} to match jac {tuple(jac.shape)}, got {tuple(h.shape)}")
    norm = torch.linalg.vector_norm(h, dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("h has a zero row; its L2 normalisation is undefined there")
    u = h / norm
    radial = u.unsqueeze(2) * torch.einsum("bk,bkd->bd", u, jac).unsqueeze(1)
    return (jac - radial) / norm.unsqueeze(2)


def _constant(batch: Tensor) -> bool:
    """Whether every entry of a batch (dim 0) equals the first."""
    return batch.shape[0] > 1 and torch.equal(batch, batch[:1].expand_as(batch))


def pullback_metric(jac: Tensor) -> Tensor:
    r""":math:`G = J^\top J` per point, ``(B, k, d) -> (B, d, d)`` (computed once when all Jacobians are equal)."""
    float_tensor("jac", jac, 3)
    if _constant(jac):
        return (jac[:1].transpose(1, 2) @ jac[:1]).expand(jac.shape[0], -1, -1)
    return jac.transpose(1, 2) @ jac


def normalized_metric(metric: Tensor, jac: Tensor, h: Tensor) -> Tensor:
    r"""The L2-normalised metric from the plain one: :math:`\tilde G = (G - g g^\top)/\|h\|^2`, :math:`g = J^\top \hat u`.

    Equals :math:`\tilde J^\top \tilde J` (:func:`normalized_jacobian`) without a second Gram product;
    the radial direction cancels to about :math:`\epsilon\,\lambda_{max}` instead of exactly.

    Args:
        metric: ``(B, d, d)`` plain metrics :math:`J^\top J`.
        jac: ``(B, k, d)`` Jacobians of h.
        h: ``(B, k)`` head outputs.

    Returns:
        ``(B, d, d)``.

    Raises:
        ValueError: On mismatched shapes or a zero ``h``.
    """
    float_tensor("metric", metric, 3)
    float_tensor("jac", jac, 3)
    float_tensor("h", h, 2)
    if h.shape != jac.shape[:2] or metric.shape != (jac.shape[0], jac.shape[2], jac.shape[2]):
        raise ValueError(f"need metric (B, d, d), jac (B, k, d), h (B, k); got {tuple(metric.shape)}, {tuple(jac.shape)}, {tuple(h.shape)}")
    norm2 = h.square().sum(dim=1)
    if bool((norm2 == 0).any()):
        raise ValueError("h has a zero row; its L2 normalisation is undefined there")
    g = torch.einsum("bk,bkd->bd", h, jac) / norm2.sqrt().unsqueeze(1)
    return (metric - g.unsqueeze(2) * g.unsqueeze(1)) / norm2.view(-1, 1, 1)


def numerical_rank(eigenvalues: Tensor, rtol: float = DEFAULT_RTOL) -> Tensor:
    r""":math:`\#\{\lambda_i > \mathrm{rtol}\,\lambda_{max}\}` along the last dim (an integer tensor)."""
    top = eigenvalues.amax(dim=-1, keepdim=True)
    return ((eigenvalues > rtol * top) & (top > 0)).sum(dim=-1)


def condition_number(eigenvalues: Tensor, rtol: float = DEFAULT_RTOL) -> Tensor:
    r""":math:`\lambda_{max}/\min\{\lambda_i > \mathrm{rtol}\,\lambda_{max}\}` along the last dim; NaN where all are 0."""
    top = eigenvalues.amax(dim=-1)
    kept = torch.where(eigenvalues > rtol * top.unsqueeze(-1), eigenvalues, torch.full_like(eigenvalues, torch.inf))
    low = kept.amin(dim=-1)
    return torch.where(top > 0, top / low, torch.full_like(top, torch.nan))


def spectrum(metric: Tensor, *, rtol: float = DEFAULT_RTOL) -> MetricSpectrum:
    """Spectrum of symmetric PSD metrics ``(B, d, d)`` and its per-point summaries (eigensolved once if all are equal).

    Args:
        metric: ``(B, d, d)``, symmetrised before ``eigvalsh``; eigenvalues are clamped at 0.
        rtol: Relative threshold below which an eigenvalue counts as zero.

    Returns:
        The :class:`MetricSpectrum`.

    Raises:
        ValueError: On a bad ``metric`` or ``rtol``.
    """
    float_tensor("metric", metric, 3)
    if metric.shape[1] != metric.shape[2]:
        raise ValueError(f"metric must be a batch of square matrices, got shape {tuple(metric.shape)}")
    if not 0.0 <= rtol < 1.0:
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    b = metric.shape[0]
    if _constant(metric):
        one = spectrum(metric[:1], rtol=rtol)
        return MetricSpectrum(
            *(t.expand(b, *t.shape[1:]) for t in (one.eigenvalues, one.effective_rank, one.rank, one.condition_number, one.trace))
        )
    lam = torch.linalg.eigvalsh(0.5 * (metric + metric.transpose(1, 2))).flip(-1).clamp_min(0.0)
    return _summaries(lam, rtol)


def _summaries(lam: Tensor, rtol: float) -> MetricSpectrum:
    return MetricSpectrum(
        eigenvalues=lam,
        effective_rank=effective_rank(lam),
        rank=numerical_rank(lam, rtol),
        condition_number=condition_number(lam, rtol),
        trace=lam.sum(dim=1),
    )


def metric_spectrum(jac: Tensor, *, rtol: float = DEFAULT_RTOL) -> MetricSpectrum:
    """Spectrum of :math:`G = J^\\top J` from Jacobians ``(B, k, d)`` (via the smaller Gram matrix; see :func:`spectrum`).

    Raises:
        ValueError: On a bad ``jac`` or ``rtol``.
    """
    float_tensor("jac", jac, 3)
    b, k, d = jac.shape
    if k >= d:
        return spectrum(pullback_metric(jac), rtol=rtol)
    small = spectrum(jac @ jac.transpose(1, 2), rtol=rtol)
    lam = torch.cat([small.eigenvalues, torch.zeros(b, d - k, dtype=jac.dtype, device=jac.device)], dim=1)
    return _summaries(lam, rtol)


@dataclass(frozen=True)
class LayerJacobian:
    """Jacobians of the head from one layer to its output at a batch of points.

    Attributes:
        name: Layer name (``"z"``, ``"block1"``, …).
        x: ``(B, d)`` the layer's inputs.
        h: ``(B, k)`` head outputs.
        jac: ``(B, k, d)`` Jacobian of h w.r.t. x.
    """

    name: str
    x: Tensor
    h: Tensor
    jac: Tensor

    def jacobian(self, normalization: str) -> Tensor:
        """:math:`J` (``"none"``) or :math:`\\tilde J` (``"l2"``)."""
        _check_normalization(normalization)
        return self.jac if normalization == "none" else normalized_jacobian(self.jac, self.h)

    def metrics(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{normalization: (Jacobian, metric)}`` for both normalisations, one Gram product in all."""
        plain = pullback_metric(self.jac)
        return {"none": (self.jac, plain), "l2": (self.jacobian("l2"), normalized_metric(plain, self.jac, self.h))}


def _check_normalization(name: str) -> None:
    if name not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {list(NORMALIZATIONS)}, got {name!r}")


def head_layer_jacobians(head: nn.Module, z: Tensor, *, mode: JacobianMode = "auto") -> list[LayerJacobian]:
    """Jacobians of a :class:`~geomhead.heads.ProjectionHead` from every layer to its output.

    For layer ``l`` (names from ``head.layer_names``: ``"z"`` and each later block input) the map is
    ``x ↦ head.forward_from(x, l)`` at ``x = head.layer_inputs(z)[l]``. The head must act on rows
    independently (eval mode, or no BatchNorm); the caller picks the dtype (use float64).

    Args:
        head: The head (``layer_names``, ``layer_inputs``, ``forward_from``).
        z: Backbone representations ``(B, in_dim)``.
        mode: Passed to :func:`batched_jacobian`.

    Returns:
        One :class:`LayerJacobian` per layer, in order.
    """
    with torch.no_grad():
        inputs = [x.detach() for x in head.layer_inputs(z)]
        h = head(z).detach()
    return [
        LayerJacobian(name, x, h, batched_jacobian(lambda v, i=index: head.forward_from(v, i), x, mode=mode))
        for index, (name, x) in enumerate(zip(head.layer_names, inputs, strict=True))
    ]
