"""Argument checks shared by the public entry points of ``interp`` and ``steering``."""

from __future__ import annotations

import operator


def as_int(value) -> int | None:
    """``value`` as an int when it is an integer (anything ``range`` takes: numpy and 0-d tensor integers too),
    else ``None`` (a float, a string, ``None``, and a bool, which is an int only by accident)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_int(name: str, value, low: int = 1) -> int:
    """``value`` as an int of at least ``low`` (see :func:`as_int`).

    Raises:
        TypeError: not an integer (``None``, ``1.5``, a string, a bool).
        ValueError: below ``low``.
    """
    n = as_int(value)
    if n is None:
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}")
    if n < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return n
