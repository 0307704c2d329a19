"""Pick configurations out of a combined cube by their labelled ``config`` coordinates.

Every cube combined along ``config`` carries the run's settings as coordinates (``loss``,
``activation``, ``depth``, ``batchnorm``, ``init``, ``lr``, ``seed``). Figures, claims and metrics
select runs only through these helpers, so "the SimSiam runs at the base learning rate" means the
same thing everywhere:

* the *base* setting of a loss is depth, BatchNorm and learning rate each at the value most of that
  loss's runs use (ties: the smaller value), so ablation runs (other depths, BatchNorm, other learning
  rates) never leak into the main comparison;
* a *group* is the set of seeds of one setting; curves are drawn as the seed mean with a min–max band.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ACTIVATIONS", "LOSS_NORMALIZATION", "SETTING_KEYS", "base", "base_setting", "groups", "losses", "prefer", "select", "values"]

LOSS_NORMALIZATION: dict[str, str] = {"simsiam": "l2", "byol": "l2", "ntxent": "l2", "infonce": "l2", "vicreg": "none", "barlow": "none"}
"""What each loss sees of the head output: its L2 direction (cosine losses) or the raw vector (VICReg, Barlow Twins)."""
SETTING_KEYS: tuple[str, ...] = ("loss", "activation", "depth", "batchnorm", "init", "lr")
ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "gelu", "swish")


def _coord(cube: xr.Dataset, key: str) -> np.ndarray:
    return np.asarray(cube[key].values)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def select(cube: xr.Dataset, **where: Any) -> xr.Dataset:
    """The configs whose coordinates equal every ``where`` value (a list/tuple value means "any of").

    Returns a cube with a possibly empty ``config`` dimension.
    """
    mask = np.ones(cube.sizes["config"], dtype=bool)
    for key, want in where.items():
        if want is None:
            continue
        have = _coord(cube, key)
        options = list(want) if isinstance(want, list | tuple | set) else [want]
        mask &= np.isin(have, options)
    return cube.isel(config=np.flatnonzero(mask))


def values(cube: xr.Dataset, key: str) -> list[Any]:
    """Distinct values of one config coordinate, activations in the paper's order, others sorted."""
    found = {_plain(v) for v in _coord(cube, key)} if cube.sizes.get("config", 0) else set()
    if key == "activation":
        return [a for a in ACTIVATIONS if a in found] + sorted(found - set(ACTIVATIONS))
    return sorted(found, key=lambda v: (str(type(v)), v))


def losses(cube: xr.Dataset) -> list[str]:
    """Losses in the order they first appear in the cube (the sweep's order)."""
    return list(dict.fromkeys(str(v) for v in _coord(cube, "loss")))


def _mode(items: Iterable[Any]) -> Any:
    counts = Counter(_plain(v) for v in items)
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)


def base_setting(cube: xr.Dataset, loss: str) -> dict[str, Any]:
    """Depth, BatchNorm and learning rate most runs of ``loss`` use (ties: the smaller value)."""
    sub = select(cube, loss=loss)
    if sub.sizes["config"] == 0:
        raise KeyError(f"no runs with loss {loss!r}; losses present: {losses(cube)}")
    return {key: _mode(_coord(sub, key)) for key in ("depth", "batchnorm", "lr")}


def base(cube: xr.Dataset, loss: str, **where: Any) -> xr.Dataset:
    """Runs of ``loss`` at its base setting, further filtered by ``where``."""
    return select(cube, loss=loss, **{**base_setting(cube, loss), **where})


def groups(cube: xr.Dataset, keys: Iterable[str] = SETTING_KEYS) -> Iterator[tuple[Mapping[str, Any], xr.Dataset]]:
    """``(setting, runs)`` for each distinct combination of ``keys`` (the remaining runs are seeds)."""
    keys = tuple(keys)
    if cube.sizes.get("config", 0) == 0:
        return
    columns = [[_plain(v) for v in _coord(cube, k)] for k in keys]
    seen = dict.fromkeys(zip(*columns, strict=True))
    order = {k: values(cube, k) for k in keys}
    for combo in sorted(seen, key=lambda c: tuple(order[k].index(v) for k, v in zip(keys, c, strict=True))):
        setting = dict(zip(keys, combo, strict=True))
        yield setting, select(cube, **setting)


def prefer(cube: xr.Dataset, key: str, *preferred: Any) -> Any:
    """The first of ``preferred`` present in ``key``, else the first value present (None if no runs)."""
    present = values(cube, key)
    for want in preferred:
        if want in present:
            return want
    return present[0] if present else None
