"""Interventions: exact arithmetic at the hook points, composition, and hooks that never leak."""

from __future__ import annotations

import re

import pytest
import torch

import steering
from interp import active_hooks, attached, hook_name
from interp.models import tokenizer_of
from interp.tokens import encode, pad_batch, pad_id
from steering import Ablate, Add, Clamp, SteeringVector

PROMPTS = ["The cat sat on the mat.", "Hi", "A longer prompt with several more words in it."]
SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def _batch(model):
    tok = tokenizer_of(model)
    return pad_batch(encode(tok, PROMPTS), pad_id=pad_id(tok), padding_side="left")


def _cache(model, batch, names):
    with torch.inference_mode():
        _, cache = model.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask,
                                        names_filter=lambda n: n in names)
    return {n: cache[n].float() for n in names}


def _vec(model, layers=(1,), seed=0, site="resid_pre"):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(len(layers), int(model.cfg.d_model), generator=g), tuple(layers), site)


def test_ablation_removes_the_direction_everywhere(tiny_pairs, family):
    model = tiny_pairs[family].post
    v = _vec(model)
    r = v.directions[0]
    names = [hook_name(s, layer) for layer in range(model.cfg.n_layers) for s in SITES]
    clean = _cache(model, _batch(model), names)
    with steering.ablate(model, v):
        cache = _cache(model, _batch(model), names)
    assert active_hooks(model) == {}
    for n in names:
        assert (clean[n] @ r).abs().max() > 1e-3, n  # there was something to remove
        scale = cache[n].abs().max()
        assert (cache[n] @ r).abs().max() <= 1e-5 * max(1.0, float(scale)), n


@pytest.mark.parametrize("positions, expect", [("all", [0, 1, 2, 3, 4, 5]), ("last", [5]), (-2, [4]),
                                               ([-1, -3], [3, 5]), ("prompt", [0, 1, 2, 3, 4, 5])])
def test_add_adds_exactly_at_the_chosen_positions(tiny_pairs, positions, expect):
    model = tiny_pairs["llama"].post
    v = _vec(model, layers=(0, 2))
    tok = tokenizer_of(model)
    ids = torch.tensor([encode(tok, ["one two three four five"])[0].ids[:6]])
    names = [hook_name("resid_pre", layer) for layer in (0, 2)]
    with torch.inference_mode():
        _, clean = model.run_with_cache(ids, names_filter=lambda n: n in names)
    hooks_seen = []

    # read the edited activation at the same hook point, after the intervention's hook
    def reader(act, hook):
        hooks_seen.append(act.detach().clone())

    with steering.add(model, v, scale=3.0, positions=positions), attached(model, [(names[0], reader)]):
        with torch.inference_mode():
            model(ids)
    edited = hooks_seen[0][0]
    mask = torch.zeros(6, dtype=torch.bool)
    mask[expect] = True
    expected = clean[names[0]][0] + mask[:, None] * 3.0 * v.at(0)
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=1e-5)


def test_a_position_spec_that_matches_no_token_of_a_plain_forward_is_refused(tiny_pairs):
    """Outside steering.generate every token is prompt: "generated" alone would steer nothing (the README's
    example once did exactly that, max |diff| = 0); an offset before the prompt's start matches nothing either.
    Both raise on the forward, the hooks are gone afterwards, and a spec that matches some token still runs."""
    model = tiny_pairs["llama"].post
    v = _vec(model)
    batch = _batch(model)
    clean = model(batch.input_ids, attention_mask=batch.attention_mask)
    n = batch.input_ids.shape[1]
    for spec, message in (("generated", "positions='generated' matches no token in a plain forward pass"),
                          (-(n + 1), f"position {-(n + 1)} is before the first of the prompt's {n} tokens")):
        with pytest.raises(ValueError, match=re.escape(message)):
            with steering.add(model, v, scale=5.0, positions=spec):
                model(batch.input_ids, attention_mask=batch.attention_mask)
        torch.testing.assert_close(model(batch.input_ids, attention_mask=batch.attention_mask), clean)
    with steering.add(model, v, scale=5.0, positions=["generated", "last"]):
        mixed = model(batch.input_ids, attention_mask=batch.attention_mask)
    with steering.add(model, v, scale=5.0, positions="last"):
        last = model(batch.input_ids, attention_mask=batch.attention_mask)
    torch.testing.assert_close(mixed, last)
    assert not torch.allclose(last, clean)
    # inside generate the same spec steers the new tokens
    steered = steering.generate(model, ["the cat"], [steering.Add(v, 50.0, positions="generated")], max_new_tokens=4)
    assert steered != steering.generate(model, ["the cat"], max_new_tokens=4)


def test_clamp_sets_the_projection(tiny_pairs, family):
    model = tiny_pairs[family].post
    v = _vec(model, layers=(1,), site="resid_post")
    name = hook_name("resid_post", 1)
    with steering.clamp(model, v, 2.5):
        cache = _cache(model, _batch(model), [name])
    proj = cache[name] @ v.directions[0]
    torch.testing.assert_close(proj, torch.full_like(proj, 2.5), atol=1e-4, rtol=1e-4)


def test_interventions_compose(tiny_pairs):
    model = tiny_pairs["qwen2"].post
    a, b = _vec(model, seed=1), _vec(model, seed=2)
    batch = _batch(model)
    both = SteeringVector(a.vectors + 2 * b.vectors, a.layers)
    with steering.add(model, a), steering.add(model, b, scale=2.0):
        nested = model(batch.input_ids, attention_mask=batch.attention_mask)
    with steering.apply(model, [a, Add(b, scale=2.0)]):
        listed = model(batch.input_ids, attention_mask=batch.attention_mask)
    with steering.add(model, both):
        summed = model(batch.input_ids, attention_mask=batch.attention_mask)
    torch.testing.assert_close(nested, summed, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(listed, summed, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("make", [
    lambda m, v: steering.add(m, v),
    lambda m, v: steering.ablate(m, v),
    lambda m, v: steering.clamp(m, v, 1.0),
    lambda m, v: steering.apply(m, [Add(v), Ablate(v), Clamp(v, 0.0)]),
])
def test_no_hook_survives_an_exception(tiny_pairs, make):
    model = tiny_pairs["llama"].post
    v = _vec(model)
    # a hook the user attached beforehand is left alone
    with attached(model, [(hook_name("resid_post", 0), lambda act, hook: None)]):
        before = active_hooks(model)
        with pytest.raises(RuntimeError, match="boom"):
            with make(model, v):
                assert len(active_hooks(model)) > len(before) or sum(active_hooks(model).values()) > sum(before.values())
                raise RuntimeError("boom")
        assert active_hooks(model) == before
    assert active_hooks(model) == {}


def test_no_hook_survives_an_exception_inside_generation(tiny_pairs):
    model = tiny_pairs["llama"].post
    v = _vec(model)

    class Interrupt(Exception):
        pass

    def explode(act, hook):
        raise Interrupt

    with pytest.raises(Interrupt):
        with attached(model, [(hook_name("mlp_out", 2), explode)]):
            steering.generate(model, PROMPTS, [v, Ablate(v)], max_new_tokens=3)
    assert active_hooks(model) == {}


def test_bad_vectors_attach_nothing(tiny_pairs):
    model = tiny_pairs["llama"].post
    d = int(model.cfg.d_model)
    wide = SteeringVector(torch.ones(1, d + 1), (0,))
    with pytest.raises(ValueError, match=rf"width {d + 1} but the model's resid_pre has width {d}"):
        with steering.apply(model, [_vec(model), wide]):
            pass
    deep = SteeringVector(torch.ones(1, d), (7,))
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        with steering.add(model, deep):
            pass
    with pytest.raises(ValueError, match="invalid position 2"):
        with steering.add(model, _vec(model), positions=2):
            pass
    two = _vec(model, layers=(0, 1))
    with pytest.raises(ValueError, match="pass layer= to choose"):
        with steering.ablate(model, two):
            pass
    with pytest.raises(TypeError, match="expected SteeringVector or Add/Ablate/Clamp"):
        with steering.apply(model, ["not a vector"]):
            pass
    assert active_hooks(model) == {}


def test_degenerate_directions_and_non_finite_numbers_are_refused_and_a_zero_addition_is_warned(tiny_pairs):
    """A norm-0 direction cannot be ablated or clamped (nothing to project on); NaN/inf scales and clamp values
    raise where they are given; adding a zero vector runs but says it changes nothing."""
    import warnings

    import steering
    from steering import Ablate, Add, Clamp, SteeringVector

    model = tiny_pairs["llama"].post
    d = model.cfg.d_model
    zero = SteeringVector(torch.zeros(d), (1,), "resid_post")
    unit = SteeringVector(torch.ones(d), (1,), "resid_post")
    for make in (lambda: Ablate(zero), lambda: Clamp(zero, 1.0), lambda: steering.ablate(model, zero)):
        with pytest.raises(ValueError, match="the direction has norm 0"):
            make()
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="scale must be a finite number"):
            Add(unit, scale=bad)
        with pytest.raises(ValueError, match="value must be a finite number"):
            Clamp(unit, bad)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        SteeringVector(torch.ones(d), (1,), "resid_post", scale=float("nan"))
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.inference_mode():
        clean = model(ids)
        with pytest.warns(UserWarning, match=r"adding a zero vector at layer\(s\) \[1\] changes nothing"):
            with steering.add(model, zero):
                same = model(ids)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a real direction warns nothing
            with steering.add(model, unit, scale=2.0):
                moved = model(ids)
    assert torch.equal(same, clean) and not torch.allclose(moved, clean)
