r"""Every figure of the paper, drawn only from the combined cubes (never from training state).

Each figure is a function of the cubes it names in :data:`FIGURES` and returns the matplotlib
figure and, for the figures DVC compares across experiments, a wide table (``step`` plus one column
per activation, :data:`TABLE_COLUMNS`) for ``results/plots/{name}.csv``. Runs are chosen only through
:mod:`geomhead.selection`: curves are seed means with a min–max band over seeds; the main comparisons
use each loss's base setting, the ablation figures the runs that vary BatchNorm, learning rate or
depth. A panel whose runs are not in the configuration says so instead of staying blank.

Definitions (units in the axis labels):

* normalised std: ``proj_std / proj_std[step 0]`` per run (the paper's Fig. 1 y-axis);
* Hessian tracker: the bottom eigenvalue :math:`\lambda_{\min}` of :math:`H_{\text{eff}} = G + M`,
  :math:`G` and :math:`M` (layer z, batch operator), under a loss-Hessian reading;
* :math:`\|M\|_F/\|H_{\text{eff}}\|_F` of the batch operator;
* timescale ratio: relative update :math:`\|\Delta w\|/\|w\|` of the projector over the backbone's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geomhead import selection as sel
from geomhead.style import (
    FULL_WIDTH,
    INIT_STYLES,
    TERM_COLORS,
    band,
    color,
    empty_panel,
    legend_below,
    plain_log,
    pyplot,
    save,
)

__all__ = ["FIGURES", "TABLE_COLUMNS", "Figure", "draw", "normalized_std_curves", "primary", "render"]

TABLE_COLUMNS: tuple[str, ...] = ("step", *sel.ACTIVATIONS)
"""Columns of ``results/plots/{name}.csv`` (fixed, so DVC can compare experiments)."""

_LINE_STYLES = ("-", "--", ":", "-.")
_EXACT_ZERO = 1e-18
_READING_LABEL = {"mse": r"MSE premise ($H_L = I$)", "ambient": "ambient (the loss itself)", "tangential": r"tangential ($P H_L P$)"}


def _mean(a: Any, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def normalized_std_curves(cube: xr.Dataset) -> xr.DataArray:
    r"""``proj_std`` divided by its value at the first logged step, per config (the paper's y-axis)."""
    std = cube["proj_std"]
    return std / std.isel(step=0)


def primary(cube: xr.Dataset) -> dict[str, Any]:
    """The paper's Experiment-1 setting as far as the cube has it: SimSiam from a collapsed init at
    its base setting (else the first loss, the first init)."""
    loss = sel.prefer(cube, "loss", "simsiam")
    init = sel.prefer(sel.select(cube, loss=loss), "init", "collapsed")
    return {"loss": loss, "init": init, **sel.base_setting(cube, loss)}


def _label(setting: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    parts = []
    for key in keys:
        v = setting[key]
        if key == "batchnorm":
            parts.append("BN" if v else "no BN")
        elif key == "lr":
            parts.append(f"lr {float(v):g}")
        elif key == "depth":
            parts.append(f"depth {v}")
        else:
            parts.append(str(v))
    return ", ".join(parts)


def _activation_bands(
    ax: Any, steps: np.ndarray, runs: xr.Dataset, values: Callable[[xr.Dataset], np.ndarray], floor: float | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """One band per (activation, init) of ``runs`` (colour = activation, dashes = init); returns the
    seed means as ``{init: {activation: curve}}``."""
    means: dict[str, dict[str, np.ndarray]] = {}
    for i, (s, group) in enumerate(sel.groups(runs, ("activation", "init"))):
        y = values(group)
        shown = y if floor is None else np.maximum(y, floor)
        band(
            ax,
            steps,
            shown,
            color=color(s["activation"], i),
            style=INIT_STYLES.get(s["init"], "-"),
            label=_label(s, ("activation", "init")),
        )
        means.setdefault(s["init"], {})[s["activation"]] = _mean(y, axis=0)
    return means


def _curve_table(steps: np.ndarray, curves: Mapping[str, np.ndarray]) -> pd.DataFrame:
    table = pd.DataFrame({"step": steps})
    for act in sel.ACTIVATIONS:
        table[act] = curves.get(act, np.full(len(steps), np.nan))
    return table[list(TABLE_COLUMNS)]


# --------------------------------------------------------------------------------------- collapse


def collapse(dynamics: xr.Dataset) -> tuple[Any, pd.DataFrame]:
    """Normalised representation std over steps: one panel per loss (base setting), one line per
    activation and init, min–max band over seeds (log y)."""
    plt = pyplot()
    losses = sel.losses(dynamics)
    fig, axes = plt.subplots(1, len(losses), figsize=(min(FULL_WIDTH, 2.3 * len(losses) + 0.4), 2.1), squeeze=False, sharey=True)
    curves = normalized_std_curves(dynamics)
    steps = dynamics["step"].values
    main = primary(dynamics)
    table: dict[str, np.ndarray] = {}
    for ax, loss in zip(axes[0], losses, strict=True):
        runs = sel.base(dynamics, loss)
        means = _activation_bands(ax, steps, runs, lambda g: curves.sel(config=g["config"].values).values)
        if loss == main["loss"]:
            table.update(means.get(main["init"], {}))
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.75", lw=0.6, zorder=0)
        ax.set_title(f"{loss} ({_label(sel.base_setting(dynamics, loss), ('depth', 'lr'))})")
        ax.set_xlabel("optimiser step")
    axes[0][0].set_ylabel("representation std / std at step 0")
    legend_below(fig)
    return fig, _curve_table(steps, table)


def collapse_ablation(dynamics: xr.Dataset) -> tuple[Any, None]:
    """Normalised std for the runs that vary BatchNorm (left) and learning rate (right): colour =
    activation, line style = variant; min–max band over seeds."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.2), sharey=True)
    curves = normalized_std_curves(dynamics)
    steps = dynamics["step"].values
    for ax, key in zip(axes, ("batchnorm", "lr"), strict=True):
        others = tuple(k for k in ("depth", "batchnorm", "lr") if k != key)
        drawn = 0
        for loss in sel.losses(dynamics):
            fixed = {k: v for k, v in sel.base_setting(dynamics, loss).items() if k in others}
            runs = sel.select(dynamics, loss=loss, **fixed)
            for i, (s, group) in enumerate(sel.groups(runs, ("activation", "init"))):
                variants = sel.values(group, key)
                if len(variants) < 2:
                    continue
                for j, v in enumerate(variants):
                    y = curves.sel(config=sel.select(group, **{key: v})["config"].values).values
                    label = f"{loss}, {_label(s, ('activation', 'init'))}, {_label({key: v}, (key,))}"
                    band(ax, steps, y, color=color(s["activation"], i), style=_LINE_STYLES[j % len(_LINE_STYLES)], label=label)
                    drawn += 1
        title = {"batchnorm": "BatchNorm in the head", "lr": "learning rate"}[key]
        if drawn == 0:
            empty_panel(ax, f"no runs vary the {title} in this configuration")
        else:
            ax.set_yscale("log")
            ax.axhline(1.0, color="0.75", lw=0.6, zorder=0)
            ax.set_xlabel("optimiser step")
        ax.set_title(title)
    axes[0].set_ylabel("representation std / std at step 0")
    legend_below(fig, ncols=3)
    return fig, None


def spectrum(dynamics: xr.Dataset) -> tuple[Any, None]:
    """Effective rank (top) and condition number (bottom) of the covariance of the normalised
    projector outputs over steps, per loss (base setting), per activation and init."""
    plt = pyplot()
    losses = sel.losses(dynamics)
    fig, axes = plt.subplots(2, len(losses), figsize=(min(FULL_WIDTH, 2.3 * len(losses) + 0.4), 3.6), squeeze=False, sharex=True)
    steps = dynamics["step"].values
    rows = (("proj_effective_rank", "effective rank exp H(p)", "linear"), ("proj_condition_number", "condition number λ1/λmin>0", "log"))
    for col, loss in enumerate(losses):
        runs = sel.base(dynamics, loss)
        for row, (var, ylabel, scale) in enumerate(rows):
            ax = axes[row][col]
            _activation_bands(ax, steps, runs, lambda g, var=var: g[var].values)
            ax.set_yscale(scale)
            if col == 0:
                ax.set_ylabel(ylabel)
            if row == 0:
                ax.set_title(loss)
            else:
                ax.set_xlabel("optimiser step")
    legend_below(fig)
    return fig, None


# -------------------------------------------------------------------------------------- curvature


def pick_reading(curvature: xr.Dataset, *preferred: str, var: str = "eigenvalue") -> str:
    """The first preferred reading with any finite ``var`` in these runs (coupled losses such as
    VICReg have only the ambient reading)."""
    present = [str(r) for r in curvature["reading"].values]
    for r in (*preferred, *present):
        if r in present and bool(np.isfinite(curvature[var].sel(reading=r).values).any()):
            return r
    return next((r for r in preferred if r in present), present[0])


def m_ratio_of(curvature: xr.Dataset, reading: str, layer: str = "z") -> tuple[xr.DataArray, str]:
    r""":math:`\|M\|_F/\|H_{\text{eff}}\|_F` where the operator was exact, else the spectral ratio
    :math:`\max|\lambda(M)|/\max|\lambda(H_{\text{eff}})|` (Lanczos path); returns the values and which."""
    fro = curvature["m_ratio"].sel(reading=reading, layer=layer)
    if bool(np.isfinite(fro.values).any()):
        return fro, "Frobenius"
    return curvature["m_spectral_ratio"].sel(reading=reading, layer=layer), "spectral"


def _bottom(curvature: xr.Dataset, term: str, reading: str, layer: str = "z") -> xr.DataArray:
    return curvature["eigenvalue"].sel(term=term, reading=reading, layer=layer, end="bottom", eig_index=0)


def hessian(curvature: xr.Dataset, dynamics: xr.Dataset) -> tuple[Any, pd.DataFrame]:
    r"""The Hessian tracker: bottom eigenvalue of :math:`H_{\text{eff}}`, :math:`G`, :math:`M` over
    steps (layer z) per activation, for the primary setting, one row per reading (MSE premise, then
    ambient); representation std on a twin axis (grey, log)."""
    plt = pyplot()
    main = primary(curvature)
    runs = sel.select(curvature, **main)
    acts = sel.values(runs, "activation") or ["(none)"]
    readings = [r for r in ("mse", "ambient") if r in [str(x) for x in curvature["reading"].values]] or [pick_reading(curvature)]
    fig, axes = plt.subplots(
        len(readings), len(acts), figsize=(FULL_WIDTH, 1.9 * len(readings) + 0.6), squeeze=False, sharex=True, sharey="row"
    )
    steps = curvature["step"].values
    table: dict[str, np.ndarray] = {}
    for row, reading in enumerate(readings):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = float(np.nanmax(np.abs(_bottom(runs, "H_eff", reading).values))) if runs.sizes["config"] else np.nan
        linthresh = max(scale * 1e-5, 1e-12) if np.isfinite(scale) and scale > 0 else 1e-8
        for col, act in enumerate(acts):
            ax = axes[row][col]
            group = sel.select(runs, activation=act)
            if group.sizes["config"] == 0:
                empty_panel(ax, "no runs")
                continue
            for term, style in (("G", "-"), ("M", "-"), ("H_eff", "--")):
                y = _bottom(group, term, reading).values
                band(ax, steps, y, color=TERM_COLORS[term], style=style, label=rf"$\lambda_{{\min}}({term.replace('_eff', '_{eff}')})$")
                if term == "H_eff" and row == 0:
                    table[act] = _mean(y, axis=0)
            ax.set_yscale("symlog", linthresh=linthresh)
            ax.axhline(0.0, color="0.75", lw=0.6, zorder=0)
            twin = ax.twinx()
            dyn = sel.select(dynamics, **main, activation=act)
            if dyn.sizes["config"]:
                twin.plot(dyn["step"].values, _mean(dyn["proj_std"].values, axis=0), ":", color="0.45", lw=0.9, label="repr. std")
                twin.set_yscale("log")
            twin.tick_params(labelsize=5.5, colors="0.45")
            if col == len(acts) - 1:
                twin.set_ylabel("representation std", color="0.45")
            if row == 0:
                ax.set_title(act)
            if col == 0:
                ax.set_ylabel(f"bottom eigenvalue\n{_READING_LABEL.get(reading, reading)}")
            if row == len(readings) - 1:
                ax.set_xlabel("optimiser step")
    legend_below(fig, ncols=4)
    fig.suptitle(f"{main['loss']}, {main['init']} init: bottom of the effective-Hessian spectrum at layer z", fontsize=7.5)
    return fig, _curve_table(steps, table)


def m_ratio(curvature: xr.Dataset) -> tuple[Any, pd.DataFrame]:
    r""":math:`\|M\|_F/\|H_{\text{eff}}\|_F` over steps (layer z, MSE premise where tracked), one panel
    per loss (base setting), one line per activation and init; exact zeros are drawn at 1e-18."""
    plt = pyplot()
    losses = sel.losses(curvature)
    fig, axes = plt.subplots(1, len(losses), figsize=(min(FULL_WIDTH, 2.3 * len(losses) + 0.4), 2.1), squeeze=False, sharey=True)
    steps = curvature["step"].values
    main = primary(curvature)
    table: dict[str, np.ndarray] = {}
    for ax, loss in zip(axes[0], losses, strict=True):
        runs = sel.base(curvature, loss)
        reading = pick_reading(runs, "mse", "ambient", var="m_spectral_ratio")
        kind = m_ratio_of(runs, reading)[1]
        means = _activation_bands(ax, steps, runs, lambda g, reading=reading: m_ratio_of(g, reading)[0].values, floor=_EXACT_ZERO)
        if loss == main["loss"]:
            table.update(means.get(main["init"], {}))
        ax.set_yscale("log")
        ax.set_ylim(_EXACT_ZERO / 3, None)
        ax.axhline(_EXACT_ZERO, color="0.75", lw=0.6, zorder=0)
        ax.text(steps[-1], _EXACT_ZERO, "exactly 0", fontsize=5.5, color="0.45", ha="right", va="bottom")
        ax.set_title(f"{loss}: {kind} ratio\n{_READING_LABEL.get(reading, reading)}")
        ax.set_xlabel("optimiser step")
    axes[0][0].set_ylabel(r"$\|M\| / \|H_{eff}\|$ at layer z")
    legend_below(fig)
    return fig, _curve_table(steps, table)


# --------------------------------------------------------------------------------------- geometry


def _seed_stats(values: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    return float(v.mean()), float(v.min()), float(v.max())


def _bars(ax: Any, centers: np.ndarray, series: list[tuple[str, list[tuple[float, float, float]], dict[str, Any]]]) -> None:
    width = 0.8 / max(len(series), 1)
    for k, (label, stats, style) in enumerate(series):
        x = centers - 0.4 + width * (k + 0.5)
        mean = np.array([m for m, _, _ in stats])
        err = np.array([[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]])
        ax.bar(x, mean, width, label=label, **style)
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="none", ecolor="0.2", elinewidth=0.6, capsize=1.2)


def _probe_init(geometry: xr.Dataset, loss: str) -> Any:
    return sel.prefer(sel.select(geometry, loss=loss), "init", "normal")


def guillotine(geometry: xr.Dataset) -> tuple[Any, None]:
    """Probe accuracy on z and h (linear and MLP probes; rows: rotation, class label), per loss
    (base setting, normal init where run) and activation; bar = mean over training seeds, whisker =
    min–max over training seeds."""
    plt = pyplot()
    losses = sel.losses(geometry)
    targets = [str(t) for t in geometry["target"].values]
    fig, axes = plt.subplots(
        len(targets), len(losses), figsize=(min(FULL_WIDTH, 2.3 * len(losses) + 0.4), 1.9 * len(targets)), squeeze=False, sharey="row"
    )
    shades = {("linear", "z"): "#08519c", ("linear", "h"): "#9ecae1", ("mlp", "z"): "#a63603", ("mlp", "h"): "#fdae6b"}
    for col, loss in enumerate(losses):
        runs = sel.base(geometry, loss, init=_probe_init(geometry, loss))
        acts = sel.values(runs, "activation")
        for row, target in enumerate(targets):
            ax = axes[row][col]
            series = []
            for (probe, space), shade in shades.items():
                stats = [
                    _seed_stats(sel.select(runs, activation=a)["probe_accuracy_mean"].sel(probe=probe, target=target, space=space).values)
                    for a in acts
                ]
                series.append((f"{probe} probe on {space}", stats, {"color": shade}))
            _bars(ax, np.arange(len(acts)), series)
            ax.set_xticks(np.arange(len(acts)), acts)
            if target == "rotation":
                ax.axhline(0.25, color="0.5", lw=0.6, ls="--", zorder=0)
            if row == 0:
                ax.set_title(f"{loss} ({_probe_init(geometry, loss)} init)")
            if col == 0:
                ax.set_ylabel(f"{target} probe accuracy")
    legend_below(fig)
    return fig, None


def _representative(geometry: xr.Dataset) -> xr.Dataset:
    """The orbit figure's run: InfoNCE (the paper's SimCLR) with a Swish head from a normal init at
    its base setting, seed 0 — or the closest the cube has."""
    loss = sel.prefer(geometry, "loss", "infonce", "ntxent", "simsiam")
    runs = sel.base(geometry, loss)
    act = sel.prefer(runs, "activation", "swish", "gelu")
    runs = sel.select(runs, activation=act)
    runs = sel.select(runs, init=sel.prefer(runs, "init", "normal"))
    return runs.isel(config=0)


def orbits(geometry: xr.Dataset) -> tuple[Any, None]:
    """Rotation orbits in the first two principal components of z, h (trained) and h (untrained),
    head fed z/||z|| as in the paper, for one representative run; right: orbit compression
    (total spread of z over that of h) per loss and activation, trained vs untrained head."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(FULL_WIDTH, 1.95), gridspec_kw={"width_ratios": [1, 1, 1, 1.5]})
    run = _representative(geometry)
    labels, ids = run["orbit_label"].values, run["orbit_id"].values
    cmap = plt.get_cmap("tab10")
    classes = sorted(set(labels.tolist()))
    panels = (("z", "trained", "backbone z"), ("h", "trained", "trained head h"), ("h", "untrained", "untrained head h"))
    for ax, (space, head, title) in zip(axes[:3], panels, strict=True):
        pts = run["orbit_pca"].sel(head=head, head_input="normalized", space=space).values
        var = run["orbit_pca_explained"].sel(head=head, head_input="normalized", space=space).values
        for orbit in np.unique(ids):
            rows = np.flatnonzero(ids == orbit)
            c = cmap(classes.index(labels[rows[0]]) % 10)
            loop = np.append(rows, rows[0])
            ax.plot(pts[loop, 0], pts[loop, 1], "-", color=c, lw=0.5, alpha=0.7)
            ax.scatter(pts[rows, 0], pts[rows, 1], s=3, color=c)
        comp = float(run["orbit_compression"].sel(head=head, head_input="normalized", spread_convention="total")) if space == "h" else None
        ax.set_title(title + (f"\ncompression {comp:.3g}×" if comp is not None else "\n "))
        ax.set_xlabel(f"PC1 ({var[0]:.0%})")
        ax.set_ylabel(f"PC2 ({var[1]:.0%})")
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=5)
    fig.suptitle(f"rotation orbits of run {run['config'].item()}", fontsize=6.5, color="0.3")
    ax = axes[3]
    keys, trained, untrained = [], [], []
    for loss in sel.losses(geometry):
        runs = sel.base(geometry, loss, init=_probe_init(geometry, loss))
        for act in sel.values(runs, "activation"):
            group = sel.select(runs, activation=act)["orbit_compression"].sel(head_input="normalized", spread_convention="total")
            keys.append(f"{loss} {act}")
            trained.append(_seed_stats(group.sel(head="trained").values))
            untrained.append(_seed_stats(group.sel(head="untrained").values))
    _bars(ax, np.arange(len(keys)), [("trained head", trained, {"color": "#2ca02c"}), ("untrained head", untrained, {"color": "0.7"})])
    ax.set_xticks(np.arange(len(keys)), keys, fontsize=5, rotation=90)
    plain_log(ax)
    ax.axhline(1.0, color="0.5", lw=0.6, ls="--", zorder=0)
    ax.set_ylabel("orbit compression S_z / S_h")
    ax.legend(loc="best", fontsize=5)
    return fig, None


def path_curvature(geometry: xr.Dataset) -> tuple[Any, None]:
    """Curvature of augmentation paths in h over that in z (trained head), per augmentation, per
    loss (base setting, normal init where run) and activation; rows: the paper's second difference,
    turning angle per arc length. 1 = no change."""
    plt = pyplot()
    losses = sel.losses(geometry)
    methods = [m for m in ("second_difference", "turning") if m in [str(c) for c in geometry["curvature"].values]]
    augs = [str(a) for a in geometry["augmentation"].values]
    fig, axes = plt.subplots(
        len(methods), len(losses), figsize=(FULL_WIDTH, 1.8 * len(methods) + 0.2), squeeze=False, sharey="row", sharex=True
    )
    for col, loss in enumerate(losses):
        runs = sel.base(geometry, loss, init=_probe_init(geometry, loss))
        acts = sel.values(runs, "activation")
        for row, method in enumerate(methods):
            ax = axes[row][col]
            series = []
            for i, act in enumerate(acts):
                ratio = sel.select(runs, activation=act)["path_curvature_ratio"].sel(head="trained", curvature=method)
                series.append((act, [_seed_stats(ratio.sel(augmentation=a).values) for a in augs], {"color": color(act, i)}))
            _bars(ax, np.arange(len(augs)), series)
            ax.axhline(1.0, color="0.5", lw=0.6, ls="--", zorder=0)
            plain_log(ax)
            ax.set_xticks(np.arange(len(augs)), augs, rotation=45, ha="right", fontsize=5.5)
            if row == 0:
                ax.set_title(loss)
            if col == 0:
                ax.set_ylabel(f"curvature ratio h / z\n({method.replace('_', ' ')})")
    legend_below(fig)
    return fig, None


def degeneracy(geometry: xr.Dataset) -> tuple[Any, None]:
    """Degeneracy index of the augmentation tangents at layer z (pullback metric of the map the loss
    sees, random reference; 1 = as stretched as a random direction, 0 = singular), per loss (base
    setting, normal init where run) and activation; filled = trained head, open = untrained."""
    plt = pyplot()
    losses = sel.losses(geometry)
    augs = [str(a) for a in geometry["augmentation"].values]
    fig, axes = plt.subplots(1, len(losses), figsize=(min(FULL_WIDTH, 2.3 * len(losses) + 0.4), 2.2), squeeze=False, sharey=True)
    for ax, loss in zip(axes[0], losses, strict=True):
        runs = sel.base(geometry, loss, init=_probe_init(geometry, loss))
        norm = sel.LOSS_NORMALIZATION.get(loss, "l2")
        acts = sel.values(runs, "activation")
        for i, act in enumerate(acts):
            deg = sel.select(runs, activation=act)["degeneracy"].sel(layer="z", normalization=norm, reference="random")
            offset = (i - (len(acts) - 1) / 2) * 0.15
            for head, face in (("trained", color(act, i)), ("untrained", "none")):
                stats = [_seed_stats(deg.sel(head=head, augmentation=a).values) for a in augs]
                mean = np.array([m for m, _, _ in stats])
                err = np.array([[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]])
                ax.errorbar(
                    np.arange(len(augs)) + offset,
                    mean,
                    yerr=np.nan_to_num(err),
                    fmt="o",
                    ms=2.8,
                    mfc=face,
                    mec=color(act, i),
                    ecolor=color(act, i),
                    elinewidth=0.6,
                    label=f"{act} ({head})",
                )
        ax.axhline(1.0, color="0.5", lw=0.6, ls="--", zorder=0)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(augs)), augs, rotation=45, ha="right", fontsize=5.5)
        ax.set_title(f"{loss} (head output: {'h/||h||' if norm == 'l2' else 'h'})")
    axes[0][0].set_ylabel("degeneracy index of the\naugmentation tangent (layer z)")
    legend_below(fig, ncols=4)
    return fig, None


def depth(geometry: xr.Dataset) -> tuple[Any, None]:
    """Head-depth ablation: linear rotation-probe accuracy on z and h, orbit compression and the
    rotation-path curvature ratio h/z against the number of head layers, for every setting that
    was run at more than one depth (mean over seeds, whisker = min–max)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH, 2.0))
    keys = ("loss", "activation", "init", "batchnorm", "lr")
    drawn = 0
    for i, (s, group) in enumerate(sel.groups(geometry, keys)):
        depths = sel.values(group, "depth")
        if len(depths) < 2:
            continue
        c, label = color(s["activation"], i), _label(s, keys)

        def stats(da: xr.DataArray, group: xr.Dataset = group, depths: list[Any] = depths) -> np.ndarray:
            return np.array([_seed_stats(da.sel(config=sel.select(group, depth=d)["config"].values).values) for d in depths])

        probe = group["probe_accuracy_mean"].sel(probe="linear", target="rotation")
        for space, style in (("z", "-o"), ("h", "--s")):
            st = stats(probe.sel(space=space))
            axes[0].errorbar(
                depths,
                st[:, 0],
                yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]],
                fmt=style,
                color=c,
                ms=3,
                elinewidth=0.6,
                label=f"{label}: {space}",
            )
        st = stats(group["orbit_compression"].sel(head="trained", head_input="normalized", spread_convention="total"))
        axes[1].errorbar(
            depths, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], fmt="-o", color=c, ms=3, elinewidth=0.6, label=label
        )
        aug = "angle" if "angle" in [str(a) for a in group["augmentation"].values] else str(group["augmentation"].values[0])
        st = stats(group["path_curvature_ratio"].sel(head="trained", curvature="second_difference", augmentation=aug))
        axes[2].errorbar(
            depths, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], fmt="-o", color=c, ms=3, elinewidth=0.6, label=label
        )
        drawn += 1
    titles = ("linear rotation probe", "orbit compression", "rotation-path curvature")
    ylabels = ("accuracy (z solid, h dashed)", "S_z / S_h", "curvature ratio h / z")
    for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
        if drawn == 0:
            empty_panel(ax, "no setting was run at more than one head depth in this configuration")
        else:
            ax.set_xlabel("head depth (layers)")
            ax.set_ylabel(ylabel)
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title)
    if drawn:
        plain_log(axes[1])
        legend_below(fig, ncols=2)
    return fig, None


# -------------------------------------------------------------------------------------- timescale


def timescale_ratio(dynamics: xr.Dataset) -> xr.DataArray:
    r"""Relative update of the projector over that of the backbone, per config and step."""
    rel = dynamics["rel_update"]
    return rel.sel(group="projector") / rel.sel(group="backbone")


def timescale(dynamics: xr.Dataset) -> tuple[Any, None]:
    """Head/backbone timescale separation: projector over backbone relative update ‖Δw‖/‖w‖ over
    steps for the primary setting (left), and its time mean per activation with and without
    BatchNorm (right, mean over seeds, whisker = min–max)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.1))
    ratio = timescale_ratio(dynamics)
    main = primary(dynamics)
    steps = dynamics["step"].values
    runs = sel.select(dynamics, **main)
    for i, act in enumerate(sel.values(runs, "activation")):
        band(axes[0], steps, ratio.sel(config=sel.select(runs, activation=act)["config"].values).values, color=color(act, i), label=act)
    axes[0].set_yscale("log")
    axes[0].axhline(1.0, color="0.5", lw=0.6, ls="--", zorder=0)
    axes[0].set_xlabel("optimiser step")
    axes[0].set_ylabel("relative update ratio\nprojector / backbone")
    axes[0].set_title(f"{main['loss']}, {main['init']} init, {_label(main, ('batchnorm', 'lr'))}")
    axes[0].legend(loc="best")
    fixed = {k: main[k] for k in ("loss", "init", "depth", "lr")}
    pool = sel.select(dynamics, **fixed)
    acts = sel.values(pool, "activation")
    series = []
    for bn in sel.values(pool, "batchnorm"):
        stats = [
            _seed_stats(_mean(ratio.sel(config=sel.select(pool, activation=a, batchnorm=bn)["config"].values).values, axis=-1))
            for a in acts
        ]
        series.append(("BN" if bn else "no BN", stats, {"color": "#ff7f0e" if bn else "#1f77b4"}))
    _bars(axes[1], np.arange(len(acts)), series)
    axes[1].set_xticks(np.arange(len(acts)), acts)
    axes[1].set_yscale("log")
    axes[1].axhline(1.0, color="0.5", lw=0.6, ls="--", zorder=0)
    axes[1].set_ylabel("time-mean ratio")
    axes[1].set_title("with and without BatchNorm in the head")
    axes[1].legend(loc="best")
    return fig, None


# ---------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Figure:
    """One figure: the cubes it reads (``results/{cube}.nc``, in argument order), its drawing
    function, the report section it belongs to, and whether it writes a DVC table."""

    cubes: tuple[str, ...]
    draw: Callable[..., tuple[Any, pd.DataFrame | None]]
    section: str
    table: bool = False


FIGURES: dict[str, Figure] = {
    "collapse": Figure(("dynamics",), collapse, "Collapse dynamics", table=True),
    "collapse_ablation": Figure(("dynamics",), collapse_ablation, "Collapse dynamics"),
    "spectrum": Figure(("dynamics",), spectrum, "Collapse dynamics"),
    "timescale": Figure(("dynamics",), timescale, "Collapse dynamics"),
    "hessian": Figure(("curvature", "dynamics"), hessian, "Curvature", table=True),
    "m_ratio": Figure(("curvature",), m_ratio, "Curvature"),
    "guillotine": Figure(("geometry",), guillotine, "Invariance"),
    "orbits": Figure(("geometry",), orbits, "Invariance"),
    "path_curvature": Figure(("geometry",), path_curvature, "Invariance"),
    "degeneracy": Figure(("geometry",), degeneracy, "Invariance"),
    "depth": Figure(("geometry",), depth, "Invariance"),
}
"""Every figure by name: ``results/figures/{name}.png`` and ``.pdf`` (and ``results/plots/{name}.csv``)."""


def draw(name: str, cubes: Mapping[str, xr.Dataset]) -> tuple[Any, pd.DataFrame | None]:
    """Draw figure ``name`` from the cubes it needs (``{"dynamics": ds, ...}``)."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; figures: {', '.join(FIGURES)}")
    spec = FIGURES[name]
    missing = [c for c in spec.cubes if c not in cubes]
    if missing:
        raise KeyError(f"figure {name!r} needs the cubes {list(spec.cubes)}; missing {missing}")
    return spec.draw(*(cubes[c] for c in spec.cubes))


def render(name: str, inputs: Mapping[str, str | Path], png: str | Path, pdf: str | Path, table: str | Path | None = None) -> None:
    """Open the cubes, draw figure ``name`` and write PNG, PDF (and the CSV table) atomically."""
    from geomhead.atomic import atomic_path

    opened = {key: xr.open_dataset(path) for key, path in inputs.items()}
    try:
        try:
            fig, frame = draw(name, opened)
        except KeyError as error:
            files = ", ".join(str(p) for p in inputs.values())
            raise ValueError(
                f"figure {name!r} cannot read {files}: {error.args[0]} A cube written by an older geomhead lacks "
                "newer variables: rerun the rules that write it (snakemake --forcerun analyze curvature pretrain ...)"
            ) from error
        save(fig, png, pdf)
        if table is not None:
            if frame is None:
                raise ValueError(f"figure {name!r} has no table")
            with atomic_path(table, suffix=".csv") as tmp:
                frame.to_csv(tmp, index=False, float_format="%.10g")
    finally:
        for ds in opened.values():
            ds.close()
