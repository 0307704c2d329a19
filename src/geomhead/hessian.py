"""Exact per-sample effective Hessians of a projection head, batched over samples, in closed form (PAPER §8.1).

For a per-sample loss ℓ(h) of the head output h = g(x) at one layer input x ∈ R^d, with ρ = ∇_h ℓ,
H_L = ∇²_h ℓ and J = ∂h/∂x (PAPER §0, §8.1):

    H_eff = ∇²_x ℓ = Jᵀ H_L J + Σ_i ρ_i ∇²_x h_i = G + M.

The head is an :class:`AffineChain`: affine maps and elementwise activations σ_j, alternating,

    u_1 = C_1 x + c_1,   u_{j+1} = C_{j+1} σ_j(u_j) + c_{j+1},   h = C_{m+1} σ_m(u_m) + c_{m+1},

obtained by merging consecutive Linear layers, eval-mode BatchNorm (an affine map) and identity activations.
With D_j = diag σ_j'(u_j), K_j = ∂u_j/∂x (K_1 = C_1, K_{j+1} = C_{j+1} D_j K_j), E = D_m K_m, J = C_{m+1} E
and the back-propagated loss gradient β_m = C_{m+1}ᵀ ρ, β_{j-1} = C_jᵀ (σ_j'(u_j) ⊙ β_j):

    G = Eᵀ C_{m+1}ᵀ H_L C_{m+1} E,        M = Σ_j K_jᵀ diag(σ_j''(u_j) ⊙ β_j) K_j,

the formulas of PAPER §8.1 for any depth (ReLU and identity have σ'' = 0, so M = 0 exactly). Every loss
Hessian here is "scaled identity plus low rank", H_L = α I + U S Uᵀ, so G = α JᵀJ + (JᵀU) S (JᵀU)ᵀ with
JᵀJ = Eᵀ (C_{m+1}ᵀ C_{m+1}) E (a sample-independent Gram matrix when C_{m+1} is tall). When the first map is a
bottleneck (C_1 ∈ R^{w×d}, w < d), every term is C_1ᵀ X C_1 = Q (R X Rᵀ) Qᵀ with C_1ᵀ = QR: the blocks are
computed as w×w matrices in the coordinates y = Qᵀx, and the other d − w eigenvalues are exactly zero.
Batch-norm in train mode couples samples and has no per-sample form: use :mod:`geomhead.operators`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from geomhead.heads import ProjectionHead

__all__ = [
    "BLOCK_TERMS",
    "AffineChain",
    "LossDerivatives",
    "SampleBlocks",
    "activation_derivatives",
    "affine_chain",
    "cosine_derivatives",
    "Linearisation",
    "effective_hessian_blocks",
    "gauss_newton_blocks",
    "infonce_anchor_derivatives",
    "interaction_blocks",
    "linearise",
    "output_jacobian",
    "mse_derivatives",
    "negative_count",
]

BLOCK_TERMS: tuple[str, ...] = ("H_eff", "G", "M")
_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Norm floor of the losses' L2 normalisation (geomhead.losses): closed forms assume ‖h‖ above it.
_NORM_FLOOR = 1e-8


def activation_derivatives(name: str, u: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """σ(u), σ'(u) and σ''(u) elementwise; σ'' is ``None`` where it vanishes identically (a.e.).

    relu: σ' = 1[u > 0], σ'' = 0 a.e.; gelu (erf form): σ = uΦ(u), σ' = Φ(u) + uφ(u), σ'' = φ(u)(2 − u²);
    swish: s = sigmoid(u), σ = us, σ' = s(1 + u(1 − s)), σ'' = s(1 − s)(2 + u(1 − 2s)) (PAPER §8.1).

    Raises:
        ValueError: If ``name`` is not relu, gelu or swish (identity activations are merged away).
    """
    if name == "relu":
        return torch.relu(u), (u > 0).to(u.dtype), None
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(u / _SQRT_2))
        pdf = _INV_SQRT_2PI * torch.exp(-0.5 * u.square())
        return u * cdf, cdf + u * pdf, pdf * (2.0 - u.square())
    if name == "swish":
        s = torch.sigmoid(u)
        return u * s, s * (1.0 + u * (1.0 - s)), s * (1.0 - s) * (2.0 + u * (1.0 - 2.0 * s))
    raise ValueError(f"activation must be one of ('relu', 'gelu', 'swish') (linear is merged), got {name!r}")


@dataclass(frozen=True)
class AffineChain:
    """h = C_{m+1} σ_m(C_m … σ_1(C_1 x + c_1) … + c_m) + c_{m+1}: m activations between m+1 affine maps.

    Attributes:
        weights: C_1, …, C_{m+1}, each (out, in).
        biases: c_1, …, c_{m+1}, each (out,).
        activations: σ_1, …, σ_m (``relu``, ``gelu`` or ``swish``).
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    activations: tuple[str, ...]

    @property
    def in_dim(self) -> int:
        """d, the width of the layer input x."""
        return int(self.weights[0].shape[1])

    @property
    def out_dim(self) -> int:
        """k, the width of the head output h."""
        return int(self.weights[-1].shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """h for x of shape (n, d), out of place (differentiable twice)."""
        a = x
        for weight, bias, name in zip(self.weights[:-1], self.biases[:-1], self.activations, strict=True):
            a = activation_derivatives(name, a @ weight.T + bias)[0]
        return a @ self.weights[-1].T + self.biases[-1]


def _block_affine(block: nn.Sequential, dtype: torch.dtype) -> tuple[Tensor, Tensor, str]:
    """(W, b, activation) of one head block: Linear → [eval BatchNorm folded in] → [activation]."""
    linear = block[0]
    weight = linear.weight.detach().to(dtype)
    bias = linear.bias.detach().to(dtype) if linear.bias is not None else torch.zeros(weight.shape[0], dtype=dtype, device=weight.device)
    name = "linear"
    for module in list(block)[1:]:
        if isinstance(module, nn.BatchNorm1d):
            if module.running_mean is None or module.running_var is None:
                raise ValueError("BatchNorm without running statistics has no eval-mode (per-sample) form; use the coupled path")
            scale = 1.0 / torch.sqrt(module.running_var.detach().to(dtype) + module.eps)
            shift = -module.running_mean.detach().to(dtype) * scale
            if module.affine:
                scale = scale * module.weight.detach().to(dtype)
                shift = shift * module.weight.detach().to(dtype) + module.bias.detach().to(dtype)
            weight = scale[:, None] * weight
            bias = scale * bias + shift
        elif isinstance(module, nn.Identity):
            name = "linear"
        elif isinstance(module, nn.ReLU):
            name = "relu"
        elif isinstance(module, nn.GELU):
            if module.approximate != "none":
                raise ValueError(f"GELU(approximate={module.approximate!r}) has no closed form here; only the erf form")
            name = "gelu"
        elif isinstance(module, nn.SiLU):
            name = "swish"
        else:
            raise ValueError(f"head block contains an unsupported module {type(module).__name__}")
    return weight, bias, name


def affine_chain(heads: Sequence[ProjectionHead], start: int = 0, dtype: torch.dtype = torch.float64) -> AffineChain:
    """The map from the input of block ``start`` of ``heads[0]`` through every later head to the last output.

    BatchNorm is read in eval mode (running statistics: an affine map, PAPER §8.1). Consecutive affine maps are
    multiplied out, so e.g. the SimSiam chain projector → predictor has sites only at its two hidden layers.

    Args:
        heads: The heads in order, e.g. ``(projector,)`` or ``(projector, predictor)``.
        start: Block of ``heads[0]`` whose input is x (0: the backbone output z).
        dtype: Floating dtype of the chain (float64 for exact work).

    Raises:
        ValueError: If ``heads`` is empty, a head is not a ProjectionHead, widths do not connect, or ``start``
            is out of range.
    """
    if not heads or not all(isinstance(h, ProjectionHead) for h in heads):
        raise ValueError(f"heads must be a non-empty sequence of ProjectionHead, got {heads!r}")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < heads[0].depth:
        raise ValueError(f"start must be an int in [0, {heads[0].depth - 1}], got {start!r}")
    for a, b in zip(heads, heads[1:], strict=False):
        if a.out_dim != b.in_dim:
            raise ValueError(f"heads do not connect: output width {a.out_dim} feeds input width {b.in_dim}")
    blocks = list(heads[0].blocks[start:]) + [blk for head in heads[1:] for blk in head.blocks]
    weights: list[Tensor] = []
    biases: list[Tensor] = []
    activations: list[str] = []
    acc_w: Tensor | None = None
    acc_b: Tensor | None = None
    for block in blocks:
        weight, bias, name = _block_affine(block, dtype)
        if acc_w is None or acc_b is None:
            acc_w, acc_b = weight, bias
        else:
            acc_w, acc_b = weight @ acc_w, weight @ acc_b + bias
        if name != "linear":
            weights.append(acc_w)
            biases.append(acc_b)
            activations.append(name)
            acc_w = acc_b = None
    if acc_w is None or acc_b is None:  # pragma: no cover - every head ends in a block without activation
        raise ValueError("the last head block must have no activation")
    weights.append(acc_w)
    biases.append(acc_b)
    return AffineChain(tuple(weights), tuple(biases), tuple(activations))


@dataclass(frozen=True)
class LossDerivatives:
    """Value, gradient ρ and Hessian H_L = α I + U S Uᵀ of a per-sample loss at n head outputs (k wide).

    Attributes:
        value: (n,) per-sample loss ℓ_b.
        rho: (n, k) ρ_b = ∇_h ℓ_b.
        alpha: (n,) scale of the identity part.
        basis: (n, k, q) U.
        core: (n, q, q) S, symmetric.
    """

    value: Tensor
    rho: Tensor
    alpha: Tensor
    basis: Tensor
    core: Tensor

    def dense(self) -> Tensor:
        """H_L as (n, k, k)."""
        k = self.rho.shape[1]
        eye = torch.eye(k, dtype=self.rho.dtype, device=self.rho.device)
        return self.alpha[:, None, None] * eye + self.basis @ self.core @ self.basis.mT

    def spectrum(self) -> Tensor:
        """Full ascending spectrum (n, k), in O(k q²): with U = QR (reduced), α + eig(R S Rᵀ) and α (k − rank)."""
        n, k, q = self.basis.shape
        if q == 0:
            return self.alpha[:, None].expand(n, k).clone()
        _, r = torch.linalg.qr(self.basis, mode="reduced")
        inner = r @ self.core @ r.mT
        p = inner.shape[-1]
        top = torch.linalg.eigvalsh(0.5 * (inner + inner.mT)) + self.alpha[:, None]
        rest = self.alpha[:, None].expand(n, k - p)
        return torch.sort(torch.cat([top, rest], dim=1), dim=1).values

    def tangential(self, h: Tensor) -> LossDerivatives:
        """The tangential reading P H_L P, P = I − uuᵀ, u = h/‖h‖ (PAPER §8.1); value and ρ unchanged.

        P H_L P = α I + [u, PU] blockdiag(−α, S) [u, PU]ᵀ.
        """
        u = h / torch.linalg.vector_norm(h, dim=1, keepdim=True)
        pu = self.basis - u[:, :, None] * (u[:, None, :] @ self.basis)
        basis = torch.cat([u[:, :, None], pu], dim=2)
        core = _block_diag(-self.alpha[:, None, None], self.core)
        return LossDerivatives(self.value, self.rho, self.alpha, basis, core)


def _block_diag(a: Tensor, b: Tensor) -> Tensor:
    """Batched blockdiag(a, b) of (n, p, p) and (n, q, q)."""
    n, p, q = a.shape[0], a.shape[1], b.shape[1]
    top = torch.cat([a, a.new_zeros(n, p, q)], dim=2)
    bottom = torch.cat([b.new_zeros(n, q, p), b], dim=2)
    return torch.cat([top, bottom], dim=1)


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    for name, x in ((name_a, a), (name_b, b)):
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
            raise ValueError(f"{name} must be a 2-D floating tensor (n, k), got {x if not isinstance(x, Tensor) else tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} has non-finite values")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match")


def _through_normalisation(h: Tensor, grad_u: Tensor, value: Tensor, hf_basis: Tensor | None, hf_core: Tensor | None) -> LossDerivatives:
    """Derivatives of ℓ(h) = F(h/‖h‖) from ∇F = g and ∇²F = V Σ Vᵀ at u = h/r.

    ρ = P g / r and H_L = (1/r²)[P ∇²F P − (u·g) P − u wᵀ − w uᵀ], w = P g, P = I − uuᵀ, i.e. α = −(u·g)/r² and
    U = [u, w, P V], S = (1/r²) blockdiag([[u·g, −1], [−1, 0]], Σ).
    """
    r = torch.linalg.vector_norm(h, dim=1)
    if bool((r <= _NORM_FLOOR).any()):
        raise ValueError(f"a head output has norm <= {_NORM_FLOOR}; the normalised loss is not differentiable there")
    u = h / r[:, None]
    a = (u * grad_u).sum(dim=1)
    w = grad_u - a[:, None] * u
    inv_r2 = 1.0 / r.square()
    pair = torch.stack(
        [torch.stack([a, -torch.ones_like(a)], dim=1), torch.stack([-torch.ones_like(a), torch.zeros_like(a)], dim=1)], dim=1
    )
    basis = torch.stack([u, w], dim=2)
    core = pair
    if hf_basis is not None and hf_core is not None:
        basis = torch.cat([basis, hf_basis - u[:, :, None] * (u[:, None, :] @ hf_basis)], dim=2)
        core = _block_diag(pair, hf_core)
    return LossDerivatives(value, w / r[:, None], -a * inv_r2, basis, core * inv_r2[:, None, None])


def cosine_derivatives(h: Tensor, target: Tensor, weight: float = 0.5, offset: float = 0.0) -> LossDerivatives:
    """ℓ_b = offset − weight·cos(h_b, c_b) with the target c held fixed (stop-gradient).

    SimSiam's per-sample term is weight ½ (−½cos), BYOL's 2 − 2cos is weight 2, offset 2. With r = ‖h‖,
    u = h/r, ĉ = c/‖c‖, cosθ = u·ĉ: ρ = −(w/r)(ĉ − cosθ u) and H_L = (w/r²)[ĉuᵀ + uĉᵀ + cosθ(I − 3uuᵀ)]
    (PAPER §8.1), whose spectrum is w cosθ/r² (k − 2 times) and (w/r²)(cosθ ± √(cos²θ + 4 sin²θ))/2.

    Raises:
        ValueError: On shape mismatch, non-finite values or a zero-norm output or target.
    """
    _check_pair("h", h, "target", target)
    c_norm = torch.linalg.vector_norm(target, dim=1, keepdim=True)
    if bool((c_norm <= _NORM_FLOOR).any()):
        raise ValueError(f"a target has norm <= {_NORM_FLOOR}; the cosine is undefined there")
    c_hat = target / c_norm
    cos = (h * c_hat).sum(dim=1) / torch.linalg.vector_norm(h, dim=1)
    return _through_normalisation(h, -weight * c_hat, offset - weight * cos, None, None)


def mse_derivatives(h: Tensor, target: Tensor) -> LossDerivatives:
    """The theorem's premise (PAPER §14.4, §18): ℓ_b = ½‖h_b − c_b‖², so ρ = h − c and H_L = I."""
    _check_pair("h", h, "target", target)
    n, k = h.shape
    diff = h - target
    empty = torch.zeros(n, k, 0, dtype=h.dtype, device=h.device)
    return LossDerivatives(0.5 * diff.square().sum(dim=1), diff, torch.ones(n, dtype=h.dtype, device=h.device), empty, empty[:, :0, :])


def infonce_anchor_derivatives(h: Tensor, candidates: Tensor, temperature: float) -> LossDerivatives:
    """The paper's one-directional InfoNCE per anchor (PAPER §5.1), candidates (view 2) held fixed.

    ℓ_b = −s_bb + log Σ_j exp s_bj with s_bj = u_b·v̂_j/τ: F(u) has ∇F = (V̂ᵀp − v̂_b)/τ and
    ∇²F = V̂ᵀ(diag p − ppᵀ)V̂/τ², p = softmax(V̂u/τ); the normalisation u = h/‖h‖ is then differentiated exactly.

    Raises:
        ValueError: On shape mismatch, non-finite values or a temperature that is not a finite number > 0.
    """
    _check_pair("h", h, "candidates", candidates)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    v = candidates / torch.linalg.vector_norm(candidates, dim=1, keepdim=True).clamp_min(1e-12)
    u = h / torch.linalg.vector_norm(h, dim=1, keepdim=True)
    logits = u @ v.T / temperature
    p = torch.softmax(logits, dim=1)
    value = torch.logsumexp(logits, dim=1) - torch.diagonal(logits)
    grad_u = (p @ v - v) / temperature
    sigma = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / temperature**2
    n = h.shape[0]
    return _through_normalisation(h, grad_u, value, v.T.expand(n, *v.T.shape), sigma)


@dataclass(frozen=True)
class SampleBlocks:
    """Per-sample H_eff, G and M of one layer, stored reduced: full = Q Y Qᵀ (or Y when ``basis`` is None).

    Attributes:
        H_eff, G, M: (n, r, r) symmetric blocks in the coordinates y = Qᵀx (r ≤ d).
        basis: (d, r) Q with orthonormal columns, or None when r = d and y = x.
        dim: d, the layer width.
        loss: the loss derivatives at the head outputs (ρ, H_L).
        head_out: (n, k) the head outputs h.
    """

    H_eff: Tensor
    G: Tensor
    M: Tensor
    basis: Tensor | None
    dim: int
    loss: LossDerivatives
    head_out: Tensor

    def reduced(self, term: str) -> Tensor:
        """The (n, r, r) block of ``term`` (``H_eff``, ``G`` or ``M``)."""
        if term not in BLOCK_TERMS:
            raise ValueError(f"term must be one of {BLOCK_TERMS}, got {term!r}")
        return getattr(self, term)

    def full(self, term: str) -> Tensor:
        """The (n, d, d) block of ``term`` in the layer coordinates x."""
        y = self.reduced(term)
        return y if self.basis is None else self.basis @ y @ self.basis.T

    def spectra(self, term: str) -> Tensor:
        """Ascending full spectra (n, d) of ``term`` (reduced spectra plus d − r exact zeros)."""
        eig = torch.linalg.eigvalsh(self.reduced(term))
        pad = self.dim - eig.shape[1]
        if pad:
            eig = torch.sort(torch.cat([eig, eig.new_zeros(eig.shape[0], pad)], dim=1), dim=1).values
        return eig

    def frobenius(self, term: str) -> Tensor:
        """(n,) Frobenius norms ‖block‖_F (invariant under the orthonormal reduction)."""
        return torch.linalg.matrix_norm(self.reduced(term))


def _sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.mT)


@dataclass(frozen=True)
class Linearisation:
    """The forward pass of a chain at n inputs with everything the Hessian terms need.

    Coordinates: y = Qᵀx when the first map is a bottleneck (``basis`` = Q, d × r), else y = x (r = d).

    Attributes:
        head_out: (n, k) outputs h.
        basis: (d, r) Q, or None.
        slopes: σ_j'(u_j), each (n, w_j).
        curvatures: σ_j''(u_j), each (n, w_j), or None where it vanishes identically.
        jacobians: K_j = ∂u_j/∂y: K_1 = T (w_1, r) is shared, the others are (n, w_j, r); empty when m = 0.
        transform: T, the shared (w_1, r) Jacobian of the first affine map in y coordinates.
        dim: d.
    """

    head_out: Tensor
    basis: Tensor | None
    slopes: tuple[Tensor, ...]
    curvatures: tuple[Tensor | None, ...]
    jacobians: tuple[Tensor, ...]
    transform: Tensor
    dim: int

    @property
    def rank(self) -> int:
        """r, the width of the y coordinates."""
        return int(self.transform.shape[1])


def _check_x(chain: AffineChain, x: object) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != chain.in_dim:
        raise ValueError(f"x must have shape (n, {chain.in_dim}), got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if x.dtype != chain.weights[0].dtype:
        raise ValueError(f"x has dtype {x.dtype} but the chain has {chain.weights[0].dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x has non-finite values")


def linearise(chain: AffineChain, x: Tensor) -> Linearisation:
    """Forward pass, activation derivatives and the Jacobians K_j = ∂u_j/∂y at each row of ``x``.

    Raises:
        ValueError: If ``x`` is not a finite (n, d) tensor of the chain's dtype and input width.
    """
    _check_x(chain, x)
    weights, biases, acts = chain.weights, chain.biases, chain.activations
    a = x
    slopes: list[Tensor] = []
    curvatures: list[Tensor | None] = []
    for weight, bias, name in zip(weights[:-1], biases[:-1], acts, strict=True):
        a, d1, d2 = activation_derivatives(name, a @ weight.T + bias)
        slopes.append(d1)
        curvatures.append(d2)
    head_out = a @ weights[-1].T + biases[-1]
    # x enters only through C_1 x; if C_1 is a bottleneck (w < d), use y = Qᵀx with C_1 = Rᵀ Qᵀ, T = Rᵀ.
    c1, d = weights[0], chain.in_dim
    basis: Tensor | None = None
    transform = c1
    if c1.shape[0] < d:
        basis, r_factor = torch.linalg.qr(c1.T, mode="reduced")
        transform = r_factor.T
    jacobians: list[Tensor] = [transform] if acts else []
    for j in range(1, len(acts)):
        jacobians.append(weights[j] @ (slopes[j - 1][:, :, None] * jacobians[j - 1]))
    return Linearisation(head_out, basis, tuple(slopes), tuple(curvatures), tuple(jacobians), transform, d)


def _last_jacobian(lin: Linearisation) -> Tensor:
    """E = ∂σ_m(u_m)/∂y (n, w_m, r), or T (shared) when the chain has no activation."""
    if not lin.jacobians:
        return lin.transform
    return lin.slopes[-1][:, :, None] * lin.jacobians[-1]


def output_jacobian(chain: AffineChain, lin: Linearisation) -> Tensor:
    """J = ∂h/∂y per row, (n, k, r)."""
    n = lin.head_out.shape[0]
    if not lin.jacobians:
        return lin.transform.expand(n, *lin.transform.shape)
    return chain.weights[-1] @ _last_jacobian(lin)


def interaction_blocks(chain: AffineChain, lin: Linearisation, rho: Tensor) -> Tensor | None:
    """M_b = Σ_j K_jᵀ diag(σ_j''(u_j) ⊙ β_j) K_j per row (n, r, r) for ρ = ∇_h ℓ (n, k); None if M ≡ 0.

    β_m = C_{m+1}ᵀ ρ and β_{j−1} = C_jᵀ (σ_j' ⊙ β_j) back-propagate ρ to each activation output.
    """
    weights = chain.weights
    m = len(lin.slopes)
    if all(c is None for c in lin.curvatures):
        return None
    betas: list[Tensor] = [rho] * m
    beta = rho @ weights[-1]
    for j in reversed(range(m)):
        betas[j] = beta
        beta = (lin.slopes[j] * beta) @ weights[j]
    n, r = rho.shape[0], lin.rank
    out = rho.new_zeros(n, r, r)
    for j in range(m):
        curvature = lin.curvatures[j]
        if curvature is not None:
            k_j = lin.jacobians[j]
            out = out + k_j.mT @ ((curvature * betas[j])[:, :, None] * k_j)
    return _sym(out)


def gauss_newton_blocks(chain: AffineChain, lin: Linearisation, loss: LossDerivatives) -> Tensor:
    """G_b = J_bᵀ (α I + U S Uᵀ) J_b per row (n, r, r), with JᵀJ = Eᵀ (CᵀC) E when C = C_{m+1} is tall."""
    n, r = lin.head_out.shape[0], lin.rank
    last, e = chain.weights[-1], _last_jacobian(lin)
    if not lin.jacobians:
        jtj, jtu = e.T @ e, e.T @ loss.basis
    else:
        if last.shape[0] > last.shape[1]:
            jtj = e.mT @ (last.T @ last) @ e
        else:
            jac = last @ e
            jtj = jac.mT @ jac
        jtu = e.mT @ (last.T @ loss.basis)
    g = loss.alpha[:, None, None] * jtj + jtu @ loss.core @ jtu.mT
    return _sym(g.expand(n, r, r))


def effective_hessian_blocks(chain: AffineChain, x: Tensor, loss: Callable[[Tensor], LossDerivatives], chunk: int = 32) -> SampleBlocks:
    """Exact per-sample H_eff = G + M at each row of ``x``, batched over samples (closed forms above).

    Args:
        chain: The head from this layer to the loss input, e.g. ``affine_chain((projector, predictor), l)``.
        x: (n, d) layer inputs, same dtype as the chain (float64 for exact work).
        loss: Maps the (n, k) head outputs to their :class:`LossDerivatives` (targets bound in the closure).
        chunk: Rows per batched evaluation of G and M (bounds the (chunk, w, d) intermediates).

    Raises:
        ValueError: If ``x`` is not a finite (n, d) tensor of the chain's dtype and input width, or ``chunk`` < 1.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    _check_x(chain, x)
    if x.shape[0] == 0:
        raise ValueError("x has no rows")
    head_out = chain.forward(x)
    deriv = loss(head_out)
    gs, ms = [], []
    basis: Tensor | None = None
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, start + chunk)
        lin = linearise(chain, x[rows])
        part = LossDerivatives(deriv.value[rows], deriv.rho[rows], deriv.alpha[rows], deriv.basis[rows], deriv.core[rows])
        g = gauss_newton_blocks(chain, lin, part)
        mm = interaction_blocks(chain, lin, part.rho)
        gs.append(g)
        ms.append(torch.zeros_like(g) if mm is None else mm)
        basis = lin.basis
    g, mm = torch.cat(gs), torch.cat(ms)
    return SampleBlocks(H_eff=g + mm, G=g, M=mm, basis=basis, dim=chain.in_dim, loss=deriv, head_out=head_out)


def negative_count(eigenvalues: Tensor, floor: float, scale: Tensor | float | None = None) -> Tensor:
    """Number of eigenvalues below −floor·scale along the last axis (never a bare sign test, PAPER §8.3).

    Args:
        eigenvalues: (..., N) eigenvalues.
        floor: Relative floor, a finite number ≥ 0 (e.g. 1e-10 for float64 dense spectra).
        scale: Reference magnitude (default: max |λ| along the last axis).

    Raises:
        ValueError: If ``floor`` is not a finite number ≥ 0.
    """
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor) or floor < 0:
        raise ValueError(f"floor must be a finite number >= 0, got {floor!r}")
    if scale is None:
        scale = eigenvalues.abs().amax(dim=-1, keepdim=True)
    elif isinstance(scale, Tensor):
        scale = scale.unsqueeze(-1)
    return (eigenvalues < -floor * scale).sum(dim=-1)
