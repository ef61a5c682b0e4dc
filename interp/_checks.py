"""Argument checks shared by the public entry points of ``interp`` and ``steering``."""

from __future__ import annotations

import operator


def check_int(name: str, value, low: int = 1) -> int:
    """``value`` as an int of at least ``low`` (anything ``range`` takes: numpy and 0-d tensor integers too).

    Raises:
        TypeError: not an integer (``None``, ``1.5``, a string, a bool).
        ValueError: below ``low``.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}") from None
    if n < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return n
