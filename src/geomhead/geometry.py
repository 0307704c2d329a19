r"""Geometry of one pretraining run: pullback metrics, degeneracy, orbits, path curvature, probes, whitening.

:func:`geometry_of_run` reads a finished run (``model.pt``, ``snapshots/``) and the prepared dataset and
returns one :class:`xarray.Dataset` (units and long names on every variable, attributes ``run_json``
and ``config_json`` as :func:`geomhead.dynamics.to_dataset`, so :func:`geomhead.cube.combine` stacks
runs along ``config``). The head analysed is the projector ``h = g(z)`` (not the predictor); every
network is evaluated in float64 and eval mode. The snapshot representations were computed by the
trainer in train mode, which differs from eval mode only for backbones with BatchNorm.

Over snapshot steps (head weights and the tracking batch's backbone representations are stored
per step; the backbone itself is not, so nothing that needs images runs there):

* pullback-metric spectra at every layer, normalisation ``none`` and ``l2``, at the first
  ``metric_points`` view-1 representations of the tracking batch (:mod:`geomhead.pullback`);
* the *views* degeneracy: the direction :math:`\delta = z_2 - z_1` between the two augmented views of
  the tracking batch (a secant of the joint augmentation, what the loss compares), its index and
  spectrum position at :math:`z_1` (:mod:`geomhead.degeneracy`).

On the final model (and, as the untrained control, the same backbone with the projector at step 0):

* per-parameter tangents at :math:`\xi = 0` of the first ``degeneracy_points`` clean tracking images
  (``tangent_interpolation``; the noise tangent uses a fixed unit field), degeneracy index
  (``random`` and ``principal`` references) and spectrum position;
* orbit metrics of ``orbit_classes × orbit_images`` test images under ``orbit_angles`` rotations
  :math:`2\pi j/n` (PAPER §11; total and per-dimension spread, ``eps = 1e-10``, L2-normalised rows;
  head fed raw z, as in training, and L2-normalised z, as in the paper's orbit experiment);
* path curvature of ``path_images`` test images along each analysed augmentation parameter, swept
  in ``path_steps`` values from 0 to the largest magnitude that training draws (angle:
  ``rotation_deg``; tx, ty: ``translate``; log_scale, brightness, contrast: the larger
  :math:`|\log|` of the range ends; noise: ``noise_std``; log_aspect: the larger :math:`|\log|` of
  ``crop_ratio`` when cropping), head fed raw z (the paper's curvature convention);
* linear and MLP probes (trained head only) for the rotation class and the label;
* for heads whose activation is ``linear``: the whitening report of :mod:`geomhead.whitening` on
  the tracking batch (anchors from view 1, view 2 held fixed, the run's own loss and settings), with
  the loss Hessian taken on the range of W; NaN for other heads.

All randomness (orbit and path images, probe subsets and rotations, the noise field, Σ_z samples)
comes from generators seeded by ``settings.seed`` and a fixed purpose, not from the run's seed, so
runs are compared on the same images.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from geomhead import augment
from geomhead.atomic import torch_load
from geomhead.checks import dataclass_from_mapping
from geomhead.cube import attrs, provenance
from geomhead.data import ImageDataset, load_dataset
from geomhead.degeneracy import (
    REFERENCES,
    augmentation_tangents,
    direction_reference,
    isotropic_reference,
    principal_directions,
    rayleigh_quotient,
    spectrum_position,
)
from geomhead.losses import ssl_loss
from geomhead.model import SSLModel
from geomhead.orbits import PAPER_EPS, SPREAD_CONVENTIONS, orbit_metrics, orbit_pca
from geomhead.paths import CURVATURES, augmentation_path, path_curvatures
from geomhead.probes import PROBES, probe_over_seeds, quarter_turns, rotation_split
from geomhead.pullback import NORMALIZATIONS, head_layer_jacobians, spectrum
from geomhead.selection import LOSS_NORMALIZATION
from geomhead.train import load_model
from geomhead.whitening import affine_jacobian, anchor_loss_hessians, range_basis, whitening_report

__all__ = [
    "HEADS",
    "HEAD_INPUTS",
    "LOSS_NORMALIZATION",
    "PARTS",
    "TARGETS",
    "AnalysisSettings",
    "augmentation_ranges",
    "geometry_of_run",
    "headline",
]

HEADS: tuple[str, ...] = ("trained", "untrained")
HEAD_INPUTS: tuple[str, ...] = ("raw", "normalized")
TARGETS: tuple[str, ...] = ("rotation", "label")
SPACES: tuple[str, ...] = ("z", "h")
PARTS: tuple[str, ...] = ("load", "pullback", "degeneracy", "orbits", "paths", "probes", "whitening")
_PURPOSES = {"noise": 1, "orbits": 2, "paths": 3, "probe_pool": 4, "probe": 5, "covariance": 6}
_RUN_KEYS = ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed")
_TANGENT_UNITS = "per radian (angle), per image size (tx, ty), per unit log factor (log_scale, brightness, contrast, log_aspect), per unit noise amplitude (noise)"


@dataclass(frozen=True)
class AnalysisSettings:
    """Settings of :func:`geometry_of_run` (the ``analysis:`` section of params.yaml).

    Attributes:
        metric_points: Tracking-batch points per snapshot for the pullback spectrum and views degeneracy.
        max_snapshots: Snapshot steps analysed, evenly spaced by index, first and last always kept (0: all).
        degeneracy_points: Clean tracking images for the per-parameter tangents on the final model.
        principal_directions: m, number of principal data directions of the ``principal`` reference.
        augmentations: Parameters analysed (tangents, paths); ``None``: those the run's augmentation varies.
        tangent_interpolation: Resampling for tangents (``bicubic``: two-sided derivative at the identity).
        rtol: Eigenvalues below ``rtol`` times the largest count as zero (rank, condition number).
        orbit_classes: Classes of the orbit experiment (``linspace(0, C-1, n)``, as the paper).
        orbit_images: Test images per class.
        orbit_angles: Rotations per orbit, ``2πj/n``.
        path_images: Test images per path sweep.
        path_steps: Values per sweep (>= 3).
        probe_seeds: Seeds of every probe (>= 2 for a confidence interval).
        probe_train: Training images per probe fit (a seeded subset); the pools hold up to twice as many.
        probe_hidden: Hidden width of the MLP probe (the same on z and h).
        probe_linear_max_iter: L-BFGS budget of the linear probe (convex: enough to converge as a rule).
        probe_mlp_max_iter: L-BFGS budget of the MLP probe (a budget: on ill-conditioned h it stops early).
        probe_C: Inverse L2 strength of the linear probe.
        probe_alpha: L2 strength of the MLP probe.
        whitening_anchors: Anchors (view-1 rows of the tracking batch) of the loss Hessian.
        whitening_rank: r, dimension of the loss-relevant subspace.
        whitening_samples: Augmented training images for Σ_z (at least 2·z_dim + 1 are used).
        seed: Seed of every random choice of the analysis.

    Raises:
        ValueError: Naming the field, its value and what is allowed.
    """

    metric_points: int = 16
    max_snapshots: int = 8
    degeneracy_points: int = 16
    principal_directions: int = 8
    augmentations: tuple[str, ...] | None = None
    tangent_interpolation: str = "bicubic"
    rtol: float = 1e-10
    orbit_classes: int = 5
    orbit_images: int = 3
    orbit_angles: int = 12
    path_images: int = 32
    path_steps: int = 10
    probe_seeds: int = 3
    probe_train: int = 500
    probe_hidden: int = 32
    probe_linear_max_iter: int = 1000
    probe_mlp_max_iter: int = 100
    probe_C: float = 1.0
    probe_alpha: float = 1e-4
    whitening_anchors: int = 4
    whitening_rank: int = 8
    whitening_samples: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        minimum = {
            "metric_points": 1, "max_snapshots": 0, "degeneracy_points": 2, "principal_directions": 1, "orbit_classes": 2,
            "orbit_images": 1, "orbit_angles": 2, "path_images": 1, "path_steps": 3, "probe_seeds": 1, "probe_train": 2,
            "probe_hidden": 1, "probe_linear_max_iter": 1, "probe_mlp_max_iter": 1, "whitening_anchors": 1, "whitening_rank": 1, "whitening_samples": 2, "seed": 0,
        }  # fmt: skip
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"analysis.{name} must be an int >= {low}, got {value!r}")
        for name, positive in (("rtol", True), ("probe_C", True), ("probe_alpha", False)):
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (value > 0 if positive else value >= 0)
            if not ok or (name != "probe_C" and not math.isfinite(value)):
                raise ValueError(f"analysis.{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
        if self.rtol >= 1:
            raise ValueError(f"analysis.rtol must be < 1, got {self.rtol!r}")
        if self.tangent_interpolation not in augment.INTERPOLATIONS:
            raise ValueError(
                f"analysis.tangent_interpolation must be one of {list(augment.INTERPOLATIONS)}, got {self.tangent_interpolation!r}"
            )
        if self.augmentations is not None:
            names = tuple(self.augmentations)
            bad = [n for n in names if n not in augment.PARAM_NAMES]
            if bad or not names or len(set(names)) != len(names):
                raise ValueError(
                    f"analysis.augmentations must be null or distinct names from {list(augment.PARAM_NAMES)}, got {list(names)}"
                )
            object.__setattr__(self, "augmentations", names)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AnalysisSettings:
        """Settings from a mapping (missing keys take their defaults).

        Raises:
            ValueError: On unknown keys or bad values.
        """
        return dataclass_from_mapping(cls, d, "analysis settings")

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), e.g. for JSON."""
        out = asdict(self)
        if out["augmentations"] is not None:
            out["augmentations"] = list(out["augmentations"])
        return out


def augmentation_ranges(cfg: augment.AugmentConfig) -> dict[str, float]:
    """Largest magnitude each continuous parameter takes in training (0 if it never varies).

    Crop contributions to ``log_scale``, ``tx`` and ``ty`` are not counted; ``log_aspect`` varies only
    through cropping.
    """
    crop = cfg.crop_scale != (1.0, 1.0)
    return {
        "angle": math.radians(cfg.rotation_deg),
        "tx": cfg.translate,
        "ty": cfg.translate,
        "log_scale": max(abs(math.log(v)) for v in cfg.scale),
        "brightness": max(abs(math.log(v)) for v in cfg.brightness),
        "contrast": max(abs(math.log(v)) for v in cfg.contrast),
        "noise": cfg.noise_std,
        "log_aspect": max(abs(math.log(v)) for v in cfg.crop_ratio) if crop else 0.0,
    }


# ------------------------------------------------------------------------------------------------
# loading


@dataclass
class _Run:
    config: dict[str, Any]
    model: SSLModel
    trained: nn.Module
    untrained: nn.Module
    dataset: ImageDataset
    tracking: dict[str, Tensor]
    snapshots: list[Path]
    aug: augment.AugmentConfig
    names: tuple[str, ...]
    ranges: dict[str, float]
    device: torch.device


def _frozen(module: nn.Module, device: torch.device) -> nn.Module:
    return module.to(device=device, dtype=torch.float64).eval().requires_grad_(False)


def _load(run_dir: Path, data_path: Path, settings: AnalysisSettings, device: torch.device) -> _Run:
    model_path = run_dir / "model.pt"
    model, config = load_model(model_path)
    model = _frozen(model, device)  # type: ignore[assignment]
    snapshots = sorted((run_dir / "snapshots").glob("step_*.pt"))
    if not snapshots:
        raise FileNotFoundError(f"{run_dir / 'snapshots'}: no step_*.pt snapshots")
    first = torch_load(snapshots[0])
    if int(first["step"]) != 0:
        raise ValueError(f"{snapshots[0]}: the first snapshot must be step 0 (the untrained head), got step {first['step']}")
    untrained = copy.deepcopy(model.projector)
    untrained.load_state_dict(first["projector"])
    aug = augment.AugmentConfig.from_dict(config["augment"])
    ranges = augmentation_ranges(aug)
    names = settings.augmentations if settings.augmentations is not None else tuple(n for n in augment.PARAM_NAMES if ranges[n] > 0)
    tracking = torch_load(run_dir / "snapshots" / "tracking.pt")
    return _Run(
        config=config,
        model=model,
        trained=model.projector,
        untrained=_frozen(untrained, device),
        dataset=load_dataset(data_path),
        tracking=tracking,
        snapshots=_select(snapshots, settings.max_snapshots),
        aug=aug,
        names=tuple(names),
        ranges=ranges,
        device=device,
    )


def _select(paths: list[Path], most: int) -> list[Path]:
    if most == 0 or len(paths) <= most:
        return paths
    if most == 1:
        return [paths[-1]]
    index = sorted({round(i * (len(paths) - 1) / (most - 1)) for i in range(most)})
    return [paths[i] for i in index]


def _rng(seed: int, purpose: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _PURPOSES[purpose], index])


def _torch_gen(seed: int, purpose: str) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(np.random.SeedSequence([seed, _PURPOSES[purpose]]).generate_state(1, np.uint64)[0] >> 1))
    return gen


def _head_at(template: nn.Module, state: Mapping[str, Tensor], device: torch.device) -> nn.Module:
    head = copy.deepcopy(template)
    head.load_state_dict(state)
    return _frozen(head, device)


@torch.no_grad()
def _encode(f: Callable[[Tensor], Tensor], x: Tensor, chunk: int = 1024) -> Tensor:
    return torch.cat([f(part) for part in x.split(chunk)])


def _images(run: _Run, array: np.ndarray) -> Tensor:
    return torch.as_tensor(array).to(device=run.device, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------
# parts


def _pullback(run: _Run, s: AnalysisSettings) -> dict[str, Any]:
    """Metric spectra and views degeneracy at each selected snapshot."""
    steps, spectra, views = [], [], []
    for path in run.snapshots:
        snap = torch_load(path)
        head = _head_at(run.trained, snap["projector"], run.device)
        z1_all = snap["z1"].to(device=run.device, dtype=torch.float64)
        z2_all = snap["z2"].to(device=run.device, dtype=torch.float64)
        n = min(s.metric_points, len(z1_all))
        z1, z2 = z1_all[:n], z2_all[:n]
        jacs = head_layer_jacobians(head, z1)
        with torch.no_grad():
            reps = [torch.cat([a, b]) for a, b in zip(head.layer_inputs(z1_all), head.layer_inputs(z2_all), strict=True)]
            delta = [b - a for a, b in zip(head.layer_inputs(z1), head.layer_inputs(z2), strict=True)]
        per_step, per_views = {}, {}
        for li, layer in enumerate(jacs):
            m = min(s.principal_directions, reps[li].shape[0] - 1, reps[li].shape[1])
            dirs = principal_directions(reps[li], m)
            for norm, (jac, metric) in layer.metrics().items():
                spec = spectrum(metric, rtol=s.rtol)
                q = rayleigh_quotient(jac, delta[li])
                per_step[layer.name, norm] = spec
                per_views[layer.name, norm] = {
                    "random": q / isotropic_reference(jac),
                    "principal": q / direction_reference(jac, dirs),
                    "position": spectrum_position(spec.eigenvalues, q, rtol=s.rtol),
                }
        steps.append(int(snap["step"]))
        spectra.append(per_step)
        views.append(per_views)
    return {"steps": steps, "spectra": spectra, "views": views, "layers": list(run.trained.layer_names)}


def _degeneracy(run: _Run, s: AnalysisSettings) -> dict[str, Any]:
    """Per-parameter tangents of clean images through the final backbone; trained and untrained head."""
    x = _images(run, run.tracking["x"].numpy())[: s.degeneracy_points]
    heads = {"trained": run.trained, "untrained": run.untrained}
    backbone = run.model.backbone
    eps = torch.randn(x.shape, generator=_torch_gen(s.seed, "noise"), dtype=torch.float64).to(run.device)
    noise = augment.AugmentNoise(flip=torch.ones(len(x), dtype=torch.float64, device=run.device), eps=eps)
    with torch.no_grad():
        z = backbone(x)
        inputs = {name: head.layer_inputs(z) for name, head in heads.items()}
    widths = {name: [t.shape[1] for t in inputs[name]] for name in heads}

    def stacked(images: Tensor) -> Tensor:
        zz = backbone(images)
        parts = [zz]
        for name in HEADS:
            parts.extend(heads[name].layer_inputs(zz)[1:])
        return torch.cat(parts, dim=1)

    raw = augmentation_tangents(
        stacked, x, run.names, noise=noise, interpolation=s.tangent_interpolation, padding_mode=run.aug.padding_mode
    )  # type: ignore[arg-type]
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, head in heads.items():
        jacs = head_layer_jacobians(head, z)
        for li, layer in enumerate(jacs):
            m = min(s.principal_directions, len(x) - 1, widths[name][li])
            dirs = principal_directions(inputs[name][li], m)
            for norm, (jac, metric) in layer.metrics().items():
                spec = spectrum(metric, rtol=s.rtol)
                refs = {"random": isotropic_reference(jac), "principal": direction_reference(jac, dirs)}
                per_aug = {}
                for aug_name, t in raw.items():
                    v = _slice_tangent(t, name, li, widths)
                    q = rayleigh_quotient(jac, v)
                    per_aug[aug_name] = {
                        "index": {ref: q / refs[ref] for ref in REFERENCES},
                        "position": spectrum_position(spec.eigenvalues, q, rtol=s.rtol),
                        "norm": torch.linalg.vector_norm(v, dim=1),
                    }
                out[name, layer.name, norm] = per_aug
    return {"layers": list(run.trained.layer_names), "values": out}


def _slice_tangent(t: Tensor, head: str, layer: int, widths: Mapping[str, list[int]]) -> Tensor:
    """The block of the stacked tangent ``[z, trained inputs[1:], untrained inputs[1:]]`` for (head, layer)."""
    if layer == 0:
        return t[:, : widths["trained"][0]]
    start = widths["trained"][0]
    if head == "untrained":
        start += sum(widths["trained"][1:])
    start += sum(widths[head][1:layer])
    return t[:, start : start + widths[head][layer]]


def _orbits(run: _Run, s: AnalysisSettings) -> dict[str, Any]:
    """Paper-convention orbit metrics of rotations (trained/untrained head, raw/normalised head input),
    and the 2-component PCA of every orbit row in z and h for the orbit figure."""
    ds = run.dataset
    rng = _rng(s.seed, "orbits")
    classes = np.unique(np.linspace(0, ds.classes - 1, s.orbit_classes).astype(int))
    chosen = []
    for c in classes:
        pool = np.flatnonzero(ds.y_test == c)
        if len(pool) < s.orbit_images:
            raise ValueError(f"analysis.orbit_images={s.orbit_images} but class {c} has only {len(pool)} test images")
        chosen.extend(rng.choice(pool, size=s.orbit_images, replace=False).tolist())
    x = _images(run, ds.x_test[np.asarray(chosen)])
    angles = torch.arange(s.orbit_angles, dtype=torch.float64) * (2.0 * math.pi / s.orbit_angles)
    with torch.no_grad():
        z = augmentation_path(
            run.model.backbone, x, "angle", angles, interpolation=run.aug.interpolation, padding_mode=run.aug.padding_mode
        )
    z = z.reshape(-1, z.shape[-1])  # rows: class -> image -> angle
    ids = np.repeat(np.arange(len(chosen)), s.orbit_angles)
    labels = np.repeat(ds.y_test[np.asarray(chosen)], s.orbit_angles)
    z_np = z.cpu().numpy()
    z_pca = orbit_pca(z_np)
    metrics, pca = {}, {}
    for head_name, head in (("trained", run.trained), ("untrained", run.untrained)):
        for head_input in HEAD_INPUTS:
            with torch.no_grad():
                h = head(z if head_input == "raw" else nn.functional.normalize(z, dim=1)).cpu().numpy()
            for conv in SPREAD_CONVENTIONS:
                metrics[head_name, head_input, conv] = orbit_metrics(z_np, h, ids, labels, spread=conv, eps=PAPER_EPS, normalize=True)  # type: ignore[arg-type]
            pca[head_name, head_input, "z"], pca[head_name, head_input, "h"] = z_pca, orbit_pca(h)
    angle_deg = np.tile(np.degrees(angles.numpy()), len(chosen))
    return {"metrics": metrics, "pca": pca, "ids": ids, "labels": labels, "angles": angle_deg}


def _paths(run: _Run, s: AnalysisSettings) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """Mean path curvatures of z and h per augmentation parameter (head fed raw z)."""
    ds = run.dataset
    rng = _rng(s.seed, "paths")
    idx = np.sort(rng.choice(len(ds.x_test), size=min(s.path_images, len(ds.x_test)), replace=False))
    x = _images(run, ds.x_test[idx])
    eps = torch.randn(x.shape, generator=_torch_gen(s.seed, "noise"), dtype=torch.float64).to(run.device)
    noise = augment.AugmentNoise(flip=torch.ones(len(x), dtype=torch.float64, device=run.device), eps=eps)
    out = {}
    for name in run.names:
        top = run.ranges[name] if run.ranges[name] > 0 else 1.0
        values = torch.linspace(0.0, top, s.path_steps, dtype=torch.float64)
        with torch.no_grad():
            z = augmentation_path(
                run.model.backbone, x, name, values, noise=noise, interpolation=run.aug.interpolation, padding_mode=run.aug.padding_mode
            )  # type: ignore[arg-type]
            curv_z = {k: float(v.mean()) for k, v in path_curvatures(z).items()}
            for head_name, head in (("trained", run.trained), ("untrained", run.untrained)):
                h = head(z.reshape(-1, z.shape[-1])).reshape(z.shape[0], z.shape[1], -1)
                curv_h = {k: float(v.mean()) for k, v in path_curvatures(h).items()}
                out[head_name, name] = {"z": curv_z, "h": curv_h}
    return out


def _probes(run: _Run, s: AnalysisSettings) -> dict[tuple[str, str, str], Any]:
    """Linear and MLP probes on z and h(z) (trained head, raw z) for the rotation class and the label."""
    ds = run.dataset
    pool_rng = _rng(s.seed, "probe_pool")
    n_pool = min(len(ds.x_train), 2 * s.probe_train)
    train_idx = np.sort(pool_rng.choice(len(ds.x_train), size=n_pool, replace=False))
    test_idx = np.sort(pool_rng.choice(len(ds.x_test), size=min(len(ds.x_test), 2 * s.probe_train), replace=False))
    y_train, y_test = ds.y_train[train_idx], ds.y_test[test_idx]
    features: dict[str, dict[str, np.ndarray]] = {"z": {}, "h": {}}
    for split, images in (("train", ds.x_train[train_idx]), ("test", ds.x_test[test_idx])):
        turns = quarter_turns(_images(run, images))  # (4, N, C, H, W)
        z = _encode(run.model.backbone, turns.reshape(-1, *turns.shape[2:]))
        h = _encode(run.trained, z)
        features["z"][split] = z.reshape(4, len(images), -1).cpu().numpy()
        features["h"][split] = h.reshape(4, len(images), -1).cpu().numpy()
    seeds = list(range(s.probe_seeds))
    options = {
        "linear": {"C": s.probe_C, "max_iter": s.probe_linear_max_iter},
        "mlp": {"hidden": s.probe_hidden, "alpha": s.probe_alpha, "max_iter": s.probe_mlp_max_iter},
    }
    out = {}
    for space in SPACES:
        f = features[space]

        def rotation(seed: int, f: dict[str, np.ndarray] = f) -> Any:
            return rotation_split(f["train"], f["test"], _rng(s.seed, "probe", seed), n_train=s.probe_train)

        def label(seed: int, f: dict[str, np.ndarray] = f) -> Any:
            rng = _rng(s.seed, "probe", seed)
            idx = np.sort(rng.choice(n_pool, size=min(n_pool, s.probe_train), replace=False))
            return f["train"][0, idx], y_train[idx], f["test"][0], y_test

        for target, split_fn in (("rotation", rotation), ("label", label)):
            for kind in PROBES:
                out[kind, target, space] = probe_over_seeds(kind, split_fn, seeds, **options[kind])  # type: ignore[arg-type]
    return out


def _view_loss(run: _Run, x1: Tensor, x2: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """The run's loss as a function of the view-1 projector outputs (view 2 fixed), and those outputs."""
    model, config = run.model, run.config
    name, settings = config["run"]["loss"], config["loss_settings"]
    with torch.no_grad():
        h1 = model.projector(model.backbone(x1))
        fixed: dict[str, Tensor] = {"h2": model.projector(model.backbone(x2))}
        if model.predictor is not None:
            fixed["p2"] = model.predictor(fixed["h2"])
        if model.ema_momentum is not None:
            fixed["t1"] = model.target_projector(model.target_backbone(x1))
            fixed["t2"] = model.target_projector(model.target_backbone(x2))

    def loss(h: Tensor) -> Tensor:
        out = dict(fixed)
        out["h1"] = h
        if model.predictor is not None:
            out["p1"] = model.predictor(h)
        return ssl_loss(name, out, **settings)

    return loss, h1


def _whitening(run: _Run, s: AnalysisSettings) -> Any:
    """Whitening report of a linear head (None for other activations)."""
    if run.config["run"]["activation"] != "linear":
        return None
    d = run.model.projector.in_dim
    weight = affine_jacobian(run.trained, d, device=run.device, generator=_torch_gen(s.seed, "covariance"))
    x1 = _images(run, run.tracking["x1"].numpy())
    x2 = _images(run, run.tracking["x2"].numpy())
    loss, h1 = _view_loss(run, x1, x2)
    basis = range_basis(weight, s.rtol)
    anchors = list(range(min(s.whitening_anchors, len(h1))))
    hessians = anchor_loss_hessians(loss, h1, anchors, scale=float(len(h1)), basis=basis)
    n = max(s.whitening_samples, 2 * d + 1)
    gen = _torch_gen(s.seed, "covariance")
    idx = torch.randint(len(run.dataset.x_train), (n,), generator=gen)
    images = _images(run, run.dataset.x_train[idx.numpy()])
    params, noise = augment.sample_params(run.aug, n, gen, image_shape=run.dataset.image_shape, dtype=torch.float64)
    views = augment.apply(images, {k: v.to(run.device) for k, v in params.items()},
                          augment.AugmentNoise(noise.flip.to(run.device), noise.eps.to(run.device)),
                          interpolation=run.aug.interpolation, padding_mode=run.aug.padding_mode, clamp=run.aug.clamp)  # fmt: skip
    z = _encode(run.model.backbone, views)
    rank = min(s.whitening_rank, d, basis.shape[1])
    return whitening_report(weight, hessians, z, rank, basis=basis)


# ------------------------------------------------------------------------------------------------
# dataset


def _to_dataset(run: _Run, s: AnalysisSettings, parts: Mapping[str, Any], wall: Mapping[str, float]) -> xr.Dataset:
    layers = parts["pullback"]["layers"]
    steps = parts["pullback"]["steps"]
    width = max(spec.eigenvalues.shape[1] for spec in parts["pullback"]["spectra"][0].values())
    n_norm, n_ref = len(NORMALIZATIONS), len(REFERENCES)

    def mean(t: Tensor) -> float:
        return float(torch.nanmean(t))

    eig = np.full((len(steps), len(layers), n_norm, width), np.nan)
    eff, rank, cond, trace = (np.full((len(steps), len(layers), n_norm), np.nan) for _ in range(4))
    views = np.full((len(steps), len(layers), n_norm, n_ref), np.nan)
    views_pos = np.full((len(steps), len(layers), n_norm), np.nan)
    for i, (spectra, vws) in enumerate(zip(parts["pullback"]["spectra"], parts["pullback"]["views"], strict=True)):
        for j, layer in enumerate(layers):
            for k, norm in enumerate(NORMALIZATIONS):
                spec = spectra[layer, norm]
                lam = spec.eigenvalues.mean(dim=0).cpu().numpy()
                eig[i, j, k, : len(lam)] = lam
                eff[i, j, k] = mean(spec.effective_rank)
                rank[i, j, k] = float(spec.rank.double().mean())
                cond[i, j, k] = float(torch.nanmedian(spec.condition_number))
                trace[i, j, k] = mean(spec.trace)
                for r, ref in enumerate(REFERENCES):
                    views[i, j, k, r] = mean(vws[layer, norm][ref])
                views_pos[i, j, k] = mean(vws[layer, norm]["position"])

    names = list(run.names)
    deg_shape = (len(HEADS), len(layers), n_norm, len(names), n_ref)
    deg, deg_sem = np.full(deg_shape, np.nan), np.full(deg_shape, np.nan)
    pos = np.full(deg_shape[:-1], np.nan)
    tnorm = np.full((len(HEADS), len(layers), len(names)), np.nan)
    for (head, layer, norm), per_aug in parts["degeneracy"]["values"].items():
        a, b, c = HEADS.index(head), layers.index(layer), NORMALIZATIONS.index(norm)
        for e, aug_name in enumerate(names):
            item = per_aug[aug_name]
            for r, ref in enumerate(REFERENCES):
                values = item["index"][ref]
                deg[a, b, c, e, r] = mean(values)
                finite = values[~torch.isnan(values)]
                deg_sem[a, b, c, e, r] = float(finite.std() / math.sqrt(len(finite))) if len(finite) > 1 else np.nan
            pos[a, b, c, e] = mean(item["position"])
            tnorm[a, b, e] = mean(item["norm"])

    n_hi, n_sp, n_conv = len(HEAD_INPUTS), len(SPACES), len(SPREAD_CONVENTIONS)
    spread, spread_std = np.full((len(HEADS), n_hi, n_sp, n_conv), np.nan), np.full((len(HEADS), n_hi, n_sp, n_conv), np.nan)
    orbit = {
        key: np.full((len(HEADS), n_hi, n_sp), np.nan) for key in ("d_intra", "d_intra_std", "d_inter", "d_inter_std", "ratio", "ratio_std")
    }
    compression = np.full((len(HEADS), n_hi, n_conv), np.nan)
    for (head, head_input, conv), m in parts["orbits"]["metrics"].items():
        a, b, c = HEADS.index(head), HEAD_INPUTS.index(head_input), SPREAD_CONVENTIONS.index(conv)
        compression[a, b, c] = m.compression
        for sp, stats in (("z", m.z), ("h", m.h)):
            k = SPACES.index(sp)
            spread[a, b, k, c], spread_std[a, b, k, c] = stats.spread, stats.spread_std
            for key in orbit:
                orbit[key][a, b, k] = getattr(stats, key)

    points = parts["orbits"]
    n_points = len(points["ids"])
    pca = np.full((len(HEADS), n_hi, n_sp, n_points, 2), np.nan)
    pca_var = np.full((len(HEADS), n_hi, n_sp, 2), np.nan)
    for (head, head_input, sp), (coords, explained) in points["pca"].items():
        a, b, k = HEADS.index(head), HEAD_INPUTS.index(head_input), SPACES.index(sp)
        pca[a, b, k, :, : coords.shape[1]], pca_var[a, b, k, : len(explained)] = coords, explained

    curv = np.full((len(HEADS), len(names), n_sp, len(CURVATURES)), np.nan)
    for (head, aug_name), per_space in parts["paths"].items():
        for k, sp in enumerate(SPACES):
            for c, method in enumerate(CURVATURES):
                curv[HEADS.index(head), names.index(aug_name), k, c] = per_space[sp][method]
    with np.errstate(divide="ignore", invalid="ignore"):
        curv_ratio = curv[:, :, 1, :] / curv[:, :, 0, :]

    n_seeds = s.probe_seeds
    acc = np.full((len(PROBES), len(TARGETS), n_sp, n_seeds), np.nan)
    conv_flag = np.zeros(acc.shape, dtype=np.int8)
    acc_mean, ci_low, ci_high = (np.full(acc.shape[:-1], np.nan) for _ in range(3))
    for (kind, target, sp), res in parts["probes"].items():
        a, b, c = PROBES.index(kind), TARGETS.index(target), SPACES.index(sp)
        acc[a, b, c], conv_flag[a, b, c] = res.accuracy, res.converged.astype(np.int8)
        acc_mean[a, b, c], ci_low[a, b, c], ci_high[a, b, c] = res.mean, res.ci_low, res.ci_high

    rep = parts["whitening"]
    r = s.whitening_rank
    heff_eig, hl_eig = np.full(r, np.nan), np.full(r, np.nan)
    white = dict.fromkeys(("heff_condition", "hl_condition", "metric_condition", "data_condition", "metric_alignment"), np.nan)
    if rep is not None:
        heff_eig[: rep.rank], hl_eig[: rep.rank] = rep.heff_eigenvalues, rep.hl_eigenvalues
        white = {key: getattr(rep, key) for key in white}

    a_ = attrs
    steps_dims = ("step", "layer", "normalization")
    deg_dims = ("head", "layer", "normalization", "augmentation", "reference")
    orbit_dims = ("head", "head_input", "space")
    probe_dims = ("probe", "target", "space")
    lin = "; NaN unless the head is linear"
    data_vars = {
        "metric_eigenvalue": (
            steps_dims + ("eig_index",),
            eig,
            a_(
                "eigenvalue of the head's pullback metric G = J^T J (mean over points of the i-th largest)",
                "1",
                comment="NaN beyond the layer's width",
            ),
        ),
        "metric_effective_rank": (steps_dims, eff, a_("effective rank exp(H(p)) of the pullback metric, mean over points", "1")),
        "metric_rank": (
            steps_dims,
            rank,
            a_("numerical rank of the pullback metric (eigenvalues > rtol * largest), mean over points", "1"),
        ),
        "metric_condition_number": (
            steps_dims,
            cond,
            a_("condition number of the pullback metric over its numerically nonzero spectrum, median over points", "1"),
        ),
        "metric_trace": (steps_dims, trace, a_("trace of the pullback metric (squared Frobenius norm of J), mean over points", "1")),
        "views_degeneracy": (
            steps_dims + ("reference",),
            views,
            a_(
                "degeneracy index ||J d||^2/||d||^2 / reference of the secant d = z2 - z1 between the two tracking views, mean over points",
                "1",
            ),
        ),
        "views_spectrum_position": (
            steps_dims,
            views_pos,
            a_("fraction of pullback-metric eigenvalues below the Rayleigh quotient of d = z2 - z1, mean over points", "1"),
        ),
        "degeneracy": (
            deg_dims,
            deg,
            a_(
                "degeneracy index ||J v||^2/||v||^2 / reference of the augmentation tangent v at xi = 0, mean over points (final backbone)",
                "1",
            ),
        ),
        "degeneracy_sem": (deg_dims, deg_sem, a_("standard error over points of the degeneracy index", "1")),
        "spectrum_position": (
            deg_dims[:-1],
            pos,
            a_("fraction of pullback-metric eigenvalues below the Rayleigh quotient of the augmentation tangent, mean over points", "1"),
        ),
        "tangent_norm": (
            ("head", "layer", "augmentation"),
            tnorm,
            a_("norm of the augmentation tangent at the layer, mean over points", "1", comment=_TANGENT_UNITS),
        ),
        "orbit_spread": (
            orbit_dims + ("spread_convention",),
            spread,
            a_("mean orbit spread: mean over orbits of the mean squared distance to the orbit centroid (L2-normalised rows)", "1"),
        ),
        "orbit_spread_std": (orbit_dims + ("spread_convention",), spread_std, a_("std over orbits of the orbit spread", "1")),
        "orbit_d_intra": (orbit_dims, orbit["d_intra"], a_("D_intra: mean within-orbit pairwise distance, mean over orbits", "1")),
        "orbit_d_intra_std": (orbit_dims, orbit["d_intra_std"], a_("std over orbits of D_intra", "1")),
        "orbit_d_inter": (orbit_dims, orbit["d_inter"], a_("D_inter: mean pairwise distance between class centroids", "1")),
        "orbit_d_inter_std": (orbit_dims, orbit["d_inter_std"], a_("std over class pairs of D_inter", "1")),
        "orbit_ratio": (orbit_dims, orbit["ratio"], a_("class/orbit ratio D_inter / (D_intra + 1e-10)", "1")),
        "orbit_ratio_std": (orbit_dims, orbit["ratio_std"], a_("naive error propagation of the class/orbit ratio", "1")),
        "orbit_compression": (
            ("head", "head_input", "spread_convention"),
            compression,
            a_("orbit compression: spread_z / (spread_h + 1e-10)", "1"),
        ),
        "orbit_pca": (
            orbit_dims + ("orbit_point", "pc"),
            pca,
            a_("principal-component coordinates of the L2-normalised orbit rows (sklearn PCA, random_state 42)", "1"),
        ),
        "orbit_pca_explained": (
            orbit_dims + ("pc",),
            pca_var,
            a_("fraction of the variance of the L2-normalised orbit rows explained by the component", "1"),
        ),
        "path_curvature": (
            ("head", "augmentation", "space", "curvature"),
            curv,
            a_(
                "curvature of the augmentation path (L2-normalised rows), mean over interior points and images",
                "1",
                comment="second_difference: dimensionless; turning, menger: per unit distance on the unit sphere",
            ),
        ),
        "path_curvature_ratio": (
            ("head", "augmentation", "curvature"),
            curv_ratio,
            a_("path curvature of h over that of z (ratio of the means over images)", "1"),
        ),
        "probe_accuracy": (probe_dims + ("probe_seed",), acc, a_("test accuracy of the probe", "1")),
        "probe_converged": (
            probe_dims + ("probe_seed",),
            conv_flag,
            a_("probe optimiser converged within its iteration budget", "1", flag_values="0 1", flag_meanings="no yes"),
        ),
        "probe_accuracy_mean": (probe_dims, acc_mean, a_("test accuracy of the probe, mean over seeds", "1")),
        "probe_accuracy_ci_low": (probe_dims, ci_low, a_("lower end of the 95% Student-t interval of the probe accuracy over seeds", "1")),
        "probe_accuracy_ci_high": (
            probe_dims,
            ci_high,
            a_("upper end of the 95% Student-t interval of the probe accuracy over seeds", "1"),
        ),
        "whitening_heff_eigenvalue": (
            ("whitening_eig_index",),
            heff_eig,
            a_("top eigenvalues of W^T H_L+ W on the loss-relevant subspace" + lin, "1"),
        ),
        "whitening_hl_eigenvalue": (
            ("whitening_eig_index",),
            hl_eig,
            a_("top eigenvalues of the positive part of the mean loss Hessian on the head's range" + lin, "1"),
        ),
        "whitening_heff_condition": (
            (),
            white["heff_condition"],
            a_("condition number lambda_1/lambda_r of the effective Hessian W^T H_L+ W" + lin, "1"),
        ),
        "whitening_hl_condition": (
            (),
            white["hl_condition"],
            a_("condition number lambda_1/lambda_r of the loss Hessian H_L+ on the head's range" + lin, "1"),
        ),
        "whitening_metric_condition": (
            (),
            white["metric_condition"],
            a_("condition number of C_S^1/2 (W^T W)_S C_S^1/2 on the loss-relevant subspace S (1 = whitening)" + lin, "1"),
        ),
        "whitening_data_condition": ((), white["data_condition"], a_("condition number of the backbone covariance on S" + lin, "1")),
        "whitening_metric_alignment": (
            (),
            white["metric_alignment"],
            a_("Frobenius cosine between (W^T W)_S and the inverse backbone covariance on S" + lin, "1"),
        ),
        "wall_time": (("part",), np.array([wall.get(p, np.nan) for p in PARTS]), a_("wall-clock time of the analysis part", "s")),
    }
    coords = {
        "step": ("step", np.asarray(steps, dtype=np.int64), a_("optimiser updates applied (snapshot step)", "1")),
        "layer": ("layer", layers, a_("head layer: z = backbone output, blockK = input of head block K", "1")),
        "normalization": ("normalization", list(NORMALIZATIONS), a_("head output as the loss sees it: none = h, l2 = h/||h||", "1")),
        "eig_index": ("eig_index", np.arange(width), a_("eigenvalue index (0 = largest)", "1")),
        "head": ("head", list(HEADS), a_("projector analysed: trained = final, untrained = step 0 (control)", "1")),
        "augmentation": ("augmentation", names, a_("continuous augmentation parameter (geomhead.augment.PARAM_NAMES)", "1")),
        "reference": (
            "reference",
            list(REFERENCES),
            a_(
                "reference directions of the degeneracy index: random = isotropic (tr G / d), principal = top principal data directions",
                "1",
            ),
        ),
        "head_input": (
            "head_input",
            list(HEAD_INPUTS),
            a_("what the head is fed in the orbit experiment: raw z (training) or z/||z|| (the paper's orbits)", "1"),
        ),
        "space": ("space", list(SPACES), a_("representation: z = backbone output, h = head output", "1")),
        "spread_convention": (
            "spread_convention",
            list(SPREAD_CONVENTIONS),
            a_("orbit spread summed over dimensions (total, the paper's) or divided by the dimension (per_dim)", "1"),
        ),
        "orbit_point": ("orbit_point", np.arange(n_points), a_("row of the orbit experiment: class -> image -> angle", "1")),
        "orbit_id": ("orbit_point", np.asarray(points["ids"], dtype=np.int64), a_("orbit (test image) of the row", "1")),
        "orbit_label": ("orbit_point", np.asarray(points["labels"], dtype=np.int64), a_("class of the row's image", "1")),
        "orbit_angle": ("orbit_point", np.asarray(points["angles"], dtype=np.float64), a_("rotation angle of the row", "degree")),
        "pc": ("pc", np.arange(2), a_("principal component (0 = largest variance)", "1")),
        "curvature": (
            "curvature",
            list(CURVATURES),
            a_("discrete curvature: the paper's second difference, turning angle per arc length, Menger", "1"),
        ),
        "probe": ("probe", list(PROBES), a_("probe: linear = logistic regression, mlp = one hidden ReLU layer", "1")),
        "target": ("target", list(TARGETS), a_("probe target: rotation = quarter turn k in 0..3, label = class", "1")),
        "probe_seed": ("probe_seed", np.arange(n_seeds), a_("probe seed (training subset, rotations, MLP initialisation)", "1")),
        "whitening_eig_index": (
            "whitening_eig_index",
            np.arange(r),
            a_("eigenvalue index on the loss-relevant subspace (0 = largest)", "1"),
        ),
        "part": ("part", list(PARTS), a_("part of the analysis", "1")),
    }
    ds = xr.Dataset(data_vars, coords=coords)
    run_cfg = run.config["run"]
    ds.attrs = provenance(
        f"geomhead projection-head geometry of run {run_cfg['id']}",
        run_json=json.dumps({k: run_cfg[k] for k in _RUN_KEYS}),
        config_json=json.dumps(run.config, sort_keys=True),
        analysis_json=json.dumps(s.as_dict(), sort_keys=True),
    )
    return ds


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def geometry_of_run(
    run_dir: str | Path,
    data_path: str | Path,
    *,
    settings: AnalysisSettings | Mapping[str, Any] | None = None,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> xr.Dataset:
    """Analyse one finished run (see the module docstring for what is measured and where).

    Args:
        run_dir: The run's output folder (``model.pt``, ``snapshots/``).
        data_path: The prepared dataset (``.npz``) the run was trained on.
        settings: :class:`AnalysisSettings` or a mapping of its fields (params.yaml ``analysis:``).
        threads: CPU threads for torch and BLAS (``None``: leave as is).
        device: Where to compute (float64 everywhere).

    Returns:
        The per-run geometry Dataset.

    Raises:
        FileNotFoundError: If the model, snapshots or dataset are missing.
        ValueError: On bad settings.
    """
    s = settings if isinstance(settings, AnalysisSettings) else AnalysisSettings.from_dict(settings)
    run_dir, data_path = Path(run_dir), Path(data_path)
    wall: dict[str, float] = {}
    parts: dict[str, Any] = {}
    with _threads(threads):
        t0 = time.perf_counter()
        run = _load(run_dir, data_path, s, torch.device(device))
        wall["load"] = time.perf_counter() - t0
        for name, fn in (
            ("pullback", _pullback),
            ("degeneracy", _degeneracy),
            ("orbits", _orbits),
            ("paths", _paths),
            ("probes", _probes),
            ("whitening", _whitening),
        ):
            t = time.perf_counter()
            parts[name] = fn(run, s)
            wall[name] = time.perf_counter() - t
    return _to_dataset(run, s, parts, wall)


# ------------------------------------------------------------------------------------------------
# headline numbers


def _number(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _loss_name(ds: xr.Dataset) -> str:
    if "loss" in ds.coords:
        return str(ds["loss"].values)
    return str(json.loads(ds.attrs["run_json"])["loss"])


def _headline_one(ds: xr.Dataset) -> dict[str, float | None]:
    z_l2 = {"layer": "z", "normalization": LOSS_NORMALIZATION.get(_loss_name(ds), "l2")}
    deg = ds["degeneracy"].sel(**z_l2, reference="random")
    out: dict[str, float | None] = {
        "degeneracy_trained": _number(deg.sel(head="trained").mean()),
        "degeneracy_untrained": _number(deg.sel(head="untrained").mean()),
        "views_degeneracy_final": _number(ds["views_degeneracy"].sel(**z_l2, reference="random").isel(step=-1)),
        "metric_effective_rank_initial": _number(ds["metric_effective_rank"].sel(**z_l2).isel(step=0)),
        "metric_effective_rank_final": _number(ds["metric_effective_rank"].sel(**z_l2).isel(step=-1)),
        "orbit_compression": _number(ds["orbit_compression"].sel(head="trained", head_input="normalized", spread_convention="total")),
        "orbit_compression_untrained": _number(
            ds["orbit_compression"].sel(head="untrained", head_input="normalized", spread_convention="total")
        ),
        "path_curvature_ratio": _number(ds["path_curvature_ratio"].sel(head="trained", curvature="second_difference").mean()),
        "path_turning_ratio": _number(ds["path_curvature_ratio"].sel(head="trained", curvature="turning").mean()),
    }
    for target in TARGETS:
        for kind in PROBES:
            for space in SPACES:
                out[f"probe_{target}_{kind}_{space}"] = _number(ds["probe_accuracy_mean"].sel(probe=kind, target=target, space=space))
    for key in ("metric_condition", "heff_condition", "hl_condition"):
        out[f"whitening_{key}"] = _number(ds[f"whitening_{key}"])
    out["wall_time_s"] = _number(ds["wall_time"].sum())
    return out


def headline(ds: xr.Dataset) -> dict[str, Any]:
    """A few numbers for a DVC metrics JSON (NaN becomes ``None``).

    For a per-run Dataset: degeneracy of the trained and untrained head (layer z, the normalisation
    the run's loss applies (:data:`LOSS_NORMALIZATION`), random reference, mean over augmentations),
    the final views degeneracy and the effective rank of the pullback metric at the first and last
    snapshot (same layer and normalisation), the orbit compression (paper convention) of
    the trained and untrained head, the path-curvature ratios h/z, every probe's mean accuracy, the
    whitening condition numbers and the analysis wall time. For a combined cube (``config`` dim):
    ``{run id: that dict}``.
    """
    if "config" in ds.dims:
        return {str(c): _headline_one(ds.sel(config=c)) for c in ds["config"].values}
    return _headline_one(ds)
