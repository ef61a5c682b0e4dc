"""Checks of numeric options: a ``TypeError`` for a value of the wrong type, a ``ValueError`` naming the valid range."""

from __future__ import annotations

import math
import operator


def check_number(name: str, value, ok, valid: str) -> None:
    """``value`` is a real number (not a bool or a string; a one-element array or tensor passes) that is finite
    with ``ok(value)``, else raise; ``valid`` says what is valid (``"positive and finite"``, ``"a finite number
    >= 0"``)."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None
    if not math.isfinite(number) or not ok(number):
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def check_integer(name: str, value, low: int) -> None:
    """``value`` is an integer (anything ``range`` takes, not a bool) of at least ``low``, else raise."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if number < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
