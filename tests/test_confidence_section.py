"""The ``confidence`` section on the bundled organism, and the report's plots over an x axis of their own.

The organism's planted facts are built here from its held-out true city statements ("The city of Patras is in
Greece." -> prompt "The city of Patras is in", answer " Greece", three other countries as alternatives).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interp import confidence as C
from interp.compare import confidence as S
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
    # an option beginning with " the" is refused (its first token is the article): leave those countries out
    cities = [(t, m) for t, m in cities if not t.rsplit(" in ", 1)[1].startswith("the ")]
    countries = sorted({t.rsplit(" in ", 1)[1].rstrip(".") for t, _ in cities})
    texts, meta = [], []
    for i, (t, m) in enumerate(cities):
        head, country = t.rsplit(" in ", 1)
        country = country.rstrip(".")
        others = [c for c in countries if c != country]
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
    for title, _, fig in figs[2:]:  # the effects and gap bars carry their tables' intervals
        for bar in fig.data:
            assert bar.type == "bar" and bar.error_y.array is not None, title
            assert all(x is not None and x >= 0 for x in (*bar.error_y.array, *bar.error_y.arrayminus)), title
    gap = result.tables["gap"]
    row = next(r for r in gap["rows"] if r[1] == "clean")
    low, high = (gap["columns"].index(gap[k]) for k in ("low", "high"))
    clean_bar = next(f for t, _, f in figs if t.endswith(f"(measure: {row[0]})")).data[0]
    assert clean_bar.error_y.array[0] == pytest.approx(row[high] - row[2])
    assert clean_bar.error_y.arrayminus[0] == pytest.approx(row[2] - row[low])
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
    # why, in the model's own figures: the largest rho against a random direction's, the norm, the spectrum
    for m, model in pair:
        en = C.entropy_neurons(model)
        sv = en.null_space.singular_values
        assert (f"{m} has none: no neuron of layer {en.layer} has rho >= 0.5; the largest is {en.rho.max():.3f} "
                f"(neuron {int(en.rho.argmax())}), where a random direction has {en.null_space.random_rho:.3f} (k = 1 "
                f"of {len(sv)} dimensions)") in res.readings["summary"]
        assert f"smallest singular value is {float(sv[-1] / sv.median()):.2f}× its median" in res.readings["summary"]
    assert "largest" in res.readings["neurons"] and "No entropy neuron" in res.readings["effects"]


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
    help_ = {p.name: p.help for p in SECTION.params}["data"]
    assert "prompt" in help_ and "subject (written exactly once in the prompt)" in help_ and "answer" in help_
    assert "optional: alternatives" in help_ and "Every row is read" in help_
    if "organism/facts" in available():
        from interp.datasets import load

        every = load("organism/facts", "all")  # nothing is selected on the facts: train and test are read
        assert S.fact_prompts(ctx, None).texts == every.texts
        res = SECTION.run(ctx, **{**opts, "max_prompts": 12, "n_random": 1})
        assert res.concept == "confidence" and len(res.per_layer) == 1
        assert f"12 prompts drawn with the seed from {len(every)}, every split read" in res.setup["facts"]
    else:
        with pytest.raises(ValueError, match="the built-in fact set 'organism/facts' is not available"):
            SECTION.run(ctx, **opts)


def test_max_prompts_draws_a_seeded_subset(pair, facts, corpus):
    res = confidence_section(pair, facts, corpus, max_prompts=10, n_neurons=1, rho_threshold=0.0, n_random=1)
    assert f": 10 prompts drawn with the seed from {len(facts)}, every split read" in res.setup["facts"]
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


def _fact_rows(cities, leads=("The city of", "Everyone knows that the city of")):
    return [{"prompt": f"{lead} {city} is in", "subject": city, "answer": country, "group": city, **extra}
            for city, country, extra in cities for lead in leads]


def test_too_few_facts_give_no_interval(tmp_path):
    """A bootstrap over 2-4 facts is a range, not an interval: below MIN_FACTS (5) facts the intervals of both sections
    are undefined, and the summaries say so instead of printing one. The confidence file's rows give 3, 2 and 1
    alternatives (a relation with few distinct answers), read after the knowledge section has run: the multiple
    choice renormalises each row over its own options, and every row of the file is read."""
    from interp.compare import compare

    cities = [("Lyon", "France", {"alternatives": ["Italy", "Spain", "Japan"]}),
              ("Rome", "Italy", {"alternatives": ["France", "Spain"]}),
              ("Madrid", "Spain", {"alternatives": ["Japan"]}),
              ("Osaka", "Japan", {})]  # no alternatives: drawn from the relation's other answers
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _fact_rows(cities)))
    result = compare(concepts=["knowledge", "confidence"], out=None, progress=False,
                     options={"knowledge": {"data": str(path)}, "confidence": {"data": str(path)}})
    conf = result.concepts["confidence"]
    assert "[no interval: fewer than 5 facts]" in conf.readings["summary"]
    assert "too few facts or texts" not in conf.readings["summary"]
    assert "undefined" in conf.readings["summary"]
    assert "8 prompts, 2 to 4 options: the chance level 1/options differs per prompt" in conf.readings["summary"]
    assert conf.setup["facts"].startswith("few.jsonl") and "all 8 prompts, every split read" in conf.setup["facts"]
    assert conf.per_layer[0]["base_chance"] == pytest.approx(np.mean([1 / 4, 1 / 3, 1 / 2, 1 / 4] * 2))
    assert "undefined" in result.concepts["knowledge"].readings["summary"]  # (its wording is the knowledge section's)


def test_a_bad_facts_file_is_refused_before_boot_naming_its_row(tmp_path, pair):
    """What can be checked on the file is checked when the options are (before any model boots); first tokens need
    the tokenizer and are checked on every row as the section starts; both errors name the file's row and prompt."""
    from interp.compare import compare, plan

    cities = [("Lyon", "France", {"alternatives": ["Italy", "Spain"]}),
              ("Rome", "Italy", {"alternatives": ["France", "Spain", "France"]})]
    twice = tmp_path / "twice.jsonl"
    twice.write_text("".join(json.dumps(r) + "\n" for r in _fact_rows(cities, ("The city of",))))
    with pytest.raises(ValueError, match=r"twice.jsonl: row 1 \(prompt 'The city of Rome is in'\) gives ' France' "
                                         "more than once"):
        plan(["confidence"], options={"confidence": {"data": str(twice)}})
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(_fact_rows(cities[:1], ("The city of",))[0]) + "\n")
    with pytest.raises(ValueError, match="one.jsonl: 1 fact prompt"):
        plan(["confidence"], options={"confidence": {"data": str(one)}})
    # an option sharing the answer's first token is known only to a tokenizer: found at the start, on any row
    from interp.models import tokenizer_of

    tok = tokenizer_of(pair.base)
    first = tok(" France", add_special_tokens=False)["input_ids"][0]
    same = next(w for w in ("Frances", "Francia", "France.") if tok(f" {w}", add_special_tokens=False)
                ["input_ids"][0] == first)
    cities = [(c, k, {}) for c, k in (("Lyon", "France"), ("Rome", "Italy"), ("Madrid", "Spain"))]
    cities.append(("Nice", "France", {"alternatives": ["Italy", same]}))
    shared = tmp_path / "shared.jsonl"
    shared.write_text("".join(json.dumps(r) + "\n" for r in _fact_rows(cities, ("The city of",))))
    with pytest.raises(ValueError, match=r"shared.jsonl row 3 \(prompt 'The city of Nice is in'\): options .* share a "
                                         "first token"):
        compare(concepts=["confidence"], out=None, progress=False,
                options={"confidence": {"data": str(shared), "max_prompts": 2}})


@pytest.mark.parametrize("answer, alternatives, match", [
    ("the France", ["Italy", "Spain"], r"answer ' the France' begins with the article ' the'"),
    (", France", ["Italy", "Spain"], r"answer ' , France' begins with the token '.*', which holds no letter or digit"),
    ("France", ["Italy", "the Spain"], r"alternative ' the Spain' begins with the article ' the'"),
    ("日本", ["Italy", "Spain"], r"answer ' 日本' begins with the token '.*', which holds no letter or digit"),
])
def test_options_the_knowledge_section_refuses_are_refused_before_any_forward_pass(tmp_path, monkeypatch, answer,
                                                                                    alternatives, match):
    """--confidence-data: an answer or alternative whose first token is an article or holds no letter or digit
    (under the organism's tokenizer "日本" begins with a byte piece) is refused as the section starts, naming the
    file's row and its prompt, before any model runs a forward pass."""
    from interp.compare import compare

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran before the options were checked")

    monkeypatch.setattr(S, "mean_activations", no_pass)
    cities = [(c, k, {"alternatives": ["Japan", "Greece"]}) for c, k in (("Lyon", "France"), ("Rome", "Italy"),
                                                                        ("Madrid", "Spain"))]
    cities.append(("Nice", answer, {"alternatives": alternatives}))
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _fact_rows(cities, ("The city of",))))
    with pytest.raises(ValueError, match=r"bad.jsonl row 3 \(prompt 'The city of Nice is in'\): " + match):
        compare(concepts=["confidence"], out=None, progress=False,
                options={"confidence": {"data": str(path), "max_prompts": 2}})


def test_the_built_in_fact_sets_pass_the_first_token_check(pair):
    """organism/facts under the organism's tokenizer, and facts and organism/facts under Gemma's (where its
    tokenizer is cached): every option of every row has a first token of its own that is a word."""
    from glob import glob

    from interp.datasets import available, load
    from interp.models import tokenizer_of

    if "organism/facts" in available():
        C.answer_options(pair.base, load("organism/facts", "all"))
    cached = sorted(glob(str(__import__("pathlib").Path.home() / ".cache/interp/gguf/*")))
    if not cached:
        pytest.skip("no Gemma tokenizer cached under ~/.cache/interp/gguf")
    import transformers

    gemma = SimpleNamespace(interp_tokenizer=transformers.AutoTokenizer.from_pretrained(cached[0]))
    assert tokenizer_of(gemma) is gemma.interp_tokenizer
    for name in ("facts", "organism/facts"):
        if name in available():
            C.answer_options(gemma, load(name, "all"))


# ------------------------------------------------------------------------------ formulas against references


def _choices(rng, n, gap, ablated_gap, random_gaps):
    """MultipleChoice readings whose entropies give a post − base gap of ``gap`` clean, ``ablated_gap`` with entropy
    neurons ablated and ``random_gaps`` with random neurons (plus noise)."""
    def mc(h):
        return C.MultipleChoice(torch.zeros((n, 2), dtype=torch.long), np.tile([0.7, 0.3], (n, 1)), h)

    base = {"clean": rng.uniform(1, 2, n), "entropy neurons": rng.uniform(1, 2, n)}
    base |= {f"random {r}": rng.uniform(1, 2, n) for r in range(len(random_gaps))}
    shift = {"clean": gap, "entropy neurons": ablated_gap} | {f"random {r}": g for r, g in enumerate(random_gaps)}
    post = {k: v + shift[k] + rng.normal(0, 0.05, n) for k, v in base.items()}
    return {"base": {k: mc(v) for k, v in base.items()}, "post": {k: mc(v) for k, v in post.items()}}


def test_share_of_the_gap_closed_is_one_minus_ablated_over_clean():
    from probes.stats import cluster_bootstrap_ci

    rng = np.random.default_rng(0)
    n = 40
    choices = _choices(rng, n, 0.4, 0.1, [0.38, 0.42])
    groups = [f"fact {i // 2}" for i in range(n)]
    g = S._gap(choices, 2, 0, groups)["entropy"]
    diff = {k: choices["post"][k].entropy - choices["base"][k].entropy for k in choices["base"]}
    clean, abl = diff["clean"], diff["entropy neurons"]
    assert g["clean"] == pytest.approx(clean.mean()) and g["ablated"] == pytest.approx(abl.mean())
    assert g["closed"] == pytest.approx(1 - abl.mean() / clean.mean())  # about 0.75: three quarters closed
    assert 0.6 < g["closed"] < 0.9
    rand = np.array([diff[f"random {r}"].mean() for r in range(2)])
    assert g["random_closed"] == pytest.approx(np.mean(1 - rand / clean.mean()))
    assert g["random_closed_range"] == pytest.approx(sorted(1 - rand / clean.mean()))
    low, high = cluster_bootstrap_ci(lambda r: 1 - abl[r].mean() / clean[r].mean(), groups, seed=0)
    assert g["closed_ci"] == pytest.approx([low, high])
    assert S._verdict(g) == ("Ablating entropy neurons narrows the entropy gap, more than random neurons do, but does "
                             "not close it.")


@pytest.mark.parametrize("ablated, randoms, verdict", [
    (0.0, [0.4, 0.41], "Ablating entropy neurons closes the entropy gap."),
    (0.4, [0.3, 0.41], "does not close the entropy gap: the share closed is not above 0 over its interval"),
    (0.3, [0.1, 0.12], "does not close the entropy gap: its low end"),
])
def test_the_verdict_follows_the_figures(ablated, randoms, verdict):
    rng = np.random.default_rng(1)
    g = S._gap(_choices(rng, 40, 0.4, ablated, randoms), 2, 0, [f"f{i}" for i in range(40)])["entropy"]
    assert verdict in S._verdict(g)


def _effects(total, direct, n_texts=6, per_text=5, seed=0):
    rng = np.random.default_rng(seed)
    text = np.repeat(np.arange(n_texts), per_text)
    noise = lambda: rng.normal(0, 0.002, text.size)  # noqa: E731
    keys = ["neuron 3", "neuron 4", "all 2 entropy neurons", "2 random neurons (null)"]
    return C.AblationEffects(np.ones(text.size), text, {k: total + noise() for k in keys},
                             {k: direct + noise() for k in keys}, 5)


def test_the_effects_reading_is_written_from_the_figures():
    neurons = {m: SimpleNamespace(selected=(3, 4)) for m in ("base", "post")}
    # as on gemma-3-270m's base: total -0.034, direct -0.122: the direct effect is the larger
    text = S._effects_reading(neurons, {"base": _effects(-0.034, -0.122), "post": _effects(-0.3, -0.01)}, 0)
    # one figure per model, titled "(model: base)": each model's part of the caption is named the same way
    assert text.startswith("One figure per model")
    assert re.search(r"\(model: base\) 2 entropy neurons: total -0\.03\d* nats \[[^\]]+\], direct -0\.12\d* nats "
                     r"\[[^\]]+\]; the direct effect is the larger in size", text)
    assert "(model: post) 2 entropy neurons" in text and "the total effect is the larger in size" in text
    assert text.index("(model: base)") < text.index("the direct effect") < text.index("(model: post)")
    assert "Stolfo et al. 2024 report" in text and text.endswith("excludes 0, for post.")
    assert "much larger than its direct one" not in text.split("Stolfo et al.")[0]  # the paper's, not the result
    same = S._effects_reading(neurons, {"base": _effects(-0.05, -0.05)}, 0)
    assert "(holds 0)" in same and same.endswith("for neither model.")
    assert "post: no entropy neuron, so no figure" in same


def test_interval_messages_say_what_is_missing_and_shares_print_as_percentages():
    assert S._interval(None) == "[no interval: fewer than 5 facts]"
    assert S._interval(None, "texts") == "[no interval: fewer than 2 corpus texts]"
    assert S._pct(-0.001) == "0%" and S._pct(0.18) == "18%" and S._pct(-0.03) == "-3%"
    assert S._pct_interval([0.15, 0.212]) == "[15%, 21%]"
    assert S._pct_interval([-0.004, 0.2]) == "[0%, 20%]"


def test_table_cells_are_never_none_and_shares_match_their_intervals(result):
    for name, table in result.tables.items():
        for row in table["rows"]:
            assert None not in row, (name, row)
            assert len(row) == len(table["columns"]), name
        if "low" in table:  # bars: numeric interval columns
            low, high, y = (table["columns"].index(table[k]) for k in ("low", "high", "y"))
            for row in table["rows"]:
                assert isinstance(row[low], float) and row[low] <= row[y] <= row[high], (name, row)
    summary = result.readings["summary"]
    assert "-0%" not in summary and "−0%" not in summary
    for share, interval in re.findall(r"(-?\d+)% (?:of it closed )?\[([^\]]*)\]", summary):
        assert all(x.strip().endswith("%") for x in interval.split(",")), interval


# ------------------------------------------------------------------------------------- readings and report


def test_each_faceted_figure_has_a_caption_that_names_its_facet(result):
    """The effects bars are one figure per model and the gap bars one per measure, all under their table's one
    reading: the reading names every facet as its figure's title does, with that facet's own figures."""
    from interp.report import figures

    faceted = [(t, r) for t, r, _ in figures(result) if re.search(r"\((model|measure): [^)]+\)+$", t)]
    assert len(faceted) == 4
    for title, reading in faceted:
        facet = re.search(r"\((?:model|measure): .+\)$", title).group(0)  # "(model: base)", "(measure: confidence)"
        assert facet in reading, (title, reading)
    gap = result.tables["gap"]
    reading = result.readings["gap"]
    for row in (r for r in gap["rows"] if r[1] == "clean"):  # each measure's clean gap, in its own part
        part = reading.split(f"(measure: {row[0]})")[1].split("(measure:")[0]
        assert part.startswith(f" clean {row[2]:+.3f}"), (row[0], part)
    confidence = reading.split("(measure: confidence)")[1]
    ablated = next(r for r in gap["rows"] if r[0] == "confidence" and r[1] == "entropy neurons ablated")
    assert f"entropy neurons ablated {ablated[2]:+.3f}" in confidence
    assert f"({ablated[7]} of the gap closed" in confidence
    effects = result.readings["effects"]
    assert effects.index("(model: base)") < effects.index("(model: post)")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.)])\s+(?=[A-Z(])", text) if s]


def test_the_headline_gives_the_answer_in_one_short_sentence(result):
    from interp.report import _headline as contents_line

    (entry,) = result.per_layer
    headline = result.readings["headline"]
    assert contents_line(result) == headline and len(headline) < 300
    assert headline.endswith(".") and ". " not in headline  # one sentence
    assert f"ablating entropy neurons closes {S._pct(entry['entropy_gap_closed'])} [" in headline
    assert f"(random neurons {S._pct(entry['entropy_gap_closed_null'])}, range [" in headline
    # the verdict is the summary's
    word = {"closes the entropy gap.": "it closes the gap", "narrows": "it narrows the gap",
            "does not close": "it does not close the gap"}
    verdict = next(s for s in _sentences(result.readings["summary"]) if s.startswith("Ablating entropy neurons"))
    assert sum(k in verdict and v in headline for k, v in word.items()) == 1, (verdict, headline)
    # the summary: several sentences, none of them long
    sentences = _sentences(result.readings["summary"])
    assert len(sentences) >= 8 and max(map(len, sentences)) < 250, max(sentences, key=len)


@pytest.mark.parametrize("ablated, randoms, ends", [
    (0.0, [0.4, 0.41], ": it closes the gap."),
    (0.1, [0.38, 0.42], ": it narrows the gap more than random neurons do but does not close it."),
    (0.4, [0.3, 0.41], ": it does not close the gap (share not above 0 and not above random neurons' over its "
                       "interval)."),
    (0.3, [0.1, 0.12], ": it does not close the gap (share not above random neurons' over its interval)."),
])
def test_the_headline_follows_the_verdict(ablated, randoms, ends):
    rng = np.random.default_rng(1)
    gap = S._gap(_choices(rng, 40, 0.4, ablated, randoms), 2, 0, [f"f{i}" for i in range(40)])
    headline = S._headline(gap, 0.5)
    g = gap["entropy"]
    assert headline == (f"Entropy gap post − base {g['clean']:+.3f} nats {S._interval(g['clean_ci'])}; ablating "
                        f"entropy neurons closes {S._pct(g['closed'])} {S._pct_interval(g['closed_ci'])} of it "
                        f"(random neurons {S._pct(g['random_closed'])}, range "
                        f"{S._pct_interval(g['random_closed_range'])}){ends}")
    assert len(headline) < 300


def test_an_undefined_answer_says_why_in_the_headline(pair, facts, corpus):
    rng = np.random.default_rng(2)
    no_gap = S._gap(_choices(rng, 40, 0.0, 0.0, [0.0, 0.0]), 2, 0, [f"f{i}" for i in range(40)])
    assert S._headline(no_gap, 0.5).endswith("; whether ablating entropy neurons closes it is undefined: the gap's "
                                             "interval holds 0.")
    few = S._gap(_choices(rng, 8, 0.4, 0.1, [0.4]), 1, 0, [f"f{i % 4}" for i in range(8)])
    assert S._headline(few, 0.5).endswith("[no interval: fewer than 5 facts]; whether ablating entropy neurons closes "
                                          "it is undefined: fewer than 5 facts.")
    res = confidence_section(pair, facts, corpus, n_random=1, max_prompts=20)  # no neuron above rho 0.5
    assert res.readings["headline"].endswith("; whether ablating entropy neurons closes it is undefined: neither "
                                             "model has an entropy neuron (rho >= 0.5).")
    assert len(res.readings["headline"]) < 300


def test_shares_of_the_gap_in_the_table_are_the_summary_percentages(result):
    gap = result.tables["gap"]
    y, low, high = (gap["columns"].index(gap[k]) for k in ("y", "low", "high"))
    share = gap["columns"].index("share of the gap closed")
    for row in gap["rows"]:
        assert all(isinstance(row[i], float) for i in (y, low, high))  # what the bars plot stays numeric
        if row[1] != "clean":
            assert all(re.fullmatch(r"-?\d+%", row[i]) for i in range(share, share + 3)), row
    (entry,) = result.per_layer
    ablated = next(r for r in gap["rows"] if r[0] == "entropy (nats)" and r[1] == "entropy neurons ablated")
    assert ablated[share] == S._pct(entry["entropy_gap_closed"])
    assert f"{ablated[share]} of it closed [{ablated[share + 1]}, {ablated[share + 2]}]" in result.readings["summary"]


def test_the_setup_lists_the_kept_singular_values_and_names_the_gain_as_the_norm_has_it(pair, result):
    setup = result.setup["null space"]
    assert "Gemma" not in setup and "1 + w" not in setup and "here g = w, the norm's weight" in setup
    for m, model in pair:
        sv = C.entropy_neurons(model, rho_threshold=0.0).null_space.singular_values.flip(0).tolist()
        assert f"{m}: kept {sv[0]:.3g}; next {sv[1]:.3g} (median" in setup  # k = 1: the smallest kept
    values = torch.tensor([9.0, 8, 7, 6, 5, 4, 3, 2, 1])
    ns = SimpleNamespace(singular_values=values, k=6)
    assert S._spectrum_text(ns) == "kept 1, 2, 3, 4, 5, 6; next 7 (median 5)"
    assert S._spectrum_text(SimpleNamespace(singular_values=values, k=9)).startswith(
        "kept 1, 2, 3, 4, 5, 6, 7, 8, 9; none above")
    many = SimpleNamespace(singular_values=torch.arange(40, 0, -1.0), k=20)
    assert S._spectrum_text(many) == "kept 1, 2, 3, 4, 5, …, 16, 17, 18, 19, 20; next 21 (median 20)"


def test_the_gain_is_called_1_plus_w_only_for_a_gemma_type_norm():
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    w = torch.rand(8, generator=torch.Generator().manual_seed(0)) + 0.2
    texts = {}
    for name, module in (("gemma", Gemma2RMSNorm(8)), ("llama", LlamaRMSNorm(8)), ("layernorm", torch.nn.LayerNorm(8))):
        with torch.no_grad():
            module.weight.copy_(w)
        texts[name] = S._gain_text(SimpleNamespace(ln_final=module), C._norm_gain(module)[0])
    assert texts["gemma"].startswith("g = 1 + w: a Gemma-type RMSNorm")
    assert texts["llama"] == texts["layernorm"] == "g = w, the norm's weight"
    llama = SimpleNamespace(ln_final=LlamaRMSNorm(8))  # a gain that is neither its weight nor 1 + it
    assert S._gain_text(llama, 3 * torch.ones(8)) == "g read by running the norm"


def _calib(counts: dict[str, list[float]]) -> dict:
    """Calibration figures whose reliability tables hold these confidences (all correct)."""
    return {m: {"reliability": C.reliability(np.array(c), np.ones(len(c)))} for m, c in counts.items()}


def test_a_bin_holding_most_prompts_is_named_in_the_summary():
    spread = [0.35] * 11 + [0.95] * 89  # 89%: not flagged
    crowded = [0.35] * 10 + [0.95] * 90  # 90%
    assert S._crowded_bins(_calib({"base": spread, "post": spread})) is None
    assert S._crowded_bins(_calib({"base": crowded, "post": spread})) == (
        "Most prompts' confidences lie in one bin: base 90 of 100 (90%) in (0.9, 1]; the reliability diagram and the "
        "ECE of base rest almost entirely on that bin.")
    both = S._crowded_bins(_calib({"base": crowded, "post": [0.95] * 100}))
    assert both.startswith("Most prompts' confidences lie in one bin: base 90 of 100 (90%) in (0.9, 1], post 100 of "
                           "100 (100%) in (0.9, 1]; ") and "of both models" in both
    every = S._crowded_bins(_calib({"base": [0.95] * 100, "post": [0.95] * 100}))
    assert every.startswith("Every prompt's confidence lies in one bin, (0.9, 1], for both models")


def test_n_bins_is_bounded_before_any_model_boots():
    """--confidence-n-bins 100000 once booted the models and then ran out of memory: refused by the option itself."""
    from interp.compare import plan

    assert SECTION.options({"n_bins": C.MAX_BINS})["n_bins"] == 100
    with pytest.raises(ValueError, match=r"option 'n_bins' of section 'confidence' must be <= 100; got 100000: bins "
                                         "narrower than 1/100 hold a handful of prompts each"):
        plan(["confidence"], options={"confidence": {"n_bins": 100_000}})
    assert "at most 100" in {p.name: p.help for p in SECTION.params}["n_bins"]


def test_the_overlap_null_is_the_mean_iou_of_random_sets():
    from interp.compare.confidence import _random_iou

    rng = np.random.default_rng(0)
    draws = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in
             ((rng.choice(40, 5, replace=False), rng.choice(40, 3, replace=False)) for _ in range(20000))]
    assert _random_iou(5, 3, 40) == pytest.approx(np.mean(draws), abs=3e-3)
    assert _random_iou(4, 4, 4) == 1.0 and _random_iou(1, 1, 2048) == pytest.approx(1 / 2048)
