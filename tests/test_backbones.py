"""Tests for geomhead.backbones: shapes, architecture properties, determinism and argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geomhead.backbones import (
    BACKBONES,
    MLPBackbone,
    SmallResNet,
    SmallViT,
    build_backbone,
    default_num_heads,
    default_patch_size,
    resnet18_cifar,
)

DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)
SMALL = ("mlp", "resnet_small", "vit_small")


def _images(shape: tuple[int, int, int], batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [DIGITS, CIFAR])
@pytest.mark.parametrize("name", SMALL)
def test_small_backbone_shapes_train_and_eval(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, shape, z_dim=24, width=16)
    x = _images(shape, batch=4)
    z = model(x)
    assert z.shape == (4, 24)
    assert model.z_dim == 24
    z.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (4, 24)


def test_resnet18_shape_and_nonnegative() -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet18", CIFAR, z_dim=512, width=1)
    z = model(_images(CIFAR, batch=2))
    assert z.shape == (2, 512)
    assert model.z_dim == 512
    assert bool((z >= 0).all())


def test_resnet18_cifar_stem() -> None:
    model = resnet18_cifar()
    conv1 = model.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert (conv1.in_channels, conv1.out_channels) == (3, 64)
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.padding == (1, 1)
    assert conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert isinstance(model.fc, nn.Identity)


def test_resnet18_requires_z_dim_512() -> None:
    with pytest.raises(ValueError, match="z_dim must be 512"):
        build_backbone("resnet18", CIFAR, z_dim=128, width=64)


@pytest.mark.parametrize("shape", [DIGITS, CIFAR])
def test_small_resnet_nonnegative_post_relu_pool(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(1)
    model = SmallResNet(shape, z_dim=12, width=8)
    z = model(_images(shape, batch=5) - 0.5)
    assert z.shape == (5, 12)
    assert bool((z >= 0).all())
    assert bool((z > 0).any())
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_small_resnet_shortcut_projection_only_when_widths_differ() -> None:
    same = SmallResNet(DIGITS, z_dim=8, width=8)
    other = SmallResNet(DIGITS, z_dim=12, width=8)
    assert isinstance(same.block2.shortcut, nn.Identity)
    assert isinstance(other.block2.shortcut, nn.Sequential)


def test_mlp_backbone_matches_explicit_formula() -> None:
    torch.manual_seed(2)
    model = MLPBackbone(DIGITS, z_dim=5, width=7).double()
    x = _images(DIGITS, batch=3).double()
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(64, 7), (7, 7), (7, 5)]
    assert all(m.bias is not None for m in lin)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    h = x.flatten(1)
    h = torch.relu(h @ lin[0].weight.T + lin[0].bias)
    h = torch.relu(h @ lin[1].weight.T + lin[1].bias)
    expected = h @ lin[2].weight.T + lin[2].bias
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("shape", "patch", "n_patches"), [(DIGITS, 2, 16), (CIFAR, 4, 64)])
def test_vit_patching(shape: tuple[int, int, int], patch: int, n_patches: int) -> None:
    assert default_patch_size(shape) == patch
    model = SmallViT(shape, dim=24)
    assert model.patch_size == patch and model.num_patches == n_patches
    assert model.pos_embed.shape == (1, n_patches + 1, 24)
    assert model.cls_token.shape == (1, 1, 24)
    assert model.tokens(_images(shape, batch=2)).shape == (2, n_patches + 1, 24)


def test_vit_architecture_defaults() -> None:
    model = SmallViT(CIFAR, dim=192)
    assert model.depth == 3 and len(model.encoder.layers) == 3
    assert model.num_heads == 3
    layer = model.encoder.layers[0]
    assert layer.norm_first
    assert layer.self_attn.num_heads == 3 and layer.self_attn.batch_first
    assert layer.linear1.out_features == 4 * 192
    assert layer.dropout.p == 0.0
    assert isinstance(model.norm, nn.LayerNorm)
    assert 0.0 < model.pos_embed.std().item() < 0.03


def test_vit_output_is_normalised_cls_token() -> None:
    torch.manual_seed(3)
    model = SmallViT(DIGITS, dim=16).double()
    x = _images(DIGITS, batch=3).double()
    full = model.norm(model.encoder(model.tokens(x)))
    torch.testing.assert_close(model(x), full[:, 0], rtol=0, atol=0)
    # Final LayerNorm with default affine init (weight 1, bias 0): each z has zero mean over features.
    z = model(x)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-10)


def test_vit_cls_depends_on_every_patch() -> None:
    torch.manual_seed(4)
    model = SmallViT(DIGITS, dim=16).double()
    x = _images(DIGITS, batch=1).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    per_patch = grad.reshape(1, 1, 4, 2, 4, 2).abs().sum(dim=(0, 1, 3, 5))
    assert bool((per_patch > 0).all())


@pytest.mark.parametrize(("dim", "heads"), [(16, 1), (64, 1), (128, 2), (192, 3), (384, 6), (320, 5)])
def test_default_num_heads(dim: int, heads: int) -> None:
    assert default_num_heads(dim) == heads
    assert dim % heads == 0


@pytest.mark.parametrize("name", BACKBONES)
def test_same_seed_same_weights(name: str) -> None:
    shape = CIFAR if name == "resnet18" else DIGITS
    z_dim = 512 if name == "resnet18" else 16
    torch.manual_seed(7)
    a = build_backbone(name, shape, z_dim, 8)
    torch.manual_seed(7)
    b = build_backbone(name, shape, z_dim, 8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb)
    torch.manual_seed(8)
    c = build_backbone(name, shape, z_dim, 8)
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_unknown_backbone_names_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"backbone name must be one of .*'mlp'.*'vit_small'.*'resnet50'"):
        build_backbone("resnet50", CIFAR, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"z_dim": 0}, "z_dim"),
        ({"width": -1}, "width"),
        ({"z_dim": 2.0}, "z_dim"),
        ({"image_shape": (8, 8)}, "image_shape"),
        ({"image_shape": (1, 0, 8)}, r"image_shape\[1\]"),
    ],
)
@pytest.mark.parametrize("name", SMALL)
def test_bad_sizes_raise(name: str, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"image_shape": DIGITS, "z_dim": 16, "width": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        build_backbone(name, **args)  # type: ignore[arg-type]


def test_vit_bad_patch_and_heads_raise() -> None:
    with pytest.raises(ValueError, match="patch"):
        SmallViT((1, 9, 9), dim=16)
    with pytest.raises(ValueError, match="patch_size=3"):
        SmallViT(DIGITS, dim=16, patch_size=3)
    with pytest.raises(ValueError, match="num_heads=3 must divide dim=16"):
        SmallViT(DIGITS, dim=16, num_heads=3)
