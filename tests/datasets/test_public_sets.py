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


def test_splits_are_fixed(sets):
    again = PublicSets(SHARED_DATASETS)
    for name in ("truth", "harmless", "snmf", "languages"):
        assert again.load(name, "test").texts == sets.load(name, "test").texts
    snmf_train, snmf_test = (sets.load("snmf", s) for s in ("train", "test"))
    assert not {m["concept"] for m in snmf_train.meta} & {m["concept"] for m in snmf_test.meta}
    assert not set(snmf_train.texts) & set(snmf_test.texts) and len(snmf_test) > 100


def test_languages_are_djangos_translations_of_one_message_per_group(sets):
    """Parity with the standard library's gettext reading the same catalogues."""
    import gettext
    from pathlib import Path

    import django

    pytest.importorskip("babel")
    root = Path(django.__file__).parent.parent
    train, test = sets.load("languages", "train"), sets.load("languages", "test")
    assert train.label_names == test.label_names == ("en", "fr", "de", "es")
    assert not {m["group"] for m in train.meta} & {m["group"] for m in test.meta}
    assert 0.2 < len(test) / (len(train) + len(test)) < 0.3 and len(train) >= 300
    for ps in (train, test):
        by_pair: dict[int, dict[str, str]] = {}
        for text, y, m in zip(ps.texts, ps.labels, ps.meta):
            assert ps.label_names[y] == m["language"] and text.startswith(m["opening"])
            by_pair.setdefault(m["pair_id"], {})[m["language"]] = (text, m["catalogue"])
        for texts in by_pair.values():
            assert set(texts) == {"en", "fr", "de", "es"}
            english = texts["en"][0]
            for lang in ("fr", "de", "es"):
                text, catalogue = texts[lang]
                localedir = root / Path(catalogue).parents[2]
                reference = gettext.translation("django", localedir, languages=[lang]).gettext(english)
                assert reference == text != english


def test_languages_fall_back_to_the_builtin_set_without_django(sets, monkeypatch, caplog):
    import importlib.util

    from interp.datasets import _public

    real = importlib.util.find_spec
    monkeypatch.setattr(_public.importlib.util, "find_spec", lambda n, *a: None if n == "django" else real(n, *a))
    fresh = PublicSets(SHARED_DATASETS)
    with caplog.at_level("WARNING"):
        assert fresh.load("languages", "test").source == "builtin:languages"
    assert "falls back to the built-in" in caplog.text


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
