"""Self-supervised losses as pure, out-of-place functions of tensors.

Every loss here is a function of its input tensors only: no module state, no in-place ops and no
data-dependent Python control flow, so ``torch.func.grad``, ``torch.func.jvp`` and
``torch.func.hessian`` can differentiate it twice, in float32 and float64. Batch statistics
(Barlow Twins' standardisation, VICReg's variance and covariance) are computed from the batch
itself, never from a module's running statistics, so no value depends on ``train()``/``eval()``.

Notation (PAPER §5): ``h`` are projector outputs, ``p`` predictor outputs, ``t`` projections of
the EMA target network; ``sg`` is the stop-gradient (``Tensor.detach``); ``x̂ = x / max(‖x‖, ε)``.
The reference for VICReg and Barlow Twins is the official code (CONVENTIONS.md §0.9).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

__all__ = [
    "LOSS_NAMES",
    "USES_PREDICTOR",
    "USES_TARGET",
    "barlow_loss",
    "byol_loss",
    "infonce_loss",
    "negative_cosine",
    "ntxent_loss",
    "simsiam_loss",
    "ssl_loss",
    "vicreg_loss",
]

LOSS_NAMES: tuple[str, ...] = ("simsiam", "byol", "ntxent", "infonce", "vicreg", "barlow")
USES_PREDICTOR: dict[str, bool] = {name: name in ("simsiam", "byol") for name in LOSS_NAMES}
USES_TARGET: dict[str, bool] = {name: name == "byol" for name in LOSS_NAMES}

# Norm floor of the contrastive losses' L2 normalisation (as torch.nn.functional.normalize).
_NORMALIZE_EPS = 1e-12


def _check_inputs(loss: str, tensors: Mapping[str, object], min_batch: int) -> None:
    """Checks that the named tensors are 2-D float tensors of one shape with batch >= min_batch.

    Raises:
        ValueError: naming the offending argument, its value and what is allowed.
    """
    first_name: str | None = None
    first: Tensor | None = None
    for name, x in tensors.items():
        if not isinstance(x, Tensor):
            raise ValueError(f"{loss}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(
                f"{loss}: {name} must be 2-D (batch, dim), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"{loss}: {name} must have a floating dtype, got {x.dtype}")
        if x.shape[0] < min_batch:
            raise ValueError(
                f"{loss}: {name} has batch size {x.shape[0]}; this loss needs batch >= {min_batch}"
            )
        if x.shape[1] < 1:
            raise ValueError(f"{loss}: {name} has feature dim 0; need dim >= 1")
        if first is None:
            first_name, first = name, x
        elif x.shape != first.shape:
            raise ValueError(
                f"{loss}: {name} has shape {tuple(x.shape)} but {first_name} has shape "
                f"{tuple(first.shape)}; all inputs must have the same shape"
            )
        elif x.dtype != first.dtype:
            raise ValueError(
                f"{loss}: {name} has dtype {x.dtype} but {first_name} has dtype {first.dtype}; "
                "all inputs must have the same dtype"
            )


def _check_real(loss: str, name: str, value: object, *, positive: bool) -> float:
    """Returns value as a float if it is a finite real number, > 0 (positive) or >= 0.

    Raises:
        ValueError: if value is not a finite real number in the allowed range.
    """
    allowed = "a finite number > 0" if positive else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{loss}: {name} must be {allowed}, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < 0.0 or (positive and out == 0.0):
        raise ValueError(f"{loss}: {name} must be {allowed}, got {value!r}")
    return out


def _normalize(x: Tensor, eps: float) -> Tensor:
    """Row-wise x̂ = x / max(‖x‖₂, eps), out of place."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps)


def _off_diagonal_square_sum(c: Tensor) -> Tensor:
    """Σ_{i≠j} c_ij² of a square matrix (masked, no cancellation)."""
    off = 1.0 - torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    return (c.square() * off).sum()


def negative_cosine(p: Tensor, z: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-sample negative cosine similarity, no stop-gradient.

    ``out_b = −⟨p̂_b, ẑ_b⟩`` with ``x̂ = x / max(‖x‖₂, eps)`` (as ``F.cosine_similarity``).

    Args:
        p: (B, d) predictions.
        z: (B, d) targets, same shape as p.
        eps: norm floor, > 0.

    Returns:
        Tensor of shape (B,).
    """
    _check_inputs("negative_cosine", {"p": p, "z": z}, min_batch=1)
    eps = _check_real("negative_cosine", "eps", eps, positive=True)
    return -(_normalize(p, eps) * _normalize(z, eps)).sum(dim=-1)


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """SimSiam loss (Chen & He 2021; PAPER §5.1).

    ``L = ½ [mean_b −cos(p1_b, sg z2_b) + mean_b −cos(p2_b, sg z1_b)]``; no gradient reaches z.

    Args:
        p1, p2: (B, d) predictor outputs of views 1 and 2.
        z1, z2: (B, d) projector outputs (targets) of views 1 and 2.

    Returns:
        Scalar loss in [−1, 1].
    """
    _check_inputs("simsiam", {"p1": p1, "p2": p2, "z1": z1, "z2": z2}, min_batch=1)
    term1 = negative_cosine(p1, z2.detach()).mean()
    term2 = negative_cosine(p2, z1.detach()).mean()
    return 0.5 * (term1 + term2)


def byol_loss(p1: Tensor, p2: Tensor, t1: Tensor, t2: Tensor) -> Tensor:
    """Symmetrised BYOL loss (Grill et al. 2020).

    ``L = mean_b [2 − 2cos(p1_b, sg t2_b)] + mean_b [2 − 2cos(p2_b, sg t1_b)]``; each bracket is
    ``‖p̂ − t̂‖²``, so L ∈ [0, 8] and aligned views give 0.

    Args:
        p1, p2: (B, d) online predictor outputs of views 1 and 2.
        t1, t2: (B, d) EMA-target projections of views 1 and 2 (no gradient reaches them).

    Returns:
        Scalar loss.
    """
    _check_inputs("byol", {"p1": p1, "p2": p2, "t1": t1, "t2": t2}, min_batch=1)
    term1 = (2.0 + 2.0 * negative_cosine(p1, t2.detach())).mean()
    term2 = (2.0 + 2.0 * negative_cosine(p2, t1.detach())).mean()
    return term1 + term2


def ntxent_loss(h1: Tensor, h2: Tensor, temperature: float = 0.5) -> Tensor:
    """Symmetric SimCLR NT-Xent loss (Chen et al. 2020).

    With ``u = [ĥ1; ĥ2]`` (2N rows) and ``s_ij = ⟨u_i, u_j⟩ / τ``, anchor i has the positive
    ``pos(i) = (i + N) mod 2N`` and the 2N−2 negatives ``j ∉ {i, pos(i)}`` (self masked):
    ``L = mean_i [−s_{i,pos(i)} + log Σ_{j≠i} exp s_ij]`` over the 2N anchors.

    Args:
        h1, h2: (N, d) projector outputs of the two views, N >= 2.
        temperature: τ > 0.

    Returns:
        Scalar loss.
    """
    _check_inputs("ntxent", {"h1": h1, "h2": h2}, min_batch=2)
    tau = _check_real("ntxent", "temperature", temperature, positive=True)
    n = h1.shape[0]
    u = torch.cat([_normalize(h1, _NORMALIZE_EPS), _normalize(h2, _NORMALIZE_EPS)], dim=0)
    sim = (u @ u.T) / tau
    rows = torch.arange(2 * n, device=h1.device)
    positive = sim.gather(1, ((rows + n) % (2 * n)).unsqueeze(1)).squeeze(1)
    # Row i of `others` lists every column j != i: k -> k + [k >= i], k = 0..2N-2.
    k = torch.arange(2 * n - 1, device=h1.device).unsqueeze(0)
    others = k + (k >= rows.unsqueeze(1)).long()
    logits = sim.gather(1, others)
    return (torch.logsumexp(logits, dim=1) - positive).mean()


def infonce_loss(h1: Tensor, h2: Tensor, temperature: float = 0.1) -> Tensor:
    """One-directional B-way InfoNCE as in the paper's code (PAPER §5.1).

    ``S = ĥ1 ĥ2ᵀ / τ``; ``L = mean_b [−S_bb + log Σ_j exp S_bj]`` = CE(S, arange(B)): view-1
    anchors against view-2 candidates, no same-view negatives, gradients through both views.

    Args:
        h1, h2: (B, d) projector outputs of the two views, B >= 2.
        temperature: τ > 0.

    Returns:
        Scalar loss.
    """
    _check_inputs("infonce", {"h1": h1, "h2": h2}, min_batch=2)
    tau = _check_real("infonce", "temperature", temperature, positive=True)
    logits = (_normalize(h1, _NORMALIZE_EPS) @ _normalize(h2, _NORMALIZE_EPS).T) / tau
    return (torch.logsumexp(logits, dim=1) - torch.diagonal(logits)).mean()


def vicreg_loss(
    h1: Tensor,
    h2: Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg loss as in the official code (Bardes et al. 2022, facebookresearch/vicreg).

    ``repr = mean_{b,k} (h1 − h2)²``; with ``X = h − mean_b h`` per view,
    ``std(X) = mean_k relu(1 − sqrt(Var_b X_k + eps))`` (unbiased variance),
    ``cov(X) = (1/d) Σ_{i≠j} C_ij²``, ``C = XᵀX / (N − 1)``;
    ``L = sim·repr + std_c·[std(X1) + std(X2)]/2 + cov_c·[cov(X1) + cov(X2)]``.

    Args:
        h1, h2: (N, d) projector outputs of the two views, N >= 2.
        sim_coeff: invariance weight λ >= 0.
        std_coeff: variance weight μ >= 0.
        cov_coeff: covariance weight ν >= 0.
        eps: variance floor inside the square root, >= 0 (0 only if no feature is constant).

    Returns:
        Scalar loss.
    """
    _check_inputs("vicreg", {"h1": h1, "h2": h2}, min_batch=2)
    sim_c = _check_real("vicreg", "sim_coeff", sim_coeff, positive=False)
    std_c = _check_real("vicreg", "std_coeff", std_coeff, positive=False)
    cov_c = _check_real("vicreg", "cov_coeff", cov_coeff, positive=False)
    eps = _check_real("vicreg", "eps", eps, positive=False)
    n, d = h1.shape
    repr_term = (h1 - h2).square().mean()
    x1 = h1 - h1.mean(dim=0, keepdim=True)
    x2 = h2 - h2.mean(dim=0, keepdim=True)
    std1 = torch.sqrt(torch.var(x1, dim=0, correction=1) + eps)
    std2 = torch.sqrt(torch.var(x2, dim=0, correction=1) + eps)
    std_term = 0.5 * torch.relu(1.0 - std1).mean() + 0.5 * torch.relu(1.0 - std2).mean()
    cov1 = (x1.T @ x1) / (n - 1)
    cov2 = (x2.T @ x2) / (n - 1)
    cov_term = (_off_diagonal_square_sum(cov1) + _off_diagonal_square_sum(cov2)) / d
    return sim_c * repr_term + std_c * std_term + cov_c * cov_term


def _batch_standardize(h: Tensor, eps: float) -> Tensor:
    """Per-feature ``(h − mean_b h) / sqrt(Var_b h + eps)`` with biased variance (train-mode BN)."""
    mean = h.mean(dim=0, keepdim=True)
    var = torch.var(h, dim=0, correction=0, keepdim=True)
    return (h - mean) / torch.sqrt(var + eps)


def barlow_loss(h1: Tensor, h2: Tensor, lambd: float = 0.0051, eps: float = 1e-5) -> Tensor:
    """Barlow Twins loss as in the official code (Zbontar et al. 2021, barlowtwins repo).

    ``ẑ = (h − mean_b h) / sqrt(Var_b h + eps)`` per feature with biased batch variance, i.e.
    ``BatchNorm1d(affine=False)`` in train mode, computed functionally (no mode dependence);
    ``C = ẑ1ᵀ ẑ2 / N``; ``L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``.

    Args:
        h1, h2: (N, d) projector outputs of the two views, N >= 2.
        lambd: off-diagonal weight λ >= 0 (official 0.0051).
        eps: variance floor, >= 0 (BatchNorm1d's 1e-5; 0 only if no feature is constant).

    Returns:
        Scalar loss.
    """
    _check_inputs("barlow", {"h1": h1, "h2": h2}, min_batch=2)
    lam = _check_real("barlow", "lambd", lambd, positive=False)
    eps = _check_real("barlow", "eps", eps, positive=False)
    n = h1.shape[0]
    c = (_batch_standardize(h1, eps).T @ _batch_standardize(h2, eps)) / n
    on_diag = (1.0 - torch.diagonal(c)).square().sum()
    return on_diag + lam * _off_diagonal_square_sum(c)


# Per loss: the function, the output keys passed positionally, and the allowed settings.
_LOSS_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "simsiam": simsiam_loss,
    "byol": byol_loss,
    "ntxent": ntxent_loss,
    "infonce": infonce_loss,
    "vicreg": vicreg_loss,
    "barlow": barlow_loss,
}
_OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "simsiam": ("p1", "p2", "h1", "h2"),
    "byol": ("p1", "p2", "t1", "t2"),
    "ntxent": ("h1", "h2"),
    "infonce": ("h1", "h2"),
    "vicreg": ("h1", "h2"),
    "barlow": ("h1", "h2"),
}
_SETTINGS: dict[str, tuple[str, ...]] = {
    "simsiam": (),
    "byol": (),
    "ntxent": ("temperature",),
    "infonce": ("temperature",),
    "vicreg": ("sim_coeff", "std_coeff", "cov_coeff", "eps"),
    "barlow": ("lambd", "eps"),
}


def ssl_loss(name: str, outputs: Mapping[str, Tensor], **settings: float) -> Tensor:
    """Evaluates the SSL loss ``name`` on a dict of model outputs.

    Keys: ``h1, h2`` projector outputs; ``p1, p2`` predictor outputs; ``t1, t2`` EMA-target
    projections. simsiam uses (p1, p2, h1, h2) — the targets are the projector outputs — byol
    uses (p1, p2, t1, t2), the others (h1, h2). Extra keys are ignored.

    Args:
        name: one of LOSS_NAMES.
        outputs: mapping from output key to (B, d) tensor.
        **settings: that loss's keyword arguments (e.g. ``temperature=0.1``).

    Returns:
        Scalar loss.

    Raises:
        ValueError: unknown name, unknown setting, or missing output key.
    """
    if not isinstance(name, str) or name not in _LOSS_FUNCTIONS:
        raise ValueError(f"ssl_loss: unknown loss name {name!r}; allowed: {list(LOSS_NAMES)}")
    if not isinstance(outputs, Mapping):
        raise ValueError(
            f"ssl_loss({name!r}): outputs must be a mapping of output key to tensor, "
            f"got {type(outputs).__name__}"
        )
    allowed = _SETTINGS[name]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(
            f"ssl_loss({name!r}): unknown setting(s) {unknown}; allowed: {list(allowed)}"
        )
    needed = _OUTPUT_KEYS[name]
    missing = [key for key in needed if key not in outputs]
    if missing:
        raise ValueError(
            f"ssl_loss({name!r}): missing output(s) {missing}; needs {list(needed)}, "
            f"got {list(outputs)}"
        )
    return _LOSS_FUNCTIONS[name](*(outputs[key] for key in needed), **settings)
