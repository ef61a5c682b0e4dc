import hashlib
import json
import re
from collections import Counter, defaultdict

import pytest

from interp import datasets
from interp.datasets import _world as W

GENERATED = [n for n in datasets.available() if not n.startswith("organism/")]
WORDS = {w: n for n, w in enumerate(W.NUMBER_WORDS)}

# sha256 of [texts, labels] of each split. The splits must never change between
# runs, machines or Python versions; if you change the data on purpose, update these.
FINGERPRINTS = {
    ("truth", "test"): "18fc0237463965a4e4fbb1e2a3b6e336b47073f1e351f72a6500528091ccbcec",
    ("harmful", "test"): "ffbbaebaf493487bb1134beb7f36584957cf220f8bb5cab13afb2d31130b0552",
    ("harmless", "test"): "8e5c2873cc0b806781e1cc2e6b2297b3ea31870f07a6a7c5f577fc1af11c8a4c",
    ("languages", "test"): "f5cb8af277d269f6d6f7643d4900444417c21645c3866eafc521acc7ddc948bb",
    ("refusal", "test"): "51e84fd42e94385ba9f852f32c1a9d4abb1573e588fb0f27c3530a6c6121cdfb",
    ("truth", "all"): "5b2540775d3bd1a455515f5ce9f9618b6fdba08276c931378a01875384172f1b",
    ("harmful", "all"): "3c37cc9f60ebe4b402d887141c41fdea0880c34d203e6427846107f89bd125fd",
    ("harmless", "all"): "d57c4ad781cdd6abf7e318c1b6263370ae8d8308c355a3fdbe8a40582cfa7a4e",
    ("languages", "all"): "ad9768a7e146d32e2a4f76819aa0d3170412cc713613325353a210d51195fb0f",
    ("refusal", "all"): "9af7ca3d300fd671fb6e51132db2dcb5a8558e0d2e6613646fc688e34785a89c",
}


def fingerprint(ps) -> str:
    payload = json.dumps([list(ps.texts), list(ps.labels or [])], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def groups(ps) -> set:
    return {m["group"] for m in ps.meta}


def test_available_and_describe():
    assert GENERATED == ["truth", "harmful", "harmless", "languages", "facts", "refusal"]
    for name in datasets.available():
        line = datasets.describe(name)
        assert line and "\n" not in line
    with pytest.raises(ValueError, match="unknown built-in set 'tru'; available: truth, harmful"):
        datasets.describe("tru")


def test_unknown_set_and_split():
    with pytest.raises(ValueError, match="unknown built-in set 'tru'; available: truth"):
        datasets.load("tru")
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'all', got 'val'"):
        datasets.load("truth", "val")


@pytest.mark.parametrize("name", GENERATED)
def test_splits_are_disjoint_cover_all_and_do_not_leak(name):
    full, train, test = (datasets.load(name, s) for s in ("all", "train", "test"))
    assert len(full) >= 200
    assert (full.name, train.name, test.name) == (f"{name}/all", f"{name}/train", f"{name}/test")
    assert full.source == train.source == f"builtin:{name}"
    assert len(set(full.texts)) == len(full), "duplicate rows"
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(full.texts)
    assert 0.22 <= len(test) / len(full) <= 0.32
    assert groups(train).isdisjoint(groups(test)), "rows of one fact in both splits"
    assert groups(train) | groups(test) == groups(full)
    # each split keeps the order of the full set
    order = {t: i for i, t in enumerate(full.texts)}
    for part in (train, test):
        assert [order[t] for t in part.texts] == sorted(order[t] for t in part.texts)


@pytest.mark.parametrize("name", GENERATED)
def test_loads_are_equal_and_independent(name):
    a, b = datasets.load(name, "test"), datasets.load(name, "test")
    assert a == b and a.meta is not b.meta
    a.meta[0]["scribble"] = 1
    assert "scribble" not in datasets.load(name, "test").meta[0]


@pytest.mark.parametrize("name, split", sorted(FINGERPRINTS))
def test_splits_never_change(name, split):
    assert fingerprint(datasets.load(name, split)) == FINGERPRINTS[name, split]


@pytest.mark.parametrize("name", ["truth", "languages", "refusal"])
@pytest.mark.parametrize("split", ["all", "train", "test"])
def test_labelled_sets_are_balanced(name, split):
    counts = datasets.load(name, split).class_counts()
    assert min(counts.values()) / max(counts.values()) >= 0.9, counts


# ---------------------------------------------------------------------- truth


def test_truth_statements_and_labels_are_correct():
    truth = datasets.load("truth")
    assert truth.label_names == ("false", "true")
    cities = dict(W.CITIES)
    spanish = dict(W.SPANISH_WORDS)
    kinds = Counter()
    for text, y, meta in zip(truth.texts, truth.labels, truth.meta):
        assert text.endswith(".") and text.count(".") == 1 and text[0].isupper(), text
        kinds[meta["kind"], y] += 1
        if m := re.fullmatch(r"The city of (.+) is in (.+)\.", text):
            assert meta["kind"] == "cities" and meta["city"] == m[1] and meta["country"] == m[2]
            assert y == int(cities[m[1]] == m[2])
            assert m[2] not in W.NAMESAKES.get(m[1], ()), f"{text!r} is not clearly false"
        elif m := re.fullmatch(r"(\S+) is (larger|smaller) than (\S+)\.", text):
            a, b = WORDS[m[1].lower()], WORDS[m[3]]  # recompute the truth from the numbers in the text
            assert meta["kind"] == "numbers" and (meta["n1"], meta["n2"]) == (a, b) and a != b
            assert y == int(a > b if m[2] == "larger" else a < b)
        elif m := re.fullmatch(r"The Spanish word '(.+)' means '(.+)'\.", text):
            assert meta["kind"] == "translation"
            assert y == int(spanish[m[1]] == m[2])
        else:
            pytest.fail(f"unexpected statement {text!r}")
    assert {k for k, _ in kinds} == {"cities", "numbers", "translation"}
    for kind in ("cities", "numbers", "translation"):
        assert kinds[kind, 0] == kinds[kind, 1] > 0
    assert kinds["cities", 1] == len(W.CITIES) >= 60


def test_truth_facts_stay_in_one_split():
    train, test = datasets.load("truth", "train"), datasets.load("truth", "test")
    for key in ("city", "word"):
        seen = [{m[key] for m in ps.meta if key in m} for ps in (train, test)]
        assert seen[0] and seen[1] and seen[0].isdisjoint(seen[1]), key
    pairs = [{frozenset((m["n1"], m["n2"])) for m in ps.meta if m["kind"] == "numbers"} for ps in (train, test)]
    assert pairs[0].isdisjoint(pairs[1])
    assert {m["kind"] for m in test.meta} == {"cities", "numbers", "translation"}
    # both statements of a fact are together: each group is one true and one false row
    by_group = defaultdict(list)
    for y, m in zip(test.labels, test.meta):
        by_group[m["group"]].append(y)
    assert all(sorted(v) == [0, 1] for v in by_group.values())


# ---------------------------------------------------------------- instructions


@pytest.mark.parametrize("name, categories", [
    ("harmful", {"weapons", "hacking", "fraud", "drugs", "violence", "harassment", "theft"}),
    ("harmless", {"cooking", "travel", "writing", "science", "math", "programming", "health"}),
])
def test_instruction_sets(name, categories):
    full, test = datasets.load(name), datasets.load(name, "test")
    assert full.labels is None and full.label_names is None
    assert {m["category"] for m in full.meta} >= categories
    assert {m["category"] for m in test.meta} == {m["category"] for m in full.meta}
    for text in full.texts:
        assert text[0].isupper() and text[-1] in ".?" and "{}" not in text, text
    actions = [{m["action"] for m in ps.meta} for ps in (datasets.load(name, "train"), test)]
    assert actions[0].isdisjoint(actions[1])


def test_refusal_combines_the_two_sets_with_their_splits():
    for split in ("train", "test", "all"):
        ref = datasets.load("refusal", split)
        assert ref.label_names == ("harmless", "harmful") and ref.source == "builtin:refusal"
        for label, part in enumerate(("harmless", "harmful")):
            rows = ref[[i for i, y in enumerate(ref.labels) if y == label]]
            component = datasets.load(part, split)
            assert rows.texts == component.texts and rows.meta == component.meta
    assert set(datasets.load("harmful").texts).isdisjoint(datasets.load("harmless").texts)


# ------------------------------------------------------------------ languages


def test_languages_are_parallel_and_split_by_content():
    full = datasets.load("languages")
    assert len(full) >= 240 and full.label_names == ("en", "fr", "de", "es")
    by_pair = defaultdict(dict)
    for text, y, meta in zip(full.texts, full.labels, full.meta):
        assert full.label_names[y] == meta["language"] and text.endswith(".") and text[0].isupper()
        by_pair[meta["pair_id"]][meta["language"]] = text
    assert len(by_pair) >= 60
    assert all(set(v) == {"en", "fr", "de", "es"} for v in by_pair.values())
    assert all(len(set(v.values())) == 4 for v in by_pair.values()), "a translation equals another language"
    train, test = datasets.load("languages", "train"), datasets.load("languages", "test")
    ids = [Counter(m["pair_id"] for m in ps.meta) for ps in (train, test)]
    assert set(ids[0]).isdisjoint(ids[1])
    assert all(c == 4 for part in ids for c in part.values())


def test_language_sentences_look_like_their_language():
    full = datasets.load("languages")
    rows = {(m["pair_id"], m["language"]): t for t, m in zip(full.texts, full.meta)}
    assert rows[0, "en"] == "The cat is on the table."
    assert rows[0, "fr"] == "Le chat est sur la table."
    assert rows[0, "de"] == "Die Katze ist auf dem Tisch."
    assert rows[0, "es"] == "El gato está sobre la mesa."
    markers = {"en": r"\b(is|sleeps|waits|eats)\b", "fr": r"\b(est|dort|attend|mange)\b",
               "de": r"\b(ist|schläft|wartet|isst)\b", "es": r"(está|duerme|espera|come)\b"}
    for (_, lang), text in rows.items():
        assert re.search(markers[lang], text), (lang, text)
