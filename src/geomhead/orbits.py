r"""Augmentation-orbit metrics (PAPER §11), on plain arrays, with every convention an argument.

An *orbit* is the set of representations of one image under a sweep of one augmentation (the
paper: 12 rotations 0°, 30°, …, 330° of 3 images from each of 5 classes). Given representations
``x`` (rows), orbit ids and class labels, with rows L2-normalised first when ``normalize`` (the
paper's convention):

* spread of orbit :math:`o`: :math:`s_o = \operatorname{mean}_{t\in o}\|x_t - \bar x_o\|^2`
  (``"total"``: summed over dimensions, the trace of the orbit's population covariance — the
  paper's 21.85×), or :math:`s_o/d` (``"per_dim"``: mean per-dimension variance, the convention of
  the author's pretrained-checkpoint notebook; 87.4× on the same data when :math:`d_h/d_z = 4`);
  *mean orbit spread* :math:`S = \operatorname{mean}_o s_o` (± ``np.std`` over orbits);
* :math:`D_{intra} = \operatorname{mean}_o \operatorname{mean}_{t<t'}\|x_t - x_{t'}\|` (± std over orbits);
* :math:`D_{inter}` = mean pairwise distance between class centroids (centroid = mean of all rows of
  the class) (± std over pairs);
* ratio :math:`R = D_{inter}/(D_{intra} + \epsilon)`, ± by naive error propagation
  :math:`R\sqrt{(\sigma_{inter}/D_{inter})^2 + (\sigma_{intra}/D_{intra})^2}`;
* compression :math:`S_z/(S_h + \epsilon)` (computed from the two mean spreads, *not* the mean of
  per-orbit ratios, which is a different quantity), separation gain :math:`R_h/R_z`, and the
  reductions :math:`D_{intra,z}/D_{intra,h}`, :math:`D_{inter,z}/D_{inter,h}`.

:math:`\epsilon` is 0 by default; the paper's code adds ``1e-10`` (it matters only for tiny spreads:
the ViT's 4015.33× needs it, 4015.475× without). :func:`paper_orbit_metrics` is the paper's exact
convention: total spread, ``eps = 1e-10``, L2-normalised rows.

Which head input produced ``h`` is the caller's choice and changes the numbers: the paper's orbit
experiment feeds the head the *L2-normalised* z, :math:`h = \mathrm{normalize}(g(z/\|z\|))`, while
training and its curvature experiment feed the raw z (PAPER §11, §17.4). All arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import pdist

__all__ = [
    "PAPER_EPS",
    "SPREAD_CONVENTIONS",
    "OrbitMetrics",
    "OrbitStats",
    "orbit_metrics",
    "orbit_pca",
    "orbit_stats",
    "paper_orbit_metrics",
]

SPREAD_CONVENTIONS: tuple[str, ...] = ("total", "per_dim")
PAPER_EPS: float = 1e-10
PAPER_PCA_SEED: int = 42
SpreadConvention = Literal["total", "per_dim"]


@dataclass(frozen=True)
class OrbitStats:
    """Orbit geometry of one representation space (see the module docstring for the formulas).

    Attributes:
        spread: Mean orbit spread S.
        spread_std: Std of the per-orbit spreads (ddof 0).
        d_intra: Mean within-orbit pairwise distance.
        d_intra_std: Std over orbits.
        d_inter: Mean pairwise distance between class centroids.
        d_inter_std: Std over centroid pairs.
        ratio: D_inter / (D_intra + eps).
        ratio_std: Naive error propagation of the two stds.
        per_orbit_spread: ``(n_orbits,)`` spreads, orbits in ascending id order.
        dim: Dimension of the space.
    """

    spread: float
    spread_std: float
    d_intra: float
    d_intra_std: float
    d_inter: float
    d_inter_std: float
    ratio: float
    ratio_std: float
    per_orbit_spread: np.ndarray
    dim: int


@dataclass(frozen=True)
class OrbitMetrics:
    """Orbit geometry of z and h and the paper's z→h comparisons.

    Attributes:
        z: Stats of the backbone representations.
        h: Stats of the head outputs.
        compression: S_z / (S_h + eps).
        separation_gain: R_h / R_z.
        intra_reduction: D_intra,z / D_intra,h.
        inter_reduction: D_inter,z / D_inter,h.
        spread_convention: ``"total"`` or ``"per_dim"``.
        eps: The epsilon used.
        normalize: Whether rows were L2-normalised.
    """

    z: OrbitStats
    h: OrbitStats
    compression: float
    separation_gain: float
    intra_reduction: float
    inter_reduction: float
    spread_convention: str
    eps: float
    normalize: bool


def _as_rows(name: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (n >= 2 rows, d >= 1), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _as_ids(name: str, x: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one entry per row), got {arr.shape}")
    return arr


def _check_options(spread: str, eps: float) -> None:
    if spread not in SPREAD_CONVENTIONS:
        raise ValueError(f"spread must be one of {list(SPREAD_CONVENTIONS)}, got {spread!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")


def _divide(a: float, b: float) -> float:
    return a / b if b != 0 else (np.nan if a == 0 else np.inf)


def orbit_stats(
    x: ArrayLike,
    orbit_ids: ArrayLike,
    labels: ArrayLike,
    *,
    spread: SpreadConvention = "total",
    eps: float = 0.0,
    normalize: bool = True,
) -> OrbitStats:
    """Orbit spread, D_intra, D_inter and their ratio in one representation space.

    Args:
        x: Representations ``(n, d)``.
        orbit_ids: ``(n,)`` orbit of each row; every orbit needs at least 2 rows.
        labels: ``(n,)`` class of each row; constant within an orbit; at least 2 classes.
        spread: ``"total"`` (sum over dimensions) or ``"per_dim"`` (divided by d).
        eps: Added to the denominator of the ratio.
        normalize: L2-normalise rows first (the paper does).

    Returns:
        The :class:`OrbitStats`.

    Raises:
        ValueError: On bad shapes, an orbit with one row or several labels, fewer than 2 classes,
            a zero row under ``normalize``, or a bad option.
    """
    _check_options(spread, eps)
    rows = _as_rows("x", x)
    n, d = rows.shape
    ids = _as_ids("orbit_ids", orbit_ids, n)
    lab = _as_ids("labels", labels, n)
    if normalize:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("x has a zero row; it cannot be L2-normalised (pass normalize=False)")
        rows = rows / norms
    spreads, intra = [], []
    for orbit in np.unique(ids):
        member = ids == orbit
        if member.sum() < 2:
            raise ValueError(f"orbit {orbit!s} has {int(member.sum())} row; every orbit needs at least 2")
        if len(np.unique(lab[member])) != 1:
            raise ValueError(f"orbit {orbit!s} has several class labels {np.unique(lab[member]).tolist()}; an orbit belongs to one class")
        pts = rows[member]
        spreads.append(np.mean(np.sum((pts - pts.mean(axis=0)) ** 2, axis=1)))
        intra.append(np.mean(pdist(pts)))
    classes = np.unique(lab)
    if len(classes) < 2:
        raise ValueError(f"labels must contain at least 2 classes for D_inter, got {classes.tolist()}")
    centroids = np.stack([rows[lab == c].mean(axis=0) for c in classes])
    inter = pdist(centroids)
    per_orbit = np.asarray(spreads) / (d if spread == "per_dim" else 1)
    d_intra, d_intra_std = float(np.mean(intra)), float(np.std(intra))
    d_inter, d_inter_std = float(np.mean(inter)), float(np.std(inter))
    ratio = _divide(d_inter, d_intra + eps)
    rel = np.hypot(_divide(d_inter_std, d_inter), _divide(d_intra_std, d_intra))
    return OrbitStats(
        spread=float(np.mean(per_orbit)),
        spread_std=float(np.std(per_orbit)),
        d_intra=d_intra,
        d_intra_std=d_intra_std,
        d_inter=d_inter,
        d_inter_std=d_inter_std,
        ratio=float(ratio),
        ratio_std=float(ratio * rel),
        per_orbit_spread=per_orbit,
        dim=d,
    )


def orbit_metrics(
    z: ArrayLike,
    h: ArrayLike,
    orbit_ids: ArrayLike,
    labels: ArrayLike,
    *,
    spread: SpreadConvention = "total",
    eps: float = 0.0,
    normalize: bool = True,
) -> OrbitMetrics:
    """Orbit geometry of z and h (same rows, same orbits) and the z→h compression.

    Args:
        z: Backbone representations ``(n, d_z)``.
        h: Head outputs of the same rows ``(n, d_h)`` (the caller decides whether the head saw raw
            or normalised z).
        orbit_ids: ``(n,)`` orbit of each row.
        labels: ``(n,)`` class of each row.
        spread: ``"total"`` or ``"per_dim"``.
        eps: The paper's ``1e-10`` or 0.
        normalize: L2-normalise rows of z and h first.

    Returns:
        The :class:`OrbitMetrics`.

    Raises:
        ValueError: As :func:`orbit_stats`, or if z and h have different row counts.
    """
    z_rows, h_rows = _as_rows("z", z), _as_rows("h", h)
    if z_rows.shape[0] != h_rows.shape[0]:
        raise ValueError(f"z and h must have the same number of rows, got {z_rows.shape[0]} and {h_rows.shape[0]}")
    sz = orbit_stats(z_rows, orbit_ids, labels, spread=spread, eps=eps, normalize=normalize)
    sh = orbit_stats(h_rows, orbit_ids, labels, spread=spread, eps=eps, normalize=normalize)
    return OrbitMetrics(
        z=sz,
        h=sh,
        compression=float(_divide(sz.spread, sh.spread + eps)),
        separation_gain=float(_divide(sh.ratio, sz.ratio)),
        intra_reduction=float(_divide(sz.d_intra, sh.d_intra)),
        inter_reduction=float(_divide(sz.d_inter, sh.d_inter)),
        spread_convention=spread,
        eps=float(eps),
        normalize=bool(normalize),
    )


def paper_orbit_metrics(z: ArrayLike, h: ArrayLike, orbit_ids: ArrayLike, labels: ArrayLike) -> OrbitMetrics:
    """The paper's exact convention: total spread, ``eps = 1e-10``, L2-normalised rows (PAPER §11)."""
    return orbit_metrics(z, h, orbit_ids, labels, spread="total", eps=PAPER_EPS, normalize=True)


def orbit_pca(x: ArrayLike, n_components: int = 2, *, normalize: bool = True, seed: int = PAPER_PCA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """PCA coordinates of orbit rows for the orbit figure (the paper: 2 components, ``random_state=42``,
    on L2-normalised rows; PAPER §11).

    Args:
        x: ``(n, d)`` representations.
        n_components: Number of principal components.
        normalize: L2-normalise rows first.
        seed: ``random_state`` of :class:`sklearn.decomposition.PCA`.

    Returns:
        ``(coords, explained)``: ``(n, n_components)`` coordinates and the fraction of variance each
        component explains.
    """
    from sklearn.decomposition import PCA

    rows = _as_rows("x", x)
    if normalize:
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    if not 1 <= n_components <= min(rows.shape):
        raise ValueError(f"n_components must be in 1..{min(rows.shape)} for {rows.shape} rows, got {n_components}")
    pca = PCA(n_components=n_components, random_state=seed)
    return pca.fit_transform(rows), pca.explained_variance_ratio_
