"""The ``divergence`` section (``interp.compare.divergence``) on the bundled organism pair.

Checked: the result's fields and intervals; every per-layer figure against an independent reading (the organism's
own collection, lens and the measures of ``interp.geometry``); the known answers of a model compared with itself
(CKA 1, KL, JS and relative change 0 at every layer); that the per-token table lists the tokens of largest KL,
recomputed here; the lens check; the misaligned null; the jackknife against its textbook form; the same seed
giving the same result; a run through ``compare`` once registered whose figures render in a browser; a user's
corpus file; bad options refused.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import interp
from interp.collection import collect_tokens_by_layer
from interp.compare import _section, compare, register
from interp.compare import divergence as D
from interp.compare._corpus import jackknife_blocks, jackknife_intervals
from interp.compare.divergence import SECTION, divergence_section, lens_logprobs, misaligned
from interp.geometry import linear_cka, next_token_divergence
from interp.models import ModelPair, tokenizer_of
from interp.tokens import display_token, shown_whitespace, tokenize

N_TEXTS = 40
OPTIONS = dict(max_tokens=12, n_top=8, n_blocks=10, seed=0, progress=False)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture(scope="module")
def texts():
    from interp.datasets import load

    return load("organism/languages", "train")[:N_TEXTS]


@pytest.fixture(scope="module")
def result(pair, texts):
    return divergence_section(pair, texts, corpus_source="organism/languages", **OPTIONS)


def _states(model, texts, max_tokens=OPTIONS["max_tokens"]):
    """``[layer, n, d]`` resid_post of every token after BOS, the first ``max_tokens`` of each text, read here with
    the organism's own collection (texts cut at the token level by the tokenizer, not by the section)."""
    toks = tokenize(model, texts.texts)
    by_layer = collect_tokens_by_layer(model, toks, "resid_post", None, progress=False)
    keep = by_layer[0].position <= max_tokens  # position 0 is BOS (never a row)
    return torch.stack([by_layer[layer].X[keep] for layer in sorted(by_layer)]), by_layer[0], keep


@pytest.fixture(scope="module")
def reference(pair, texts):
    out = {m: _states(model, texts) for m, model in pair}
    X = {m: out[m][0] for m in out}
    lens = {m: torch.stack([lens_logprobs(model, X[m][layer]) for layer in range(pair.n_layers)])
            for m, model in pair}
    rows, keep = out["base"][1], out["base"][2]
    return {"X": X, "lens": lens, "text": rows.prompt[keep].numpy(), "ids": rows.token_ids[keep].numpy()}


def test_result_fields(result, pair, texts):
    n = pair.n_layers
    assert result.concept == "divergence" and result.layers == list(range(n))
    keys = [k + s for k in ("cka", "cka_biased", "rel_change", "kl", "js")
            for s in ("", "_ci_low", "_ci_high", "_null")]
    for entry in result.per_layer:
        assert set(entry) == {"layer", *keys}
        for key in keys:
            assert isinstance(entry[key], float) and math.isfinite(entry[key]), key
        for key in ("cka", "cka_biased", "rel_change", "kl", "js"):
            assert entry[f"{key}_ci_low"] <= entry[key] <= entry[f"{key}_ci_high"], key
            assert entry[f"{key}_ci_low"] < entry[f"{key}_ci_high"], key
        assert 0 < entry["kl"] < entry["kl_null"] and 0 < entry["js"] < entry["js_null"] <= math.log(2)
        assert entry["rel_change"] < entry["rel_change_null"]
        assert abs(entry["cka_null"]) < 0.05 and entry["cka_biased_null"] > 0  # debiased: centred on 0
    assert set(result.tables) == {"layers", "tokens"} and len(result.tables["tokens"]["rows"]) == OPTIONS["n_top"]
    for table in result.tables.values():
        assert all(len(r) == len(table["columns"]) and None not in r for r in table["rows"])
    for entry, row in zip(result.per_layer, result.tables["layers"]["rows"]):  # intervals as [low, high] cells
        assert row[2] == [entry["cka_ci_low"], entry["cka_ci_high"]] and row[11] == [entry["kl_ci_low"],
                                                                                    entry["kl_ci_high"]]
    assert {p["reading"] for p in result.plots} <= set(result.readings)
    n_tokens = int(result.setup["tokens"].split()[0])
    lengths = [min(len(e) - 1, OPTIONS["max_tokens"]) for e in tokenize(pair.base, texts.texts).encodings]
    assert n_tokens == sum(lengths)  # every token but BOS, at most max_tokens per text
    assert "BOS position is excluded" in result.setup["tokens"]


def test_figures_match_an_independent_reading(result, reference, pair):
    # the reference reads whole texts in other batches: float32 states agree to rounding, not bit for bit
    X, lens = reference["X"], reference["lens"]
    for layer, entry in enumerate(result.per_layer):
        b, p = X["base"][layer], X["post"][layer]
        assert entry["cka"] == pytest.approx(linear_cka(b, p, debiased=True), rel=1e-6)
        assert entry["cka_biased"] == pytest.approx(linear_cka(b, p), rel=1e-6)
        rel = ((p.double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1)).mean()
        assert entry["rel_change"] == pytest.approx(float(rel), rel=1e-6)
        d = next_token_divergence(lens["base"][layer], lens["post"][layer])
        assert entry["kl"] == pytest.approx(d.kl.mean(), rel=1e-4)
        assert entry["js"] == pytest.approx(d.js.mean(), rel=1e-4)
    # the null: the same with post's token the next one of the section's seeded order (a derangement)
    order, pi = misaligned(len(reference["text"]), OPTIONS["seed"])
    last = pair.n_layers - 1
    b, p = X["base"][last], X["post"][last]
    assert result.per_layer[last]["cka_null"] == pytest.approx(linear_cka(b, p[pi], debiased=True), abs=1e-6)
    null_rel = ((p[pi].double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1)).mean()
    assert result.per_layer[last]["rel_change_null"] == pytest.approx(float(null_rel), rel=1e-6)
    first = order[:D.NULL_TOKENS]
    d = next_token_divergence(lens["base"][last][first], lens["post"][last][pi[first]])
    assert result.per_layer[last]["kl_null"] == pytest.approx(d.kl.mean(), rel=1e-4)


def test_a_model_compared_with_itself_gives_the_known_answers(pair, texts):
    same = ModelPair(base=pair.post, post=pair.post)
    res = divergence_section(same, texts[:16], **{**OPTIONS, "n_blocks": 5})
    for entry in res.per_layer:
        for key in ("cka", "cka_biased", "cka_ci_low", "cka_ci_high"):
            assert entry[key] == pytest.approx(1.0, abs=1e-12), key
        for key in ("kl", "js", "rel_change", "kl_ci_low", "kl_ci_high", "js_ci_high", "rel_change_ci_high"):
            assert entry[key] == pytest.approx(0.0, abs=1e-12), key
        assert entry["kl_null"] > 1 and abs(entry["cka_null"]) < 0.1  # misaligned tokens still differ
    assert all(r[6] == pytest.approx(0.0, abs=1e-12) for r in res.tables["tokens"]["rows"])
    assert "is 0 at every layer" in res.readings["summary"]


def test_the_token_table_lists_the_largest_kl(result, reference, pair):
    layer = pair.n_layers - 1
    lens = reference["lens"]
    kl = next_token_divergence(lens["base"][layer], lens["post"][layer]).kl
    table = result.tables["tokens"]
    top = np.argsort(-kl, kind="stable")[:OPTIONS["n_top"]]
    tok = tokenizer_of(pair.base)
    assert [r[0] for r in table["rows"]] == list(range(1, OPTIONS["n_top"] + 1))
    for row, i in zip(table["rows"], top):
        assert row[6] == pytest.approx(kl[i], rel=1e-4)
        assert row[1] == reference["text"][i] and row[4] == shown_whitespace(tok.decode([int(reference["ids"][i])]))
        for m, col in (("base", 8), ("post", 10)):
            p, j = lens[m][layer][i].max(-1)
            assert row[col] == display_token(tok, int(j)) and row[col + 1] == pytest.approx(float(p.exp()), rel=1e-4)
    assert [r[6] for r in table["rows"]] == sorted((r[6] for r in table["rows"]), reverse=True)
    assert f"Largest layer-{layer} KL at: {table['rows'][0][4]!r}" in result.readings["summary"]


def test_other_table_layer(pair, texts, reference):
    res = divergence_section(pair, texts[:12], **{**OPTIONS, "table_layer": 2, "n_top": 3, "n_blocks": 5})
    rows = np.flatnonzero(reference["text"] < 12)  # the first 12 texts' tokens, in the same order
    kl = next_token_divergence(reference["lens"]["base"][2][rows], reference["lens"]["post"][2][rows]).kl
    table = res.tables["tokens"]
    assert "largest layer-2 KL" in table["title"]
    assert [r[6] for r in table["rows"]] == pytest.approx(sorted(kl, reverse=True)[:3], rel=1e-4)


def test_the_lens_must_reproduce_the_models_own_output(pair, texts, monkeypatch):
    own = D.lens_logprobs

    def off(model, X):  # a lens that loses half of the logits' scale
        return torch.log_softmax(own(model, X) * 0.5, -1)

    monkeypatch.setattr(D, "lens_logprobs", off)
    with pytest.raises(RuntimeError, match=r"the logit lens of base at its last layer \(ln_final then unembed\) "
                                           r"differs from its own next-token distribution by KL"):
        divergence_section(pair, texts[:6], **{**OPTIONS, "n_blocks": 5})


def test_misaligned_pairing_is_one_cycle_without_fixed_points():
    for n in (2, 3, 50):
        order, pi = misaligned(n, 7)
        assert sorted(pi) == list(range(n)) and (pi != np.arange(n)).all()
        seen, i = set(), 0
        while i not in seen:
            seen.add(i)
            i = pi[i]
        assert len(seen) == n  # one cycle through every row
        assert (misaligned(n, 7)[1] == pi).all()


def test_the_jackknife_of_a_mean_is_the_textbook_interval():
    from scipy.stats import t as student

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    groups = np.array([f"g{i}" for i in range(30)])  # every row its own group, 30 blocks: delete-one jackknife
    low, high = jackknife_intervals(lambda r: np.array([x[r].mean()]), groups, np.array([x.mean()]), seed=0,
                                    n_blocks=30)
    half = student.ppf(0.975, 29) * x.std(ddof=1) / math.sqrt(30)  # the delete-one jackknife SE of a mean is s/sqrt(n)
    assert low[0] == pytest.approx(x.mean() - half) and high[0] == pytest.approx(x.mean() + half)
    blocks = jackknife_blocks(np.repeat([f"g{i}" for i in range(12)], 3), 5, 0)
    assert sorted(np.bincount(blocks)) == [6, 6, 6, 9, 9]  # 12 groups of 3 rows dealt to 5 blocks
    assert all(len(set(blocks[3 * g:3 * g + 3])) == 1 for g in range(12))  # a group's rows share a block
    assert jackknife_intervals(lambda r: np.array([1.0]), groups[:4], np.array([1.0]), seed=0, n_blocks=10) is None


def test_rerun_is_identical(pair, texts, result):
    assert divergence_section(pair, texts, corpus_source="organism/languages", **OPTIONS) == result


def test_runs_through_compare_and_renders(pair, tmp_path):
    from interp.report import figures

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_section, "_REGISTERED", {})
        register(SECTION, replace=True)
        comparison = compare(pair=pair, concepts=["divergence"], out=tmp_path, progress=False,
                             options={"divergence": {"n_texts": 24, "max_tokens": 8, "n_top": 5, "n_blocks": 6}})
    c = comparison.concepts["divergence"]
    assert c.setup["corpus"].startswith("organism/languages") and "24 texts drawn with the seed" in c.setup["corpus"]
    figs = figures(c)
    assert len(figs) == 3  # CKA, relative change, lens (two panels); the tables are shown as tables
    lens = figs[2][2]
    assert {t.name for t in lens.data} >= {"KL(base ‖ post)", "Jensen-Shannon", "null: KL, misaligned tokens"}
    from tests.test_confidence_section import _render_in_chromium

    _render_in_chromium(tmp_path / "report.html", len(figs), tmp_path)


def test_a_users_corpus_file(pair, tmp_path):
    from interp.compare import SectionContext

    rows = [{"text": f"Sentence number {i} is about the {w}.", "group": f"g{i // 2}"}
            for i, w in enumerate(["sea", "sky", "hill", "road", "tree", "town", "lake", "wind", "rain", "sun"])]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = SECTION.options({"data": str(path), "n_texts": 8, "n_blocks": 5, "n_top": 2})
    res = SECTION.run(SectionContext(pair, is_organism=True, progress=False), **opts)
    assert res.setup["corpus"] == f"{path}: 8 texts drawn with the seed from 10, every split"
    drawn = np.sort(np.random.default_rng(0).choice(10, 8, replace=False))  # the seeded draw, in file order
    assert f"of 8 texts ({len({rows[i]['group'] for i in drawn})} bootstrap groups)" in res.setup["tokens"]
    with pytest.raises(FileNotFoundError, match="no corpus file"):
        SECTION.options({"data": str(tmp_path / "missing.jsonl")})
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"text": "Only one."}) + "\n")
    with pytest.raises(ValueError, match="1 text\\(s\\); the corpus needs at least 2"):
        SECTION.options({"data": str(one)})


def test_bad_options_are_refused(pair, texts):
    with pytest.raises(ValueError, match="option 'n_top' of section 'divergence' must be >= 1; got 0"):
        SECTION.options({"n_top": 0})
    with pytest.raises(ValueError, match="option 'n_blocks' of section 'divergence' must be >= 5; got 4"):
        SECTION.options({"n_blocks": 4})
    with pytest.raises(ValueError, match="corpus must name a built-in set"):
        SECTION.options({"corpus": "organism/languages"})
    with pytest.raises(ValueError, match=r"option 'table_layer' of section 'divergence': layer 6 is out of range for a "
                                         r"model with 6 layers \(valid: 0..5, or -6..-1\)"):
        SECTION.check_model(SECTION.options({"table_layer": 6}), pair.shape)
    SECTION.check_model(SECTION.options({"table_layer": -6}), pair.shape)  # counted from the end, as everywhere
    with pytest.raises(ValueError, match="table_layer: layer 9 is out of range for a model with 6 layers"):
        divergence_section(pair, texts[:4], table_layer=9)
    with pytest.raises(ValueError, match="groups has 3 entries for 4 texts"):
        divergence_section(pair, texts[:4], groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="has 1 text\\(s\\); at least 2 are needed"):
        divergence_section(pair, texts[:1])


def test_too_few_texts_leave_the_intervals_undefined(pair, texts):
    res = divergence_section(pair, texts[:3], **{**OPTIONS, "n_blocks": 5})
    why = "the corpus has 3 group(s) of texts; intervals need at least 5"
    assert res.setup["undefined"]["intervals"] == why
    for entry in res.per_layer:
        assert isinstance(entry["kl"], float) and isinstance(entry["cka"], float)
        assert entry["kl_ci_low"] is None and entry["cka_ci_high"] is None
    assert f"No intervals: {why}." in res.readings["summary"] and "[no interval]" in res.readings["summary"]
    assert {row[2] for row in res.tables["layers"]["rows"]} == {"no interval"}



def test_repeated_texts_are_one_group_so_copies_give_no_interval():
    from interp.compare._corpus import as_corpus, draw_texts

    c = as_corpus(["a b", "c d", "a b", "e f"], None, "x")
    assert c.groups == ("text:0", "text:1", "text:0", "text:3")
    d = draw_texts(["same"] * 6, [{"group": "g1"}, *[{}] * 5], 10, 0, "x")
    assert set(d.groups) == {"g1"}  # six copies: one group, whatever their own groups were
