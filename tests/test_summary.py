"""geomhead.summary: the headline numbers equal the cube values they summarise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geomhead.figures import normalized_std_curves
from geomhead.summary import metrics, negative_fraction


@pytest.fixture(scope="module")
def cubes(tiny_workdir_results: Path) -> dict[str, xr.Dataset]:
    results = tiny_workdir_results / "results"
    return {name: xr.load_dataset(results / f"{name}.nc") for name in ("dynamics", "curvature", "geometry")}


def test_metrics_cover_every_config_with_every_part(cubes: dict[str, xr.Dataset]) -> None:
    out = metrics(cubes["dynamics"], cubes["curvature"], cubes["geometry"])
    assert set(out["configs"]) == set(cubes["dynamics"]["config"].values.tolist())
    ratio = normalized_std_curves(cubes["dynamics"]).isel(step=-1)
    for config, numbers in out["configs"].items():
        for key in ("std_ratio_final", "m_ratio_final", "heff_lambda_min_final", "orbit_compression", "probe_rotation_linear_z"):
            assert key in numbers, key
        assert numbers["std_ratio_final"] == pytest.approx(float(ratio.sel(config=config)), rel=1e-12)
    json.dumps(out, allow_nan=False)


def test_negative_fraction_counts_eigenvalues_below_their_residual() -> None:
    eig = np.array([[-1.0, -1e-9, 0.5, np.nan]])
    res = np.array([[1e-6, 1e-6, 1e-6, np.nan]])
    dims = ("config", "step", "reading", "layer", "term", "end", "eig_index")
    shape = (1, 4, 1, 1, 1, 1, 1)
    ds = xr.Dataset(
        {"eigenvalue": (dims, eig.reshape(shape)), "residual": (dims, res.reshape(shape))},
        coords={"config": ["a"], "reading": ["mse"], "layer": ["z"], "term": ["H_eff"], "end": ["bottom"], "eig_index": [0]},
    )
    assert float(negative_fraction(ds, "mse").sel(config="a")) == pytest.approx(1 / 3)


def test_metrics_json_from_the_chain(tiny_workdir_results: Path) -> None:
    data = json.loads((tiny_workdir_results / "results" / "metrics.json").read_text())
    assert sum(data["claims"].values()) > 0
    assert len(data["configs"]) == 5
