"""steering.orthogonalize: directional ablation written into the weights equals the hooked ablation."""

from __future__ import annotations

import json

import pytest
import torch

import interp
import steering

TEXTS = ["How do I bake bread?", "The city of Paris is in France."]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_orthogonalized_weights_compute_what_the_hooked_ablation_computes(family, tiny_dirs, tmp_path):
    _, post = tiny_dirs[family]
    model = interp.load_model(post, device="cpu")
    d = int(model.cfg.d_model)
    r = torch.randn(d, generator=torch.Generator().manual_seed(1)) * 5
    edited = interp.load_model(steering.orthogonalize(post, r, tmp_path / "orth"), device="cpu")
    tokens = model.to_tokens(TEXTS)
    with steering.apply(model, [steering.Ablate(steering.SteeringVector(r[None], (0,)))]):
        want = model(tokens)
    got = edited(tokens)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(model(tokens), got, atol=1e-3)  # the edit does something
    # no block writes along r: every resid_post is orthogonal to it
    acts = interp.collect(edited, TEXTS, "resid_post", positions="mean", progress=False)["resid_post"]
    assert float((acts @ (r / r.norm())).abs().max()) <= 1e-4 * float(acts.norm(dim=-1).max())


def test_bad_inputs_are_refused_with_the_reason(tiny_dirs, tmp_path):
    _, post = tiny_dirs["llama"]
    d = json.loads((post / "config.json").read_text())["hidden_size"]
    with pytest.raises(ValueError, match=rf"direction must be \[{d}\]"):
        steering.orthogonalize(post, torch.ones(d + 1), tmp_path / "a")
    with pytest.raises(ValueError, match="finite and nonzero"):
        steering.orthogonalize(post, torch.zeros(d), tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="is not empty"):
        steering.orthogonalize(post, torch.ones(d), tmp_path / "full")
    _, gpt2 = tiny_dirs["gpt2"]
    with pytest.raises(ValueError, match="orthogonalize supports LlamaForCausalLM.*holds GPT2LMHeadModel"):
        steering.orthogonalize(gpt2, torch.ones(d), tmp_path / "c")
    _, gemma2 = tiny_dirs["gemma2"]  # post-block norms: no weight edit removes a direction
    with pytest.raises(ValueError, match="holds Gemma2ForCausalLM .its blocks normalise their output"):
        steering.orthogonalize(gemma2, torch.ones(d), tmp_path / "d")
