import json

import pytest

from interp.datasets import FORMATS, load_file


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


# -------------------------------------------------------------------- formats


def test_geometry_of_truth_csv(tmp_path):
    p = write(tmp_path, "cities.csv",
              "statement,label,city,country,diff\n"
              "The city of Paris is in France.,1,Paris,France,-1.5\n"
              "\"The city of Paris, France is in Peru.\",0,Paris,Peru,3\n")
    ps = load_file(p)
    assert ps.texts == ("The city of Paris is in France.", "The city of Paris, France is in Peru.")
    assert ps.labels == (1, 0) and ps.label_names == ("false", "true")
    assert ps.meta[0] == {"city": "Paris", "country": "France", "diff": -1.5} and ps.meta[1]["diff"] == 3
    assert ps.name == "cities" and ps.source == str(p)
    assert load_file(p, name="mine").name == "mine"


def test_geometry_of_truth_labels_must_be_binary(tmp_path):
    p = write(tmp_path, "bad.csv", "statement,label\nA.,1\nB.,2\n")
    with pytest.raises(ValueError, match=r"Geometry-of-Truth labels are 0 \(false\) or 1 \(true\); found \[1, 2\]"):
        load_file(p)
    assert load_file(p, format="csv").labels == (1, 2)


def test_instruction_json_with_constant_label(tmp_path):
    rows = [{"instruction": "Do a thing.", "category": "x"},
            {"instruction": "Do another.", "input": "with this", "output": "done", "category": None}]
    p = write(tmp_path, "harmful.json", json.dumps(rows))
    ps = load_file(p, label="harmful")
    assert ps.texts == ("Do a thing.", "Do another.") and ps.labels == (0, 0) and ps.label_names == ("harmful",)
    assert ps.meta == ({"category": "x"}, {"input": "with this", "output": "done", "category": None})
    unlabelled = load_file(p)
    assert unlabelled.labels is None and unlabelled.label_names is None


def test_instruction_json_prefers_instruction_over_other_text_fields(tmp_path):
    rows = [{"instruction": "Summarise this.", "text": "a long text", "label": "x"}]
    ps = load_file(write(tmp_path, "alpaca.json", json.dumps(rows)), label="task")
    assert ps.texts == ("Summarise this.",) and ps.meta == ({"text": "a long text", "label": "x"},)


def test_prompt_label_json_list_and_mapping(tmp_path):
    p = write(tmp_path, "c.json", json.dumps([{"prompt": "a b", "label": "z"}, {"prompt": "c", "label": "y"}]))
    ps = load_file(p)
    assert ps.texts == ("a b", "c") and ps.label_names == ("y", "z") and ps.labels == (1, 0)
    q = write(tmp_path, "m.json", json.dumps({"dogs": ["d1"], "cats": ["c1", "c2"]}))
    qs = load_file(q)
    assert qs.texts == ("d1", "c1", "c2") and qs.labels == (1, 0, 0) and qs.label_names == ("cats", "dogs")
    with pytest.raises(ValueError, match="the value of 'dogs' is not a list of sentences"):
        load_file(write(tmp_path, "bad.json", json.dumps({"dogs": "d1"})))


def test_jsonl(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"text": "hello", "label": 1, "id": 7}\n\n{"text": "bye", "label": 0, "id": 8}\n')
    ps = load_file(p)
    assert ps.texts == ("hello", "bye") and ps.labels == (1, 0) and ps.label_names is None
    assert ps.meta == ({"id": 7}, {"id": 8})
    strings = load_file(write(tmp_path, "s.jsonl", '{"sentence": "a", "class": "x"}\n{"sentence": "b", "class": "w"}\n'))
    assert strings.label_names == ("w", "x") and strings.labels == (1, 0)
    flags = load_file(write(tmp_path, "b.jsonl", '{"prompt": "a", "label": true}\n{"prompt": "b", "label": false}\n'))
    assert flags.labels == (1, 0) and flags.label_names == ("false", "true")


def test_generic_csv(tmp_path):
    q = write(tmp_path, "d.csv", "sentence,class,extra\nBonjour,fr,1\nHello,en,2.0\n")
    qs = load_file(q)
    assert qs.texts == ("Bonjour", "Hello") and qs.label_names == ("en", "fr") and qs.labels == (1, 0)
    assert qs.meta == ({"extra": 1}, {"extra": 2.0})
    r = write(tmp_path, "e.csv", "body,kind\n1234,a\nnan,b\n")
    rs = load_file(r, text_column="body", label_column="kind")
    assert rs.texts == ("1234", "nan") and rs.labels == (0, 1)  # the text column stays text
    floats = load_file(write(tmp_path, "f.csv", "text,label\na,1.0\nb,0.0\n"))
    assert floats.labels == (1, 0)
    bom = load_file(write(tmp_path, "bom.csv", "text,label\nhi,1\n", encoding="utf-8-sig"))
    assert bom.texts == ("hi",) and bom.labels == (1,)
    unlabelled = load_file(write(tmp_path, "u.csv", "prompt,source\nhi,web\n"))
    assert unlabelled.labels is None and unlabelled.meta == ({"source": "web"},)


def test_detection_by_content(tmp_path):
    lines_in_json = write(tmp_path, "lines.json", '{"text": "a"}\n{"text": "b"}\n')
    assert load_file(lines_in_json).texts == ("a", "b")
    no_ext = write(tmp_path, "prompts", json.dumps([{"prompt": "p", "label": "x"}]))
    assert load_file(no_ext).label_names == ("x",)
    csv_txt = write(tmp_path, "data.txt", "statement,label\nA.,1\n")
    assert load_file(csv_txt).label_names == ("false", "true")
    strings = write(tmp_path, "list.json", json.dumps(["first prompt", "second prompt"]))
    assert load_file(strings).texts == ("first prompt", "second prompt")


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "facts"])  # facts: test_facts.py
def test_forced_formats(tmp_path, fmt):
    if fmt.endswith("csv"):
        p = write(tmp_path, "x.data", "statement,label\nA.,1\nB.,0\n")
    elif fmt == "jsonl":
        p = write(tmp_path, "x.data", '{"statement": "A.", "label": 1}\n{"statement": "B.", "label": 0}\n')
    elif fmt == "instruction_json":
        p = write(tmp_path, "x.data", json.dumps([{"instruction": "A.", "label": 1}, {"instruction": "B.", "label": 0}]))
    else:
        p = write(tmp_path, "x.data", json.dumps([{"prompt": "A.", "label": 1}, {"prompt": "B.", "label": 0}]))
    ps = load_file(p, format=fmt)
    assert ps.texts == ("A.", "B.") and ps.labels == (1, 0)
    assert ps.label_names == (("false", "true") if fmt == "got_csv" else None)


def test_jsonl_format_accepts_a_json_list(tmp_path):
    p = write(tmp_path, "x.json", json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    assert load_file(p, format="jsonl").texts == ("a", "b")
    one_line = write(tmp_path, "y.jsonl", json.dumps([{"text": "a"}, {"text": "b"}]))
    assert load_file(one_line).texts == ("a", "b")


# --------------------------------------------------------------------- errors


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompt file .*missing.csv does not exist"):
        load_file(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a directory"):
        load_file(tmp_path)
    with pytest.raises(ValueError, match="the file is empty"):
        load_file(write(tmp_path, "empty.csv", ""))
    with pytest.raises(ValueError, match="the file is empty"):
        load_file(write(tmp_path, "blank.json", "  \n"))
    with pytest.raises(ValueError, match="the file has no rows"):
        load_file(write(tmp_path, "header.csv", "text,label\n"))
    with pytest.raises(ValueError, match="the file has no rows"):
        load_file(write(tmp_path, "none.json", "[]"))


def test_column_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no text column found among \['body', 'y'\]; expected one of \['text'"):
        load_file(write(tmp_path, "nocol.csv", "body,y\nx,1\n"))
    with pytest.raises(ValueError, match=r"no text column 'words'; the columns are \['text'\]"):
        load_file(write(tmp_path, "t.csv", "text\nhi\n"), text_column="words")
    with pytest.raises(ValueError, match=r"no label column 'y'"):
        load_file(write(tmp_path, "l.csv", "text\nhi\n"), label_column="y")
    with pytest.raises(ValueError, match="more fields than the 2 columns"):
        load_file(write(tmp_path, "ragged.csv", "text,label\nhello, world,1\n"))
    with pytest.raises(ValueError, match="column 'text' appears more than once"):
        load_file(write(tmp_path, "dup.csv", "text,text\na,b\n"))


def test_row_errors(tmp_path):
    with pytest.raises(ValueError, match=r"row 1 has an empty 'text'"):
        load_file(write(tmp_path, "blank.jsonl", '{"text": "a"}\n{"text": ""}\n'))
    with pytest.raises(ValueError, match=r"row 1 \(line 3\) has an empty 'statement'"):
        load_file(write(tmp_path, "blank.csv", "statement,label\nA.,1\n ,0\n"))
    with pytest.raises(ValueError, match=r"row 2 \(line 5\) has an empty 'statement'"):
        load_file(write(tmp_path, "multi.csv", 'statement,label\nA.,1\n"B\nstill B.",0\n"",1\n'))
    with pytest.raises(ValueError, match=r"row 0 has a int in 'prompt', not a text"):
        load_file(write(tmp_path, "num.json", json.dumps([{"prompt": 5, "label": "a"}])))
    with pytest.raises(ValueError, match=r"row 1 is a str, not an object"):
        load_file(write(tmp_path, "mixed.json", json.dumps([{"text": "a"}, "b"])))


def test_label_errors(tmp_path):
    with pytest.raises(ValueError, match=r"labels in 'label' mix types: int \(row 0: 1\), str \(row 1: 'x'\)"):
        load_file(write(tmp_path, "mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n'))
    with pytest.raises(ValueError, match=r"labels in 'label' mix types: int \(row 0 \(line 2\): 1\), str"):
        load_file(write(tmp_path, "mixed.csv", "text,label\na,1\nb,yes\n"))
    with pytest.raises(ValueError, match=r"row 1 has no label in 'label'; label every row or pass label="):
        load_file(write(tmp_path, "gap.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n'))
    with pytest.raises(ValueError, match=r"labels must be integers or strings"):
        load_file(write(tmp_path, "list.jsonl", '{"text": "a", "label": [1, 2]}\n'))
    with pytest.raises(ValueError, match=r"labels must be integers or strings"):
        load_file(write(tmp_path, "half.jsonl", '{"text": "a", "label": 0.5}\n'))
    with pytest.raises(ValueError, match=r"negative label -1"):
        load_file(write(tmp_path, "neg.jsonl", '{"text": "a", "label": -1}\n'))


def test_argument_and_syntax_errors(tmp_path):
    p = write(tmp_path, "y.csv", "text\nhi\n")
    with pytest.raises(ValueError, match="unknown format 'parquet'; use one of got_csv, instruction_json"):
        load_file(p, format="parquet")
    with pytest.raises(ValueError, match="either label= .* or label_column=, not both"):
        load_file(p, label="x", label_column="label")
    with pytest.raises(ValueError, match="label must be a non-empty class name"):
        load_file(p, label="")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_file(write(tmp_path, "bad.jsonl", '{"text": "a"}\n{oops\n'))
    with pytest.raises(ValueError, match="not valid JSON"):
        load_file(write(tmp_path, "bad.json", '[{"text": "a"},'))
    with pytest.raises(ValueError, match="expected a JSON list of objects"):
        load_file(write(tmp_path, "num.json", "42"))
    with pytest.raises(ValueError, match="cannot tell the format .* pass format="):
        load_file(write(tmp_path, "x.txt", "hello"))
    with pytest.raises(ValueError, match="not UTF-8 text"):
        p = tmp_path / "latin.csv"
        p.write_bytes("text\ncaf\xe9\n".encode("latin-1"))
        load_file(p)
