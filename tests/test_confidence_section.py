"""The ``confidence`` section on the bundled organism, and the report's plots over an x axis of their own.

The organism's planted facts are built here from its held-out true city statements ("The city of Patras is in
Greece." -> prompt "The city of Patras is in", answer " Greece", three other countries as alternatives).
"""

from __future__ import annotations

import pytest

from interp import confidence as C
from interp.compare.confidence import SECTION, confidence_section
from interp.datasets import PromptSet

OPTIONS = {"rho_threshold": 0.0, "n_random": 3}  # the organism has no neuron above 0.5: select the top ones anyway


@pytest.fixture(scope="module")
def pair():
    import interp

    return interp.load_pair()


@pytest.fixture(scope="module")
def facts():
    from interp.datasets import load

    truth = load("organism/truth", "test")
    cities = [(t, m) for t, y, m in zip(truth.texts, truth.labels, truth.meta) if m["kind"] == "cities" and y == 1]
    countries = sorted({t.rsplit(" in ", 1)[1].rstrip(".") for t, _ in cities})
    texts, meta = [], []
    for i, (t, m) in enumerate(cities):
        head, country = t.rsplit(" in ", 1)
        country = country.rstrip(".")
        others = [c for c in countries if c != country and not c.startswith("the ")]  # one " the" first token
        alternatives = tuple(f" {others[(i + k) % len(others)]}" for k in range(3))
        texts.append(f"{head} in")
        meta.append({"subject": m["group"], "answer": f" {country}", "alternatives": alternatives,
                     "relation": "city_in_country", "group": m["group"]})
    return PromptSet("organism-facts/test", texts, meta=meta, source="organism/truth (true city statements)")


@pytest.fixture(scope="module")
def corpus():
    from interp.datasets import load

    return list(load("organism/languages", "train").texts[:16])


@pytest.fixture(scope="module")
def result(pair, facts, corpus):
    return confidence_section(pair, facts, corpus, corpus_source="organism/languages", **OPTIONS)


def test_fields_and_figures_match_independent_readings(pair, facts, result):
    (entry,) = result.per_layer
    assert result.layers == [pair.n_layers - 1] == [entry["layer"]]
    mc = {m: C.multiple_choice(model, facts) for m, model in pair}
    for m in ("base", "post"):
        assert entry[f"{m}_accuracy"] == pytest.approx(mc[m].correct.mean())
        assert entry[f"{m}_confidence"] == pytest.approx(mc[m].confidence.mean(), abs=1e-6)
        assert entry[f"{m}_ece"] == pytest.approx(C.expected_calibration_error(mc[m].confidence, mc[m].correct),
                                                   abs=1e-6)
        assert entry[f"{m}_ece_ci_low"] <= entry[f"{m}_ece"] <= entry[f"{m}_ece_ci_high"]
        assert entry[f"{m}_n_entropy_neurons"] == 5
    gap = mc["post"].entropy - mc["base"].entropy
    assert entry["entropy_gap"] == pytest.approx(gap.mean(), abs=1e-5)
    assert entry["entropy_gap_ci_low"] <= entry["entropy_gap"] <= entry["entropy_gap_ci_high"]
    for key in ("entropy_gap_ablated", "entropy_gap_random", "confidence_gap", "entropy_neuron_iou"):
        assert isinstance(entry[key], float)
    chosen = result.setup["entropy neuron indices"]
    for m, model in pair:
        assert chosen[m] == list(C.entropy_neurons(model, rho_threshold=0.0).selected)
    union = set(chosen["base"]) | set(chosen["post"])
    assert entry["entropy_neuron_iou"] == pytest.approx(len(set(chosen["base"]) & set(chosen["post"])) / len(union))
    assert set(result.tables) == {"calibration", "neurons", "effects", "gap"}
    assert [r[1] for r in result.tables["neurons"]["rows"] if r[0] == "base"] == chosen["base"]
    summary = result.readings["summary"]
    assert "Entropy gap post − base" in summary and "Du et al. 2025" in summary
    assert any(v in summary for v in ("does not close", "narrows", "closes the entropy gap"))
    kinds = [p.get("kind") for p in result.plots]
    assert kinds == ["xy", "xy"]


def test_figures_render_and_the_report_opens_in_a_browser(result, tmp_path):
    from interp.report import Comparison, figures, write_report

    figs = figures(result)
    assert len(figs) == 2 + 2 + 2  # reliability, neuron map, effects per model, gap per measure
    reliability = figs[0][2]
    assert [t.type for t in reliability.data] == ["scatter"] * 3
    assert reliability.data[0].error_y.array is not None  # per-bin Wilson intervals
    for _, _, fig in figs:
        assert "plotly" in fig.to_html(full_html=False, include_plotlyjs=False)
    out = write_report(Comparison({"base": {"name": "organism base"}, "post": {"name": "organism post"}},
                                  {"confidence": result}), tmp_path / "report")
    _render_in_chromium(out / "report.html", len(figs), tmp_path)


def _render_in_chromium(page, n_figures, tmp_path):
    import re

    from tests.test_report_browser import CHROMIUM, _open

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it with apt)")
    assert page.read_text().count('class="plotly-graph-div"') == n_figures
    dom, console, requested = _open(page, tmp_path)
    rendered = re.findall(r'<div id="([^"]+)" class="plotly-graph-div js-plotly-plot"', dom)
    assert len(rendered) == n_figures
    assert console == [] and requested == set()


def test_rerun_is_identical(pair, facts, corpus, result):
    again = confidence_section(pair, facts, corpus, corpus_source="organism/languages", **OPTIONS)
    assert again == result


def test_without_entropy_neurons_the_gap_question_is_undefined(pair, facts, corpus):
    # the organism's last layer has no neuron with half its output weight in the null space
    res = confidence_section(pair, facts, corpus, corpus_source="organism/languages", n_random=2)
    (entry,) = res.per_layer
    assert entry["base_n_entropy_neurons"] == entry["post_n_entropy_neurons"] == 0
    assert entry["entropy_gap_ablated"] is None and entry["entropy_neuron_iou"] is None
    assert "is undefined: neither model has an entropy neuron" in res.readings["summary"]
    assert "effects" not in res.tables and res.tables["neurons"]["rows"] == []


def test_section_protocol_options_and_default_source(pair):
    import interp.compare as ic
    from interp.compare import SectionContext
    from interp.datasets import available

    ic.register(SECTION, replace=True)
    assert ic.get_section("confidence") is SECTION
    opts = SECTION.options()
    assert opts["n_bins"] == 10 and opts["corpus"] == "languages" and opts["data"] is None
    with pytest.raises(ValueError, match="option 'n_bins' of section 'confidence' must be >= 1; got 0"):
        SECTION.options({"n_bins": 0})
    with pytest.raises(ValueError, match="corpus must name a built-in set"):
        SECTION.options({"corpus": "organism/languages"})
    ctx = SectionContext(pair, is_organism=True, progress=False)
    if "organism/facts" in available():
        res = SECTION.run(ctx, **{**opts, "max_prompts": 12, "n_random": 1})
        assert res.concept == "confidence" and len(res.per_layer) == 1
    else:
        with pytest.raises(ValueError, match="the built-in fact set 'organism/facts' is not available"):
            SECTION.run(ctx, **opts)


def test_max_prompts_draws_a_seeded_subset(pair, facts, corpus):
    res = confidence_section(pair, facts, corpus, max_prompts=10, n_neurons=1, rho_threshold=0.0, n_random=1)
    assert res.setup["facts"].endswith(": 10 prompts of the test split")
    with pytest.raises(ValueError, match="1 fact prompt"):
        confidence_section(pair, facts[[0]], corpus)


def test_xy_plots_take_shared_or_own_x_and_gaps(tmp_path):
    from interp.report import Comparison, ConceptResult, figures, write_report

    plot = {"kind": "xy", "title": "xy", "x": [0.1, 0.5, 0.9],
            "series": {"shared x": [0.2, None, 0.8],
                       "own x": {"x": [0.3, 0.6], "y": [0.25, 0.7], "low": [0.1, None], "high": [0.4, None],
                                 "text": ["a", "b"]}},
            "nulls": {"diagonal": {"x": [0, 1], "y": [0, 1]}, "flat": [0.5, 0.5, 0.5]}, "mode": "markers",
            "xaxis": "confidence", "yaxis": "accuracy", "xrange": [0, 1], "yrange": [0, 1]}
    c = ConceptResult("c", [0], [{"layer": 0}], plots=[plot])
    (_, _, fig), = figures(c)
    assert [t.name for t in fig.data] == ["shared x", "own x", "null: diagonal", "null: flat"]
    assert list(fig.data[0].x) == [0.1, 0.5, 0.9] and list(fig.data[0].y) == [0.2, None, 0.8]
    assert list(fig.data[1].error_y.array) == [pytest.approx(0.15), None]
    assert fig.data[0].mode == "markers" and fig.layout.xaxis.title.text == "confidence"
    out = write_report(Comparison({"base": {"name": "b"}, "post": {"name": "p"}}, {"c": c}), tmp_path / "r")
    assert Comparison.load(out) == Comparison({"base": {"name": "b"}, "post": {"name": "p"}}, {"c": c})
    _render_in_chromium(out / "report.html", 1, tmp_path)


def test_too_few_facts_give_no_interval(tmp_path):
    """A bootstrap over 2-4 facts is a range, not an interval: below MIN_FACTS (5) facts the intervals of both sections
    are undefined, and the summaries say so instead of printing one."""
    import json

    from interp.compare import compare

    cities = [("Lyon", "France"), ("Rome", "Italy"), ("Madrid", "Spain"), ("Osaka", "Japan"), ("Berlin", "Germany"),
              ("Lima", "Peru")]
    rows = [{"prompt": f"{lead} {city} is in", "subject": city, "answer": country, "group": city,
             "alternatives": [c for _, c in cities if c != country][:3]}
            for city, country in cities for lead in ("The city of", "Everyone knows that the city of")]
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = compare(concepts=["knowledge", "confidence"], out=None, progress=False,
                     options={"knowledge": {"data": str(path)}, "confidence": {"data": str(path)}})
    assert "[no interval: too few facts or texts]" in result.concepts["confidence"].readings["summary"]
    assert "undefined" in result.concepts["confidence"].readings["summary"]
    assert "[undefined, undefined]" in result.concepts["knowledge"].readings["summary"]
