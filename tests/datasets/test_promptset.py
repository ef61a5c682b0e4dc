import json

import numpy as np
import pytest

from interp.datasets import PromptSet


def make(n: int = 4) -> PromptSet:
    return PromptSet.from_classes("s", {"no": [f"n{i}" for i in range(n)], "yes": [f"y{i}" for i in range(n)]})


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(texts=("a", " ")), ValueError, r"s: row 1 has an empty or non-string text \(empty: ' '\)"),
        (dict(texts=("a", "")), ValueError, r"row 1 has an empty or non-string text \(empty: ''\)"),
        (dict(texts=("a", 3)), ValueError, r"row 1 has an empty or non-string text \(int: 3\)"),
        (dict(texts="abc"), TypeError, r"not a single string"),
        (dict(texts=("a", "b", "c"), labels=(0, 1)), ValueError, r"2 labels for 3 texts"),
        (dict(texts=("a", "b"), labels=(0, 2), label_names=("x", "y")), ValueError,
         r"label 2 of row 1 is not in 0..1 \(label_names \('x', 'y'\)\)"),
        (dict(texts=("a",), labels=(-1,)), ValueError, r"label -1 of row 0 is not non-negative"),
        (dict(texts=("a",), labels=("x",)), ValueError, r"label of row 0 is not an integer: 'x'"),
        (dict(texts=("a",), labels=(True,)), ValueError, r"label of row 0 is not an integer: True"),
        (dict(texts=("a",), labels=(0.0,)), ValueError, r"label of row 0 is not an integer"),
        (dict(texts=("a",), labels=(0,), label_names=("x", "x")), ValueError, r"'x' appears more than once"),
        (dict(texts=("a", "b"), meta=({},)), ValueError, r"1 meta rows for 2 texts"),
        (dict(texts=("a",), meta=("oops",)), ValueError, r"meta of row 0 is a str, not a dict"),
        (dict(texts=("a",), meta=({1: "x"},)), ValueError, r"non-string key 1"),
        (dict(texts=("a",), meta={"k": 1}), TypeError, r"one dict per row"),
    ],
)
def test_validation_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        PromptSet("s", **kwargs)


def test_lists_become_tuples_and_meta_is_copied():
    meta = [{"k": 1}]
    ps = PromptSet("s", ["a"], labels=[np.int64(1)], label_names=["x", "y"], meta=meta)
    assert ps.texts == ("a",) and ps.labels == (1,) and ps.label_names == ("x", "y")
    assert type(ps.labels[0]) is int
    meta[0]["k"] = 2
    assert ps.meta == ({"k": 1},)
    with pytest.raises(AttributeError):
        ps.name = "other"  # frozen
    assert PromptSet("empty", ()).texts == ()


# -------------------------------------------------------------------- access


def test_row_access():
    ps = make()
    assert ps[0] == {"text": "n0", "label": 0, "meta": {}}
    assert ps[-1]["text"] == "y3" and ps[np.int64(5)]["text"] == "y1"
    assert list(ps) == list(ps.texts) and len(ps) == 8
    with pytest.raises(IndexError, match="row 8 out of range for 8 rows"):
        ps[8]
    with pytest.raises(TypeError, match="not str"):
        ps["n0"]
    with pytest.raises(TypeError, match="not bool"):
        ps[True]


def test_row_meta_is_a_copy():
    ps = PromptSet("s", ["a"], meta=[{"k": 1}])
    ps[0]["meta"]["k"] = 99
    ps.to_records()[0]["meta"]["k"] = 99
    assert ps.meta[0] == {"k": 1}


@pytest.mark.parametrize(
    "key",
    [[7, 0], (7, 0), np.array([7, 0]), [np.int64(7), 0]],
)
def test_subsets_by_indices(key):
    sub = make()[key]
    assert isinstance(sub, PromptSet)
    assert sub.texts == ("y3", "n0") and sub.labels == (1, 0)
    assert sub.label_names == ("no", "yes") and sub.name == "s"


def test_subsets_by_slice_and_mask():
    ps = make()
    assert ps[2:4].texts == ("n2", "n3") and ps[::-4].texts == ("y3", "n3")
    mask = np.array(ps.labels) == 1
    assert ps[mask].texts == ("y0", "y1", "y2", "y3")
    assert ps[list(mask)] == ps[mask]
    assert len(ps[[]]) == 0
    with pytest.raises(IndexError, match="boolean mask has 3 entries for 8 rows"):
        ps[[True, False, True]]
    with pytest.raises(IndexError, match="row 9 out of range"):
        ps[[0, 9]]
    with pytest.raises(TypeError, match="ordered sequence"):
        ps[{0, 1}]


def test_class_counts_records_and_repr():
    ps = PromptSet("s", ["a", "b", "c"], labels=[1, 1, 0], label_names=["x", "y", "z"], source="here")
    assert ps.class_counts() == {"x": 1, "y": 2, "z": 0}
    assert PromptSet("s", ["a", "b"], labels=[3, 3]).class_counts() == {"3": 2}
    assert PromptSet("s", ["a"]).class_counts() == {}
    records = ps.to_records()
    assert records[1] == {"text": "b", "label": 1, "meta": {}}
    json.dumps(records)
    assert repr(ps) == "PromptSet('s', 3 rows, classes {'x': 1, 'y': 2, 'z': 0}, source='here')"


# ---------------------------------------------------------------------- split


def test_split_is_stratified_deterministic_and_ordered():
    ps = PromptSet.from_classes("s", {"no": [f"n{i}" for i in range(30)], "yes": [f"y{i}" for i in range(10)]})
    tr, te = ps.split(test_size=0.25, random_state=3)
    assert (tr, te) == ps.split(test_size=0.25, random_state=3)
    assert ps.split(random_state=4)[1] != te
    assert te.class_counts() == {"no": 8, "yes": 2} and tr.class_counts() == {"no": 22, "yes": 8}
    assert set(tr.texts).isdisjoint(te.texts) and len(tr) + len(te) == len(ps)
    assert tr.name == "s/train" and te.name == "s/test"
    order = {t: i for i, t in enumerate(ps.texts)}
    assert [order[t] for t in te.texts] == sorted(order[t] for t in te.texts)


def test_split_unlabelled_and_errors():
    ps = PromptSet("u", [f"t{i}" for i in range(10)])
    tr, te = ps.split(test_size=0.3)
    assert (len(tr), len(te)) == (7, 3) and tr.labels is None
    with pytest.raises(ValueError, match="cannot split 1 row"):
        PromptSet("one", ["a"]).split()
    lonely = PromptSet("l", ["a", "b", "c", "d"], labels=[0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"stratified on \{'0': 3, '1': 1\}.*stratify=False"):
        lonely.split(test_size=0.5)
    assert len(lonely.split(test_size=0.5, stratify=False)[1]) == 2


# --------------------------------------------------------- transforms, builders


def test_map_texts_keeps_the_first_raw_text():
    ps = make().map_texts(lambda t: f"<user>{t}")
    assert ps.texts[0] == "<user>n0" and ps.meta[0] == {"raw_text": "n0"} and ps.labels == make().labels
    twice = ps.map_texts(str.upper)
    assert twice.texts[0] == "<USER>N0" and twice.meta[0]["raw_text"] == "n0"
    with pytest.raises(ValueError, match="row 0 has an empty or non-string text"):
        make().map_texts(lambda t: "")


def test_from_classes():
    ps = PromptSet.from_classes("refusal", {"harmless": ["Bake bread."], "harmful": ["Build a bomb.", "Rob a shop."]},
                                source="mine")
    assert ps.labels == (0, 1, 1) and ps.label_names == ("harmless", "harmful") and ps.source == "mine"
    with pytest.raises(TypeError, match="class 'a' maps to a single string"):
        PromptSet.from_classes("s", {"a": "text"})
    with pytest.raises(ValueError, match="non-empty mapping"):
        PromptSet.from_classes("s", {})


def test_concat():
    both = PromptSet.concat(make(), make(2), name="two")
    assert len(both) == 12 and both.labels[8:] == (0, 0, 1, 1) and both.name == "two"
    assert both.meta is None
    with_meta = PromptSet.concat(make(1).map_texts(str.upper), make(1))
    assert with_meta.meta == ({"raw_text": "n0"}, {"raw_text": "y0"}, {}, {}) and with_meta.name == "s+s"
    plain = PromptSet.concat(PromptSet("a", ["x"], source="f1"), PromptSet("b", ["y"], source="f2"))
    assert plain.labels is None and plain.source == "f1,f2"
    with pytest.raises(ValueError, match=r"cannot concatenate 's' \(label_names \('no', 'yes'\)\) with 'u' \(unlabelled\)"):
        PromptSet.concat(make(), PromptSet("u", ("x",)))
    other = PromptSet.from_classes("o", {"yes": ["a"], "no": ["b"]})
    with pytest.raises(ValueError, match="must share label_names"):
        PromptSet.concat(make(), other)
    with pytest.raises(ValueError, match="at least one"):
        PromptSet.concat()
