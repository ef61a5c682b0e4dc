"""PromptSet: prompts with optional integer labels and per-row metadata."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = ["PromptSet"]


@dataclass(frozen=True)
class PromptSet:
    """An ordered set of prompts, optionally labelled.

    Attributes:
        name: e.g. ``"truth/test"``.
        texts: the prompts.
        labels: integer class of each row, or ``None`` if unlabelled.
        label_names: ``label_names[k]`` names class ``k`` (e.g. ``("false", "true")``).
        meta: per-row JSON-ready dicts (category, language, source columns...).
        source: where the rows came from (``"builtin:truth"`` or a file path).

    >>> ps = PromptSet.from_classes("demo", {"no": ["a", "b"], "yes": ["c"]})
    >>> len(ps), ps.labels, ps.label_names
    (3, (0, 0, 1), ('no', 'yes'))
    >>> ps[[2]].texts
    ('c',)
    """

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    label_names: tuple[str, ...] | None = None
    meta: tuple[dict, ...] | None = None
    source: str = ""

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if isinstance(self.texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        set_("texts", tuple(self.texts))
        for i, t in enumerate(self.texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"{self.name}: row {i} has an empty or non-string text: {t!r}")
        n = len(self.texts)
        if self.label_names is not None:
            set_("label_names", tuple(str(x) for x in self.label_names))
        if self.labels is not None:
            labels = []
            for i, y in enumerate(self.labels):
                try:
                    if isinstance(y, bool):
                        raise TypeError
                    labels.append(operator.index(y))
                except TypeError:
                    raise ValueError(f"{self.name}: label of row {i} is not an integer: {y!r}") from None
            if len(labels) != n:
                raise ValueError(f"{self.name}: {len(labels)} labels for {n} texts")
            if self.label_names is not None:
                bad = [y for y in labels if not 0 <= y < len(self.label_names)]
                if bad:
                    raise ValueError(
                        f"{self.name}: label {bad[0]} outside 0..{len(self.label_names) - 1} "
                        f"(label_names {self.label_names})"
                    )
            set_("labels", tuple(labels))
        if self.meta is not None:
            set_("meta", tuple(dict(m) for m in self.meta))
            if len(self.meta) != n:
                raise ValueError(f"{self.name}: {len(self.meta)} meta rows for {n} texts")

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self):
        return iter(self.texts)

    def __getitem__(self, key):
        """An int gives a row dict; a slice or a sequence of ints gives a subset."""
        if isinstance(key, slice):
            idx = list(range(len(self)))[key]
        elif hasattr(key, "__index__") and not hasattr(key, "__len__"):
            i = operator.index(key)
            return {
                "text": self.texts[i],
                "label": None if self.labels is None else self.labels[i],
                "meta": {} if self.meta is None else self.meta[i],
            }
        else:
            idx = [operator.index(i) for i in key]
        pick = lambda xs: None if xs is None else tuple(xs[i] for i in idx)  # noqa: E731
        return replace(self, texts=pick(self.texts), labels=pick(self.labels), meta=pick(self.meta))

    def class_counts(self) -> dict[str, int]:
        """Rows per class name (or per label value when unnamed)."""
        if self.labels is None:
            return {}
        counts = Counter(self.labels)
        name = (lambda k: self.label_names[k]) if self.label_names else str
        return {name(k): counts[k] for k in sorted(counts)}

    def to_records(self) -> list[dict]:
        return [self[i] for i in range(len(self))]

    # -------------------------------------------------------------- transforms
    def map_texts(self, fn: Callable[[str], str]) -> PromptSet:
        """New set with ``fn`` applied to every text; the original goes to ``meta["raw_text"]``."""
        meta = [dict(m) for m in (self.meta or [{}] * len(self))]
        for m, t in zip(meta, self.texts):
            m.setdefault("raw_text", t)
        return replace(self, texts=tuple(fn(t) for t in self.texts), meta=tuple(meta))

    def split(self, test_size: float = 0.25, random_state: int = 0, stratify: bool = True) -> tuple[PromptSet, PromptSet]:
        """Deterministic train/test split, stratified on labels when there are any."""
        from sklearn.model_selection import train_test_split

        idx = list(range(len(self)))
        strat = self.labels if (stratify and self.labels is not None) else None
        train, test = train_test_split(idx, test_size=test_size, random_state=random_state, stratify=strat)
        a, b = self[sorted(train)], self[sorted(test)]
        return replace(a, name=f"{self.name}/train"), replace(b, name=f"{self.name}/test")

    @classmethod
    def from_classes(cls, name: str, classes: Mapping[str, Sequence[str]], source: str = "") -> PromptSet:
        """Labelled set from ``class name -> texts``; labels follow the mapping's order."""
        texts, labels = [], []
        for k, rows in enumerate(classes.values()):
            texts += list(rows)
            labels += [k] * len(rows)
        return cls(name=name, texts=tuple(texts), labels=tuple(labels), label_names=tuple(classes), source=source)

    @classmethod
    def concat(cls, *sets: PromptSet, name: str | None = None) -> PromptSet:
        """Concatenate sets that share label names (or are all unlabelled)."""
        if not sets:
            raise ValueError("concat needs at least one PromptSet")
        names = {s.label_names for s in sets}
        labelled = {s.labels is not None for s in sets}
        if len(names) > 1 or len(labelled) > 1:
            raise ValueError(f"cannot concatenate sets with different labels: {sorted(map(str, names))}")
        has_meta = any(s.meta is not None for s in sets)
        return cls(
            name=name or "+".join(s.name for s in sets),
            texts=tuple(t for s in sets for t in s.texts),
            labels=tuple(y for s in sets for y in s.labels) if labelled == {True} else None,
            label_names=sets[0].label_names,
            meta=tuple(m for s in sets for m in (s.meta or [{}] * len(s))) if has_meta else None,
            source=",".join(dict.fromkeys(s.source for s in sets if s.source)),
        )
