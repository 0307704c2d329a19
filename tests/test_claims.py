"""geomhead.claims: every verdict follows its stated rule, on synthetic cubes and the tiny chain's cubes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geomhead import claims as cl
from geomhead.claims import CLAIMS, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED, Cubes, evaluate, to_html, to_markdown, verdict_counts

KEYS = ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed")
BY_ID = {c.id: c for c in CLAIMS}


def dynamics(rows: list[dict]) -> xr.Dataset:
    """A dynamics cube with two steps: std goes from ``std0`` to ``std0 * ratio``; head/backbone update ratio ``ts``."""
    steps = np.array([0, 10, 20])
    std = np.array([[r.get("std0", 1e-3), r.get("std0", 1e-3) * (1 + r["ratio"]) / 2, r.get("std0", 1e-3) * r["ratio"]] for r in rows])
    rel = np.zeros((len(rows), 3, 3))
    rel[:, :, 0], rel[:, :, 1], rel[:, :, 2] = 1e-3, 1e-3 * np.array([r.get("ts", 50.0) for r in rows])[:, None], 1e-3
    coords = {
        k: ("config", [r.get(k, default) for r in rows])
        for k, default in zip(KEYS, ("simsiam", "relu", 2, 0, "collapsed", 0.05, 0), strict=True)
    }
    return xr.Dataset(
        {
            "proj_std": (("config", "step"), std),
            "proj_condition_number": (("config", "step"), std * 10),
            "rel_update": (("config", "step", "group"), rel),
        },
        coords={"config": [f"r{i}" for i in range(len(rows))], "step": steps, "group": ["backbone", "projector", "predictor"], **coords},
        attrs={"params_json": "{}", "source": "test"},
    )


def verdict(claim_id: str, cubes: Cubes) -> cl.Outcome:
    return BY_ID[claim_id].evaluate(cubes)


def only(dyn: xr.Dataset) -> Cubes:
    return Cubes(dyn, xr.Dataset(), xr.Dataset())


def test_escape_claims_follow_their_thresholds() -> None:
    rows = [
        {"activation": "swish", "ratio": 3.0},
        {"activation": "swish", "ratio": 2.5, "seed": 1},
        {"activation": "relu", "ratio": 0.1},
        {"activation": "linear", "ratio": 1.2},
    ]
    cubes = only(dynamics(rows))
    assert verdict("escape_smooth", cubes).verdict == SUPPORTED
    assert verdict("relu_freeze", cubes).verdict == SUPPORTED
    assert verdict("linear_no_escape", cubes).verdict == SUPPORTED
    rows[1]["ratio"], rows[2]["ratio"], rows[3]["ratio"] = 1.9, 1.01, 44.1
    cubes = only(dynamics(rows))
    out = verdict("escape_smooth", cubes)
    assert out.verdict == NOT_SUPPORTED and "1.9" in out.ours and out.note
    assert verdict("relu_freeze", cubes).verdict == NOT_SUPPORTED
    assert verdict("linear_no_escape", cubes).verdict == NOT_SUPPORTED


def test_batchnorm_learning_rate_and_timescale_rules() -> None:
    base = [
        {"activation": "relu", "ratio": 0.1, "std0": 1e-4, "ts": 100.0},
        {"activation": "swish", "ratio": 3.0, "std0": 1e-4, "ts": 80.0},
    ]
    bn = [{"activation": a, "ratio": 1.0, "batchnorm": 1, "std0": 1e-2, "ts": 1.0} for a in ("relu", "swish")]
    lrs = [{"activation": "relu", "ratio": r, "lr": lr} for lr, r in ((0.005, 0.45), (0.5, 0.03))]
    cubes = only(dynamics(base + bn + lrs))
    assert verdict("bn_not_collapsed", cubes).verdict == SUPPORTED
    assert verdict("relu_lr", cubes).verdict == SUPPORTED
    assert verdict("timescale", cubes).verdict == SUPPORTED
    assert verdict("timescale_bn", cubes).verdict == SUPPORTED
    bn[0]["std0"], lrs[0]["ratio"], bn[1]["ts"] = 5e-4, 0.05, 500.0
    cubes = only(dynamics(base + bn + lrs))
    assert verdict("bn_not_collapsed", cubes).verdict == NOT_SUPPORTED
    assert verdict("relu_lr", cubes).verdict == NOT_SUPPORTED
    assert verdict("timescale_bn", cubes).verdict == NOT_SUPPORTED


def test_missing_runs_are_not_measured_with_a_reason() -> None:
    cubes = only(dynamics([{"activation": "relu", "ratio": 0.1}]))
    for claim_id in ("bn_not_collapsed", "relu_lr", "timescale_bn", "spearman"):
        out = verdict(claim_id, cubes)
        assert out.verdict == NOT_MEASURED and out.note.startswith("no "), claim_id
    assert verdict("escape_smooth", cubes).verdict == NOT_MEASURED


@pytest.fixture(scope="module")
def tiny_cubes(tiny_workdir_results: Path) -> Cubes:
    results = tiny_workdir_results / "results"
    return Cubes(*(xr.load_dataset(results / f"{name}.nc") for name in ("dynamics", "curvature", "geometry")))


def test_every_claim_gets_a_verdict_on_the_tiny_chain(tiny_cubes: Cubes) -> None:
    results = evaluate(tiny_cubes)
    assert [c.id for c, _ in results] == [c.id for c in CLAIMS]
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    for claim, outcome in results:
        assert outcome.verdict in cl.VERDICTS, claim.id
        assert claim.paper and claim.rule and claim.source
        if outcome.verdict != NOT_MEASURED:
            assert outcome.ours not in ("", "—"), claim.id
    assert sum(verdict_counts(results).values()) == len(CLAIMS)
    md = to_markdown(results, tiny_cubes)
    assert md.count("\n| ") - 2 >= len(CLAIMS)  # header + separator + one row per claim (+ config rows)
    assert "## Findings" in md and "## Run configuration" in md
    page = to_html(results, tiny_cubes)
    assert page.count("<tr style=") == len(CLAIMS)


def test_curvature_rules_flip_when_the_cube_breaks_them(tiny_cubes: Cubes) -> None:
    assert verdict("m_zero_relu", tiny_cubes).verdict == SUPPORTED
    assert verdict("strict_saddle", tiny_cubes).verdict == SUPPORTED
    cur = tiny_cubes.curvature.copy(deep=True)
    relu = [str(c) for c in cur["config"].values if "relu" in str(c)]
    cur["m_ratio"].loc[{"config": relu[0]}] = 1e-6
    cur["n_neg"].loc[{"config": relu[0], "term": "H_eff"}] = 3
    broken = Cubes(tiny_cubes.dynamics, cur, tiny_cubes.geometry)
    assert verdict("m_zero_relu", broken).verdict == NOT_SUPPORTED
    assert verdict("strict_saddle", broken).verdict == NOT_SUPPORTED


def test_geometry_rules_read_the_probe_and_orbit_numbers(tiny_cubes: Cubes) -> None:
    geo = tiny_cubes.geometry.copy(deep=True)
    assert verdict("guillotine", Cubes(tiny_cubes.dynamics, tiny_cubes.curvature, geo)).verdict == NOT_MEASURED
    geo = geo.assign_coords(loss=("config", ["infonce"] * geo.sizes["config"]), init=("config", ["normal"] * geo.sizes["config"]))
    cubes = Cubes(tiny_cubes.dynamics, tiny_cubes.curvature, geo)
    acc = geo["probe_accuracy_mean"].sel(probe="linear", target="rotation")
    expected = SUPPORTED if bool(((acc.sel(space="z") - acc.sel(space="h")) > 0).all()) else NOT_SUPPORTED
    assert verdict("guillotine", cubes).verdict == expected
    geo["probe_accuracy_mean"].loc[{"probe": "linear", "target": "rotation", "space": "z"}] = 0.9
    geo["probe_accuracy_mean"].loc[{"probe": "linear", "target": "rotation", "space": "h"}] = 0.3
    assert verdict("guillotine", cubes).verdict == SUPPORTED
    geo["probe_accuracy_mean"].loc[{"probe": "linear", "target": "rotation", "space": "h"}] = 0.95
    assert verdict("guillotine", cubes).verdict == NOT_SUPPORTED
    comp = geo["orbit_compression"]
    comp.loc[{"head": "trained"}] = 5.0
    comp.loc[{"head": "untrained"}] = 1.1
    assert verdict("orbit_compression", cubes).verdict == SUPPORTED
    comp.loc[{"head": "untrained"}] = 6.0
    assert verdict("orbit_compression", cubes).verdict == NOT_SUPPORTED


def test_claims_files_are_written(tiny_workdir_results: Path) -> None:
    md = (tiny_workdir_results / "results" / "claims.md").read_text()
    for claim in CLAIMS:
        assert claim.statement.replace("|", "\\|") in md, claim.id
    assert "<table>" in (tiny_workdir_results / "results" / "claims.html").read_text()
