"""Argument checks shared by the library: clear ValueErrors naming the argument and what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def float_tensor(name: str, value: object, ndim: int) -> Any:
    """Return ``value`` if it is a floating torch tensor with ``ndim`` dims, else raise a ValueError naming it."""
    from torch import Tensor  # lazy: the rest of this module serves torch-free callers too

    if not isinstance(value, Tensor) or value.ndim != ndim or not value.is_floating_point():
        raise ValueError(
            f"{name} must be a floating tensor with {ndim} dims, got {type(value).__name__} "
            f"{getattr(value, 'dtype', '')} {tuple(getattr(value, 'shape', ()))}"
        )
    return value


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int (bools excluded), else raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def dataclass_from_mapping(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """Build the dataclass ``cls`` from a mapping of its fields; unknown keys are a ValueError listing the allowed ones.

    Args:
        cls: A dataclass type.
        d: Field values (``None``: all defaults).
        what: What the mapping is, for messages (e.g. ``"analysis settings"``).
    """
    if d is None:
        return cls()
    if not isinstance(d, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(d).__name__}")
    allowed = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {allowed}")
    return cls(**dict(d))
