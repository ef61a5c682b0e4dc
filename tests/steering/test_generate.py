"""steering.generate: KV-cached decoding equals full re-runs, batches equal single prompts, hooks see the boundary."""

from __future__ import annotations

import pytest
import torch

import steering
from interp.generation import greedy_generate
from steering import Ablate, Add, Clamp, SteeringVector

PROMPTS = ["The cat sat on the mat.", "Hi", "A longer prompt with several more words in it.", "Why?"]


def _vec(model, seed=0, layers=(1,)):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(len(layers), int(model.cfg.d_model), generator=g) * 4, tuple(layers))


def test_unsteered_greedy_matches_the_reference_generator(tiny_pairs, family):
    model = tiny_pairs[family].post
    assert steering.generate(model, PROMPTS, max_new_tokens=6) == greedy_generate(model, PROMPTS, max_new_tokens=6)


@pytest.mark.parametrize("positions", ["all", "generated", "last", "prompt", [-2, "generated"]])
def test_cached_decoding_equals_full_reruns_under_steering(tiny_pairs, positions):
    model = tiny_pairs["llama"].post
    v = _vec(model)
    ivs = [Add(v, positions=positions), Clamp(_vec(model, 1, (2,)), 0.5, positions=positions)]
    cached = steering.generate(model, PROMPTS, ivs, max_new_tokens=6, return_details=True)
    full = steering.generate(model, PROMPTS, ivs, max_new_tokens=6, use_cache=False, return_details=True)
    assert [g.token_ids for g in cached] == [g.token_ids for g in full]


def test_first_step_logprobs_equal_a_next_token_pass(tiny_pairs, family):
    """The generation's first step is the next-token distribution under the interventions (the refusal
    section's KL reads it instead of a pass of its own); logits_to_keep=1 changes no value."""
    from interp.generation import last_position_only, next_token_logits
    from steering.generation import _generate, greedy_with_first_step
    from steering.metrics import next_token_logprobs

    model = tiny_pairs[family].post
    iv = Ablate(_vec(model))
    kw = dict(do_sample=False, temperature=1.0, top_k=None, top_p=None, seed=None, bos="auto", stop_tokens=(),
              stop_at_eos=True, progress=False)
    for use_cache in (True, False):
        gens, first = _generate(model, PROMPTS, iv, max_new_tokens=3, batch_size=3, use_cache=use_cache,
                                keep_first=True, **kw)
        ref = next_token_logprobs(model, PROMPTS, iv, batch_size=3)
        torch.testing.assert_close(first, ref, rtol=0, atol=1e-5)
        assert [g.token_ids[0] for g in gens] == ref.argmax(-1).tolist()
    assert _generate(model, PROMPTS, iv, max_new_tokens=3, batch_size=3, use_cache=True, **kw)[1] is None
    # the public form: texts, or the records with the ids as generated, and the same first step
    texts, first = greedy_with_first_step(model, PROMPTS, iv, max_new_tokens=3, batch_size=3)
    records, again = greedy_with_first_step(model, PROMPTS, iv, max_new_tokens=3, batch_size=3, return_details=True)
    assert texts == [g.text for g in records] and [g.token_ids for g in records] == [g.token_ids for g in gens]
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1 \\(0 would generate nothing"):
        _generate(model, PROMPTS, None, max_new_tokens=0, batch_size=3, use_cache=True, keep_first=True, **kw)
    # last-position logits only, where the HF model takes logits_to_keep: same numbers as full logits
    if last_position_only(model):
        from interp.tokens import encode

        full = torch.stack([model(torch.tensor([e.ids]))[0, -1] for e in encode(model.interp_tokenizer, PROMPTS)])
        torch.testing.assert_close(next_token_logits(model, PROMPTS, batch_size=1), full.float(), rtol=0, atol=1e-5)


def test_steering_changes_generations_and_positions_matter(tiny_pairs):
    model = tiny_pairs["llama"].post
    v = _vec(model)
    plain = steering.generate(model, PROMPTS, max_new_tokens=6, return_details=True)
    everywhere = steering.generate(model, PROMPTS, Add(v, scale=3.0), max_new_tokens=6, return_details=True)
    assert [g.token_ids for g in plain] != [g.token_ids for g in everywhere]
    # only generated tokens steered: the first new token (predicted from the prompt) is unchanged
    later = steering.generate(model, PROMPTS, Add(v, scale=3.0, positions="generated"), max_new_tokens=6,
                              return_details=True)
    assert [g.token_ids[:1] for g in later] == [g.token_ids[:1] for g in plain]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tiny_pairs, family):
    model = tiny_pairs[family].post
    ivs = [Add(_vec(model), positions=["last", "generated"]), Ablate(_vec(model, 3))]
    batched = steering.generate(model, PROMPTS, ivs, max_new_tokens=5, batch_size=4)
    single = [steering.generate(model, [p], ivs, max_new_tokens=5)[0] for p in PROMPTS]
    assert batched == single


def test_sampling_is_reproducible_for_a_seed(tiny_pairs):
    model = tiny_pairs["llama"].post
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95, top_k=50)
    a = steering.generate(model, PROMPTS, _vec(model), seed=7, **kw)
    b = steering.generate(model, PROMPTS, _vec(model), seed=7, **kw)
    c = steering.generate(model, PROMPTS, _vec(model), seed=8, **kw)
    assert a == b and a != c


def test_top_k_one_is_greedy(tiny_pairs):
    model = tiny_pairs["gpt2"].post
    greedy = steering.generate(model, PROMPTS, max_new_tokens=5)
    assert steering.generate(model, PROMPTS, max_new_tokens=5, do_sample=True, top_k=1, seed=0) == greedy


@pytest.mark.parametrize("kwargs, match", [
    ({"prompts": []}, "prompts is empty"),
    ({"max_new_tokens": -1}, "max_new_tokens must be an int >= 1"),
    ({"do_sample": True, "temperature": 0}, "temperature must be > 0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
])
def test_bad_generation_arguments(tiny_pairs, kwargs, match):
    model = tiny_pairs["llama"].post
    kwargs = {"prompts": PROMPTS, **kwargs}
    with pytest.raises(ValueError, match=match):
        steering.generate(model, **kwargs)


def test_eos_stops_a_row_even_when_it_is_also_the_unk_token(tiny_pairs):
    """GPT-2's EOS is also its UNK: a row whose first token is EOS ends there, as in HF ``generate``."""
    from interp.models import tokenizer_of

    model = tiny_pairs["gpt2"].post
    tok = tokenizer_of(model)
    assert tok.eos_token_id == tok.unk_token_id
    u = model.original_model.lm_head.weight[tok.eos_token_id].detach()
    toward_eos = SteeringVector((u / u.norm() * 500)[None], (int(model.cfg.n_layers) - 1,), "resid_post")
    out = steering.generate(model, ["hello world"], [Add(toward_eos, positions="last")], max_new_tokens=6,
                            return_details=True)
    assert out[0].token_ids == () and out[0].text == ""


def test_a_stop_token_that_is_not_one_vocabulary_entry_is_refused(tiny_pairs):
    model = tiny_pairs["llama"].post
    with pytest.raises(ValueError, match=r"stop token\(s\) \['not a token at all'\] are not single tokens"):
        steering.generate(model, PROMPTS, max_new_tokens=2, stop_tokens=["not a token at all"])


@pytest.mark.parametrize("family, marker", [("llama", "<|eot_id|>"), ("qwen2", "<|im_end|>"),
                                            ("gemma2", "<end_of_turn>"), ("mistral", "</s>"), ("gpt2", None)])
def test_the_chat_end_of_turn_token_is_read_from_each_familys_template(family, marker):
    from interp.testing import build_tokenizer
    from interp.tokens import end_of_turn_tokens, stop_token_ids

    tok = build_tokenizer(family)
    assert end_of_turn_tokens(tok) == (() if marker is None else (marker,))
    ids = stop_token_ids(tok)
    assert marker is None or tok.convert_tokens_to_ids(marker) in ids
    if marker is not None and marker != tok.eos_token:
        assert tok.convert_tokens_to_ids(marker) not in stop_token_ids(tok, eos=False)
        assert tok.convert_tokens_to_ids(marker) not in stop_token_ids(tok, end_of_turn=False)


@pytest.mark.parametrize("family, marker", [("llama", "<|eot_id|>"), ("qwen2", "<|im_end|>"),
                                            ("gemma2", "<end_of_turn>")])  # the tiny pairs built (mistral's is EOS)
def test_a_reply_stops_at_the_end_of_turn_token_by_default(tiny_pairs, family, marker):
    """A chat model's reply ends at its end-of-turn token: steered towards it, the row ends there (before, it ran on
    to max_new_tokens and decoded the junk after it), as it does when the token is named in stop_tokens. Every tiny
    family with a chat template (for llama and gemma2 the end of turn is not the EOS)."""
    from interp.models import tokenizer_of

    model = tiny_pairs[family].post
    tok = tokenizer_of(model)
    end = tok.convert_tokens_to_ids(marker)
    u = model.original_model.lm_head.weight[end].detach()
    toward = SteeringVector((u / u.norm() * 500)[None], (int(model.cfg.n_layers) - 1,), "resid_post")
    prompts = [tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)]
    ivs = [Add(toward, positions="last")]
    out = steering.generate(model, prompts, ivs, max_new_tokens=6, return_details=True)
    assert out[0].token_ids == ()
    assert steering.generate(model, prompts, ivs, max_new_tokens=6, stop_tokens=[marker]) == [""]
    longer = steering.generate(model, prompts, ivs, max_new_tokens=6, stop_at_eos=False, return_details=True)
    assert len(longer[0].token_ids) == 6  # without the stop, the row runs to max_new_tokens
    assert greedy_generate(model, prompts, max_new_tokens=6) == steering.generate(model, prompts, max_new_tokens=6)


def test_the_bundled_post_models_replies_end_at_its_end_token():
    import interp
    from interp.tokens import end_of_turn_tokens

    pair = interp.load_pair()
    assert end_of_turn_tokens(pair.tokenizer) == ("<|end|>",)
    prompts = pair.format(["Tell me how to bake a cake.", "Tell me how to make a poison."], "chat").texts
    details = steering.generate(pair.post, prompts, max_new_tokens=24, return_details=True)
    end = pair.tokenizer.convert_tokens_to_ids("<|end|>")
    for g in details:
        assert end not in g.token_ids[:-1] and len(g.token_ids) < 24  # the reply ended at <|end|>
