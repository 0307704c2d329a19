"""Figures and headline numbers drawn only from the cubes (never from training state)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geomhead.atomic import atomic_path

ACTIVATION_COLORS = {"linear": "#4d4d4d", "relu": "#d62728", "gelu": "#1f77b4", "swish": "#2ca02c"}
INIT_STYLES = {"normal": "-", "collapsed": "--"}


def _pyplot() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "savefig.dpi": 200})
    return plt


def normalized_std_curves(cube: xr.Dataset) -> xr.DataArray:
    r"""``proj_std`` divided by its value at the first logged step, per config (the paper's y-axis)."""
    std = cube["proj_std"]
    return std / std.isel(step=0)


def plot_collapse(cube: xr.Dataset, png: str | Path, pdf: str | Path) -> None:
    """The paper's collapse plot: normalised std over steps, one panel per loss, one line per
    (activation, init, depth, batchnorm, lr) with a min–max band over seeds; log y."""
    plt = _pyplot()
    curves = normalized_std_curves(cube)
    losses = list(dict.fromkeys(cube["loss"].values.tolist()))
    fig, axes = plt.subplots(1, len(losses), figsize=(3.3 * len(losses), 2.8), squeeze=False, sharey=True)
    group_keys = ("activation", "init", "depth", "batchnorm", "lr")
    for ax, loss in zip(axes[0], losses, strict=True):
        sel = curves.where(cube["loss"] == loss, drop=True)
        labels = {tuple(sel[k].values[i].item() for k in group_keys) for i in range(sel.sizes["config"])}
        for key in sorted(labels, key=str):
            mask = np.ones(sel.sizes["config"], dtype=bool)
            for name, value in zip(group_keys, key, strict=True):
                mask &= sel[name].values == value
            y = sel.isel(config=np.flatnonzero(mask)).values
            steps = sel["step"].values
            act, init = key[0], key[1]
            label = (
                f"{act}, {init}"
                + ("" if key[2] == 2 else f", d{key[2]}")
                + (", BN" if key[3] else "")
                + (f", lr {key[4]:g}" if len({k[4] for k in labels}) > 1 else "")
            )
            color = ACTIVATION_COLORS.get(act, None)
            ax.plot(steps, np.nanmean(y, axis=0), INIT_STYLES.get(init, "-"), color=color, lw=1.2, label=label)
            if y.shape[0] > 1:
                ax.fill_between(steps, np.nanmin(y, axis=0), np.nanmax(y, axis=0), color=color, alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_title(loss)
        ax.set_xlabel("optimiser step")
        ax.axhline(1.0, color="0.7", lw=0.6, zorder=0)
    axes[0][0].set_ylabel("normalised representation std\n(std / std at step 0)")
    axes[0][-1].legend(loc="best", frameon=False)
    seeds = len(np.unique(cube["seed"].values))
    fig.suptitle(f"Collapse dynamics (line: seed mean, band: min–max over {seeds} seed{'s' if seeds > 1 else ''})", fontsize=8)
    fig.tight_layout()
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt)
    plt.close(fig)


def dynamics_summary(cube: xr.Dataset) -> dict[str, Any]:
    """Headline numbers per config for DVC metrics: std ratio final/initial, final loss, effective ranks."""
    ratio = normalized_std_curves(cube).isel(step=-1)
    out: dict[str, Any] = {}
    for i, config in enumerate(cube["config"].values.tolist()):
        c = cube.isel(config=i, step=-1)
        out[config] = {
            "std_ratio_final": float(ratio.values[i]),
            "proj_std_final": float(c["proj_std"]),
            "loss_final": float(c["loss_value"]),
            "proj_effective_rank_final": float(c["proj_effective_rank"]),
            "z_effective_rank_final": float(c["z_effective_rank"]),
        }
    return {"final_step": int(cube["step"].values[-1]), "configs": out}
