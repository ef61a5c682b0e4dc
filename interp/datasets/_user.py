"""A researcher's own files in place of a section's prompt sets (``interp compare --truth-data cities.csv``).

:class:`UserSets` answers ``load(name, split)`` as :class:`~interp.datasets.PublicSets` does, from user
files for the names it was given and from a fallback (a :class:`PublicSets`, or the built-in sets) for the
rest. Each user file is read with :func:`~interp.datasets.load_file` and split into train/test
(:meth:`PromptSet.split`, seeded; rows sharing ``meta["group"]`` stay on one side).

=============  ================================================================================
name           user data
=============  ================================================================================
``truth``      one file of statements labelled true/false (Geometry-of-Truth CSV, JSON/JSONL with a
               text and a label field; labels ``true``/``false``, 1/0 or booleans)
``harmful``,   two files, harmful then harmless requests (AdvBench-style instruction JSON, JSONL,
``harmless``   CSV); ``refusal`` is both, labelled harmless = 0, harmful = 1
``languages``  one file of parallel sentences: a text, a ``language`` label (codes, ``en`` among
               them) and a ``pair_id`` shared by the translations of one sentence; ``opening``
               (the words steered) defaults to the first four words
``snmf``       one file of texts (labels ignored): the corpus the features are fitted on
``facts``      one file of facts (JSONL or CSV with ``prompt``, ``subject``, ``answer`` and optional
               ``relation``, ``alternatives``; :func:`~interp.datasets.load_file` with
               ``format="facts"``), split by ``meta["group"]`` (``relation:subject``), so all
               phrasings of one fact land on one side
=============  ================================================================================
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ._promptset import PromptSet

__all__ = ["UserSets", "USER_NAMES"]

#: The names a user file can stand in for, and how many files each takes.
USER_NAMES = {"truth": 1, "refusal": 2, "languages": 1, "snmf": 1, "facts": 1}
_OPENING_WORDS = 4


class UserSets:
    """Prompt sets from user files, with a fallback for the others.

    Args:
        files: ``{"truth": path}``, ``{"refusal": (harmful, harmless)}``, ``{"languages": path}``,
            ``{"snmf": path}``, ``{"facts": path}`` (paths or comma-separated strings).
        fallback: a :class:`~interp.datasets.PublicSets` (or anything with ``load(name, split)``) for the
            other names; ``None``: the built-in sets.
        test_size, seed: of the train/test split of each file.

    Raises:
        ValueError: an unknown name or the wrong number of files. FileNotFoundError: a missing file (checked
            here, before any model boots).
    """

    def __init__(self, files: dict, fallback=None, *, test_size: float = 0.25, seed: int = 0):
        self.files: dict[str, tuple[Path, ...]] = {}
        for name, paths in files.items():
            if name not in USER_NAMES:
                raise ValueError(f"no user data for {name!r}; user files can replace {', '.join(USER_NAMES)}")
            paths = tuple(Path(p) for p in (paths.split(",") if isinstance(paths, str) else
                                            [paths] if isinstance(paths, os.PathLike) else paths))
            if len(paths) != USER_NAMES[name]:
                raise ValueError(f"{name} data takes {USER_NAMES[name]} file(s) "
                                 f"({'harmful,harmless' if name == 'refusal' else 'one file'}); got {len(paths)}")
            for p in paths:
                if not p.is_file():
                    raise FileNotFoundError(f"no {name} data file {p}")
            self.files[name] = paths
        self.fallback, self.test_size, self.seed = fallback, test_size, seed
        self._cache: dict[tuple[str, str], PromptSet] = {}

    def __repr__(self) -> str:
        return f"UserSets({ {k: [str(p) for p in v] for k, v in self.files.items()} }, fallback={self.fallback!r})"

    def provides(self, name: str) -> bool:
        """Whether ``name`` (with or without the ``organism/`` prefix) comes from a user file."""
        name = name.removeprefix("organism/")
        return (name if name not in ("harmful", "harmless") else "refusal") in self.files

    def load(self, name: str, split: str = "all") -> PromptSet:
        """The set ``name`` and ``split`` (``train``, ``test``, ``all``): from the user's file where one was
        given (the ``organism/`` prefix is ignored), else from the fallback."""
        from ._builtin import load as load_builtin
        from ._record import record

        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if not self.provides(name):
            return (self.fallback.load if self.fallback is not None else load_builtin)(name, split)
        name = name.removeprefix("organism/")
        if split == "all":
            return PromptSet.concat(self.load(name, "train"), self.load(name, "test"), name=f"{name}/all")
        if (name, split) not in self._cache:
            train, test = self._read(name)
            self._cache[name, "train"], self._cache[name, "test"] = train, test
        return record(self._cache[name, split], split)

    def _split(self, ps: PromptSet) -> tuple[PromptSet, PromptSet]:
        """Train/test of one file. Rows with the same text share a group (a duplicate never lands on both sides);
        with a ``group`` column, a duplicate joins its first occurrence's group."""
        first: dict[str, object] = {}
        meta = []
        for t, m in zip(ps.texts, ps.meta or ({},) * len(ps)):
            g = first.setdefault(t, m.get("group", f"text:{t}"))
            meta.append({**m, "group": g})
        return replace(ps, meta=tuple(meta)).split(test_size=self.test_size, random_state=self.seed)

    def _read(self, name: str) -> tuple[PromptSet, PromptSet]:
        from ._files import load_file

        paths = self.files["refusal" if name in ("harmful", "harmless") else name]
        if name in ("harmful", "harmless", "refusal"):
            kinds = {k: self._split(load_file(p, label=k, name=k)) for k, p in zip(("harmful", "harmless"), paths)}
            if name != "refusal":
                return tuple(replace(ps, name=f"{name}/{part}") for ps, part in zip(kinds[name], ("train", "test")))
            return tuple(PromptSet.from_classes(f"refusal/{part}", {"harmless": kinds["harmless"][i].texts,
                                                                    "harmful": kinds["harmful"][i].texts},
                                                source=",".join(str(p) for p in paths))
                         for i, part in enumerate(("train", "test")))
        if name == "facts":
            return self._split(load_file(paths[0], name=name, format="facts"))
        ps = load_file(paths[0], name=name, label_column=False if name == "snmf" else None)
        if name == "truth":
            return self._split(_as_truth(ps))
        if name == "languages":
            return self._split(_as_parallel(ps))
        return self._split(replace(ps, labels=None, label_names=None))


def _as_truth(ps: PromptSet) -> PromptSet:
    """Labels as 0 = false, 1 = true, whatever the file called them (true/false in any case, 1/0)."""
    if ps.labels is None:
        columns = list(dict.fromkeys(k for m in ps.meta or () for k in m))
        raise ValueError(f"{ps.source}: truth data needs a label for every statement (true/false or 1/0) in a "
                         f"column named label, labels or class; the other columns are {columns}")
    names = [str(n).lower() for n in (ps.label_names or ())]
    if names and set(names) <= {"false", "true", "0", "1"}:
        truth = {"true": 1, "1": 1, "false": 0, "0": 0}
        labels = tuple(truth[names[y]] for y in ps.labels)
    elif not names and set(ps.labels) <= {0, 1}:
        labels = ps.labels
    else:
        raise ValueError(f"{ps.source}: truth labels must be true/false or 1/0 (any case), got "
                         f"{ps.label_names or sorted(set(ps.labels))}")
    if len(set(labels)) < 2:
        raise ValueError(f"{ps.source}: every statement has the label {'true' if labels[0] else 'false'}; truth "
                         "probes need true and false statements")
    return replace(ps, labels=labels, label_names=("false", "true"))


def _as_parallel(ps: PromptSet) -> PromptSet:
    """Language labels with ``en`` first (the section steers from English), ``language``/``opening`` in meta,
    and ``pair_id`` as the group (translations of one sentence stay on one side of the split)."""
    if ps.labels is not None and ps.label_names:
        langs = [ps.label_names[y] for y in ps.labels]
    elif all("language" in m for m in ps.meta):
        langs = [str(m["language"]) for m in ps.meta]
    else:
        raise ValueError(f"{ps.source}: language data needs a language per row (a label or language field)")
    if "en" not in langs:
        raise ValueError(f"{ps.source}: language data needs English ('en') rows: the section steers from English; "
                         f"found {sorted(set(langs))}")
    if not all("pair_id" in m for m in ps.meta):
        raise ValueError(f"{ps.source}: every row needs a pair_id shared by the translations of one sentence")
    order = ("en", *sorted(set(langs) - {"en"}))
    meta = tuple({**m, "language": lang, "group": m["pair_id"],
                  "opening": m.get("opening") or " ".join(t.split()[:_OPENING_WORDS])}
                 for m, lang, t in zip(ps.meta, langs, ps.texts))
    return replace(ps, labels=tuple(order.index(lang) for lang in langs), label_names=order, meta=meta)
