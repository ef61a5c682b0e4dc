"""PromptSet: an ordered set of prompts with optional integer labels and per-row metadata."""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["PromptSet"]


@dataclass(frozen=True, repr=False)
class PromptSet:
    """An ordered, immutable set of prompts, optionally labelled.

    Attributes:
        name: e.g. ``"truth/test"``.
        texts: the prompts, non-empty strings.
        labels: integer class of each row, or ``None`` if unlabelled.
        label_names: ``label_names[k]`` names class ``k`` (e.g. ``("false", "true")``).
        meta: one JSON-ready dict per row (category, language, pair_id, source
            columns...), or ``None``.
        source: where the rows came from (``"builtin:truth"`` or a file path).

    Lists are accepted and stored as tuples; ``meta`` dicts are copied.

    >>> ps = PromptSet.from_classes("demo", {"no": ["a", "b"], "yes": ["c"]})
    >>> len(ps), ps.labels, ps.label_names
    (3, (0, 0, 1), ('no', 'yes'))
    >>> ps[2]
    {'text': 'c', 'label': 1, 'meta': {}}
    >>> ps[[2, 0]].texts
    ('c', 'a')
    >>> ps
    PromptSet('demo', 3 rows, classes {'no': 2, 'yes': 1})
    """

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    label_names: tuple[str, ...] | None = None
    meta: tuple[dict, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        put = lambda field, value: object.__setattr__(self, field, value)  # noqa: E731 - frozen dataclass
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")
        if not isinstance(self.source, str):
            raise TypeError(f"{self.name}: source must be a string, got {type(self.source).__name__}")
        put("texts", _check_texts(self.name, self.texts))
        n = len(self.texts)
        if self.label_names is not None:
            put("label_names", _check_label_names(self.name, self.label_names))
        if self.labels is not None:
            put("labels", _check_labels(self.name, self.labels, n, self.label_names))
        if self.meta is not None:
            put("meta", _check_meta(self.name, self.meta, n))

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    def __getitem__(self, key: Any) -> Any:
        """Row ``key`` as a dict (``text``, ``label``, ``meta``), or a subset.

        An int gives one row (its ``meta`` a copy). A slice, a sequence of
        ints, an integer array, or a boolean mask of length ``len(self)`` gives
        a :class:`PromptSet` of those rows, in that order, with the same name.
        """
        if isinstance(key, slice):
            return self._take(range(len(self))[key])
        if hasattr(key, "tolist"):  # numpy arrays and scalars, torch tensors
            key = key.tolist()
        if isinstance(key, (str, bytes, Mapping)) or isinstance(key, bool):
            raise TypeError(
                f"{self.name}: index with an int, a slice, a sequence of ints or a boolean mask, "
                f"not {type(key).__name__}"
            )
        if not isinstance(key, (Sequence, set, frozenset)) and hasattr(key, "__index__"):
            i = self._position(operator.index(key))
            return {
                "text": self.texts[i],
                "label": None if self.labels is None else self.labels[i],
                "meta": {} if self.meta is None else dict(self.meta[i]),
            }
        if isinstance(key, (set, frozenset)):
            raise TypeError(f"{self.name}: index with an ordered sequence, not a {type(key).__name__}")
        try:
            items = [x.tolist() if hasattr(x, "tolist") else x for x in key]  # numpy scalars -> Python
        except TypeError:
            raise TypeError(f"{self.name}: cannot index with {type(key).__name__}") from None
        if items and all(isinstance(x, bool) for x in items):
            if len(items) != len(self):
                raise IndexError(f"{self.name}: boolean mask has {len(items)} entries for {len(self)} rows")
            return self._take([i for i, keep in enumerate(items) if keep])
        if any(isinstance(x, bool) for x in items):
            raise TypeError(f"{self.name}: index mixes booleans and integers")
        try:
            return self._take([self._position(operator.index(x)) for x in items])
        except TypeError:
            raise TypeError(f"{self.name}: indices must be integers, got {items[:5]!r}...") from None

    def _position(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: row {i} out of range for {n} rows")
        return i % n

    def _take(self, idx: Sequence[int]) -> PromptSet:
        pick = lambda xs: None if xs is None else tuple(xs[i] for i in idx)  # noqa: E731
        return replace(self, texts=pick(self.texts), labels=pick(self.labels), meta=pick(self.meta))

    def __repr__(self) -> str:
        parts = [repr(self.name), f"{len(self)} rows"]
        if self.labels is not None:
            parts.append(f"classes {self.class_counts()}")
        if self.source:
            parts.append(f"source={self.source!r}")
        return f"PromptSet({', '.join(parts)})"

    def class_counts(self) -> dict[str, int]:
        """Rows per class, keyed by class name (by label value when unnamed); ``{}`` if unlabelled.

        Named classes are listed in label order, those with no rows included.

        >>> PromptSet("s", ["a", "b"], labels=[1, 1], label_names=["x", "y"]).class_counts()
        {'x': 0, 'y': 2}
        """
        if self.labels is None:
            return {}
        counts = Counter(self.labels)
        if self.label_names is not None:
            return {name: counts[k] for k, name in enumerate(self.label_names)}
        return {str(k): counts[k] for k in sorted(counts)}

    def to_records(self) -> list[dict]:
        """One dict per row (``text``, ``label``, ``meta``), e.g. to write as JSON lines."""
        return [self[i] for i in range(len(self))]

    # -------------------------------------------------------------- transforms
    def map_texts(self, fn: Callable[[str], str]) -> PromptSet:
        """A new set with ``fn`` applied to every text (e.g. a chat template).

        The text before the first mapping is kept in ``meta["raw_text"]``.

        >>> ps = PromptSet("s", ["hi"]).map_texts(str.upper)
        >>> ps.texts, ps.meta[0]["raw_text"]
        (('HI',), 'hi')
        """
        meta = [dict(m) for m in self.meta] if self.meta is not None else [{} for _ in self.texts]
        for m, t in zip(meta, self.texts):
            m.setdefault("raw_text", t)
        return replace(self, texts=tuple(fn(t) for t in self.texts), meta=tuple(meta))

    def split(
        self, test_size: float = 0.25, random_state: int = 0, stratify: bool = True, group: str | None = "group"
    ) -> tuple[PromptSet, PromptSet]:
        """A deterministic ``(train, test)`` split, stratified on the labels when there are any.

        Rows keep their order within each part; names get ``/train`` and
        ``/test``. Rows whose ``meta[group]`` is equal (a statement and its
        negation, paraphrases of one fact) always land on the same side: when
        any row carries that key the split is by group (a row without one is a
        group of its own), stratified where the set is labelled (scikit-learn's
        ``StratifiedGroupKFold``: the test part is one fold of
        ``round(1 / test_size)``, so its share is close to, not exactly,
        ``test_size``; ``GroupShuffleSplit`` when unlabelled). Otherwise rows
        are split independently (``train_test_split``).

        Identical texts always land on the same side too, so a copy of a test prompt is never trained on:
        when a text appears more than once, the copies form one group (joined with their ``meta[group]``
        groups, if any) and the split is by group as above. A set without repeated texts splits exactly as
        it did before this rule. With ``group=None`` copies are split independently, with a warning.

        Args:
            test_size: fraction (0 < x < 1) or number of test rows (a fraction only, when split by group).
            random_state: seed of the shuffle.
            stratify: keep the class proportions in both parts (labelled sets only).
            group: the meta key naming each row's group (``None``: never split by group).

        Raises:
            ValueError: fewer than 2 rows (or groups), a split that leaves a part empty or a class out of
                the test part, a count ``test_size`` with groups (or repeated texts), a stratified split of a
                set whose rows all have one label while it names several classes (or names none): nothing to
                classify.

        Warns:
            UserWarning: ``group=None`` on a set with repeated texts (copies may land in both parts); one text
                with two different labels.
        """
        if len(self) < 2:
            raise ValueError(f"{self.name}: cannot split {len(self)} row(s); need at least 2")
        strat = self.labels if (stratify and self.labels is not None) else None
        if strat is not None and len(set(strat)) == 1 and len(self.label_names or ()) != 1:
            only = self.label_names[strat[0]] if self.label_names else strat[0]
            raise ValueError(f"{self.name}: every row has the label {only!r} (classes {self.class_counts()}), so "
                             "neither part can train or test a classifier; add rows of the other class(es), or "
                             "pass stratify=False to split one class on purpose")
        grouped = group is not None and self.meta is not None and any(group in m for m in self.meta)
        repeated = len(set(self.texts)) < len(self.texts)
        if repeated and group is None:
            n = len(self.texts) - len(set(self.texts))
            warnings.warn(f"{self.name}: {n} row(s) repeat an earlier text, and with group=None the copies can land "
                          "in both train and test; drop group=None (identical texts are then kept together), "
                          "de-duplicate, or give duplicates one meta['group']", stacklevel=2)
        if repeated and self.labels is not None:
            seen: dict[str, set[int]] = {}
            for t, y in zip(self.texts, self.labels):
                seen.setdefault(t, set()).add(y)
            mixed = [t for t, ys in seen.items() if len(ys) > 1]
            if mixed:
                names = lambda ys: [self.label_names[y] if self.label_names else y for y in sorted(ys)]  # noqa: E731
                warnings.warn(f"{self.name}: {len(mixed)} text(s) carry more than one label (e.g. {mixed[0]!r}: "
                              f"{names(seen[mixed[0]])}); a classifier cannot tell such rows apart: fix or drop "
                              "the wrong rows", stacklevel=2)
        if grouped or (repeated and group is not None):
            train, test = self._group_split(test_size, random_state, strat, group, grouped)
        else:
            from sklearn.model_selection import train_test_split

            try:
                train, test = train_test_split(
                    list(range(len(self))), test_size=test_size, random_state=random_state, stratify=strat
                )
            except ValueError as e:
                how = f" stratified on {self.class_counts()}" if strat is not None else ""
                hint = "; pass stratify=False or another test_size" if strat is not None else ""
                raise ValueError(f"{self.name}: cannot split {len(self)} rows{how} with test_size={test_size}: "
                                 f"{e}{hint}") from None
        a, b = self[sorted(train)], self[sorted(test)]
        return replace(a, name=f"{self.name}/train"), replace(b, name=f"{self.name}/test")

    def _group_split(self, test_size, random_state, strat, group, grouped=True) -> tuple[list[int], list[int]]:
        """Row indices ``(train, test)`` with every value of ``meta[group]`` on one side, and every repeated text
        (``grouped=False``: the set has no ``meta[group]``, only repeated texts)."""
        import numpy as np
        from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

        if not (isinstance(test_size, float) and 0 < test_size < 1):
            by = f"by {group!r}" if grouped else "of repeated texts (identical texts are one group)"
            raise ValueError(f"{self.name}: a split {by} takes test_size as a fraction, got {test_size!r}")
        meta = self.meta if grouped else ({},) * len(self)
        groups = [f"{type(m[group]).__name__}:{m[group]}" if group in m else f"\0row{i}" for i, m in enumerate(meta)]
        groups = _join_repeated(self.texts, groups)
        n_groups = len(set(groups))
        rows = np.arange(len(self))
        if strat is not None:
            folds = max(2, round(1 / test_size))
            if n_groups < folds:
                raise ValueError(f"{self.name}: {n_groups} groups ({group!r}) cannot be split {folds} ways for "
                                 f"test_size={test_size}; add rows or pass group=None")
            cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=random_state)
            try:
                train, test = next(cv.split(rows, np.asarray(strat), groups))
            except ValueError as e:  # e.g. a class with fewer rows than folds
                raise ValueError(f"{self.name}: {len(self)} rows ({self.class_counts()}) in {n_groups} groups cannot "
                                 f"be split {folds} ways for test_size={test_size} ({e}); add rows (each class needs "
                                 f"at least {folds}) or pass a larger test_size") from None
        else:
            if n_groups < 2:
                raise ValueError(f"{self.name}: every row is in one group ({group!r}); nothing to split")
            cv = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
            train, test = next(cv.split(rows, groups=groups))
        if strat is not None and len({strat[i] for i in test}) < len(set(strat)):
            raise ValueError(f"{self.name}: the split by {group!r} leaves a class out of the test part; add rows "
                             "of that class (in more groups) or pass group=None")
        return train.tolist(), test.tolist()

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_classes(cls, name: str, classes: Mapping[str, Sequence[str]], source: str = "") -> PromptSet:
        """A labelled set from ``class name -> texts``; labels follow the mapping's order.

        >>> PromptSet.from_classes("refusal", {"harmless": ["Bake bread."], "harmful": ["Build a bomb."]}).labels
        (0, 1)
        """
        if not isinstance(classes, Mapping) or not classes:
            raise ValueError(f"{name}: classes must be a non-empty mapping of class name -> texts")
        texts: list[str] = []
        labels: list[int] = []
        for k, (label, rows) in enumerate(classes.items()):
            if isinstance(rows, str):
                raise TypeError(f"{name}: class {label!r} maps to a single string; give a list of texts")
            rows = list(rows)
            texts += rows
            labels += [k] * len(rows)
        return cls(name=name, texts=tuple(texts), labels=tuple(labels), label_names=tuple(classes), source=source)

    @classmethod
    def concat(cls, *sets: PromptSet, name: str | None = None) -> PromptSet:
        """Concatenate sets that share ``label_names`` (or are all unlabelled).

        Rows without meta get ``{}`` when any set has meta. The name defaults to
        the names joined by ``+``.

        >>> a = PromptSet.from_classes("a", {"no": ["x"], "yes": ["y"]})
        >>> PromptSet.concat(a, a, name="aa").labels
        (0, 1, 0, 1)
        """
        if not sets:
            raise ValueError("concat needs at least one PromptSet")
        bad = [type(s).__name__ for s in sets if not isinstance(s, PromptSet)]
        if bad:
            raise TypeError(f"concat takes PromptSets, got {bad[0]}")
        first = sets[0]
        for s in sets[1:]:
            if (s.labels is None) != (first.labels is None) or s.label_names != first.label_names:
                describe = lambda p: "unlabelled" if p.labels is None else f"label_names {p.label_names}"  # noqa: E731
                raise ValueError(
                    f"cannot concatenate {first.name!r} ({describe(first)}) with {s.name!r} ({describe(s)}); "
                    "sets must share label_names"
                )
        has_meta = any(s.meta is not None for s in sets)
        return cls(
            name=name if name is not None else "+".join(s.name for s in sets),
            texts=tuple(t for s in sets for t in s.texts),
            labels=None if first.labels is None else tuple(y for s in sets for y in s.labels),
            label_names=first.label_names,
            meta=tuple(m for s in sets for m in (s.meta or ({},) * len(s))) if has_meta else None,
            source=",".join(dict.fromkeys(s.source for s in sets if s.source)),
        )


def _join_repeated(texts: Sequence[str], groups: list[str]) -> list[str]:
    """``groups`` with the groups of identical texts joined: each joined group takes the label of its first row's
    group, so where no text repeats, ``groups`` comes back unchanged."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    order = {}
    for g in groups:
        order.setdefault(g, len(order))
    first: dict[str, str] = {}
    for t, g in zip(texts, groups):
        other = first.setdefault(t, g)
        a, b = root(other), root(g)
        if a != b:  # the earlier group names the joined one
            a, b = (a, b) if order[a] < order[b] else (b, a)
            parent[b] = a
    return [root(g) for g in groups]


# ------------------------------------------------------------------ validation


def _check_texts(name: str, texts: Any) -> tuple[str, ...]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{name}: texts must be a sequence of strings, not a single string")
    try:
        texts = tuple(texts)
    except TypeError:
        raise TypeError(f"{name}: texts must be a sequence of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            kind = "empty" if isinstance(t, str) else type(t).__name__
            raise ValueError(
                f"{name}: row {i} has an empty or non-string text ({kind}: {t!r}); every row needs a non-empty string"
            )
    return texts


def _check_label_names(name: str, label_names: Any) -> tuple[str, ...]:
    if isinstance(label_names, str):
        raise TypeError(f"{name}: label_names must be a sequence of names, not a single string")
    names = tuple(str(x) for x in label_names)
    dup = [x for x, c in Counter(names).items() if c > 1]
    if dup:
        raise ValueError(f"{name}: label_names must be distinct, {dup[0]!r} appears more than once in {names}")
    return names


def _check_labels(name: str, labels: Any, n: int, label_names: tuple[str, ...] | None) -> tuple[int, ...]:
    if isinstance(labels, str):
        raise TypeError(f"{name}: labels must be a sequence of ints, not a string")
    out = []
    for i, y in enumerate(labels):
        try:
            if isinstance(y, bool):
                raise TypeError
            out.append(operator.index(y))
        except TypeError:
            raise ValueError(f"{name}: label of row {i} is not an integer: {y!r}") from None
    if len(out) != n:
        raise ValueError(f"{name}: {len(out)} labels for {n} texts; give one label per text")
    high = None if label_names is None else len(label_names)
    for i, y in enumerate(out):
        if y < 0 or (high is not None and y >= high):
            allowed = "non-negative" if high is None else f"in 0..{high - 1} (label_names {label_names})"
            raise ValueError(f"{name}: label {y} of row {i} is not {allowed}")
    return tuple(out)


def _check_meta(name: str, meta: Any, n: int) -> tuple[dict, ...]:
    if isinstance(meta, Mapping):
        raise TypeError(f"{name}: meta must be one dict per row, not a single mapping")
    rows = []
    for i, m in enumerate(meta):
        if not isinstance(m, Mapping):
            raise ValueError(f"{name}: meta of row {i} is a {type(m).__name__}, not a dict")
        keys = [k for k in m if not isinstance(k, str)]
        if keys:
            raise ValueError(f"{name}: meta of row {i} has a non-string key {keys[0]!r} (meta must be JSON-ready)")
        rows.append(dict(m))
    if len(rows) != n:
        raise ValueError(f"{name}: {len(rows)} meta rows for {n} texts; give one dict per text")
    return tuple(rows)
