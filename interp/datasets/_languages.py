"""Rows of the built-in ``languages`` set: one sentence in English, French, German and Spanish.

A content is a subject (a whole noun phrase with its article, per language)
and a predicate that needs no agreement with it, from :mod:`._world`. The four
translations of a content share ``meta["pair_id"]`` and ``meta["group"]``.
"""

from __future__ import annotations

from . import _world as W
from ._stable import Row

__all__ = ["language_rows"]


def language_rows() -> list[Row]:
    """Every subject x predicate in every language; label = index in :data:`~._world.LANGUAGES`."""
    rows = []
    for s, subject in enumerate(W.SUBJECTS):
        for p, predicate in enumerate(W.PREDICATES):
            pair_id = s * len(W.PREDICATES) + p
            for k, lang in enumerate(W.LANGUAGES):
                meta = {"language": lang, "pair_id": pair_id, "group": f"pair:{pair_id}", "subject": s, "predicate": p}
                rows.append(Row(f"{subject[lang]} {predicate[lang]}", k, meta))
    return rows
