"""Real tier: the language and SNMF code paths end to end on real activations.

Assertions only where the published shape is robust: language identity of whole sentences is linearly
decodable (near 1.0) from the residual stream of a pretrained model; everything else must run and give
finite, well-formed results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp
from interp import datasets

pytestmark = pytest.mark.real


def test_language_section_runs_on_a_real_pair_and_language_identity_is_decodable(real_models):
    from interp.compare.language import language_section

    model = real_models("smollm2")
    pair = interp.ModelPair(model, model, model.interp_tokenizer.chat_template)  # the code path, not a comparison
    result = language_section(pair, progress=False)
    n = pair.n_layers
    middle = [e for e in result.per_layer if n // 3 <= e["layer"] <= 2 * n // 3]
    assert min(e["post_accuracy"] for e in middle) >= 0.95
    assert all(np.isfinite(e["post_accuracy"]) for e in result.per_layer)
    assert "summary" in result.readings


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_snmf_fits_and_matches_features_on_real_mlp_activations(real_models, name):
    from interp.collection import collect_tokens
    from probes import SNMF, match_features

    model = real_models(name)
    texts = list(datasets.load("languages", "train").texts)[:64]
    layer = int(model.cfg.n_layers) // 2
    tokens = collect_tokens(model, texts, "mlp_post", layer=layer, progress=False)
    X = tokens.X
    assert X.shape[1] == int(model.cfg.d_mlp) and torch.isfinite(torch.as_tensor(X)).all()
    fits = [SNMF(n_components=12, sparsity=0.01, max_iter=40, random_state=s).fit(X) for s in (0, 1)]
    for f in fits:
        assert np.isfinite(f.components_).all() and f.components_.shape == (12, X.shape[1])
        codes = f.transform(X)
        assert (codes >= 0).all()
        # better than the best rank-0 fit (all zeros): the factorisation explains something
        assert f.reconstruction_err_ < float(torch.as_tensor(X).double().norm())
    rows, cols, cos = match_features(fits[0].components_, fits[1].components_)
    assert len(rows) == 12 and np.all(np.abs(np.asarray(cos)) <= 1 + 1e-6)
