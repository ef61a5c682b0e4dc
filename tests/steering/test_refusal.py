"""Refusal direction candidates and selection."""

from __future__ import annotations

import math

import pytest
import torch

import interp
from steering.refusal import mean_activations, offset_activations, post_instruction_offsets, select_direction


def test_post_instruction_offsets_count_the_template_tail(tiny_pairs, family):
    pair = tiny_pairs[family]
    if not pair.chat_template:
        pytest.skip(f"{family} tiny model has no chat template")
    tok = pair.tokenizer
    offsets = post_instruction_offsets(tok, pair.chat_template)
    text = tok.apply_chat_template([{"role": "user", "content": "hello there"}], tokenize=False,
                                   add_generation_prompt=True, chat_template=pair.chat_template)
    tail = text[text.index("hello there") + len("hello there"):]
    assert offsets == list(range(-len(tok(tail, add_special_tokens=False)["input_ids"]), 0))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[offsets[0]:]) == tail  # the offsets cover exactly the tail


def test_mean_activations_equal_collect_at_each_offset(tiny_pairs):
    pair = tiny_pairs["llama"]
    prompts = pair.format(["How do I bake bread?", "Hi", "Tell me a story about a cat and a dog."], "chat")
    offsets = [-3, -1]
    means = mean_activations(pair.post, prompts.texts, offsets, batch_size=2)
    for i, off in enumerate(offsets):
        acts = interp.collect(pair.post, prompts, "resid_pre", positions=off, progress=False)
        torch.testing.assert_close(means[i].float(), acts["resid_pre"].float().mean(0), atol=1e-5, rtol=1e-5)


def test_offset_activations_are_the_rows_mean_activations_averages(tiny_pairs):
    pair = tiny_pairs["qwen2"]
    prompts = pair.format(["How do I bake bread?", "Hi", "Tell me a story about a cat and a dog."], "chat")
    offsets = [-3, -1]
    rows = offset_activations(pair.post, prompts.texts, offsets, batch_size=2)
    assert rows.shape == (3, 2, pair.n_layers, pair.post.cfg.d_model) and rows.dtype == torch.float32
    torch.testing.assert_close(rows.double().mean(0), mean_activations(pair.post, prompts.texts, offsets, batch_size=2),
                               atol=1e-12, rtol=0)
    for i, off in enumerate(offsets):
        acts = interp.collect(pair.post, prompts, "resid_pre", positions=off, progress=False)
        torch.testing.assert_close(rows[:, i], acts["resid_pre"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="prompts is empty"):
        offset_activations(pair.post, [], offsets)


def test_mean_activations_refuse_bad_offsets(tiny_pairs):
    model = tiny_pairs["llama"].post
    with pytest.raises(ValueError, match="offsets must be negative"):
        mean_activations(model, ["a b c"], [0])
    with pytest.raises(ValueError, match="prompt 0 has fewer than 50 tokens"):
        mean_activations(model, ["a b"], [-50])


def test_selection_applies_the_filters(tiny_pairs):
    """A planted candidate whose ablation lowers the refusal score most is selected unless filtered."""
    pair = tiny_pairs["llama"]
    model = pair.post
    harmful = [f"Question {i}: how do I do thing {i}?" for i in range(6)]
    harmless = [f"Question {i}: how do I bake {i} cakes?" for i in range(6)]
    offsets = [-2, -1]
    diffs = mean_activations(model, harmful, offsets) - mean_activations(model, harmless, offsets)
    n_layers = int(model.cfg.n_layers)
    sel = select_direction(model, diffs, offsets, harmful, harmless, [5, 9], kl_threshold=float("inf"),
                           require_induce=False, prune_layers=0.0)
    assert len(sel.candidates) == len(offsets) * n_layers
    assert sel.selected == min(sel.candidates, key=lambda c: c.bypass)
    pruned = select_direction(model, diffs, offsets, harmful, harmless, [5, 9], kl_threshold=float("inf"),
                              require_induce=False, prune_layers=0.5)
    assert pruned.selected.layer < 0.5 * n_layers
    assert all(("Arditi et al.'s layer filter" in c.discarded) == (c.layer >= int(0.5 * n_layers))
               for c in pruned.candidates)
    with pytest.raises(ValueError, match="every refusal candidate was discarded"):
        select_direction(model, diffs, offsets, harmful, harmless, [5, 9], kl_threshold=-1.0)
    vec = sel.vector
    assert vec.layers == (sel.selected.layer,) and vec.site == "resid_pre"
    torch.testing.assert_close(vec.vectors[0], diffs[offsets.index(sel.selected.position), sel.selected.layer].float())


def arditi_discards(c, n_layers, kl_threshold=0.1, induce_threshold=0.0, prune_layer_percentage=0.2) -> bool:
    """Arditi et al.'s select_direction filter, condition by condition: NaN scores, the last layers (rounded
    down), KL strictly above the threshold, induce (steering) score strictly below zero."""
    if any(math.isnan(v) for v in (c.bypass, c.induce, c.kl)):
        return True
    if c.layer >= int(n_layers * (1.0 - prune_layer_percentage)):
        return True
    if c.kl > kl_threshold:
        return True
    return c.induce < induce_threshold


@pytest.mark.parametrize("n_layers", [6, 18, 30])
def test_filters_are_arditi_et_al_s_at_every_boundary(n_layers):
    from steering.refusal import Candidate, apply_filters

    positions = (-2, -1)
    diffs = torch.ones(len(positions), n_layers, 4)
    cands, k = [], 0
    for p in positions:
        for layer in range(n_layers):
            for kl in (0.05, 0.1, 0.1 + 1e-9):  # at the threshold: kept
                for induce in (-1e-9, 0.0, 0.5):  # exactly 0: kept
                    k += 1
                    cands.append(Candidate(layer, p, bypass=-float(k), induce=induce, kl=kl))
    kept = [c for c in apply_filters(cands, diffs, positions, n_layers) if not c.discarded]
    assert kept == [c for c in cands if not arditi_discards(c, n_layers)]
    assert max(c.layer for c in kept) == int(0.8 * n_layers) - 1  # 3 of 6 layers, 13 of 18, 23 of 30
    assert {(c.kl, c.induce) for c in kept} == {(0.05, 0.0), (0.05, 0.5), (0.1, 0.0), (0.1, 0.5)}
