r"""Headline numbers per configuration from the three cubes, for ``results/metrics.json`` (DVC metrics).

Per config (NaN becomes ``None``):

* dynamics — ``std_ratio_final`` (normalised std at the last step), ``proj_std_initial``/``final``,
  ``loss_final``, final effective ranks, ``timescale_ratio`` (time mean of projector over backbone
  relative update);
* curvature (layer z; the MSE reading where tracked, else ambient) — ``m_ratio_final``
  (:math:`\|M\|/\|H_{\text{eff}}\|`, Frobenius where exact, else spectral), bottom eigenvalues of
  :math:`H_{\text{eff}}`, :math:`G`, :math:`M` at the last step, the fraction of tracked steps with
  :math:`\lambda_{\min}(H_{\text{eff}}) < 0` and the paper's float32 estimate at the last step;
* geometry — :func:`geomhead.geometry.headline`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["curvature_summary", "dynamics_summary", "metrics", "negative_fraction"]


def _number(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def dynamics_summary(cube: xr.Dataset) -> dict[str, dict[str, float | None]]:
    """Dynamics headline numbers per config."""
    from geomhead.figures import normalized_std_curves, timescale_ratio

    ratio = normalized_std_curves(cube).isel(step=-1)
    timescale = timescale_ratio(cube).mean("step", skipna=True)
    out = {}
    for i, config in enumerate(cube["config"].values.tolist()):
        last = cube.isel(config=i, step=-1)
        out[str(config)] = {
            "std_ratio_final": _number(ratio.values[i]),
            "proj_std_initial": _number(cube["proj_std"].isel(config=i, step=0)),
            "proj_std_final": _number(last["proj_std"]),
            "loss_final": _number(last["loss_value"]),
            "proj_effective_rank_final": _number(last["proj_effective_rank"]),
            "z_effective_rank_final": _number(last["z_effective_rank"]),
            "timescale_ratio": _number(timescale.values[i]),
        }
    return out


def negative_fraction(curvature: xr.Dataset, reading: str, term: str = "H_eff", layer: str = "z") -> xr.DataArray:
    r"""Fraction of tracked steps with :math:`\lambda_{\min}(\text{term}) < 0` beyond its own residual, per config."""
    eig = curvature["eigenvalue"].sel(reading=reading, layer=layer, term=term, end="bottom", eig_index=0)
    res = curvature["residual"].sel(reading=reading, layer=layer, term=term, end="bottom", eig_index=0).fillna(0.0)
    finite = np.isfinite(eig)
    negative = (eig < -res) & finite
    return negative.sum("step") / finite.sum("step").where(finite.sum("step") > 0)


def curvature_summary(cube: xr.Dataset) -> dict[str, dict[str, float | str | None]]:
    """Curvature headline numbers per config (layer z)."""
    from geomhead.figures import m_ratio_of, pick_reading

    out = {}
    for config in cube["config"].values.tolist():
        run = cube.sel(config=[config])
        reading = pick_reading(run, "mse", "ambient", var="m_spectral_ratio")
        ratio, _ = m_ratio_of(run, reading)
        bottom = run["eigenvalue"].sel(reading=reading, layer="z", end="bottom", eig_index=0).isel(config=0, step=-1)
        out[str(config)] = {
            "m_ratio_final": _number(ratio.isel(config=0, step=-1)),
            "heff_lambda_min_final": _number(bottom.sel(term="H_eff")),
            "g_lambda_min_final": _number(bottom.sel(term="G")),
            "m_lambda_min_final": _number(bottom.sel(term="M")),
            "heff_negative_step_fraction": _number(negative_fraction(run, reading).isel(config=0)),
            "paper_lambda_min_final": _number(run["paper_lambda_min"].sel(layer="z").isel(config=0, step=-1))
            if "z" in run["layer"].values
            else None,
        }
    return out


def metrics(dynamics: xr.Dataset, curvature: xr.Dataset, geometry: xr.Dataset) -> dict[str, Any]:
    """``{"configs": {run id: {dynamics, curvature, geometry numbers}}}`` over the runs of ``dynamics``."""
    from geomhead.geometry import headline

    parts = (dynamics_summary(dynamics), curvature_summary(curvature), headline(geometry))
    configs = {}
    for config in dynamics["config"].values.tolist():
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part.get(str(config), {}))
        configs[str(config)] = merged
    return {"final_step": int(dynamics["step"].values[-1]), "configs": configs}
