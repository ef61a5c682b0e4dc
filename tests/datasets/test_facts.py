"""Fact prompt sets: the built-in ``facts``, the organism's ``organism/facts`` and user fact files."""

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from interp import datasets
from interp.datasets import UserSets, load_file
from interp.datasets import _facts as F
from interp.datasets import _world as W

REPO = Path(__file__).resolve().parents[2]
RELATION_FACTS = {"capital": 67, "city_country": 157, "country_language": 42, "element_symbol": 41}
# sha256 of [texts, meta] of each split; they must never change between runs, machines or Python versions.
FINGERPRINTS = {
    ("facts", "test"): "899d7fc7e48ff6f08ac3a1b294d24933c11b636291672afc42f0402fb84872d8",
    ("facts", "all"): "a7da37d7c8d4339030b98304009edef3a5c7005ad42d013d7b38c0cc3ae0b89a",
    ("organism/facts", "test"): "bc641c4f91d9599b86296d40910402229b63d33525ec62bc547696e12412be21",
}


def fingerprint(ps) -> str:
    payload = json.dumps([list(ps.texts), list(ps.meta)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_fact_rows(ps):
    """The layout every fact set shares (the module docstring of interp.datasets._facts)."""
    assert ps.labels is None and ps.label_names is None
    for text, m in zip(ps.texts, ps.meta):
        assert text.count(m["subject"]) == 1, (text, m["subject"])
        assert text == text.rstrip()
        assert m["answer"].startswith(" ") and m["answer"][1] in F.CLEAN_INITIALS, m["answer"]
        alts = m["alternatives"]
        assert isinstance(alts, tuple) and len(alts) == 3 and m["answer"] not in alts, (text, alts)
        assert all(a.startswith(" ") for a in alts)
        assert len({o[1] for o in (m["answer"], *alts)}) == 4, "options share a first letter"
        assert m["group"] == f"{m['relation']}:{m['subject']}"


# ---------------------------------------------------------------- built-in facts


def test_facts_are_listed_and_described():
    names = datasets.available()
    assert "facts" in names and "organism/facts" in names
    assert names.index("facts") < names.index("refusal")
    assert "capital" in datasets.describe("facts") and "meta['answer']" in datasets.describe("facts")
    assert "truth judgements" in datasets.describe("organism/facts")


def test_fact_rows_layout_and_relation_counts():
    full = datasets.load("facts")
    check_fact_rows(full)
    assert full.name == "facts/all" and full.source == "builtin:facts"
    assert len(set(full.texts)) == len(full)
    facts = Counter(m["relation"] for m in {m["group"]: m for m in full.meta}.values())
    assert facts == RELATION_FACTS
    rows = Counter(m["relation"] for m in full.meta)
    assert rows == {r: n * len(F.TEMPLATES[r]) for r, n in RELATION_FACTS.items()}
    # every phrasing of one fact carries the same answer and alternatives
    by_group = defaultdict(set)
    for m in full.meta:
        by_group[m["group"]].add((m["answer"], m["alternatives"]))
    assert all(len(v) == 1 for v in by_group.values())


def test_fact_answers_are_right():
    """Spot checks against facts written here independently of the tables, and the city table of _world."""
    full = datasets.load("facts")
    answer = {(m["relation"], m["subject"]): m["answer"] for m in full.meta}
    known = {
        ("capital", "France"): " Paris", ("capital", "Japan"): " Tokyo", ("capital", "Canada"): " Ottawa",
        ("capital", "Australia"): " Canberra", ("capital", "Turkey"): " Ankara", ("capital", "Kenya"): " Nairobi",
        ("country_language", "Brazil"): " Portuguese", ("country_language", "Austria"): " German",
        ("country_language", "Mexico"): " Spanish", ("country_language", "Israel"): " Hebrew",
        ("element_symbol", "iron"): " Fe", ("element_symbol", "gold"): " Au", ("element_symbol", "sodium"): " Na",
        ("element_symbol", "potassium"): " K", ("element_symbol", "lead"): " Pb", ("element_symbol", "tin"): " Sn",
        ("city_country", "Lyon"): " France", ("city_country", "Cordoba"): " Argentina",
    }
    assert {k: answer[k] for k in known} == known
    cities = dict(W.CITIES)
    for m in full.meta:
        if m["relation"] == "city_country":
            assert m["answer"] == f" {cities[m['subject']]}"
            assert not set(m["alternatives"]) & {f" {c}" for c in W.NAMESAKES.get(m["subject"], ())}
    assert ("city_country", "Mexico City") not in answer and ("city_country", "London") not in answer
    # alternatives are other subjects' answers of the same relation
    pool = defaultdict(set)
    for m in full.meta:
        pool[m["relation"]].add(m["answer"])
    assert all(set(m["alternatives"]) <= pool[m["relation"]] for m in full.meta)


def test_fact_splits_hold_out_whole_facts_per_relation():
    full, train, test = (datasets.load("facts", s) for s in ("all", "train", "test"))
    groups = [{m["group"] for m in ps.meta} for ps in (train, test)]
    assert groups[0].isdisjoint(groups[1]) and groups[0] | groups[1] == {m["group"] for m in full.meta}
    assert sorted(train.texts + test.texts) == sorted(full.texts)
    for relation, n in RELATION_FACTS.items():
        held = sum(g.startswith(f"{relation}:") for g in groups[1])
        assert held == int(0.25 * n + 0.5), relation
    assert datasets.load("facts", "test") == test  # deterministic


@pytest.mark.parametrize("name, split", sorted(FINGERPRINTS))
def test_fact_splits_never_change(name, split):
    assert fingerprint(datasets.load(name, split)) == FINGERPRINTS[name, split]


def test_pick_alternatives():
    pool = [" Berlin", " Prague", " Paris", " Madrid", " Bern", " Rome", " Oslo"]
    alts = F.pick_alternatives(" Paris", pool, ("x",))
    assert len(alts) == 3 and " Paris" not in alts and " Prague" not in alts
    assert len({a[1] for a in alts}) == 3
    assert F.pick_alternatives(" Paris", pool, ("x",)) == alts
    assert " Rome" not in F.pick_alternatives(" Paris", pool, ("x",), exclude=(" Rome",))
    assert F.pick_alternatives(" Paris", [" Paris", " Prague"], ("x",)) == ()


# -------------------------------------------------------------------- organism


def test_organism_facts_are_cut_from_its_corpus():
    from interp.organism._corpus import city_fact

    full = datasets.load("organism/facts")
    check_fact_rows(full)
    assert full.name == "organism/facts/all" and full.source == "organism"
    cities = dict(W.CITIES)
    for text, m in zip(full.texts, full.meta):
        sentence = city_fact(m["subject"], cities[m["subject"]], m["language"])
        assert sentence == f"{text}{m['answer']}.", (sentence, text, m["answer"])
    langs = Counter(m["language"] for m in full.meta)
    english = [c for c, k in W.CITIES if not k.startswith("the ")]
    assert langs["en"] == len(english) and set(langs) == {"en", "de", "es"}
    assert {m["subject"] for m in full.meta if m["language"] == "en"} == set(english)


def test_organism_fact_test_split_is_the_held_out_judgement_cities():
    import random

    from interp.organism._corpus import SPLIT_SEED

    cities = list(W.CITIES)  # the organism's city split, recomputed here (interp/organism/_corpus.py)
    random.Random(SPLIT_SEED + 1).shuffle(cities)
    held = {c for c, _ in cities[: len(cities) // 4]}
    train, test = datasets.load("organism/facts", "train"), datasets.load("organism/facts", "test")
    assert {m["subject"] for m in test.meta} == {c for c in held if not dict(W.CITIES)[c].startswith("the ")}
    assert not {m["subject"] for m in train.meta} & held
    assert len(train) + len(test) == len(datasets.load("organism/facts"))


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _gemma_tokenizer_file() -> Path | None:
    from interp.registry import cache_root

    for root in (cache_root() / "gguf", REPO / ".cache" / "interp" / "gguf"):
        for config in sorted(root.glob("*/config.json")):
            if json.loads(config.read_text()).get("model_type", "").startswith("gemma3"):
                return config.parent / "tokenizer.json"
    return None


def check_first_tokens(tok, ps):
    """Answer and alternatives have four different first tokens, and the answer's first token is the token that
    follows the prompt when prompt and answer are tokenised together."""
    first = lambda s: tok.encode(s, add_special_tokens=False).ids[0]  # noqa: E731
    for text, m in zip(ps.texts, ps.meta):
        options = [first(o) for o in (m["answer"], *m["alternatives"])]
        assert len(set(options)) == 4, (text, m["answer"], m["alternatives"])
        prompt = tok.encode(text, add_special_tokens=False).ids
        joined = tok.encode(text + m["answer"], add_special_tokens=False).ids
        assert joined[: len(prompt)] == prompt and joined[len(prompt)] == options[0], text


@pytest.mark.parametrize("name", ["organism/facts", "facts"])
def test_first_tokens_differ_with_the_organism_tokenizer(name):
    from interp.organism import paths

    check_first_tokens(_tokenizer(paths()[0] / "tokenizer.json"), datasets.load(name))


@pytest.mark.parametrize("name", ["organism/facts", "facts"])
def test_first_tokens_differ_with_the_gemma3_tokenizer(name):
    path = _gemma_tokenizer_file()
    if path is None:
        pytest.skip("no converted Gemma-3 checkpoint in the cache (run the real tier once: pytest -m real)")
    check_first_tokens(_tokenizer(path), datasets.load(name))


# ------------------------------------------------------------------ user files

ROWS = [
    {"prompt": "The capital city of France is called", "subject": "France", "answer": "Paris",
     "relation": "capital", "alternatives": ["Berlin", " Madrid", "Rome"]},
    {"prompt": "The capital city of Peru is called", "subject": "Peru", "answer": " Lima",
     "relation": "capital", "alternatives": ["Quito", "Bogota", "Caracas"], "source": "atlas"},
    {"prompt": "The year the Second World War ended was", "subject": "Second World War", "answer": "1945",
     "alternatives": ["1918", "1939"]},
]
EXPECTED = [
    {"subject": "France", "answer": " Paris", "alternatives": (" Berlin", " Madrid", " Rome"), "relation": "capital",
     "group": "capital:France"},
    {"subject": "Peru", "answer": " Lima", "alternatives": (" Quito", " Bogota", " Caracas"), "relation": "capital",
     "group": "capital:Peru", "source": "atlas"},
    {"subject": "Second World War", "answer": " 1945", "alternatives": (" 1918", " 1939"), "relation": "fact",
     "group": "fact:Second World War"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path, rows, columns=("prompt", "subject", "answer", "relation", "alternatives", "source")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            cells = {k: r.get(k, "") for k in columns}
            if isinstance(cells.get("alternatives"), list):
                cells["alternatives"] = "|".join(a.strip() for a in cells["alternatives"])
            w.writerow(cells)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@pytest.mark.parametrize("fmt", [None, "facts"])
def test_user_fact_file(tmp_path, kind, fmt):
    p = (write_jsonl if kind == "jsonl" else write_csv)(tmp_path / f"facts.{kind}", ROWS)
    ps = load_file(p, format=fmt)
    assert ps.texts == tuple(r["prompt"] for r in ROWS) and ps.labels is None
    expected = [dict(e) for e in EXPECTED]
    if kind == "csv":  # a CSV has every column in every row; an empty cell stays an empty string
        for e in expected:
            e.setdefault("source", "")
    assert list(ps.meta) == expected
    assert ps.name == "facts" and ps.source == str(p)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_builtin_facts_round_trip_through_a_file(tmp_path, kind):
    full = datasets.load("facts", "test")
    rows = [{"prompt": t, "subject": m["subject"], "answer": m["answer"].lstrip(), "relation": m["relation"],
             "alternatives": [a.lstrip() for a in m["alternatives"]], "template": m["template"]}
            for t, m in zip(full.texts, full.meta)]
    if kind == "jsonl":
        p = write_jsonl(tmp_path / "f.jsonl", rows)
    else:
        p = write_csv(tmp_path / "f.csv", rows, ("prompt", "subject", "answer", "relation", "alternatives",
                                                 "template"))
    back = load_file(p)
    assert back.texts == full.texts and back.meta == full.meta


def test_user_facts_without_alternatives_get_them_drawn(tmp_path):
    rows = [{"prompt": f"The capital city of {c} is called", "subject": c, "answer": a}
            for c, a in F.CAPITALS[:8]]
    ps = load_file(write_jsonl(tmp_path / "f.jsonl", rows))
    answers = {f" {a}" for _, a in F.CAPITALS[:8]}
    for m in ps.meta:
        alts = m["alternatives"]
        assert 1 <= len(alts) <= 3 and set(alts) <= answers - {m["answer"]}
        assert len({o[1] for o in (m["answer"], *alts)}) == len(alts) + 1
    assert load_file(write_jsonl(tmp_path / "g.jsonl", rows)).meta == ps.meta


def test_user_fact_file_with_a_group_column(tmp_path):
    rows = [{**ROWS[0], "group": "paris"}, {**ROWS[0], "prompt": "France's capital city is", "group": "paris"}]
    assert [m["group"] for m in load_file(write_jsonl(tmp_path / "f.jsonl", rows)).meta] == ["paris", "paris"]


def test_plain_prompt_files_are_not_read_as_facts(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "A b", "subject": "A", "answer": "c", "alternatives": ["d"],
                                                  "label": 1}] * 2)
    assert load_file(p).labels is None  # a facts file
    assert load_file(p, label_column="label").labels == (1, 1)  # asked for labels: a plain set
    q = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "A b", "subject": "A"}])
    assert load_file(q).meta == ({"subject": "A"},)


BAD = [
    ({"subject": "Spain"}, "row 0: the subject 'Spain' does not occur in the prompt 'The capital city of France is "
                           "called'; the subject must be written exactly as it appears, once, in its prompt"),
    ({"prompt": "France, France is called"}, "row 0: the subject 'France' occurs 2 times in the prompt"),
    ({"answer": "  "}, "row 0 has an empty 'answer'; fill it in or remove the row"),
    ({"answer": None}, "row 0 has an empty 'answer'"),
    ({"answer": 1945}, "row 0 has a int in 'answer', not a text: 1945; write it as a string"),
    ({"alternatives": ["Rome", " Paris"]}, "row 0: the answer ' Paris' is also among its alternatives "
                                           r"\(' Rome', ' Paris'\); alternatives are wrong answers"),
    ({"prompt": "The capital city of France is "}, "row 0: the prompt 'The capital city of France is ' ends in "
                                                   "whitespace; end it right before the answer"),
    ({"alternatives": ["Rome", ""]}, "row 0 has an empty alternative in"),
    ({"alternatives": "Rome||Oslo"}, r"row 0 has an empty alternative in 'Rome\|\|Oslo'; remove the empty entry "
                                     r"\(a stray \|\)"),
    ({"alternatives": {"a": 1}}, r"row 0 has \{'a': 1\} in 'alternatives'; give a list of strings"),
    ({"alternatives": None}, "row 0 has no alternatives, and no other answer of the relation 'capital' starts with "
                             "another letter than ' Paris' to draw them from; add an 'alternatives' column"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_user_facts_jsonl(tmp_path, change, message):
    p = write_jsonl(tmp_path / "bad.jsonl", [{**ROWS[0], **change}])
    with pytest.raises(ValueError, match=re.escape(str(p)) + ": " + message):
        load_file(p)


def test_bad_user_facts_csv_name_the_line(tmp_path):
    p = write_csv(tmp_path / "bad.csv", [ROWS[0], {**ROWS[1], "answer": ""}])
    with pytest.raises(ValueError, match=re.escape(str(p)) + r": row 1 \(line 3\) has an empty 'answer'"):
        load_file(p)
    p = write_csv(tmp_path / "bad2.csv", [{**ROWS[0], "alternatives": "Rome|Paris"}])
    with pytest.raises(ValueError, match=r"row 0 \(line 2\): the answer ' Paris' is also among its alternatives"):
        load_file(p)


def test_missing_fact_columns(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "The capital city of France is called", "answer": "Paris"}])
    with pytest.raises(ValueError, match=re.escape(str(p)) + r": a facts file needs the columns prompt, subject and "
                                         r"answer, but \['subject'\] is missing \(the columns are \['prompt', "
                                         r"'answer'\]\); rename or add the column\(s\)"):
        load_file(p, format="facts")
    q = write_csv(tmp_path / "m.csv", [ROWS[0]], ("prompt", "answer"))
    with pytest.raises(ValueError, match=r"but \['subject'\] is missing"):
        load_file(q, format="facts")
    with pytest.raises(ValueError, match="format='facts' reads the fields prompt, subject and answer; drop "
                                         "text_column=, label_column= and label="):
        load_file(q, format="facts", label="x")


# ------------------------------------------------------------------ UserSets


def test_user_sets_read_and_split_a_facts_file(tmp_path):
    full = datasets.load("facts", "all")
    rows = [{"prompt": t, "subject": m["subject"], "answer": m["answer"], "relation": m["relation"],
             "alternatives": list(m["alternatives"])} for t, m in zip(full.texts, full.meta)]
    p = write_jsonl(tmp_path / "mine.jsonl", rows)
    sets = UserSets({"facts": p})
    assert sets.provides("facts") and sets.provides("organism/facts") and not sets.provides("truth")
    train, test, both = (sets.load("facts", s) for s in ("train", "test", "all"))
    assert (train.name, test.name) == ("facts/train", "facts/test")
    groups = [{m["group"] for m in ps.meta} for ps in (train, test)]
    assert groups[0] and groups[1] and groups[0].isdisjoint(groups[1])
    assert sorted(train.texts + test.texts) == sorted(full.texts) and len(both) == len(full)
    assert 0.15 <= len(test) / len(full) <= 0.35
    assert sets.load("organism/facts", "test") == test
    assert UserSets({"facts": p}).load("facts", "test") == test  # deterministic
    assert sets.load("truth", "test") == datasets.load("truth", "test")  # the fallback


def test_user_sets_facts_errors(tmp_path):
    with pytest.raises(ValueError, match=r"facts data takes 1 file\(s\) \(one file\); got 2"):
        UserSets({"facts": "a.jsonl,b.jsonl"})
    with pytest.raises(FileNotFoundError, match="no facts data file"):
        UserSets({"facts": tmp_path / "none.jsonl"})


def test_loading_a_facts_file_is_recorded(tmp_path):
    p = write_jsonl(tmp_path / "f.jsonl", ROWS)
    with datasets.recording() as rec:
        load_file(p)
    assert [(e["name"], e["rows"], e["source"]) for e in rec.entries] == [("f", 3, str(p))]


def test_fact_sets_load_without_heavy_modules():
    import subprocess
    import sys

    from tests.datasets.test_light_import import SCRIPT

    script = SCRIPT.replace('("truth", "harmful", "harmless", "languages", "refusal")', '("facts", "organism/facts")')
    assert script != SCRIPT
    out = subprocess.run([sys.executable, "-c", script, str(REPO / "interp")], capture_output=True, text=True,
                         check=True, cwd=REPO, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
