"""geomhead.figures: every figure draws from the cubes alone; tables carry the plotted numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from geomhead import selection as sel
from geomhead.figures import FIGURES, TABLE_COLUMNS, draw, normalized_std_curves, primary, render


@pytest.fixture(scope="module")
def cubes(tiny_workdir_results: Path) -> dict[str, xr.Dataset]:
    results = tiny_workdir_results / "results"
    return {name: xr.load_dataset(results / f"{name}.nc") for name in ("dynamics", "curvature", "geometry")}


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_renders_png_pdf_and_its_table(
    name: str, cubes: dict[str, xr.Dataset], tmp_path: Path, tiny_workdir_results: Path
) -> None:
    spec = FIGURES[name]
    inputs = {c: tiny_workdir_results / "results" / f"{c}.nc" for c in spec.cubes}
    png, pdf, csv = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", tmp_path / f"{name}.csv"
    render(name, inputs, png, pdf, csv if spec.table else None)
    with Image.open(png) as image:
        width, height = image.size
        colours = len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))
    assert width >= 600 and height >= 250 and colours > 20, (width, height, colours)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporaries"
    if spec.table:
        table = pd.read_csv(csv)
        assert tuple(table.columns) == TABLE_COLUMNS


def test_collapse_table_is_the_seed_mean_of_the_normalised_std(cubes: dict[str, xr.Dataset]) -> None:
    dyn = cubes["dynamics"]
    _, table = draw("collapse", cubes)
    main = primary(dyn)
    curves = normalized_std_curves(dyn)
    for act in sel.values(sel.select(dyn, **main), "activation"):
        expected = curves.sel(config=sel.select(dyn, **main, activation=act)["config"].values).mean("config").values
        np.testing.assert_allclose(table[act].values, expected, rtol=1e-12)
    assert table["linear"].isna().all(), "activations not in the sweep stay empty"
    np.testing.assert_array_equal(table["step"].values, dyn["step"].values)


def test_hessian_table_is_the_bottom_eigenvalue_under_the_mse_premise(cubes: dict[str, xr.Dataset]) -> None:
    cur = cubes["curvature"]
    _, table = draw("hessian", cubes)
    main = primary(cur)
    runs = sel.select(cur, **main, activation="swish")
    expected = runs["eigenvalue"].sel(term="H_eff", reading="mse", layer="z", end="bottom", eig_index=0).mean("config").values
    np.testing.assert_allclose(table["swish"].values, expected, rtol=1e-12)


def test_missing_runs_leave_a_labelled_panel_not_a_blank(cubes: dict[str, xr.Dataset]) -> None:
    fig, _ = draw("depth", cubes)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("more than one head depth" in t for t in texts)
    fig, _ = draw("collapse_ablation", cubes)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("BatchNorm" in t for t in texts) and any("learning rate" in t for t in texts)


def test_axes_are_labelled(cubes: dict[str, xr.Dataset]) -> None:
    for name in FIGURES:
        fig, _ = draw(name, cubes)
        drawn = [ax for ax in fig.axes if ax.has_data()]
        if not drawn:  # every panel says why it is empty (test above)
            assert all(ax.texts for ax in fig.axes), name
            continue
        assert any(ax.get_ylabel() for ax in drawn), name
        assert any(ax.get_xlabel() or ax.get_xticklabels() for ax in drawn), name


def test_draw_names_what_is_missing(cubes: dict[str, xr.Dataset]) -> None:
    with pytest.raises(KeyError, match="unknown figure 'nope'"):
        draw("nope", cubes)
    with pytest.raises(KeyError, match="missing \\['curvature'\\]"):
        draw("hessian", {"dynamics": cubes["dynamics"]})


def test_a_cube_from_an_older_version_is_named_with_the_fix(tiny_workdir_results: Path, tmp_path: Path) -> None:
    old = tmp_path / "geometry.nc"
    with xr.open_dataset(tiny_workdir_results / "results" / "geometry.nc") as cube:
        cube.drop_vars(["orbit_pca", "orbit_pca_explained"]).to_netcdf(old)
    with pytest.raises(ValueError, match=r"geometry.nc: No variable named 'orbit_pca'.*older geomhead.*forcerun"):
        render("orbits", {"geometry": old}, tmp_path / "o.png", tmp_path / "o.pdf")
    assert not (tmp_path / "o.png").exists(), "a failed figure leaves no file that looks finished"
