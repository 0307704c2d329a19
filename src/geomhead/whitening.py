r"""Implicit subspace whitening by a linear head (PAPER §14.1, Thm 3.1), measured on trained heads.

For a linear (or affine: eval-mode BatchNorm) head :math:`h = W z + b`, :math:`W \in \mathbb{R}^{k\times d}`,
the interaction term of the effective Hessian vanishes and

.. math:: H_{eff} = W^\top H_L W,\qquad H_L = \nabla_h^2 \ell ,

and the head's similarity :math:`\langle W z_i, W z_j\rangle = z_i^\top (W^\top W) z_j` is a
Mahalanobis metric. Thm 3.1: for any r-dimensional subspace S (r = rank of :math:`H_L`) some W makes
:math:`H_{eff}` isotropic on S (:math:`W = U_r\Lambda_r^{-1/2}B^\top`). Two empirical questions:

* **Conditioning.** :math:`\bar H_L^+` is the positive part (negative eigenvalues set to 0) of the
  mean of the per-anchor loss Hessians (the cosine losses make :math:`H_L` indefinite, PAPER §8.1),
  :math:`\bar H_{eff}^+ = W^\top \bar H_L^+ W`, and S the span of its top-r eigenvectors :math:`B_S`
  (the *loss-relevant subspace*). ``heff_condition`` :math:`= \lambda_1/\lambda_r` of
  :math:`\bar H_{eff}^+` (1 for the theorem's whitening head) against ``hl_condition``
  :math:`= \lambda_1/\lambda_r` of :math:`\bar H_L^+` (what an isometric head onto the top loss
  directions would give).
* **Metric vs data.** With :math:`M_S = B_S^\top W^\top W B_S` (the head's metric on S) and
  :math:`C_S = B_S^\top \Sigma_z B_S` (the covariance of the representations projected on S), the
  head whitens the data on S iff :math:`M_S \propto C_S^{-1}`: ``metric_condition``
  :math:`= \kappa(C_S^{1/2} M_S C_S^{1/2})` (1 when it whitens; :math:`\kappa(C_S)` =
  ``data_condition`` when :math:`W^\top W = I`), and ``metric_alignment`` = the cosine
  :math:`\langle M_S, C_S^{-1}\rangle_F / (\|M_S\|_F \|C_S^{-1}\|_F) \in (0, 1]`.

Per-anchor loss Hessians: the loss is a function of a batch of head outputs; the Hessian of anchor
``i`` is that of :math:`u \mapsto L(h \text{ with row } i \text{ replaced by } u)` at :math:`u = h_i`
(the rest of the batch, the other view and stop-gradient targets held fixed): the anchor's diagonal
block of the batch Hessian, exactly the per-sample Hessian for per-sample losses (SimSiam, BYOL,
one-directional InfoNCE w.r.t. view 1). ``scale`` converts a batch-mean loss to the per-sample scale
(``scale = B``). Computed with ``torch.func.hessian`` under ``vmap`` over anchors. Only the loss
Hessian on the range of W enters :math:`H_{eff}`, so it may be taken in an orthonormal basis Q of
that range (:func:`range_basis`, d instead of k directions: 4× cheaper for the default 64 → 256
head); :math:`\bar H_L` then means :math:`Q^\top \bar H_L Q`, the loss curvature on the head's range,
and ``hl_condition`` is what a head :math:`W = Q` (an isometry onto the same range) would give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from geomhead.metrics import condition_number
from geomhead.pullback import batched_jacobian

__all__ = [
    "WhiteningReport",
    "affine_jacobian",
    "anchor_loss_hessians",
    "covariance",
    "positive_part",
    "range_basis",
    "whitening_report",
]


@dataclass(frozen=True)
class WhiteningReport:
    """Whitening and conditioning of a linear head on the loss-relevant subspace (module docstring).

    Attributes:
        rank: r, the dimension of S.
        heff_eigenvalues: ``(r,)`` top eigenvalues of :math:`W^\\top \\bar H_L^+ W`, descending.
        hl_eigenvalues: ``(r,)`` top eigenvalues of :math:`\\bar H_L^+`, descending.
        heff_condition: λ_1/λ_r of the effective Hessian.
        hl_condition: λ_1/λ_r of the loss Hessian.
        metric_condition: κ(C_S^{1/2} M_S C_S^{1/2}).
        data_condition: κ(C_S).
        metric_alignment: Frobenius cosine between M_S and C_S^{-1}.
    """

    rank: int
    heff_eigenvalues: np.ndarray
    hl_eigenvalues: np.ndarray
    heff_condition: float
    hl_condition: float
    metric_condition: float
    data_condition: float
    metric_alignment: float


def affine_jacobian(
    fn: Callable[[Tensor], Tensor],
    dim: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    rtol: float = 1e-8,
) -> Tensor:
    """The constant Jacobian W of an affine row-wise map, checked at the origin and at a random point.

    Args:
        fn: Row-wise map ``(n, dim) → (n, k)``.
        dim: Input dimension.
        dtype: Dtype of the probe points.
        device: Device of the probe points (that of ``fn``).
        generator: Source of the random point (a CPU generator).
        rtol: Allowed relative difference of the two Jacobians.

    Returns:
        ``(k, dim)``.

    Raises:
        ValueError: If the two Jacobians differ (the map is not affine).
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    random = torch.randn(dim, generator=generator, dtype=torch.float64)
    points = torch.stack([torch.zeros_like(random), random]).to(device=device, dtype=dtype)
    jac = batched_jacobian(fn, points)
    scale = float(jac[0].abs().max())
    err = float((jac[0] - jac[1]).abs().max())
    if err > rtol * max(scale, 1e-300):
        raise ValueError(f"the map is not affine: its Jacobian changes by {err:.3g} (scale {scale:.3g}) between two points")
    return jac[0]


def anchor_loss_hessians(
    loss: Callable[[Tensor], Tensor],
    h: Tensor,
    anchors: Sequence[int] | Tensor,
    *,
    scale: float = 1.0,
    basis: Tensor | None = None,
) -> Tensor:
    r"""Per-anchor Hessians :math:`\nabla^2_{h_i} L(h)` of a batch loss, the rest of the batch held fixed.

    With ``basis`` :math:`Q \in \mathbb{R}^{k\times m}` the Hessian is taken in the coordinates
    :math:`h_i + Q v` at :math:`v = 0`, i.e. :math:`Q^\top \nabla^2 L\, Q` (m instead of k forward
    passes per anchor: the cost that matters for batch-coupled losses such as VICReg).

    Args:
        loss: Scalar loss of a batch of head outputs ``(B, k)``, differentiable twice by ``torch.func``.
        h: The batch ``(B, k)``.
        anchors: Row indices.
        scale: Factor applied to every Hessian (``B`` turns a batch mean into per-sample scale).
        basis: Optional ``(k, m)`` directions (default: the identity, the full k×k Hessian).

    Returns:
        ``(A, k, k)`` or ``(A, m, m)``, symmetrised.

    Raises:
        ValueError: On a bad ``h`` or ``basis``, or out-of-range anchors.
    """
    if not isinstance(h, Tensor) or h.ndim != 2 or not h.is_floating_point():
        raise ValueError(f"h must be a floating (B, k) tensor, got {tuple(getattr(h, 'shape', ()))}")
    if basis is not None and (not isinstance(basis, Tensor) or basis.ndim != 2 or basis.shape[0] != h.shape[1]):
        raise ValueError(f"basis must be a ({h.shape[1]}, m) tensor, got {tuple(getattr(basis, 'shape', ()))}")
    idx = torch.as_tensor(anchors, dtype=torch.int64, device=h.device).reshape(-1)
    if idx.numel() == 0 or bool((idx < 0).any()) or bool((idx >= h.shape[0]).any()):
        raise ValueError(f"anchors must be non-empty row indices in [0, {h.shape[0]}), got {idx.tolist()}")
    rows = torch.arange(h.shape[0], device=h.device)
    fixed = h.detach()
    q = None if basis is None else basis.to(dtype=h.dtype, device=h.device)

    def hess(i: Tensor, row: Tensor) -> Tensor:
        mask = (rows == i).unsqueeze(1)

        def of_anchor(v: Tensor) -> Tensor:
            u = row + v if q is None else row + q @ v
            return loss(torch.where(mask, u.unsqueeze(0), fixed))

        start = torch.zeros(h.shape[1] if q is None else q.shape[1], dtype=h.dtype, device=h.device)
        return torch.func.hessian(of_anchor)(start)

    out = torch.func.vmap(hess)(idx, fixed[idx]) * scale
    return 0.5 * (out + out.transpose(1, 2))


def range_basis(weight: Tensor, rtol: float = 1e-10) -> Tensor:
    r"""Orthonormal basis ``(k, m)`` of the range of ``weight (k, d)``: left singular vectors with :math:`\sigma > \mathrm{rtol}\,\sigma_{max}`.

    Raises:
        ValueError: If ``weight`` is not 2-D or is zero.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a (k, d) tensor, got {tuple(getattr(weight, 'shape', ()))}")
    u, sigma, _ = torch.linalg.svd(weight, full_matrices=False)
    if float(sigma.max()) == 0.0:
        raise ValueError("weight is zero; its range is {0}")
    return u[:, sigma > rtol * sigma.max()]


def positive_part(matrix: Tensor) -> Tensor:
    r""":math:`U \max(\Lambda, 0) U^\top` of a symmetric matrix (or batch), i.e. the nearest PSD matrix in Frobenius norm."""
    sym = 0.5 * (matrix + matrix.transpose(-1, -2))
    lam, vec = torch.linalg.eigh(sym)
    return (vec * lam.clamp_min(0.0).unsqueeze(-2)) @ vec.transpose(-1, -2)


def covariance(x: Tensor) -> Tensor:
    r"""Unbiased covariance :math:`\frac{1}{n-1} X_c^\top X_c` of rows ``(n, d)``.

    Raises:
        ValueError: If there are fewer than 2 rows.
    """
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be an (n >= 2, d) tensor, got {tuple(getattr(x, 'shape', ()))}")
    xc = x - x.mean(dim=0, keepdim=True)
    return xc.T @ xc / (x.shape[0] - 1)


def _condition(lam: Tensor) -> float:
    return float(condition_number(lam))


def whitening_report(weight: Tensor, loss_hessians: Tensor, z: Tensor, rank: int, *, basis: Tensor | None = None) -> WhiteningReport:
    """Conditioning of H_eff against H_L and of the head metric against the data, on S (module docstring).

    Args:
        weight: The head's linear map W ``(k, d)`` (see :func:`affine_jacobian`).
        loss_hessians: Per-anchor loss Hessians at the head outputs, ``(A, k, k)``, or ``(A, m, m)``
            in the coordinates of ``basis``.
        z: Representations ``(n, d)`` for the covariance Σ_z (n > d advisable).
        rank: r, dimension of the loss-relevant subspace, ``1 <= r <= min(d, m)``.
        basis: ``(k, m)`` orthonormal columns whose span contains the range of W (e.g.
            :func:`range_basis`); then :math:`\bar H_L` is the loss Hessian seen on that span.

    Returns:
        The :class:`WhiteningReport`.

    Raises:
        ValueError: On inconsistent shapes, a basis that misses the range of W, or a bad ``rank``.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a (k, d) tensor, got {tuple(getattr(weight, 'shape', ()))}")
    k, d = weight.shape
    cpu = {"device": "cpu", "dtype": torch.float64}  # small matrices: computed on the CPU in float64
    w = weight.detach().to(**cpu)
    q = torch.eye(k, **cpu) if basis is None else basis.detach().to(**cpu)
    if q.ndim != 2 or q.shape[0] != k:
        raise ValueError(f"basis must have shape ({k}, m), got {tuple(q.shape)}")
    m = q.shape[1]
    if float(torch.linalg.matrix_norm(w - q @ (q.T @ w))) > 1e-8 * max(float(torch.linalg.matrix_norm(w)), 1e-300):
        raise ValueError("basis must span the range of weight (weight - Q Q^T weight is not 0)")
    if not isinstance(loss_hessians, Tensor) or loss_hessians.ndim != 3 or loss_hessians.shape[1:] != (m, m):
        raise ValueError(f"loss_hessians must have shape (A, {m}, {m}), got {tuple(getattr(loss_hessians, 'shape', ()))}")
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != d:
        raise ValueError(f"z must have shape (n, {d}), got {tuple(getattr(z, 'shape', ()))}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(d, m):
        raise ValueError(f"rank must be an int in [1, {min(d, m)}], got {rank!r}")
    hl = positive_part(loss_hessians.detach().to(**cpu).mean(dim=0))
    wq = q.T @ w  # W in the basis coordinates, (m, d)
    heff = wq.T @ hl @ wq
    heff_lam, heff_vec = torch.linalg.eigh(0.5 * (heff + heff.T))
    hl_lam = torch.linalg.eigvalsh(hl)
    top_heff = heff_lam.flip(0)[:rank]
    top_hl = hl_lam.flip(0)[:rank]
    s_basis = heff_vec.flip(1)[:, :rank]  # (d, r)
    m_s = s_basis.T @ (w.T @ w) @ s_basis
    c_s = s_basis.T @ covariance(z.detach().to(**cpu)) @ s_basis
    c_lam, c_vec = torch.linalg.eigh(0.5 * (c_s + c_s.T))
    c_half = (c_vec * c_lam.clamp_min(0.0).sqrt().unsqueeze(0)) @ c_vec.T
    whitened = c_half @ m_s @ c_half
    if float(c_lam.min()) > 0:
        c_inv = (c_vec / c_lam.unsqueeze(0)) @ c_vec.T
        alignment = float((m_s * c_inv).sum() / (torch.linalg.matrix_norm(m_s) * torch.linalg.matrix_norm(c_inv)))
    else:
        alignment = float("nan")
    return WhiteningReport(
        rank=rank,
        heff_eigenvalues=top_heff.cpu().numpy().copy(),
        hl_eigenvalues=top_hl.cpu().numpy().copy(),
        heff_condition=_condition(top_heff),
        hl_condition=_condition(top_hl),
        metric_condition=_condition(torch.linalg.eigvalsh(0.5 * (whitened + whitened.T))),
        data_condition=_condition(c_lam),
        metric_alignment=alignment,
    )
