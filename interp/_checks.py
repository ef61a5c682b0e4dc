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


def int_list(value: str) -> list[int]:
    """Comma-separated integers with ranges, ``"0,2-4,-3--1"`` -> ``[0, 2, 3, 4, -3, -2, -1]`` (a range ``a-b`` is
    inclusive, as layers are named in papers; a negative number counts from the end, in a range too: ``-3--1`` is
    the last three).

    Raises:
        ValueError: an empty part, a part that is neither an integer nor such a range, a range running backwards
            (``"3-1"``, ``"-1--3"``) or mixing the two countings (``"2--1"``: its length depends on the model);
            the caller words the message for its flag.
    """
    import re

    out: list[int] = []
    for part in (x.strip() for x in value.split(",")):
        span = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        if span:
            a, b = int(span.group(1)), int(span.group(2))
            if (a < 0) != (b < 0):
                raise ValueError(f"range {part!r} mixes a block index with one counted from the end")
            if a > b:
                raise ValueError(f"range {part!r} runs backwards")
            out += range(a, b + 1)
        else:
            out.append(int(part))  # ValueError for anything else (an empty part too)
    return out


def output_folder_problem(out) -> str | None:
    """Why ``out`` cannot be a folder to write into, as the end of a sentence starting with the path; ``None`` when
    it can (it exists as a folder, or its nearest existing parent is a writable folder). Checked before any work, so
    that a bad path fails in a second rather than after the work.

    >>> output_folder_problem("")
    'is empty: name a folder (an empty path would write into the current folder)'
    """
    import os
    from pathlib import Path

    if not str(out).strip():
        return "is empty: name a folder (an empty path would write into the current folder)"
    path = Path(out)
    if path.exists() and not path.is_dir():
        return "is a file"
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():  # a parent that is a file
        return f"is under {existing}, which is a file"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written: {existing} is not writable"
    if existing is not None:  # access() can say yes where creating fails (/proc, a read-only mount): try it
        import tempfile

        try:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".interp-check-"))
        except OSError as e:
            return f"cannot be written: no folder can be created in {existing} ({e.strerror})"
    return None
