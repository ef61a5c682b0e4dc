"""Machine- and version-independent pseudo-random choices, from sha256.

The built-in sets draw their false answers, their number pairs and their
train/test splits from these helpers instead of :mod:`random`, whose
``shuffle``/``choice`` are not guaranteed to give the same sequence across
Python versions. A choice depends only on its salt and on the items' ``str``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import NamedTuple, TypeVar

__all__ = ["Row", "stable_hash", "ranked", "held_out_groups"]

T = TypeVar("T")


class Row(NamedTuple):
    """One generated row of a built-in set; ``meta["group"]`` names its fact."""

    text: str
    label: int
    meta: dict


def stable_hash(*parts: object) -> int:
    """A 64-bit integer from the ``str`` of ``parts``; the same on every machine.

    >>> stable_hash("truth", "Paris") == stable_hash("truth", "Paris")
    True
    >>> stable_hash("a", "bc") == stable_hash("ab", "c")
    False
    """
    payload = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")


def ranked(items: Iterable[T], *salt: object) -> list[T]:
    """``items`` in a fixed pseudo-random order determined by ``salt``.

    >>> ranked(range(5), "demo") == ranked(range(5), "demo")
    True
    >>> sorted(ranked(range(5), "demo"))
    [0, 1, 2, 3, 4]
    """
    return sorted(items, key=lambda x: (stable_hash(*salt, x), str(x)))


def held_out_groups(
    rows: Sequence[Row], salt: str, fraction: float, stratum: Callable[[dict], Hashable] = lambda m: "all"
) -> frozenset[str]:
    """The groups that go to the test split: ``fraction`` of each stratum's groups.

    Each stratum (e.g. statement kind, request category) gets
    ``round(fraction * n_groups)`` test groups (at least one, and never all of
    them when it has two or more), ranked by :func:`ranked`.
    """
    by_stratum: dict[Hashable, dict[str, None]] = {}
    for row in rows:
        by_stratum.setdefault(stratum(row.meta), {})[row.meta["group"]] = None
    test: set[str] = set()
    for key, groups in by_stratum.items():
        n = len(groups)
        n_test = max(1, int(fraction * n + 0.5))
        if n >= 2:
            n_test = min(n_test, n - 1)
        test.update(ranked(groups, salt, key)[:n_test])
    return frozenset(test)
