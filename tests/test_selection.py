"""geomhead.selection: picking runs by their labelled config coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from geomhead import selection as sel


def cube(rows: list[dict]) -> xr.Dataset:
    coords = {k: ("config", [r[k] for r in rows]) for k in (*sel.SETTING_KEYS, "seed")}
    ids = [f"run{i}" for i in range(len(rows))]
    return xr.Dataset({"x": ("config", np.arange(len(rows), dtype=float))}, coords={"config": ids, **coords})


def row(**kw) -> dict:
    return {"loss": "simsiam", "activation": "relu", "depth": 2, "batchnorm": 0, "init": "collapsed", "lr": 0.05, "seed": 0, **kw}


@pytest.fixture
def runs() -> xr.Dataset:
    return cube(
        [
            row(activation="swish"),
            row(activation="swish", seed=1),
            row(),
            row(batchnorm=1),
            row(lr=0.5),
            row(loss="infonce", activation="linear", init="normal"),
            row(loss="infonce", activation="gelu", init="normal", depth=3),
        ]
    )


def test_select_matches_every_key_and_lists(runs: xr.Dataset) -> None:
    assert list(sel.select(runs, activation="swish")["config"].values) == ["run0", "run1"]
    assert sel.select(runs, loss="simsiam", activation=["relu", "swish"], batchnorm=0, lr=0.05).sizes["config"] == 3
    assert sel.select(runs, loss="barlow").sizes["config"] == 0
    assert sel.select(runs, depth=None).sizes["config"] == runs.sizes["config"], "None means no filter"


def test_base_setting_is_the_most_common_and_ties_take_the_smaller(runs: xr.Dataset) -> None:
    assert sel.base_setting(runs, "simsiam") == {"depth": 2, "batchnorm": 0, "lr": 0.05}
    assert sel.base_setting(runs, "infonce")["depth"] == 2, "tie between depth 2 and 3 takes 2"
    assert list(sel.base(runs, "simsiam")["config"].values) == ["run0", "run1", "run2"]
    with pytest.raises(KeyError, match="losses present"):
        sel.base_setting(runs, "vicreg")


def test_values_order_activations_as_the_paper_and_groups_follow_it(runs: xr.Dataset) -> None:
    assert sel.values(runs, "activation") == ["linear", "relu", "gelu", "swish"]
    assert sel.losses(runs) == ["simsiam", "infonce"]
    found = [(s["activation"], g.sizes["config"]) for s, g in sel.groups(sel.base(runs, "simsiam"), ("activation",))]
    assert found == [("relu", 1), ("swish", 2)]
    assert list(sel.groups(runs.isel(config=[]))) == []


def test_prefer_falls_back_to_the_first_present(runs: xr.Dataset) -> None:
    assert sel.prefer(runs, "init", "collapsed") == "collapsed"
    assert sel.prefer(sel.select(runs, loss="infonce"), "init", "collapsed") == "normal"
    assert sel.prefer(runs.isel(config=[]), "init", "normal") is None
