"""Projection heads and predictors g: z ↦ h = g(z), as stacks of blocks that can be entered at any layer.

A head of depth L is g = b_{L-1} ∘ … ∘ b_0 with blocks

    b_i(x) = σ(BN(W_i x + c_i))   for i < L-1,        b_{L-1}(x) = BN(W_{L-1} x + c_{L-1}),

where BN and the bias c_i are optional and σ ∈ {identity, ReLU, GELU, SiLU} (PAPER §3.2). The last block has
no activation but keeps its BN, so depth 1 is an affine map. Unlike the paper's code, ``batchnorm=True`` is
honoured for the linear activation too (PAPER §17.15). :meth:`ProjectionHead.layer_inputs` returns the input
of every block and :meth:`ProjectionHead.forward_from` re-enters the stack there, so the head can be
analysed (Jacobians, Hessians) as a function of the representation at any layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geomhead.checks import positive_int

__all__ = [
    "ACTIVATIONS",
    "MAX_DEPTH",
    "ProjectionHead",
    "activation",
    "active_fraction",
    "build_predictor",
    "build_projector",
    "pseudo_collapse_",
]

ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "gelu", "swish")
MAX_DEPTH: int = 3


def activation(name: str) -> nn.Module:
    """Activation module σ for ``name``.

    linear → identity; relu → max(0, x) (out of place); gelu → x·Φ(x) (exact erf form); swish → x·sigmoid(x).

    Raises:
        ValueError: If ``name`` is not one of :data:`ACTIVATIONS`.
    """
    if name == "linear":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=False)
    if name == "gelu":
        return nn.GELU(approximate="none")
    if name == "swish":
        return nn.SiLU(inplace=False)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class ProjectionHead(nn.Module):
    """MLP head in → hidden → … → hidden → out with ``depth`` Linear layers (PAPER §3.2).

    Block i is Linear → [BatchNorm1d] → [σ]; the last block has no σ (but has BN when ``batchnorm``).
    Layer widths: depth 1: in→out; depth 2: in→hidden→out; depth 3: in→hidden→hidden→out.

    Args:
        in_dim: Input width (the representation z).
        hidden_dim: Width of the hidden layers (unused for depth 1, still validated).
        out_dim: Output width.
        depth: Number of Linear layers, 1 ≤ depth ≤ 3.
        activation: One of :data:`ACTIVATIONS`.
        batchnorm: Whether every Linear is followed by BatchNorm1d (default momentum/eps).
        bias: Whether the Linear layers have biases (the paper's heads have none).

    Attributes:
        blocks: One ``nn.Sequential`` per Linear layer.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        depth: int = 2,
        activation: str = "swish",
        batchnorm: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        positive_int("in_dim", in_dim)
        positive_int("hidden_dim", hidden_dim)
        positive_int("out_dim", out_dim)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be one of {tuple(range(1, MAX_DEPTH + 1))}, got {depth!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        for flag_name, flag in (("batchnorm", batchnorm), ("bias", bias)):
            if not isinstance(flag, bool):
                raise ValueError(f"{flag_name} must be a bool, got {flag!r}")
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.depth = depth
        self.activation = activation
        self.batchnorm = batchnorm
        self.bias = bias

        widths = [in_dim] + [hidden_dim] * (depth - 1) + [out_dim]
        blocks = []
        for i in range(depth):
            layers: list[nn.Module] = [nn.Linear(widths[i], widths[i + 1], bias=bias)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(widths[i + 1]))
            if i < depth - 1:
                layers.append(_activation_module(activation))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers W_0, …, W_{depth-1}, in order."""
        return [block[0] for block in self.blocks]  # type: ignore[misc]

    @property
    def layer_names(self) -> list[str]:
        """Names of the block inputs returned by :meth:`layer_inputs`: ``["z", "block1", …]``.

        ``"blockk"`` is the output of the k-th block (1-based), i.e. the input of block index k.
        """
        return ["z"] + [f"block{k}" for k in range(1, self.depth)]

    def forward(self, z: Tensor) -> Tensor:
        """h = g(z) for z of shape (B, in_dim); returns shape (B, out_dim)."""
        return self.forward_from(z, 0)

    def forward_from(self, x: Tensor, start: int) -> Tensor:
        """Run blocks[start:] on ``x``, the input of block ``start`` (start = 0: x = z; start = depth: identity).

        Raises:
            ValueError: If ``start`` is not an int in [0, depth].
        """
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= self.depth:
            raise ValueError(f"start must be an int in [0, {self.depth}], got {start!r}")
        for block in self.blocks[start:]:
            x = block(x)
        return x

    def layer_inputs(self, z: Tensor) -> list[Tensor]:
        """Inputs of every block: [z, b_0(z), b_1(b_0(z)), …], length ``depth`` (the output h is not included).

        For i ≥ 1 entry i is the post-activation of hidden layer i. In train mode with BN this is one forward
        pass (it updates BN running statistics once, like :meth:`forward`).
        """
        inputs = [z]
        for block in self.blocks[:-1]:
            inputs.append(block(inputs[-1]))
        return inputs


def _activation_module(name: str) -> nn.Module:
    """Alias of :func:`activation`, reachable inside :class:`ProjectionHead` whose argument shadows that name."""
    return activation(name)


def build_projector(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    depth: int,
    activation: str,
    batchnorm: bool,
    bias: bool,
) -> ProjectionHead:
    """Projector g: R^in_dim → R^out_dim, ``depth`` Linear layers (paper: in → 2048 → 2048, no bias)."""
    return ProjectionHead(in_dim, hidden_dim, out_dim, depth, activation, batchnorm, bias)


def build_predictor(dim: int, hidden_dim: int, activation: str, batchnorm: bool, bias: bool) -> ProjectionHead:
    """SimSiam/BYOL predictor q: R^dim → R^dim, dim → hidden → dim (paper: 2048 → 512 → 2048).

    Uses the projector's activation and BN flag, as in the paper (PAPER §3.2).
    """
    return ProjectionHead(dim, hidden_dim, dim, 2, activation, batchnorm, bias)


def pseudo_collapse_(head: nn.Module, scale: float = 0.1) -> None:
    """Pseudo-collapsed init (PAPER §3.2): W ← scale · W for every ``nn.Linear`` weight in ``head``, in place.

    Biases, BatchNorm parameters/buffers and modules outside ``head`` are unchanged; no random numbers are
    drawn. The paper applies this (scale 0.1) to the projector only.

    Raises:
        ValueError: If ``scale`` is not a finite number > 0, or ``head`` contains no ``nn.Linear``.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head must contain at least one nn.Linear, got a {type(head).__name__} with none")
    with torch.no_grad():
        for linear in linears:
            linear.weight.mul_(scale)


def active_fraction(head: ProjectionHead, z: Tensor) -> Tensor:
    """Per hidden layer, the fraction of post-activation entries that are nonzero over the batch.

    For hidden layer i (1 ≤ i < depth) with post-activations a_i ∈ R^{B×hidden}:
    active_i = (1 / (B·hidden)) Σ_{b,j} 1[a_i[b, j] ≠ 0]. For ReLU heads this is the fraction of units with
    nonzero activation derivative (1 − the fraction of "dead" entries); for GELU/SiLU/linear heads it is
    1 almost surely. Runs without gradients and leaves BN running statistics untouched.

    Returns:
        Tensor of shape (depth - 1,) in z's dtype (empty for depth 1).
    """
    buffers = {name: buf.clone() for name, buf in head.named_buffers()}
    with torch.no_grad():
        hidden = head.layer_inputs(z)[1:]
        for name, buf in head.named_buffers():
            buf.copy_(buffers[name])
    dtype = z.dtype if z.is_floating_point() else torch.get_default_dtype()
    if not hidden:
        return torch.zeros(0, dtype=dtype, device=z.device)
    return torch.stack([(a != 0).to(dtype).mean() for a in hidden])
