"""One figure style for every plot: paper column widths, 7–8 pt text, fixed colours, atomic PNG + PDF."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geomhead.atomic import atomic_path

__all__ = [
    "ACTIVATION_COLORS",
    "COLUMN_WIDTH",
    "FULL_WIDTH",
    "INIT_STYLES",
    "TERM_COLORS",
    "band",
    "color",
    "empty_panel",
    "legend_below",
    "plain_log",
    "pyplot",
    "save",
]

COLUMN_WIDTH = 3.35
"""Inches: one column of a two-column paper."""
FULL_WIDTH = 6.9
"""Inches: the full text width."""

ACTIVATION_COLORS = {"linear": "#4d4d4d", "relu": "#d62728", "gelu": "#1f77b4", "swish": "#2ca02c"}
INIT_STYLES = {"normal": "-", "collapsed": "--"}
TERM_COLORS = {"H_eff": "#000000", "G": "#1f77b4", "M": "#d62728", "H_L": "#9467bd"}
_OTHER_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")

_RC = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.1,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "figure.constrained_layout.use": True,
}


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend with the project's rcParams."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    return plt


def color(activation: str, index: int = 0) -> str:
    """The activation's colour (a fixed fallback cycle for anything else)."""
    return ACTIVATION_COLORS.get(activation, _OTHER_COLORS[index % len(_OTHER_COLORS)])


def band(
    ax: Any, x: Sequence[float], runs: np.ndarray, *, color: str, style: str = "-", label: str | None = None, alpha: float = 0.18
) -> None:
    """Seed mean as a line and the min–max over seeds as a band; ``runs`` is ``(seeds, len(x))``."""
    runs = np.atleast_2d(np.asarray(runs, dtype=np.float64))
    finite = np.isfinite(runs).any(axis=0)
    if not finite.any():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are masked below
        mean, lo, hi = np.nanmean(runs, axis=0), np.nanmin(runs, axis=0), np.nanmax(runs, axis=0)
    x = np.asarray(x)
    ax.plot(x[finite], mean[finite], style, color=color, label=label)
    if runs.shape[0] > 1:
        ax.fill_between(x[finite], lo[finite], hi[finite], color=color, alpha=alpha, lw=0)


def empty_panel(ax: Any, message: str) -> None:
    """A panel that says what is missing instead of silently staying blank."""
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=6.5, color="0.35", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def legend_below(fig: Any, ncols: int = 4) -> None:
    """One legend for the whole figure, below the panels (entries de-duplicated by label)."""
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols)


def plain_log(ax: Any, axis: str = "y") -> None:
    """Log scale with plain-number tick labels; a range under one decade stays linear (reads better)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo > 0 and hi / lo < 10:
        return
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def save(fig: Any, png: str | Path, pdf: str | Path) -> None:
    """Write the figure as PNG and PDF atomically, then close it."""
    plt = pyplot()
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(
                tmp, format=fmt, metadata={"Software": "geomhead"} if fmt == "png" else {"Creator": "geomhead", "CreationDate": None}
            )
    plt.close(fig)
