"""The Snakemake workflow: lint, config errors, the conda check and the tiny chain end to end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import xarray as xr

from geomhead.figures import FIGURES
from geomhead.workflow import CONDA_MESSAGE, conda_available
from helpers import TINY, snakemake


def test_lint_passes(tmp_path: Path) -> None:
    shutil.copy(TINY, tmp_path / "params.yaml")
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_config_fails_before_any_job_with_one_message(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        TINY.read_text().replace("steps: 24", "steps: -3").replace("activation: [relu, swish]", "activation: [relu, sigmoid]")
    )
    result = snakemake(tmp_path, "--cores", "1")
    assert result.returncode == 1
    assert "train.steps: -3 is out of range; must be >= 1" in result.stderr
    assert "sweep.grid.activation[1]: 'sigmoid' is not allowed; allowed values: 'linear', 'relu', 'gelu', 'swish'" in result.stderr
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(conda_available(), reason="conda is installed here; Snakemake builds the environments")
def test_use_conda_without_conda_stops_with_one_line(tmp_path: Path) -> None:
    shutil.copy(TINY, tmp_path / "params.yaml")
    result = snakemake(tmp_path, "--cores", "1", "--use-conda")
    assert result.returncode == 1
    assert CONDA_MESSAGE in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_tiny_chain_produces_labelled_cube_and_figures(tiny_workdir_results: Path) -> None:
    results = tiny_workdir_results / "results"
    figures = [f"figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
    tables = [f"plots/{name}.csv" for name, figure in FIGURES.items() if figure.table]
    for name in ("dynamics.nc", "curvature.nc", "geometry.nc", "data/digits.npz", "metrics.json", "claims.md", "claims.html",
                 "configuration.html", *figures, *tables):  # fmt: skip
        assert (results / name).is_file(), name
    with xr.open_dataset(results / "dynamics.nc") as cube:
        assert cube.sizes["config"] == 5
        for coord in ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed"):
            assert coord in cube.coords and cube[coord].dims == ("config",)
        assert "simsiam-swish-d2-bn0-collapsed-lr0.05-s1" in cube["config"].values
        for name, var in cube.variables.items():
            assert var.attrs.get("units") and var.attrs.get("long_name"), name
        assert "params_json" in cube.attrs
    for run in (results / "runs").iterdir():
        assert (run / "model.pt").is_file() and (run / "snapshots" / "tracking.pt").is_file()
    assert not (results / "resume").exists(), "finished runs leave no resumable state"
    log = (tiny_workdir_results / "logs" / "pretrain" / "simsiam-relu-d2-bn0-collapsed-lr0.05-s0.log").read_text()
    assert "24/24" in log, "tqdm progress goes to the rule log"


def test_rerun_is_a_no_op(tiny_workdir_results: Path) -> None:
    result = snakemake(tiny_workdir_results, "--cores", "2", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_touching_files_does_not_retrain(tiny_workdir_results: Path) -> None:
    """DVC resets modification times; the workflow must decide reruns without them."""
    data = tiny_workdir_results / "results" / "data" / "digits.npz"
    os.utime(data, None)
    result = snakemake(tiny_workdir_results, "--cores", "2", "-n")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout


def test_changing_one_run_setting_reruns_only_what_depends_on_it(tiny_workdir_results: Path, tmp_path: Path) -> None:
    work = tmp_path / "copy"
    shutil.copytree(tiny_workdir_results, work, symlinks=True)
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(
        params.replace(
            "include:\n    - {loss: simsiam, activation: swish, depth: 2, batchnorm: false, init: collapsed, lr: 0.05, seed: 1}",
            "include:\n    - {loss: simsiam, activation: swish, depth: 2, batchnorm: false, init: collapsed, lr: 0.05, seed: 2}",
        )
    )
    result = snakemake(work, "--cores", "2", "-n", "--quiet", "rules")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "pretrain" in out and "prepare" not in out
    dry = snakemake(work, "--cores", "2", "-n")
    assert dry.stdout.count("rule pretrain:") == 1, dry.stdout


def test_changing_analysis_settings_reruns_only_the_analysis(tiny_workdir_results: Path, tmp_path: Path) -> None:
    work = tmp_path / "copy"
    shutil.copytree(tiny_workdir_results, work, symlinks=True)
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(params.replace("probe_seeds: 2", "probe_seeds: 3"))
    dry = snakemake(work, "--cores", "2", "-n")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("rule analyze:") == 5
    assert "rule pretrain:" not in dry.stdout and "rule combine_dynamics:" not in dry.stdout


def test_changing_curvature_settings_reruns_only_curvature(tiny_workdir_results: Path, tmp_path: Path) -> None:
    work = tmp_path / "copy"
    shutil.copytree(tiny_workdir_results, work, symlinks=True)
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(params + "curvature: {k: 3}\n")
    dry = snakemake(work, "--cores", "2", "-n")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("rule curvature:") == 5 and "rule combine_curvature:" in dry.stdout
    for other in ("pretrain", "analyze", "combine_dynamics", "combine_geometry", "figure_collapse", "figure_orbits", "configuration"):
        assert f"rule {other}:" not in dry.stdout, other
    for downstream in ("figure_hessian", "figure_m_ratio", "claims", "metrics"):
        assert f"rule {downstream}:" in dry.stdout, downstream


def test_script_failures_are_written_to_the_rule_log(tmp_path: Path) -> None:
    from geomhead.workflow import logged

    log = tmp_path / "logs" / "rule.log"
    with pytest.raises(ZeroDivisionError), logged([str(log)]):
        print("starting")
        _ = 1 / 0
    text = log.read_text()
    assert "starting" in text and "ZeroDivisionError" in text and "Traceback" in text
