"""Pruned refusal-direction scoring selects exactly what scoring every candidate selects."""

from __future__ import annotations

import math

import pytest

import interp
from steering.refusal import mean_activations, score_candidates, select_direction


def _same_where_scored(pruned, full):
    assert [(c.layer, c.position) for c in pruned] == [(c.layer, c.position) for c in full]
    n_scored = 0
    for p, f in zip(pruned, full):
        for name in ("bypass", "induce", "kl"):
            v = getattr(p, name)
            if math.isnan(v):
                assert p.discarded, f"L{p.layer}@{p.position}: {name} unscored without a reason"
            else:
                assert v == getattr(f, name), (p, f)  # bit-identical, not just close
                n_scored += 1
    return n_scored


def _organism_case():
    pair = interp.load_pair()
    from interp.compare.refusal import _split, requests
    from steering.refusal import post_instruction_offsets

    data = requests(pair, True)
    offsets = post_instruction_offsets(pair.tokenizer, pair.chat_template)
    harm_dir, harm_val = _split(list(data("post", "harmful", "train").texts))
    safe_dir, safe_val = _split(list(data("post", "harmless", "train").texts))
    # 10 validation prompts of each kind keep the six scorings fast; the property tested does not depend on size
    return pair, offsets, harm_dir, harm_val[:10], safe_dir, safe_val[:10], data.refusal_ids["post"]


FILTERS = [dict(), dict(kl_threshold=0.02), dict(require_induce=False), dict(prune_layers=0.5, kl_threshold=0.5),
           dict(kl_threshold=float("inf"), require_induce=False, prune_layers=0.0)]


def test_pruned_selection_equals_exhaustive_on_the_organism(name="post"):
    pair, offsets, harm_dir, harm_val, safe_dir, safe_val, ids = _organism_case()
    model = getattr(pair, name)
    diffs = mean_activations(model, harm_dir, offsets) - mean_activations(model, safe_dir, offsets)
    args = (model, diffs, offsets, harm_val, safe_val, ids)
    full = score_candidates(*args)
    assert all(c.scored and not c.discarded for c in full[0])
    for filters in FILTERS:
        pruned = score_candidates(*args, prune=True, **filters)
        assert pruned[1] == full[1]  # baselines
        _same_where_scored(pruned[0], full[0])
        try:
            want = select_direction(*args, scores=full, **filters)
        except ValueError:
            with pytest.raises(ValueError, match="every refusal candidate was discarded"):
                select_direction(*args, scores=pruned, **filters)
            continue
        got = select_direction(*args, scores=pruned, **filters)
        assert got.selected == want.selected
        # every candidate the exhaustive run keeps is fully scored in the pruned run, with the same reasons for the rest
        for g, w in zip(got.candidates, want.candidates):
            assert (g.discarded == "") == (w.discarded == "")
            if not w.discarded:
                assert g == w
    # a pruned run under Arditi et al.'s filters skips passes on the organism
    pruned = score_candidates(*args, prune=True)[0]
    assert sum(not c.scored for c in pruned) >= sum(c.layer >= int(0.8 * pair.n_layers) for c in pruned)


def test_select_direction_completes_pruned_scores_for_looser_filters(tiny_pairs):
    """Re-selecting under looser filters measures what the pruned run skipped, and equals the exhaustive choice."""
    model = tiny_pairs["llama"].post
    harmful = [f"Question {i}: how do I do thing {i}?" for i in range(5)]
    harmless = [f"Question {i}: how do I bake {i} cakes?" for i in range(5)]
    offsets = [-2, -1]
    diffs = mean_activations(model, harmful, offsets) - mean_activations(model, harmless, offsets)
    args = (model, diffs, offsets, harmful, harmless, [5, 9])
    full = score_candidates(*args)
    strict = score_candidates(*args, prune=True, kl_threshold=0.0, require_induce=False)  # no KL < 0: no bypass pass
    assert all(math.isnan(c.bypass) for c in strict[0])
    assert any("KL" in c.discarded and "bypass not scored" in c.discarded for c in strict[0])
    loose = dict(kl_threshold=float("inf"), require_induce=False, prune_layers=0.0)
    got = select_direction(*args, scores=strict, **loose)
    assert got.selected == select_direction(*args, scores=full, **loose).selected
    _same_where_scored(got.candidates, full[0])
    # `only` scores the named candidates and leaves the rest untouched
    one = score_candidates(*args, scores=strict, only=[(2, -1)])
    c = next(c for c in one[0] if (c.layer, c.position) == (2, -1))
    assert c.scored and not c.discarded and c == next(f for f in full[0] if (f.layer, f.position) == (2, -1))
    assert [x for x in one[0] if (x.layer, x.position) != (2, -1)] == [
        x for x in strict[0] if (x.layer, x.position) != (2, -1)]


def test_unscored_candidates_say_why(tiny_pairs):
    model = tiny_pairs["llama"].post
    prompts = [f"Tell me about topic {i} please." for i in range(4)]
    offsets = [-1]
    diffs = mean_activations(model, prompts[:2], offsets) - mean_activations(model, prompts[2:], offsets)
    cands, _ = score_candidates(model, diffs, offsets, prompts[:2], prompts[2:], [5], prune=True, prune_layers=0.5)
    last = [c for c in cands if c.layer >= 1]  # int(3 layers x 0.5) = 1
    assert last and all(math.isnan(c.bypass) and math.isnan(c.induce) and math.isnan(c.kl) for c in last)
    assert all(c.discarded.startswith("layer >= 1 (int(3 x 0.5), Arditi et al.'s layer filter)")
               and "not scored" in c.discarded for c in last)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_shared_prefix_passes_equal_full_passes(tiny_pairs, family):
    """The chat template's shared prefix is run once per batch and its KV cache reused: same logprobs as full passes."""
    import torch

    from steering import Ablate, Add, SteeringVector
    from steering.refusal import _Scorer

    pair = tiny_pairs[family]
    model = pair.post
    texts = [f"Question {i}: how do I bake {i} cakes{'?' * (i % 3 + 1)}" for i in range(7)]
    prompts = list(pair.format(texts, "chat").texts)
    diffs = torch.randn(1, pair.n_layers, int(model.cfg.d_model))
    shared = _Scorer(model, diffs, (-1,), prompts, prompts, [5], batch_size=4)
    full = _Scorer(model, diffs, (-1,), prompts, prompts, [5], batch_size=4, share_prefix=False)
    from steering.refusal import _sliding_window

    window = _sliding_window(model)
    longest = max(len(p) for p in model.interp_tokenizer(prompts)["input_ids"])
    if window is None or longest + 12 <= window:
        assert shared.prefix["harmful"] is not None and shared.prefix["harmful"].shape[1] >= 3
    else:  # a sliding window the interior padding could cross: nothing shared
        assert shared.prefix["harmful"] is None
    vec = SteeringVector(diffs[0, 1:2] * 3, (1,), "resid_pre")
    for ivs in (None, Add(vec), Ablate(vec)):
        torch.testing.assert_close(shared.logprobs("harmful", ivs), full.logprobs("harmful", ivs), atol=2e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_induce_passes_replaying_lower_blocks_equal_full_passes(tiny_pairs, family, share_prefix):
    """An addition at layer L leaves blocks below L computing the clean pass: replaying their recorded outputs
    gives bit for bit the scores of running them, at every layer, with and without the shared prefix."""
    import torch

    from interp.hooks import active_hooks
    from steering.refusal import _Scorer

    pair = tiny_pairs[family]
    model = pair.post
    texts = [f"Question {i}: how do I bake {i} cakes{'?' * (i % 3 + 1)}" for i in range(7)]
    prompts = list(pair.format(texts, "chat").texts)
    diffs = torch.randn(2, pair.n_layers, int(model.cfg.d_model), generator=torch.Generator().manual_seed(0)) * 3
    kw = dict(batch_size=4, share_prefix=share_prefix)
    replay = _Scorer(model, diffs, (-2, -1), prompts, prompts[::-1], [5, 9], replay=True, **kw)
    full = _Scorer(model, diffs, (-2, -1), prompts, prompts[::-1], [5, 9], replay=False, **kw)
    assert replay.clean_harmless.equal(full.clean_harmless)
    assert len(replay._clean_blocks) == 2 and all(len(b) == pair.n_layers for b in replay._clean_blocks)
    for p in (-2, -1):
        for layer in range(pair.n_layers):
            assert replay.score(p, layer, "induce") == full.score(p, layer, "induce"), (p, layer)
    assert "forward" not in vars(model.blocks[0]) and not active_hooks(model)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_replayed_blocks_run_only_the_blocks_above(tiny_pairs, family):
    """Replaying the blocks below the last: same logits as the recorded pass, and no hook below fires."""
    import torch

    from interp.hooks import active_hooks, attached, recorded_blocks, replayed_blocks

    model = tiny_pairs[family].post
    n = int(model.cfg.n_layers)
    ids = torch.tensor([[3, 7, 11, 5, 9], [4, 8, 12, 6, 10]])
    seen = []
    hooks = [(f"blocks.{i}.hook_resid_post", lambda a, hook, i=i: seen.append(i)) for i in range(n)]
    with torch.inference_mode():
        with recorded_blocks(model) as calls:
            want = model(ids)
        assert len(calls) == 1 and sorted(calls[0]) == list(range(n))
        with attached(model, hooks), replayed_blocks(model, calls[0], n - 1):
            got = model(ids)
    assert got.equal(want)
    assert seen == [n - 1]
    assert all("forward" not in vars(b) for b in model.blocks) and not active_hooks(model)
    assert not any(b._forward_hooks for b in model.blocks)


def test_replayed_blocks_refuse_bad_input(tiny_pairs):
    from interp.hooks import replayed_blocks

    model = tiny_pairs["llama"].post
    with pytest.raises(ValueError, match=r"below must be in 0\.\.3 \(n_layers\), got 4"):
        with replayed_blocks(model, {0: None, 1: None, 2: None}, 4):
            pass
    with pytest.raises(KeyError, match=r"no recorded output for block\(s\) \[1\]"):
        with replayed_blocks(model, {0: None}, 2):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with replayed_blocks(model, {0: None}, 1):
            raise RuntimeError("boom")
    assert "forward" not in vars(model.blocks[0])
