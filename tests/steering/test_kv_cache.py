"""Cached decoding is right on the installed transformers: cached = full re-runs = Hugging Face ``generate``."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest
import torch
import transformers
from packaging.version import Version
from transformers import AutoModelForCausalLM, DynamicCache

import steering
from interp.kv_cache import KVCacheError, cache_length, check_cache_grew
from interp.models import tokenizer_of
from interp.tokens import encode, pad_batch, pad_id
from steering import Add, SteeringVector

PROMPTS = ["The cat sat on the mat.", "Hi", "A longer prompt with several more words in it.", "Why?"]
N_NEW = 6


def _decoder_layers(hf):
    inner = getattr(hf, "model", None) or getattr(hf, "transformer")
    return getattr(inner, "layers", None) or getattr(inner, "h")


@contextmanager
def _hf_add(hf, layer: int, vector: torch.Tensor):
    """Add ``vector`` to the input of decoder layer ``layer`` (= resid_pre) at every position, in plain HF."""
    def pre(module, args, kwargs):
        if args:
            return (args[0] + vector, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + vector}

    h = _decoder_layers(hf)[layer].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        h.remove()


def hf_generate(path, model, prompts, *, vector=None, layer=None, max_new_tokens=N_NEW) -> list[tuple[int, ...]]:
    """Greedy continuations by ``transformers``' own ``generate`` on the same folder, left-padded batch."""
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = tokenizer_of(model)
    encs = encode(tok, prompts, max_length=int(model.cfg.n_ctx))
    batch = pad_batch(encs, pad_id=pad_id(tok), padding_side="left")
    eos = tok.eos_token_id
    ctx = _hf_add(hf, layer, vector) if vector is not None else nullcontext()
    with torch.inference_mode(), ctx:
        out = hf.generate(batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                          do_sample=False, eos_token_id=eos, pad_token_id=pad_id(tok))
    rows = []
    for row in out[:, batch.input_ids.shape[1]:].tolist():
        cut = next((i for i, t in enumerate(row) if t == eos), len(row))
        rows.append(tuple(row[:cut]))
    return rows


def _ids(gens):
    return [g.token_ids for g in gens]


def test_cached_equals_full_reruns_equals_hf_generate(tiny_dirs, tiny_pairs, family):
    model = tiny_pairs[family].post
    cached = steering.generate(model, PROMPTS, max_new_tokens=N_NEW, return_details=True)
    full = steering.generate(model, PROMPTS, max_new_tokens=N_NEW, use_cache=False, return_details=True)
    assert _ids(cached) == _ids(full)
    assert _ids(cached) == hf_generate(tiny_dirs[family][1], model, PROMPTS)
    assert any(len(g.token_ids) > 1 for g in cached)  # decoding went past the first token


def test_steered_cached_equals_hf_generate_with_the_same_addition(tiny_dirs, tiny_pairs, family):
    model = tiny_pairs[family].post
    g = torch.Generator().manual_seed(1)
    v = torch.randn(int(model.cfg.d_model), generator=g) * 3
    vec = SteeringVector(v[None], (1,), "resid_pre")
    cached = steering.generate(model, PROMPTS, Add(vec, positions="all"), max_new_tokens=N_NEW, return_details=True)
    full = steering.generate(model, PROMPTS, Add(vec, positions="all"), max_new_tokens=N_NEW, use_cache=False,
                             return_details=True)
    plain = steering.generate(model, PROMPTS, max_new_tokens=N_NEW, return_details=True)
    assert _ids(cached) == _ids(full) == hf_generate(tiny_dirs[family][1], model, PROMPTS, vector=v, layer=1)
    assert _ids(cached) != _ids(plain)  # the addition changed something, so the comparison has teeth


def test_a_cache_that_does_not_grow_raises(tiny_pairs, monkeypatch):
    model = tiny_pairs["llama"].post
    forward = model.forward

    def losing_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        if kwargs.get("return_type") == "logits_and_cache":
            return out[0], DynamicCache()  # a cache that lost every token
        return out

    monkeypatch.setattr(model, "forward", losing_forward)
    n = len(encode(tokenizer_of(model), ["The cat sat on the mat."])[0])  # the prompt, BOS included
    with pytest.raises(KVCacheError, match=f"the KV cache did not grow: after {n} tokens the model returned 0 positions"):
        steering.generate(model, ["The cat sat on the mat."], max_new_tokens=3)
    # without the cache nothing is checked and nothing is wrong
    assert steering.generate(model, ["Hi"], max_new_tokens=2, use_cache=False)


@pytest.mark.skipif(Version(transformers.__version__) < Version("5.24"),
                    reason="transformers < 5.24 passes the cache as past_key_values, which the bridge reads")
def test_without_the_compat_hooks_this_transformers_loses_the_cache(tiny_pairs, monkeypatch):
    """The root cause: transformers >= 5.24 hands attention ``cache=``, which TransformerLens' bridge ignores."""
    import steering.generation as gen

    monkeypatch.setattr(gen, "kv_cache_compat", lambda model: nullcontext(model))
    with pytest.raises(KVCacheError, match="0 positions"):
        steering.generate(tiny_pairs["llama"].post, PROMPTS, max_new_tokens=3)


def test_check_cache_grew_messages():
    with pytest.raises(KVCacheError, match="returned no cache"):
        check_cache_grew(None, 3)
    with pytest.raises(KVCacheError, match="a cache of unknown length"):
        check_cache_grew(object(), 3)
    assert cache_length(DynamicCache()) == 0
