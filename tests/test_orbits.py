"""Orbit metrics on hand-built examples whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geomhead.orbits import PAPER_EPS, orbit_metrics, orbit_pca, orbit_stats, paper_orbit_metrics

# Two orbits of two points each, one per class (rows not normalised):
#   orbit 0 (class 0): (1, 0), (3, 0)  centroid (2, 0)  spread mean(1, 1) = 1  intra distance 2
#   orbit 1 (class 1): (0, 1), (0, 5)  centroid (0, 3)  spread mean(4, 4) = 4  intra distance 4
# mean spread 2.5 (std 1.5); D_intra 3 (std 1); class centroids (2, 0), (0, 3): D_inter sqrt(13) (std 0)
Z = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
IDS = np.array([0, 0, 1, 1])
LABELS = np.array([7, 7, 3, 3])


def test_hand_built_two_orbit_example() -> None:
    s = orbit_stats(Z, IDS, LABELS, normalize=False)
    assert s.spread == pytest.approx(2.5) and s.spread_std == pytest.approx(1.5)
    assert s.d_intra == pytest.approx(3.0) and s.d_intra_std == pytest.approx(1.0)
    assert s.d_inter == pytest.approx(math.sqrt(13)) and s.d_inter_std == 0.0
    assert s.ratio == pytest.approx(math.sqrt(13) / 3)
    assert s.ratio_std == pytest.approx(math.sqrt(13) / 3 * (1 / 3))  # naive propagation, D_inter exact
    np.testing.assert_allclose(s.per_orbit_spread, [1.0, 4.0])
    per_dim = orbit_stats(Z, IDS, LABELS, spread="per_dim", normalize=False)
    assert per_dim.spread == pytest.approx(1.25)


def test_compression_of_a_scaled_and_padded_head() -> None:
    """h = (z/2, 0, 0): total spread /4 -> compression 4; per-dim also divides by d_h/d_z = 2 -> 8."""
    h = np.concatenate([Z / 2, np.zeros((4, 2))], axis=1)
    total = orbit_metrics(Z, h, IDS, LABELS, normalize=False)
    assert total.h.spread == pytest.approx(0.625)
    assert total.compression == pytest.approx(4.0)
    assert total.separation_gain == pytest.approx(1.0)  # ratios are scale free
    assert total.intra_reduction == pytest.approx(2.0) and total.inter_reduction == pytest.approx(2.0)
    per_dim = orbit_metrics(Z, h, IDS, LABELS, spread="per_dim", normalize=False)
    assert per_dim.compression == pytest.approx(8.0)
    with_eps = orbit_metrics(Z, h, IDS, LABELS, eps=0.125, normalize=False)
    assert with_eps.compression == pytest.approx(2.5 / 0.75)
    assert with_eps.z.ratio == pytest.approx(math.sqrt(13) / 3.125)


def test_identity_head_gives_compression_one() -> None:
    z = np.random.default_rng(0).normal(size=(24, 5))
    ids, labels = np.repeat(np.arange(6), 4), np.repeat([0, 0, 1, 1, 2, 2], 4)
    for spread in ("total", "per_dim"):
        m = orbit_metrics(z, z.copy(), ids, labels, spread=spread)
        assert m.compression == 1.0 and m.separation_gain == 1.0 and m.intra_reduction == 1.0


def test_normalised_rows_on_the_unit_circle() -> None:
    """Rows r(cos a, ±sin a) normalise to the unit circle: spread sin^2 a, intra distance 2 sin a."""
    a, b = 0.3, 0.7
    pts = np.array([[math.cos(a), math.sin(a)], [math.cos(a), -math.sin(a)], [-math.cos(b), math.sin(b)], [-math.cos(b), -math.sin(b)]])
    scaled = pts * np.array([[3.0], [0.5], [2.0], [7.0]])
    s = orbit_stats(torch.as_tensor(scaled), IDS, LABELS)  # tensors are accepted too
    assert s.spread == pytest.approx((math.sin(a) ** 2 + math.sin(b) ** 2) / 2)
    assert s.d_intra == pytest.approx(math.sin(a) + math.sin(b))
    assert s.d_inter == pytest.approx(math.cos(a) + math.cos(b))


def test_paper_convention_is_total_spread_eps_and_normalised_rows() -> None:
    rng = np.random.default_rng(1)
    z, h = rng.normal(size=(12, 4)), rng.normal(size=(12, 9))
    ids, labels = np.repeat(np.arange(4), 3), np.repeat([0, 1, 0, 1], 3)
    paper = paper_orbit_metrics(z, h, ids, labels)
    explicit = orbit_metrics(z, h, ids, labels, spread="total", eps=PAPER_EPS, normalize=True)
    assert (paper.compression, paper.z.ratio, paper.h.spread) == (explicit.compression, explicit.z.ratio, explicit.h.spread)
    assert paper.spread_convention == "total" and paper.eps == 1e-10 and paper.normalize
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    spread = lambda x: np.mean([np.mean(np.sum((x[ids == o] - x[ids == o].mean(0)) ** 2, axis=1)) for o in range(4)])  # noqa: E731
    assert paper.compression == pytest.approx(spread(zn) / (spread(hn) + 1e-10), rel=1e-14)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="orbit 1 has 1 row"):
        orbit_stats(Z[:3], IDS[:3], LABELS[:3], normalize=False)
    with pytest.raises(ValueError, match="several class labels"):
        orbit_stats(Z, IDS, np.array([1, 2, 3, 3]), normalize=False)
    with pytest.raises(ValueError, match="at least 2 classes"):
        orbit_stats(Z, IDS, np.zeros(4), normalize=False)
    with pytest.raises(ValueError, match="one entry per row"):
        orbit_stats(Z, IDS[:3], LABELS, normalize=False)
    with pytest.raises(ValueError, match="spread must be one of"):
        orbit_stats(Z, IDS, LABELS, spread="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps must be"):
        orbit_stats(Z, IDS, LABELS, eps=-1.0)
    with pytest.raises(ValueError, match="zero row"):
        orbit_stats(np.zeros((4, 2)), IDS, LABELS)
    with pytest.raises(ValueError, match="same number of rows"):
        orbit_metrics(Z, Z[:3], IDS, LABELS)


def test_orbit_pca_is_sklearn_pca_of_the_normalised_rows() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 2.0
    coords, explained = orbit_pca(x)
    rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = PCA(n_components=2, random_state=42).fit(rows)
    np.testing.assert_allclose(coords, expected.transform(rows), atol=1e-12)
    np.testing.assert_allclose(explained, expected.explained_variance_ratio_, rtol=1e-12)
    assert explained[0] >= explained[1] and explained.sum() <= 1.0
    raw, _ = orbit_pca(x, normalize=False)
    assert not np.allclose(np.abs(raw), np.abs(coords)), "normalize=False projects the raw rows"
    with pytest.raises(ValueError, match="n_components must be in 1..6"):
        orbit_pca(x, n_components=7)
