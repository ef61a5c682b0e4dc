"""interp.compare: the truth and refusal sections on the organism and on another pair, and the report files."""

import csv
import json
import re

import numpy as np
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


def _panels(fig) -> list[list[str]]:
    """The names of a figure's lines (not their interval bands), per panel (y axis), in order."""
    out = {}
    for t in fig.data:
        if t.fill != "toself":
            out.setdefault(t.yaxis or "y", []).append(t.name)
    return list(out.values())


def test_truth_causal_figure_is_small_multiples_of_at_most_four_lines(organism_report):
    """The 12 NIE lines (4 direction → model pairs x false→true, true→false, random) are one panel per pair, in a
    2 x 2 grid on one labelled NIE scale, each panel with its pair's three lines."""
    from interp.report import figures

    truth = organism_report[0].concepts["truth"]
    (title, reading, fig), = [f for f in figures(truth) if f[0] == "Causal effect of the truth directions"]
    panels = _panels(fig)
    pairs = [(s, t) for s in ("base", "post") for t in ("base", "post")]
    assert panels == [[f"{s} direction → {t} model (false→true)", f"{s} direction → {t} model (true→false)",
                       f"null: random direction, {s} norm → {t} model"] for s, t in pairs]
    assert all(len(p) <= 4 for p in panels)
    assert [a.text for a in fig.layout.annotations] == [f"{s} direction → {t} model" for s, t in pairs]
    ys = [fig.layout[f"yaxis{i}"] for i in ("", 2, 3, 4)]
    assert [y.title.text for y in ys] == ["NIE (1 = true–false gap closed)", None] * 2  # one scale, titled per row
    assert all(y.matches == "y" for y in ys[1:])
    assert [fig.layout[f"xaxis{i}"].title.text for i in (3, 4)] == ["layer the direction is added after"] * 2
    assert "One panel per direction and model it is added to, on one scale" in reading


def test_language_accuracy_figure_gives_each_accuracy_its_own_panel(organism_report):
    """The organism's four identity accuracies sit at 1.0: each is in a panel of its own, titled as at ceiling, with
    post − base beside them, and the caption names them."""
    from interp.compare.language import ACCURACIES, _at_ceiling
    from interp.report import figures

    language = organism_report[0].concepts["language"]
    (_, reading, fig), = [f for f in figures(language) if f[0].startswith("Language identity")]
    panels = _panels(fig)
    assert len(panels) == 6
    assert all(len(set(ACCURACIES.values()) & set(p)) <= 1 for p in panels)  # no two accuracies share an axis
    assert ["post − base (own probes)"] in panels
    titles = [a.text for a in fig.layout.annotations]
    top = [label for key, label in ACCURACIES.items() if _at_ceiling(language.per_layer, key)]
    assert len(top) == 4  # the organism's language identity is read perfectly by every probe, at every layer
    assert sum(t.endswith("(1.00 at every layer)") for t in titles) == 4
    assert f"At ceiling (1.00 at every layer): {', '.join(top)}; each is drawn in a panel of its own" in reading


def test_nie_at_the_cue_is_causal_and_beyond_its_random_null():
    """Read at the cue and added at the last token, either model's truth direction makes false statements
    judged true (false→true) and subtracted makes true ones judged false (true→false), far beyond a random
    direction of equal norm; with the labels swapped (true statements judged less true) NIE is undefined."""
    from interp.compare.truth import _truth_data, truth_causal
    from interp.datasets import PromptSet

    pair = interp.load_pair()
    train, test, position, _ = _truth_data(pair, is_organism=True)
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


def test_nie_du_normalisation_divides_by_the_room_to_move():
    """Du et al.'s reference code divides the change of PD by 1 - PD(false) (adding) and -1 - PD(true)
    (subtracting) instead of PD(true) - PD(false): the two normalisations differ by exactly those ratios of
    the clean gaps (recomputed here), and Du's is defined on an inverted baseline."""
    from interp.compare.truth import _judgement_gap, _truth_data, truth_causal
    from interp.datasets import PromptSet

    pair = interp.load_pair()
    train, test, _, _ = _truth_data(pair, is_organism=True)
    acts = {n: interp.collect(m, train, "resid_post", positions="last", progress=False) for n, m in pair}
    dirs = {n: (a["resid_post"][a.labels == 1].double().mean(0) - a["resid_post"][a.labels == 0].double().mean(0)).float()
            for n, a in acts.items()}
    layers = [1, 3]
    mt, _ = truth_causal(pair, test, dirs, layers, span="last")
    du, notes = truth_causal(pair, test, dirs, layers, span="last", normalization="du")
    assert notes == {}
    ids = [pair.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" true", " false")]
    for t, model in pair:
        gap, y = _judgement_gap(model, test.texts, ids).double(), torch.tensor(test.labels)
        pd_true, pd_false = float(gap[y == 1].mean()), float(gap[y == 0].mean())
        for s in ("base", "post"):
            key = f"nie_{s}_to_{t}"
            np.testing.assert_allclose(du[key], np.array(mt[key]) * (pd_true - pd_false) / (1 - pd_false), rtol=1e-4)
            np.testing.assert_allclose(du[f"{key}_true_to_false"],
                                       np.array(mt[f"{key}_true_to_false"]) * (pd_true - pd_false) / (1 + pd_true),
                                       rtol=1e-4)
            assert all(lo <= v <= hi for v, lo, hi in zip(du[key], du[f"{key}_ci_low"], du[f"{key}_ci_high"]))
    swapped = PromptSet(name=test.name, texts=test.texts, labels=tuple(1 - y for y in test.labels),
                        label_names=test.label_names)
    out, notes = truth_causal(pair, swapped, dirs, layers[:1], span="last", normalization="du")
    assert notes == {} and all(v is not None for v in out["nie_post_to_post"])
    with pytest.raises(ValueError, match="unknown normalization 'ratio'; known: marks_tegmark, du"):
        truth_causal(pair, test, dirs, layers, normalization="ratio")


def test_few_shot_prompt_puts_labelled_training_statements_before_each_statement():
    from interp.compare.truth import few_shot
    from interp.datasets import PromptSet

    train = PromptSet.from_classes("t", {"false": [f"{i} is odd." for i in range(0, 20, 2)],
                                         "true": ["0 is even.", "2 is even.", "4 is even."]})
    test = PromptSet(name="q", texts=("4 is even. This statement is", "3 is even. This statement is"),
                     labels=(1, 0), label_names=("false", "true"))
    out = few_shot(test, train, 3, seed=7)
    assert out.labels == test.labels and len(out) == 2
    for text, original in zip(out.texts, test.texts):
        *shots, last = text.split("\n")
        assert last == original and len(shots) == 3
        assert sum(line.endswith(" This statement is true") for line in shots) == 2  # an odd one more true
        for line in shots:
            statement, label = line.rsplit(" This statement is ", 1)
            assert statement in train.texts and statement != original.removesuffix(" This statement is")
            assert (label == "true") == (statement.endswith("even."))
    assert few_shot(test, train, 3, seed=7).texts == out.texts and few_shot(test, train, 0) is test
    assert few_shot(test, train, 3, seed=8).texts != out.texts
    assert not any(line.startswith("4 is even.") for line in out.texts[0].split("\n")[:-1])  # never its own example
    with pytest.raises(ValueError, match="6 shots need 4 true and 4 false example statements"):
        few_shot(test, train, 6)
    with pytest.raises(ValueError, match="shots must be >= 0"):
        few_shot(test, train, -1)


@pytest.mark.parametrize("span", ["statement_end", "from_period", "last"])
def test_judgement_gap_adds_exactly_at_its_span(tiny_pairs, span):
    """One unpadded statement: the span's addition equals a hook written here at the span's absolute token
    indices (the last word token and the period; the period onward; the last token)."""
    import torch

    from interp.compare.truth import _judgement_gap
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

    from interp.compare.truth import _truth_data
    from probes import fit_layers

    pair = interp.load_pair()
    train, test, position, _ = _truth_data(pair, is_organism=True)
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
    # resid_pre of layer 0 at the template's last token is that token's embedding in every request: no
    # difference, no direction, no cosine (None with the reason, never a number)
    undefined = [e["layer"] for e in refusal.per_layer if e["cosine_base_post"] is None]
    assert undefined == [0] and refusal.setup["cosine undefined"].startswith("layers [0]: a zero difference")
    assert all(-1 <= e["cosine_base_post"] <= 1 for e in refusal.per_layer if e["layer"] not in undefined)
    assert "prune_layers 0.15; Arditi et al. use 0.2" in refusal.setup["layer filter"]
    # the null: a random direction of the post direction's norm neither removes nor induces refusal
    assert rows["post", "ablate random direction (null)"][harmful] >= 0.8
    assert rows["post", "add random direction (null)"][harmless] <= 0.2
    for r in refusal.tables["steering"]["rows"]:  # every rate with its interval (Wilson: never a point at 0 or 1)
        assert r[8][0] <= r[3] <= r[8][1] and r[8][1] - r[8][0] > 0.02
        assert (r[4] is None) == r[1].startswith("subtract")  # subtraction is tested on harmful requests only
        assert r[4] is None or r[9][0] <= r[4] <= r[9][1]
    # Arditi et al.'s activation subtraction on harmful requests: the post direction ends refusal, a random one not
    assert rows["post", "subtract post direction"][harmful] <= 0.5
    assert rows["post", "subtract random direction (null)"][harmful] >= 0.8
    # their loss check: cross-entropy of plain held-out text, unsteered (recomputed here) and ablated
    from steering.metrics import heldout_loss

    plain = list(interp.datasets.load("organism/truth", "test").texts)
    ce = 10
    assert rows["post", "baseline"][ce] == pytest.approx(heldout_loss(interp.load_pair().post, plain), rel=1e-5)
    assert abs(rows["post", "ablate post direction"][ce] - rows["post", "baseline"][ce]) < 0.5
    assert rows["post", "add post direction"][ce] is None
    for e in refusal.per_layer:
        assert e["post_accuracy_ci_low"] <= e["post_accuracy"] <= e["post_accuracy_ci_high"]
        for key in ("transfer_base_to_post", "transfer_post_to_base_centred"):
            assert e[f"{key}_ci_low"] <= e[key] <= e[f"{key}_ci_high"], key
        assert 0 <= e["base_accuracy_null"] <= 1


def test_arditi_prompt_filter_keeps_what_the_post_model_refuses_and_complies_with():
    """filter_train/filter_val: harmful requests kept where the refusal score is > 0, harmless where < 0, on the
    direction and validation rows separately; a kind it would empty is kept whole, with the reason."""
    from interp.compare.refusal import MIN_FILTERED, _split_mask, arditi_filter, requests
    from steering.metrics import refusal_score

    pair = interp.load_pair()
    data = requests(pair, True)
    requests = {kind: data("post", kind, "train") for kind in ("harmful", "harmless")}
    masks, notes = arditi_filter(pair.post, requests, data.refusal_ids["post"])
    for kind in ("harmful", "harmless"):
        score = refusal_score(pair.post, requests[kind], data.refusal_ids["post"])
        keep = score > 0 if kind == "harmful" else score < 0
        split = _split_mask(len(requests[kind]))
        assert torch.equal(masks[kind], split & keep) and torch.equal(masks[kind, "val"], ~split & keep)
        assert notes[kind].startswith(f"{int((split & keep).sum())} of {int(split.sum())} direction")
    assert int(masks["harmful"].sum()) < int(_split_mask(len(requests["harmful"])).sum())  # it drops some here
    # harmful requests offered as harmless: the post model refuses them all, so the filter would leave none
    masks, notes = arditi_filter(pair.post, {"harmful": requests["harmful"], "harmless": requests["harmful"]},
                                 data.refusal_ids["post"])
    assert notes["harmless"].startswith("not applied") and f"fewer than {MIN_FILTERED}" in notes["harmless"]
    assert torch.equal(masks["harmless"], _split_mask(len(requests["harmful"])))
    masks, notes = arditi_filter(pair.post, requests, data.refusal_ids["post"], enabled=False)
    assert notes == {"harmful": "off", "harmless": "off"} and bool(masks["harmful", "val"].sum())


def test_base_template_gives_the_base_model_its_own_direction_at_its_own_positions():
    """Du et al. 2025: the base model reads the requests as "User: …\nAssistant:" and its direction is the
    difference of means there (recomputed here from the base-formatted requests), at its own position."""
    from dataclasses import replace

    from interp.compare.refusal import DU_BASE_TEMPLATE, arditi_filter, refusal_section, requests
    from steering.refusal import offset_activations, post_instruction_offsets

    pair = interp.load_pair()
    section = refusal_section(pair, is_organism=True, base_template=DU_BASE_TEMPLATE, progress=False)
    base_offsets = post_instruction_offsets(pair.tokenizer, DU_BASE_TEMPLATE)
    assert section.setup["base post-instruction positions"] == base_offsets != section.setup["post-instruction positions"]
    assert "User: {{ message['content'] }}" in section.setup["format"]
    chosen = section.setup["selected"]["base"]
    assert chosen["position"] in base_offsets
    data = requests(pair, True)
    masks, _ = arditi_filter(pair.post, {k: data("post", k, "train") for k in ("harmful", "harmless")},
                             data.refusal_ids["post"])
    as_base = replace(pair, chat_template=DU_BASE_TEMPLATE)
    means = {}
    for kind in ("harmful", "harmless"):
        texts = list(as_base.format(interp.datasets.load(f"organism/{kind}", "train"), "chat").texts)
        assert texts[0].startswith("User: ") and texts[0].endswith("\nAssistant:")
        rows = offset_activations(pair.base, texts, base_offsets)
        means[kind] = rows[masks[kind]].double().mean(0)
    expected = (means["harmful"] - means["harmless"])[base_offsets.index(chosen["position"])]
    torch.testing.assert_close(section.directions["base/refusal"].double(), expected, atol=1e-4, rtol=1e-4)
    assert not any(k.startswith("cosine_base_post_at_") for k in section.per_layer[0])  # positions differ
    assert section.per_layer[0]["cosine_base_post"] is None  # layer 0 reads one token's embedding: no difference
    for e in section.per_layer[1:]:
        assert e["cosine_base_post_ci_low"] <= e["cosine_base_post"] + 1e-9
        assert e["cosine_base_post"] <= e["cosine_base_post_ci_high"] + 1e-9
    assert section.setup["base refusal tokens"][: len(section.setup["refusal tokens"])] == section.setup["refusal tokens"]


def test_arditi_layer_filter_leaves_the_organism_no_refusal_direction():
    """Arditi et al.'s 20%, rounded down as their code does, discards layers 4 and 5 of the 6-layer organism,
    and its refusal direction lives at layer 4: no candidate qualifies, and the section says so."""
    from interp.compare.refusal import refusal_section

    section = refusal_section(interp.load_pair(), is_organism=True, prune_layers=0.2, progress=False)
    assert section.setup["refusal direction qualifies"] == {"post": False, "base": False}
    assert section.readings["summary"].startswith("No refusal direction qualifies")
    assert section.setup["layer filter"] == "l >= int(6 x 0.8) = 4 discarded"


def test_a_layer_filter_that_discards_every_layer_is_refused_before_any_work():
    from interp.compare.refusal import refusal_section

    with pytest.raises(ValueError, match=r"prune_layers=0.9 discards every layer of this 6-layer model "
                                         r"\(l >= int\(6 x 0.1\) = 0\); lower it"):
        refusal_section(interp.load_pair(), is_organism=True, prune_layers=0.9, progress=False)


def test_refusal_candidate_layers_restrict_the_selection_and_nothing_else():
    """``candidate_layers=[3, 4]``: only those layers' candidates are scored (the others blank, with the reason)
    and the selection is the best of them: here the full run's (pinned: layer 4, position -1), so every
    per-layer figure read at that position is the full run's too. Layers that cannot be selected are refused
    before any work."""
    import json
    from pathlib import Path

    from interp.compare.refusal import refusal_section

    pair = interp.load_pair()
    section = refusal_section(pair, is_organism=True, candidate_layers=[3, 4], progress=False)
    assert section.setup["candidate layers"] == [3, 4]
    assert section.setup["selected"]["post"] == {"layer": 4, "position": -1}
    for row in section.matrices["candidates_post"]["notes"]:
        for layer, why in enumerate(row):
            assert ("not among the candidate layers [3, 4]" in why) == (layer not in (3, 4)), (layer, why)
    pins = json.loads((Path(__file__).parent / "data" / "organism_report_pins.json").read_text())
    for e in section.per_layer:
        for key in ("base_accuracy", "post_accuracy", "transfer_base_to_post", "cosine_base_post"):
            want = pins[f"/refusal/per_layer[{e['layer']}]/{key}"]
            assert e[key] == want or e[key] == pytest.approx(want, abs=1e-3), (e["layer"], key)
    with pytest.raises(ValueError, match=r"candidate_layers: layer 9 is out of range for a model with 6 layers"):
        refusal_section(pair, is_organism=True, candidate_layers=[9], progress=False)
    with pytest.raises(ValueError, match=r"every candidate layer \[5\] is discarded by the layer filter"):
        refusal_section(pair, is_organism=True, candidate_layers=[5], progress=False)


def test_snmf_section_lists_features_and_steers_with_them(organism_report):
    _, out = organism_report
    snmf = json.loads((out / "report.json").read_text())["concepts"]["snmf"]
    features = snmf["tables"]["features"]["rows"]
    assert len(features) == snmf["setup"]["n_components"]
    assert all(row[2] and row[3] for row in features)  # top-activating tokens and logit-lens tokens
    col = {name: k for k, name in enumerate(snmf["tables"]["steering"]["columns"])}
    steering = snmf["tables"]["steering"]["rows"]
    assert steering, "no feature could be calibrated"
    target = snmf["setup"]["target KL"]
    assert all(abs(row[col["KL"]] - target) <= 0.05 * target for row in steering)  # α reached the KL it was set for
    # at least one feature's steering moves generations toward its own top tokens, by a wide margin (all
    # generations, fluent or not: at this KL the organism's steered generations loop)
    share_all, unsteered = col["share steered, all generations"], col["share unsteered"]
    assert max(row[share_all] - row[unsteered] for row in steering) >= 0.3
    for entry in snmf["per_layer"]:
        assert 0 <= entry["matched_share"] <= 1 and -1 <= entry["matched_cosine_mean"] <= 1
        assert 0 < entry["post_relative_error"] < 1
        for key in ("matched_cosine_mean", "matched_share"):
            assert entry[f"{key}_ci_low"] <= entry[key] <= entry[f"{key}_ci_high"]
            assert entry[f"{key}_null"] is not None
    assert (out / "vectors").glob("snmf-post-feature-*.safetensors")
    # the steering null: a random direction at the same KL, and the summary's count read off the rows
    null_all = col["random direction (null), all generations (largest of 3)"]
    ci_all = col["95% CI, all generations"]
    assert all(row[null_all] is not None and 0 <= row[null_all] <= 1 and 0 <= row[ci_all][0] <= row[ci_all][1] <= 1
               for row in steering)
    assert snmf["setup"]["matching"].startswith("base seed 1 against post seed 0")
    # success is read among fluent generations only (a looping generation does not count)
    ci = col["95% CI, fluent generations only"]
    null = col["random direction (null), fluent generations only (largest of 3)"]
    up = [row[0] for row in steering
          if row[ci] is not None and row[null] is not None and row[ci][0] > max(row[unsteered], row[null])]
    verb = "raises" if len(up) == 1 else "raise"
    assert f"{len(up)} feature{'' if len(up) == 1 else 's'} {verb} the share of their top logit-lens tokens among " \
           "their fluent generations" in snmf["readings"]["summary"]


def test_cli_prints_every_section_with_undefined_values_as_dashes(organism_report, capsys):
    """What `interp compare` prints for each section of the bundled pair, including the refusal cosine that
    is undefined at layer 0 (None) and the subtraction rows' blank harmless cells."""
    from interp.cli import print_concept

    result, _ = organism_report
    for name, concept in result.concepts.items():
        print_concept(name, concept, 1.0)
    out = capsys.readouterr().out
    layer0 = next(line for line in out.splitlines() if line.split()[:1] == ["0"] and line.split()[3] == "-")
    assert layer0.split()[1] == "0.500"  # refusal, layer 0: probe at chance, cosine undefined
    assert re.search(r"post +subtract post direction +0\.12 +- +-", out)


def test_snmf_matching_is_read_against_two_seeds_of_one_model(organism_report):
    """The per-layer null is the mean matched cosine between seeds 0 and 1 of each model, averaged over the
    two models: recomputed here from fresh fits on the same tokens."""
    from interp.collection import collect_tokens
    from interp.compare.snmf import _prompts
    from probes import SNMF, match_features

    result, _ = organism_report
    section = result.concepts["snmf"]
    pair = interp.load_pair()
    layer = section.setup["described layer"]
    prompts, _ = _prompts(pair, True, section.setup["n_prompts"])
    levels, shares = [], []
    for _, model in pair:
        X = collect_tokens(model, prompts, "mlp_post", layer, progress=False).X
        a, b = (SNMF(section.setup["n_components"], sparsity=section.setup["sparsity"], random_state=s,
                     max_iter=150).fit(X) for s in (0, 1))
        cos = match_features(a.components_, b.components_)[2]
        levels.append(cos.mean())
        shares.append((cos >= 0.5).mean())
    entry = section.per_layer[layer]
    assert entry["matched_cosine_mean_null"] == pytest.approx(np.mean(levels), abs=1e-4)
    assert entry["matched_share_null"] == pytest.approx(np.mean(shares), abs=1e-6)
    plot = next(p for p in section.plots if p["reading"] == "matching")
    assert set(plot["nulls"]) == {"matched_cosine_mean_null", "matched_share_null"}


def test_language_section_steers_english_toward_another_language(organism_report):
    section = organism_report[0].concepts["language"]
    col = {name: k for k, name in enumerate(section.tables["steering"]["columns"])}
    rows = section.tables["steering"]["rows"]
    own = [r for r in rows if r[0] == "post" and r[1] == "post direction"]
    assert {r[2] for r in own} == {"fr", "de", "es"}
    # the post model's own direction raises the target-language share of next-token mass by >= 0.5
    assert max(r[col["gain"]] for r in own) >= 0.5
    assert all(r[col["target share before"]] < 0.05 for r in own)  # English subjects: no mass on the target
    assert all(r[col["KL neutral"]] > 0 for r in rows)  # the cost on neutral text is measured
    # the null: a random direction of the same norm moves (almost) no mass; every share has its interval
    nulls = {r[2]: r for r in rows if r[0] == "post" and r[1] == "random direction (null)"}
    assert set(nulls) == {"fr", "de", "es"} and all(r[col["target share after"]] < 0.1 for r in nulls.values())
    for name in ("continuations fluent and in target after", "continuations in target after, all (fluent or not)"):
        assert all(r[col[f"{name}, 95% CI"]][0] <= r[col[name]] <= r[col[f"{name}, 95% CI"]][1] for r in rows)
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
    # every base/post cosine (per language and the mean) has its paired-bootstrap interval and a random null;
    # the null is the 95th percentile of |cosine| of 100 Gaussian directions in d = 128 (about 1.96 / sqrt(128)
    # = 0.17 per language; the mean over three languages averages it down)
    for e in section.per_layer:
        for key in ("cosine_base_post", "cosine_base_post_fr", "cosine_base_post_de", "cosine_base_post_es"):
            # a percentile interval of a cosine of noisy means sits a little under the estimate (each resample's
            # directions are noisier, so less aligned): the estimate at most 0.01 above the band, never below it
            assert e[f"{key}_ci_low"] <= e[key] <= e[f"{key}_ci_high"] + 0.01, (e["layer"], key)
        nulls = [e[f"cosine_base_post_{x}_null"] for x in ("fr", "de", "es")]
        assert all(0.1 < v < 0.25 for v in nulls) and e["cosine_base_post_null"] < min(nulls), e
        assert e["cosine_base_post"] == pytest.approx(np.mean([e[f"cosine_base_post_{x}"] for x in ("fr", "de", "es")]))
    plot = next(p for p in section.plots if p["reading"] == "accuracy")
    assert {"cosine_base_post_fr_null", "cosine_base_post_de_null", "cosine_base_post_es_null"} <= set(plot["nulls"])


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

    from interp.compare.truth import _judgement_gap

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

    from interp.compare.truth import _judgement_gap, _judgement_gaps

    model = tiny_pairs[family].post
    texts = ["The city of Paris is in France.", "Two is larger than nine.", "The city of Oslo is in Chile.",
             "Uno means one."]
    ids = [5, 9]
    d = int(model.cfg.d_model)
    adds = [(torch.randn(d) * 3, 0), (torch.zeros(d), 1), (torch.randn(d), (1, 2))]
    import interp.compare.truth as cmp

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


def test_report_vectors_record_their_model_and_are_refused_on_the_other(organism_report):
    """compare records in every report vector the model its meta names (base or post): load_vector and interp steer
    refuse it on the other model of the pair, which has the same shapes but other weights."""
    from interp import organism
    from steering import load_vector
    from steering.vector import weights_sha256

    result, out = organism_report
    pair = interp.load_pair()
    files = sorted((out / "vectors").glob("*.safetensors"))
    assert {f.stem.split("-")[0] for f in files} >= {"refusal", "language", "snmf"}
    for f in files:
        v = load_vector(f)
        own = pair.post if v.meta["model"] == "post" else pair.base
        assert v.meta["model_identity"]["weights_sha256"] == weights_sha256(own), f.name
    assert result.concepts["refusal"].vectors["post"].meta["model_identity"]["name"].endswith("post")
    load_vector(out / "vectors" / "refusal-post.safetensors", model=pair.post)
    with pytest.raises(ValueError, match="was made for another model .*weights sha256"):
        load_vector(out / "vectors" / "refusal-post.safetensors", model=pair.base)
    assert main(["steer", "--model", str(organism.paths()[0]), "--vector", str(out / "vectors"), "--name",
                 "refusal-post", "--max-new-tokens", "2", "Hi"]) == 2


def test_bind_vectors_takes_the_model_from_the_meta_or_the_key(caplog):
    """A section's vector is bound to the model meta['model'] names, else the one its key starts with; a vector
    naming neither is left unbound, with a warning."""
    from interp.compare import bind_vectors
    from interp.report import ConceptResult
    from steering import SteeringVector

    pair = interp.load_pair()
    vec = SteeringVector(torch.randn(1, 128), (2,), "resid_pre")
    result = ConceptResult("mine", [2], [], [], {}, {}, {}, {}, [], {}, vectors={
        "a": SteeringVector(vec.vectors, (2,), "resid_pre", meta={"model": "base"}), "post-b": vec, "c": vec})
    with caplog.at_level("WARNING", logger="interp.compare"):
        bind_vectors(result, pair)
    assert result.vectors["a"].meta["model_identity"]["name"].endswith("base")
    assert result.vectors["post-b"].meta["model_identity"]["name"].endswith("post")
    assert "model_identity" not in result.vectors["c"].meta
    assert "mine vector 'c' names no model of the pair" in caplog.text
