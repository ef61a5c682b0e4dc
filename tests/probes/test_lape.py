"""LAPE selection recovers planted language-specific neurons."""

import numpy as np
import pytest
import torch

from probes import activation_probability, iou, lape


def test_lape_finds_planted_language_neurons():
    g = torch.Generator().manual_seed(0)
    n_tok, n_neurons, n_lang = 4000, 200, 4
    lang = torch.randint(0, n_lang, (n_tok,), generator=g)
    acts = torch.randn(n_tok, n_neurons, generator=g)  # shared neurons: active half the time in every language
    perm = torch.randperm(n_neurons, generator=g).tolist()
    planted = {k: sorted(perm[10 * k : 10 * k + 10]) for k in range(n_lang)}  # 10 neurons per language (20%)
    for k, neurons in planted.items():
        for n in neurons:
            acts[:, n] = torch.where(lang == k, 1.0 + torch.rand(n_tok, generator=g), -1.0)
    both = perm[40]  # fires for languages 0 and 1
    acts[:, both] = torch.where(lang <= 1, 1.0, -1.0)
    P = activation_probability(acts, lang, n_lang)
    assert P[planted[2][0], 2] == 1.0 and P[planted[2][0], 1] == 0.0
    res = lape(np.stack([P, P[::-1]]))  # two "layers"; the second with neurons in reverse order
    for k, neurons in planted.items():
        assert res.neurons(0, k) == neurons  # exactly the planted ones; the two-language neuron has higher entropy
        assert res.neurons(1, k) == sorted(n_neurons - 1 - n for n in neurons)
    assert res.counts()[0].tolist() == [10, 10, 10, 10]
    loose = lape(P[None], entropy_quantile=0.99)  # the two-language neuron now passes, assigned to both
    assert both in loose.neurons(0, 0) and both in loose.neurons(0, 1) and both not in loose.neurons(0, 2)


def test_lape_refuses_bad_input_and_iou():
    with pytest.raises(ValueError, match="at least 2 languages"):
        lape(np.zeros((1, 5, 1)))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        lape(np.full((1, 5, 2), 2.0))
    with pytest.raises(ValueError, match="no tokens of language 2"):
        activation_probability(torch.zeros(4, 3), [0, 1, 0, 1], 3)
    assert iou([1, 2, 3], [2, 3, 4]) == 0.5 and iou([], []) == 1.0
