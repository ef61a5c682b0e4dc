"""The toolkit's built-in prompt sets, generated from the tables of :mod:`._world` and :mod:`._facts`.

Every set has fixed train/test splits (about a quarter of each stratum in
test). Rows that come from the same underlying fact (a statement and its false
twin, one request in several framings, one sentence in four languages) share
``meta["group"]`` and always land in the same split, so the test split holds
facts never seen in training. Splits and generated choices come from sha256
(:mod:`._stable`), so they are the same on every machine and Python version.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from . import _world as W
from ._facts import fact_rows, organism_fact_rows
from ._instructions import HARMFUL, HARMLESS, instruction_rows
from ._languages import language_rows
from ._promptset import PromptSet
from ._record import record
from ._stable import Row, held_out_groups
from ._truth import truth_rows

__all__ = ["load", "available", "describe", "TEST_FRACTION"]

Split = Literal["train", "test", "all"]
SPLITS = ("train", "test", "all")
#: Share of each stratum's groups held out for the test split.
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class _Spec:
    rows: Callable[[], list[Row]]
    label_names: tuple[str, ...] | None  # None: an unlabelled set
    stratum: Callable[[dict], Hashable]  # test groups are drawn per stratum
    doc: str


_SETS: dict[str, _Spec] = {
    "truth": _Spec(
        truth_rows, ("false", "true"), lambda m: m["kind"],
        "true/false one-sentence statements (city locations, number comparisons, Spanish words); "
        "label 1 = true, meta['kind']",
    ),
    "harmful": _Spec(
        lambda: instruction_rows(HARMFUL), None, lambda m: m["category"],
        "harmful requests (weapons, hacking, fraud, drugs, violence, harassment, theft), unlabelled, "
        "meta['category']",
    ),
    "harmless": _Spec(
        lambda: instruction_rows(HARMLESS), None, lambda m: m["category"],
        "everyday requests (cooking, travel, writing, science, math, programming, health, home), unlabelled, "
        "meta['category']",
    ),
    "languages": _Spec(
        language_rows, W.LANGUAGES, lambda m: m["predicate"],
        "the same sentences in English, French, German and Spanish; label = language, meta['pair_id']",
    ),
    "facts": _Spec(
        fact_rows, None, lambda m: m["relation"],
        "prompts ending right before a known answer (country -> capital, city -> country, country -> language, "
        "element -> symbol), 2-3 phrasings per fact, unlabelled; meta['subject'], meta['answer'] (leading space "
        "included), meta['alternatives'] (3 wrong answers), meta['relation']",
    ),
}
_COMBINED = {
    "refusal": "harmless (0) and harmful (1) requests together, with the splits of those two sets",
}
_ORGANISM = ("truth", "harmful", "harmless", "refusal", "languages", "facts")
_ORGANISM_DOCS = {
    "facts": "the model organism's planted city facts as prompts (The city of Lyon is in -> ' France', also in German "
             "and Spanish), meta as in 'facts'; test = the cities whose truth judgements it never saw",
}


@lru_cache(maxsize=None)
def _generated(name: str) -> tuple[tuple[Row, ...], frozenset[str]]:
    """The rows of a generated set and the groups of its test split."""
    spec = _SETS[name]
    rows = tuple(spec.rows())
    return rows, held_out_groups(rows, f"split/{name}", TEST_FRACTION, spec.stratum)


def _build(name: str, split: Split) -> PromptSet:
    rows, test = _generated(name)
    if split != "all":
        rows = tuple(r for r in rows if (r.meta["group"] in test) == (split == "test"))
    labelled = _SETS[name].label_names is not None
    return PromptSet(
        name=f"{name}/{split}",
        texts=tuple(r.text for r in rows),
        labels=tuple(r.label for r in rows) if labelled else None,
        label_names=_SETS[name].label_names,
        meta=tuple(r.meta for r in rows),
        source=f"builtin:{name}",
    )


def _refusal(split: Split) -> PromptSet:
    parts = [_build("harmless", split), _build("harmful", split)]
    return PromptSet(
        name=f"refusal/{split}",
        texts=tuple(t for p in parts for t in p.texts),
        labels=tuple(k for k, p in enumerate(parts) for _ in p.texts),
        label_names=("harmless", "harmful"),
        meta=tuple(m for p in parts for m in p.meta),
        source="builtin:refusal",
    )


def _organism(name: str, split: Split) -> PromptSet:
    """The bundled model organism's sets (``organism/truth`` ...); test = rows held out of its training."""
    from ..organism import datasets as organism_sets

    key = name.split("/", 1)[1]
    if key == "facts":
        return _organism_facts(split)
    if split == "all":
        train, test = organism_sets("train")[key], organism_sets("test")[key]
        return PromptSet.concat(train, test, name=f"{name}/all")
    return organism_sets(split)[key]


def _organism_facts(split: Split) -> PromptSet:
    """``organism/facts``: every city's fact was in the organism's corpus; the test split holds the cities whose
    true/false judgements were held out of its training (those of ``organism/truth``'s test split)."""
    from ..organism import datasets as organism_sets

    rows = tuple(organism_fact_rows())
    if split != "all":
        held = {m["group"] for m in organism_sets("test")["truth"].meta if m["kind"] == "cities"}
        rows = tuple(r for r in rows if (r.meta["subject"] in held) == (split == "test"))
    return PromptSet(name=f"organism/facts/{split}", texts=tuple(r.text for r in rows),
                     meta=tuple(r.meta for r in rows), source="organism")


def available() -> list[str]:
    """Names of the built-in sets; ``organism/...`` are the bundled model organism's own.

    >>> available()[:6]
    ['truth', 'harmful', 'harmless', 'languages', 'facts', 'refusal']
    """
    return [*_SETS, *_COMBINED, *(f"organism/{k}" for k in _ORGANISM)]


def _check_name(name: str) -> None:
    if name not in available():
        raise ValueError(f"unknown built-in set {name!r}; available: {', '.join(available())}")


def describe(name: str) -> str:
    """One line on what a built-in set holds.

    >>> describe("refusal")
    'harmless (0) and harmful (1) requests together, with the splits of those two sets'
    """
    _check_name(name)
    if name in _COMBINED:
        return _COMBINED[name]
    if name.startswith("organism/"):
        if name.split("/", 1)[1] in _ORGANISM_DOCS:
            return _ORGANISM_DOCS[name.split("/", 1)[1]]
        return f"the model organism's {name.split('/', 1)[1]} prompts; test = rows held out of its training"
    return _SETS[name].doc


def load(name: str, split: Split = "all") -> PromptSet:
    """A built-in prompt set, whole or one of its fixed splits.

    Args:
        name: one of :func:`available` (see :func:`describe`).
        split: ``"train"``, ``"test"`` or ``"all"`` (train and test together).

    Raises:
        ValueError: an unknown name or split.

    >>> truth = load("truth", "test")
    >>> truth.name, truth.label_names, truth.class_counts()
    ('truth/test', ('false', 'true'), {'false': 74, 'true': 74})
    >>> truth[0]["text"], truth[0]["label"], truth[0]["meta"]["kind"]
    ('The city of Lyon is in France.', 1, 'cities')
    >>> fact = load("facts")[0]
    >>> fact["text"], fact["meta"]["answer"], fact["meta"]["alternatives"], fact["meta"]["group"]
    ('The capital city of France is called', ' Paris', (' Accra', ' Rabat', ' Tehran'), 'capital:France')
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if name.startswith("organism/"):
        return record(_organism(name, split), split)
    if name == "refusal":
        return record(_refusal(split), split)
    return record(_build(name, split), split)
