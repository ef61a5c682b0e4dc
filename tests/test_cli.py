from pathlib import Path

import pytest
import torch

import interp
from interp.cli import main


def test_collect_tiny_pair_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["collect", "--tiny", "qwen2", "--dataset", "refusal", "--format", "chat", "--site", "resid_pre",
                 "--site", "mlp_post", "--position", "-2", "--layers", "0,3", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "random-weight tiny qwen2 pair" in printed and "class-mean distance" in printed
    for name in ("base", "post"):
        acts = interp.Activations.load(out / name)
        assert acts.layers == (0, 3) and acts.sites == ("resid_pre", "mlp_post")
        assert acts.n_samples == len(interp.datasets.load("refusal", "test"))
        assert acts.texts[0].startswith("<|im_start|>user\n") and acts.manifest["extra"]["format"] == "chat"
        assert acts.manifest["position"] == "-2"


def test_collect_errors_are_reported(tmp_path, capsys):
    assert main(["collect", "--base", str(tmp_path / "nowhere"), "--post", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["collect", "--base", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "give both base and post" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collect", "--tiny", "llama", "--format", "yaml"])


def test_every_option_has_help_and_no_markup():
    """The help is plain text (no reST ``markup``), no option is left without a line saying what it does, and each
    option with a default says what it is."""
    import argparse

    from interp.cli import _parser

    missing, markup, no_default = [], [], []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, sp in action.choices.items():
                    walk(sp, f"{name} {sub}")
            elif action.option_strings and not action.help:
                missing.append(f"{name} {action.option_strings[-1]}")
            elif (action.option_strings and action.help != argparse.SUPPRESS and "default" not in action.help
                  and action.default not in (None, False, argparse.SUPPRESS)):
                no_default.append(f"{name} {action.option_strings[-1]}")
        if "``" in parser.format_help():
            markup.append(name)

    walk(_parser(section_options=True), "interp")
    assert missing == [] and markup == [] and no_default == []


def test_layer_lists_take_ranges():
    from interp.cli import _int_list, _join_negative_values
    from interp.compare._section import parse_layers

    assert _int_list("1-3") == [1, 2, 3] and _int_list("0,2-4,-1") == [0, 2, 3, 4, -1]
    assert parse_layers("0,2-4") == [0, 2, 3, 4]
    assert _int_list("-3--1") == [-3, -2, -1] and _int_list("0, -2 - -1") == [0, -2, -1]  # counted from the end
    assert _join_negative_values(["collect", "--layers", "-3--1"]) == ["collect", "--layers=-3--1"]
    with pytest.raises(ValueError, match=r"got '2--1' \(range '2--1' mixes a block index with one counted from the "
                                         r"end\)"):
        _int_list("2--1")
    with pytest.raises(ValueError, match=r"range '-1--3' runs backwards"):
        _int_list("-1--3")
    with pytest.raises(ValueError, match=r"--layers takes comma-separated block indices .* or ranges such as 2-5 or "
                                         r"-3--1; got '3-1' \(range '3-1' runs backwards\)"):
        _int_list("3-1")
    with pytest.raises(ValueError, match="layers must be comma-separated block indices such as 0,2,4, or ranges"):
        parse_layers("2-")
    with pytest.raises(ValueError, match=r"got '2--1' \(range '2--1' mixes a block index with one counted from"):
        parse_layers("2--1")  # a section's layers option gives the reason too
    assert parse_layers("-2--1") == [-2, -1]


def test_pair_prints_short_and_negative_layers_read_the_same_blocks(tmp_path):
    import interp
    import steering

    pair = interp.load_pair()
    text = repr(pair)
    assert len(text) < 400 and text.startswith("ModelPair(base=") and "6 layers" in text
    acts = interp.collect(pair.base, ["a b c", "d e"], progress=False)
    assert torch.equal(acts.layer("resid_post", -1), acts.layer("resid_post", 5))
    last = interp.collect(pair.base, ["a b c", "d e"], layers=[-1], progress=False)
    assert torch.equal(last.layer("resid_post", -1), acts.layer("resid_post", 5))
    with pytest.raises(ValueError, match=r"layer -7 \(block -1\) was not collected"):
        acts.layer("resid_post", -7)
    with pytest.raises(ValueError, match="write n_layers - 1 for the last block"):
        steering.SteeringVector(torch.ones(1, 128), (-1,))


def test_an_unknown_dataset_is_refused_before_any_model_boots(monkeypatch, capsys):
    import interp
    from interp.cli import main

    def no_boot(*args, **kwargs):
        raise AssertionError("a model was booted before the dataset was checked")

    monkeypatch.setattr(interp, "load_pair", no_boot)
    assert main(["collect", "--dataset", "nope", "--out", "/tmp/never"]) == 2
    assert "unknown built-in set 'nope'" in capsys.readouterr().err


def test_a_bad_out_is_refused_before_any_model_boots_or_trains(tmp_path, monkeypatch, capsys):
    """``--out`` naming a file fails at once: no model is booted (compare) or trained (organism train)."""
    import interp.organism.train as train

    def no_work(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(interp, "load_pair", no_work)
    monkeypatch.setattr("interp.compare.load_pair", no_work)
    monkeypatch.setattr(train, "_train", no_work)
    monkeypatch.setattr(train, "build_organism_tokenizer", no_work)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["compare", "--concepts", "knowledge", "--out", str(afile)]) == 2
    assert "is a file; the report needs a folder" in capsys.readouterr().err
    assert main(["organism", "train", "--out", str(afile)]) == 2
    assert "is a file: the organism needs a folder there" in capsys.readouterr().err
    # a folder under a file, and an empty path (it would write into the current folder)
    assert main(["compare", "--out", str(afile / "sub")]) == 2
    assert f"is under {afile}, which is a file; the report needs a folder" in capsys.readouterr().err
    assert main(["organism", "train", "--out", str(afile / "sub")]) == 2
    assert f"is under {afile}, which is a file: the organism needs" in capsys.readouterr().err
    for command in (["compare"], ["organism", "train"]):
        assert main([*command, "--out", ""]) == 2
        assert "--out '' is empty: name a folder" in capsys.readouterr().err
    if Path("/proc/self").is_dir():  # a folder access() calls writable where nothing can be created
        assert main(["compare", "--out", "/proc/nope"]) == 2
        assert "cannot be written: no folder can be created in /proc" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is under .*, which is a file; the report needs a folder"):
        interp.compare.compare(concepts=["truth"], out=afile / "sub")
    # organism train never writes over a folder that holds files (the bundled weights among them)
    full = tmp_path / "full"
    full.mkdir()
    (full / "base").mkdir()
    assert main(["organism", "train", "--out", str(full)]) == 2
    assert "already holds files, which training would overwrite" in capsys.readouterr().err
    # collect needs a folder; export a file whose folder can be written
    assert main(["collect", "--tiny", "llama", "--out", str(afile)]) == 2
    assert "is a file; the activations need a folder" in capsys.readouterr().err
    assert main(["export", "--vector", "v.safetensors", "--out", str(afile / "x.gguf")]) == 2
    assert f"its folder {afile} is a file" in capsys.readouterr().err
    assert main(["export", "--vector", "v.safetensors", "--out", str(tmp_path)]) == 2
    assert "is a folder; name the .gguf file to write" in capsys.readouterr().err


def test_model_dependent_options_are_refused_before_any_section_runs(monkeypatch, capsys):
    """An option the model cannot take (a block it lacks, a window past its layers, a width past d_model) is refused
    from the models' configs before the pair boots, the message naming the flag; a NaN float option too."""
    import interp.compare as compare_module

    def no_boot(*args, **kwargs):
        raise AssertionError("the pair booted before the options were checked")

    monkeypatch.setattr(compare_module, "load_pair", no_boot)
    with pytest.raises(ValueError, match="option 'window' of section 'knowledge': must be at most the model's 6 "
                                         "blocks; got 9"):
        interp.compare.compare(concepts=["truth", "knowledge"], out=None, progress=False,
                               options={"knowledge": {"window": 9}})
    with pytest.raises(ValueError, match=r"option 'null_dim' of section 'confidence': must be at most the models' "
                                         r"width d_model = 128; got 500"):
        interp.compare.compare(concepts=["truth", "confidence"], out=None, progress=False,
                               options={"confidence": {"null_dim": 500}})
    for flags, want in ((["--truth-layers", "1-7"], "--truth-layers: layer 6 is out of range for a model with 6 "
                                                     "layers (valid: 0..5, or -6..-1)"),
                        (["--refusal-candidate-layers", "9"], "--refusal-candidate-layers: layer 9 is out of range"),
                        (["--snmf-layer", "6"], "--snmf-layer: layer 6 is out of range"),
                        (["--divergence-table-layer", "-7"], "--divergence-table-layer: layer -7 is out of range"),
                        (["--truth-nie-window", "7"], "--truth-nie-window: must be at most the model's 6 blocks"),
                        (["--language-window-size", "9"], "--language-window-size: must be at most the model's 6 "
                                                          "blocks"),
                        (["--refusal-candidate-layers", "5"], "--refusal-prune-layers: every candidate layer [5] is "
                                                              "discarded by the layer filter at the default"),
                        (["--refusal-prune-layers", "0.5", "--refusal-candidate-layers", "3"],
                         "--refusal-prune-layers: every candidate layer [3] is discarded by the layer filter (l >= 3, "
                         "prune_layers=0.5)"),
                        (["--snmf-n-components", "257"], "--snmf-n-components: must be at most the model's 256 MLP "
                                                         "neurons (d_mlp)")):
        concept = flags[0].split("-")[2]
        assert main(["compare", "--concepts", concept, *flags, "--out", "x"]) == 2, flags
        assert want in capsys.readouterr().err, flags
    for option in ("--knowledge-noise", "--confidence-rho-threshold"):
        assert main(["compare", "--concepts", "knowledge,confidence", option, "nan", "--out", "x"]) == 2
        assert "must be a finite number; got nan" in capsys.readouterr().err


def test_export_writes_a_llama_cpp_control_vector(tmp_path, capsys):
    """interp export: resid_pre of block k becomes direction.<k-1> with the scale baked in; the architecture comes
    from --model-hint or the booted --model; a vector llama.cpp cannot express is refused with the reason."""
    from gguf import GGUFReader

    import steering
    from interp import organism

    v = steering.SteeringVector(torch.randn(2, 128), (2, 4), "resid_pre", 3.0, {"concept": "x"})
    src = v.save(tmp_path / "v.safetensors")
    assert main(["export", "--vector", str(src), "--to", "gguf"]) == 2
    assert "no architecture for controlvector.model_hint" in capsys.readouterr().err
    assert main(["export", "--vector", str(src), "--model-hint", "llama"]) == 0
    out = tmp_path / "v.gguf"
    printed = capsys.readouterr().out
    assert f"wrote {out}: direction.k for blocks [1, 3] (from resid_pre of blocks [2, 4]), scale 3 baked in" in printed
    assert f"--control-vector-scaled {out}:S" in printed
    reader = GGUFReader(str(out))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "llama"
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.3"] and tensors["direction.1"].tensor_type.name == "F32"
    assert torch.equal(torch.from_numpy(tensors["direction.3"].data.copy()), v.vectors[1] * 3.0)
    other = tmp_path / "o.gguf"
    assert main(["export", "--vector", str(src), "--model", str(organism.paths()[1]), "--out", str(other)]) == 0
    loaded = steering.load_vector(other)
    assert loaded.meta["model_hint"] == "llama" and loaded.layers == (1, 3) and loaded.site == "resid_post"
    capsys.readouterr()
    steering.SteeringVector(torch.randn(1, 256), (2,), "mlp_post").save(tmp_path / "m")
    assert main(["export", "--vector", str(tmp_path / "m.safetensors"), "--model-hint", "llama"]) == 2
    err = capsys.readouterr().err
    assert "mlp_post of block k is what llama.cpp adds" in err and "pass --model (the model's folder" in err
    assert main(["export", "--vector", str(tmp_path / "m.safetensors"), "--model", str(organism.paths()[1]),
                 "--out", str(tmp_path / "m.gguf")]) == 0  # converted to f @ W_out with the booted model
    assert "direction.k for blocks [2] (from mlp_post of blocks [2])" in capsys.readouterr().out
    steering.SteeringVector(torch.randn(1, 128), (0,), "resid_post").save(tmp_path / "zero")
    assert main(["export", "--vector", str(tmp_path / "zero.safetensors"), "--model-hint", "llama"]) == 2
    assert "resid_post of block 0 cannot be expressed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--vector", str(src), "--to", "onnx"])


def test_export_takes_layers_and_its_errors_name_flags(tmp_path, capsys):
    """A vector built at every layer (from_prompts' default, resid_pre) cannot be exported whole: block 0's output
    and the embeddings are out of llama.cpp's reach; the error names --layers with the range that can, and
    --layers exports it. Errors name the flags, not Python arguments."""
    import steering
    from steering.gguf import load_gguf

    every = steering.SteeringVector(torch.randn(6, 128), tuple(range(6)), "resid_pre", 2.0)
    src = every.save(tmp_path / "every.safetensors")
    assert main(["export", "--vector", str(src), "--model-hint", "llama"]) == 2
    err = capsys.readouterr().err
    assert "resid_pre of block 0 (the embeddings entering the first block) and resid_pre of block 1" in err
    assert "drop them with --layers 2-5" in err and "select" not in err
    assert main(["export", "--vector", str(src), "--model-hint", "llama", "--layers", "2-5"]) == 0
    assert "direction.k for blocks [1, 2, 3, 4] (from resid_pre of blocks [2, 3, 4, 5])" in capsys.readouterr().out
    assert load_gguf(tmp_path / "every.gguf").layers == (1, 2, 3, 4)
    assert main(["export", "--vector", str(src), "--model-hint", "llama", "--layers", "2,7"]) == 2
    assert "--layers 2,7: the vector has no row for block(s) [7]; its blocks are 0-5" in capsys.readouterr().err
    assert main(["export", "--vector", str(src), "--model-hint", "llama", "--layers", "-1"]) == 2
    assert "not negative ones" in capsys.readouterr().err
    assert main(["export", "--vector", str(src), "--model-hint", "llama", "--layers", "5-2"]) == 2
    assert "--layers takes comma-separated block indices" in capsys.readouterr().err
    assert main(["export", "--vector", str(src), "--layers", "2-5"]) == 2
    err = capsys.readouterr().err
    assert "pass --model (the model or its .gguf file) or --model-hint (llama.cpp's name" in err and "=" not in err
    assert main(["export", "--vector", str(src), "--layers", "2-5", "--model-hint", "lama"]) == 2
    err = capsys.readouterr().err
    assert "--model-hint 'lama' is not an architecture name of llama.cpp" in err and "nearest: llama" in err
    assert main(["export", "--vector", str(src), "--layers", "2-5", "--model-hint", "gemma3_text"]) == 2
    assert "write --model-hint gemma3" in capsys.readouterr().err


def test_export_records_the_model_and_steer_refuses_a_vector_made_for_another(tmp_path, capsys):
    """interp export --model records the model in the GGUF file; interp steer refuses a vector made for the post
    model when asked to steer the base model (same shapes, other weights)."""
    import steering
    from interp import organism
    from steering.vector import weights_sha256

    base_dir, post_dir = organism.paths()
    pair = interp.load_pair()
    v = steering.SteeringVector(torch.randn(2, 128), (2, 4), "resid_pre", 1.0)
    src = v.save(tmp_path / "v.safetensors", model=pair.post)
    assert main(["export", "--vector", str(src), "--model", str(post_dir)]) == 0
    capsys.readouterr()
    loaded = steering.load_vector(tmp_path / "v.gguf")
    assert loaded.meta["model_identity"]["weights_sha256"] == weights_sha256(pair.post)
    with pytest.raises(ValueError, match="was made for another model"):
        steering.load_vector(tmp_path / "v.gguf", model=pair.base)
    assert main(["export", "--vector", str(src), "--model", str(base_dir), "--out", str(tmp_path / "b.gguf")]) == 2
    assert "was made for another model" in capsys.readouterr().err and not (tmp_path / "b.gguf").exists()
    assert main(["steer", "--model", str(base_dir), "--vector", str(src), "--max-new-tokens", "2", "Hi"]) == 2
    err = capsys.readouterr().err
    assert f"--vector {src} was made for another model" in err and "weights sha256" in err
    assert f"steer it with --model {pair.post.interp_source['name']}" in err
    assert main(["steer", "--model", str(post_dir), "--vector", str(src), "--max-new-tokens", "2", "Hi"]) == 0


def test_warnings_print_as_one_line_and_main_restores_the_display(capsys):
    import warnings

    from interp import cli

    before = warnings.showwarning
    cli._show_warning(RuntimeWarning("fit_layers: zero"), RuntimeWarning, cli.__file__, 3)
    cli._show_warning(FutureWarning("x is deprecated"), FutureWarning, "/venv/site-packages/dep/mod.py", 12)
    assert capsys.readouterr().err.splitlines() == [
        "warning: fit_layers: zero", "warning (FutureWarning, dep/mod.py:12): x is deprecated"]
    assert cli.main(["report", "/nonexistent-report"]) == 2
    assert warnings.showwarning is before


def test_model_dependent_options_are_checked_after_the_boot_when_no_config_tells_the_shape(monkeypatch):
    """A pair whose shape cannot be read before it boots (a hub model not cached, a .gguf file) has its
    model-dependent options checked against the booted pair, before any section runs."""
    import interp.compare as compare_module
    import interp.compare.truth as truth

    def no_work(*args, **kwargs):
        raise AssertionError("a section ran before the options were checked")

    monkeypatch.setattr(compare_module, "read_shape", lambda *a, **k: None)
    monkeypatch.setattr(truth, "truth_section", no_work)
    with pytest.raises(ValueError, match="option 'layers' of section 'truth': layer 6 is out of range"):
        interp.compare.compare(concepts=["truth"], out=None, progress=False, options={"truth": {"layers": "6"}})


def test_an_out_folder_of_other_files_is_warned_about_and_one_the_report_would_overwrite_is_refused(tmp_path, caplog,
                                                                                                  capsys):
    """Files beside the report are warned about; a user's own file of a report file's name (a report.json that is
    not a report among them) is refused before anything boots, on the command line in under 2 s."""
    import json
    import time

    from interp.compare import plan

    (tmp_path / "notes.txt").write_text("mine")
    plan(["truth"], out=tmp_path)
    assert f"{tmp_path} holds other files and no report; the report's files (report.json" in caplog.text
    caplog.clear()
    plan(["truth"], out=tmp_path / "new")
    assert caplog.text == ""
    (tmp_path / "layers.csv").write_text("also mine")
    (tmp_path / "report.json").write_text(json.dumps({"my": "results"}))
    with pytest.raises(ValueError, match=f"--out '{tmp_path}' holds layers.csv, report.json but no report of interp "
                                         "compare; the report would overwrite them: choose another folder"):
        plan(["truth"], out=tmp_path)
    start = time.perf_counter()
    assert main(["compare", "--concepts", "truth", "--out", str(tmp_path)]) == 2
    assert time.perf_counter() - start < 2 and "holds layers.csv, report.json but no report" in capsys.readouterr().err
    assert (tmp_path / "layers.csv").read_text() == "also mine"
    # so is one whose vectors/ holds files of the user's (a vector of the report's could take one's name)
    other = tmp_path / "other"
    (other / "vectors").mkdir(parents=True)
    (other / "vectors" / "refusal-post.safetensors").write_text("precious")
    with pytest.raises(ValueError, match=r"holds vectors/ \(not empty\) but no report of interp compare"):
        plan(["refusal"], out=other)
    # a report of interp's own (any format version) is rewritten, with a warning
    (tmp_path / "report.json").write_text(json.dumps({"format": "interp-report/1", "concepts": {}}))
    plan(["truth"], out=tmp_path)
    assert f"{tmp_path} holds a report; this run rewrites it" in caplog.text


def test_a_sections_printed_table_shows_the_columns_it_names(capsys):
    from interp.cli import print_concept
    from interp.report import ConceptResult

    table = {"title": "Steering", "columns": ["feature", "share steered, fluent generations only", "95% CI", "hidden",
                                              "example"],
             "print": ["feature", "share steered, fluent generations only", "95% CI", "example"],
             "rows": [[0, 0.5, [0.1, 0.9], "x", "city A A A A A A A A A A A A A A A A A A"],
                      [12, None, None, "y", "a\nb"]]}
    print_concept("s", ConceptResult("s", [0], [{"layer": 0}], tables={"t": table, "u": {**table, "print": None}}),
                  1.0)
    assert capsys.readouterr().out.splitlines()[1:] == [  # columns apart, a long name wrapped over header lines
        "  Steering",
        "  feature    share steered,          95% CI  example",
        "                     fluent",
        "           generations only",
        "        0             0.500  [0.100, 0.900]  city A A A A A A A A A A A …",
        "       12                 -               -  a\\nb"]


def test_a_parse_error_shows_the_error_not_pages_of_usage(capsys):
    """interp compare has a hundred options: a bad choice prints one usage line pointing to --help, then the error;
    a short usage (interp's own) is printed as argparse does."""
    with pytest.raises(SystemExit) as stop:
        main(["compare", "--truth-site", "nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["usage: interp compare [options] (interp compare --help lists them)",
                                err.splitlines()[1]] and "--truth-site: invalid choice: 'nope'" in err
    with pytest.raises(SystemExit):
        main(["bogus"])
    assert capsys.readouterr().err.startswith("usage: interp [-h] {collect,compare,")
