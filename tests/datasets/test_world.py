import pytest

from interp.datasets import _world as W
from interp.datasets._stable import Row, held_out_groups, ranked, stable_hash


def test_cities():
    cities = [c for c, _ in W.CITIES]
    assert len(cities) >= 60 and len(set(cities)) == len(cities)
    assert all(country in W.COUNTRIES for _, country in W.CITIES)
    assert W.COUNTRIES == tuple(dict.fromkeys(country for _, country in W.CITIES))
    assert dict(W.CITIES)["Lyon"] == "France"
    owner = dict(W.CITIES)
    for city, elsewhere in W.NAMESAKES.items():
        assert city in owner and set(elsewhere) <= set(W.COUNTRIES) and owner[city] not in elsewhere


def test_number_words():
    assert len(W.NUMBER_WORDS) == 100 and W.NUMBER_WORDS == tuple(W.number_words(n) for n in range(100))
    assert [W.NUMBER_WORDS[n] for n in (0, 13, 20, 51, 72, 99)] == [
        "zero", "thirteen", "twenty", "fifty-one", "seventy-two", "ninety-nine"]
    assert len(set(W.NUMBER_WORDS)) == 100
    with pytest.raises(ValueError, match="covers 0..99"):
        W.number_words(100)


def test_lexicon():
    assert len(W.LEXICON) >= 40
    for concept, words in W.LEXICON.items():
        assert set(words) == set(W.LANGUAGES) and words["en"] == concept
        assert all(w and w == w.strip() for w in words.values())
    assert W.LEXICON["dog"] == {"en": "dog", "fr": "chien", "de": "Hund", "es": "perro"}
    assert W.SPANISH_WORDS == tuple((w["es"], w["en"]) for w in W.LEXICON.values())
    assert len({es for es, _ in W.SPANISH_WORDS}) == len(W.SPANISH_WORDS)


def test_sentence_tables():
    assert W.LANGUAGES == ("en", "fr", "de", "es")
    for row in (*W.SUBJECTS, *W.PREDICATES):
        assert set(row) == set(W.LANGUAGES) and all(row.values())
    assert all(p[lang].endswith(".") for p in W.PREDICATES for lang in W.LANGUAGES)
    assert len(W.SUBJECTS) * len(W.PREDICATES) >= 60


def test_stable_choices_are_pinned():
    # sha256-based: the same on every machine and Python version
    assert stable_hash("truth", "Paris") == 9004260625527408494
    assert ranked(["a", "b", "c", "d"], "salt") == ranked(["d", "c", "b", "a"], "salt")
    assert ranked(range(10), "x") != ranked(range(10), "y")


def test_held_out_groups_per_stratum():
    rows = [Row(f"t{g}{i}", 0, {"group": f"g{g}", "kind": "a" if g < 8 else "b"}) for g in range(12) for i in range(2)]
    test = held_out_groups(rows, "salt", 0.25, lambda m: m["kind"])
    assert len([g for g in test if int(g[1:]) < 8]) == 2 and len([g for g in test if int(g[1:]) >= 8]) == 1
    assert test == held_out_groups(rows, "salt", 0.25, lambda m: m["kind"])
    one = [Row("t", 0, {"group": "only"})]
    assert held_out_groups(one, "salt", 0.25) == {"only"}
    two = [Row("a", 0, {"group": "x"}), Row("b", 0, {"group": "y"})]
    assert len(held_out_groups(two, "salt", 0.9)) == 1
