"""Probes: an identity head leaves every accuracy unchanged, an injective affine head cannot lower the linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomhead.probes import confidence_interval, fit_probe, probe_over_seeds, quarter_turns, rotation_split


def _blobs(n: int, d: int, seed: int, classes: int = 3, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes (not linearly separable, so unpenalised logistic regression has an optimum)."""
    centres = np.random.default_rng(99).normal(size=(classes, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    return centres[y] + spread * rng.normal(size=(n, d)), y


def _split(head) -> callable:  # type: ignore[valid-type]
    x_tr, y_tr = _blobs(300, 5, 0)
    x_te, y_te = _blobs(200, 5, 1)

    def split(seed: int) -> tuple[np.ndarray, ...]:
        idx = np.sort(np.random.default_rng(seed).choice(300, size=200, replace=False))
        return head(x_tr[idx]), y_tr[idx], head(x_te), y_te

    return split


def test_identity_head_gives_equal_probe_accuracies() -> None:
    for kind in ("linear", "mlp"):
        on_z = probe_over_seeds(kind, _split(lambda x: x), [0, 1, 2], hidden=8, max_iter=100)
        on_h = probe_over_seeds(kind, _split(lambda x: x.copy()), [0, 1, 2], hidden=8, max_iter=100)
        np.testing.assert_array_equal(on_z.accuracy, on_h.accuracy)
        assert on_z.ci_low < on_z.mean < on_z.ci_high


def test_injective_affine_head_cannot_lower_linear_probe_accuracy() -> None:
    """Linear functions of h = A z + b with injective A are exactly the affine functions of z."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 5)) * rng.uniform(0.01, 100.0, size=(12, 1))
    b = rng.normal(size=12)
    on_z = probe_over_seeds("linear", _split(lambda x: x), [0, 1, 2], C=np.inf, max_iter=5000)
    on_h = probe_over_seeds("linear", _split(lambda x: x @ a.T + b), [0, 1, 2], C=np.inf, max_iter=5000)
    assert on_z.converged.all() and on_h.converged.all()
    assert (on_h.accuracy >= on_z.accuracy - 1e-12).all()
    # a non-injective head can lose what the probe needs
    crushed = probe_over_seeds("linear", _split(lambda x: x[:, :1] @ np.ones((1, 12))), [0, 1, 2], C=np.inf, max_iter=5000)
    assert crushed.mean < on_z.mean - 0.05


def test_confidence_interval_is_student_t() -> None:
    low, high = confidence_interval([0.5, 0.6, 0.7])
    half = 4.302652729749464 * 0.1 / np.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert low == pytest.approx(0.6 - half) and high == pytest.approx(0.6 + half)
    assert all(np.isnan(confidence_interval([0.5])))
    with pytest.raises(ValueError, match="level must be in"):
        confidence_interval([0.5, 0.6], level=1.0)


def test_quarter_turns_and_rotation_split() -> None:
    x = torch.arange(2 * 9, dtype=torch.float64).reshape(2, 1, 3, 3)
    turns = quarter_turns(x)
    assert turns.shape == (4, 2, 1, 3, 3)
    assert torch.equal(turns[0], x) and torch.equal(turns[2], x.flip(-1).flip(-2))
    assert torch.equal(torch.rot90(turns[3], 1, dims=(-2, -1)), x)
    feats = np.arange(4)[:, None, None] * 10 + np.arange(6)[None, :, None] + np.zeros((1, 1, 2))  # feature = 10 k + index
    x_tr, y_tr, x_te, y_te = rotation_split(feats, feats[:, :3], np.random.default_rng(0), n_train=4)
    assert x_tr.shape == (4, 2) and x_te.shape == (3, 2)
    np.testing.assert_array_equal(x_tr[:, 0] // 10, y_tr)
    np.testing.assert_array_equal(x_te[:, 0] // 10, y_te)
    assert set(y_tr) <= {0, 1, 2, 3}


def test_unconverged_probe_is_flagged_not_raised() -> None:
    x, y = _blobs(200, 5, 4)
    acc, converged = fit_probe("mlp", x, y, x, y, max_iter=1, hidden=8)
    assert not converged and 0.0 <= acc <= 1.0
    acc2, _ = fit_probe("mlp", x, y, x, y, max_iter=1, hidden=8)
    assert acc == acc2  # seeded


def test_bad_arguments_raise() -> None:
    x, y = _blobs(20, 3, 5)
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_probe("forest", x, y, x, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        fit_probe("mlp", x, y, x, y, hidden=0)
    with pytest.raises(ValueError, match="C must be a number > 0"):
        fit_probe("linear", x, y, x, y, C=0.0)
    with pytest.raises(ValueError, match="need x_train"):
        fit_probe("linear", x, y[:5], x, y)
    with pytest.raises(ValueError, match="distinct ints"):
        probe_over_seeds("linear", _split(lambda v: v), [1, 1])
    with pytest.raises(ValueError, match="H == W"):
        quarter_turns(torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="shape \\(4, n, d\\)"):
        rotation_split(np.zeros((3, 2, 2)), np.zeros((4, 2, 2)), np.random.default_rng(0))
