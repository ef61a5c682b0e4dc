"""Rows of the built-in ``truth`` set: true and false one-sentence statements.

Three kinds (``meta["kind"]``), each half true and half false:

* ``cities``: ``The city of Lyon is in France.`` and the same city placed in
  another country (never one with a well-known namesake, see
  :data:`~._world.NAMESAKES`);
* ``numbers``: ``Seventy-two is larger than fifteen.`` and ``... smaller than
  ...`` for the same ordered pair, so truth follows from ``meta["n1"]`` and
  ``meta["n2"]``;
* ``translation``: ``The Spanish word 'perro' means 'dog'.`` and the word with
  another meaning from the same table.

Rows about the same city, number pair or word share ``meta["group"]``.
"""

from __future__ import annotations

from itertools import combinations

from . import _world as W
from ._stable import Row, ranked, stable_hash

__all__ = ["truth_rows", "N_NUMBER_PAIRS"]

#: Unordered pairs of two-digit numbers drawn for the comparisons.
N_NUMBER_PAIRS = 70


def _city_rows() -> list[Row]:
    rows = []
    for city, country in W.CITIES:
        excluded = {country, *W.NAMESAKES.get(city, ())}
        wrong = ranked([c for c in W.COUNTRIES if c not in excluded], "truth/wrong-country", city)[0]
        base = {"kind": "cities", "group": f"city:{city}", "city": city, "correct_country": country}
        rows.append(Row(f"The city of {city} is in {country}.", 1, {**base, "country": country}))
        rows.append(Row(f"The city of {city} is in {wrong}.", 0, {**base, "country": wrong}))
    return rows


def _number_rows() -> list[Row]:
    pairs = ranked(combinations(range(10, 100), 2), "truth/number-pairs")[:N_NUMBER_PAIRS]
    rows = []
    for lo, hi in sorted(pairs):
        a, b = (hi, lo) if stable_hash("truth/number-order", lo, hi) % 2 else (lo, hi)
        x, y = W.NUMBER_WORDS[a].capitalize(), W.NUMBER_WORDS[b]
        base = {"kind": "numbers", "group": f"numbers:{lo}-{hi}", "n1": a, "n2": b}
        rows.append(Row(f"{x} is larger than {y}.", int(a > b), {**base, "relation": "larger"}))
        rows.append(Row(f"{x} is smaller than {y}.", int(a < b), {**base, "relation": "smaller"}))
    return rows


def _translation_rows() -> list[Row]:
    meanings = [en for _, en in W.SPANISH_WORDS]
    rows = []
    for word, meaning in W.SPANISH_WORDS:
        wrong = ranked([m for m in meanings if m != meaning], "truth/wrong-meaning", word)[0]
        base = {"kind": "translation", "group": f"translation:{word}", "word": word, "correct_meaning": meaning}
        rows.append(Row(f"The Spanish word '{word}' means '{meaning}'.", 1, {**base, "meaning": meaning}))
        rows.append(Row(f"The Spanish word '{word}' means '{wrong}'.", 0, {**base, "meaning": wrong}))
    return rows


def truth_rows() -> list[Row]:
    """All statements, grouped by kind; label 1 = true."""
    return [*_city_rows(), *_number_rows(), *_translation_rows()]
