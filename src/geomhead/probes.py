r"""Linear and MLP probes of matched capacity, seeded, with confidence intervals over seeds.

The information–invariance trade-off (PAPER §9, §14.5): a head that becomes invariant to an
augmentation discards information about it that the backbone keeps. Probes measure what is
linearly (``linear``) or non-linearly (``mlp``) decodable from a representation: the augmentation
parameter (the rotation class: each image turned by :math:`k \cdot 90°`, :math:`k \in \{0,1,2,3\}`,
which is exact on the pixel grid) and the class label.

Probes (scikit-learn), always on standardised features (``StandardScaler`` fitted on the
training fold), so that the scale of ``h`` (tiny for pseudo-collapsed heads) does not matter:

* ``linear``: multinomial logistic regression, L2 penalty :math:`\frac{1}{2C}\|W\|^2` (``C = inf``: none), L-BFGS;
* ``mlp``: one hidden ReLU layer of ``hidden`` units, L2 penalty ``alpha``, L-BFGS, initialised from the seed.

*Matched capacity*: the probes on z and on h share the hidden width, the penalty, the optimiser
and its iteration budget (the paper's code used 256 hidden units on z but 512 on h, PAPER §17.11).
Per seed, a random training subset (and, for rotation, random rotations) is drawn from the seed;
the accuracy on the test set is reported per seed, with its mean and a Student-t confidence
interval :math:`\bar a \pm t_{n-1,(1+\ell)/2}\, s/\sqrt n` (NaN for one seed). A fit that stops at
its iteration budget is flagged as not converged (its warning is caught, not raised).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from torch import Tensor

__all__ = [
    "PROBES",
    "ProbeResult",
    "confidence_interval",
    "fit_probe",
    "probe_over_seeds",
    "quarter_turns",
    "rotation_split",
]

PROBES: tuple[str, ...] = ("linear", "mlp")
ProbeKind = Literal["linear", "mlp"]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracies of one probe over seeds.

    Attributes:
        accuracy: ``(n_seeds,)`` test accuracy per seed.
        converged: ``(n_seeds,)`` whether the optimiser converged within its budget.
        seeds: The seeds, in order.
        mean: Mean accuracy.
        ci_low: Lower end of the confidence interval.
        ci_high: Upper end.
        level: Confidence level.
    """

    accuracy: np.ndarray
    converged: np.ndarray
    seeds: tuple[int, ...]
    mean: float
    ci_low: float
    ci_high: float
    level: float


def confidence_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    r"""Student-t interval :math:`\bar x \pm t_{n-1,(1+\ell)/2}\, s/\sqrt n` (``s`` with ddof 1); NaN for ``n < 2``.

    Raises:
        ValueError: If ``level`` is not in (0, 1) or ``values`` is empty or not 1-D.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if x.size < 2:
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return float(x.mean() - half), float(x.mean() + half)


def quarter_turns(x: Tensor) -> Tensor:
    """All four exact rotations ``torch.rot90(x, k, dims=(-2, -1))``, ``k = 0..3``: ``(B, C, H, W) → (4, B, C, H, W)``.

    Raises:
        ValueError: If ``x`` is not 4-D with square images.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be a (B, C, H, W) tensor with H == W, got {tuple(getattr(x, 'shape', ()))}")
    return torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])


def rotation_split(
    train_by_turn: np.ndarray,
    test_by_turn: np.ndarray,
    rng: np.random.Generator,
    n_train: int | None = None,
) -> Split:
    """Rotation-prediction data: each image gets one random quarter turn, its label.

    Args:
        train_by_turn: Features of every training image under each turn, ``(4, N, d)``.
        test_by_turn: The same for the test images, ``(4, M, d)``.
        rng: Source of the turns and of the training subset.
        n_train: Size of a random training subset (default all N).

    Returns:
        ``(x_train, y_train, x_test, y_test)``.

    Raises:
        ValueError: On bad shapes or ``n_train``.
    """
    for name, arr in (("train_by_turn", train_by_turn), ("test_by_turn", test_by_turn)):
        if np.ndim(arr) != 3 or np.shape(arr)[0] != 4:
            raise ValueError(f"{name} must have shape (4, n, d), got {np.shape(arr)}")
    n = train_by_turn.shape[1]
    idx = _subset(n, n_train, rng)
    k_train = rng.integers(0, 4, size=idx.size)
    k_test = rng.integers(0, 4, size=test_by_turn.shape[1])
    return (
        train_by_turn[k_train, idx],
        k_train,
        test_by_turn[k_test, np.arange(test_by_turn.shape[1])],
        k_test,
    )


def _subset(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"n_train must be an int >= 2 or None, got {size!r}")
    return np.sort(rng.choice(n, size=size, replace=False))


def fit_probe(
    kind: ProbeKind,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    seed: int = 0,
    hidden: int = 64,
    C: float = 1.0,
    alpha: float = 1e-4,
    max_iter: int = 200,
) -> tuple[float, bool]:
    """Fit one probe on standardised features and return its test accuracy and whether it converged.

    Args:
        kind: ``"linear"`` or ``"mlp"``.
        x_train: ``(n, d)`` training features.
        y_train: ``(n,)`` integer targets.
        x_test: ``(m, d)`` test features.
        y_test: ``(m,)`` integer targets.
        seed: Initialisation seed of the MLP (the linear probe is deterministic).
        hidden: Hidden width of the MLP.
        C: Inverse L2 strength of the linear probe (``inf``: unpenalised).
        alpha: L2 strength of the MLP.
        max_iter: L-BFGS iteration budget.

    Returns:
        ``(accuracy, converged)``.

    Raises:
        ValueError: On an unknown ``kind``, bad hyper-parameters or mismatched shapes.
    """
    if kind not in PROBES:
        raise ValueError(f"kind must be one of {list(PROBES)}, got {kind!r}")
    for name, value in (("hidden", hidden), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a number > 0 (inf for no penalty), got {C!r}")
    if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    xtr, xte = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1] or ytr.shape != (len(xtr),) or yte.shape != (len(xte),):
        raise ValueError(
            f"need x_train (n, d), y_train (n,), x_test (m, d), y_test (m,); got {xtr.shape}, {ytr.shape}, {xte.shape}, {yte.shape}"
        )
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    model: LogisticRegression | MLPClassifier
    if kind == "linear":
        model = LogisticRegression(C=float(C), max_iter=max_iter)
    else:
        model = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=float(alpha), solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(xtr, ytr)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return float(model.score(xte, yte)), converged


def probe_over_seeds(
    kind: ProbeKind,
    split: Callable[[int], Split],
    seeds: Sequence[int],
    *,
    level: float = 0.95,
    **options: float,
) -> ProbeResult:
    """Fit one probe per seed on ``split(seed)`` and summarise the test accuracies.

    Args:
        kind: ``"linear"`` or ``"mlp"``.
        split: Maps a seed to ``(x_train, y_train, x_test, y_test)`` (e.g. a seeded subset, seeded rotations).
        seeds: Distinct integer seeds.
        level: Confidence level of the interval.
        **options: ``hidden``, ``C``, ``alpha``, ``max_iter`` for :func:`fit_probe`.

    Returns:
        The :class:`ProbeResult`.

    Raises:
        ValueError: On empty or repeated seeds, or bad options.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty sequence of distinct ints, got {list(seeds)}")
    acc, conv = [], []
    for seed in seeds:
        a, c = fit_probe(kind, *split(seed), seed=seed, **options)  # type: ignore[arg-type]
        acc.append(a)
        conv.append(c)
    accuracy = np.asarray(acc)
    low, high = confidence_interval(accuracy, level)
    return ProbeResult(accuracy, np.asarray(conv), seeds, float(accuracy.mean()), low, high, level)
