"""Matrix-free products with the effective Hessian of a coupled SSL loss and with its terms (PAPER §8.2–8.3).

For layer inputs X of a whole batch (any shape, N = X.numel()), head outputs H = g(X) and a scalar loss
L(H) that may couple samples (NT-Xent, VICReg, Barlow Twins, train-mode BatchNorm), the operators are

    H_eff = ∇²_X L(g(X)),   G = Jᵀ H_L J  (J = ∂H/∂X, H_L = ∇²_H L),   M = H_eff − G,   H_L,

applied to vectors without forming the N×N matrices. Two backends compute the same products:
``"reverse"`` (double backward; the first-order graphs are built once and reused by every product) and
``"forward"`` (forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``). With ``tangential=True``
the loss Hessian is read on the sphere of each output row, H_L → P H_L P with P = I − uuᵀ, u = h/‖h‖,
and H_eff → G_tan + M (PAPER §8.1, §18). :func:`head_function` evaluates a stack of
:class:`~geomhead.heads.ProjectionHead` blocks functionally, with BatchNorm in train mode (batch statistics,
running statistics untouched) or eval mode, so that every transform can differentiate it twice.

:class:`CurvatureOperator` differentiates head and loss together (any head, train-mode BatchNorm included).
:class:`FactoredOperator` serves heads that act row by row: H_eff = Jᵀ H_L J + blockdiag(M_b) with the per-row
J_b and M_b in closed form (:mod:`geomhead.hessian`), so only the loss is differentiated, or not even that:
:func:`vicreg_hessian_product` is VICReg's loss Hessian in closed form, and :func:`vicreg_gram` /
:func:`barlow_gram` are the official VICReg / Barlow Twins losses rewritten through n×n Gram matrices
(identical values, O(n²d) instead of O(nd²) per derivative when the batch is narrower than the head).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from geomhead.heads import ProjectionHead

__all__ = [
    "BACKENDS",
    "OPERATOR_TERMS",
    "CurvatureOperator",
    "FactoredOperator",
    "barlow_gram",
    "head_function",
    "vicreg_gram",
    "vicreg_hessian_product",
]

Backend = Literal["reverse", "forward"]
BACKENDS: tuple[str, ...] = ("reverse", "forward")
OPERATOR_TERMS: tuple[str, ...] = ("H_eff", "G", "M", "H_L")


def _block_function(block: nn.Sequential, batchnorm: str, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """x ↦ σ(BN(W x + b)) of one block, with detached parameters in ``dtype``."""
    linear = block[0]
    weight = linear.weight.detach().to(dtype)
    bias = None if linear.bias is None else linear.bias.detach().to(dtype)
    steps: list[Callable[[Tensor], Tensor]] = []
    for module in list(block)[1:]:
        if isinstance(module, nn.BatchNorm1d):
            gamma = module.weight.detach().to(dtype) if module.affine else None
            beta = module.bias.detach().to(dtype) if module.affine else None
            eps = float(module.eps)
            if batchnorm == "train":
                steps.append(_train_bn(gamma, beta, eps))
            else:
                if module.running_mean is None or module.running_var is None:
                    raise ValueError("BatchNorm without running statistics has no eval mode; use batchnorm='train'")
                steps.append(_eval_bn(module.running_mean.detach().to(dtype), module.running_var.detach().to(dtype), gamma, beta, eps))
        elif isinstance(module, nn.ReLU):
            steps.append(torch.relu)
        elif isinstance(module, nn.GELU):
            steps.append(lambda x, approximate=module.approximate: nn.functional.gelu(x, approximate=approximate))
        elif isinstance(module, nn.SiLU):
            steps.append(nn.functional.silu)
        elif not isinstance(module, nn.Identity):
            raise ValueError(f"head block contains an unsupported module {type(module).__name__}")

    def forward(x: Tensor) -> Tensor:
        out = x @ weight.T if bias is None else x @ weight.T + bias
        for step in steps:
            out = step(out)
        return out

    return forward


def _train_bn(gamma: Tensor | None, beta: Tensor | None, eps: float) -> Callable[[Tensor], Tensor]:
    """Train-mode BatchNorm1d: (x − mean_b x)/sqrt(Var_b x + eps) (biased variance) then the affine map."""

    def bn(x: Tensor) -> Tensor:
        mean = x.mean(dim=-2, keepdim=True)
        var = (x - mean).square().mean(dim=-2, keepdim=True)
        out = (x - mean) / torch.sqrt(var + eps)
        return out if gamma is None or beta is None else out * gamma + beta

    return bn


def _eval_bn(mean: Tensor, var: Tensor, gamma: Tensor | None, beta: Tensor | None, eps: float) -> Callable[[Tensor], Tensor]:
    """Eval-mode BatchNorm1d with running statistics (an affine map)."""
    scale = 1.0 / torch.sqrt(var + eps)

    def bn(x: Tensor) -> Tensor:
        out = (x - mean) * scale
        return out if gamma is None or beta is None else out * gamma + beta

    return bn


def head_function(
    heads: Sequence[ProjectionHead],
    start: int = 0,
    stop: int | None = None,
    *,
    batchnorm: Literal["train", "eval"] = "train",
    dtype: torch.dtype = torch.float64,
) -> Callable[[Tensor], Tensor]:
    """x ↦ h through blocks ``start:`` of ``heads[0]`` and every block of the later heads, functionally.

    With ``stop`` (one head only) the map is blocks ``start:stop`` of ``heads[0]``: e.g. ``stop=l`` from z gives
    the input of block l.

    Input (..., n, d) → output (..., n, k); train-mode BatchNorm normalises over the sample axis −2 (one view's
    batch), never touching the modules' running statistics.

    Raises:
        ValueError: If ``heads`` is empty or not ProjectionHeads, ``start``/``stop`` is out of range, or
            ``batchnorm`` is not ``train``/``eval``.
    """
    if not heads or not all(isinstance(h, ProjectionHead) for h in heads):
        raise ValueError(f"heads must be a non-empty sequence of ProjectionHead, got {heads!r}")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < heads[0].depth:
        raise ValueError(f"start must be an int in [0, {heads[0].depth - 1}], got {start!r}")
    if batchnorm not in ("train", "eval"):
        raise ValueError(f"batchnorm must be 'train' or 'eval', got {batchnorm!r}")
    if stop is not None and (len(heads) != 1 or isinstance(stop, bool) or not isinstance(stop, int) or not start <= stop <= heads[0].depth):
        raise ValueError(f"stop must be None or, with one head, an int in [{start}, {heads[0].depth}], got {stop!r}")
    if stop is None:
        blocks = list(heads[0].blocks[start:]) + [blk for head in heads[1:] for blk in head.blocks]
    else:
        blocks = list(heads[0].blocks[start:stop])
    functions = [_block_function(block, batchnorm, dtype) for block in blocks]

    def forward(x: Tensor) -> Tensor:
        for function in functions:
            x = function(x)
        return x

    return forward


def _row_projector(h: Tensor) -> Callable[[Tensor], Tensor]:
    """w ↦ P w row by row, P = I − uuᵀ with u the unit rows of h."""
    u = h / torch.linalg.vector_norm(h, dim=-1, keepdim=True)

    def project(w: Tensor) -> Tensor:
        return w - u * (u * w).sum(dim=-1, keepdim=True)

    return project


class _Operator:
    """Counting, shapes and batching shared by the operators; subclasses implement ``_apply``.

    ``shape`` is the shape of the space H_eff, G and M act on, ``h_shape`` that of H_L; vectors are flat.
    """

    shape: tuple[int, ...]
    h_shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    rho: Tensor
    loss_value: float

    def _init_counts(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(OPERATOR_TERMS, 0)
        self.time_s: dict[str, float] = dict.fromkeys(OPERATOR_TERMS, 0.0)

    @property
    def size(self) -> int:
        """N, the dimension of the space of H_eff, G and M."""
        return math.prod(self.shape)

    @property
    def h_size(self) -> int:
        """N_h, the dimension of the space of H_L."""
        return math.prod(self.h_shape)

    def _apply(self, term: str, v: Tensor, batched: bool) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_term(self, term: str) -> None:
        if term not in OPERATOR_TERMS:
            raise ValueError(f"term must be one of {OPERATOR_TERMS}, got {term!r}")

    def term_size(self, term: str) -> int:
        """Dimension of the space ``term`` acts on (N for H_eff, G, M; N_h for H_L)."""
        self._check_term(term)
        return self.h_size if term == "H_L" else self.size

    def matvec(self, term: str, v: Tensor) -> Tensor:
        """``term`` · v for a flat vector v of length :meth:`term_size`; counts one product."""
        self._check_term(term)
        shape = self.h_shape if term == "H_L" else self.shape
        if v.shape != (math.prod(shape),):
            raise ValueError(f"v must have shape ({math.prod(shape)},) for term {term}, got {tuple(v.shape)}")
        start = time.perf_counter()
        with torch.enable_grad():
            out = self._apply(term, v.to(self.dtype).reshape(shape), batched=False).detach().reshape(-1)
        self.counts[term] += 1
        self.time_s[term] += time.perf_counter() - start
        return out

    def matmat(self, term: str, v: Tensor) -> Tensor:
        """``term`` · V for V of shape (size, m), batched (vmap); counts m products."""
        self._check_term(term)
        shape = self.h_shape if term == "H_L" else self.shape
        size = math.prod(shape)
        if v.ndim != 2 or v.shape[0] != size:
            raise ValueError(f"V must have shape ({size}, m) for term {term}, got {tuple(v.shape)}")
        start = time.perf_counter()
        with torch.enable_grad():
            out = self._apply(term, v.to(self.dtype).T.reshape(v.shape[1], *shape), batched=True).detach()
        self.counts[term] += v.shape[1]
        self.time_s[term] += time.perf_counter() - start
        return out.reshape(v.shape[1], size).T

    def matvec_fn(self, term: str) -> Callable[[Tensor], Tensor]:
        """v ↦ ``term`` · v as a plain function (for eigensolvers)."""
        self._check_term(term)
        return lambda v: self.matvec(term, v)

    def matmat_fn(self, term: str) -> Callable[[Tensor], Tensor]:
        """V ↦ ``term`` · V as a plain function (for eigensolvers)."""
        self._check_term(term)
        return lambda v: self.matmat(term, v)

    def dense(self, term: str, chunk: int = 256) -> Tensor:
        """The symmetrised matrix of ``term`` from its action on the identity, ``chunk`` columns at a time."""
        size = self.term_size(term)
        eye = torch.eye(size, dtype=self.dtype, device=self.device)
        cols = [self.matmat(term, eye[:, i : i + chunk]) for i in range(0, size, chunk)]
        mat = torch.cat(cols, dim=1)
        return 0.5 * (mat + mat.T)


def vicreg_gram(
    h1: Tensor, h2: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4
) -> Tensor:
    """:func:`geomhead.losses.vicreg_loss`, with the covariance term through n×n Gram matrices.

    Σ_{i≠j} C_ij² = (‖X Xᵀ‖_F² − Σ_j s_j²)/(N − 1)² with s_j = Σ_b X_bj² (X centred, C = XᵀX/(N − 1)): O(N²d)
    instead of O(Nd²) per evaluation, and the same for every derivative — the fast form when N < d.
    """
    n, d = h1.shape
    repr_term = (h1 - h2).square().mean()
    x1, x2 = h1 - h1.mean(dim=0, keepdim=True), h2 - h2.mean(dim=0, keepdim=True)
    s1, s2 = x1.square().sum(dim=0), x2.square().sum(dim=0)
    std1, std2 = torch.sqrt(s1 / (n - 1) + eps), torch.sqrt(s2 / (n - 1) + eps)
    std_term = 0.5 * torch.relu(1.0 - std1).mean() + 0.5 * torch.relu(1.0 - std2).mean()
    cov1 = ((x1 @ x1.T).square().sum() - s1.square().sum()) / ((n - 1) ** 2 * d)
    cov2 = ((x2 @ x2.T).square().sum() - s2.square().sum()) / ((n - 1) ** 2 * d)
    return sim_coeff * repr_term + std_coeff * std_term + cov_coeff * (cov1 + cov2)


def barlow_gram(h1: Tensor, h2: Tensor, lambd: float = 0.0051, eps: float = 1e-5) -> Tensor:
    """:func:`geomhead.losses.barlow_loss`, with ‖C‖_F² = ⟨Ẑ1Ẑ1ᵀ, Ẑ2Ẑ2ᵀ⟩/N² through n×n Gram matrices.

    L = Σ_i (1 − C_ii)² + λ(‖C‖_F² − Σ_i C_ii²), C = Ẑ1ᵀẐ2/N, Ẑ batch-standardised (biased variance).
    """
    n = h1.shape[0]
    z1 = (h1 - h1.mean(dim=0, keepdim=True)) / torch.sqrt(h1.var(dim=0, correction=0, keepdim=True) + eps)
    z2 = (h2 - h2.mean(dim=0, keepdim=True)) / torch.sqrt(h2.var(dim=0, correction=0, keepdim=True) + eps)
    diag = (z1 * z2).sum(dim=0) / n
    fro2 = ((z1 @ z1.T) * (z2 @ z2.T)).sum() / n**2
    return (1.0 - diag).square().sum() + lambd * (fro2 - diag.square().sum())


def vicreg_hessian_product(
    h: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4
) -> Callable[[Tensor], Tensor]:
    """W ↦ ∇²_H (n·L) W in closed form for the official VICReg loss (:func:`geomhead.losses.vicreg_loss`).

    H is (n, d) (view 1, view 2 held fixed) or (2, n, d) (both views); W has H's shape with any leading batch
    axes. Per view, with X = H − mean_b H, s_j = Σ_b X_bj², σ_j = sqrt(s_j/(n−1) + eps), K = XXᵀ and P the
    centring along samples: the invariance term gives (2λ/d)·I (view 1) or (2λ/d)[[I, −I], [−I, I]] (both);
    the variance term, column j active when σ_j < 1, gives (μ/2d)[X_j X_jᵀ/((n−1)²σ_j³) − I/((n−1)σ_j)];
    the covariance term (ν/((n−1)²d))(‖K‖_F² − Σ_j s_j²) gives 4c[WXᵀX + XWᵀX + KW − W diag s − 2X diag(X∘W)],
    each sandwiched by P — O(n²d) per product, never forming a d×d matrix.
    """
    if h.ndim not in (2, 3) or (h.ndim == 3 and h.shape[0] != 2):
        raise ValueError(f"h must have shape (n, d) or (2, n, d), got {tuple(h.shape)}")
    n, d = h.shape[-2], h.shape[-1]
    x = h - h.mean(dim=-2, keepdim=True)
    s = x.square().sum(dim=-2, keepdim=True)
    sigma = torch.sqrt(s / (n - 1) + eps)
    active = (sigma < 1.0).to(h.dtype)
    outer = active * std_coeff / (2 * d) / ((n - 1) ** 2 * sigma**3)
    diag = active * std_coeff / (2 * d) / ((n - 1) * sigma)
    gram = x @ x.mT
    c = 4.0 * cov_coeff / ((n - 1) ** 2 * d)
    sim = 2.0 * sim_coeff / d

    def product(w: Tensor) -> Tensor:
        wc = w - w.mean(dim=-2, keepdim=True)
        dots = (x * wc).sum(dim=-2, keepdim=True)
        out = x * (outer * dots) - wc * diag
        out = out + c * ((wc @ x.mT) @ x + (x @ wc.mT) @ x + gram @ wc - wc * s - 2.0 * x * dots)
        out = out - out.mean(dim=-2, keepdim=True)
        if h.ndim == 3:
            diff = w[..., 0, :, :] - w[..., 1, :, :]
            return n * out + sim * torch.stack([diff, -diff], dim=-3)
        return n * out + sim * w

    return product


class _LossHessian:
    """w ↦ ∇²_H L · w by automatic differentiation of the loss alone, or by a given closed-form ``product``
    (optionally read tangentially)."""

    def __init__(
        self, loss: Callable[[Tensor], Tensor], h: Tensor, backend: str, tangential: bool, product: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self.h = h
        self.project = _row_projector(h) if tangential else None
        self.product = product
        if product is not None:
            hd = h.clone().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(loss(hd), hd)
            self.rho = grad.detach()
        elif backend == "reverse":
            hd = h.clone().requires_grad_(True)
            with torch.enable_grad():
                (self._grad_h,) = torch.autograd.grad(loss(hd), hd, create_graph=True)
            self._hd = hd
            self.rho = self._grad_h.detach()
        else:
            self._grad_loss = torch.func.grad(loss)
            self.rho = self._grad_loss(h).detach()
        self.backend = backend

    def __call__(self, w: Tensor, batched: bool, ambient: bool = False) -> Tensor:
        project = None if ambient else self.project
        if project is not None:
            w = project(w)
        if self.product is not None:
            out = self.product(w)
        elif self.backend == "reverse":
            (out,) = torch.autograd.grad(self._grad_h, self._hd, w, retain_graph=True, is_grads_batched=batched)
        else:
            f = lambda y: torch.func.jvp(self._grad_loss, (self.h,), (y,))[1]  # noqa: E731
            out = torch.func.vmap(f)(w) if batched else f(w)
        return out if project is None else project(out)


def _check_loss_value(value: Tensor) -> float:
    if value.ndim != 0 or not torch.isfinite(value):
        raise ValueError(f"loss must return a finite scalar, got {value}")
    return float(value)


class CurvatureOperator(_Operator):
    """Products with H_eff, G, M (on X) and H_L (on H) of ``loss(head(X))`` by automatic differentiation.

    The general path: the head may couple samples (train-mode BatchNorm). Vectors are flat (N,) for H_eff, G,
    M and (N_h,) for H_L; :meth:`matmat` takes (size, m) matrices. Products are counted per term.

    Args:
        head: X ↦ H, e.g. :func:`head_function` (applied per view for X of shape (2, n, d)).
        loss: H ↦ scalar, out of place.
        x: The layer inputs X (any shape); detached and copied.
        backend: ``reverse`` (double backward) or ``forward`` (forward-over-reverse).
        tangential: Read the loss Hessian tangentially, H_L → P H_L P row-wise.

    Raises:
        ValueError: On an unknown backend, non-finite X, or a loss that is not a finite scalar.
    """

    def __init__(
        self,
        head: Callable[[Tensor], Tensor],
        loss: Callable[[Tensor], Tensor],
        x: Tensor,
        *,
        backend: Backend = "reverse",
        tangential: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
            raise ValueError(f"x must be a non-empty floating tensor, got {x!r}")
        if not torch.isfinite(x).all():
            raise ValueError("x has non-finite values")
        self.backend: Backend = backend
        self.tangential = bool(tangential)
        self.shape = tuple(x.shape)
        self.dtype = x.dtype
        self.device = x.device
        self._init_counts()
        self._head, self._loss = head, loss
        self.x = x.detach().clone()
        with torch.no_grad():
            self.h = head(self.x)
            self.loss_value = _check_loss_value(loss(self.h))
        self.h_shape = tuple(self.h.shape)
        self._hl = _LossHessian(loss, self.h, backend, self.tangential)
        self.rho = self._hl.rho
        if backend == "reverse":
            x_ = self.x.clone().requires_grad_(True)
            with torch.enable_grad():
                h = head(x_)
                (self._grad_x,) = torch.autograd.grad(loss(h), x_, create_graph=True)
                u = torch.zeros_like(h, requires_grad=True)
                (self._jt_u,) = torch.autograd.grad(h, x_, u, create_graph=True)
            self._rx, self._ru, self._rhout = x_, u, h
        else:
            self._grad_full = torch.func.grad(lambda x: loss(head(x)))
            _, self._vjp_fn = torch.func.vjp(head, self.x)

    def _grad(self, out: Tensor, inp: Tensor, v: Tensor, batched: bool) -> Tensor:
        (res,) = torch.autograd.grad(out, inp, v, retain_graph=True, is_grads_batched=batched)
        return res

    def _hvp(self, v: Tensor, batched: bool) -> Tensor:
        if self.backend == "reverse":
            return self._grad(self._grad_x, self._rx, v, batched)
        f = lambda w: torch.func.jvp(self._grad_full, (self.x,), (w,))[1]  # noqa: E731
        return torch.func.vmap(f)(v) if batched else f(v)

    def _jvp(self, v: Tensor, batched: bool) -> Tensor:
        if self.backend == "reverse":
            return self._grad(self._jt_u, self._ru, v, batched)
        f = lambda w: torch.func.jvp(self._head, (self.x,), (w,))[1]  # noqa: E731
        return torch.func.vmap(f)(v) if batched else f(v)

    def _vjp(self, w: Tensor, batched: bool) -> Tensor:
        if self.backend == "reverse":
            return self._grad(self._rhout, self._rx, w, batched)
        if batched:  # a vjp_fn built outside vmap does not batch; rebuild it inside
            return torch.func.vmap(lambda y: torch.func.vjp(self._head, self.x)[1](y)[0])(w)
        return self._vjp_fn(w)[0]

    def _ggnvp(self, v: Tensor, batched: bool, ambient: bool = False) -> Tensor:
        return self._vjp(self._hl(self._jvp(v, batched), batched, ambient), batched)

    def _apply(self, term: str, v: Tensor, batched: bool) -> Tensor:
        if term == "H_L":
            return self._hl(v, batched)
        if term == "G":
            return self._ggnvp(v, batched)
        hv = self._hvp(v, batched)
        if term == "M":  # M = H − G is the same in every reading
            return hv - self._ggnvp(v, batched, ambient=True)
        if not self.tangential:
            return hv
        return hv - self._ggnvp(v, batched, ambient=True) + self._ggnvp(v, batched)  # G_tan + M


class FactoredOperator(_Operator):
    """H_eff = Jᵀ H_L J + blockdiag(M_b) for heads that act row by row (no train-mode BatchNorm).

    The per-row Jacobians J_b (k × r) and interaction blocks M_b (r × r) are exact closed forms
    (:mod:`geomhead.hessian`); only the loss is differentiated automatically, so a product costs one loss
    Hessian-vector product plus batched matrix products, however deep the head. Coordinates are the rows'
    reduced coordinates y (``rows × r``; see :class:`geomhead.hessian.Linearisation`).

    Args:
        jacobian: (rows, k, r) J_b (an ``expand``-ed tensor, stride 0 over rows, is applied as one GEMM).
        interaction: (rows, r, r) M_b, or None when M ≡ 0.
        loss: H ↦ scalar for H of shape ``h.shape``, whose rows (flattened over leading axes) are the rows of J.
        h: Head outputs, (rows, k) or (views, n, k) with views·n = rows.
        backend: Backend of the loss Hessian-vector products.
        tangential: Read the loss Hessian tangentially, H_L → P H_L P row-wise.
        loss_hessian: Optional closed-form W ↦ ∇²_H L · W (e.g. :func:`vicreg_hessian_product`) replacing
            automatic differentiation of the loss.

    Raises:
        ValueError: On inconsistent shapes, an unknown backend or a loss that is not a finite scalar.
    """

    def __init__(
        self,
        jacobian: Tensor,
        interaction: Tensor | None,
        loss: Callable[[Tensor], Tensor],
        h: Tensor,
        *,
        backend: Backend = "reverse",
        tangential: bool = False,
        loss_hessian: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        rows, k, r = jacobian.shape
        if h.shape[-1] != k or h.numel() != rows * k:
            raise ValueError(f"h has shape {tuple(h.shape)} but the Jacobian has {rows} rows of width {k}")
        if interaction is not None and interaction.shape != (rows, r, r):
            raise ValueError(f"interaction must have shape {(rows, r, r)}, got {tuple(interaction.shape)}")
        self.backend, self.tangential = backend, bool(tangential)
        self.shape, self.h_shape = (rows, r), tuple(h.shape)
        self.dtype, self.device = jacobian.dtype, jacobian.device
        self._init_counts()
        self.jacobian, self.interaction, self.h = jacobian, interaction, h.detach()
        # A Jacobian shared by all rows (no activation after this layer) is applied as one GEMM.
        self._shared = bool(jacobian.stride(0) == 0)
        self._j = jacobian[0] if self._shared else jacobian.contiguous()  # rows: w ↦ w J = (Jᵀ w)ᵀ
        self._jt = self._j.mT.contiguous()  # rows: v ↦ v Jᵀ = (J v)ᵀ
        with torch.no_grad():
            self.loss_value = _check_loss_value(loss(self.h))
        self._hl = _LossHessian(loss, self.h, backend, self.tangential, loss_hessian)
        self.rho = self._hl.rho

    @staticmethod
    def _rows(mat: Tensor, v: Tensor) -> Tensor:
        """out[..., b, :] = v[..., b, :] @ mat[b] for mat (rows, p, q) and v (..., rows, p): one batched GEMM."""
        lead = v.shape[:-2]
        vb = v.reshape(-1, *v.shape[-2:]).transpose(0, 1)  # (rows, m, p)
        out = torch.bmm(vb, mat)  # (rows, m, q)
        return out.transpose(0, 1).reshape(*lead, v.shape[-2], mat.shape[-1])

    def _g(self, v: Tensor, batched: bool, ambient: bool = False) -> Tensor:
        k = self.h_shape[-1]
        jv = v @ self._jt if self._shared else self._rows(self._jt, v)
        w = self._hl(jv.reshape(*v.shape[:-2], *self.h_shape), batched, ambient)
        w = w.reshape(*v.shape[:-1], k)
        return w @ self._j if self._shared else self._rows(self._j, w)

    def _m(self, v: Tensor) -> Tensor:
        if self.interaction is None:
            return torch.zeros_like(v)
        return self._rows(self.interaction, v)  # M_b symmetric: v M_b = M_b v

    def _apply(self, term: str, v: Tensor, batched: bool) -> Tensor:
        if term == "H_L":
            return self._hl(v, batched)
        if term == "G":
            return self._g(v, batched)
        if term == "M":
            return self._m(v)
        return self._g(v, batched) + self._m(v)
