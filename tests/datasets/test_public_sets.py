"""PublicSets: the comparison's sets from the published files, with fixed, leak-free splits."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from interp.datasets import PublicSets, load_file
from interp.datasets._public import TRUTH_KINDS, TRUTH_PER_KIND

from ..conftest import SHARED_DATASETS

pytestmark = pytest.mark.skipif(not (SHARED_DATASETS / "refusal").is_dir(),
                                reason=f"the shared datasets folder is not at {SHARED_DATASETS}")


@pytest.fixture(scope="module")
def sets():
    return PublicSets(SHARED_DATASETS)


def test_truth_is_balanced_per_kind_and_holds_out_whole_facts(sets):
    train, test = sets.load("truth", "train"), sets.load("truth", "test")
    for kind in TRUTH_KINDS:
        counts = {s: Counter(y for y, m in zip(p.labels, p.meta) if m["kind"] == kind)
                  for s, p in (("train", train), ("test", test))}
        assert counts["train"][0] + counts["test"][0] == TRUTH_PER_KIND // 2
        assert counts["train"][1] + counts["test"][1] == TRUTH_PER_KIND // 2
        assert counts["test"][0] == counts["test"][1] > 0
    assert not {m["group"] for m in train.meta} & {m["group"] for m in test.meta}
    for kind in ("cities", "neg_cities"):  # a city's affirmed and negated statements share a split
        cities_test = {m["city"] for m in test.meta if m["kind"] == kind}
        assert cities_test and not cities_test & {m.get("city") for m in train.meta}


def test_truth_holds_no_statement_the_real_organism_recipe_judged(sets):
    from interp.organism.lora import RECIPE_FILES

    judged = [f for f in RECIPE_FILES if f.startswith("geometry_of_truth/")]
    statements = set()
    for f in judged:
        statements |= set(load_file(SHARED_DATASETS / f).texts)
    assert not statements & set(sets.load("truth", "all").texts)


def test_truth_rows_are_the_files_rows(sets):
    cities = load_file(SHARED_DATASETS / "geometry_of_truth" / "cities.csv")
    for text, label, meta in zip(*(getattr(sets.load("truth", "test"), k) for k in ("texts", "labels", "meta"))):
        if meta["kind"] == "cities":
            row = meta["source_row"] - 1
            assert (cities.texts[row], cities.labels[row]) == (text, label)


def test_refusal_splits_are_arditis_train_and_val_files(sets):
    import json

    val = [r["instruction"] for r in json.loads((SHARED_DATASETS / "refusal" / "harmful_val.json").read_text())]
    assert list(sets.load("harmful", "test").texts) == val
    harmless = sets.load("harmless", "train")
    assert len(harmless) == len(sets.load("harmful", "train")) == 260
    refusal = sets.load("refusal", "test")
    assert refusal.label_names == ("harmless", "harmful")
    assert refusal.class_counts() == {"harmless": 39, "harmful": 39}


def test_splits_are_fixed_and_languages_fall_back_to_the_builtin_set(sets):
    again = PublicSets(SHARED_DATASETS)
    for name in ("truth", "harmless", "snmf"):
        assert again.load(name, "test").texts == sets.load(name, "test").texts
    snmf_train, snmf_test = (sets.load("snmf", s) for s in ("train", "test"))
    assert not {m["concept"] for m in snmf_train.meta} & {m["concept"] for m in snmf_test.meta}
    assert not set(snmf_train.texts) & set(snmf_test.texts) and len(snmf_test) > 100
    assert sets.load("languages", "test").source == "builtin:languages"


def test_bad_folder_or_split_is_an_exact_error(sets, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        PublicSets(tmp_path / "nowhere")
    shutil.copytree(SHARED_DATASETS / "refusal", tmp_path / "refusal")
    with pytest.raises(FileNotFoundError, match="lacks geometry_of_truth/cities.csv"):
        PublicSets(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        sets.load("truth", "val")
    with pytest.raises(ValueError, match="unknown built-in set"):
        sets.load("nonsense", "train")
