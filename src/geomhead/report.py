"""The run configuration as a page of the Snakemake report (the resolved params and every run)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import xarray as xr
import yaml

from geomhead import selection as sel
from geomhead.atomic import atomic_path

__all__ = ["configuration_html", "configuration_summary", "write_configuration"]


def configuration_summary(dynamics: xr.Dataset) -> list[tuple[str, str]]:
    """Key facts of the run, read from the combined dynamics cube and its provenance."""
    params = json.loads(dynamics.attrs.get("params_json", "{}"))
    model, train, data = params.get("model", {}), params.get("train", {}), params.get("data", {})
    settings = ", ".join(f"{k}: {'/'.join(str(v) for v in sel.values(dynamics, k))}" for k in (*sel.SETTING_KEYS, "seed"))
    return [
        ("dataset", str(data.get("dataset", "?"))),
        ("backbone", f"{model.get('backbone', '?')}, z = {model.get('z_dim', '?')}, head width {model.get('head_hidden', '?')}"),
        ("training", f"{int(dynamics['step'].values[-1])} steps, batch {train.get('batch_size', '?')}"),
        ("runs", f"{dynamics.sizes['config']} ({settings})"),
        ("code", str(dynamics.attrs.get("source", "?"))),
    ]


def configuration_html(dynamics: xr.Dataset) -> str:
    """A standalone page: the summary, every run with its settings, and the resolved params as YAML."""
    e = html.escape
    params = json.loads(dynamics.attrs.get("params_json", "{}"))
    summary = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in configuration_summary(dynamics))
    keys = (*sel.SETTING_KEYS, "seed")
    head = "".join(f"<th>{e(k)}</th>" for k in ("run", *keys))
    rows = "".join(
        "<tr><td>" + e(str(c)) + "</td>" + "".join(f"<td>{e(str(dynamics[k].values[i]))}</td>" for k in keys) + "</tr>"
        for i, c in enumerate(dynamics["config"].values)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>geomhead configuration</title><style>"
        "body{font-family:sans-serif;font-size:13px;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}pre{background:#f8f8f8;padding:8px}"
        "</style></head><body><h2>Run configuration</h2><table>"
        + summary
        + f"</table><h3>Runs ({dynamics.sizes['config']})</h3><table><tr>{head}</tr>{rows}</table>"
        + "<h3>Resolved parameters (params.yaml with the schema's defaults)</h3><pre>"
        + e(yaml.safe_dump(params, sort_keys=False))
        + "</pre></body></html>\n"
    )


def write_configuration(dynamics: str | Path, path: str | Path) -> None:
    """Write :func:`configuration_html` of the combined dynamics cube atomically."""
    with xr.open_dataset(dynamics) as cube, atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(configuration_html(cube), encoding="utf-8")
