import pytest

from interp.datasets import PromptSet


def make():
    return PromptSet.from_classes("s", {"no": ["a", "b", "c", "d"], "yes": ["e", "f", "g", "h"]})


def test_validation_errors():
    with pytest.raises(ValueError, match="row 1 has an empty or non-string text"):
        PromptSet("s", ("a", " "))
    with pytest.raises(ValueError, match="2 labels for 3 texts"):
        PromptSet("s", ("a", "b", "c"), labels=(0, 1))
    with pytest.raises(ValueError, match="label 2 outside 0..1"):
        PromptSet("s", ("a", "b"), labels=(0, 2), label_names=("x", "y"))
    with pytest.raises(ValueError, match="label of row 0 is not an integer"):
        PromptSet("s", ("a",), labels=("x",))
    with pytest.raises(ValueError, match="1 meta rows for 2 texts"):
        PromptSet("s", ("a", "b"), meta=({},))
    with pytest.raises(TypeError, match="not a single string"):
        PromptSet("s", "abc")


def test_indexing_and_subsets():
    ps = make()
    assert ps[0] == {"text": "a", "label": 0, "meta": {}}
    sub = ps[[7, 0]]
    assert sub.texts == ("h", "a") and sub.labels == (1, 0) and sub.label_names == ("no", "yes")
    assert ps[2:4].texts == ("c", "d")
    assert list(ps) == list(ps.texts) and len(ps) == 8
    assert ps.class_counts() == {"no": 4, "yes": 4}


def test_split_is_stratified_and_deterministic():
    ps = PromptSet.from_classes("s", {"no": [f"n{i}" for i in range(20)], "yes": [f"y{i}" for i in range(20)]})
    tr, te = ps.split(test_size=0.25, random_state=3)
    tr2, te2 = ps.split(test_size=0.25, random_state=3)
    assert (tr, te) == (tr2, te2)
    assert te.class_counts() == {"no": 5, "yes": 5} and len(tr) == 30
    assert not set(tr.texts) & set(te.texts)
    assert tr.name == "s/train" and te.name == "s/test"


def test_map_texts_keeps_raw_and_concat():
    ps = make().map_texts(str.upper)
    assert ps.texts[0] == "A" and ps.meta[0]["raw_text"] == "a"
    both = PromptSet.concat(make(), make(), name="two")
    assert len(both) == 16 and both.labels[8] == 0 and both.name == "two"
    with pytest.raises(ValueError, match="different labels"):
        PromptSet.concat(make(), PromptSet("u", ("x",)))
