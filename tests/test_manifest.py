"""What reproduces a comparison: the manifest, the TOML configuration, reading a report back, re-rendering it and
comparing two runs."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch

import interp
from interp.cli import main
from interp.compare import compare, load_config
from interp.report import Comparison, diff


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "a"
    assert main(["compare", "--concepts", "truth", "--truth-nie-shots", "2", "--out", str(out), "-q"]) == 0
    return out


def test_the_manifest_lists_what_reproduces_the_run(truth_run):
    m = json.loads((truth_run / "report.json").read_text())["manifest"]
    assert set(m) >= {"toolkit", "environment", "models", "vocab_sha256", "prompt_template", "bos", "datasets",
                      "data_files", "config", "seeds", "command", "started", "finished"}
    assert m["toolkit"]["version"] == interp.__version__ and re.fullmatch(r"[0-9a-f]{40}", m["toolkit"]["git_commit"])
    deps = m["environment"]["dependencies"]
    assert deps["torch"].startswith("2.") and "transformer-lens" in deps and "scikit-learn" in deps
    # each model's weight files, hashed: the hashes are those of the files the pair booted from
    base, post = interp.organism.paths()
    for name, folder in (("base", base), ("post", post)):
        files = m["models"][name]["files"]
        assert files["model.safetensors"]["sha256"] == _sha(folder / "model.safetensors")
        assert files["config.json"]["sha256"] == _sha(folder / "config.json")
        assert m["models"][name]["path"] == str(folder)
    assert m["prompt_template"]["sha256"] == hashlib.sha256(interp.load_pair().chat_template.encode()).hexdigest()
    # the exact rows: the organism's truth splits, each row by the hash of its text
    sets = {(d["name"], d["split"]): d for d in m["datasets"]}
    for split in ("train", "test"):
        ps = interp.datasets.load("organism/truth", split)
        d = sets["organism/truth/" + split, split]
        assert d["section"] == "truth" and d["rows"] == len(ps)
        assert d["row_ids"] == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in ps.texts]
    # and the training split's parts: the rows the probes are fitted on and the validation rows the layer is
    # chosen on (stratified, seeded, whole groups: a statement's negation is never on the other side), by the
    # statements as loaded (the ids of the train split's rows)
    from interp.compare.truth import _validation_rows

    train = interp.datasets.load("organism/truth", "train")
    val = _validation_rows(torch.tensor(train.labels), seed=0, prompts=train).tolist()
    groups = {side: {m["group"] for m, v in zip(train.meta, val) if v == side} for side in (True, False)}
    assert groups[True] and groups[False] and not groups[True] & groups[False]
    ids = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in train.texts]
    parts = {d["split"]: d["row_ids"] for d in m["datasets"] if d["split"] in ("fit", "validation")}
    assert parts == {"fit": [i for i, v in zip(ids, val) if not v], "validation": [i for i, v in zip(ids, val) if v]}
    assert m["config"]["options"]["truth"]["nie_shots"] == 2 and m["seeds"] == {"truth": {"seed": 0}}
    assert m["command"][:2] == ["interp", "compare"] or m["command"][0] == "interp"
    assert m["started"] <= m["finished"]
    wall = json.loads((truth_run / "report.json").read_text())["wall_time_s"]
    assert set(wall) == {"load", "truth"} and all(v >= 0 for v in wall.values())


def test_a_changed_option_in_a_toml_configuration_reaches_the_manifest_and_reproduces_the_rest(truth_run, tmp_path):
    text = (truth_run / "config.toml").read_text()
    assert load_config(truth_run / "config.toml")["options"]["truth"]["nie_shots"] == 2
    (tmp_path / "run.toml").write_text(text.replace("nie_shots = 2", "nie_shots = 0"))
    assert main(["compare", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "b"), "-q"]) == 0
    m = json.loads((tmp_path / "b" / "report.json").read_text())["manifest"]
    assert m["config"]["options"]["truth"]["nie_shots"] == 0
    a, b = Comparison.load(truth_run), Comparison.load(tmp_path / "b")
    # the probes do not depend on the shots; the causal check does
    assert [e["base_accuracy"] for e in a.concepts["truth"].per_layer] == \
        [e["base_accuracy"] for e in b.concepts["truth"].per_layer]
    assert a.concepts["truth"].per_layer != b.concepts["truth"].per_layer


def test_bad_configurations_are_refused_before_any_model_boots(tmp_path):
    (tmp_path / "bad.toml").write_text('concepts = ["truth"]\nlayrs = [1, 2]\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layrs'\]; a configuration holds base, post"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("concepts = [truth\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(tmp_path / "broken.toml")
    with pytest.raises(FileNotFoundError, match="no configuration file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16; got 'fp8'"):
        compare(base="/nonexistent", post="/nonexistent", dtype="fp8", out=None)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; the report needs a folder"):
        compare(base="/nonexistent", post="/nonexistent", out=tmp_path / "file")


def test_a_configuration_names_only_sections_that_exist_and_run(tmp_path, capsys):
    """A misspelled [options.<section>] table, or one for a section the configuration does not run, is refused
    (not silently ignored); --concepts narrowing a configuration's run says which options it leaves unused; a
    TOML list of layers reads as the flags' comma list."""
    bad = dict(base="/nonexistent/base", post="/nonexistent/post")
    (tmp_path / "typo.toml").write_text('concepts = ["truth"]\n[options.truht]\nseed = 3\n')
    assert main(["compare", "--config", str(tmp_path / "typo.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "[options.truht] names no section; sections: truth, refusal" in capsys.readouterr().err
    (tmp_path / "other.toml").write_text('concepts = ["truth"]\n[options.refusal]\nseed = 3\n')
    assert main(["compare", "--config", str(tmp_path / "other.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "options given for section(s) ['refusal'] that are not run; running: truth" in capsys.readouterr().err
    (tmp_path / "both.toml").write_text(f'base = "{bad["base"]}"\npost = "{bad["post"]}"\n'
                                        'concepts = ["truth", "refusal"]\n[options.refusal]\nseed = 3\n')
    assert main(["compare", "--config", str(tmp_path / "both.toml"), "--concepts", "truth", "--out",
                 str(tmp_path / "r")]) == 2  # the model folder does not exist: past the configuration's checks
    err = capsys.readouterr().err
    assert "--concepts leaves out refusal; their options in" in err and "/nonexistent/base" in err
    (tmp_path / "list.toml").write_text('concepts = ["truth"]\n[options.truth]\nlayers = [1, 3]\n')
    assert load_config(tmp_path / "list.toml")["options"]["truth"]["layers"] == "1,3"


def _without_plot_ids(html: str) -> str:
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", html)


def test_interp_report_re_renders_the_same_page_from_the_json(organism_report, tmp_path, capsys):
    comparison, out = organism_report
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert _without_plot_ids((tmp_path / "again" / "report.html").read_text()) == \
        _without_plot_ids((out / "report.html").read_text())
    assert (tmp_path / "again" / "layers.csv").read_bytes() == (out / "layers.csv").read_bytes()
    assert Comparison.load(tmp_path / "again") == comparison
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no report.json" in capsys.readouterr().err
    # the file itself named: its folder is meant
    assert Comparison.load(out / "report.json", tensors=False) == Comparison.load(out, tensors=False)
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "series.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is a checkpoint series: each comparison's report is in its own"):
        Comparison.load(tmp_path / "series")
    # a folder holding only its report.json: re-rendered in place (the figures need no tensors), diffed against
    # the full folder (no differences), and refused where a full copy is asked for
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "report.json").write_bytes((out / "report.json").read_bytes())
    assert main(["report", str(bare)]) == 0
    assert _without_plot_ids((bare / "report.html").read_text()) == _without_plot_ids((out / "report.html").read_text())
    assert sorted(p.name for p in bare.iterdir()) == ["layers.csv", "report.html", "report.json"]
    assert main(["diff", str(out), str(bare)]) == 0
    capsys.readouterr()
    assert main(["report", str(bare), "--out", str(tmp_path / "copy")]) == 2
    assert "directions.safetensors is missing" in capsys.readouterr().err


def test_interp_diff_names_what_changed_between_two_runs(truth_run, tmp_path, capsys):
    assert main(["diff", str(truth_run), str(truth_run)]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["compare", "--concepts", "truth", "--truth-nie-shots", "2", "--truth-seed", "1", "--out",
                 str(tmp_path / "s1"), "-q"]) == 0
    capsys.readouterr()
    assert main(["diff", str(truth_run), str(tmp_path / "s1"), "--json", str(tmp_path / "d.json")]) == 1
    printed = capsys.readouterr().out
    assert "config options.truth.seed: 0 -> 1" in printed
    d = json.loads((tmp_path / "d.json").read_text())
    figures = {r["figure"] for r in d["figures"]}
    # the seed moves the nulls and intervals, not the probes fitted on the same rows
    assert "base_accuracy_null" in figures and "base_accuracy" not in figures
    worst = d["figures"][0]
    a = Comparison.load(truth_run).concepts["truth"].per_layer[worst["layer"]][worst["figure"]]
    b = Comparison.load(tmp_path / "s1").concepts["truth"].per_layer[worst["layer"]][worst["figure"]]
    assert (worst["a"], worst["b"]) == (a, b)
    assert worst["max_abs_diff"] == pytest.approx(abs(a - b)) or worst["max_abs_diff"] is None


def test_interp_diff_names_changed_table_cells_and_matrix_entries(organism_report, tmp_path, capsys):
    """A steering-table cell, one end of its interval and a candidate-matrix entry changed in a copy of a report:
    diff names each (row matched by its text cells), with both values; the unchanged report has none."""
    import copy

    _, out = organism_report
    a = Comparison.load(out)
    b = copy.deepcopy(a)
    rows = b.concepts["refusal"].tables["steering"]["rows"]
    i = next(k for k, r in enumerate(rows) if r[:2] == ["post", "ablate post direction"])
    rows[i][3] += 0.25
    rows[i][8] = [rows[i][8][0], rows[i][8][1] - 0.125]
    matrix = b.concepts["refusal"].matrices["candidates_post"]
    matrix["values"][0][2] = None if matrix["values"][0][2] is not None else 1.0
    assert diff(a, a)["cells"] == []
    cells = {c["figure"]: c for c in diff(a, b)["cells"]}
    assert set(cells) == {"steering: harmful refusal rate", "steering: harmful rate 95% CI",
                          "candidates_post (matrix)"}
    rate = cells["steering: harmful refusal rate"]
    assert rate["where"] == "post / ablate post direction / post" and rate["n_differing"] == 1
    assert rate["b"] - rate["a"] == pytest.approx(0.25) and rate["max_abs_diff"] == pytest.approx(0.25)
    assert cells["steering: harmful rate 95% CI"]["where"] == "post / ablate post direction / post [1]"
    assert cells["candidates_post (matrix)"]["where"] == f"{matrix['rows'][0]}, {matrix['cols'][2]}"
    b.concepts["refusal"].tables["steering"]["rows"] = rows
    from interp.report import write_report

    write_report(b, tmp_path / "b")
    assert main(["diff", str(out), str(tmp_path / "b")]) == 1
    printed = capsys.readouterr().out
    assert "steering: harmful refusal rate" in printed and "3 table columns or matrices differ" in printed


def test_an_old_or_foreign_report_json_is_refused_with_the_reason(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"pair": {}, "concepts": {}}))
    with pytest.raises(ValueError, match="written by another version of the toolkit; run the comparison again"):
        Comparison.load(tmp_path)


def test_a_report_folder_holds_one_report_and_its_configuration_runs_from_anywhere(truth_run, tmp_path):
    import shutil

    import steering

    out = tmp_path / "r"
    shutil.copytree(truth_run, out)
    stale = out / "vectors" / "truth-stale.safetensors"  # a vector an earlier report there listed
    steering.SteeringVector(torch.ones(1, 4), (0,)).save(stale)
    listed = json.loads((out / "report.json").read_text())
    listed["concepts"]["truth"]["vectors"] = [*listed["concepts"]["truth"]["vectors"], "stale"]
    (out / "report.json").write_text(json.dumps(listed))
    mine = out / "vectors" / "mine.safetensors"  # a file of the user's own
    steering.SteeringVector(torch.ones(1, 4), (0,)).save(mine)
    comparison = Comparison.load(truth_run)
    from interp.report import write_report

    write_report(comparison, out)
    assert not stale.exists() and mine.exists()  # what this report does not hold is not left beside it
    config = load_config(truth_run / "config.toml")
    assert "out" not in config  # a rerun never replaces the report it came from unasked
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("[]")
    with pytest.raises(ValueError, match="written by another version of the toolkit"):
        Comparison.load(tmp_path / "broken")
    (tmp_path / "broken" / "report.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Comparison.load(tmp_path / "broken")
