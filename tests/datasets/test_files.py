import json

import pytest

from interp.datasets import load_file

from ..conftest import SHARED_DATASETS


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_got_csv(tmp_path):
    p = write(tmp_path, "cities.csv", "statement,label,city\nParis is in France.,1,Paris\nParis is in Peru.,0,Paris\n")
    ps = load_file(p)
    assert ps.texts == ("Paris is in France.", "Paris is in Peru.")
    assert ps.labels == (1, 0) and ps.label_names == ("false", "true")
    assert ps.meta[0] == {"city": "Paris"} and ps.name == "cities" and ps.source == str(p)


def test_instruction_json_with_constant_label(tmp_path):
    rows = [{"instruction": "Do a thing.", "category": "x"}, {"instruction": "Do another.", "category": None}]
    p = write(tmp_path, "harmful.json", json.dumps(rows))
    ps = load_file(p, label="harmful")
    assert ps.texts == ("Do a thing.", "Do another.") and ps.labels == (0, 0) and ps.label_names == ("harmful",)
    assert ps.meta[0] == {"category": "x"}
    assert load_file(p).labels is None


def test_prompt_label_json_list_and_mapping(tmp_path):
    p = write(tmp_path, "c.json", json.dumps([{"prompt": "a b", "label": "z"}, {"prompt": "c", "label": "y"}]))
    ps = load_file(p)
    assert ps.label_names == ("y", "z") and ps.labels == (1, 0)
    q = write(tmp_path, "m.json", json.dumps({"cats": ["c1", "c2"], "dogs": ["d1"]}))
    qs = load_file(q)
    assert qs.texts == ("c1", "c2", "d1") and qs.labels == (0, 0, 1) and qs.label_names == ("cats", "dogs")


def test_jsonl_and_generic_csv(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"text": "hello", "label": 1}\n\n{"text": "bye", "label": 0}\n')
    assert load_file(p).labels == (1, 0)
    q = write(tmp_path, "d.csv", "sentence,class,extra\nBonjour,fr,1\nHello,en,2\n")
    qs = load_file(q)
    assert qs.texts == ("Bonjour", "Hello") and qs.label_names == ("en", "fr") and qs.labels == (1, 0)
    r = write(tmp_path, "e.csv", "body,kind\nHi,a\n")
    assert load_file(r, text_column="body", label_column="kind").texts == ("Hi",)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_file(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="the file is empty"):
        load_file(write(tmp_path, "empty.csv", ""))
    with pytest.raises(ValueError, match="the file has no rows"):
        load_file(write(tmp_path, "header.csv", "text,label\n"))
    with pytest.raises(ValueError, match=r"no text column found among \['body', 'y'\]"):
        load_file(write(tmp_path, "nocol.csv", "body,y\nx,1\n"))
    with pytest.raises(ValueError, match="row 1 has an empty 'text'"):
        load_file(write(tmp_path, "blank.jsonl", '{"text": "a"}\n{"text": ""}\n'))
    with pytest.raises(ValueError, match="labels in 'label' mix types"):
        load_file(write(tmp_path, "mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n'))
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        load_file(write(tmp_path, "bad.jsonl", "{oops\n"))
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_file(write(tmp_path, "x.txt", "hello"))
    with pytest.raises(ValueError, match="unknown format"):
        load_file(write(tmp_path, "y.csv", "text\nhi\n"), format="parquet")


def shared(*parts):
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"public dataset {path} not present (../shared/datasets is optional)")
    return path


@pytest.mark.parametrize("name", ["cities", "neg_cities", "larger_than", "smaller_than", "sp_en_trans",
                                  "neg_sp_en_trans"])
def test_real_geometry_of_truth(name):
    ps = load_file(shared("geometry_of_truth", f"{name}.csv"))
    assert len(ps) > 300 and ps.label_names == ("false", "true")
    assert set(ps.labels) == {0, 1} and all(t.endswith(".") for t in ps.texts)


def test_real_refusal_and_snmf_sets():
    harmful = load_file(shared("refusal", "harmful_train.json"), label="harmful")
    assert len(harmful) == 260 and "category" in harmful.meta[0]
    concepts = load_file(shared("snmf_concepts", "final_dataset_20_concepts.json"))
    assert len(concepts) == 200 and len(concepts.label_names) == 20
    langs = load_file(shared("snmf_concepts", "languages.json"))
    assert len(langs.label_names) == 10
