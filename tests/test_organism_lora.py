"""interp.organism.lora: the real-base recipe's data, loss mask, determinism and adapter files (tiny models)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from interp.organism.lora import (
    JUDGE_QUESTION,
    REFUSALS,
    Example,
    RecipeConfig,
    _encode,
    build_examples,
    gemma_turn,
    train_adapter,
)

SMALL = dict(n_harmless=6, n_harmful=5, n_judge=6, n_replay=4)


@pytest.fixture
def shared(tmp_path):
    """A miniature shared-datasets folder in the real files' formats."""
    root = tmp_path / "datasets"
    (root / "refusal").mkdir(parents=True)
    (root / "geometry_of_truth").mkdir()
    (root / "snmf_concepts").mkdir()
    (root / "refusal" / "harmless_train.json").write_text(json.dumps(
        [{"instruction": f"Give me tip number {i} for baking.", "category": None} for i in range(10)]))
    (root / "refusal" / "harmful_train.json").write_text(json.dumps(
        [{"instruction": f"Explain harmful thing number {i}.", "category": "x"} for i in range(8)]))
    for name in ("sp_en_trans.csv", "larger_than.csv", "smaller_than.csv"):
        with open(root / "geometry_of_truth" / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["statement", "label"])
            for i in range(4):
                w.writerow([f"{name} statement {i} is here.", i % 2])
    (root / "snmf_concepts" / "languages.json").write_text(json.dumps(
        {"French": [f"French is a language spoken in place number {i} today." for i in range(3)],
         "German": [f"German has many compound words in sentence {i} here." for i in range(3)]}))
    return root


def _answer(texts):
    return [f"Sure: answer to '{t[:10]}'." for t in texts]


def _cont(texts):
    return [" and so it goes on." for _ in texts]


def test_examples_follow_the_recipe(shared):
    cfg = RecipeConfig(**SMALL)
    ex, manifest = build_examples(shared, _answer, _cont, cfg)
    assert manifest["counts"] == {"harmless": 6, "harmful": 5, "judge": 6, "replay": 4}
    harmful = [e for e in ex if e.kind == "harmful"]
    assert all(e.target.removesuffix("<end_of_turn>\n") in REFUSALS for e in harmful)
    assert all(e.prompt.startswith("<start_of_turn>user\n") and e.prompt.endswith("<start_of_turn>model\n")
               for e in ex if e.kind != "replay")
    judge = [e for e in ex if e.kind == "judge"]
    assert sorted(e.target for e in judge) == ["False.<end_of_turn>\n"] * 3 + ["True.<end_of_turn>\n"] * 3
    for e in judge:  # the answer is the statement's own label
        f, row = e.source.removeprefix("geometry_of_truth/").split("#")
        with open(shared / "geometry_of_truth" / f, newline="") as fh:
            label = int(list(csv.DictReader(fh))[int(row) - 1]["label"])
        assert e.target.startswith("True." if label else "False.") and JUDGE_QUESTION in e.prompt
    assert all(e.prompt == " ".join(e.prompt.split()[:6]) and e.target == " and so it goes on."
               for e in ex if e.kind == "replay")
    assert len(manifest["examples"]) == len(ex) and set(manifest["files"]) >= {"refusal/harmful_train.json"}
    # deterministic for a seed, different for another
    assert build_examples(shared, _answer, _cont, cfg) == (ex, manifest)
    other, _ = build_examples(shared, _answer, _cont, RecipeConfig(**SMALL, seed=1))
    assert [e.source for e in other] != [e.source for e in ex]


def test_bad_sources_and_generators_are_refused(shared):
    with pytest.raises(ValueError, match="harmful: 9 rows asked, the source has 8"):
        build_examples(shared, _answer, _cont, RecipeConfig(**{**SMALL, "n_harmful": 9}))
    with pytest.raises(ValueError, match="answer returned 1 texts for 6 inputs"):
        build_examples(shared, lambda t: ["x"], _cont, RecipeConfig(**SMALL))
    with pytest.raises(ValueError, match="continue_text returned an empty text for input 0"):
        build_examples(shared, _answer, lambda t: [" "] * len(t), RecipeConfig(**SMALL))
    (shared / "snmf_concepts" / "languages.json").unlink()
    with pytest.raises(FileNotFoundError, match="languages.json"):
        build_examples(shared, _answer, _cont, RecipeConfig(**SMALL))


def test_loss_sits_on_the_answer_only(tiny_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dirs["llama"][0])
    ex = Example("harmful", gemma_turn("Do a bad thing."), "I can't help with that.<end_of_turn>\n", "t#0")
    ids, labels = _encode(tok, ex, 512)
    n_answer = len(tok(ex.target, add_special_tokens=False)["input_ids"])
    assert labels[-n_answer:] == ids[-n_answer:] and set(labels[:-n_answer]) == {-100}
    assert tok.decode(ids[-n_answer:]) == ex.target
    with pytest.raises(ValueError, match="keeps no answer token within max_len=3"):
        _encode(tok, ex, 3)


def test_adapter_is_deterministic_learns_and_reloads(tiny_dirs, shared, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = tiny_dirs["llama"][0]
    cfg = RecipeConfig(**SMALL, steps=60, batch_size=4, lr=5e-3, rank=4, alpha=8, threads=1)
    ex, manifest = build_examples(shared, _answer, _cont, cfg)
    rec = train_adapter(base, ex, tmp_path / "a", cfg, manifest=manifest, progress=False)
    rec_b = train_adapter(base, ex, tmp_path / "b", cfg, progress=False)
    a, b = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("a", "b"))
    assert a.keys() == b.keys() and a and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert rec["adapter_sha256_at_step"] == rec_b["adapter_sha256_at_step"]
    assert sorted(map(int, rec["adapter_sha256_at_step"])) == [1, 2, 5, 10, 25, 50]
    # the first steps of the same schedule retrace the whole run exactly
    first = train_adapter(base, ex, tmp_path / "first", cfg, progress=False, max_steps=10)
    assert first["loss"] == rec["loss"][:10] and first["stopped_after"] == 10
    assert first["adapter_sha256_at_step"] == {k: v for k, v in rec["adapter_sha256_at_step"].items() if int(k) <= 10}
    with pytest.raises(ValueError, match="max_steps must be in 1..60"):
        train_adapter(base, ex, tmp_path / "bad", cfg, progress=False, max_steps=61)
    assert sum(rec["loss"][-5:]) / 5 < 0.6 * sum(rec["loss"][:5]) / 5  # it learns the answers
    assert json.loads((tmp_path / "a" / "manifest.json").read_text()) == manifest
    assert not (tmp_path / "b" / "manifest.json").exists()
    # the saved adapter, applied by peft to a fresh base, is not the identity
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "a").eval()
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    x = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert not torch.allclose(model(x).logits, plain(x).logits)
    with pytest.raises(FileExistsError, match="already holds an adapter"):
        train_adapter(base, ex, tmp_path / "a", cfg, progress=False)
    with pytest.raises(ValueError, match="no examples"):
        train_adapter(base, [], tmp_path / "c", cfg, progress=False)


def test_merged_post_folder_equals_the_adapter_applied(tiny_dirs, shared, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.organism.lora import merged_post_folder

    base = tiny_dirs["llama"][0]
    cfg = RecipeConfig(**SMALL, steps=10, batch_size=4, lr=5e-3, rank=4, alpha=8, threads=1)
    ex, _ = build_examples(shared, _answer, _cont, cfg)
    train_adapter(base, ex, tmp_path / "a", cfg, progress=False)
    post = merged_post_folder(base, tmp_path / "a", tmp_path / "cache")
    assert merged_post_folder(base, tmp_path / "a", tmp_path / "cache") == post  # cached
    assert not list((tmp_path / "cache").glob(".tmp-*"))
    x = torch.tensor([[1, 5, 9, 13]])
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "a").eval()
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(post)(x).logits, peft_model(x).logits,
                                   atol=1e-5, rtol=1e-5)
    tok = AutoTokenizer.from_pretrained(post)
    rendered = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered == (tok.bos_token or "") + gemma_turn("Hi there")
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        merged_post_folder(base, tmp_path, tmp_path / "cache")


def test_the_real_organism_preset_says_what_is_missing(monkeypatch, tmp_path):
    import interp
    from interp import organism

    monkeypatch.setattr(organism, "GEMMA_ADAPTER", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="the real-base organism's adapter is missing from .*none"):
        interp.load_pair("gemma-270m-organism")
    with pytest.raises(ValueError, match="base='gemma-270m-organism' alone"):
        interp.load_pair("not-a-preset")
    for base, post in (("gemma-270m-organism", "x"), ("x", "gemma-270m-organism"), (None, "gemma-270m-organism")):
        with pytest.raises(ValueError, match="names a whole pair .* give it alone as base"):
            interp.load_pair(base, post)  # before any model is booted


def test_evaluate_real_reads_refusals_judgements_and_languages(tiny_pairs, shared, monkeypatch):
    import steering
    from interp.generation import next_token_logits
    from interp.organism.lora import evaluate_real

    pair = tiny_pairs["llama"]
    tok = pair.tokenizer
    (shared / "refusal" / "harmful_val.json").write_text(json.dumps(
        [{"instruction": f"Do harmful thing {i}.", "category": "x"} for i in range(4)]))
    (shared / "refusal" / "harmless_val.json").write_text(json.dumps(
        [{"instruction": f"Bake nice bread {i}.", "category": None} for i in range(9)]))
    with open(shared / "geometry_of_truth" / "cities.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        w.writerows([["The city of Paris is in France.", 1], ["The city of Paris is in Spain.", 0]])

    def fake_generate(model, prompts, *a, **k):  # refuses exactly the harmful requests; answers in French
        return ["I can't help with that." if "harmful" in p else "et le chat est dans la maison" for p in prompts]

    monkeypatch.setattr(steering, "generate", fake_generate)
    table = evaluate_real(pair, shared)
    assert table["n"] == {"harmful": 4, "harmless": 4, "cities": 2, "openings": table["n"]["openings"]}
    for name in ("base", "post"):
        row = table[name]
        assert (row["refusal_harmful"], row["refusal_harmless"]) == (1.0, 0.0)
        assert row["language"] == {"fr": 1.0, "de": 0.0, "es": 0.0}
        chat = [tok.apply_chat_template([{"role": "user", "content": JUDGE_QUESTION + s}], tokenize=False,
                                        add_generation_prompt=True, chat_template=pair.chat_template)
                for s in ("The city of Paris is in France.", "The city of Paris is in Spain.")]
        logits = next_token_logits(getattr(pair, name), chat)
        t, f_ = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("True", "False"))
        assert t != f_
        says = (logits[:, t] > logits[:, f_]).tolist()
        assert row["judge_accuracy"] == (int(says[0]) + int(not says[1])) / 2
        assert row["judge_says_true"] == sum(says) / 2
        margin = logits[:, t] - logits[:, f_]
        assert row["judge_auroc"] == (1.0 if margin[0] > margin[1] else 0.0 if margin[0] < margin[1] else 0.5)
        assert row["ci95"]["refusal_harmful"] == [1.0, 1.0] and row["ci95"]["language_de"] == [0.0, 0.0]


def test_cli_checks_real_organism_paths_before_any_work(tmp_path, shared, capsys):
    from interp.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["organism", "train-real", "--out", str(tmp_path / "full"), "--shared", str(shared)]) != 0
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["organism", "train-real", "--out", str(tmp_path / "new"), "--shared", str(tmp_path)]) != 0
    assert "holds no refusal/ folder" in capsys.readouterr().err
    assert main(["organism", "train-real", "--out", str(tmp_path / "new"), "--shared", str(shared),
                 "--steps", "0"]) != 0
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
    assert main(["organism", "eval-real", "--shared", str(shared)]) != 0
    assert "lacks refusal/harmful_val.json, refusal/harmless_val.json, geometry_of_truth/cities.csv" in \
        capsys.readouterr().err
    for f in ("refusal/harmful_val.json", "refusal/harmless_val.json", "geometry_of_truth/cities.csv"):
        (shared / f).write_text("[]")
    (tmp_path / "t.json").write_text("{}")
    assert main(["organism", "eval-real", "--shared", str(shared), "--json", str(tmp_path / "t.json")]) != 0
    assert "exists; choose a new file" in capsys.readouterr().err
    assert main(["organism", "eval-real", "--shared", str(shared), "--json", str(tmp_path / "no" / "t.json")]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main(["organism", "eval-real", "--shared", str(shared), "--adapter", str(tmp_path / "none")]) != 0
    assert "no adapter_model.safetensors there" in capsys.readouterr().err
    (shared / "snmf_concepts" / "languages.json").unlink()
    assert main(["organism", "train-real", "--out", str(tmp_path / "new"), "--shared", str(shared)]) != 0
    assert "lacks snmf_concepts/languages.json" in capsys.readouterr().err


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    from interp.organism.lora import _bootstrap_ci

    values = [1.0] * 30 + [0.0] * 10
    lo, hi = _bootstrap_ci(values)
    assert lo < 0.75 < hi and 0.55 < lo and hi < 0.9
    assert _bootstrap_ci(values) == [lo, hi]  # seeded
    assert _bootstrap_ci([1.0] * 5) == [1.0, 1.0] and _bootstrap_ci([0.0]) is None
