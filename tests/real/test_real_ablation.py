"""Directional ablation on real checkpoints leaves no component along the direction.

``steering.Ablate`` projects a unit direction ``r`` out of ``resid_pre``,
``attn_out`` and ``mlp_out`` of every layer (Arditi et al. 2024), so the
residual stream entering and leaving every block has ``x . r ~ 0``. On Gemma-3
``attn_out``/``mlp_out`` are the post-normed branch outputs, i.e. what is
actually added to the residual, so the same holds there. Read with hooks
attached after the ablation's (hooks at one point run in the order attached).
"""

from __future__ import annotations

import torch

from interp import active_hooks, attached, hook_name
from interp.models import tokenizer_of
from interp.tokens import encode, pad_batch, pad_id
from steering import Ablate, SteeringVector, apply

PROMPTS = ["The capital of France is", "Hi", "Water boils at 100 degrees Celsius, and ice melts at"]
# float32: what remains is rounding, a few 1e-7 of the activation's norm
TOL = 1e-5


def _projections(model, batch, r: torch.Tensor) -> dict[str, torch.Tensor]:
    """``name -> [layer]`` max over real tokens of |x . r| / ||x|| at resid_pre and resid_post."""
    n = int(model.cfg.n_layers)
    mask = batch.attention_mask.bool()
    out = {s: torch.zeros(n, dtype=torch.float64) for s in ("resid_pre", "resid_post")}

    def read(site, layer):
        def fn(act, hook):
            x = act.double()[mask]
            out[site][layer] = ((x @ r.double()).abs() / x.norm(dim=-1)).max()
        return fn

    hooks = [(hook_name(s, L), read(s, L)) for s in out for L in range(n)]
    with torch.inference_mode(), attached(model, hooks):
        model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    return out


def test_ablation_removes_the_direction_everywhere(real_name, real_models):
    model = real_models(real_name)
    tok = tokenizer_of(model)
    batch = pad_batch(encode(tok, PROMPTS), pad_id=pad_id(tok), padding_side="left")
    d = int(model.cfg.d_model)
    g = torch.Generator().manual_seed(0)
    r = torch.randn(d, generator=g)
    r = r / r.norm()
    vec = SteeringVector(r[None], (0,), "resid_pre")

    before = _projections(model, batch, r)
    with apply(model, [Ablate(vec)]):
        after = _projections(model, batch, r)
    assert active_hooks(model) == {}
    for site in after:
        worst = after[site].max().item()
        print(f"\n{real_name} {site}: max |x . r| / ||x|| ablated {worst:.2g}, "
              f"unablated {before[site].min().item():.2g}..{before[site].max().item():.2g}")
        assert worst < TOL, f"{real_name} {site}: projection {worst:.3g} left after ablation"
        # the check means something: a random direction carries a visible share unablated
        assert before[site].max().item() > 100 * TOL
