"""The curvature engine: spectra of H_eff, G, M and H_L for a head, a loss and a batch, per layer and over training.

Object (PAPER §0, §8). For the layer inputs X of the evaluated batch (the backbone output z at layer ``z``, the
input of projector block l at layer ``block{l}``), view 2 held fixed unless ``wrt="both"``, the operators are
the Hessian of the *summed* loss n·L(X) — for a per-sample loss (L = mean_b ℓ_b) this is blockdiag_b ∇²ℓ_b, so
the numbers do not depend on the batch size — and its terms G = Jᵀ H_L J, M = H_eff − G, with H_L the Hessian
w.r.t. what the loss sees (predictor outputs for SimSiam/BYOL, projector outputs otherwise). Multiply by
``1/n`` for the Hessian of the mean loss the authors' tracker estimated (PAPER §7.1 "1/B factor").

Paths. *Per-sample* (SimSiam, BYOL, the paper's one-directional InfoNCE w.r.t. its anchor view; no train-mode
BatchNorm): exact float64 blocks per sample in closed form (:mod:`geomhead.hessian`); the batch operator's
spectrum is the union of the blocks' spectra, so its extremes, negative count and Frobenius norm are exact.
*Coupled* (NT-Xent, VICReg, Barlow Twins, InfoNCE w.r.t. both views, any train-mode BatchNorm): matrix-free
products (:mod:`geomhead.operators`), dense ``eigh`` when the dimension is at most ``dense_threshold``, else
Lanczos with full reorthogonalisation (:mod:`geomhead.lanczos`); negative counts are then lower bounds.
``path="auto"`` picks per-sample where it applies.

Readings (cosine losses only, PAPER §8.1, §18): ``ambient`` (the loss as optimised), ``tangential``
(H_L → P H_L P on the sphere of h; M unchanged), ``mse`` (the theorem's premise: ℓ = ½‖h − c‖², H_L = I).

Negative eigenvalues are counted against a relative floor: λ < −max(floor·max|λ|, residual) (PAPER §8.3).
BYOL: snapshots do not hold the EMA target, so its targets are approximated by the online projector's outputs
of view 2 (the loss Hessian then has the SimSiam form with weight 2).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from geomhead.atomic import torch_load
from geomhead.cube import attrs, provenance
from geomhead.heads import ProjectionHead, build_predictor, build_projector
from geomhead.hessian import (
    LossDerivatives,
    SampleBlocks,
    affine_chain,
    cosine_derivatives,
    effective_hessian_blocks,
    infonce_anchor_derivatives,
    interaction_blocks,
    linearise,
    mse_derivatives,
    output_jacobian,
)
from geomhead.lanczos import LanczosResult, PowerIterationEstimate, RitzEnd, dense_extremes, lanczos_extremes, paper_power_iteration
from geomhead.losses import LOSS_NAMES, USES_PREDICTOR, negative_cosine, ssl_loss
from geomhead.operators import (
    BACKENDS,
    CurvatureOperator,
    FactoredOperator,
    barlow_gram,
    head_function,
    vicreg_gram,
    vicreg_hessian_product,
)

__all__ = [
    "COSINE_LOSSES",
    "READINGS",
    "TERMS",
    "LayerCurvature",
    "TermCurvature",
    "curvature_of_run",
    "head_curvature",
    "heads_from_config",
    "layer_inputs",
    "per_sample_applies",
    "to_dataset",
]

TERMS: tuple[str, ...] = ("H_eff", "G", "M", "H_L")
READINGS: tuple[str, ...] = ("ambient", "tangential", "mse")
COSINE_LOSSES: tuple[str, ...] = ("simsiam", "byol")
# Per-sample loss weight w and offset o of ℓ_b = o − w·cos for the cosine losses (sum convention n·L).
_COSINE_FORM: dict[str, tuple[float, float]] = {"simsiam": (0.5, 0.0), "byol": (2.0, 2.0)}
PathName = Literal["auto", "per_sample", "coupled"]
Wrt = Literal["view1", "both"]


@dataclass(frozen=True)
class TermCurvature:
    """Spectrum summary of one term (H_eff, G, M or H_L) of the batch operator at one layer and reading.

    Attributes:
        term: ``H_eff``, ``G``, ``M`` or ``H_L``.
        method: ``closed-form`` (per-sample blocks), ``dense`` or ``lanczos``.
        dim: Dimension of the batch operator.
        bottom: The k lowest eigenvalues (ascending) with residuals and converged flags.
        top: The k highest (descending).
        n_neg: Eigenvalues < −max(floor·max|λ|, residual) of the batch operator.
        n_neg_exact: False when ``n_neg`` only counts the k bottom Ritz values (Lanczos: a lower bound).
        frobenius: ‖·‖_F of the batch operator (NaN when not known exactly).
        sample_min, sample_max, sample_n_neg, sample_frobenius: Per-sample λ_min, λ_max, negative count (floor
            relative to that sample's max|λ|) and ‖·‖_F, shape (n,); None on the coupled path.
        spectra: Ascending full spectra (s, D) of the first s samples' blocks; None on the coupled path.
        wall_time_s: Wall time spent on this term (closed form: the eigen-decompositions only).
    """

    term: str
    method: str
    dim: int
    bottom: RitzEnd
    top: RitzEnd
    n_neg: int
    n_neg_exact: bool
    frobenius: float
    sample_min: Tensor | None
    sample_max: Tensor | None
    sample_n_neg: Tensor | None
    sample_frobenius: Tensor | None
    spectra: Tensor | None
    wall_time_s: float


@dataclass(frozen=True)
class LayerCurvature:
    """All terms at one layer under one reading.

    Attributes:
        layer: ``z`` or ``block{l}``.
        reading: ``ambient``, ``tangential`` or ``mse``.
        path: ``per_sample`` or ``coupled``.
        wrt: ``view1`` (view 2 held fixed) or ``both``.
        n_rows: Evaluated sample rows (n, or 2n for ``both``).
        terms: Term name → :class:`TermCurvature`.
        loss_value: The mean loss over the evaluated rows (this reading's loss).
        rho_norm: (n_rows,) ‖∇_h ℓ‖ per row (the gradient of n·L w.r.t. that row of the loss input).
        paper: The paper's 20-step float32 estimator on this layer's ambient H_eff, or None.
        wall_time_s: Wall time of the whole layer.
    """

    layer: str
    reading: str
    path: str
    wrt: str
    n_rows: int
    terms: dict[str, TermCurvature]
    loss_value: float
    rho_norm: Tensor
    paper: PowerIterationEstimate | None
    wall_time_s: float

    @property
    def m_ratio(self) -> float:
        """‖M‖_F/‖H_eff‖_F of the batch operator (NaN when the norms are not known exactly)."""
        fro_h, fro_m = self.terms["H_eff"].frobenius, self.terms["M"].frobenius
        return fro_m / fro_h if fro_h > 0 else float("nan")

    @property
    def m_spectral_ratio(self) -> float:
        """max|λ(M)|/max|λ(H_eff)| from the computed spectrum ends."""
        top = _max_abs(self.terms["H_eff"])
        return _max_abs(self.terms["M"]) / top if top > 0 else float("nan")


# ----- validation ----------------------------------------------------------------------------------------
def _check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_float(name: str, value: object, *, positive: bool) -> float:
    ok = (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def per_sample_applies(loss: str, wrt: str, batchnorm_train: bool) -> bool:
    """Whether the Hessian w.r.t. the evaluated rows is block-diagonal (PAPER §8.2)."""
    if batchnorm_train:
        return False
    return loss in COSINE_LOSSES or (loss == "infonce" and wrt == "view1")


# ----- the problem: heads, inputs, targets, losses ---------------------------------------------------------
@dataclass(frozen=True)
class _Problem:
    """Float64 copies of the heads and representations, and the loss, for one state."""

    loss: str
    settings: Mapping[str, float]
    projector: ProjectionHead
    predictor: ProjectionHead | None
    z1: Tensor
    z2: Tensor
    wrt: str
    batchnorm: str  # mode used by the coupled path: "train" or "eval"

    @property
    def heads(self) -> tuple[ProjectionHead, ...]:
        return (self.projector,) if self.predictor is None else (self.projector, self.predictor)

    def targets(self, mode: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Projector outputs of both views (constants: SimSiam/BYOL targets, InfoNCE candidates)."""
        proj = head_function((self.projector,), 0, batchnorm=mode, dtype=dtype)  # type: ignore[arg-type]
        with torch.no_grad():
            return proj(self.z1.to(dtype)), proj(self.z2.to(dtype))

    def inputs(self, layer: int, mode: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Layer inputs of both views."""
        return layer_inputs(self.projector, self.z1.to(dtype), layer, batchnorm=mode), layer_inputs(
            self.projector, self.z2.to(dtype), layer, batchnorm=mode
        )


def layer_inputs(projector: ProjectionHead, z: Tensor, layer: int, *, batchnorm: Literal["train", "eval"] = "train") -> Tensor:
    """The input of projector block ``layer`` for representations z (layer 0: z itself), functionally.

    Raises:
        ValueError: If ``layer`` is not in [0, depth).
    """
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < projector.depth:
        raise ValueError(f"layer must be an int in [0, {projector.depth - 1}], got {layer!r}")
    with torch.no_grad():
        x = head_function((projector,), 0, layer, batchnorm=batchnorm, dtype=z.dtype)(z)
    return x


def _coupled_loss(problem: _Problem, reading: str, targets: tuple[Tensor, Tensor]) -> Callable[[Tensor], Tensor]:
    """H ↦ n·L for the coupled path: H is (n, k) for ``view1`` and (2, n, k) for ``both``."""
    c1, c2 = targets
    n = c1.shape[0]
    loss, settings, both = problem.loss, dict(problem.settings), problem.wrt == "both"
    if loss in COSINE_LOSSES:
        weight, offset = _COSINE_FORM[loss]

        def per_view(h: Tensor, c: Tensor) -> Tensor:
            if reading == "mse":
                return 0.5 * (h - c).square().sum()
            return (offset + weight * negative_cosine(h, c)).sum()

        if both:
            return lambda h: per_view(h[0], c2) + per_view(h[1], c1)
        return lambda h: per_view(h, c2)
    function = _GRAM_FORMS.get(loss) if n < c1.shape[1] else None
    if function is None:
        function = lambda h1, h2: ssl_loss(loss, {"h1": h1, "h2": h2}, **settings)  # noqa: E731
    else:
        function = functools.partial(function, **settings)
    if both:
        return lambda h: n * function(h[0], h[1])
    return lambda h: n * function(h, c2)


_GRAM_FORMS: dict[str, Callable[..., Tensor]] = {"vicreg": vicreg_gram, "barlow": barlow_gram}


def _operator(problem: _Problem, layer: int, reading: str, *, dtype: torch.dtype, backend: str) -> CurvatureOperator:
    """The autograd batch operator of one layer and reading (train-mode BatchNorm couples the rows)."""
    mode = problem.batchnorm
    x1, x2 = problem.inputs(layer, mode, dtype)
    x = torch.stack([x1, x2]) if problem.wrt == "both" else x1
    head = head_function(problem.heads, layer, batchnorm=mode, dtype=dtype)  # type: ignore[arg-type]
    loss = _coupled_loss(problem, reading, problem.targets(mode, dtype))
    return CurvatureOperator(head, loss, x, backend=backend, tangential=reading == "tangential")  # type: ignore[arg-type]


def _per_sample_loss(problem: _Problem, reading: str, targets: tuple[Tensor, Tensor]) -> Callable[[Tensor], LossDerivatives]:
    """h ↦ :class:`LossDerivatives` for the rows evaluated on the per-sample path."""
    c1, c2 = targets
    if problem.loss == "infonce":
        temperature = float(problem.settings.get("temperature", 0.1))
        return lambda h: infonce_anchor_derivatives(h, c2, temperature)
    target = torch.cat([c2, c1]) if problem.wrt == "both" else c2
    weight, offset = _COSINE_FORM[problem.loss]
    if reading == "mse":
        return lambda h: mse_derivatives(h, target)
    if reading == "tangential":
        return lambda h: cosine_derivatives(h, target, weight, offset).tangential(h)
    return lambda h: cosine_derivatives(h, target, weight, offset)


# ----- per-sample path -------------------------------------------------------------------------------------
def _inverse_iteration_residuals(blocks: Tensor, lam: Tensor, seed: int) -> Tensor:
    """Honest residuals ‖B v − λ v‖ for eigenvalues λ of blocks B, v from two steps of inverse iteration.

    v solves (B − (λ + δ)I) v = b twice (δ = 1e-10·max|B|, seeded random b), which costs one LU per pair
    instead of a full eigendecomposition.
    """
    m, r = blocks.shape[0], blocks.shape[-1]
    scale = blocks.abs().amax(dim=(1, 2)).clamp_min(torch.finfo(blocks.dtype).tiny)
    eye = torch.eye(r, dtype=blocks.dtype)
    shifted = blocks - (lam + 1e-10 * scale)[:, None, None] * eye
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(m, r, 1, generator=gen, dtype=blocks.dtype)
    lu, pivots, info = torch.linalg.lu_factor_ex(shifted)
    for _ in range(2):
        v = torch.linalg.lu_solve(lu, pivots, v)
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    res = torch.linalg.vector_norm(blocks @ v - lam[:, None, None] * v, dim=(1, 2))
    bad = (info != 0) | ~torch.isfinite(res)
    if bool(bad.any()):  # an exactly singular shift: fall back to a full eigendecomposition of those blocks
        vals, vecs = torch.linalg.eigh(blocks[bad])
        idx = (vals - lam[bad][:, None]).abs().argmin(dim=1)
        vec = vecs[torch.arange(vecs.shape[0]), :, idx]
        res[bad] = torch.linalg.vector_norm((blocks[bad] @ vec[:, :, None]).squeeze(-1) - lam[bad][:, None] * vec, dim=1)
    return res


def _closed_form_term(
    term: str,
    reduced: Tensor,
    pad_value: Tensor,
    dim: int,
    *,
    k: int,
    tol: float,
    floor: float,
    spectra: int,
    seed: int,
    scale: float,
) -> TermCurvature:
    """Summarise per-sample blocks whose spectra are eig(reduced_b) ∪ {pad_value_b}^(dim − r).

    The batch operator's k extremes are picked from the union; their residuals are recomputed by inverse
    iteration on the reduced blocks they come from (padded eigenvalues are exact: residual 0).
    """
    start = time.perf_counter()
    n, r = reduced.shape[0], reduced.shape[-1]
    zero = not bool(reduced.any())
    eig = reduced.new_zeros(n, r) if zero or not r else torch.linalg.eigvalsh(reduced)
    pad = dim - r
    values = torch.cat([eig, pad_value[:, None].expand(n, pad)], dim=1)
    from_block = torch.cat([torch.ones(r, dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)]).expand(n, dim)
    values, perm = torch.sort(values, dim=1)
    from_block = torch.gather(from_block, 1, perm)
    flat = values.reshape(-1)
    order = torch.argsort(flat)
    kk = min(k, flat.numel())
    picks = {"bottom": order[:kk], "top": order.flip(0)[:kk]}
    everything = torch.cat(list(picks.values()))
    rows = everything // dim
    needs = from_block.reshape(-1)[everything] & (not zero)
    residuals = torch.zeros(everything.numel(), dtype=reduced.dtype)
    if bool(needs.any()):
        residuals[needs] = _inverse_iteration_residuals(reduced[rows[needs]], flat[everything[needs]], seed)
    big = float(flat.abs().max()) if flat.numel() else 0.0
    threshold = tol * max(big, scale)
    ends = {}
    for e, (name, idx) in enumerate(picks.items()):
        res = residuals[e * kk : (e + 1) * kk]
        ends[name] = RitzEnd(
            name, flat[idx], res, res <= threshold, threshold, None, 0, 0, time.perf_counter() - start, seed, "closed-form"
        )
    sample_scale = values.abs().amax(dim=1)
    fro = (reduced.new_zeros(n) if zero else torch.linalg.matrix_norm(reduced).square()) + pad * pad_value.square()
    return TermCurvature(
        term=term,
        method="closed-form",
        dim=n * dim,
        bottom=ends["bottom"],
        top=ends["top"],
        n_neg=int((values < -floor * big).sum()),
        n_neg_exact=True,
        frobenius=float(fro.sum().sqrt()),
        sample_min=values[:, 0],
        sample_max=values[:, -1],
        sample_n_neg=(values < -floor * sample_scale[:, None]).sum(dim=1),
        sample_frobenius=fro.sqrt(),
        spectra=values[:spectra].clone() if spectra else None,
        wall_time_s=time.perf_counter() - start,
    )


def _max_abs(term: TermCurvature) -> float:
    return max(abs(float(term.bottom.eigenvalues[0])), abs(float(term.top.eigenvalues[0])))


def _renamed(term: TermCurvature, name: str) -> TermCurvature:
    return dataclasses.replace(term, term=name)


def _per_sample_layer(
    problem: _Problem, layer: int, reading: str, opts: _Options, h_l: TermCurvature | None
) -> tuple[LayerCurvature, TermCurvature]:
    """Exact per-sample blocks in closed form; the batch operator's spectrum is the union of theirs."""
    start = time.perf_counter()
    x1, x2 = problem.inputs(layer, "eval", torch.float64)
    x = torch.cat([x1, x2]) if problem.wrt == "both" else x1
    chain = affine_chain(problem.heads, layer)
    blocks: SampleBlocks = effective_hessian_blocks(chain, x, _per_sample_loss(problem, reading, problem.targets("eval", torch.float64)))
    common = {"k": opts.k, "tol": opts.tol, "floor": opts.floor, "spectra": opts.spectra, "seed": opts.seed}
    n = x.shape[0]
    zeros = torch.zeros(n, dtype=x.dtype)
    terms: dict[str, TermCurvature] = {"G": _closed_form_term("G", blocks.G, zeros, blocks.dim, scale=0.0, **common)}
    if bool(blocks.M.any()):
        terms["H_eff"] = _closed_form_term("H_eff", blocks.H_eff, zeros, blocks.dim, scale=0.0, **common)
    else:  # M ≡ 0 (ReLU, linear, or no activation after this layer): H_eff = G exactly
        terms["H_eff"] = _renamed(terms["G"], "H_eff")
    terms["M"] = _closed_form_term("M", blocks.M, zeros, blocks.dim, scale=_max_abs(terms["H_eff"]), **common)
    if h_l is None:
        h_l = _loss_hessian_term(blocks.loss, opts)
    terms["H_L"] = h_l
    paper = _paper_estimate(problem, layer, reading, opts) if layer in opts.paper_layers and reading == "ambient" else None
    result = LayerCurvature(
        layer=problem.projector.layer_names[layer],
        reading=reading,
        path="per_sample",
        wrt=problem.wrt,
        n_rows=n,
        terms=terms,
        loss_value=float(blocks.loss.value.mean()),
        rho_norm=torch.linalg.vector_norm(blocks.loss.rho, dim=1),
        paper=paper,
        wall_time_s=time.perf_counter() - start,
    )
    return result, h_l


def _loss_hessian_term(loss: LossDerivatives, opts: _Options) -> TermCurvature:
    """H_L = α I + U S Uᵀ per sample, summarised via its reduced form α I_p + R S Rᵀ (U = QR)."""
    n, k, q = loss.basis.shape
    if q:
        _, r_factor = torch.linalg.qr(loss.basis, mode="reduced")
        inner = r_factor @ loss.core @ r_factor.mT
    else:
        inner = loss.basis.new_zeros(n, 0, 0)
    inner = 0.5 * (inner + inner.mT) + loss.alpha[:, None, None] * torch.eye(inner.shape[-1], dtype=inner.dtype)
    return _closed_form_term(
        "H_L", inner, loss.alpha, k, k=opts.k, tol=opts.tol, floor=opts.floor, spectra=opts.spectra, seed=opts.seed, scale=0.0
    )


@dataclass(frozen=True)
class _Factored:
    """The factored operator of one layer and reading, with its closed-form pieces."""

    op: FactoredOperator
    interaction: Tensor | None
    basis: Tensor | None
    dim: int


def _factored(problem: _Problem, layer: int, reading: str, dtype: torch.dtype, backend: str) -> _Factored:
    """H_eff = Jᵀ H_L J + blockdiag(M_b) for heads without train-mode BatchNorm (exact J_b and M_b)."""
    x1, x2 = problem.inputs(layer, "eval", dtype)
    x = torch.cat([x1, x2]) if problem.wrt == "both" else x1
    chain = affine_chain(problem.heads, layer, dtype)
    lin = linearise(chain, x)
    h = lin.head_out.reshape(2, x1.shape[0], -1) if problem.wrt == "both" else lin.head_out
    loss = _coupled_loss(problem, reading, problem.targets("eval", dtype))
    hd = h.clone().requires_grad_(True)
    with torch.enable_grad():
        (rho,) = torch.autograd.grad(loss(hd), hd)
    rho = rho.reshape(x.shape[0], -1)
    interaction = interaction_blocks(chain, lin, rho)
    product = vicreg_hessian_product(h, **problem.settings) if problem.loss == "vicreg" else None
    op = FactoredOperator(
        output_jacobian(chain, lin), interaction, loss, h, backend=backend, tangential=reading == "tangential", loss_hessian=product
    )  # type: ignore[arg-type]
    return _Factored(op, interaction, lin.basis, lin.dim)


def _paper_estimate(problem: _Problem, layer: int, reading: str, opts: _Options) -> PowerIterationEstimate:
    """The authors' estimator on the same batch operator (in the layer coordinates x), in float32 (PAPER §7.1)."""
    if problem.batchnorm == "train":
        op = _operator(problem, layer, reading, dtype=torch.float32, backend="reverse")
        return paper_power_iteration(op.matvec_fn("H_eff"), op.size, seed=opts.seed)
    fac = _factored(problem, layer, reading, torch.float32, "reverse")
    rows, r = fac.op.shape
    basis = fac.basis

    def matvec(v: Tensor) -> Tensor:
        if basis is None:
            return fac.op.matvec("H_eff", v)
        y = v.reshape(rows, fac.dim) @ basis
        return (fac.op.matvec("H_eff", y.reshape(-1)).reshape(rows, r) @ basis.T).reshape(-1)

    return paper_power_iteration(matvec, rows * fac.dim, seed=opts.seed)


def _with_zeros(result: LanczosResult, zeros: int) -> LanczosResult:
    """Merge ``zeros`` exact zero eigenvalues (residual 0) into both ends, keeping k per end."""
    if zeros <= 0:
        return result
    ends = []
    for end in (result.bottom, result.top):
        k = end.eigenvalues.numel()
        extra = min(zeros, k)
        vals = torch.cat([end.eigenvalues, end.eigenvalues.new_zeros(extra)])
        res = torch.cat([end.residuals, end.residuals.new_zeros(extra)])
        order = torch.argsort(vals, descending=end.end == "top", stable=True)[:k]
        ends.append(
            dataclasses.replace(end, eigenvalues=vals[order], residuals=res[order], converged=res[order] <= end.threshold, vectors=None)
        )
    return LanczosResult(*ends)


def _solve_term(op: CurvatureOperator | FactoredOperator, term: str, opts: _Options, scale: float, zeros: int = 0) -> TermCurvature:
    """Extremes of one term of an operator: dense ``eigh`` when small, else Lanczos; plus ``zeros`` exact zeros."""
    start = time.perf_counter()
    size = op.term_size(term)
    k = min(opts.k, size)
    before = op.counts[term]
    if size <= opts.dense_threshold:
        matrix = op.dense(term)
        result = dense_extremes(matrix, k=k, tol=opts.tol, scale=scale, n_products=op.counts[term] - before, seed=opts.seed)
        eig = torch.linalg.eigvalsh(matrix)
        big = float(eig.abs().max())
        n_neg, exact, fro, method = int((eig < -opts.floor * big).sum()), True, float(torch.linalg.matrix_norm(matrix)), "dense"
    else:
        result = lanczos_extremes(
            op.matvec_fn(term), size, k=k, tol=opts.tol, max_iter=opts.max_iter, seed=opts.seed, scale=scale, matmat=op.matmat_fn(term)
        )
        big = max(abs(float(result.bottom.eigenvalues[0])), abs(float(result.top.eigenvalues[0])))
        cut = torch.clamp(result.bottom.residuals, min=opts.floor * big)
        n_neg = int(((result.bottom.eigenvalues < -cut) & result.bottom.converged).sum())
        exact, fro, method = n_neg < k, float("nan"), "lanczos"
    result = _with_zeros(result, zeros)
    return TermCurvature(
        term, method, size + zeros, result.bottom, result.top, n_neg, exact, fro, None, None, None, None, None, time.perf_counter() - start
    )


def _coupled_layer(
    problem: _Problem, layer: int, reading: str, opts: _Options, h_l: TermCurvature | None
) -> tuple[LayerCurvature, TermCurvature]:
    """Matrix-free products with Lanczos (or dense) for every term; M in closed form when the head is per row."""
    start = time.perf_counter()
    terms: dict[str, TermCurvature] = {}
    op: CurvatureOperator | FactoredOperator
    if problem.batchnorm == "train":
        op = _operator(problem, layer, reading, dtype=torch.float64, backend=opts.backend)
        terms["H_eff"] = _solve_term(op, "H_eff", opts, 0.0)
        terms["G"] = _solve_term(op, "G", opts, 0.0)
        terms["M"] = _solve_term(op, "M", opts, _max_abs(terms["H_eff"]))
    else:
        fac = _factored(problem, layer, reading, torch.float64, opts.backend)
        op = fac.op
        rows, r = op.shape
        zeros = rows * (fac.dim - r)
        terms["G"] = _solve_term(op, "G", opts, 0.0, zeros)
        terms["H_eff"] = _solve_term(op, "H_eff", opts, 0.0, zeros) if fac.interaction is not None else _renamed(terms["G"], "H_eff")
        blocks = fac.interaction if fac.interaction is not None else op.jacobian.new_zeros(rows, r, r)
        terms["M"] = _closed_form_term(
            "M",
            blocks,
            blocks.new_zeros(rows),
            fac.dim,
            k=opts.k,
            tol=opts.tol,
            floor=opts.floor,
            spectra=0,
            seed=opts.seed,
            scale=_max_abs(terms["H_eff"]),
        )
    terms["H_L"] = h_l if h_l is not None else _solve_term(op, "H_L", opts, 0.0)
    rho = op.rho.reshape(-1, op.rho.shape[-1])
    paper = _paper_estimate(problem, layer, reading, opts) if layer in opts.paper_layers and reading == "ambient" else None
    result = LayerCurvature(
        layer=problem.projector.layer_names[layer],
        reading=reading,
        path="coupled",
        wrt=problem.wrt,
        n_rows=rho.shape[0],
        terms=terms,
        loss_value=op.loss_value / problem.z1.shape[0],
        rho_norm=torch.linalg.vector_norm(rho, dim=1),
        paper=paper,
        wall_time_s=time.perf_counter() - start,
    )
    return result, terms["H_L"]


# ----- the public entry points -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    k: int
    tol: float
    max_iter: int
    seed: int
    floor: float
    dense_threshold: int
    backend: str
    spectra: int
    paper_layers: tuple[int, ...]


def _float64_head(head: ProjectionHead) -> ProjectionHead:
    return copy.deepcopy(head).to(torch.float64).eval()


def _check_z(name: str, z: object, dim: int) -> Tensor:
    if not isinstance(z, Tensor) or z.ndim != 2 or not z.is_floating_point():
        raise ValueError(
            f"{name} must be a 2-D floating tensor (n, {dim}), got {tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}"
        )
    if z.shape[1] != dim:
        raise ValueError(f"{name} has width {z.shape[1]} but the projector takes {dim}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} has non-finite values")
    return z.detach().to(torch.float64)


def head_curvature(
    projector: ProjectionHead,
    predictor: ProjectionHead | None,
    loss: str,
    loss_settings: Mapping[str, float],
    z1: Tensor,
    z2: Tensor,
    *,
    layers: Sequence[str] | None = None,
    readings: Sequence[str] | None = None,
    path: PathName = "auto",
    wrt: Wrt = "view1",
    batchnorm: Literal["train", "eval"] = "train",
    k: int = 4,
    tol: float = 1e-6,
    max_iter: int = 300,
    seed: int = 0,
    floor: float = 1e-10,
    dense_threshold: int = 256,
    backend: Literal["reverse", "forward"] = "reverse",
    spectra: int = 1,
    paper_layers: Sequence[str] = ("z",),
) -> list[LayerCurvature]:
    """Spectra of H_eff, G, M and H_L at each layer and reading for one state of a head (see module docstring).

    Args:
        projector: The projector (any dtype; copied to float64).
        predictor: The predictor for SimSiam/BYOL, else None.
        loss: One of :data:`geomhead.losses.LOSS_NAMES`.
        loss_settings: That loss's settings (e.g. ``{"temperature": 0.1}``).
        z1, z2: (n, d) backbone representations of the two views of the evaluated batch.
        layers: Layer names (``projector.layer_names``), default all.
        readings: Default all that apply: ``ambient``, ``tangential``, ``mse`` for cosine losses, else ``ambient``.
        path: ``auto`` (per-sample where it applies), ``per_sample`` or ``coupled``.
        wrt: ``view1`` (the paper's ∂²L/∂z1², view 2 fixed) or ``both`` views jointly.
        batchnorm: BatchNorm mode of the coupled path: ``train`` (batch statistics, as optimised) or ``eval``.
            The per-sample path always uses running statistics (eval), and only applies when the heads have
            no BatchNorm or ``batchnorm="eval"``.
        k: Eigenvalues per spectrum end.
        tol: Relative Ritz-residual tolerance of the solvers.
        max_iter: Most Lanczos steps (>= k).
        seed: Seed of the Lanczos and power-iteration start vectors.
        floor: Relative floor of the negative-eigenvalue count.
        dense_threshold: Coupled operators of at most this dimension are materialised and ``eigh``-ed.
        backend: Hessian-vector-product backend of the coupled path.
        spectra: Number of samples whose full block spectra are kept (per-sample path).
        paper_layers: Layers at which the paper's float32 power-iteration estimate is computed (ambient H_eff).

    Returns:
        One :class:`LayerCurvature` per (reading, layer), readings outermost.

    Raises:
        ValueError: Before any work, on a bad argument, a head/loss pair without a path, wrong shapes or
            non-finite inputs.
    """
    _check_choice("loss", loss, LOSS_NAMES)
    if not isinstance(projector, ProjectionHead):
        raise ValueError(f"projector must be a ProjectionHead, got {type(projector).__name__}")
    if USES_PREDICTOR[loss] and not isinstance(predictor, ProjectionHead):
        raise ValueError(f"loss {loss!r} needs a predictor (a ProjectionHead), got {predictor!r}")
    if not USES_PREDICTOR[loss] and predictor is not None:
        raise ValueError(f"loss {loss!r} has no predictor; got a {type(predictor).__name__} (pass None)")
    if predictor is not None and predictor.in_dim != projector.out_dim:
        raise ValueError(f"predictor takes width {predictor.in_dim} but the projector outputs {projector.out_dim}")
    _check_choice("path", path, ("auto", "per_sample", "coupled"))
    _check_choice("wrt", wrt, ("view1", "both"))
    _check_choice("batchnorm", batchnorm, ("train", "eval"))
    _check_choice("backend", backend, BACKENDS)
    names = projector.layer_names
    layer_list = list(names) if layers is None else list(layers)
    if not layer_list or any(name not in names for name in layer_list) or len(set(layer_list)) != len(layer_list):
        raise ValueError(f"layers must be distinct names from {names}, got {layers!r}")
    allowed_readings = READINGS if loss in COSINE_LOSSES else ("ambient",)
    reading_list = list(allowed_readings) if readings is None else list(readings)
    if not reading_list or any(r not in allowed_readings for r in reading_list) or len(set(reading_list)) != len(reading_list):
        raise ValueError(f"readings for loss {loss!r} must be distinct values from {allowed_readings}, got {readings!r}")
    if any(name not in names for name in paper_layers):
        raise ValueError(f"paper_layers must be names from {names}, got {paper_layers!r}")
    opts = _Options(
        k=_check_int("k", k, 1),
        tol=_check_float("tol", tol, positive=True),
        max_iter=_check_int("max_iter", max_iter, k),
        seed=_check_int("seed", seed, 0),
        floor=_check_float("floor", floor, positive=False),
        dense_threshold=_check_int("dense_threshold", dense_threshold, 0),
        backend=backend,
        spectra=_check_int("spectra", spectra, 0),
        paper_layers=tuple(names.index(name) for name in paper_layers),
    )
    z1d, z2d = _check_z("z1", z1, projector.in_dim), _check_z("z2", z2, projector.in_dim)
    if z1d.shape != z2d.shape:
        raise ValueError(f"z1 has shape {tuple(z1d.shape)} but z2 has {tuple(z2d.shape)}; they must match")
    has_bn = projector.batchnorm or (predictor is not None and predictor.batchnorm)
    bn_train = has_bn and batchnorm == "train"
    if bn_train and z1d.shape[0] < 2:
        raise ValueError(f"train-mode BatchNorm needs at least 2 samples, got {z1d.shape[0]}")
    possible = per_sample_applies(loss, wrt, bn_train)
    if path == "per_sample" and not possible:
        why = "train-mode BatchNorm couples the samples" if bn_train else f"loss {loss!r} with wrt={wrt!r} couples the samples"
        raise ValueError(f"path 'per_sample' does not apply: {why}; use path='coupled' (or batchnorm='eval')")
    use_per_sample = possible and path != "coupled"
    problem = _Problem(
        loss,
        dict(loss_settings),
        _float64_head(projector),
        None if predictor is None else _float64_head(predictor),
        z1d,
        z2d,
        wrt,
        batchnorm if has_bn else "eval",
    )
    mode = "eval" if use_per_sample else problem.batchnorm
    c1, c2 = problem.targets(mode, torch.float64)
    value = ssl_loss(
        loss, {"h1": c1, "h2": c2, "p1": c1, "p2": c2, "t1": c1, "t2": c2}, **dict(loss_settings)
    )  # checks settings and batch size
    if not torch.isfinite(value):
        raise ValueError(f"the loss is not finite at this state ({float(value)})")
    out: list[LayerCurvature] = []
    for reading in reading_list:
        h_l: TermCurvature | None = None
        for name in layer_list:
            layer = names.index(name)
            run = _per_sample_layer if use_per_sample else _coupled_layer
            result, h_l = run(problem, layer, reading, opts, h_l)
            out.append(result)
    return out


# ----- one run's trajectories ------------------------------------------------------------------------------
def heads_from_config(config: Mapping[str, Any]) -> tuple[ProjectionHead, ProjectionHead | None]:
    """Projector and predictor (None unless SimSiam/BYOL) of a run's resolved config, freshly initialised."""
    run, model = config["run"], config["model"]
    projector = build_projector(
        model["z_dim"], model["head_hidden"], model["head_out"], run["depth"], run["activation"], run["batchnorm"], model["head_bias"]
    )
    predictor = None
    if USES_PREDICTOR[run["loss"]]:
        predictor = build_predictor(model["head_out"], model["predictor_hidden"], run["activation"], run["batchnorm"], model["head_bias"])
    return projector, predictor


def curvature_of_run(
    run_dir: str | Path,
    *,
    samples: int = 16,
    coupled_samples: int | None = 8,
    coupled_layers: Sequence[str] | None = ("z",),
    k: int = 4,
    tol: float = 1e-6,
    max_iter: int = 300,
    seed: int = 0,
    floor: float = 1e-10,
    readings: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    path: PathName = "auto",
    wrt: Wrt = "view1",
    batchnorm: Literal["train", "eval"] = "train",
    dense_threshold: int = 256,
    backend: Literal["reverse", "forward"] = "reverse",
    spectra: int = 1,
    paper_layers: Sequence[str] = ("z",),
) -> xr.Dataset:
    """Eigenvalue trajectories of one pretraining run, from its ``model.pt`` config and every snapshot.

    At each snapshot the first ``samples`` rows of the tracking batch (``coupled_samples`` when the loss and
    head take the coupled path, where every Lanczos product costs O(rows); None: ``samples``) are evaluated with
    :func:`head_curvature` (the other arguments are passed on). For a coupled loss these rows are the batch the
    loss is evaluated on. ``layers`` (default: all) applies to the per-sample path; the coupled path evaluates
    ``coupled_layers`` (default: only z, the paper's object; None: ``layers``), because Lanczos at the wider
    block inputs costs about as much again as at z. Dims: ``step``, ``reading``, ``layer``,
    ``term``, ``end``, ``eig_index`` (0 = most extreme), ``sample``, ``spectrum_sample``, ``spectrum_index``.
    Aggregation of the per-sample blocks: ``eigenvalue`` holds the extremes of the batch operator (the union
    of the blocks' spectra: ``eigenvalue[end=bottom, eig_index=0]`` is the minimum over samples of λ_min),
    ``n_neg`` the total count over samples, and ``sample_*`` every sample's own λ_min, λ_max and count;
    ``spectrum`` keeps the full block spectra of the first ``spectra`` samples.

    Raises:
        FileNotFoundError: If the run has no ``model.pt`` or no snapshots.
        ValueError: On bad settings (before any snapshot is processed).
    """
    run_dir = Path(run_dir)
    state = torch_load(run_dir / "model.pt")
    config = json.loads(state["config_json"])
    snaps = sorted((run_dir / "snapshots").glob("step_*.pt"))
    if not snaps:
        raise FileNotFoundError(f"{run_dir / 'snapshots'}: no step_*.pt snapshots")
    _check_int("samples", samples, 1)
    if coupled_samples is not None:
        _check_int("coupled_samples", coupled_samples, 1)
    projector, predictor = heads_from_config(config)
    loss = config["run"]["loss"]
    settings = dict(config["loss_settings"])
    has_bn = projector.batchnorm or (predictor is not None and predictor.batchnorm)
    coupled = path == "coupled" or not per_sample_applies(loss, wrt, has_bn and batchnorm == "train")
    rows = coupled_samples if coupled and coupled_samples is not None else samples
    if coupled and coupled_layers is not None:
        layers = coupled_layers
    kwargs: dict[str, Any] = {
        "layers": layers, "readings": readings, "path": path, "wrt": wrt, "batchnorm": batchnorm, "k": k, "tol": tol, "max_iter": max_iter,
        "seed": seed, "floor": floor, "dense_threshold": dense_threshold, "backend": backend, "spectra": spectra, "paper_layers": paper_layers,
    }  # fmt: skip
    steps, results = [], []
    for snap_path in snaps:
        snap = torch_load(snap_path)
        projector.load_state_dict(snap["projector"])
        if predictor is not None:
            predictor.load_state_dict(snap["predictor"])
        z1, z2 = snap["z1"][:rows], snap["z2"][:rows]
        results.append(head_curvature(projector, predictor, loss, settings, z1, z2, **kwargs))
        steps.append(int(snap["step"]))
    settings_json = json.dumps(
        {
            "samples": samples,
            "coupled_samples": coupled_samples,
            "coupled_layers": None if coupled_layers is None else list(coupled_layers),
            **{key: (list(v) if isinstance(v, tuple) else v) for key, v in kwargs.items()},
        },
        sort_keys=True,
    )
    return to_dataset(steps, results, config, settings_json, n_samples=int(z1.shape[0]), floor=floor)


def to_dataset(
    steps: Sequence[int],
    results: Sequence[Sequence[LayerCurvature]],
    config: Mapping[str, Any],
    settings_json: str,
    *,
    n_samples: int,
    floor: float,
) -> xr.Dataset:
    """The per-run curvature Dataset (see :func:`curvature_of_run`) from :func:`head_curvature` results per step."""
    first = results[0]
    readings = list(dict.fromkeys(r.reading for r in first))
    layers = list(dict.fromkeys(r.layer for r in first))
    k = first[0].terms["H_eff"].bottom.eigenvalues.numel()
    n_rows = max(r.n_rows for r in first)
    spec_n = max((t.spectra.shape[0] for r in first for t in r.terms.values() if t.spectra is not None), default=0)
    spec_d = max((t.spectra.shape[1] for r in first for t in r.terms.values() if t.spectra is not None), default=0)
    shape = (len(steps), len(readings), len(layers), len(TERMS))
    eig = np.full(shape + (2, k), np.nan)
    res, conv = eig.copy(), np.zeros(shape + (2, k), dtype=np.int8)
    n_neg, fro, wall = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    lower, products = np.zeros(shape, dtype=np.int8), np.zeros(shape, dtype=np.int64)
    methods = np.full(shape[1:], "", dtype=object)
    s_min, s_max, s_neg = np.full(shape + (n_rows,), np.nan), np.full(shape + (n_rows,), np.nan), np.full(shape + (n_rows,), np.nan)
    spectrum = np.full(shape + (spec_n, spec_d), np.nan)
    lshape = shape[:3]
    m_ratio, m_spec, layer_wall = np.full(lshape, np.nan), np.full(lshape, np.nan), np.full(lshape, np.nan)
    m_ratio_s = np.full(lshape + (n_rows,), np.nan)
    rho = np.full((len(steps), len(readings), n_rows), np.nan)
    loss_value = np.full((len(steps), len(readings)), np.nan)
    paper_min, paper_dom = np.full((len(steps), len(layers)), np.nan), np.full((len(steps), len(layers)), np.nan)
    paper_products, paper_wall = np.zeros((len(steps), len(layers)), dtype=np.int64), np.full((len(steps), len(layers)), np.nan)
    for s, step_results in enumerate(results):
        for lr in step_results:
            i, j = readings.index(lr.reading), layers.index(lr.layer)
            m_ratio[s, i, j], m_spec[s, i, j], layer_wall[s, i, j] = lr.m_ratio, lr.m_spectral_ratio, lr.wall_time_s
            rho[s, i, : lr.n_rows] = lr.rho_norm.numpy()
            loss_value[s, i] = lr.loss_value
            if lr.paper is not None:
                paper_min[s, j], paper_dom[s, j] = lr.paper.minimum, lr.paper.dominant
                paper_products[s, j], paper_wall[s, j] = lr.paper.n_products, lr.paper.wall_time_s
            h, m = lr.terms["H_eff"], lr.terms["M"]
            if h.sample_frobenius is not None and m.sample_frobenius is not None:
                ratio = m.sample_frobenius / h.sample_frobenius
                m_ratio_s[s, i, j, : ratio.numel()] = ratio.numpy()
            for t, term in enumerate(TERMS):
                tc = lr.terms[term]
                idx = (s, i, j, t)
                for e, end in enumerate((tc.bottom, tc.top)):
                    kk = end.eigenvalues.numel()
                    eig[idx + (e, slice(0, kk))] = end.eigenvalues.numpy()
                    res[idx + (e, slice(0, kk))] = end.residuals.numpy()
                    conv[idx + (e, slice(0, kk))] = end.converged.numpy().astype(np.int8)
                n_neg[idx], lower[idx], fro[idx] = tc.n_neg, int(not tc.n_neg_exact), tc.frobenius
                products[idx], wall[idx] = tc.bottom.n_products, tc.wall_time_s
                methods[i, j, t] = tc.method
                if tc.sample_min is not None and tc.sample_max is not None and tc.sample_n_neg is not None:
                    nr = tc.sample_min.numel()
                    s_min[idx + (slice(0, nr),)] = tc.sample_min.numpy()
                    s_max[idx + (slice(0, nr),)] = tc.sample_max.numpy()
                    s_neg[idx + (slice(0, nr),)] = tc.sample_n_neg.numpy()
                if tc.spectra is not None:
                    spectrum[idx + (slice(0, tc.spectra.shape[0]), slice(0, tc.spectra.shape[1]))] = tc.spectra.numpy()
    term_dims = ("step", "reading", "layer", "term")
    eig_dims = term_dims + ("end", "eig_index")
    unit_note = "Hessian of the summed loss n*L w.r.t. the layer inputs (multiply by batch_scale for the mean loss)"
    data = {
        "eigenvalue": (
            eig_dims,
            eig,
            attrs(
                "extreme eigenvalues of the batch operator",
                "1",
                comment=unit_note + "; Lanczos finds an exactly repeated eigenvalue once",
                ancillary_variables="residual converged",
            ),
        ),
        "residual": (eig_dims, res, attrs("recomputed Ritz residual ||A v - lambda v|| of a unit eigenvector", "1")),
        "converged": (eig_dims, conv, attrs("residual <= tol * max(max|lambda|, scale)", "1", flag_values="0 1", flag_meanings="no yes")),
        "n_neg": (term_dims, n_neg, attrs(f"eigenvalues below -max(floor*max|lambda|, residual), floor={floor:g}", "1")),
        "n_neg_is_lower_bound": (
            term_dims,
            lower,
            attrs("n_neg counts only the k bottom Ritz values (Lanczos)", "1", flag_values="0 1", flag_meanings="exact lower_bound"),
        ),
        "frobenius_norm": (term_dims, fro, attrs("Frobenius norm of the batch operator (NaN when not exact)", "1")),
        "n_products": (
            term_dims,
            products,
            attrs(
                "operator products used (Krylov steps, residual checks, or columns for dense)",
                "1",
                comment="H_L is computed once per reading and shared by every layer",
            ),
        ),
        "wall_time_s": (term_dims, wall, attrs("wall time of the eigen-solve of this term", "s")),
        "method": (
            ("reading", "layer", "term"),
            methods.astype(str),
            attrs("solver: closed-form (per-sample blocks), dense or lanczos", "1"),
        ),
        "m_ratio": (term_dims[:3], m_ratio, attrs("||M||_F / ||H_eff||_F of the batch operator (NaN when not exact)", "1")),
        "m_spectral_ratio": (term_dims[:3], m_spec, attrs("max|lambda(M)| / max|lambda(H_eff)|", "1")),
        "layer_wall_time_s": (term_dims[:3], layer_wall, attrs("wall time of the whole layer (all terms)", "s")),
        "sample_lambda_min": (term_dims + ("sample",), s_min, attrs("lambda_min of each sample's block (per-sample path)", "1")),
        "sample_lambda_max": (term_dims + ("sample",), s_max, attrs("lambda_max of each sample's block (per-sample path)", "1")),
        "sample_n_neg": (
            term_dims + ("sample",),
            s_neg,
            attrs(f"negative eigenvalues of each sample's block, floor={floor:g} relative to its max|lambda|", "1"),
        ),
        "sample_m_ratio": (term_dims[:3] + ("sample",), m_ratio_s, attrs("||M_b||_F / ||H_eff,b||_F per sample (per-sample path)", "1")),
        "spectrum": (
            term_dims + ("spectrum_sample", "spectrum_index"),
            spectrum,
            attrs("full ascending spectrum of a sample's block (NaN padded)", "1"),
        ),
        "rho_norm": (
            ("step", "reading", "sample"),
            rho,
            attrs("norm of the loss gradient w.r.t. the loss input, per row (rho = grad_h l)", "1"),
        ),
        "loss_value": (("step", "reading"), loss_value, attrs("loss of this reading on the evaluated samples (mean convention)", "1")),
        "paper_lambda_min": (
            ("step", "layer"),
            paper_min,
            attrs("the paper's 20-step shifted power-iteration lambda_min (float32) on ambient H_eff", "1"),
        ),
        "paper_lambda_dominant": (
            ("step", "layer"),
            paper_dom,
            attrs("the paper's 20-step power-iteration dominant eigenvalue (float32)", "1"),
        ),
        "paper_n_products": (
            ("step", "layer"),
            paper_products,
            attrs("products used by the paper's estimator (0 where it was not computed)", "1"),
        ),
        "paper_wall_time_s": (("step", "layer"), paper_wall, attrs("wall time of the paper's estimator", "s")),
    }
    coords = {
        "step": ("step", np.asarray(steps, dtype=np.int64), attrs("optimiser updates applied", "1")),
        "reading": ("reading", readings, attrs("loss-Hessian reading: ambient, tangential (P H_L P) or mse (H_L = I)", "1")),
        "layer": ("layer", layers, attrs("head layer whose input is differentiated (z = backbone output)", "1")),
        "term": ("term", list(TERMS), attrs("H_eff = G + M, G = J^T H_L J, M = interaction term, H_L = loss Hessian", "1")),
        "end": ("end", ["bottom", "top"], attrs("spectrum end: bottom (ascending) or top (descending)", "1")),
        "eig_index": ("eig_index", np.arange(k), attrs("rank from the spectrum end (0 = most extreme)", "1")),
        "sample": ("sample", np.arange(n_rows), attrs("evaluated row of the tracking batch", "1")),
        "spectrum_sample": ("spectrum_sample", np.arange(spec_n), attrs("sample whose full block spectrum is kept", "1")),
        "spectrum_index": ("spectrum_index", np.arange(spec_d), attrs("eigenvalue index, ascending", "1")),
    }
    run = config["run"]
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = provenance(
        f"geomhead curvature of run {run['id']}",
        run_json=json.dumps({key: run[key] for key in ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed")}),
        config_json=json.dumps(config, sort_keys=True),
        curvature_json=settings_json,
        batch_scale=1.0 / n_samples,
        convention=unit_note,
    )
    return ds
