"""DVC wraps the workflow: repro on a fresh clone, no-op second repro, no retraining after DVC, experiments."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import xarray as xr
import yaml

from geomhead.figures import FIGURES
from helpers import BIN, ROOT, snakemake, tool_env

GIT = ["git", "-c", "user.email=ci@geomhead", "-c", "user.name=geomhead-ci"]


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**tool_env(cwd), "DVC_NO_ANALYTICS": "1"})
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict) -> Path:
    """A fresh clone of the repository's current tree, with the tiny configuration as params.yaml."""
    repo = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() or src.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name, follow_symlinks=False)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run([*GIT, "add", "-A"], repo)
    run([*GIT, "commit", "-qm", "fresh clone"], repo)
    run([str(BIN / "dvc"), "config", "--local", "core.site_cache_dir", str(tmp_path_factory.mktemp("dvc-site"))], repo)
    return repo


@pytest.fixture(scope="module")
def reproduced(clone: Path) -> Path:
    run([str(BIN / "dvc"), "repro"], clone)
    return clone


def test_repro_produces_what_snakemake_produces(reproduced: Path, tiny_workdir_results: Path) -> None:
    figures = [f"results/figures/{name}.png" for name in FIGURES]
    for name in ("results/dynamics.nc", "results/metrics.json", "results/claims.md", "results/report.html", "dvc.lock", *figures):
        assert (reproduced / name).is_file(), name
    assert len(list((reproduced / "results" / "runs").glob("*/model.pt"))) == 5
    with (
        xr.open_dataset(reproduced / "results" / "dynamics.nc") as a,
        xr.open_dataset(tiny_workdir_results / "results" / "dynamics.nc") as b,
    ):
        xr.testing.assert_identical(a.drop_attrs().drop_vars("config_json"), b.drop_attrs().drop_vars("config_json"))
    lock = yaml.safe_load((reproduced / "dvc.lock").read_text())
    outs = {o["path"] for o in lock["stages"]["pretrain"]["outs"]}
    assert "results/runs" in outs, "DVC versions every run's final checkpoint"
    assert (reproduced / ".dvc" / "cache").is_dir()


def test_second_repro_does_nothing_and_snakemake_agrees(reproduced: Path) -> None:
    out = run([str(BIN / "dvc"), "repro"], reproduced).stdout
    assert "Data and pipelines are up to date" in out
    assert "Running stage" not in out
    dry = snakemake(reproduced, "--cores", "1", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout


def test_metrics_and_plots_show_offline(reproduced: Path) -> None:
    metrics = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], reproduced).stdout)
    text = json.dumps(metrics)
    assert "std_ratio_final" in text and "orbit_compression" in text and "not_supported" in text
    out = reproduced / "plots-html"
    run([str(BIN / "dvc"), "plots", "show", "-o", str(out)], reproduced)
    page = (out / "index.html").read_text()
    for name in FIGURES:
        assert f"{name}.png" in page, name
    assert "normalised std" in page and "lambda_min(H_eff)" in page, "the two CSV plots are drawn"
    errors = json.loads(run([str(BIN / "dvc"), "plots", "show", "--json"], reproduced).stdout).get("errors", [])
    assert not errors, errors[:2]


def test_dvc_yaml_declares_every_figure_as_a_plot() -> None:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    declared = {next(iter(entry)) for entry in stage["plots"]}
    assert declared == {f"results/figures/{name}.png" for name in FIGURES}


def test_experiment_on_a_head_parameter_is_compared_by_exp_show(reproduced: Path) -> None:
    run([*GIT, "add", "-A"], reproduced)
    run([*GIT, "commit", "-qm", "lock"], reproduced)
    run([str(BIN / "dvc"), "exp", "run", "-S", "model.head_hidden=16"], reproduced)
    rows = list(csv.DictReader(io.StringIO(run([str(BIN / "dvc"), "exp", "show", "--csv"], reproduced).stdout)))
    column = "configs.simsiam-swish-d2-bn0-collapsed-lr0.05-s0.std_ratio_final"
    assert column in rows[0] and "model.head_hidden" in rows[0], list(rows[0])[:20]
    by_width = {row["model.head_hidden"]: row[column] for row in rows if row[column]}
    assert {"16", "32"} <= set(by_width), by_width
    assert by_width["16"] != by_width["32"], "the experiment's metrics differ from the baseline's"
    with xr.open_dataset(reproduced / "results" / "curvature.nc") as cube:
        assert json.loads(cube.attrs["params_json"])["model"]["head_hidden"] == 16
