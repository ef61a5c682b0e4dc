"""interp.compare: the truth section on the organism and on another pair, and the report files."""

import csv
import json

import pytest
from safetensors import safe_open

import interp
from interp.cli import main
from interp.compare import compare

REQUIRED = {"layer", "base_accuracy", "post_accuracy", "cosine_base_post", "transfer_base_to_post",
            "transfer_post_to_base"}


@pytest.fixture(scope="module")
def organism_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return compare(concepts=["truth"], out=out, progress=False), out


def test_report_files_exist_and_parse(organism_report):
    result, out = organism_report
    report = json.loads((out / "report.json").read_text())
    entries = report["concepts"]["truth"]["per_layer"]
    assert [e["layer"] for e in entries] == [0, 1, 2, 3]
    assert all(REQUIRED <= set(e) for e in entries)
    rows = list(csv.DictReader((out / "layers.csv").open()))
    assert {r["model"] for r in rows} == {"base", "post", "both"} and {r["concept"] for r in rows} == {"truth"}
    assert len(rows) == len(result.concepts["truth"].long_rows)
    with safe_open(out / "directions.safetensors", "pt") as f:
        keys = set(f.keys())
        assert "truth/base/mass_mean" in keys and f.get_tensor("truth/post/logistic").shape == (4, 128)
        assert json.loads(f.metadata()["truth/base/mass_mean"])["layers"] == [0, 1, 2, 3]
    page = (out / "report.html").read_text()
    assert page.count("Plotly.newPlot") >= 3 and "<script src=" not in page  # figures inlined, no network


def test_truth_section_measures_the_organism(organism_report):
    truth = organism_report[0].concepts["truth"]
    best = max(truth.per_layer, key=lambda e: min(e["base_accuracy"], e["post_accuracy"]))
    # both models carry a linearly readable truth signal that transfers between them
    assert min(best["base_accuracy"], best["post_accuracy"]) > 0.9
    assert best["cosine_base_post"] > 0.8 and best["transfer_base_to_post"] > 0.85
    assert truth.per_layer[0]["base_accuracy"] < best["base_accuracy"]
    # adding either model's truth direction makes false statements judged true, in both models
    for key in ("nie_base_to_base", "nie_base_to_post", "nie_post_to_base", "nie_post_to_post"):
        assert best[key] > 0.5, key
    m = truth.matrices["generalization_base"]
    assert m["rows"] == ["cities", "numbers"] and len(m["values"]) == 2


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
