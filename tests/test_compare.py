"""interp.compare: the truth and refusal sections on the organism and on another pair, and the report files."""

import csv
import json
import re

import pytest
import torch
from safetensors import safe_open

import interp
from interp.cli import main
from interp.compare import compare

REQUIRED = {"layer", "base_accuracy", "post_accuracy", "cosine_base_post", "transfer_base_to_post",
            "transfer_post_to_base"}


def test_report_files_exist_and_parse(organism_report):
    result, out = organism_report
    report = json.loads((out / "report.json").read_text())
    assert list(report["wall_time_s"]) == ["load", *report["concepts"]]  # seconds per stage, in run order
    assert all(v >= 0 for v in report["wall_time_s"].values()) and report["wall_time_s"] == result.timings
    entries = report["concepts"]["truth"]["per_layer"]
    layers = list(range(interp.load_pair().n_layers))
    for concept in ("truth", "refusal", "language"):
        entries = report["concepts"][concept]["per_layer"]
        assert [e["layer"] for e in entries] == layers
        assert all(REQUIRED <= set(e) for e in entries)
    rows = list(csv.DictReader((out / "layers.csv").open()))
    assert {r["model"] for r in rows} == {"base", "post", "both"}
    assert {r["concept"] for r in rows} == {"truth", "refusal", "language", "snmf"}
    assert len(rows) == sum(len(c.long_rows) for c in result.concepts.values())
    with safe_open(out / "directions.safetensors", "pt") as f:
        keys = set(f.keys())
        assert {"truth/base/mass_mean", "refusal/post/refusal", "refusal/base/refusal"} <= keys
        assert f.get_tensor("truth/post/logistic").shape == (len(layers), 128)
        assert json.loads(f.metadata()["truth/base/mass_mean"])["layers"] == layers
    assert report["concepts"]["refusal"]["tables"]["steering"]["rows"]
    page = (out / "report.html").read_text()
    assert page.count("Plotly.newPlot") >= 8 and "<script src=" not in page  # figures inlined, no network
    assert "Steering with the refusal directions" in page


def test_truth_section_measures_the_organism(organism_report):
    truth = organism_report[0].concepts["truth"]
    best = max(truth.per_layer, key=lambda e: min(e["base_accuracy"], e["post_accuracy"]))
    # both models carry a linearly readable truth signal that transfers between them
    assert min(best["base_accuracy"], best["post_accuracy"]) >= 0.95
    assert best["cosine_base_post"] > 0.8 and best["transfer_base_to_post"] > 0.85
    assert truth.per_layer[0]["base_accuracy"] < best["base_accuracy"]
    # adding either model's truth direction makes false statements judged true, in both models
    for key in ("nie_base_to_base", "nie_base_to_post", "nie_post_to_base", "nie_post_to_post"):
        assert best[key] > 0.5, key
    m = truth.matrices["generalization_base"]
    assert m["rows"] == ["cities", "numbers"] and len(m["values"]) == 2


def test_truth_transfer_is_reported_three_ways(organism_report):
    """Per layer: the source probe's own threshold, AUROC (scikit-learn's, as reference) and the threshold
    through the target model's mean training activation, recomputed here from the section's own data."""
    from sklearn.metrics import roc_auc_score

    from interp.compare import _truth_data
    from probes import fit_layers

    pair = interp.load_pair()
    train, test, position, _ = _truth_data(pair)
    X = {(split, name): interp.collect(model, ps, "resid_post", positions=position, progress=False)["resid_post"]
         for split, ps in (("train", train), ("test", test)) for name, model in pair}
    y_tr, y_te = torch.tensor(train.labels), torch.tensor(test.labels)
    per_layer = organism_report[0].concepts["truth"].per_layer
    for src, dst in (("base", "post"), ("post", "base")):
        fit = fit_layers(X["train", src], y_tr, "mass_mean")
        for L, entry in enumerate(per_layer):
            w, b = fit.coef[L].double(), float(fit.intercept[L])
            scores = X["test", dst][:, L].double() @ w
            own = float(((scores + b > 0).long() == y_te).double().mean())
            centred = scores - float(X["train", dst][:, L].double().mean(0) @ w)
            assert entry[f"transfer_{src}_to_{dst}"] == pytest.approx(own, abs=1e-9)
            assert entry[f"transfer_{src}_to_{dst}_auroc"] == pytest.approx(roc_auc_score(y_te, scores), abs=1e-9)
            assert entry[f"transfer_{src}_to_{dst}_centred"] == pytest.approx(
                float(((centred > 0).long() == y_te).double().mean()), abs=1e-9)
    refusal = organism_report[0].concepts["refusal"].per_layer
    assert all({f"transfer_{d}{s}" for d in ("base_to_post", "post_to_base") for s in ("", "_auroc", "_centred")}
               <= set(e) for e in refusal)


def test_refusal_section_measures_the_organism(organism_report):
    refusal = organism_report[0].concepts["refusal"]
    rows = {(r[0], r[1]): r for r in refusal.tables["steering"]["rows"]}
    harmful, harmless, kl = 3, 4, 5
    assert rows["post", "baseline"][harmful] >= 0.9 and rows["post", "baseline"][harmless] <= 0.1
    # ablating the post model's direction removes refusal, adding it induces refusal, at a reported cost
    assert rows["post", "ablate post direction"][harmful] <= 0.2
    assert rows["post", "add post direction"][harmless] >= 0.8
    assert 0 < rows["post", "ablate post direction"][kl] < refusal.setup["KL threshold"] + 1
    # transfer runs in both directions and is reported whatever it shows
    assert {("post", "ablate base direction"), ("post", "add base direction"), ("base", "ablate post direction"),
            ("base", "add post direction")} <= set(rows)
    sel = refusal.setup["selected"]["post"]
    assert sel["layer"] < 0.8 * len(refusal.layers) and sel["position"] in refusal.setup["post-instruction positions"]
    assert all(-1 <= e["cosine_base_post"] <= 1 for e in refusal.per_layer)


def test_snmf_section_lists_features_and_steers_with_them(organism_report):
    _, out = organism_report
    snmf = json.loads((out / "report.json").read_text())["concepts"]["snmf"]
    features = snmf["tables"]["features"]["rows"]
    assert len(features) == snmf["setup"]["n_components"]
    assert all(row[2] and row[3] for row in features)  # top-activating tokens and logit-lens tokens
    steering = snmf["tables"]["steering"]["rows"]
    assert steering, "no feature could be calibrated"
    target = snmf["setup"]["target KL"]
    assert all(abs(row[3] - target) <= 0.05 * target for row in steering)  # α reached the KL it was set for
    # at least one feature's steering moves generations toward its own top tokens, by a wide margin
    assert max(row[5] - row[4] for row in steering) >= 0.3
    for entry in snmf["per_layer"]:
        assert 0 <= entry["matched_share"] <= 1 and -1 <= entry["matched_cosine_mean"] <= 1
        assert 0 < entry["post_relative_error"] < 1
    assert (out / "vectors").glob("snmf-post-feature-*.safetensors")


def test_language_section_steers_english_toward_another_language(organism_report):
    section = organism_report[0].concepts["language"]
    rows = section.tables["steering"]["rows"]
    own = [r for r in rows if r[0] == "post" and r[1] == "post direction"]
    assert {r[2] for r in own} == {"fr", "de", "es"}
    # the post model's own direction raises the target-language share of next-token mass by >= 0.5
    assert max(r[5] for r in own) >= 0.5
    assert all(r[3] < 0.05 for r in own)  # English subjects start with no mass on the target language
    assert all(r[8] > 0 for r in rows)  # the cost on neutral text is measured
    assert {r[1] for r in rows if r[0] == "post"} >= {"base direction", "post direction + English neurons off"}
    entry = section.per_layer[-1]
    for key in ("cosine_base_post", "base_effective_rank", "post_eigengap", "post_neurons_fr", "neuron_iou"):
        assert key in entry
    # Tang et al.'s count: round(1% of all 1,500 neurons) = 15 selected, on the gate activation (the former rule,
    # 1% of the filtered neurons on mlp_post with >= comparisons, assigned 3)
    assigned = sum(e[f"post_neurons_{lang}"] for e in section.per_layer for lang in ("en", "fr", "de", "es"))
    assert assigned >= 12, assigned
    assert all(e["neuron_iou"] is None or 0 <= e["neuron_iou"] <= 1 for e in section.per_layer)
    assert all(e["base_accuracy"] >= 0.9 for e in section.per_layer[1:])  # language identity is linearly readable


def test_steer_cli_uses_the_written_vector(organism_report, capsys):
    _, out = organism_report
    vector = out / "vectors" / "refusal-post.safetensors"
    assert main(["steer", "--vector", str(vector), "--ablate", "--max-new-tokens", "8", "How can I build a bomb?"]) == 0
    from steering.metrics import is_refusal

    lines = [ln for ln in capsys.readouterr().out.splitlines() if " | " in ln]
    assert lines[0].split(" | ")[0].strip() == "unsteered" and lines[0].split(" | ")[1].strip() == "steered"
    left = " ".join(ln.split(" | ")[0].strip() for ln in lines[1:])
    right = " ".join(ln.split(" | ")[1].strip() for ln in lines[1:])
    assert is_refusal(left) and not is_refusal(right), (left, right)
    assert main(["steer", "--vector", str(out / "vectors"), "Hi"]) == 2  # a folder needs --name
    err = capsys.readouterr().err
    assert "choose a vector with --name (language-base-de, " in err and "refusal-post, snmf-post-feature-" in err


def test_compare_on_another_pair_uses_builtin_statements(tiny_dirs, tmp_path):
    base, post = tiny_dirs["llama"]
    result = compare(str(base), str(post), out=None, progress=False)
    truth = result.concepts["truth"]
    assert truth.setup["dataset"] == "truth (built-in)" and truth.setup["read at"] == "final period"
    assert len(truth.per_layer) == 3 and not (tmp_path / "report").exists()
    # the tiny tokenizer splits " true" into pieces, so there is no single judgement token to read
    assert truth.setup["causal check"].startswith("skipped: the causal check needs")


def test_compare_cli_and_errors(tmp_path, capsys):
    assert main(["compare", "--concepts", "truth", "--out", str(tmp_path / "r"), "-q"]) == 0
    assert "Best layer" in capsys.readouterr().out and (tmp_path / "r" / "report.html").exists()
    # sections without probe-accuracy columns print their summary only
    assert main(["compare", "--concepts", "language", "--out", str(tmp_path / "l"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^language \(\d+ s\): Post model, window", printed, re.M)  # summary with its wall time
    assert re.search(r"^wall time: load \d+ s, language \d+ s; total \d+ s$", printed, re.M)
    with pytest.raises(ValueError, match="unknown concept"):
        compare(concepts=["honesty"], out=None)
    assert main(["compare", "--concepts", "honesty", "--out", str(tmp_path / "x")]) == 2
    assert interp.active_hooks(interp.load_pair().base) == {}


def test_adding_a_zero_vector_changes_nothing_and_leaves_no_hook():
    import torch

    from interp.compare import _judgement_gap

    pair = interp.load_pair()
    texts = list(interp.datasets.load("organism/truth", "test").texts[:8])
    texts = [t + " This statement is" for t in texts]
    tok = pair.tokenizer
    ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in (" true", " false")]
    plain = _judgement_gap(pair.post, texts, ids)
    zero = _judgement_gap(pair.post, texts, ids, add=torch.zeros(128), layer=2)
    pushed = _judgement_gap(pair.post, texts, ids, add=torch.ones(128) * 5, layer=2)
    assert torch.allclose(plain, zero) and not torch.allclose(plain, pushed)
    assert interp.active_hooks(pair.post) == {}


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_cached_judgement_gaps_equal_full_passes(tiny_pairs, family, monkeypatch):
    """Statements ending at their final period, or all followed by the same cue: re-running the period and
    what follows against the prefix's KV cache gives the full passes' numbers for every addition; texts with
    different tails after the period fall back to full passes."""
    import torch

    from interp.compare import _judgement_gap, _judgement_gaps

    model = tiny_pairs[family].post
    texts = ["The city of Paris is in France.", "Two is larger than nine.", "The city of Oslo is in Chile.",
             "Uno means one."]
    ids = [5, 9]
    d = int(model.cfg.d_model)
    adds = [(torch.randn(d) * 3, 0), (torch.zeros(d), 1), (torch.randn(d), 2)]
    import interp.compare as cmp

    cue = [t + " This is" for t in texts]
    with monkeypatch.context() as m:  # the cached path runs no full pass
        m.setattr(cmp, "_judgement_gap", lambda *a, **k: pytest.fail("full pass on texts with equal tails"))
        fast = _judgement_gaps(model, texts, ids, adds, batch_size=3)
        fast_cue = _judgement_gaps(model, cue, ids, adds, batch_size=3)
    for (v, layer), got, got_cue in zip(adds, fast, fast_cue):
        want = _judgement_gap(model, texts, ids, add=v, layer=layer, batch_size=3)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        want = _judgement_gap(model, cue, ids, add=v, layer=layer, batch_size=3)
        torch.testing.assert_close(got_cue, want, atol=1e-5, rtol=1e-4)
    plain = _judgement_gap(model, texts, ids)
    assert not torch.allclose(fast[0], plain, atol=1e-4)  # the addition acts
    torch.testing.assert_close(fast[1], plain, atol=1e-5, rtol=1e-4)
    mixed = texts[:2] + cue[2:]  # tails of different lengths: full passes
    slow = _judgement_gaps(model, mixed, ids, adds[:1])
    torch.testing.assert_close(slow[0], _judgement_gap(model, mixed, ids, add=adds[0][0], layer=0))
    assert interp.active_hooks(model) == {}
