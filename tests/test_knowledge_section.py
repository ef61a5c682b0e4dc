"""The knowledge section (``interp.compare.knowledge``) on the bundled organism pair.

The organism's planted city facts (``organism/facts``) are known by both of its models; the section traces a
few of each split and patches each model's residual stream into the other. Checked: the result's fields, the
heatmaps' shapes and scales, that every interval brackets its mean, that the summary states the validation-
chosen peaks with figures read from the per-layer entries, that the same seed gives the same result, and that
the section runs through ``compare`` once registered.
"""

from __future__ import annotations


from types import SimpleNamespace

import numpy as np
import pytest
import torch

import interp
from interp.compare import _section, compare, register
from interp.compare.knowledge import PLACE_TOLERANCE, SECTION, _Groups, _place, knowledge_section
from interp.datasets import PromptSet
from interp.tracing import ROLES

OPTIONS = dict(max_prompts=6, samples=2, seed=0, batch_size=256)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture(scope="module")
def result(pair):
    return knowledge_section(pair, is_organism=True, progress=False, kinds="resid,mlp,attn", **OPTIONS)


def test_result_fields(result, pair):
    n = pair.n_layers
    assert result.concept == "knowledge" and result.layers == list(range(n))
    entry = result.per_layer[0]
    for m in ("base", "post"):
        for kind in ("resid", "mlp", "attn"):
            key = f"{m}_{kind}_" + ("last_token" if kind == "attn" else "last_subject")
            for suffix in ("", "_ci_low", "_ci_high", "_null", "_validation", "_normalised", "_normalised_ci_low",
                           "_normalised_ci_high"):
                assert isinstance(entry[key + suffix], float), key + suffix
    for direction in ("base_to_post", "post_to_base"):
        for suffix in ("", "_ci_low", "_ci_high", "_null", "_minus_null", "_minus_null_ci_low",
                       "_minus_null_ci_high", "_distance"):
            assert isinstance(entry[f"survival_{direction}{suffix}"], float)
    assert set(result.tables) == {"prompts", "peaks", "place", "agreement"}
    split, facts, evaluated, known_base, known_post, both, traced = result.tables["prompts"]["rows"][1]
    assert split == "test" and facts >= evaluated >= known_base >= both and known_post >= both
    assert traced == min(OPTIONS["max_prompts"], both) == 6
    assert result.setup["n_test_traced"] == 6 and result.setup["n_validation_traced"] == 6
    assert {p["reading"] for p in result.plots} <= set(result.readings)


def test_heatmaps_are_layer_by_role_on_one_scale(result, pair):
    n = pair.n_layers
    for kind in ("resid", "mlp", "attn"):
        m = result.matrices[f"{kind}_by_role"]
        assert m["rows"] == [f"{model} · {r}" for model in ("base", "post") for r in ROLES]
        assert m["cols"] == list(range(n)) and len(m["values"]) == 12
        values = [v for row in m["values"] for v in row if v is not None]
        assert all(len(row) == n for row in m["values"]) and values
        assert m["zmin"] <= min(values) and m["zmax"] >= max(values)
        d = result.matrices[f"{kind}_post_minus_base"]
        assert d["rows"] == list(ROLES) and d["zmin"] == -d["zmax"] and d["colorscale"] == "RdBu"
        for r in range(len(ROLES)):  # post - base of the two halves of the first heatmap
            for c in range(n):
                b, p = m["values"][r][c], m["values"][len(ROLES) + r][c]
                assert d["values"][r][c] == (None if b is None else pytest.approx(p - b, abs=1e-9))
                assert d["values"][r][c] is None or abs(d["values"][r][c]) <= d["zmax"] + 1e-12
    # the organism's prompts end "... is in": no token between the first subsequent and the last one
    further = ROLES.index("further tokens")
    assert all(v is None for v in result.matrices["mlp_by_role"]["values"][further])


def test_intervals_bracket_their_means(result):
    for entry in result.per_layer:
        for key in entry:
            if key.endswith("_ci_low"):
                mean, low, high = entry[key[:-7]], entry[key], entry[key[:-7] + "_ci_high"]
                assert low <= mean + 1e-12 and mean <= high + 1e-12, (entry["layer"], key)
    for row in result.tables["agreement"]["rows"]:
        kind, at, layer, diff, ci, holds, n_diff, n_ci, n_holds = row
        (low, high), (n_low, n_high) = (map(float, c.strip("[]").split(", ")) for c in (ci, n_ci))
        assert low <= round(diff, 3) <= high and holds == ("yes" if low <= 0 <= high else "no")
        assert n_low <= round(n_diff, 3) <= n_high and n_holds == ("yes" if n_low <= 0 <= n_high else "no")


def test_summary_reports_the_validation_chosen_peaks(result):
    summary = result.readings["summary"]
    peaks = {(r[0], r[1]): r for r in result.tables["peaks"]["rows"]}
    for m in ("base", "post"):
        for kind in ("resid", "mlp", "attn"):
            key = f"{m}_{kind}_" + ("last_token" if kind == "attn" else "last_subject")
            assert peaks[m, kind][2] == ("last token" if kind == "attn" else "last subject token")
            layer = peaks[m, kind][3]
            validation = [e[f"{key}_validation"] for e in result.per_layer]
            assert layer == int(np.argmax(validation))  # chosen on validation, not test
            assert peaks[m, kind][4] == pytest.approx(result.per_layer[layer][key])
    for kind in ("mlp", "resid"):
        b, p = peaks["base", kind], peaks["post", kind]
        e = result.per_layer[b[3]]
        low, high = e[f"base_{kind}_last_subject_ci_low"], e[f"base_{kind}_last_subject_ci_high"]
        name = {"mlp": "The MLP output", "resid": "The residual stream"}[kind]
        assert f"{name} at the last subject token peaks at layer {b[3]} ({b[4]:.2f} [{low:.2f}, {high:.2f}]" in summary
        assert f"in base and layer {p[3]} ({p[4]:.2f}" in summary
    place = {r[0]: r for r in result.tables["place"]["rows"]}
    assert place["resid"][5] == "not tested"
    for kind in ("mlp", "attn"):
        assert place[kind][5] in ("the same place", "different places", "undetermined", "undefined")
    assert "The attention output at the last token peaks at layer" in summary
    assert summary.startswith("On 6 test prompts of 6 facts known by both models") and "6 validation prompts" in summary


class _Trace:
    """What :func:`_place` reads of a CausalTrace: ``at_role(role)`` ``[n, kind, layer]``."""

    def __init__(self, effect):
        self.effect = torch.as_tensor(effect, dtype=torch.float64)[:, None, :]

    def at_role(self, role):
        return self.effect


def _planted_place(base_peak, post_peak, n, noise, seed=1, effect_low=0.1, kind="mlp", groups=None):
    """_place on planted curves: each fact's effect is a bump of height 1 at its model's peak plus noise."""
    rng = np.random.default_rng(seed)
    layers = np.arange(10)

    def facts(peak):
        return np.exp(-0.5 * (layers - peak) ** 2)[None] + noise * rng.standard_normal((n, len(layers)))

    run = SimpleNamespace(kinds=(kind,), seed=0, traces={("test", "base"): _Trace(facts(base_peak)),
                                                         ("test", "post"): _Trace(facts(post_peak))},
                          groups={"test": _Groups(groups if groups is not None else range(n), 0)})
    peaks = {(m, kind): {"low": effect_low} for m in ("base", "post")}
    return _place(run, 0, peaks)


def test_same_place_needs_the_shift_interval_within_the_tolerance():
    same = _planted_place(4, 4, n=40, noise=0.05)
    assert same["verdict"] == "the same place" and same["shift"] == 0
    assert -PLACE_TOLERANCE <= same["low"] <= 0 <= same["high"] <= PLACE_TOLERANCE
    moved = _planted_place(3, 7, n=40, noise=0.05)
    assert moved["verdict"] == "different places" and moved["shift"] == 4 and moved["low"] > PLACE_TOLERANCE
    # a consistent one-layer shift is within the tolerance (below the window's resolution): the same place
    one = _planted_place(3, 4, n=40, noise=0.05)
    assert one["shift"] == 1 and one["low"] == one["high"] == 1 and one["verdict"] == "the same place"
    # noisy facts whose peaks differ by 4 layers: the interval holds 0 but is wide; no longer "the same place"
    vague = _planted_place(3, 7, n=6, noise=1.5, seed=3)
    assert vague["verdict"] == "undetermined" and vague["low"] <= 0 <= vague["high"]
    assert vague["high"] - vague["low"] > 2 * PLACE_TOLERANCE and "more facts" in vague["why"]


def test_resid_place_is_not_tested_and_intervals_resample_facts():
    """The residual stream's trace is a plateau (restoring it restores everything below): no place verdict. The
    bootstrap draws facts, not prompts: six phrasings of one fact are one fact, too few for an interval."""
    resid = _planted_place(3, 7, n=40, noise=0.05, kind="resid")
    assert resid["verdict"] == "not tested" and "plateau" in resid["why"]
    one_fact = _planted_place(4, 4, n=40, noise=0.05, groups=["a"] * 20 + ["b"] * 20)
    assert one_fact["verdict"] == "undefined" and "fewer than 5 test facts (2)" in one_fact["why"]
    values = np.r_[np.zeros(20), np.ones(20)][:, None]
    low, high = _Groups(["a"] * 20 + ["b"] * 20, 0).ci(values)
    assert np.isnan(low).all() and np.isnan(high).all()
    # five facts, one of them in 36 phrasings: the interval is that of five facts, wider than of 40 prompts
    groups = [f"f{i}" for i in range(4)] + ["big"] * 36
    values = np.r_[np.ones(4), np.zeros(36)][:, None]
    low, high = _Groups(groups, 0).ci(values)
    plain_low, plain_high = _Groups(range(40), 0).ci(values)
    assert high[0] - low[0] > 2 * (plain_high[0] - plain_low[0]) and low[0] <= 0.1 <= high[0]


def test_place_is_undefined_without_facts_or_effect():
    few = _planted_place(4, 4, n=4, noise=0.05)
    assert few["verdict"] == "undefined" and "fewer than 5 test facts (4)" in few["why"] and few["low"] is None
    flat = _planted_place(4, 4, n=40, noise=0.05, effect_low=-0.01)
    assert flat["verdict"] == "undefined" and "no effect to locate" in flat["why"]


def test_same_seed_same_result(result, pair):
    again = knowledge_section(pair, is_organism=True, progress=False, kinds="resid,mlp,attn", **OPTIONS)
    assert again == result


def test_no_fact_known_by_both_is_undefined(pair, monkeypatch):
    import interp.compare.knowledge as knowledge

    wrong = PromptSet("facts", ["The city of Lyon is in", "The city of Berlin is in"],
                      meta=[{"subject": "Lyon", "answer": " Spain", "group": "a"},
                            {"subject": "Berlin", "answer": " France", "group": "b"}])
    monkeypatch.setattr(knowledge, "_fact_sets", lambda data, is_organism: (wrong, wrong, "wrong answers"))
    r = knowledge_section(pair, is_organism=True, progress=False, max_prompts=2, samples=1)
    assert r.readings["summary"].startswith("Undefined: no validation and no test fact is known by both models")
    assert all(e["base_mlp_last_subject"] is None for e in r.per_layer)  # NaN: undefined, written as None
    assert r.matrices == {} and r.tables["peaks"]["rows"] == []


def test_runs_through_compare_once_registered(pair, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_section, "_REGISTERED", {})
        register(SECTION, replace=True)
        comparison = compare(pair=pair, concepts=["knowledge"], out=tmp_path, progress=False,
                             options={"knowledge": {"max_prompts": 2, "samples": 1, "kinds": "mlp"}})
    c = comparison.concepts["knowledge"]
    assert set(c.matrices) == {"mlp_by_role", "mlp_post_minus_base"} and c.readings["summary"]
    assert (tmp_path / "report.html").is_file()


def test_bad_options_are_refused(pair):
    with pytest.raises(ValueError, match="kinds must be a comma-separated subset"):
        SECTION.options({"kinds": "mlp,ffn"})
    with pytest.raises(ValueError, match="max_prompts"):
        SECTION.options({"max_prompts": 0})
    for noise in (0.0, -1.0):
        with pytest.raises(ValueError, match=f"option 'noise' of section 'knowledge' must be > 0 and <= 100; got "
                                             f"{noise}"):
            SECTION.options({"noise": noise})
    SECTION.options({"noise": 1e-9})  # as close to 0 as wanted
    for noise in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="option 'noise' of section 'knowledge' must be a finite number"):
            SECTION.options({"noise": noise})
    # called directly: refused before any model runs
    with pytest.raises(ValueError, match="max_prompts must be >= 1"):
        knowledge_section(pair, is_organism=True, max_prompts=0)
    with pytest.raises(ValueError, match="window must be in 1..6"):
        knowledge_section(pair, is_organism=True, window=7)
    with pytest.raises(ValueError, match="unknown kind|kinds must be"):
        knowledge_section(pair, is_organism=True, kinds="resid,ffn")


def test_data_option_reads_the_users_facts(pair, tmp_path):
    import json

    from interp.datasets import load

    facts = load("organism/facts", "test")
    rows = [{"prompt": t, "subject": m["subject"], "answer": m["answer"], "relation": m["relation"],
             "alternatives": list(m["alternatives"])}
            for t, m in zip(facts.texts, facts.meta) if t.startswith("The city of")][:16]
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_section, "_REGISTERED", {})
        register(SECTION, replace=True)
        comparison = compare(pair=pair, concepts=["knowledge"], progress=False, out=tmp_path / "report",
                             options={"knowledge": {"data": str(path), "max_prompts": 3, "samples": 1}})
    c = comparison.concepts["knowledge"]
    assert str(path) in c.setup["dataset"]
    (_, n_val, *_), (_, n_test, *_) = c.tables["prompts"]["rows"]
    assert n_val + n_test == 16 and n_test == 4  # the user's file, split 75/25 by fact
    with pytest.raises(FileNotFoundError, match="no facts data file"):
        SECTION.options({"data": str(tmp_path / "missing.jsonl")})
