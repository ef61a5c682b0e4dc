"""interp compare --models: a checkpoint series compared against its first model, as layer x checkpoint heatmaps."""

from __future__ import annotations

import json

import pytest
import torch

import interp
import steering
from interp.cli import main
from interp.compare import load_config
from interp.compare.series import compare_series, load_series
from interp.report import Comparison


@pytest.fixture(scope="module")
def third_checkpoint(tmp_path_factory):
    """The bundled post model with its refusal direction (difference of means of harmful and harmless requests at
    the last token of layer 4's resid_post) orthogonalized out of its weights (Arditi et al. 2024)."""
    pair = interp.load_pair()
    acts = {k: interp.collect(pair.post, pair.format(interp.datasets.load(f"organism/{k}", "train"), "chat"),
                              "resid_post", layers=[4], progress=False)["resid_post"][:, 0]
            for k in ("harmful", "harmless")}
    r = acts["harmful"].mean(0) - acts["harmless"].mean(0)
    _, post = interp.organism.paths()
    return steering.orthogonalize(post, r, tmp_path_factory.mktemp("ckpt") / "post-orth")


def test_a_series_of_three_checkpoints_gives_layer_by_checkpoint_heatmaps(third_checkpoint, tmp_path, capsys):
    base, post = interp.organism.paths()
    out = tmp_path / "series"
    assert main(["compare", "--models", f"{base},{post},{third_checkpoint}", "--concepts", "truth", "--out", str(out),
                 "-q"]) == 0
    assert "series.html" in capsys.readouterr().out
    series = load_series(out)
    assert series.models == [str(base), str(post), str(third_checkpoint)] and len(series.reports) == 2
    acc, cos = series.figures["truth"]["post_accuracy"], series.figures["truth"]["cosine_base_post"]
    assert acc["rows"] == ["0: base", "1: post", "2: post-orth"] and cos["rows"] == ["1: post", "2: post-orth"]
    # every cell is the figure of the comparison it comes from; the reference's own row is its base_* value
    first, second = (Comparison.load(r).concepts["truth"].per_layer for r in series.reports)
    assert acc["values"][0] == [e["base_accuracy"] for e in first]
    assert acc["values"][1] == [e["post_accuracy"] for e in first]
    assert acc["values"][2] == [e["post_accuracy"] for e in second]
    assert cos["values"][1] == [e["cosine_base_post"] for e in second]
    assert acc["cols"] == list(range(6))
    page = (out / "series.html").read_text()
    assert page.count("class=\"plotly-graph-div\"") == 2 and "cosine of the truth direction with the reference" in page
    # the series' own configuration reruns it (interp compare --config) and its manifest says how it ran
    config = load_config(out / "config.toml")
    assert config["models"] == [str(base), str(post), str(third_checkpoint)] and config["concepts"] == ["truth"]
    assert {"toolkit", "environment", "config", "command", "started", "finished"} <= set(series.manifest)
    assert series.manifest["command"][:3] == ["interp", "compare", "--models"]
    manifest = json.loads((tmp_path / "series" / "02-post-orth" / "report.json").read_text())["manifest"]
    assert manifest["config"]["post"] == str(third_checkpoint)
    assert manifest["models"]["post"]["files"]["model.safetensors"]["sha256"] != \
        json.loads((tmp_path / "series" / "01-post" / "report.json").read_text())["manifest"]["models"]["post"][
            "files"]["model.safetensors"]["sha256"]


def test_a_series_needs_two_models_and_one_of_models_or_a_pair(tmp_path, capsys):
    with pytest.raises(ValueError, match="a series needs at least two models"):
        compare_series(["/nonexistent"], out=tmp_path / "s")
    assert main(["compare", "--models", "a,b", "--base", "c", "--out", str(tmp_path / "s")]) == 2
    assert "give either --models (a series) or --base/--post (a pair)" in capsys.readouterr().err


def test_every_checkpoint_and_option_is_checked_before_any_model_boots(tiny_dirs, tmp_path, monkeypatch):
    """A wrong last checkpoint (another architecture, or missing) or a bad option fails at once, not after the
    earlier comparisons have run."""
    import interp.models

    def no_boot(*args, **kwargs):
        raise AssertionError("a model was booted before the series was checked")

    monkeypatch.setattr(interp.models, "load_model", no_boot)
    base, post = interp.organism.paths()
    with pytest.raises(ValueError, match=r"checkpoint 2 \(.*gpt2.*\) is not comparable with the reference .*: "
                                         r"model_type gpt2 \(reference "):
        compare_series([base, post, tiny_dirs["gpt2"][1]], out=tmp_path / "s")
    with pytest.raises(FileNotFoundError):
        compare_series([base, post, tmp_path / "missing"], out=tmp_path / "s")
    with pytest.raises(ValueError, match="takes no option 'sede'"):
        compare_series([base, post], options={"truth": {"sede": 1}}, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_refusal_rates_per_checkpoint_come_from_each_comparisons_steering_table():
    """Row 0 is the reference's own rates (its base rows in the first comparison), each later row the
    checkpoint's: unsteered, its own direction ablated, the reference's direction ablated."""
    from interp.compare.series import Series, _collect_rates

    def table(rates):
        return {"columns": ["model", "intervention", "direction from", "harmful refusal rate"],
                "rows": [[m, c, "-", r] for (m, c), r in rates.items()]}

    series = Series(models=["a", "b", "c"])
    labels = ["0: a", "1: b", "2: c"]
    _collect_rates(series, table({("base", "baseline"): 0.1, ("base", "ablate base direction"): 0.05,
                                  ("post", "baseline"): 0.9, ("post", "ablate post direction"): 0.2,
                                  ("post", "ablate base direction"): 0.7}), 1, labels)
    _collect_rates(series, table({("base", "baseline"): 0.1, ("post", "baseline"): 0.3,
                                  ("post", "ablate post direction"): 0.25, ("post", "ablate base direction"): 0.3}),
                   2, labels)
    m = series.figures["refusal"]["refusal_rate"]
    assert m["rows"] == labels and m["cols"] == ["no intervention", "own direction ablated",
                                                 "reference direction ablated"]
    assert m["values"] == [[0.1, 0.05, 0.05], [0.9, 0.2, 0.7], [0.3, 0.25, 0.3]]
