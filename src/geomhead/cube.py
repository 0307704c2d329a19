"""netCDF cubes: CF-style attributes, provenance, atomic writes and combining runs along ``config``.

Conventions (CONVENTIONS.md §5): every dimension has a coordinate; every variable has ``units``
and ``long_name`` (``"1"`` for dimensionless); sweep keys are separate coordinates along
``config`` (a MultiIndex cannot be written); configs are JSON strings (attributes cannot be dicts).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geomhead import __version__
from geomhead.atomic import atomic_path
from geomhead.config import SWEEP_KEYS, Run

REFERENCE = "Chaudhry, The Geometry of Projection Heads: Conditioning, Invariance, and Collapse, arXiv:2605.17180 (ICML 2026)"
CONFIG_COORD_ATTRS: dict[str, dict[str, str]] = {
    "loss": {"long_name": "SSL loss", "units": "1"},
    "activation": {"long_name": "head activation", "units": "1"},
    "depth": {"long_name": "projector depth (Linear layers)", "units": "1"},
    "batchnorm": {"long_name": "BatchNorm in the head", "units": "1", "flag_values": "0 1", "flag_meanings": "off on"},
    "init": {"long_name": "head initialisation", "units": "1"},
    "lr": {"long_name": "SGD learning rate", "units": "1"},
    "seed": {"long_name": "training seed", "units": "1"},
}


def git_sha() -> str:
    """The repository's commit (with ``-dirty`` when modified), or ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(title: str, **extra: Any) -> dict[str, Any]:
    """Global attributes: Conventions, title, source (package, version, commit), history, references."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {
        "Conventions": "CF-1.11",
        "title": title,
        "source": f"geomhead {__version__} (git {git_sha()})",
        "history": f"{now}: {' '.join(sys.argv)}",
        "references": REFERENCE,
    }
    attrs.update(extra)
    return attrs


def check_attrs(ds: xr.Dataset) -> None:
    """Raise if a variable or coordinate lacks ``units`` or ``long_name``."""
    missing = [name for name, var in ds.variables.items() if not {"units", "long_name"} <= set(var.attrs)]
    if missing:
        raise ValueError(f"variables without units/long_name: {', '.join(map(str, missing))}")


def write_netcdf(ds: xr.Dataset, path: str | Path, complevel: int = 4) -> None:
    """Write a netCDF4 file atomically, zlib-compressing the numeric data variables."""
    check_attrs(ds)
    encoding = {name: {"zlib": True, "complevel": complevel} for name, var in ds.data_vars.items() if np.issubdtype(var.dtype, np.number)}
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)


def config_coords(runs: Sequence[Run]) -> dict[str, Any]:
    """Coordinates along ``config`` (one per sweep key) for these runs."""
    coords: dict[str, Any] = {"config": ("config", [r.id for r in runs], {"long_name": "run id", "units": "1"})}
    for key in SWEEP_KEYS:
        values = [getattr(r, key) for r in runs]
        if key == "batchnorm":
            values = [int(v) for v in values]
        coords[key] = ("config", np.asarray(values), CONFIG_COORD_ATTRS[key])
    return coords


def combine(paths: Sequence[str | Path], title: str, params_json: str) -> xr.Dataset:
    """Concatenate per-run files along a new ``config`` dimension with labelled coordinates.

    Each file carries its run in the attribute ``run_json`` and its resolved config in
    ``config_json``; they become the ``config`` coordinates and a string variable ``config_json``.
    """

    parts, runs, configs, attrs_seen = [], [], [], []
    for path in paths:
        with xr.open_dataset(path) as ds:
            ds.load()
        run = Run(**json.loads(ds.attrs["run_json"]))
        runs.append(run)
        configs.append(ds.attrs["config_json"])
        parts.append(ds.drop_attrs(deep=False))
        attrs_seen.append(dict(ds.attrs))
    combined = xr.concat(parts, dim="config", join="outer", combine_attrs="drop_conflicts")
    combined = combined.assign_coords(config_coords(runs))
    combined["config_json"] = (
        "config",
        np.asarray(configs, dtype=object),
        {"long_name": "resolved run configuration (JSON)", "units": "1"},
    )
    combined.attrs = provenance(title, params_json=params_json)
    return combined


def _common_attrs(attrs_list: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Attributes with the same value in every run (e.g. the curvature settings)."""
    if not attrs_list:
        return {}
    first = attrs_list[0]
    return {k: v for k, v in first.items() if all(k in a and np.array_equal(a[k], v) for a in attrs_list[1:])}


def attrs(long_name: str, units: str = "1", **more: str) -> dict[str, str]:
    """Variable attributes with the two mandatory keys first."""
    return {"long_name": long_name, "units": units, **more}
