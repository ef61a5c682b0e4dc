import re

import pytest

from interp import datasets
from interp.datasets import _world

WORDS = {_world.number_words(n): n for n in range(100)}


@pytest.mark.parametrize("name", [n for n in datasets.available() if not n.startswith("organism/")])
def test_splits_are_disjoint_cover_all_and_do_not_leak(name):
    full, train, test = (datasets.load(name, s) for s in ("all", "train", "test"))
    assert len(full) >= 200
    assert len(train) + len(test) == len(full)
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(full.texts)
    assert 0.2 <= len(test) / len(full) <= 0.35
    groups = lambda ps: {m["group"] for m in ps.meta}  # noqa: E731
    assert groups(train).isdisjoint(groups(test))
    assert datasets.load(name, "test") == test  # deterministic
    assert len(set(full.texts)) == len(full)  # no duplicate rows
    assert datasets.describe(name)


def test_truth_labels_are_correct():
    truth = datasets.load("truth")
    assert truth.class_counts() == {"false": len(truth) // 2, "true": len(truth) // 2}
    cities = dict(_world.CITIES)
    spanish = dict(_world.SPANISH_WORDS)
    kinds = set()
    for text, y, meta in zip(truth.texts, truth.labels, truth.meta):
        assert text.endswith(".")
        kinds.add(meta["kind"])
        if m := re.fullmatch(r"The city of (.+) is in (.+)\.", text):
            assert y == int(cities[m[1]] == m[2])
        elif m := re.fullmatch(r"(\S+) is (larger|smaller) than (\S+)\.", text):
            a, b = WORDS[m[1].lower()], WORDS[m[3]]
            assert y == int(a > b if m[2] == "larger" else a < b)
        elif m := re.fullmatch(r"The Spanish word '(.+)' means '(.+)'\.", text):
            assert y == int(spanish[m[1]] == m[2])
        else:
            pytest.fail(f"unexpected statement {text!r}")
    assert kinds == {"cities", "numbers", "translation"}


def test_languages_are_parallel():
    langs = datasets.load("languages")
    by_pair = {}
    for text, y, meta in zip(langs.texts, langs.labels, langs.meta):
        assert langs.label_names[y] == meta["language"]
        by_pair.setdefault(meta["pair_id"], {})[meta["language"]] = text
    assert len(by_pair) >= 60
    assert all(set(v) == {"en", "fr", "de", "es"} for v in by_pair.values())


def test_refusal_combines_harmful_and_harmless():
    ref = datasets.load("refusal", "train")
    assert ref.label_names == ("harmless", "harmful")
    harmful = set(datasets.load("harmful", "train").texts)
    assert {t for t, y in zip(ref.texts, ref.labels) if y == 1} == harmful
    assert {m["category"] for m in datasets.load("harmful").meta} >= {"weapons", "hacking", "fraud", "drugs"}


def test_unknown_set_and_split():
    with pytest.raises(ValueError, match="unknown built-in set 'tru'; available: truth"):
        datasets.load("tru")
    with pytest.raises(ValueError, match="split must be"):
        datasets.load("truth", "val")


def test_number_words():
    assert [_world.number_words(n) for n in (0, 13, 20, 51, 99)] == ["zero", "thirteen", "twenty", "fifty-one",
                                                                      "ninety-nine"]
    with pytest.raises(ValueError):
        _world.number_words(100)
