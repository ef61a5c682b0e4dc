"""The ``geometry`` section (``interp.compare.geometry``) on the bundled organism pair.

Checked: the result's fields; RankMe, alpha-ReQ and its R^2 against ``interp.geometry`` on an independent
collection; the jackknife intervals against a recomputation; a model compared with itself (post - base exactly 0
with a zero-width interval, no direction called); one row per text (``rows="last"``), where too few rows leave
alpha-ReQ undefined with the reason; the verdict written from the intervals; the same seed giving the same result;
a run through ``compare`` once registered whose figures render in a browser; bad options refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import interp
from interp.collection import collect_tokens_by_layer
from interp.compare import _section, compare, register
from interp.compare import geometry as G
from interp.compare._corpus import jackknife_blocks
from interp.compare.geometry import SECTION, geometry_section
from interp.geometry import alpha_req, rankme
from interp.models import ModelPair
from interp.tokens import tokenize

N_TEXTS = 40
OPTIONS = dict(max_tokens=16, n_blocks=8, n_isotropic=2, seed=0, progress=False)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture(scope="module")
def texts():
    from interp.datasets import load

    return load("organism/languages", "train")[:N_TEXTS]


@pytest.fixture(scope="module")
def result(pair, texts):
    return geometry_section(pair, texts, corpus_source="organism/languages", **OPTIONS)


@pytest.fixture(scope="module")
def states(pair, texts):
    """``{model: [layer, n, d]}`` resid_post of every token after BOS (the first 16 of each text), and each row's
    group, read here with the toolkit's own collection."""
    out = {}
    for m, model in pair:
        by_layer = collect_tokens_by_layer(model, tokenize(model, texts.texts), "resid_post", None, progress=False)
        keep = by_layer[0].position <= OPTIONS["max_tokens"]
        out[m] = torch.stack([by_layer[layer].X[keep] for layer in sorted(by_layer)]).double().numpy()
        groups = np.array([texts.meta[int(t)].get("group", f"text:{int(t)}") for t in by_layer[0].prompt[keep]])
    return out, groups


def test_result_fields(result, pair):
    keys = [f"{m}_{q}{s}" for m in ("base", "post") for q in ("rankme", "alpha") for s in ("", "_ci_low", "_ci_high")]
    keys += [f"{q}_diff{s}" for q in ("rankme", "alpha") for s in ("", "_ci_low", "_ci_high")]
    keys += ["base_alpha_r2", "post_alpha_r2", "rankme_isotropic", "alpha_isotropic"]
    assert result.concept == "geometry" and result.layers == list(range(pair.n_layers))
    for entry in result.per_layer:
        assert set(entry) == {"layer", *keys}
        for key in keys:
            assert isinstance(entry[key], float) and math.isfinite(entry[key]), key
        for key in ("base_rankme", "post_rankme", "rankme_diff", "base_alpha", "post_alpha", "alpha_diff"):
            assert entry[f"{key}_ci_low"] < entry[key] < entry[f"{key}_ci_high"], key
        d = pair.base.cfg.d_model
        assert 1 < entry["base_rankme"] < entry["rankme_isotropic"] <= d  # the stream is far from isotropic
        assert entry["base_alpha"] > entry["alpha_isotropic"] and 0 < entry["base_alpha_r2"] <= 1
    assert set(result.tables) == {"layers"}
    assert all(len(r) == len(result.tables["layers"]["columns"]) for r in result.tables["layers"]["rows"])
    assert [p.get("kind") for p in result.plots] == [None, None, None, "xy"]
    assert {p["reading"] for p in result.plots} <= set(result.readings)


def test_figures_match_an_independent_reading(result, states):
    X, _ = states
    for layer, entry in enumerate(result.per_layer):
        for m in ("base", "post"):
            a = alpha_req(X[m][layer])
            assert entry[f"{m}_rankme"] == pytest.approx(rankme(X[m][layer], convention="li2025"), rel=1e-9)
            assert entry[f"{m}_alpha"] == pytest.approx(a.alpha, rel=1e-9)
            assert entry[f"{m}_alpha_r2"] == pytest.approx(a.r2, rel=1e-9)
        assert entry["rankme_diff"] == pytest.approx(entry["post_rankme"] - entry["base_rankme"], rel=1e-12)
    n, d = X["base"].shape[1:]
    assert f"On {n} tokens of {N_TEXTS} texts" in result.readings["summary"]
    assert f"at most min(n − 1, d) = {min(n - 1, d)}" in result.readings["summary"]


def test_intervals_are_the_delete_a_group_jackknife(result, states):
    from scipy.stats import t as student

    X, groups = states
    layer = 3
    blocks = jackknife_blocks(groups, OPTIONS["n_blocks"], OPTIONS["seed"])
    k = blocks.max() + 1
    reps = {m: np.array([rankme(X[m][layer][blocks != b], convention="li2025") for b in range(k)])
            for m in ("base", "post")}
    for key, r in (("base_rankme", reps["base"]), ("rankme_diff", reps["post"] - reps["base"])):
        half = student.ppf(0.975, k - 1) * math.sqrt((k - 1) / k * ((r - r.mean()) ** 2).sum())
        entry = result.per_layer[layer]
        assert entry[f"{key}_ci_low"] == pytest.approx(entry[key] - half, rel=1e-9)
        assert entry[f"{key}_ci_high"] == pytest.approx(entry[key] + half, rel=1e-9)


def test_a_model_compared_with_itself_moves_nowhere(pair, texts):
    res = geometry_section(ModelPair(base=pair.post, post=pair.post), texts[:20], **{**OPTIONS, "n_blocks": 5})
    for entry in res.per_layer:
        for key in ("rankme_diff", "rankme_diff_ci_low", "rankme_diff_ci_high", "alpha_diff", "alpha_diff_ci_low",
                    "alpha_diff_ci_high"):
            assert entry[key] == 0.0, key
        assert entry["base_rankme"] == entry["post_rankme"]
    assert res.readings["headline"] == "Neither measure moves one way at most layers: no direction is seen."
    assert "the interval holds 0 at 6 layers (0-5)" in res.readings["summary"]


def test_one_row_per_text_and_an_undefined_alpha(pair, texts):
    res = geometry_section(pair, texts, **{**OPTIONS, "rows": "last"})
    assert res.setup["rows"].startswith(f"{N_TEXTS} rows: the last token read of each text")
    for entry in res.per_layer:
        assert entry["base_alpha"] is None and entry["alpha_diff_ci_low"] is None
        assert isinstance(entry["base_rankme"], float) and entry["base_rankme"] <= N_TEXTS - 1
    reason = (f"the fit range ends at eigen-rank 100, but {N_TEXTS} rows of width 128 have at most min(n − 1, d) = "
              f"{N_TEXTS - 1} covariance eigenvalues")
    assert res.setup["undefined"]["base layer 0: alpha"] == reason
    assert f"whether α-ReQ moves in post is undefined at every layer ({reason})" in res.readings["summary"]
    assert "α-ReQ fit over eigen-ranks" not in res.readings["summary"]
    rm = res.setup["layers read"]["rankme"]
    majority = next((k for k in ("entropy-seeking", "compression-seeking") if len(rm[k]) > rm["defined"] / 2), None)
    assert res.readings["headline"] == (
        "Neither measure moves one way at most layers: no direction is seen (α-ReQ is undefined at every layer)."
        if majority is None else
        f"Only RankMe moves one way at most layers ({majority}); α-ReQ is undefined at every layer: no direction "
        f"is called.")
    assert len(res.plots) == 3  # no spectrum to draw without alpha's spectra


def _curves(rank_lo, rank_hi, alpha_lo, alpha_hi):
    n = len(rank_lo)
    c = {"rankme_diff_ci_low": np.array(rank_lo, float), "rankme_diff_ci_high": np.array(rank_hi, float),
         "alpha_diff_ci_low": np.array(alpha_lo, float), "alpha_diff_ci_high": np.array(alpha_hi, float)}
    return c, {m: G._reading(c, m, n) for m in ("rankme", "alpha")}


def test_the_verdict_follows_the_intervals():
    up, down, zero, nan = (1, 2), (-2, -1), (-1, 1), (math.nan, math.nan)
    _, r = _curves(*zip(up, up, up, zero), *zip(down, down, zero, zero))  # RankMe up at 3 of 4, alpha down at 2
    assert r["rankme"]["majority"] == "entropy-seeking" and r["alpha"]["majority"] is None
    assert G._verdict(r) == ("Only RankMe moves one way at most layers (entropy-seeking); α-ReQ does not: no "
                             "direction is called.")
    _, r = _curves(*zip(down, down, down, zero), *zip(up, up, up, nan))  # alpha: 3 of its 3 defined layers
    assert r["alpha"]["defined"] == 3 and r["alpha"]["undefined"] == [3]
    assert G._verdict(r) == "Post is compression-seeking relative to base at most layers by both measures."
    _, r = _curves(*zip(up, up, up, up), *zip(up, up, up, up))
    assert G._verdict(r) == "The measures disagree: RankMe reads entropy-seeking, α-ReQ compression-seeking, at " \
                            "most layers."
    c, r = _curves(*zip(up, zero, down), *zip(down, down, zero))
    assert [G._direction(c, "rankme", i) for i in range(3)] == ["entropy-seeking", "interval holds 0",
                                                                "compression-seeking"]
    assert [G._direction(c, "alpha", i) for i in range(3)] == ["entropy-seeking", "entropy-seeking",
                                                               "interval holds 0"]


def test_the_summary_reads_the_figures(result):
    summary, last = result.readings["summary"], result.per_layer[-1]
    reading = result.setup["layers read"]["rankme"]
    assert (f"RankMe is higher in post (entropy-seeking) at {len(reading['entropy-seeking'])} of "
            f"{reading['defined']} layers") in summary
    assert G._at_layers([]) == "at 0 layers" and G._at_layers([5]) == "at 1 layer (5)"
    assert G._at_layers([1, 2, 3, 5], 6) == "at 4 of 6 layers (1-3, 5)"
    assert f"{last['base_rankme']:.3g} [{last['base_rankme_ci_low']:.3g}, {last['base_rankme_ci_high']:.3g}] in base" \
           in summary
    assert f"an isotropic Gaussian of this n and d gives {last['rankme_isotropic']:.3g}" in summary
    assert result.readings["headline"] in summary and "Li et al. 2025 find" in summary


def test_rerun_is_identical(pair, texts, result):
    assert geometry_section(pair, texts, corpus_source="organism/languages", **OPTIONS) == result


def test_runs_through_compare_and_renders(pair, tmp_path):
    from interp.report import figures

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_section, "_REGISTERED", {})
        register(SECTION, replace=True)
        comparison = compare(pair=pair, concepts=["geometry"], out=tmp_path, progress=False,
                             options={"geometry": {"n_texts": 24, "max_tokens": 12, "n_blocks": 6}})
    c = comparison.concepts["geometry"]
    assert c.setup["corpus"].startswith("organism/languages") and c.readings["summary"]
    figs = figures(c)
    assert len(figs) == 4
    from tests.test_confidence_section import _render_in_chromium

    _render_in_chromium(tmp_path / "report.html", len(figs), tmp_path)


def test_bad_options_are_refused(pair, texts, tmp_path):
    with pytest.raises(ValueError, match="option 'rows' of section 'geometry' must be one of 'tokens', 'last'; "
                                         "got 'all'"):
        SECTION.options({"rows": "all"})
    with pytest.raises(ValueError, match="option 'convention' of section 'geometry' must be one of"):
        SECTION.options({"convention": "other"})
    with pytest.raises(ValueError, match=r"option 'fit_last' of section 'geometry': must be at most the model's width "
                                         r"d_model = 128 \(its covariance has at most 128 eigenvalues\); got 200"):
        SECTION.check_model(SECTION.options({"fit_last": 200}), pair.shape)
    with pytest.raises(ValueError, match="at least 3 eigen-ranks\\); got --geometry-fit-first 12 "
                                         "--geometry-fit-last 13"):
        SECTION.options({"fit_last": 13})  # refused before any model boots
    with pytest.raises(ValueError, match="rows='last' reads one row per text, so 64 texts give at most 63 eigenvalues"):
        SECTION.options({"rows": "last"})
    assert SECTION.options({"rows": "last", "fit_last": 50})["rows"] == "last"
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(f'{{"text": "text number {i}"}}' for i in range(4)))
    with pytest.raises(ValueError, match="give either a built-in corpus .* or your file .*, not both"):
        SECTION.options({"corpus": "truth", "data": str(corpus)})
    assert SECTION.options({"data": str(corpus)})["data"] == str(corpus)
    with pytest.raises(ValueError, match="option 'n_isotropic' of section 'geometry' must be >= 1; got 0"):
        SECTION.options({"n_isotropic": 0})
    with pytest.raises(ValueError, match="rows must be 'tokens' or 'last'; got 'every'"):
        geometry_section(pair, texts[:4], rows="every")
    with pytest.raises(ValueError, match="n_blocks must be >= 5; got 2"):
        geometry_section(pair, texts[:4], n_blocks=2)


def test_too_few_texts_leave_the_intervals_undefined(pair, texts):
    res = geometry_section(pair, texts[:3], **{**OPTIONS, "n_blocks": 5})
    why = "the corpus has 3 group(s) of texts; intervals need at least 5"
    assert res.setup["undefined"]["intervals"] == why
    for entry in res.per_layer:
        assert isinstance(entry["base_rankme"], float) and entry["base_rankme_ci_low"] is None
        assert entry["rankme_diff_ci_high"] is None and entry["base_alpha"] is None  # 3 texts: far fewer than 101 rows
    assert f"whether RankMe moves in post is undefined at every layer ({why})" in res.readings["summary"]
    assert res.readings["headline"] == ("No direction can be read: neither measure's post − base has an interval at "
                                        "any layer.")

