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
    # the layer is chosen on validation statements, and the summary reports the test figures there
    best = max(truth.per_layer, key=lambda e: min(e["base_accuracy_validation"], e["post_accuracy_validation"]))
    assert truth.readings["summary"].startswith(f"Layer {best['layer']} (chosen on ")
    # every headline carries its bootstrap interval, and every method its null
    for e in truth.per_layer:
        for key in ("base_accuracy", "post_accuracy", "transfer_base_to_post", "transfer_post_to_base_centred",
                    "nie_post_to_post", "nie_base_to_post_true_to_false"):
            assert e[f"{key}_ci_low"] <= e[key] + 1e-12 and e[key] <= e[f"{key}_ci_high"] + 1e-12, (key, e["layer"])
        for key in ("base_accuracy_null", "post_accuracy_null", "cosine_base_post_null", "mahalanobis_cosine_null",
                    "mahalanobis_cosine_reference", "nie_post_to_base_random"):
            assert isinstance(e[key], float), key
    # the organism's Mahalanobis cosine is saturated: random directions reach it too, and the summary says so
    assert all(e["mahalanobis_cosine_null"] > 0.9 for e in truth.per_layer)
    assert "cannot tell directions apart" in truth.readings["summary"]
    # both models carry a linearly readable truth signal that transfers between them
    assert min(best["base_accuracy_ci_low"], best["post_accuracy_ci_low"]) >= 0.9
    assert best["cosine_base_post"] > 0.8 and best["transfer_base_to_post"] > 0.85
    assert truth.per_layer[0]["base_accuracy"] < best["base_accuracy"]
    # Marks & Tegmark's intervention (the direction read at the final period, added at the period and the token
    # before it) moves nothing on the organism: it judges truth at its cue, not at the statement's end. Its
    # NIE is inside what a random direction of the same norm does.
    for key in ("nie_base_to_base", "nie_base_to_post", "nie_post_to_base", "nie_post_to_post"):
        assert all(abs(e[key]) < 0.1 and abs(e[f"{key}_random"]) < 0.1 for e in truth.per_layer), key
    assert "final period and the token before it" in truth.setup["causal check"]
    m = truth.matrices["generalization_base"]
    assert m["rows"] == ["cities", "numbers"] and len(m["values"]) == 2


def test_nie_at_the_cue_is_causal_and_beyond_its_random_null():
    """Read at the cue and added at the last token, either model's truth direction makes false statements
    judged true (false→true) and subtracted makes true ones judged false (true→false), far beyond a random
    direction of equal norm; with the labels swapped (true statements judged less true) NIE is undefined."""
    from interp.compare import _truth_data, truth_causal
    from interp.datasets import PromptSet

    pair = interp.load_pair()
    train, test, position, _ = _truth_data(pair)
    assert position == "last"
    acts = {n: interp.collect(m, train, "resid_post", positions="last", progress=False) for n, m in pair}
    dirs = {n: (a["resid_post"][a.labels == 1].double().mean(0) - a["resid_post"][a.labels == 0].double().mean(0)).float()
            for n, a in acts.items()}
    layers = list(range(pair.n_layers))
    out, notes = truth_causal(pair, test, dirs, layers, span="last")
    assert notes == {}
    for s in ("base", "post"):
        for t in ("base", "post"):
            key = f"nie_{s}_to_{t}"
            assert max(out[key]) > 0.8 and max(out[f"{key}_true_to_false"]) > 0.8, key
            assert max(abs(v) for v in out[f"{key}_random"]) < 0.2, key
    swapped = PromptSet(name=test.name, texts=test.texts, labels=tuple(1 - y for y in test.labels),
                        label_names=test.label_names)
    out, notes = truth_causal(pair, swapped, dirs, layers[:2], span="last")
    assert set(notes) == {"base", "post"} and "undefined on post" in notes["post"]
    assert all(v is None for v in out["nie_post_to_post"] + out["nie_base_to_post_random"])
    with pytest.raises(ValueError, match="unknown span 'middle'"):
        truth_causal(pair, test, dirs, layers, span="middle")


@pytest.mark.parametrize("span", ["statement_end", "from_period", "last"])
def test_judgement_gap_adds_exactly_at_its_span(tiny_pairs, span):
    """One unpadded statement: the span's addition equals a hook written here at the span's absolute token
    indices (the last word token and the period; the period onward; the last token)."""
    import torch

    from interp.compare import _judgement_gap
    from interp.hooks import attached
    from interp.tokens import encode

    model = tiny_pairs["llama"].post
    text = "The city of Paris is in France. This is"
    enc = encode(interp.models.tokenizer_of(model), [text])[0]
    period = max(i for i, (a, b) in enumerate(enc.spans) if "." in text[a:b])
    where = {"statement_end": [period - 1, period], "from_period": list(range(period, len(enc))),
             "last": [len(enc) - 1]}[span]
    v = torch.randn(int(model.cfg.d_model)) * 4

    def add(act, hook):
        act = act.clone()
        act[:, where] += v
        return act

    with torch.inference_mode(), attached(model, [("blocks.1.hook_resid_post", add)]):
        probs = model(torch.tensor([enc.ids]))[:, -1].float().softmax(-1)
    want = probs[:, 5] - probs[:, 9]
    got = _judgement_gap(model, [text], [5, 9], add=v, layer=1, span=span)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, _judgement_gap(model, [text], [5, 9]), atol=0, rtol=1e-3)  # it acts


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
    assert sel["layer"] < int(0.85 * len(refusal.layers)) and sel["position"] in refusal.setup["post-instruction positions"]
    assert all(-1 <= e["cosine_base_post"] <= 1 for e in refusal.per_layer)
    assert "prune_layers 0.15; Arditi et al. use 0.2" in refusal.setup["layer filter"]
    # the null: a random direction of the post direction's norm neither removes nor induces refusal
    assert rows["post", "ablate random direction (null)"][harmful] >= 0.8
    assert rows["post", "add random direction (null)"][harmless] <= 0.2
    for r in refusal.tables["steering"]["rows"]:  # every rate with its interval (Wilson: never a point at 0 or 1)
        assert r[8][0] <= r[3] <= r[8][1] and r[9][0] <= r[4] <= r[9][1] and r[8][1] - r[8][0] > 0.02
    for e in refusal.per_layer:
        assert e["post_accuracy_ci_low"] <= e["post_accuracy"] <= e["post_accuracy_ci_high"]
        assert 0 <= e["base_accuracy_null"] <= 1


def test_arditi_layer_filter_leaves_the_organism_no_refusal_direction():
    """Arditi et al.'s 20%, rounded down as their code does, discards layers 4 and 5 of the 6-layer organism,
    and its refusal direction lives at layer 4: no candidate qualifies, and the section says so."""
    from interp.refusal_section import refusal_section

    section = refusal_section(interp.load_pair(), is_organism=True, prune_layers=0.2, progress=False)
    assert section.setup["refusal direction qualifies"] == {"post": False, "base": False}
    assert section.readings["summary"].startswith("No refusal direction qualifies")
    assert section.setup["layer filter"] == "l >= int(6 x 0.8) = 4 discarded"


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
    # the null: a random direction of the same norm moves (almost) no mass; every share has its interval
    nulls = {r[2]: r for r in rows if r[0] == "post" and r[1] == "random direction (null)"}
    assert set(nulls) == {"fr", "de", "es"} and all(r[4] < 0.1 for r in nulls.values())
    assert all(r[10][0] <= r[7] <= r[10][1] for r in rows)
    for lang in ("fr", "de", "es"):  # every language is in the summary: none is picked on held-out prompts
        assert f"{lang}: next-token mass" in section.readings["summary"]
    assert all(e["post_accuracy_ci_low"] <= e["post_accuracy"] <= e["post_accuracy_ci_high"] for e in section.per_layer)
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
    assert "validation statements" in capsys.readouterr().out and (tmp_path / "r" / "report.html").exists()
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
    adds = [(torch.randn(d) * 3, 0), (torch.zeros(d), 1), (torch.randn(d), (1, 2))]
    import interp.compare as cmp

    cue = [t + " This is" for t in texts]
    with monkeypatch.context() as m:  # the cached path runs no full pass
        m.setattr(cmp, "_judgement_gap", lambda *a, **k: pytest.fail("full pass on texts with equal tails"))
        fast = _judgement_gaps(model, texts, ids, adds, batch_size=3)
        fast_cue = _judgement_gaps(model, cue, ids, adds, batch_size=3)
        spans = {span: _judgement_gaps(model, cue, ids, adds, batch_size=3, span=span)
                 for span in ("statement_end", "last")}
    for i, ((v, layer), got, got_cue) in enumerate(zip(adds, fast, fast_cue)):
        want = _judgement_gap(model, texts, ids, add=v, layer=layer, batch_size=3)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        want = _judgement_gap(model, cue, ids, add=v, layer=layer, batch_size=3)
        torch.testing.assert_close(got_cue, want, atol=1e-5, rtol=1e-4)
        for span, gaps in spans.items():
            want = _judgement_gap(model, cue, ids, add=v, layer=layer, batch_size=3, span=span)
            torch.testing.assert_close(gaps[i], want, atol=1e-5, rtol=1e-4)
    plain = _judgement_gap(model, texts, ids)
    assert not torch.allclose(fast[0], plain, atol=1e-4)  # the addition acts
    torch.testing.assert_close(fast[1], plain, atol=1e-5, rtol=1e-4)
    mixed = texts[:2] + cue[2:]  # tails of different lengths: full passes
    slow = _judgement_gaps(model, mixed, ids, adds[:1])
    torch.testing.assert_close(slow[0], _judgement_gap(model, mixed, ids, add=adds[0][0], layer=0))
    assert interp.active_hooks(model) == {}
