"""LAPE (Tang et al. 2024) as the authors' identify.py computes it, and on planted language neurons."""

import math

import numpy as np
import pytest
import torch

from probes import activation_probability, iou, lape


def tang_reference(P: np.ndarray, top_rate=0.01, filter_rate=0.95, bar_ratio=0.95) -> set[tuple[int, int, int]]:
    """(language, layer, neuron) triples Tang et al.'s rule assigns, written out with torch as their code
    computes it: entropy of the normalised probabilities; neurons with no probability above the
    filter_rate k-th value get entropy +inf; the round(top_rate * all neurons) lowest entropies are
    taken with topk; each is assigned to the languages whose probability exceeds the bar."""
    probs = torch.tensor(P)
    normed = probs / probs.sum(-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    ent = -(normed * torch.where(normed > 0, normed.log(), torch.zeros_like(normed))).sum(-1)
    flat = probs.flatten()
    filt = flat.kthvalue(round(flat.numel() * filter_rate)).values.item()
    ent[(probs > filt).sum(-1) == 0] = torch.inf
    _, idx = ent.flatten().topk(round(ent.numel() * top_rate), largest=False)
    layer, neuron = idx // ent.shape[1], idx % ent.shape[1]
    bar = flat.kthvalue(round(flat.numel() * bar_ratio)).values.item()
    lang, which = torch.where(probs[layer, neuron].T > bar)
    return {(int(k), int(layer[i]), int(neuron[i])) for k, i in zip(lang, which)}


def assigned(res) -> set[tuple[int, int, int]]:
    return {(int(k), int(l_), int(n)) for l_, n, k in np.argwhere(res.assignment)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lape_equals_the_reference_rule(seed):
    rng = np.random.default_rng(seed)
    n_layers, n_neurons, n_lang = 3, 400, 4
    P = rng.beta(2, 5, size=(n_layers, n_neurons, n_lang))  # mostly shared, rarely active
    specific = rng.choice(n_layers * n_neurons, 60, replace=False)  # some fire mostly for one language
    for i in specific:
        P.reshape(-1, n_lang)[i] = rng.uniform(0.0, 0.05, n_lang)
        P.reshape(-1, n_lang)[i, rng.integers(n_lang)] = rng.uniform(0.6, 0.99)
    expected = tang_reference(P)
    res = lape(P)
    assert assigned(res) == expected
    # 1% of all 1200 neurons (12), not 1% of those that passed the filter
    assert res.selected.sum() == round(0.01 * n_layers * n_neurons) == 12
    loose = lape(P, top_rate=0.05)
    assert assigned(loose) == tang_reference(P, top_rate=0.05) and loose.selected.sum() == 60


def test_lape_comparisons_are_strict():
    # 2 layers x 10 neurons x 2 languages = 40 probabilities; the 38th smallest (round(40 * 0.95)) is the bar
    P = np.full((2, 10, 2), 0.1)
    P[0, 3] = [0.9, 0.0]  # the largest value: above the bar
    P[1, 4] = [0.5, 0.0]  # the 38th smallest value: equal to the bar, so not above it
    P[1, 5] = [0.5, 0.0]
    res = lape(P, top_rate=0.1)  # 2 neurons selected
    assert res.prob_threshold == res.activation_bar == 0.5
    assert res.kept.sum() == 1 and res.neurons(0, 0) == [3]
    assert assigned(res) == tang_reference(P, top_rate=0.1) == {(0, 0, 3)}
    # fewer neurons passed the filter than the count: the rest are picked with entropy +inf, assigned nothing
    assert res.selected.sum() == 2 and res.counts().sum() == 1


def test_lape_finds_planted_language_neurons():
    g = torch.Generator().manual_seed(0)
    n_tok, n_neurons, n_lang = 4000, 200, 4
    lang = torch.randint(0, n_lang, (n_tok,), generator=g)
    acts = torch.randn(n_tok, n_neurons, generator=g)  # shared neurons: active half the time in every language
    perm = torch.randperm(n_neurons, generator=g).tolist()
    planted = {k: sorted(perm[5 * k : 5 * k + 5]) for k in range(n_lang)}  # 5 neurons per language
    for k, neurons in planted.items():
        for n in neurons:
            acts[:, n] = torch.where(lang == k, 1.0 + torch.rand(n_tok, generator=g), -1.0)
    both = perm[40]  # fires for languages 0 and 1
    acts[:, both] = torch.where(lang <= 1, 1.0, -1.0)
    P = activation_probability(acts, lang, n_lang)
    assert P[planted[2][0], 2] == 1.0 and P[planted[2][0], 1] == 0.0
    two = np.stack([P, P[::-1]])  # two "layers"; the second with neurons in reverse order
    res = lape(two, top_rate=0.1)  # 40 of 400 neurons: exactly the planted ones (entropy 0)
    for k, neurons in planted.items():
        assert res.neurons(0, k) == neurons
        assert res.neurons(1, k) == sorted(n_neurons - 1 - n for n in neurons)
    assert res.counts()[0].tolist() == [5, 5, 5, 5]
    loose = lape(two, top_rate=0.105)  # 42: the two-language neuron (entropy log 2) joins, in both layers
    assert both in loose.neurons(0, 0) and both in loose.neurons(0, 1) and both not in loose.neurons(0, 2)
    assert assigned(loose) == tang_reference(two, top_rate=0.105)


def test_lape_refuses_bad_input_and_iou_of_empty_sets_is_undefined():
    with pytest.raises(ValueError, match="at least 2 languages"):
        lape(np.zeros((1, 5, 1)))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        lape(np.full((1, 5, 2), 2.0))
    with pytest.raises(ValueError, match="top_rate=0.01 selects 0 of 5 neurons"):
        lape(np.full((1, 5, 2), 0.5))
    with pytest.raises(ValueError, match="no tokens of language 2"):
        activation_probability(torch.zeros(4, 3), [0, 1, 0, 1], 3)
    assert iou([1, 2, 3], [2, 3, 4]) == 0.5 and math.isnan(iou([], []))


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_mlp_pre_above_zero_is_the_gate_activation_above_zero(family, tmp_path):
    """What LAPE counts at site mlp_pre is Tang et al.'s act_fn(gate) > 0, computed here from the Hugging Face
    module's own activation function."""
    import interp
    from interp.testing import build_tiny_model
    from interp.tokens import encode
    from probes.lape import LAPE_SITE, check_activation

    model = interp.load_model(build_tiny_model(family, tmp_path / family))
    check_activation(model.cfg.act_fn)
    texts = ["the cat sat on the mat", "a dog ran far away today", "one two three"]
    tokens = interp.collect_tokens(model, texts, LAPE_SITE, 1, progress=False)
    hf = model.original_model
    mlp = hf.transformer.h[1].mlp if family == "gpt2" else hf.model.layers[1].mlp
    seen = {}
    handle = mlp.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    try:
        for t in texts:
            ids = torch.tensor([encode(interp.models.tokenizer_of(model), [t])[0].ids])  # as collection encodes
            seen.clear()
            with torch.no_grad():
                hf(ids)
            gate = mlp.c_fc(seen["x"]) if family == "gpt2" else mlp.gate_proj(seen["x"])
            act = mlp.act(gate) if family == "gpt2" else mlp.act_fn(gate)
            rows = tokens.X[tokens.prompt == texts.index(t)]
            assert torch.equal(rows > 0, act[0, -rows.shape[0]:] > 0)
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="this model's activation is 'tanh'"):
        check_activation("tanh")
