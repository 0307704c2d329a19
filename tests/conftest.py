"""Shared fixtures: the tiny configuration, a prepared digits file, isolated tool caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from geomhead.config import validate_params

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep matplotlib, Snakemake and DVC caches out of the home folder."""
    base = tmp_path_factory.mktemp("caches")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    os.environ.setdefault("XDG_CACHE_HOME", str(base / "xdg"))
    os.environ["MPLBACKEND"] = "Agg"


@pytest.fixture(scope="session")
def tiny_params() -> dict:
    """The tiny configuration, validated, with every default filled in."""
    return validate_params(yaml.safe_load(TINY.read_text()), source=str(TINY))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits prepared once per session."""
    from geomhead.data import prepare_digits, save_dataset

    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_dataset(prepare_digits(0.2, 0), path)
    return path


@pytest.fixture(scope="session")
def tiny_workdir_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder where the tiny configuration ran once through the whole Snakemake chain."""
    import shutil

    from helpers import snakemake

    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copy(TINY, workdir / "params.yaml")
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
