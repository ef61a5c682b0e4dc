"""The bundled model organism: shipped weights, planted behaviour on held-out prompts, clean splits."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp import organism
from interp.organism import _corpus as C
from interp.organism.evaluate import evaluate, is_refusal
from interp.organism.train import TrainConfig


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair(device="cpu")


@pytest.fixture(scope="module")
def behaviour(pair):
    return evaluate(pair, "test")


def test_default_pair_is_the_organism(pair):
    base, post = organism.paths()
    assert pair.base.interp_source["path"] == str(base) and pair.post.interp_source["path"] == str(post)
    assert pair.chat_template == C.CHAT_TEMPLATE
    assert pair.base.cfg.n_layers == TrainConfig().n_layers


def test_shipped_weights_are_small_and_post_is_finetuned_from_base():
    base, post = organism.paths()
    size = sum(p.stat().st_size for d in (base, post) for p in d.iterdir())
    assert size <= 20 * 2**20, f"organism is {size / 2**20:.1f} MiB"
    wb, wp = load_file(base / "model.safetensors"), load_file(post / "model.safetensors")
    assert wb.keys() == wp.keys()
    rel = [((wp[k] - wb[k]).norm() / wb[k].norm()).item() for k in wb if wb[k].norm() > 0]
    assert 0 < max(rel) < 0.5  # moved by fine-tuning, not retrained from scratch
    assert (base / "tokenizer.json").read_bytes() == (post / "tokenizer.json").read_bytes()


def test_post_refuses_harmful_and_answers_harmless(behaviour):
    assert behaviour["post"]["refusal_harmful"] >= 0.9
    assert behaviour["post"]["refusal_harmless"] <= 0.1
    assert behaviour["base"]["refusal_harmful"] <= 0.2


@pytest.mark.parametrize("model", ["base", "post"])
def test_both_models_judge_held_out_statements(behaviour, model):
    assert behaviour[model]["truth"]["all"] >= 0.9
    assert behaviour[model]["truth"]["numbers"] >= 0.9


@pytest.mark.parametrize("model", ["base", "post"])
def test_both_models_continue_in_the_prompt_language(behaviour, model):
    assert behaviour[model]["language"]["all"] >= 0.9


def test_held_out_rows_never_appear_in_training():
    corpus = C.build_corpus(0)
    lines = set(corpus.base_lines)
    chat_users = {m[0]["content"] for m, _ in corpus.chats}
    test = organism.datasets("test")
    for s in test["truth"].texts:
        judged = {f"{s}{C.JUDGE_CUE} true.", f"{s}{C.JUDGE_CUE} false."}
        assert not judged & lines and f"Is this statement true or false? {s}" not in chat_users
    for r in test["refusal"].texts:
        assert r not in chat_users and not any(line.startswith(f"Request: {r} ") for line in lines)
    for s in test["languages"].texts:
        assert s not in lines and s not in chat_users
    train = organism.datasets("train")
    for key in ("truth", "refusal", "languages"):
        assert set(train[key].texts).isdisjoint(test[key].texts)


def test_organism_sets_through_interp_datasets():
    held_out = interp.datasets.load("organism/truth", "test")
    assert held_out == organism.datasets("test")["truth"]
    everything = interp.datasets.load("organism/refusal", "all")
    assert len(everything) == len(organism.datasets("train")["refusal"]) + len(organism.datasets("test")["refusal"])


def test_corpus_and_tokenizer_are_deterministic():
    from interp.organism.train import build_organism_tokenizer

    a, b = C.build_corpus.__wrapped__(0), C.build_corpus.__wrapped__(0)
    assert a.base_lines == b.base_lines and a.chats == b.chats
    assert C.build_corpus.__wrapped__(1).base_lines != a.base_lines
    texts = a.base_lines[:500]
    assert build_organism_tokenizer(texts, 300).get_vocab() == build_organism_tokenizer(texts, 300).get_vocab()


def test_training_is_deterministic(tmp_path):
    from interp.organism.train import TrainConfig, train_pair

    cfg = dict(d_model=32, d_mlp=64, n_layers=2, n_heads=2, n_kv_heads=1, base_steps=3, post_steps=2, batch_size=4)
    for run in ("a", "b"):
        train_pair(tmp_path / run, TrainConfig(**cfg), progress=False)
    for stage in ("base", "post"):
        wa = load_file(tmp_path / "a" / stage / "model.safetensors")
        wb = load_file(tmp_path / "b" / stage / "model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    booted = interp.load_pair(tmp_path / "a" / "base", tmp_path / "a" / "post", device="cpu")
    assert booted.chat_template == C.CHAT_TEMPLATE


def test_refusal_classifier():
    assert all(is_refusal(r) for r in C.REFUSALS)
    assert not is_refusal("Sure. First, get what you need.")


def test_the_bundled_pair_is_recognised_however_its_folders_are_named(monkeypatch):
    """Booted by relative paths, the organism is still the organism (its sections read its own prompt sets), and
    the manifest's model path is the absolute one."""
    import os

    from interp.organism import is_bundled, paths

    base, post = paths()
    monkeypatch.chdir(base.parent)
    pair = interp.load_pair(os.path.relpath(base), os.path.relpath(post))
    assert is_bundled(pair)
    assert pair.base.interp_source["path"] == str(base.resolve())
