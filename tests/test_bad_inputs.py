"""Bad input to interp's public entry points: a clear error naming the cause and the fix, raised before any model
boots or any file is written, or a warning where the input is legitimate but suspect."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch

import interp
from interp import organism
from interp.cli import _int_list, _join_negative_values, _parser, main
from interp.datasets import PromptSet

TEXTS = ["The city of Paris is in France.", "The city of Rome is in Italy.", "Hello there"]


@pytest.fixture(scope="module")
def dirs():
    return organism.paths()


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair(device="cpu")


@pytest.fixture(scope="module")
def model(pair):
    return pair.post


@pytest.fixture
def no_boot(monkeypatch):
    """Any model boot fails the test: the error must come before it."""
    from transformer_lens.model_bridge import TransformerBridge

    def boom(*args, **kwargs):
        raise AssertionError("a model was booted before the bad input was refused")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", boom)


# ------------------------------------------------------------------------------------------- models


def test_format_refuses_one_string(pair):  # 8
    with pytest.raises(TypeError, match="prompts must be a list of texts or a PromptSet, not a single string"):
        pair.format("hello", "chat")
    with pytest.raises(TypeError, match="not a single string"):
        pair.format("hello world")
    assert pair.format(["hello"], "chat").meta[0]["raw_text"] == "hello"


def test_load_pair_of_one_folder_warns(dirs):  # 10
    import os

    _, post = dirs
    with pytest.warns(UserWarning, match=r"base and post are the same model folder .*pass the post-trained model"):
        interp.load_pair(post, os.path.relpath(post), device="cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="base and post are the same")
        interp.load_pair(*dirs, device="cpu")  # the organism: two folders, no warning


def test_empty_model_source(dirs, no_boot):  # 41
    with pytest.raises(ValueError, match="model source is empty"):
        interp.load_model("")
    with pytest.raises(ValueError, match="model source is empty"):
        interp.models.resolve_model("   ")
    with pytest.raises(ValueError, match="post model source is empty"):
        interp.load_pair(dirs[0], "")  # refused before the base model boots
    assert main(["collect", "--base", "", "--post", "", "--out", "unused"]) == 2


def test_dtype_names_and_non_floating_dtypes(dirs, no_boot):  # 40
    with pytest.raises(ValueError, match="'fp33' must be a floating dtype"):
        interp.load_model(dirs[1], dtype="fp33")
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        interp.load_pair(*dirs, dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a torch dtype"):
        interp.load_model(dirs[1], dtype=32)


def test_dtype_name_boots(dirs):  # 40
    m = interp.load_model(dirs[1], dtype="float32", device="cpu")
    assert next(m.parameters()).dtype == torch.float32
    assert interp.models.float_dtype("bfloat16") is torch.bfloat16


# ------------------------------------------------------------------------------------------- collect


def test_empty_prompt_set(model):  # 25
    empty = PromptSet("truth", TEXTS)[[False, False, False]]
    with pytest.raises(ValueError, match="prompts is empty: nothing to collect"):
        interp.collect(model, empty, progress=False)
    with pytest.raises(ValueError, match="prompts is empty: nothing to collect"):
        interp.collect_tokens(model, empty, progress=False)


def test_collect_dtype(model):  # 38, 39
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        interp.collect(model, TEXTS, dtype=torch.int64, progress=False)
    with pytest.raises(ValueError, match="'int8' must be a floating dtype"):
        interp.collect(model, TEXTS, dtype="int8", progress=False)
    with pytest.raises(TypeError, match="dtype must be a torch dtype"):
        interp.collect(model, TEXTS, dtype=None, progress=False)
    named = interp.collect(model, TEXTS, dtype="float32", progress=False)["resid_post"]
    torch.testing.assert_close(named, interp.collect(model, TEXTS, progress=False)["resid_post"], rtol=0, atol=0)
    assert interp.collect(model, TEXTS, dtype="bfloat16", progress=False)["resid_post"].dtype == torch.bfloat16


def test_extra_is_checked_before_anything_is_written(model, tmp_path):  # 42
    out = tmp_path / "store"
    with pytest.raises(ValueError, match="extra must be JSON-serialisable"):
        interp.collect(model, TEXTS, out=out, extra={"a": {1}}, progress=False)
    assert not out.exists()
    with pytest.raises(TypeError, match="extra must be a dict"):
        interp.collect(model, TEXTS, extra=["format"], progress=False)
    assert interp.collect(model, TEXTS, out=out, extra={"a": [1]}, progress=False).manifest["extra"] == {"a": [1]}


def test_memory_budget_must_be_finite(model):  # 43
    for budget in (math.inf, math.nan):
        with pytest.raises(ValueError, match="must be a finite number of bytes.*memory_budget=None"):
            interp.collect(model, TEXTS, memory_budget=budget, progress=False)
    with pytest.raises(ValueError, match="finite"):
        interp.collection.parse_bytes(float("inf"))


def test_out_naming_a_file(model, tmp_path):  # 44
    f = tmp_path / "afile.txt"
    f.write_text("mine")
    with pytest.raises(ValueError, match="afile.txt is a file; collect streams to a store folder"):
        interp.collect(model, TEXTS, out=f, progress=False)
    assert f.read_text() == "mine"


def test_match_positions(model):  # 45
    with pytest.raises(ValueError, match="position pattern is empty"):
        interp.collect(model, TEXTS, positions="match:", progress=False)
    with pytest.raises(ValueError, match="position pattern is empty"):
        interp.positions.Match("")
    with pytest.raises(ValueError, match=r"matches only the empty string at the end of prompt 0.*use 'last'"):
        interp.collect(model, TEXTS, positions="match:$", progress=False)
    # a zero-width match a token holds still reads that token
    got = interp.collect(model, TEXTS[:2], positions="match:(?=France|Italy)", progress=False)
    assert got.token_index.tolist() == interp.collect(model, TEXTS[:2], positions="match:F|I",
                                                      progress=False).token_index.tolist()


# ------------------------------------------------------------------------------------------- layers


def test_hook_name_layer():  # 47
    with pytest.raises(TypeError, match="layer must be an integer block index, got 1.7"):
        interp.hook_name("resid_post", 1.7)
    with pytest.raises(ValueError, match="layer must be a block index >= 0, got -1"):
        interp.hook_name("resid_post", -1)
    assert interp.hook_name("resid_post", np.int64(2)) == interp.hook_name("resid_post", torch.tensor(2)) \
        == "blocks.2.hook_resid_post"


def test_check_layers_scalars(model):  # 47, 48
    from interp.sites import check_layers

    assert check_layers(torch.tensor(3), 4) == check_layers(np.int64(-1), 4) == check_layers(np.array(3), 4) == [3]
    with pytest.raises(TypeError, match="layers must be None, an int or a sequence of ints, got 1.7"):
        check_layers(1.7, 4)
    with pytest.raises(TypeError, match="layers must be integers, got 1.7"):
        check_layers([1.7], 4)
    got = interp.collect(model, TEXTS, layers=torch.tensor(1), progress=False)
    assert got.layers == (1,)


# ------------------------------------------------------------------------------------------- splits


def test_split_keeps_identical_texts_together():  # 49
    texts = ["Paris is in France.", "Rome is in Italy.", "a b", "c d", "e f", "g h", "Paris is in France.",
             "Rome is in Italy."]
    ps = PromptSet("dup", texts, labels=[1, 1, 0, 0, 1, 0, 1, 1])
    for seed in range(5):
        train, test = ps.split(0.5, random_state=seed)
        assert set(train.texts).isdisjoint(test.texts)
    unlabelled = PromptSet("dup", texts)
    train, test = unlabelled.split(0.5)
    assert set(train.texts).isdisjoint(test.texts) and len(train) + len(test) == len(texts)
    with pytest.warns(UserWarning, match=r"2 row\(s\) repeat an earlier text.*meta\['group'\]"):
        unlabelled.split(0.5, group=None)
    with pytest.raises(ValueError, match="a split of repeated texts .* takes test_size as a fraction"):
        unlabelled.split(2)
    mixed = PromptSet("mixed", texts, labels=[1, 1, 0, 0, 1, 0, 0, 1], label_names=["false", "true"])
    with pytest.warns(UserWarning, match=r"1 text\(s\) carry more than one label .*'Paris is in France.'"):
        mixed.split(0.5)


def test_split_without_repeated_texts_is_unchanged():  # 49
    from sklearn.model_selection import train_test_split

    ps = PromptSet.from_classes("s", {"no": [f"n{i}" for i in range(30)], "yes": [f"y{i}" for i in range(10)]})
    train, test = ps.split(0.25, random_state=3)
    idx = train_test_split(list(range(40)), test_size=0.25, random_state=3, stratify=ps.labels)[1]
    assert test.texts == tuple(ps.texts[i] for i in sorted(idx))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in interp.datasets.available():  # the built-in sets the comparison sections split
            for part in ("train", "test", "all"):
                interp.datasets.load(name, part).split(0.25)


# ------------------------------------------------------------------------------------------- compare


def test_compare_with_no_section(tmp_path, no_boot, capsys):  # 11
    from interp.compare import compare

    with pytest.raises(ValueError, match="no section to run: name at least one of truth"):
        compare(concepts=[], out=tmp_path / "r", progress=False)
    for value in ("", " , "):
        assert main(["compare", "--concepts", value, "--out", str(tmp_path / "r"), "-q"]) == 2
        assert "no section to run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_compare_with_empty_models(tmp_path, no_boot, capsys):  # 12
    assert main(["compare", "--models", "", "--out", str(tmp_path / "s"), "-q"]) == 2
    assert "--models is empty" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------- CLI


def test_collect_layers_flag(tmp_path, no_boot, capsys):  # 13, 50
    for value, message in (("", "--layers is empty"), ("1,,2", "--layers takes comma-separated block indices"),
                           ("a", "got 'a'")):
        assert main(["collect", "--tiny", "llama", "--layers", value, "--out", str(tmp_path / "o"), "-q"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # the tiny pair was not built
    # a block the model lacks: refused from the configs (the tiny pair's 4 blocks, the organism's 6) before a boot
    for source, message in ((["--tiny", "llama"], "--layers: layer 9 is out of range for a model with 4 layers"),
                            ([], "--layers: layer 9 is out of range for a model with 6 layers")):
        assert main(["collect", *source, "--layers", "9", "--out", str(tmp_path / "o"), "-q"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="--layers is empty"):
        _int_list(" ")


def test_negative_flag_values_parse():  # 51
    args = _parser().parse_args(_join_negative_values(["collect", "--layers", "-1,-2", "--position", "-2"]))
    assert (args.layers, args.position) == ("-1,-2", "-2")
    args = _parser().parse_args(_join_negative_values(["steer", "hi", "--vector", "v", "--positions", "-1,generated"]))
    assert args.positions == "-1,generated"
    assert _join_negative_values(["steer", "-5 degrees", "--ablate", "-1,-2"])[2:] == ["--ablate", "-1,-2"]


def test_collect_negative_layers_end_to_end(dirs, tmp_path):  # 51
    out = tmp_path / "run"
    assert main(["collect", "--base", str(dirs[0]), "--post", str(dirs[1]), "--layers", "-1,-2", "--out", str(out),
                 "-q"]) == 0
    n = interp.load_model(dirs[1]).cfg.n_layers
    assert interp.Activations.load(out / "post").layers == (n - 2, n - 1)
    assert main(["collect", "--base", str(dirs[0]), "--post", str(dirs[1]), "--layers", "-3--2", "--out",
                 str(tmp_path / "range"), "-q"]) == 0  # a range counted from the end reads the same blocks
    assert interp.Activations.load(tmp_path / "range" / "post").layers == (n - 3, n - 2)


def test_compare_option_errors_name_the_flag(tmp_path, no_boot, capsys):
    """On the command line a bad section option is named as typed (``--snmf-sparsity``), not as the Python API's
    ``option 'sparsity' of section 'snmf'``."""
    for argv, message in ((["--concepts", "snmf", "--snmf-sparsity", "2"], "--snmf-sparsity must be > 0 and <= 1; got 2.0"),
                          (["--concepts", "snmf", "--snmf-sparsity", "0"], "--snmf-sparsity must be > 0 and <= 1; got 0.0"),
                          (["--concepts", "snmf", "--snmf-layers", "1,3", "--snmf-layer", "-4"],
                           "--snmf-layer -4 is not among the fitted layers [1, 3] (--snmf-layers 1,3)"),
                          (["--concepts", "divergence", "--divergence-corpus", "nope"],
                           "--divergence-corpus: corpus must name a built-in set"),
                          (["--concepts", "refusal", "--refusal-base-template", "xyz"],
                           "--refusal-base-template: 'xyz' does not write the user's message"),
                          (["--concepts", "refusal", "--refusal-base-template", "{% for"],
                           "--refusal-base-template: is not a Jinja chat template that renders (TemplateSyntaxError"),
                          (["--concepts", "truth_spectrum", "--truth-spectrum-seed", "-1"],
                           "--truth-spectrum-seed must be >= 0 and <= 2147483647; got -1")):
        assert main(["compare", *argv, "--out", str(tmp_path / "r"), "-q"]) == 2
        err = capsys.readouterr().err
        assert message in err and "of section" not in err


def test_snmf_features_are_bounded_by_the_tokens_factorized(pair):
    """More SNMF features than tokens is refused once the tokens are read (before any fit), naming both options; two
    prompts over three sets still give two prompts (the first sets take the remainder), not none."""
    from interp.compare.snmf import _prompts, snmf_section

    assert len(_prompts(pair, True, 2)[0]) == 2 and len(_prompts(pair, True, 4)[0]) == 4
    with pytest.raises(ValueError, match=r"option 'n_components' of section 'snmf' asks for 200 features, more than "
                                         r"the \d+ tokens of the 2 prompts factorized: lower it, or give more prompts "
                                         r"\(option 'n_prompts' of section 'snmf'"):
        snmf_section(pair, is_organism=True, n_components=200, n_prompts=2, layers=[1], progress=False)
    with pytest.raises(ValueError, match="n_components must be at most the model's 256 MLP neurons"):
        snmf_section(pair, is_organism=True, n_components=257, progress=False)


def test_truth_shots_and_positions_the_statements_lack_are_refused_before_any_activation(pair, monkeypatch):
    """More few-shot examples than the training split holds is an error naming the option, raised before the probes
    run, not a causal check skipped at the end of a run that exits 0; so is a read position a statement lacks."""
    from interp.compare import truth

    def no_collection(*args, **kwargs):
        raise AssertionError("activations were read before the shots were checked")

    monkeypatch.setattr(truth, "_collect_activations", no_collection)
    with pytest.raises(ValueError, match=r"option 'nie_shots' of section 'truth': 1000 shots need 501 true and 501 "
                                         r"false example statements; organism/truth/train has \d+ true and \d+ false"):
        truth.truth_section(pair, nie_shots=1000, progress=False)
    with pytest.raises(ValueError, match=r"option 'position' of section 'truth', in the train split: position -999 "
                                         r"does not exist in prompt 0, which has \d+ tokens"):
        truth.truth_section(pair, position="-999", progress=False)


@pytest.fixture
def vector_file(tmp_path, model):
    from steering import SteeringVector

    path = tmp_path / "v.safetensors"
    SteeringVector(torch.randn(1, model.cfg.d_model), (1,), "resid_pre").save(path)
    return path


def test_steer_flags_that_do_not_apply(vector_file, no_boot, capsys):  # 56
    base = ["steer", "hi", "--vector", str(vector_file)]
    assert main([*base, "--ablate", "--positions", "last"]) == 2
    assert "--positions last does not apply to --ablate" in capsys.readouterr().err
    assert main([*base, "--name", "v"]) == 2
    assert "--name v picks a vector in a folder, but --vector" in capsys.readouterr().err
    assert main([*base, "--positions", "1,,2"]) == 2  # named, and before the model boots
    assert "--positions '1,,2': invalid position 1" in capsys.readouterr().err


def test_collect_and_steer_flags_are_named_and_checked_early(tmp_path, capsys):
    """A count below 1 or a site that does not exist is refused as the command line is read; a position a prompt
    lacks, once the tokenizer is loaded and before any store is written; each message names the flag."""
    out = tmp_path / "o"
    for argv, message in ((["collect", "--batch-size", "0"], "argument --batch-size: must be >= 1; got 0"),
                          (["collect", "--site", "resid"], "argument --site: invalid choice: 'resid'"),
                          (["collect", "--position", "banana"], "--position: invalid position 'banana'"),
                          (["steer", "hi", "--vector", "v.safetensors", "--max-new-tokens", "-3"],
                           "argument --max-new-tokens: must be >= 1; got -3")):
        with pytest.raises(SystemExit) if "argument" in message else nullcontext():
            assert main([*argv, "--out", str(out), "-q"] if argv[0] == "collect" else argv) == 2
        assert message in capsys.readouterr().err, argv
    assert main(["collect", "--position", "999", "--out", str(out), "-q"]) == 2
    assert "--position: position 999 does not exist in prompt 0" in capsys.readouterr().err
    assert not out.exists()


def test_steer_positions_a_prompt_lacks_are_named(vector_file, capsys):
    assert main(["steer", "hi", "--vector", str(vector_file), "--positions", "-99", "--max-new-tokens", "2"]) == 2
    assert "--positions '-99': position -99 is before the first of the prompt's" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- stores


def test_save_into_a_folder_of_other_files(model, tmp_path):  # 58
    acts = interp.collect(model, TEXTS, progress=False)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not empty and holds no activation store"):
        acts.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="is a file; Activations.save writes a store folder"):
        acts.save(folder / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert interp.Activations.load(acts.save(empty)).n_samples == len(TEXTS)
