"""geometry_of_run on real tiny runs: the Dataset's format, determinism, combining runs, headline numbers."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geomhead import augment
from geomhead.config import run_config
from geomhead.cube import check_attrs, combine, write_netcdf
from geomhead.geometry import AnalysisSettings, augmentation_ranges, geometry_of_run, headline
from geomhead.train import RunPaths, pretrain

SWISH = "simsiam-swish-d2-bn0-collapsed-lr0.05-s0"
LINEAR = "infonce-linear-d2-bn0-normal-lr0.05-s0"
SMALL = {
    "metric_points": 6, "max_snapshots": 3, "degeneracy_points": 6, "principal_directions": 3, "orbit_classes": 3,
    "orbit_images": 2, "orbit_angles": 6, "path_images": 4, "path_steps": 5, "probe_seeds": 2, "probe_train": 60,
    "probe_mlp_max_iter": 20, "whitening_anchors": 2, "whitening_rank": 3, "whitening_samples": 40,
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_params: dict, digits_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny trained runs: a SimSiam swish head and an InfoNCE linear head."""
    params = copy.deepcopy(tiny_params)
    params["sweep"]["include"].append(
        {"loss": "infonce", "activation": "linear", "depth": 2, "batchnorm": False, "init": "normal", "lr": 0.05, "seed": 0}
    )
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for run in (SWISH, LINEAR):
        paths = RunPaths.under(root / run, root / "resume" / run)
        pretrain(run_config(params, run), digits_npz, paths, threads=1)
        out[run] = root / run
    return out


@pytest.fixture(scope="module")
def analysed(runs: dict[str, Path], digits_npz: Path) -> dict[str, xr.Dataset]:
    return {run: geometry_of_run(path, digits_npz, settings=SMALL, threads=1) for run, path in runs.items()}


def test_dataset_format(analysed: dict[str, xr.Dataset]) -> None:
    ds = analysed[SWISH]
    check_attrs(ds)
    assert json.loads(ds.attrs["run_json"]) == {
        "loss": "simsiam",
        "activation": "swish",
        "depth": 2,
        "batchnorm": False,
        "init": "collapsed",
        "lr": 0.05,
        "seed": 0,
    }
    assert json.loads(ds.attrs["config_json"])["run"]["id"] == SWISH
    assert json.loads(ds.attrs["analysis_json"])["metric_points"] == 6
    assert list(ds["step"].values) == [0, 8, 24]  # 3 of the snapshots 0, 4, 8, 24: first and last kept
    assert list(ds["layer"].values) == ["z", "block1"]
    assert list(ds["augmentation"].values) == ["angle", "tx", "ty", "log_scale", "brightness", "contrast", "noise"]
    assert ds.sizes["eig_index"] == 32  # the widest layer (block1, head_hidden 32)
    z_eigs = ds["metric_eigenvalue"].sel(layer="z")
    assert z_eigs.isel(eig_index=slice(16, None)).isnull().all() and z_eigs.isel(eig_index=slice(0, 16)).notnull().all()
    for name in ("metric_effective_rank", "degeneracy", "spectrum_position", "orbit_compression", "path_curvature", "probe_accuracy"):
        assert ds[name].notnull().all(), name
    assert ((ds["spectrum_position"] >= 0) & (ds["spectrum_position"] < 1)).all()
    # orbit PCA rows: class -> image -> angle, as the orbit metrics see them; z's PCA is shared by both heads
    n_points = 3 * 2 * 6  # analysis settings above: orbit_classes 3, orbit_images 2, orbit_angles 6
    assert ds.sizes["orbit_point"] == n_points and ds["orbit_pca"].notnull().all()
    assert list(ds["orbit_id"].values) == [i // 6 for i in range(n_points)]
    np.testing.assert_allclose(ds["orbit_angle"].values[:6], [0.0, 60.0, 120.0, 180.0, 240.0, 300.0], rtol=1e-12)
    pca_z = ds["orbit_pca"].sel(space="z", head_input="normalized")
    np.testing.assert_array_equal(pca_z.sel(head="trained").values, pca_z.sel(head="untrained").values)
    assert ds["whitening_metric_condition"].isnull() and ds["whitening_heff_eigenvalue"].isnull().all()  # not a linear head


def test_linear_head_gets_a_whitening_report(analysed: dict[str, xr.Dataset]) -> None:
    ds = analysed[LINEAR]
    for key in ("heff_condition", "hl_condition", "metric_condition", "data_condition", "metric_alignment"):
        value = float(ds[f"whitening_{key}"])
        assert math.isfinite(value), key
    assert float(ds["whitening_metric_condition"]) >= 1.0 and 0 < float(ds["whitening_metric_alignment"]) <= 1.0
    assert (ds["whitening_heff_eigenvalue"].diff("whitening_eig_index") <= 1e-12).all()
    # a full-rank linear head 16 -> 32 -> 32: its plain metric on z has full rank 16 at every step
    assert (ds["metric_rank"].sel(layer="z", normalization="none") == 16).all()
    assert (ds["metric_rank"].sel(layer="z", normalization="l2") <= 15).all()  # J z = h: z is in the null space


def test_untrained_control_without_normalisation_is_near_one(analysed: dict[str, xr.Dataset]) -> None:
    """The step-0 head is random: along geometric tangents its index is O(1), unlike an exactly invariant head's 0."""
    deg = analysed[SWISH]["degeneracy"].sel(head="untrained", normalization="none", reference="random", augmentation=["angle", "tx", "ty"])
    assert float(deg.min()) > 0.2 and float(deg.max()) < 5.0


def test_analysis_is_deterministic(runs: dict[str, Path], digits_npz: Path, analysed: dict[str, xr.Dataset]) -> None:
    again = geometry_of_run(runs[SWISH], digits_npz, settings=SMALL, threads=1)
    xr.testing.assert_identical(again.drop_vars("wall_time").drop_attrs(), analysed[SWISH].drop_vars("wall_time").drop_attrs())


def test_per_run_files_combine_along_config(analysed: dict[str, xr.Dataset], tmp_path: Path) -> None:
    paths = []
    for run, ds in analysed.items():
        paths.append(tmp_path / f"{run}.nc")
        write_netcdf(ds, paths[-1])
    cube = combine(paths, "geomhead geometry", json.dumps({"analysis": SMALL}))
    assert list(cube["config"].values) == [SWISH, LINEAR]
    assert list(cube["loss"].values) == ["simsiam", "infonce"] and list(cube["activation"].values) == ["swish", "linear"]
    assert cube["degeneracy"].dims[0] == "config"
    assert np.isnan(float(cube["whitening_metric_condition"].sel(config=SWISH)))
    check_attrs(cube)
    out = tmp_path / "geometry.nc"
    write_netcdf(cube, out)
    with xr.open_dataset(out) as back:
        numbers = headline(back)
    assert set(numbers) == {SWISH, LINEAR}
    json.dumps(numbers, allow_nan=False)  # NaN became None


def test_headline_numbers(analysed: dict[str, xr.Dataset]) -> None:
    numbers = headline(analysed[LINEAR])
    assert numbers["probe_rotation_linear_z"] is not None and 0 <= numbers["probe_rotation_linear_z"] <= 1
    assert numbers["whitening_metric_condition"] is not None and numbers["wall_time_s"] > 0
    assert headline(analysed[SWISH])["whitening_metric_condition"] is None
    json.dumps(numbers, allow_nan=False)


def test_settings_are_validated() -> None:
    assert AnalysisSettings.from_dict(None) == AnalysisSettings()
    assert AnalysisSettings.from_dict({"augmentations": ["angle"]}).augmentations == ("angle",)
    with pytest.raises(ValueError, match=r"unknown analysis settings \['probe_sedes'\]"):
        AnalysisSettings.from_dict({"probe_sedes": 3})
    with pytest.raises(ValueError, match="analysis.path_steps must be an int >= 3, got 2"):
        AnalysisSettings(path_steps=2)
    with pytest.raises(ValueError, match="analysis.augmentations must be null or distinct names"):
        AnalysisSettings(augmentations=("hue",))
    with pytest.raises(ValueError, match="analysis.tangent_interpolation must be one of"):
        AnalysisSettings(tangent_interpolation="nearest")
    with pytest.raises(ValueError, match="analysis.rtol must be a positive number"):
        AnalysisSettings(rtol=0.0)


def test_augmentation_ranges_follow_the_training_distribution() -> None:
    ranges = augmentation_ranges(augment.AugmentConfig())
    assert ranges["angle"] == pytest.approx(math.radians(30)) and ranges["tx"] == 0.125
    assert ranges["log_scale"] == pytest.approx(-math.log(0.9)) and ranges["log_aspect"] == 0.0
    assert augmentation_ranges(augment.paper_cifar_config())["log_aspect"] == pytest.approx(math.log(4 / 3))


def test_missing_run_files_raise(tmp_path: Path, digits_npz: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.pt"):
        geometry_of_run(tmp_path, digits_npz)
