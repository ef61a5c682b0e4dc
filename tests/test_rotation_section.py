"""The ``rotation`` section (``interp.compare.rotation``, forced-completion probing after Marín 2026) on the bundled
organism pair.

Checked: every per-layer figure equals :func:`interp.geometry.path_geometry` and a hand-made logit lens applied to
activations collected here with the model's own cache, one forced completion at a time (the query-only state from
a run of the prompt alone); the final-layer probabilities equal the model's own output; every interval brackets its
mean; a pair of one model with itself gives post − base exactly 0; the same seed gives the same result; the verdicts
follow the figures; the section runs through ``compare`` once registered and its figures render in a browser; bad
options and bad facts are refused with their messages.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import interp
from interp.compare import _section, compare, register
from interp.compare import rotation as R
from interp.compare.rotation import SECTION, rotation_section
from interp.datasets import PromptSet
from interp.geometry import path_geometry

OPTIONS = dict(max_prompts=8, seed=0, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture(scope="module")
def facts():
    from interp.datasets import load

    return load("organism/facts", "all")


@pytest.fixture(scope="module")
def result(pair, facts):
    return rotation_section(pair, facts, **OPTIONS)


def _ids(tok, text: str) -> int:
    (i,) = tok(text, add_special_tokens=False)["input_ids"]
    return int(i)


def _run(model, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``([layer, d] resid_post at the last position, [vocab] next-token log-probabilities there)``."""
    with torch.inference_mode():
        logits, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n.endswith("resid_post"))
    n = int(model.cfg.n_layers)
    return (torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(n)]).double(),
            logits[0, -1].double().log_softmax(-1))


def _lens_preference(model, h: torch.Tensor, c: int, w: int) -> np.ndarray:
    """``[layer]`` p(c) / (p(c) + p(w)) of the next token, final norm and unembedding applied to ``h``."""
    with torch.inference_mode():
        logits = model.ln_final.original_component(h.float()) @ model.W_U + model.b_U
    p = logits.double().softmax(-1)
    return (p[:, c] / (p[:, c] + p[:, w])).numpy()


def _by_hand(model, tok, row) -> dict:
    """One prompt's figures from activations collected here: per layer the means over its alternatives."""
    text, correct, wrong, random = row[:4]
    prompt = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
    c = _ids(tok, correct)
    ws, rs = ([_ids(tok, s) for s in part.split(" | ")] for part in (wrong, random))
    h_q, logp_q = _run(model, prompt)
    h_c, logp_c = _run(model, prompt + [c])
    out = {k: [] for k in ("angle", "norm_correct", "norm_wrong", "norm_ratio", "rotation_share", "angle_null",
                           "norm_wrong_null", "norm_ratio_null", "rotation_share_null", "preference_wrong",
                           "preference_wrong_null", "preference_correct", "preference_query", "final_after_wrong",
                           "final_after_random")}
    for w, r in zip(ws, rs):
        h_w, logp_w = _run(model, prompt + [w])
        h_r, logp_r = _run(model, prompt + [r])
        g, n = path_geometry(h_c, h_w, origin=h_q), path_geometry(h_c, h_r, origin=h_q)
        out["angle"].append(g.angle)
        out["norm_correct"].append(g.norm_a)
        out["norm_wrong"].append(g.norm_b)
        out["norm_ratio"].append(g.norm_ratio)
        out["rotation_share"].append(g.rotation_share)
        out["angle_null"].append(n.angle)
        out["norm_wrong_null"].append(n.norm_b)
        out["norm_ratio_null"].append(n.norm_ratio)
        out["rotation_share_null"].append(n.rotation_share)
        out["preference_wrong"].append(_lens_preference(model, h_w, c, w))
        out["preference_wrong_null"].append(_lens_preference(model, h_r, c, r))  # against the word forced
        out["preference_correct"].append(_lens_preference(model, h_c, c, w))
        out["preference_query"].append(_lens_preference(model, h_q, c, w))
        out["final_after_wrong"].append(float(logp_w[c].exp()))
        out["final_after_random"].append(float(logp_r[c].exp()))
        # the lens of the last block is the model's own output
        p_last = logp_w[[c, w]].exp()
        assert out["preference_wrong"][-1][-1] == pytest.approx(float(p_last[0] / p_last.sum()), abs=1e-6)
    figures = {k: np.mean(np.asarray(v), axis=0) for k, v in out.items()}
    figures["final_after_query"], figures["final_after_correct"] = float(logp_q[c].exp()), float(logp_c[c].exp())
    return figures


def test_figures_equal_path_geometry_and_the_lens_on_activations_collected_by_hand(pair, result):
    from interp.models import tokenizer_of

    tok = tokenizer_of(pair.base)
    rows = result.tables["continuations"]["rows"]
    assert len(rows) == OPTIONS["max_prompts"]
    final = {(r[0], r[1]): r[2] for r in result.tables["next_token"]["rows"]}
    for m, model in pair:
        hand = [_by_hand(model, tok, row) for row in rows]
        for key in hand[0]:
            expected = np.mean([h[key] for h in hand], axis=0)
            if key.startswith("final_"):
                assert final[m, R.FINAL[key.removeprefix("final_")]] == pytest.approx(expected, rel=1e-4, abs=1e-9)
                continue
            got = np.array([e[f"{m}_{key}"] for e in result.per_layer])
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{m}_{key}")
        angle = np.array([e[f"{m}_angle"] - e[f"{m}_angle_null"] for e in result.per_layer])
        np.testing.assert_allclose([e[f"{m}_angle_minus_null"] for e in result.per_layer], angle, atol=1e-9)
    for e in result.per_layer:
        assert e["angle_post_minus_base"] == pytest.approx(e["post_angle"] - e["base_angle"], abs=1e-9)
        assert e["preference_prior"] == 0.5


def test_result_fields_tables_and_readings(pair, result):
    n = pair.n_layers
    assert result.concept == "rotation" and result.layers == list(range(n))
    entry = result.per_layer[0]
    for m in ("base", "post"):
        for key, _, _ in R.MEASURES:
            for suffix in ("", "_ci_low", "_ci_high"):
                assert isinstance(entry[f"{m}_{key}{suffix}"], float), f"{m}_{key}{suffix}"
    assert set(result.tables) == {"prompts", "next_token", "geometry", "post_minus_base", "continuations"}
    counts = dict(result.tables["prompts"]["rows"])
    assert counts["prompts read"] == 8 and counts["prompts given"] == 460
    assert counts["prompts with a usable pair"] <= 460 - counts["answer not a single token"]
    assert {p["reading"] for p in result.plots} <= set(result.readings)
    for plot in result.plots:
        keys = [*plot["series"], *plot.get("nulls", {})]
        assert all(k in entry for k in keys), plot["title"]
        if "panels" in plot:
            assert sorted(k for p in plot["panels"] for k in p["keys"]) == sorted(keys)
    assert "Marín 2026" in result.readings["summary"] and result.readings["headline"].startswith("Rotation share")
    assert result.setup["layers"] == f"0..{n - 1}; mid-depth = n_layers // 2 = {n // 2}"


def test_the_nulls_random_words_are_words_and_no_answer(pair, facts, result):
    from interp.models import tokenizer_of

    tok = tokenizer_of(pair.base)
    firsts = {tok(o, add_special_tokens=False)["input_ids"][0] for m in facts.meta
              for o in (m["answer"], *m["alternatives"])}
    for prompt, _, wrong, random, *_ in result.tables["continuations"]["rows"]:
        words = random.split(" | ")
        assert len(words) == len(wrong.split(" | ")) == len(set(words)), prompt
        for w in words:
            (t,) = tok(" " + w.strip(), add_special_tokens=False)["input_ids"]
            assert w.strip().isalpha() and len(w.strip()) >= 2 and t not in firsts, (prompt, w)


def test_intervals_bracket_their_means(result):
    for entry in result.per_layer:
        for key, low in entry.items():
            if key.endswith("_ci_low"):
                mean, high = entry[key[:-7]], entry[key[:-7] + "_ci_high"]
                assert low <= mean + 1e-12 and mean <= high + 1e-12, (entry["layer"], key)
    for _, _, mean, low, high in result.tables["next_token"]["rows"]:
        assert low <= mean <= high


def test_summary_figures_are_read_from_the_per_layer_entries(pair, result):
    mid, last = pair.n_layers // 2, pair.n_layers - 1
    summary = result.readings["summary"]
    for m in ("base", "post"):
        e = result.per_layer[mid]
        angle = f"{e[f'{m}_angle']:.3g}° [{e[f'{m}_angle_ci_low']:.3g}, {e[f'{m}_angle_ci_high']:.3g}] apart"
        assert f"{m}: at mid-depth (layer {mid}) the correct and the wrong displacement are {angle}" in summary
        e = result.per_layer[last]
        pref = e[f"{m}_preference_wrong"]
        assert f"as the next token is {pref:.3g} [" in summary
        rot = [layer for layer, x in enumerate(result.per_layer) if x[f"{m}_rotation_share_ci_low"] > 0.5]
        assert f"Rotation rather than rescaling (rotation share's interval above 0.5) " \
               f"{R._layer_list(rot, pair.n_layers)}" in summary


def test_a_model_paired_with_itself_differs_by_exactly_zero(pair, facts):
    from interp.models import pair_of

    same = rotation_section(pair_of(pair.base, pair.base), facts, **OPTIONS)
    for e in same.per_layer:
        for key, value in e.items():
            if "_post_minus_base" in key:
                assert value == 0.0, key
    assert "angle higher in post at no layer, lower at no layer" in same.readings["summary"]
    assert "after the wrong answer changes by 0 [0, 0]" in same.readings["summary"]


def test_same_seed_same_result_and_the_seed_moves_the_draw(pair, facts, result):
    assert rotation_section(pair, facts, **OPTIONS) == result
    other = rotation_section(pair, facts, **{**OPTIONS, "seed": 1})
    assert [r[0] for r in other.tables["continuations"]["rows"]] != [r[0] for r in result.tables["continuations"]["rows"]]


def test_too_few_facts_give_no_interval_and_say_so(pair, facts):
    rows, seen = [], set()
    for i, m in enumerate(facts.meta):  # 4 prompts of 4 facts, each with a single-token answer
        if m["group"] not in seen and m["language"] == "en" and len(rows) < 4 and m["answer"] in (
                " France", " Italy", " Spain", " Germany", " Egypt", " Japan", " Brazil", " Canada"):
            rows.append(i)
            seen.add(m["group"])
    assert len(rows) == 4
    small = rotation_section(pair, facts[rows], **OPTIONS)
    e = small.per_layer[0]
    assert e["base_angle_ci_low"] is None and e["angle_post_minus_base_ci_high"] is None
    assert isinstance(e["base_angle"], float)
    assert f"[no interval: fewer than {R.MIN_FACTS} facts]" in small.readings["summary"]
    assert "is undefined (no interval)" in small.readings["summary"]
    assert all(r[3] == r[4] == f"undefined: fewer than {R.MIN_FACTS} facts" for r in small.tables["next_token"]["rows"])


def _stats(low_share, high_share, low_diff, high_diff, n_layers=3, slot=(-0.2, -0.1), growth=(1.0, 9.0)):
    """Synthetic figures: the rotation share's interval, the final wrong-minus-random difference's, the
    wrong-minus-correct (slot-filled control) difference's and the angle growth's."""
    one = (np.full(n_layers, 0.5), np.full(n_layers, 0.4), np.full(n_layers, 0.6))
    stats = {f"{m}_{k}": one for m in ("base", "post") for k, _, _ in R.MEASURES}
    stats.update({f"{m}_{k}_null": one for m in ("base", "post") for k in R._NULLED})
    stats.update({f"{m}_{k}_minus_null": one for m in ("base", "post") for k in R._NULLED})
    share = (np.full(n_layers, (low_share + high_share) / 2), np.array(low_share, float) * np.ones(n_layers),
             np.array(high_share, float) * np.ones(n_layers))
    stats["base_rotation_share"] = share
    diff = (np.float64((low_diff + high_diff) / 2), np.float64(low_diff), np.float64(high_diff))
    for m in ("base", "post"):
        stats[f"{m}_final_wrong_minus_random"] = diff
        stats[f"{m}_final_wrong_minus_correct"] = tuple(np.float64(x) for x in (sum(slot) / 2, *slot))
        stats[f"{m}_angle_growth"] = tuple(np.float64(x) for x in (sum(growth) / 2, *growth))
        for k in R.FINAL:
            stats[f"{m}_final_{k}"] = (np.float64(0.1), np.float64(0.05), np.float64(0.2))
    return stats


@pytest.mark.parametrize("share, diff, rotation, suppression", [
    ((0.6, 0.9), (-0.3, -0.1), "seen", "seen"),
    ((0.4, 0.9), (-0.3, 0.1), "not seen", "not seen"),
    ((0.1, 0.3), (0.1, 0.3), "not seen", "not seen"),
])
def test_the_verdicts_follow_the_figures(share, diff, rotation, suppression):
    stats = _stats(*share, *diff)
    words = R._verdict_words(stats, "base", 1, 2, 3)
    assert (words["rotation"], words["suppression"]) == (rotation, suppression)
    phrase = R._rotation_phrase(stats, "base", 1, 3)
    if share[0] > 0.5:
        assert "at every layer (0-2)" in phrase
    elif share[1] < 0.5:
        assert "above 0.5) at no layer, rescaling (below it) at every layer (0-2)" in phrase
    text = R._suppression_phrase(stats, "base", 2)
    assert ("active suppression of the correct answer, beyond the answer slot" in text) == (suppression == "seen")
    assert ("higher after the wrong answer than after a random word" in text) == (diff[0] > 0)


def test_layer_lists_name_runs_of_layers():
    assert R._layer_list([0, 1, 2, 5], 8) == "at layers 0-2, 5 (4 of 8)"
    assert R._layer_list([3], 8) == "at layer 3 (1 of 8)"
    assert R._layer_list([], 8) == "at no layer" and R._layer_list(None, 8).startswith("undefined")


def test_runs_through_compare_once_registered_and_renders_in_a_browser(monkeypatch, tmp_path):
    monkeypatch.setattr(_section, "_REGISTERED", {})
    register(SECTION, replace=True)
    out = tmp_path / "report"
    comp = compare(concepts=["rotation"], out=out, progress=False, options={"rotation": {"max_prompts": 6}})
    res = comp.concepts["rotation"]
    assert res.concept == "rotation" and dict(res.tables["prompts"]["rows"])["prompts read"] == 6
    assert "organism/facts" in res.setup["facts"]
    data = json.loads((out / "report.json").read_text())
    assert "rotation" in data["concepts"]
    from interp.report import figures

    n_figures = len(figures(res))
    assert n_figures == len(res.plots) + 1  # the four line plots and the next-token bars
    from tests.test_report_browser import CHROMIUM, _open

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it with apt)")
    page = out / "report.html"
    assert page.read_text().count('class="plotly-graph-div"') == n_figures
    import re

    dom, console, requested = _open(page, tmp_path)
    assert len(re.findall(r'<div id="([^"]+)" class="plotly-graph-div js-plotly-plot"', dom)) == n_figures
    assert console == [] and requested == set()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_options_and_facts_are_refused_with_their_messages(pair, facts, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="option 'max_prompts' of section 'rotation' must be >= 2; got 1"):
        SECTION.options({"max_prompts": 1})
    with pytest.raises(ValueError, match="option 'seed' of section 'rotation' must be >= 0 and <= 2147483647; got -1"):
        SECTION.options({"seed": -1})
    with pytest.raises(ValueError, match="option 'batch_size' of section 'rotation' takes an int, got 2.5"):
        SECTION.options({"batch_size": 2.5})
    with pytest.raises(ValueError, match="section 'rotation' takes no option 'layers'; its options: max_prompts, "
                                         "seed, batch_size, data"):
        SECTION.options({"layers": "1"})
    with pytest.raises(FileNotFoundError, match="no facts data file"):
        SECTION.options({"data": str(tmp_path / "missing.jsonl")})
    one = _write(tmp_path / "one.jsonl", [{"prompt": "The city of Rome is in", "subject": "Rome",
                                           "answer": " Italy", "alternatives": [" France"]}])
    with pytest.raises(ValueError, match="one.jsonl: 1 fact prompt\\(s\\); the rotation section needs at least 2"):
        SECTION.options({"data": str(one)})
    twice = _write(tmp_path / "twice.jsonl", [
        {"prompt": "The city of Rome is in", "subject": "Rome", "answer": " Italy", "alternatives": [" France"]},
        {"prompt": "The city of Lyon is in", "subject": "Lyon", "answer": " France",
         "alternatives": [" Spain", " Spain"]}])
    with pytest.raises(ValueError, match=r"twice.jsonl: row 1 \(prompt 'The city of Lyon is in'\) gives ' Spain' more "
                                         "than once"):
        SECTION.options({"data": str(twice)})
    with pytest.raises(ValueError, match="max_prompts must be >= 2, got 1"):
        rotation_section(pair, facts, max_prompts=1)
    with pytest.raises(TypeError, match="facts must be a PromptSet"):
        rotation_section(pair, ["The city of Rome is in"])
    long = PromptSet("long", ("The city of Rome is in", "The city of Lyon is in"),
                     meta=({"answer": " Italy", "alternatives": (" Kolumbien",), "group": "a"},
                           {"answer": " Brazil", "alternatives": (" Spain",), "group": "b"}))
    with pytest.raises(ValueError, match="long: 0 prompt\\(s\\) have a single-token answer and at least one "
                                         "single-token wrong alternative \\(of 2; "):
        rotation_section(pair, long)
    bare = PromptSet("bare", ("The city of Rome is in",), meta=({"answer": " Italy"},))
    with pytest.raises(ValueError, match="bare row 0 \\(prompt 'The city of Rome is in'\\): meta needs 'answer'"):
        rotation_section(pair, bare)


def test_the_data_option_reads_the_users_facts(pair, tmp_path):
    from interp.compare import SectionContext

    cities = [("Rome", " Italy"), ("Lyon", " France"), ("Madrid", " Spain"), ("Berlin", " Germany"),
              ("Cairo", " Egypt"), ("Tokyo", " Japan")]
    countries = [c for _, c in cities]
    rows = [{"prompt": f"The city of {city} is in", "subject": city, "answer": country,
             "alternatives": [c for c in countries if c != country][:2]} for city, country in cities]
    path = _write(tmp_path / "mine.jsonl", rows)
    opts = SECTION.options({"data": str(path), "max_prompts": 6})
    res = SECTION.run(SectionContext(pair, is_organism=True, progress=False), **opts)
    assert [r[0] for r in res.tables["continuations"]["rows"]] == [r["prompt"] for r in rows]
    assert "mine.jsonl" in res.setup["facts"] and dict(res.tables["prompts"]["rows"])["prompts given"] == 6


@pytest.mark.parametrize("slot, verdict", [((-0.03, -0.01), "seen"), ((-0.01, 0.01), "not seen")])
def test_suppression_needs_the_wrong_answer_below_the_slot_filled_control(slot, verdict):
    """Below a random word but not below the correct answer itself: any answer filling the slot lowers p(c), so
    no suppression is claimed."""
    stats = _stats(0.6, 0.9, -0.3, -0.1, slot=slot)
    assert R._verdict_words(stats, "base", 1, 2, 3)["suppression"] == verdict
    text = R._suppression_phrase(stats, "base", 2)
    assert ("not separable from the answer slot being filled" in text) == (verdict == "not seen")


def test_equal_magnitude_and_angle_growth_verdicts_follow_their_intervals():
    stats = _stats(0.6, 0.9, -0.3, -0.1, growth=(-2.0, 4.0))
    stats["base_norm_ratio"] = (np.full(3, 1.0), np.full(3, 0.9), np.full(3, 1.1))
    stats["post_norm_ratio"] = (np.full(3, 1.0), np.full(3, 0.7), np.full(3, 1.1))
    assert R._verdict_words(stats, "base", 1, 2, 3)["equal"] == "seen"
    assert R._verdict_words(stats, "post", 1, 2, 3)["equal"] == "not seen"  # interval leaves [0.8, 1.25]
    assert R._verdict_words(stats, "base", 1, 2, 3)["growth"] == "not seen"
    assert R._verdict_words(_stats(0.6, 0.9, -0.3, -0.1), "base", 1, 2, 3)["growth"] == "seen"


def test_null_words_are_lower_case_ascii_words(pair):
    ids = R._word_pool(pair.tokenizer, len(pair.tokenizer), set())
    words = [pair.tokenizer.decode([i]).strip() for i in ids]
    assert words and all(w.isascii() and w.isalpha() and w.islower() and len(w) >= 3 for w in words)
