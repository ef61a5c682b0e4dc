"""The loaders on real public files, read in place from ``../shared/datasets`` beside the repository."""

import json
from collections import Counter
from pathlib import Path

import pytest

from interp.datasets import PromptSet, load_file

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"public dataset {path} is not present (the folder ../shared/datasets beside the repo is optional)")
    return path


GOT = ["cities", "neg_cities", "larger_than", "smaller_than", "sp_en_trans", "neg_sp_en_trans"]


@pytest.mark.parametrize("name", GOT)
def test_geometry_of_truth(name):
    ps = load_file(shared("geometry_of_truth", f"{name}.csv"))
    assert ps.name == name and len(ps) > 300 and ps.label_names == ("false", "true")
    assert set(ps.labels) == {0, 1} and all(t.endswith(".") for t in ps.texts)
    assert min(ps.class_counts().values()) / max(ps.class_counts().values()) > 0.4
    # the extra columns arrive in meta, parsed, and agree with the labels
    for y, m in zip(ps.labels, ps.meta):
        if name in ("cities", "neg_cities"):
            same = m["country"] == m["correct_country"]
            assert y == int(same if name == "cities" else not same)
        elif name in ("larger_than", "smaller_than"):
            assert isinstance(m["n1"], int) and m["diff"] == m["n1"] - m["n2"]
            assert y == int(m["n1"] > m["n2"] if name == "larger_than" else m["n1"] < m["n2"])
        else:
            assert m == {}


@pytest.mark.parametrize("split, n", [("train", 260), ("val", 39)])
def test_refusal_harmful(split, n):
    ps = load_file(shared("refusal", f"harmful_{split}.json"), label="harmful")
    assert len(ps) == n and ps.label_names == ("harmful",) and set(ps.labels) == {0}
    assert all(set(m) == {"category"} for m in ps.meta)
    if split == "val":
        assert all(m["category"] for m in ps.meta)


def test_refusal_harmless_and_a_combined_set():
    harmless = load_file(shared("refusal", "harmless_val.json"), label="harmless")
    harmful = load_file(shared("refusal", "harmful_val.json"), label="harmful")
    assert len(harmless) > 39 and harmless.labels is not None
    both = PromptSet.from_classes("refusal/val", {"harmless": harmless.texts, "harmful": harmful.texts})
    assert both.class_counts() == {"harmless": len(harmless), "harmful": 39}
    train, test = both.split(test_size=0.25, random_state=0)
    assert abs(test.class_counts()["harmful"] / len(test) - 39 / len(both)) < 0.02


def test_refusal_harmless_train_is_large_but_fine():
    ps = load_file(shared("refusal", "harmless_train.json"))
    raw = json.loads(shared("refusal", "harmless_train.json").read_text(encoding="utf-8"))
    assert ps.texts == tuple(r["instruction"] for r in raw) and ps.labels is None


def test_snmf_twenty_concepts():
    ps = load_file(shared("snmf_concepts", "final_dataset_20_concepts.json"))
    assert len(ps) == 200 and len(ps.label_names) == 20
    assert list(ps.label_names) == sorted(ps.label_names)
    assert set(ps.class_counts().values()) == {10}
    raw = json.loads(shared("snmf_concepts", "final_dataset_20_concepts.json").read_text(encoding="utf-8"))
    assert [ps.label_names[y] for y in ps.labels] == [r["label"] for r in raw]


@pytest.mark.parametrize("file", ["hier_concepts.json", "languages.json"])
def test_snmf_concept_mappings(file):
    path = shared("snmf_concepts", file)
    raw = json.loads(path.read_text(encoding="utf-8"))
    ps = load_file(path)
    assert ps.label_names == tuple(sorted(raw))
    assert ps.texts == tuple(s for sentences in raw.values() for s in sentences)
    assert Counter(ps.label_names[y] for y in ps.labels) == Counter({k: len(v) for k, v in raw.items()})
    if file == "languages.json":
        assert len(ps.label_names) == 10 and "French" in ps.label_names
