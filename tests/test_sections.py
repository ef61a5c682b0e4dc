"""interp.compare as a package of sections: lazy imports, the registry, options checked and generated for the
CLI, and the report's figures pinned through changes of the orchestration."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp
from interp.cli import main
from interp.compare import Param, Section, compare, concepts, get_section, register
from interp.compare import _section
from interp.report import ConceptResult

PINS = Path(__file__).parent / "data" / "organism_report_pins.json"


def test_importing_compare_imports_no_section():
    code = ("import sys, interp.compare as c; c.concepts(); "
            "print(sorted(m for m in sys.modules if m.startswith('interp.compare.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['interp.compare._section']"


def _toy_run(ctx, *, strength: float, centre: bool) -> ConceptResult:
    """Per layer, ``strength`` times the norm of each model's mean resid_post over two prompts."""
    per_layer = []
    norms = {}
    for name, model in ctx.pair:
        acts = interp.collect(model, ["One two three.", "Four five six."], "resid_post", progress=False)["resid_post"]
        mean = acts.mean(0)  # [layer, d]
        if centre:
            mean = mean - mean.mean(-1, keepdim=True)
        norms[name] = (strength * mean.norm(dim=-1)).tolist()
    for L in range(ctx.pair.n_layers):
        per_layer.append({"layer": L, "base_norm": norms["base"][L], "post_norm": norms["post"][L]})
    plots = [{"title": "Toy norms by layer", "reading": "norm", "series": {"base_norm": "base", "post_norm": "post"}}]
    return ConceptResult("toy", list(range(ctx.pair.n_layers)), per_layer, readings={"summary": f"strength {strength}",
                                                                                   "norm": "norms"},
                         setup={"strength": strength, "centre": centre}, plots=plots)


@pytest.fixture
def toy(monkeypatch):
    """A section registered from this test file only (the registry is restored afterwards)."""
    monkeypatch.setattr(_section, "_REGISTERED", {})
    return register(Section("toy", _toy_run, help="a test section", params=(
        Param("strength", float, 1.0, "multiplier of the norms"),
        Param("centre", bool, True, "centre each mean before its norm"),
    )))


def test_a_section_registered_in_a_test_appears_in_the_cli_and_the_report(toy, tmp_path, capsys):
    assert "toy" in concepts() and get_section("toy") is toy
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    helptext = capsys.readouterr().out
    assert "toy section options" in helptext and "--toy-strength" in helptext and "--no-toy-centre" in helptext
    assert main(["compare", "--concepts", "toy", "--toy-strength", "2.5", "--no-toy-centre", "--out",
                 str(tmp_path / "r"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^toy \(\d+ s\): strength 2\.5$", printed, re.M)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    section = report["concepts"]["toy"]
    assert section["setup"] == {"strength": 2.5, "centre": False}
    # the figure is the section's own computation, with the option applied
    pair = interp.load_pair()
    acts = interp.collect(pair.post, ["One two three.", "Four five six."], "resid_post", progress=False)["resid_post"]
    want = (2.5 * acts.mean(0).norm(dim=-1)).tolist()
    assert [e["post_norm"] for e in section["per_layer"]] == pytest.approx(want, rel=1e-5)
    assert "Toy norms by layer" in (tmp_path / "r" / "report.html").read_text()


def test_section_options_are_checked_before_any_model_boots(toy):
    # a base model that does not exist: any of these errors coming after a boot would be a load error instead
    bad = dict(base="/nonexistent/base", post="/nonexistent/post", out=None)
    with pytest.raises(ValueError, match=r"section 'toy' takes no option 'strenght'; its options: strength, centre"):
        compare(concepts=["toy"], options={"toy": {"strenght": 2}}, **bad)
    with pytest.raises(ValueError, match=r"option 'strength' of section 'toy' takes a float, got '2'"):
        compare(concepts=["toy"], options={"toy": {"strength": "2"}}, **bad)
    with pytest.raises(ValueError, match=r"option 'centre' of section 'toy' takes a bool, got 1"):
        compare(concepts=["toy"], options={"toy": {"centre": 1}}, **bad)
    with pytest.raises(ValueError, match=r"option 'nie_span' of section 'truth' must be one of 'statement_end', "
                                         r"'from_period', 'last'; got 'period'"):
        compare(concepts=["truth"], options={"truth": {"nie_span": "period"}}, **bad)
    with pytest.raises(ValueError, match=r"options given for section\(s\) \['truth'\] that are not run; running: toy"):
        compare(concepts=["toy"], options={"truth": {"seed": 1}}, **bad)
    with pytest.raises(ValueError, match="each concept runs once"):
        compare(concepts=["toy", "toy"], **bad)
    with pytest.raises(ValueError, match="a section named 'truth' exists"):
        register(Section("truth", _toy_run))
    assert get_section("toy").options({"strength": 3}) == {"strength": 3.0, "centre": True}  # an int is a float


def test_every_seed_option_is_bounded_before_any_model_boots():
    """A negative or overlarge seed fails in numpy once a section runs; every built-in section refuses it first."""
    from interp.compare._section import MAX_SEED

    seeded = [name for name in concepts() if "seed" in {p.name for p in get_section(name).params}]
    assert len(seeded) >= 9
    for name in seeded:
        for bad in (-1, MAX_SEED + 1):
            with pytest.raises(ValueError, match=rf"option 'seed' of section '{name}' must be >= 0 and <= {MAX_SEED}"):
                get_section(name).options({"seed": bad})
        assert get_section(name).options({"seed": MAX_SEED})["seed"] == MAX_SEED


def test_cli_options_of_a_built_in_section_reach_it(tmp_path, capsys):
    assert main(["compare", "--concepts", "truth", "--truth-nie-shots", "2", "--truth-nie-normalization", "du",
                 "--out", str(tmp_path / "r"), "-q"]) == 0
    setup = json.loads((tmp_path / "r" / "report.json").read_text())["concepts"]["truth"]["setup"]
    assert "2 labelled training statements before each judged one" in setup["causal check"]
    assert "1 - PD(false)" in setup["causal check"]
    assert main(["compare", "--concepts", "truth", "--refusal-seed", "1", "--out", str(tmp_path / "s")]) == 2
    assert "options given for section(s) ['refusal'] that are not run" in capsys.readouterr().err


def _numbers(report: dict) -> dict[str, float | None]:
    """Every number a report's sections hold (per-layer entries, matrices, table cells, directions are
    elsewhere), by path; wall times left out."""
    out = {}

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                if k not in ("stage wall time (s)", "zmin", "zmax", "marks"):  # wall times and display settings
                    walk(v, f"{path}/{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")
        elif isinstance(x, bool) or x is None:
            out[path] = x
        elif isinstance(x, (int, float)):
            out[path] = None if isinstance(x, float) and math.isnan(x) else float(x)

    for name, concept in report["concepts"].items():  # the figures; plots and long_rows repeat them
        walk({k: v for k, v in concept.items() if k in ("layers", "per_layer", "matrices", "tables", "readings",
                                                        "setup")}, f"/{name}")
    return out


def test_report_figures_are_pinned(organism_report):
    """Every number of the bundled pair's full report equals the pinned one (tests/data/organism_report_pins.json,
    written with ``python -m tests.test_sections`` from a run before a change that must not move them)."""
    _, out = organism_report
    got = _numbers(json.loads((out / "report.json").read_text()))
    want = json.loads(PINS.read_text())
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))[:20]
    moved = [(k, want[k], got[k]) for k in want
             if not (want[k] == got[k] or (isinstance(want[k], float) and isinstance(got[k], float)
                                           and abs(want[k] - got[k]) <= 1e-3 + 1e-3 * abs(want[k])))]
    assert not moved, f"{len(moved)} of {len(want)} figures moved, e.g. {moved[:10]}"


if __name__ == "__main__":  # write the pins from a fresh full run of the bundled pair
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        compare(concepts=["truth", "refusal", "language", "snmf"], out=tmp, progress=False)
        PINS.write_text(json.dumps(_numbers(json.loads((Path(tmp) / "report.json").read_text())), indent=0) + "\n")
    print(f"wrote {PINS}")


def test_truth_layers_and_read_position_are_options(tmp_path):
    """``--truth-layers 1,3 --truth-position mean``: only those blocks, read as the mean over tokens; the
    accuracies are a mass-mean probe's on those activations (reference computed here)."""
    from interp.compare.truth import _truth_data
    from probes.stats import correct
    from probes.sweep import fit_layers

    result = compare(concepts=["truth"], options={"truth": {"layers": "1,3", "position": "mean"}}, out=None,
                     progress=False)
    truth = result.concepts["truth"]
    assert truth.layers == [1, 3] and truth.setup["read at"].startswith("mean (chosen")
    pair = interp.load_pair()
    train, test, _, _ = _truth_data(pair, is_organism=True)
    X = {s: interp.collect(pair.base, ps, "resid_post", positions="mean", layers=[1, 3], progress=False)["resid_post"]
         for s, ps in (("train", train), ("test", test))}
    want = correct(fit_layers(X["train"], torch.tensor(train.labels), "mass_mean"), X["test"],
                   torch.tensor(test.labels)).mean(-1)
    assert [e["base_accuracy"] for e in truth.per_layer] == pytest.approx(want.tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="layers must be comma-separated block indices such as 0,2,4, or ranges "
                                         "such as 2-5 or -3--1; got 'one'"):
        compare(base="/nonexistent", post="/nonexistent", options={"truth": {"layers": "one"}}, out=None)


def test_snmf_layers_and_batch_size_and_language_batch_size_are_options(tmp_path):
    """``--snmf-layers 1,3``: only those blocks are fitted and matched, the described layer the middle fitted one,
    and a layer given outside them is refused before any model boots; batch sizes reach the passes (the language
    section's figures do not depend on them: its activations and scores per prompt are batch-independent)."""
    import interp.compare.snmf as snmf

    pair = interp.load_pair()
    got = snmf.snmf_section(pair, is_organism=True, layers=[1, 3], n_steer=0, batch_size=7, progress=False)
    assert got.layers == [1, 3] and [e["layer"] for e in got.per_layer] == [1, 3]
    assert got.setup["described layer"] == 3 and "of 2 layers" in got.readings["summary"]
    full = json.loads(PINS.read_text())
    for slot, layer in enumerate((1, 3)):  # the same fits as in the full run (pinned), one layer at a time
        for key in ("matched_cosine_mean", "base_relative_error", "post_relative_error"):
            assert got.per_layer[slot][key] == pytest.approx(full[f"/snmf/per_layer[{layer}]/{key}"], abs=1e-3)
    with pytest.raises(ValueError, match=r"the described layer 2 is not among the fitted layers \[1, 3\]"):
        snmf.snmf_section(pair, is_organism=True, layers=[1, 3], layer=2, progress=False)
    with pytest.raises(ValueError, match="layers must be comma-separated block indices"):
        compare(concepts=["snmf"], options={"snmf": {"layers": "1;3"}}, base="/nonexistent", post="/nonexistent")
    from interp.compare.language import language_section

    lang = language_section(pair, is_organism=True, batch_size=5, progress=False)
    for e in lang.per_layer:
        for key in ("base_accuracy", "post_accuracy", "cosine_base_post"):
            assert e[key] == pytest.approx(full[f"/language/per_layer[{e['layer']}]/{key}"], abs=1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        get_section("language").options({"batch_size": 0})


def test_snmf_steering_success_is_read_among_fluent_generations(organism_report, capsys):
    """A steered generation that loops (seq-rep-4 above 0.5, or a token three times in a row) is not fluent; a
    feature's share among fluent generations is undefined when none is, and the summary counts only features that
    beat the nulls there. The table, in the report and as `interp compare` prints it, leads with that share."""
    from interp.cli import print_concept

    snmf = json.loads((organism_report[1] / "report.json").read_text())["concepts"]["snmf"]
    columns, rows = snmf["tables"]["steering"]["columns"], snmf["tables"]["steering"]["rows"]
    # the share among fluent generations, its interval and how many are fluent lead; the share among all follows
    assert columns[1:6] == ["share steered, fluent generations only", "95% CI, fluent generations only",
                            "fluent generations", "share steered, all generations", "95% CI, all generations"]
    assert rows
    for row in rows:
        fluent, total = map(int, row[3].split(" of "))
        assert 0 <= fluent <= total
        if fluent == 0:  # every generation loops
            assert row[1] == "undefined: none fluent" and row[2] is None
        # the example shown is a fluent generation where there is one, and says which it is
        assert row[13].startswith("(fluent) " if fluent else "(not fluent) ")
    assert "generations stay fluent" in snmf["readings"]["summary"]
    print_concept("snmf", organism_report[0].concepts["snmf"], 1.0)
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.split()[:1] == ["feature"])
    at = 0
    for name in (*columns[1:6], "steered example (the first fluent one)"):  # in this order, from the left
        first = name.split()[0]  # a long name is wrapped over the header's lines, its first word on the first
        at = header.index(first, at) + len(first)


def test_snmf_steering_row_leads_with_the_share_among_fluent_generations():
    """Planted generations: two loop on the feature's token (" A A A A ..."), two are text with one of its tokens
    each. The row's lead share counts the text only; the share over all generations, loops included, follows."""
    from types import SimpleNamespace

    import numpy as np

    from interp.compare.snmf import STEERING_COLUMNS, _steer_row
    from steering.metrics import is_fluent

    from steering import Generation

    tok = interp.load_pair().tokenizer

    def generated(text):  # the ids counted are the generated ones
        return Generation("", text, tuple(tok(text, add_special_tokens=False)["input_ids"]))

    steered = [generated(t) for t in (" A A A A A A", " A A A A A A", " The city of A is old.", " It was a day in A.")]
    targets = {tok(" A", add_special_tokens=False)["input_ids"][0]}
    fluent = np.array([is_fluent(g.token_ids) for g in steered])
    assert fluent.tolist() == [False, False, True, True]
    run = SimpleNamespace(random_state=0, random_gens=[[generated(" The end.")] * 4],
                          random_fluency=[(np.ones(4, bool), None, None)])
    card = SimpleNamespace(index=7, usage=0.5, logit_lens=[(" A", 1.0)])
    cal = SimpleNamespace(scale=2.0, meta={"calibrated_kl": 0.5})
    row = dict(zip(STEERING_COLUMNS, _steer_row(run, card, cal, steered, [generated(" The end.")] * 4, targets,
                                                 (fluent, np.zeros(4), np.ones(4)))))
    n_text = [len(g.token_ids) for g in steered[2:]]
    assert list(row)[1] == "share steered, fluent generations only"
    assert row["share steered, fluent generations only"] == pytest.approx(2 / sum(n_text))
    assert row["fluent generations"] == "2 of 4"
    # the loops (six " A" each) count here, and only here
    assert row["share steered, all generations"] == pytest.approx((12 + 2) / (12 + sum(n_text)))
    assert row["steered example (the first fluent one)"] == "(fluent)  The city of A is old."


def test_refusal_and_language_headlines_say_whether_the_effect_survives_its_interval_and_null():
    """The report's contents line of refusal and language: the headline figure with its interval, the null's, and
    the verdict read from them (planted rows: an ablation whose interval overlaps the baseline's does not survive;
    a language whose interval's lower end is at the random direction's share is not counted)."""
    from types import SimpleNamespace

    from interp.compare import language, refusal

    def rows(ablated, ablated_ci, null):  # model, intervention, _, harmful, harmless, KL, ..., harmful CI at 8
        row = lambda rate, ci: ["post", "", None, rate, 0.0, 0.0, None, None, ci, [0, 0], 1.0]  # noqa: E731
        return {("post", "baseline"): row(0.9, [0.8, 0.95]),
                ("post", "ablate post direction"): row(ablated, ablated_ci),
                ("post", "ablate random direction (null)"): row(null, [null - 0.05, null])}

    run = SimpleNamespace(qualifies={"post": True}, sel={"post": SimpleNamespace(selected=SimpleNamespace(layer=3))})
    assert refusal._headline(run, rows(0.1, [0.05, 0.2], 0.9)) == (
        "Ablating the post model's refusal direction (layer 3) takes refusal of held-out harmful requests from 0.90 "
        "[0.80, 0.95] to 0.10 [0.05, 0.20]; a random direction of the same norm, 0.90: the drop survives its interval "
        "and the null.")
    assert refusal._headline(run, rows(0.7, [0.6, 0.85], 0.9)).endswith(
        "the drop does not survive its interval (the two intervals overlap).")
    assert refusal._headline(run, rows(0.1, [0.05, 0.2], 0.15)).endswith(
        "the drop does not survive the null (a random direction lowers refusal as much).")
    assert refusal._headline(SimpleNamespace(qualifies={"post": False}), {}).startswith("No refusal direction")

    c = {name: k for k, name in enumerate(language.STEERING_COLUMNS)}
    k = c["continuations fluent and in target after"]

    def lang_row(label, lang, share, ci):
        row = [None] * len(language.STEERING_COLUMNS)
        row[:3], row[k], row[k + 1] = ["post", label, lang], share, ci
        return row

    planted = [lang_row("post direction", "fr", 0.5, [0.2, 0.8]), lang_row("random direction (null)", "fr", 0.1, None),
               lang_row("post direction", "de", 0.3, [0.1, 0.6]), lang_row("random direction (null)", "de", 0.1, None)]
    assert language._headline(None, planted) == (
        "The post model's own English→target directions make continuations fluent and in the language: fr 0.50 "
        "[0.20, 0.80] (random 0.10), de 0.30 [0.10, 0.60] (random 0.10); above the random direction (interval's "
        "lower end) in 1 of 2 languages (fr).")
