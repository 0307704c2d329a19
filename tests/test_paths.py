"""Path curvature on circles and lines with known answers, and batched augmentation sweeps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geomhead import augment
from geomhead.paths import (
    augmentation_path,
    menger_curvature,
    path_curvatures,
    second_difference_curvature,
    turning_curvature,
)


def _circle(radius: float, angles: torch.Tensor, dim: int = 5, seed: int = 0) -> torch.Tensor:
    """Points on a circle of the given radius in a random 2-plane of R^dim, shifted off the origin."""
    q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    plane = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1) * radius
    return plane @ q.T + 3.0


def test_circle_has_the_known_curvatures() -> None:
    radius, step, n = 2.0, 0.1, 10
    r = _circle(radius, torch.arange(n, dtype=torch.float64) * step)
    assert second_difference_curvature(r, normalize=False) == pytest.approx(4 * radius * math.sin(step / 2) ** 2, rel=1e-12)
    assert menger_curvature(r, normalize=False) == pytest.approx(1 / radius, rel=1e-12)
    assert turning_curvature(r, normalize=False) == pytest.approx(step / (2 * radius * math.sin(step / 2)), rel=1e-12)


def test_arc_length_normalised_curvatures_do_not_depend_on_the_sweep_speed() -> None:
    radius = 0.5
    uneven = torch.tensor([0.0, 0.02, 0.05, 0.15, 0.2, 0.4, 0.45], dtype=torch.float64)
    r = _circle(radius, uneven)
    fast = _circle(radius, uneven * 3)
    assert menger_curvature(r, normalize=False) == pytest.approx(1 / radius, rel=1e-12)
    assert menger_curvature(fast, normalize=False) == pytest.approx(1 / radius, rel=1e-12)
    assert turning_curvature(r, normalize=False) == pytest.approx(1 / radius, rel=0.01)
    ratio = second_difference_curvature(fast, normalize=False) / second_difference_curvature(r, normalize=False)
    assert ratio > 2.5  # the paper's measure grows with the speed (squared for even steps, here about linearly)


def test_straight_line_has_zero_curvature_and_a_point_has_none() -> None:
    t = torch.linspace(0, 1, 6, dtype=torch.float64)[:, None]
    line = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64) + t * torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64)
    out = path_curvatures(line, normalize=False)
    assert float(out["second_difference"]) == pytest.approx(0.0, abs=1e-15)
    assert float(out["turning"]) == pytest.approx(0.0, abs=1e-7) and float(out["menger"]) == pytest.approx(0.0, abs=1e-7)
    ray = t * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) + torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    normalised = path_curvatures(ray)  # all rows normalise to one point (to rounding): an invariant representation
    assert float(normalised["second_difference"]) < 1e-15
    assert math.isnan(float(normalised["turning"])) and math.isnan(float(normalised["menger"]))


def test_batch_of_paths() -> None:
    angles = torch.arange(5, dtype=torch.float64) * 0.2
    r = torch.stack([_circle(1.0, angles, seed=1), _circle(4.0, angles, seed=2)])
    torch.testing.assert_close(menger_curvature(r, normalize=False), torch.tensor([1.0, 0.25], dtype=torch.float64))


def test_augmentation_path_is_a_batched_sweep() -> None:
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values = torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64)
    out = augmentation_path(nn.Flatten(), x, "angle", values)
    assert out.shape == (3, 3, 64)
    for j, value in enumerate(values):
        params = augment.identity_params(3, dtype=torch.float64)
        params["angle"] = torch.full((3,), float(value), dtype=torch.float64)
        torch.testing.assert_close(out[:, j], augment.apply(x, params).flatten(1))
    torch.testing.assert_close(out[:, 0], x.flatten(1))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="n_steps >= 3"):
        second_difference_curvature(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="zero representation"):
        turning_curvature(torch.zeros(3, 4))
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="name must be one of"):
        augmentation_path(nn.Flatten(), x, "hue", [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        augmentation_path(nn.Flatten(), x, "angle", [0.0, 1.0])
    with pytest.raises(ValueError, match="needs noise"):
        augmentation_path(nn.Flatten(), x, "noise", [0.0, 1.0, 2.0])
