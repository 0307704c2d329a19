"""Backbones: encoders f mapping images x ∈ R^{B×C×H×W} to representations z = f(x) ∈ R^{B×z_dim}.

Four architectures, built through :func:`build_backbone`:

* ``"mlp"`` — :class:`MLPBackbone`, a three-layer perceptron on the flattened image (pilot design for digits).
* ``"resnet_small"`` — :class:`SmallResNet`, a stem and two residual basic blocks; z is a post-ReLU global
  average pool, hence non-negative, like the paper's CIFAR ResNet-18 (PAPER §3.1).
* ``"resnet18"`` — :func:`resnet18_cifar`, torchvision's ResNet-18 with the CIFAR stem, z ∈ R^512 (PAPER §3.1).
* ``"vit_small"`` — :class:`SmallViT`, a pre-norm ViT whose output is the CLS token; unlike the paper's
  "ViT-Tiny" it ends with a LayerNorm (PAPER §17.13).

Every backbone exposes its output width as the attribute ``z_dim``. Construction draws from torch's global RNG
only, so two constructions after the same ``torch.manual_seed`` give identical weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomhead.checks import positive_int

__all__ = [
    "BACKBONES",
    "RESNET18_Z_DIM",
    "MLPBackbone",
    "SmallResNet",
    "SmallViT",
    "build_backbone",
    "default_num_heads",
    "default_patch_size",
    "resnet18_cifar",
]

BACKBONES: tuple[str, ...] = ("mlp", "resnet_small", "resnet18", "vit_small")
RESNET18_Z_DIM: int = 512


def _check_image_shape(image_shape: object) -> tuple[int, int, int]:
    """Validate an image shape ``(C, H, W)`` of positive ints and return it as a tuple."""
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise ValueError(f"image_shape must be a (C, H, W) tuple of 3 positive ints, got {image_shape!r}")
    c, h, w = (positive_int(f"image_shape[{i}]", v) for i, v in enumerate(image_shape))
    return c, h, w


class MLPBackbone(nn.Module):
    """Perceptron on flattened images: z = W₃ σ(W₂ σ(W₁ vec(x) + b₁) + b₂) + b₃, σ = ReLU.

    Shapes: W₁ ∈ R^{width×CHW}, W₂ ∈ R^{width×width}, W₃ ∈ R^{z_dim×width}; biases on, no batch norm.

    Args:
        image_shape: Input shape ``(C, H, W)``.
        z_dim: Output width.
        width: Hidden width of both hidden layers.
    """

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int, width: int) -> None:
        super().__init__()
        c, h, w = _check_image_shape(image_shape)
        self.image_shape = (c, h, w)
        self.z_dim = positive_int("z_dim", z_dim)
        self.width = positive_int("width", width)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, z_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``x`` of shape (B, C, H, W) to z of shape (B, z_dim)."""
        return self.net(x)


class _BasicBlock(nn.Module):
    """Residual basic block y = ReLU(BN(conv(ReLU(BN(conv(x))))) + s(x)), stride 1, out-of-place ReLUs.

    The shortcut s is the identity when the channel count is unchanged, else a 1×1 conv followed by BN.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to feature maps of shape (B, in_channels, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Small ResNet for low-resolution images (digits): stem, two basic blocks, global average pool.

    stem = ReLU(BN(conv3×3(C → width))); block1: width → width; block2: width → z_dim (1×1 conv + BN shortcut
    when width ≠ z_dim); z = mean over H×W of block2's output. There is no final Linear: as in the paper's CIFAR
    ResNet-18 (PAPER §3.1), z is an average of post-ReLU activations, so z ≥ 0 elementwise. All convolutions
    have stride 1, so any H, W ≥ 1 works.

    Args:
        image_shape: Input shape ``(C, H, W)``.
        z_dim: Output width = channels of the last block.
        width: Channels of the stem and the first block.
    """

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int, width: int) -> None:
        super().__init__()
        c, h, w = _check_image_shape(image_shape)
        self.image_shape = (c, h, w)
        self.z_dim = positive_int("z_dim", z_dim)
        self.width = positive_int("width", width)
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = _BasicBlock(width, width)
        self.block2 = _BasicBlock(width, z_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``x`` of shape (B, C, H, W) to non-negative z of shape (B, z_dim)."""
        out = self.block2(self.block1(self.stem(x)))
        return out.mean(dim=(2, 3))


def resnet18_cifar(in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem (PAPER §3.1): z ∈ R^512, post-ReLU average pool (z ≥ 0).

    ``resnet18(weights=None)`` with conv1 = Conv2d(in_channels, 64, 3, 1, 1, bias=False), maxpool = Identity
    and fc = Identity. torchvision's blocks use in-place ReLUs, as in the paper's code.

    Args:
        in_channels: Image channels (3 for CIFAR).

    Returns:
        The ResNet, with attribute ``z_dim = 512``.
    """
    positive_int("in_channels", in_channels)
    import torchvision  # lazy: importing torchvision costs ~1 s per job, and only this backbone needs it

    model = torchvision.models.resnet18(weights=None)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    model.z_dim = RESNET18_Z_DIM
    return model


def default_patch_size(image_shape: tuple[int, int, int]) -> int:
    """Patch size for :class:`SmallViT`: 2 for images up to 16 px (8×8 digits → 16 patches), else 4 (CIFAR → 64).

    Raises:
        ValueError: If the chosen patch does not divide both H and W.
    """
    _, h, w = _check_image_shape(image_shape)
    patch = 2 if max(h, w) <= 16 else 4
    if h % patch or w % patch:
        raise ValueError(
            f"image_shape {tuple(image_shape)!r}: H and W must be divisible by the patch size {patch} "
            f"(patch 2 for images up to 16 px, 4 above)"
        )
    return patch


def default_num_heads(dim: int) -> int:
    """Attention heads for width ``dim``: the largest h ≤ max(1, dim // 64) with dim % h == 0 (head dim ≥ 64).

    Gives 3 heads for dim 192 (the paper's ViT) and 6 for 384 (ViT-S).
    """
    positive_int("dim", dim)
    for heads in range(max(1, dim // 64), 0, -1):
        if dim % heads == 0:
            return heads
    return 1  # unreachable: heads = 1 always divides


class SmallViT(nn.Module):
    """Small pre-norm Vision Transformer; z is the (final-LayerNorm'ed) CLS token.

    tokens = [cls; Conv2d(C, dim, k=s=patch)(x) flattened] + pos_embed ∈ R^{B×(N+1)×dim}, N = HW / patch²;
    z = LayerNorm(Encoder(tokens))[:, 0], with ``depth`` pre-norm encoder layers (``num_heads`` heads, FFN 4·dim,
    GELU, dropout 0). CLS token and positional embedding are drawn from trunc-normal(0, 0.02).
    Unlike the paper's "ViT-Tiny" (PAPER §3.1, §17.13) this model has a final LayerNorm; the paper's model is
    this one with dim 192, depth 3, 3 heads, patch 4 and the final norm removed.

    Args:
        image_shape: Input shape ``(C, H, W)``.
        dim: Token width = z_dim.
        depth: Number of encoder layers.
        num_heads: Attention heads; must divide ``dim``. ``None`` → :func:`default_num_heads`.
        patch_size: Patch side; must divide H and W. ``None`` → :func:`default_patch_size`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        dim: int,
        depth: int = 3,
        num_heads: int | None = None,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(image_shape)
        self.image_shape = (c, h, w)
        self.z_dim = positive_int("dim", dim)
        self.depth = positive_int("depth", depth)
        heads = default_num_heads(dim) if num_heads is None else positive_int("num_heads", num_heads)
        if dim % heads:
            raise ValueError(f"num_heads={heads} must divide dim={dim}")
        patch = default_patch_size(self.image_shape) if patch_size is None else positive_int("patch_size", patch_size)
        if h % patch or w % patch:
            raise ValueError(f"patch_size={patch} must divide the image height {h} and width {w}")
        self.num_heads = heads
        self.patch_size = patch
        self.num_patches = (h // patch) * (w // patch)

        self.patch_embed = nn.Conv2d(c, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, self.num_patches + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokens(self, x: Tensor) -> Tensor:
        """Embedded input tokens [cls; patches] + pos_embed, shape (B, num_patches + 1, dim)."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``x`` of shape (B, C, H, W) to the CLS representation z of shape (B, dim)."""
        return self.norm(self.encoder(self.tokens(x)))[:, 0]


def build_backbone(name: str, image_shape: tuple[int, int, int], z_dim: int, width: int) -> nn.Module:
    """Build backbone ``name`` mapping images of shape (B, *image_shape) to z of shape (B, z_dim).

    ``width`` is the hidden width of ``"mlp"`` and the stem/first-block channels of ``"resnet_small"``; the
    ``"resnet18"`` and ``"vit_small"`` architectures are fixed by ``z_dim`` (ViT: dim = z_dim, depth 3,
    :func:`default_num_heads`, :func:`default_patch_size`) and ignore it. ``"resnet18"`` needs z_dim == 512.

    Raises:
        ValueError: For an unknown ``name``, non-positive sizes, a bad ``image_shape``, z_dim ≠ 512 for
            ``"resnet18"``, or an image size the ViT patching cannot tile.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone name must be one of {BACKBONES}, got {name!r}")
    shape = _check_image_shape(image_shape)
    positive_int("z_dim", z_dim)
    positive_int("width", width)
    if name == "mlp":
        return MLPBackbone(shape, z_dim, width)
    if name == "resnet_small":
        return SmallResNet(shape, z_dim, width)
    if name == "resnet18":
        if z_dim != RESNET18_Z_DIM:
            raise ValueError(
                f"z_dim must be {RESNET18_Z_DIM} for backbone 'resnet18' (torchvision's pooled features, no extra Linear), got {z_dim}"
            )
        return resnet18_cifar(in_channels=shape[0])
    return SmallViT(shape, dim=z_dim)
