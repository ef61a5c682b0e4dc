"""The comparison's prompt sets drawn from a folder of public datasets in their original layout.

``interp compare --data DIR`` (and ``compare(data=DIR)``) reads its truth,
refusal and SNMF prompts from the published sets instead of the built-in
generated ones. ``DIR`` holds, as published:

=======================================  =========================================================
``geometry_of_truth/cities.csv`` ...     Marks & Tegmark (2023): ``statement,label`` CSVs
``refusal/harmful_train.json`` ...       Arditi et al. (2024): ``{"instruction", "category"}`` lists
``snmf_concepts/final_dataset_20_concepts.json``, ``hier_concepts.json``  Shafran, Geiger & Geva (SNMF)
=======================================  =========================================================

Sets and splits (all fixed, from sha256 via :mod:`._stable`, the same on every machine):

* ``truth``: ``cities``, ``neg_cities`` and ``neg_sp_en_trans`` statements, :data:`TRUTH_PER_KIND` of each
  (balanced true/false), ``meta["kind"]`` = file stem. These are the Geometry-of-Truth files the
  real-base organism's recipe (:mod:`interp.organism.lora`) never judges, so no statement here is one
  its post model was trained to label. A quarter of the groups is the test split; a city's statements
  (affirmed and negated) and a Spanish word's are one group, drawn the same way in every file, so the
  test split holds facts never seen in training, in any kind.
* ``harmful`` / ``harmless``: ``train`` = ``*_train.json``, ``test`` = ``*_val.json`` (Arditi's split; the
  harmless files are sampled down to the size of the harmful ones). ``refusal``: both, harmless = 0.
* ``snmf``: the SNMF concept sentences (unlabelled); ``train`` and ``test`` are halves by concept, and a
  sentence listed under concepts of both halves is kept in ``train`` only.

* ``languages``: no set in the folder holds text in other languages (the SNMF ``languages.json`` is
  English sentences *about* languages), so this one is real parallel text from elsewhere: Django's
  human-translated message catalogues in English, French, German and Spanish
  (:mod:`interp.datasets._parallel`; needs the ``real`` extra). Without django installed it falls back
  to the built-in generated sentences, with a warning, and its ``source`` says so.

Any other name comes from the built-in sets, and its ``source`` says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from ._builtin import load as load_builtin
from ._files import load_file
from ._parallel import django_parallel
from ._promptset import PromptSet
from ._record import record
from ._stable import ranked, stable_hash

__all__ = ["PublicSets", "TRUTH_PER_KIND", "TRUTH_KINDS"]

log = logging.getLogger(__name__)

#: Statements of each Geometry-of-Truth file in the ``truth`` set (half true, half false).
TRUTH_PER_KIND = 200
#: The Geometry-of-Truth files of the ``truth`` set.
TRUTH_KINDS = ("cities", "neg_cities", "neg_sp_en_trans")
_TEST_FRACTION = 0.25
_FILES = {
    "truth": [f"geometry_of_truth/{k}.csv" for k in TRUTH_KINDS],
    "harmful": ["refusal/harmful_train.json", "refusal/harmful_val.json"],
    "harmless": ["refusal/harmless_train.json", "refusal/harmless_val.json"],
    "snmf": ["snmf_concepts/final_dataset_20_concepts.json", "snmf_concepts/hier_concepts.json"],
}


def _group(kind: str, statement: str, meta: dict) -> str:
    """The fact a Geometry-of-Truth statement is about: its city, its Spanish word, else itself."""
    if kind.endswith("cities") and "city" in meta:
        return f"city:{meta['city']}"
    if kind.endswith("sp_en_trans") and "'" in statement:
        return f"word:{statement.split(chr(39))[1]}"
    return f"statement:{statement}"


class PublicSets:
    """Prompt sets for :func:`interp.compare.compare` from a folder of public datasets.

    Args:
        folder: the folder (e.g. ``../shared/datasets``) with ``geometry_of_truth/``, ``refusal/`` and
            ``snmf_concepts/`` as published.

    Raises:
        FileNotFoundError: the folder, or one of the files listed in the module table, is missing.

    Example:
        >>> sets = PublicSets("../shared/datasets")  # doctest: +SKIP
        >>> sets.load("truth", "test").class_counts()  # doctest: +SKIP
        {'false': 74, 'true': 74}
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"--data {self.folder}: no such folder (give the folder holding "
                                    "geometry_of_truth/, refusal/ and snmf_concepts/)")
        missing = [f for files in _FILES.values() for f in files if not (self.folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.folder} lacks {', '.join(missing)}; the comparison's public sets "
                                    "need Geometry of Truth, Arditi et al.'s refusal splits and the SNMF concepts")
        self._cache: dict[tuple[str, str], PromptSet] = {}

    def __repr__(self) -> str:
        return f"PublicSets({str(self.folder)!r})"

    def load(self, name: str, split: str = "all") -> PromptSet:
        """The set ``name`` (``truth``, ``harmful``, ``harmless``, ``refusal``, ``snmf``, ``languages``; any other
        built-in name falls back to the built-in set) and ``split`` (``train``, ``test``, ``all``).

        Raises:
            ValueError: an unknown split, or a name neither here nor built in.
        """
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if name not in ("truth", "harmful", "harmless", "refusal", "snmf", "languages"):
            return load_builtin(name, split)
        if split == "all":
            return PromptSet.concat(self.load(name, "train"), self.load(name, "test"), name=f"{name}/all")
        key = (name, split)
        if key not in self._cache:
            self._cache[key] = getattr(self, f"_{name}")(split)
        return record(self._cache[key], split)

    def _truth(self, split: str) -> PromptSet:
        texts, labels, meta = [], [], []
        for kind in TRUTH_KINDS:
            path = self.folder / "geometry_of_truth" / f"{kind}.csv"
            rows = load_file(path, format="got_csv")
            by_label = {y: [i for i, label in enumerate(rows.labels) if label == y] for y in (0, 1)}
            # whole groups, balanced: take groups in a fixed order until each label has its share
            groups: dict[str, list[int]] = {}
            for i, (t, m) in enumerate(zip(rows.texts, rows.meta)):
                groups.setdefault(_group(kind, t, m), []).append(i)
            quota = {y: min(TRUTH_PER_KIND // 2, len(by_label[y])) for y in (0, 1)}
            picked: list[str] = []
            count = {0: 0, 1: 0}
            for g in ranked(groups, "public-truth"):  # the same order in every file: a fact's fate is shared
                ys = [rows.labels[i] for i in groups[g]]
                if all(count[y] + ys.count(y) <= quota[y] for y in set(ys)):
                    picked.append(g)
                    for y in ys:
                        count[y] += 1
            test: set[str] = set()  # a quarter of the groups of each label make-up (all true, all false, mixed)
            for makeup in sorted({tuple(sorted(rows.labels[i] for i in groups[g])) for g in picked}):
                same = [g for g in picked if tuple(sorted(rows.labels[i] for i in groups[g])) == makeup]
                test |= set(ranked(same, "public-truth-split", makeup)[: round(_TEST_FRACTION * len(same))])
            for g in sorted(picked, key=lambda g: groups[g][0]):
                if (g in test) != (split == "test"):
                    continue
                for i in groups[g]:
                    texts.append(rows.texts[i])
                    labels.append(rows.labels[i])
                    meta.append({**rows.meta[i], "kind": kind, "group": g, "source_row": i + 1})
        return PromptSet(name=f"truth/{split}", texts=tuple(texts), labels=tuple(labels),
                         label_names=("false", "true"), meta=tuple(meta),
                         source=f"{self.folder / 'geometry_of_truth'} ({', '.join(TRUTH_KINDS)})")

    def _languages(self, split: str) -> PromptSet:
        if importlib.util.find_spec("django") is None or importlib.util.find_spec("babel") is None:
            log.warning("django/babel not installed (the `real` extra): the languages set falls back to the "
                        "built-in generated sentences")
            return load_builtin("languages", split)
        return django_parallel(split)

    def _instructions(self, kind: str, split: str) -> PromptSet:
        file = self.folder / "refusal" / f"{kind}_{'train' if split == 'train' else 'val'}.json"
        rows = load_file(file, format="instruction_json")
        if kind == "harmless":  # as many as the harmful file of the same split
            n = len(self.load("harmful", split))  # cached: the harmful file is read once
            keep = sorted(ranked(range(len(rows)), "public-harmless", split)[:n])
            rows = PromptSet(name=rows.name, texts=tuple(rows.texts[i] for i in keep),
                             meta=tuple({**rows.meta[i], "source_row": i} for i in keep), source=rows.source)
        return PromptSet(name=f"{kind}/{split}", texts=rows.texts, meta=rows.meta, source=str(file))

    def _harmful(self, split: str) -> PromptSet:
        return self._instructions("harmful", split)

    def _harmless(self, split: str) -> PromptSet:
        return self._instructions("harmless", split)

    def _refusal(self, split: str) -> PromptSet:
        parts = [self.load("harmless", split), self.load("harmful", split)]
        return PromptSet(name=f"refusal/{split}", texts=tuple(t for p in parts for t in p.texts),
                         labels=tuple(k for k, p in enumerate(parts) for _ in p.texts),
                         label_names=("harmless", "harmful"), meta=tuple(m for p in parts for m in p.meta),
                         source=f"{self.folder / 'refusal'}")

    def _snmf(self, split: str) -> PromptSet:
        if split == "test":
            seen = set(self.load("snmf", "train").texts)
        texts, meta = [], []
        for f in _FILES["snmf"]:
            rows = load_file(self.folder / f, format="prompt_label_json")
            names = rows.label_names or ()
            for i, (t, y) in enumerate(zip(rows.texts, rows.labels or [None] * len(rows))):
                concept = names[y] if y is not None and names else ""
                if (stable_hash("public-snmf", concept) % 2 == 1) == (split == "test"):
                    if split == "test" and t in seen:
                        continue
                    texts.append(t)
                    meta.append({"concept": concept, "file": Path(f).name})
        return PromptSet(name=f"snmf/{split}", texts=tuple(texts), meta=tuple(meta),
                         source=f"{self.folder / 'snmf_concepts'}")
