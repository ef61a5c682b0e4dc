"""A researcher's own data in interp compare: group-aware splits, user files per section (--truth-data,
--refusal-data, --language-data, --snmf-data) and user concepts (--concept NAME=POS,NEG), end to end on the
bundled pair."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

import interp
from interp.cli import main
from interp.compare import compare, load_config
from interp.datasets import PromptSet, UserSets, load


def test_a_split_by_group_keeps_every_group_on_one_side_and_the_classes_in_both():
    texts, labels, meta = [], [], []
    for g in range(40):  # a statement and its negation share a group
        for k in (0, 1):
            texts.append(f"statement {g} {k}")
            labels.append(k)
            meta.append({"group": f"fact{g}"})
    ps = PromptSet("planted", texts, labels, ("false", "true"), meta)
    train, test = ps.split(0.25, random_state=3)
    groups = lambda part: {m["group"] for m in part.meta}  # noqa: E731
    assert groups(train).isdisjoint(groups(test)) and len(groups(test)) == 10  # one of round(1 / 0.25) folds
    assert test.class_counts() == {"false": 10, "true": 10}
    assert ps.split(0.25, random_state=3)[1].texts == test.texts and ps.split(0.25, random_state=4)[1].texts != test.texts
    # without the key (or with group=None) rows are split one by one, as before
    assert ps.split(0.25, random_state=3, group=None)[1].texts != test.texts
    with pytest.raises(ValueError, match="takes test_size as a fraction"):
        ps.split(10)
    few = PromptSet("few", texts[:6], labels[:6], ("false", "true"), meta[:6])
    with pytest.raises(ValueError, match=r"3 groups \('group'\) cannot be split 4 ways"):
        few.split(0.25)


def _truth_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label", "group"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def user_truth(tmp_path_factory):
    """A Geometry-of-Truth-style CSV of the built-in city statements, grouped by city."""
    ps = load("truth", "all")
    path = tmp_path_factory.mktemp("user") / "cities.csv"
    _truth_csv(path, [(t, y, m["group"]) for t, y, m in zip(ps.texts, ps.labels, ps.meta) if m["kind"] == "cities"])
    return path


def test_user_files_are_checked_before_any_model_boots(tmp_path, user_truth):
    with pytest.raises(FileNotFoundError, match="no truth data file"):
        UserSets({"truth": tmp_path / "missing.csv"})
    with pytest.raises(ValueError, match=r"refusal data takes 2 file\(s\) \(harmful,harmless\); got 1"):
        UserSets({"refusal": str(user_truth)})
    with pytest.raises(ValueError, match="user files can replace truth, refusal, languages, snmf"):
        UserSets({"sycophancy": str(user_truth)})
    assert main(["compare", "--concepts", "truth", "--truth-data", str(tmp_path / "missing.csv"), "--base",
                 "/nonexistent", "--post", "/nonexistent", "--out", str(tmp_path / "r")]) == 2
    (tmp_path / "yes.jsonl").write_text("\n".join(json.dumps({"text": f"s{i}.", "label": lab})
                                                  for i, lab in enumerate(["yes", "no"] * 4)))
    with pytest.raises(ValueError, match="truth labels must be true/false or 1/0"):
        UserSets({"truth": tmp_path / "yes.jsonl"}).load("truth", "train")
    # the content is read before a model boots too: a nonexistent model folder is not the error named
    with pytest.raises(ValueError, match="truth labels must be true/false or 1/0"):
        compare(base="/nonexistent/base", post="/nonexistent/post", concepts=["truth"], out=None,
                options={"truth": {"data": str(tmp_path / "yes.jsonl")}})
    (tmp_path / "lang.jsonl").write_text("\n".join(json.dumps({"text": f"Hallo {i}", "label": "de", "pair_id": i})
                                                   for i in range(8)))
    with pytest.raises(ValueError, match=r"needs English \('en'\) rows"):
        UserSets({"languages": tmp_path / "lang.jsonl"}).load("languages", "train")


def test_truth_section_reads_a_user_csv_end_to_end(user_truth, tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--concepts", "truth", "--truth-data", str(user_truth), "--truth-seed", "2",
                 "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    truth, manifest = report["concepts"]["truth"], report["manifest"]
    assert truth["setup"]["dataset"] == f"truth ({user_truth})"
    # the split is the user file's, by city, seeded with the section's seed; the manifest names its rows
    train, test = (UserSets({"truth": user_truth}, seed=2).load("truth", s) for s in ("train", "test"))
    assert {m["group"] for m in train.meta}.isdisjoint({m["group"] for m in test.meta})
    listed = {d["split"]: d for d in manifest["datasets"] if d["source"] == str(user_truth) and d["split"] != "all"}
    assert listed["test"]["row_ids"] == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in test.texts]
    assert manifest["data_files"][str(user_truth)] == hashlib.sha256(user_truth.read_bytes()).hexdigest()
    assert manifest["config"]["options"]["truth"]["data"] == str(user_truth)
    # the figures are a mass-mean probe on these rows (reference computed here): the organism reads each
    # statement after its judgement cue, at the last token
    from interp.organism._corpus import JUDGE_CUE
    from probes.stats import correct
    from probes.sweep import fit_layers

    pair = interp.load_pair()
    X = {s: interp.collect(pair.post, ps.map_texts(lambda t: t + JUDGE_CUE), "resid_post", positions="last",
                           progress=False)["resid_post"] for s, ps in (("train", train), ("test", test))}
    want = correct(fit_layers(X["train"], torch.tensor(train.labels), "mass_mean"), X["test"],
                   torch.tensor(test.labels)).mean(-1)
    np.testing.assert_allclose([e["post_accuracy"] for e in truth["per_layer"]], want, atol=1e-9)


def test_refusal_language_and_snmf_sections_take_user_files(tmp_path):
    harmful, harmless = tmp_path / "harmful.json", tmp_path / "harmless.json"
    for path, name in ((harmful, "organism/harmful"), (harmless, "organism/harmless")):
        path.write_text(json.dumps([{"instruction": t} for t in load(name, "all").texts[:80]]))
    langs = load("organism/languages", "all")
    parallel = tmp_path / "parallel.jsonl"
    parallel.write_text("\n".join(json.dumps({"text": t, "language": m["language"], "pair_id": m["pair_id"],
                                              "opening": m["prefix"]}) for t, m in zip(langs.texts, langs.meta)))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in load("organism/truth", "all").texts[:120]))
    out = tmp_path / "r"
    assert main(["compare", "--concepts", "refusal,language,snmf", "--refusal-data", f"{harmful},{harmless}",
                 "--language-data", str(parallel), "--snmf-data", str(corpus), "--snmf-n-prompts", "90",
                 "--snmf-n-steer", "1", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["concepts"]["refusal"]["setup"]["sources"] == sorted({str(harmful), str(harmless)})
    assert report["concepts"]["language"]["setup"]["dataset"] == str(parallel)
    files = report["manifest"]["data_files"]
    assert {str(harmful), str(harmless), str(parallel), str(corpus)} <= set(files)
    by_section = {(d["section"], d["source"]) for d in report["manifest"]["datasets"]}
    assert {("refusal", str(harmful)), ("language", str(parallel)), ("snmf", str(corpus))} <= by_section
    # 60 of the 80 harmful requests train (75/25), and the post model refuses all 20 held-out ones: Wilson's
    # interval for 20 of 20 is [0.84, 1.00]
    summary = report["concepts"]["refusal"]["readings"]["summary"]
    assert "refusal on held-out harmful requests 1.00 [0.84, 1.00]" in summary, summary


def test_a_user_concept_runs_from_the_command_line_and_from_a_configuration(tmp_path, capsys):
    pos, neg = tmp_path / "harmful.jsonl", tmp_path / "harmless.jsonl"
    pos.write_text("\n".join(json.dumps({"text": t}) for t in load("organism/harmful", "all").texts[:60]))
    neg.write_text("\n".join(json.dumps({"text": t}) for t in load("organism/harmless", "all").texts[:60]))
    out = tmp_path / "r"
    assert main(["compare", "--concept", f"harm={pos},{neg}", "--harm-position", "mean", "--harm-max-new-tokens",
                 "0", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("harm (") and "base acc" in printed  # only the user's concept ran
    report = json.loads((out / "report.json").read_text())
    assert list(report["concepts"]) == ["harm"]
    assert report["concepts"]["harm"]["setup"]["position"] == "mean"
    config = load_config(out / "config.toml")
    assert config["user_concepts"] == {"harm": [str(pos), str(neg)]} and config["options"]["harm"]["position"] == "mean"
    # the configuration reproduces the run
    assert main(["compare", "--config", str(out / "config.toml"), "--out", str(tmp_path / "again"), "-q"]) == 0
    assert main(["diff", str(out), str(tmp_path / "again")]) == 0
    capsys.readouterr()
    assert main(["compare", "--concept", f"truth={pos},{neg}", "--out", str(tmp_path / "x")]) == 2
    assert "user concept name(s) ['truth'] are taken by sections" in capsys.readouterr().err
    assert main(["compare", "--concept", "harm", "--out", str(tmp_path / "x")]) == 2
    assert "--concept takes NAME=POSITIVE_FILE,NEGATIVE_FILE" in capsys.readouterr().err


def test_user_files_never_leak_a_row_into_both_splits_and_read_labels_in_any_case(tmp_path):
    ps = load("organism/truth", "all")
    # one row without its group, every statement twice: groups and duplicates both stay on one side
    rows = [{"text": t, "label": bool(y), **({"group": m["group"]} if i else {})}
            for i, (t, y, m) in enumerate(zip(ps.texts, ps.labels, ps.meta))]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows * 2))
    u = UserSets({"truth": tmp_path / "t.jsonl"})
    train, test = u.load("truth", "train"), u.load("truth", "test")
    assert set(train.texts).isdisjoint(test.texts) and len(train) + len(test) == 2 * len(ps)
    assert {m["group"] for m in train.meta}.isdisjoint({m["group"] for m in test.meta})
    _truth_csv(tmp_path / "m.csv", [(f"Statement {i}.", lab, i) for i, lab in
                                    enumerate(["True", "false", "TRUE", "False", "true", "FALSE", "True", "false"])])
    both = u.__class__({"truth": tmp_path / "m.csv"}).load("truth", "all")
    assert [y for _, y in sorted(zip(both.texts, both.labels))] == [1, 0, 1, 0, 1, 0, 1, 0]
    _truth_csv(tmp_path / "one.csv", [(f"Statement {i}.", 1, i) for i in range(8)])
    with pytest.raises(ValueError, match="every statement has the label true; truth probes need true and false"):
        UserSets({"truth": tmp_path / "one.csv"}).load("truth", "train")


def test_bad_option_values_names_and_devices_are_refused_before_any_model_boots(tmp_path):
    from interp.compare import compare

    bad = dict(base="/nonexistent", post="/nonexistent", out=None)
    with pytest.raises(ValueError, match=r"option 'nie_shots' of section 'truth' must be >= 0; got -1"):
        compare(options={"truth": {"nie_shots": -1}}, **bad)
    with pytest.raises(ValueError, match=r"option 'prune_layers' of section 'refusal' must be >= 0 and <= 0.99"):
        compare(concepts=["refusal"], options={"refusal": {"prune_layers": 2.0}}, **bad)
    with pytest.raises(ValueError, match="would mix its --refusal-generation-... options with those of section"):
        compare(user_concepts={"refusal-generation": ("a", "b")}, **bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this torch has no CUDA device"):
            compare(device="cuda", **bad)
    (tmp_path / "c.toml").write_text('concepts = 5\n')
    with pytest.raises(ValueError, match=r"wrong type for concepts \(int\)"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "m.toml").write_text('models = "a,b"\n')
    assert load_config(tmp_path / "m.toml")["models"] == ["a", "b"]


def test_an_undefined_interval_reads_undefined_in_the_summary():
    from interp.compare.truth import _truth_summary

    best = {k: 0.5 for k in ("base_accuracy", "post_accuracy", "base_accuracy_null", "post_accuracy_null",
                             "mahalanobis_cosine_base_post", "mahalanobis_cosine_reference", "mahalanobis_cosine_null",
                             "cosine_base_post", "cosine_base_post_null", "transfer_base_to_post_auroc",
                             "transfer_post_to_base_auroc")}
    for key in ("base_accuracy", "post_accuracy", "transfer_base_to_post", "transfer_base_to_post_centred",
                "transfer_post_to_base", "transfer_post_to_base_centred"):
        best.update({key: 0.5, f"{key}_ci_low": 0.4, f"{key}_ci_high": 0.6})
    best.update(layer=3, cosine_base_post_ci_low=float("nan"), cosine_base_post_ci_high=float("nan"))
    assert "Cosine of the two truth directions 0.50 [undefined, undefined]" in _truth_summary(best, 10)
