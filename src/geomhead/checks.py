"""Argument checks shared by the library: clear ValueErrors naming the argument and what is allowed."""

from __future__ import annotations


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int (bools excluded), else raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
