"""Collected activations equal a plain Hugging Face forward, on real checkpoints.

The reference is ``AutoModelForCausalLM.from_pretrained`` of the same converted
safetensors folder the toolkit boots, run one prompt at a time without padding.
Where each site is read on the HF side:

============  ===============================================================
site          Hugging Face tensor at layer ``L``
============  ===============================================================
resid_pre     ``hidden_states[L]`` (``output_hidden_states=True``)
resid_post    ``hidden_states[L + 1]``; for the last layer the decoder layer's
              output (a forward hook), as HF's last entry is after the final norm
resid_mid     input of the norm in front of the MLP: ``post_attention_layernorm``
              (Llama), ``pre_feedforward_layernorm`` (Gemma-3)
attn_out      what the attention branch adds to the residual: ``self_attn``'s
              output (Llama); ``post_attention_layernorm``'s output (Gemma-3,
              whose attention output is normed before it is added)
mlp_out       ``mlp``'s output (Llama); ``post_feedforward_layernorm``'s output
              (Gemma-3)
mlp_pre       ``mlp.gate_proj``'s output (the gate before its activation), width
              ``d_mlp``; what LAPE counts above zero
mlp_post      input of ``mlp.down_proj`` (``act(gate) * up``), width ``d_mlp``
============  ===============================================================

TransformerLens 4.3 points Gemma-3's ``hook_attn_out``/``hook_mlp_out`` at the
post-norms' outputs (``ln1_post``/``ln2_post``, BlockBridge's auto-override),
which is the same convention: the tensor added to the residual stream.

Run with ``-s`` to print the per-site max |toolkit - HF| of each model.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.collection import collect_tokens_by_layer
from interp.models import tokenizer_of
from interp.tokens import encode

PROMPTS = [
    "The capital of France is",
    "Hi",
    "Water boils at 100 degrees Celsius, and ice melts at",
    "Écris une phrase en français, s'il te plaît.",
]
SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_pre", "mlp_post")
# float32 throughout; the bridge runs eager attention (Gemma-3) where HF picks SDPA, so sums are
# reordered: allow a relative error of 1e-4 of the site's largest magnitude at that layer.
RTOL = 1e-4

FIGURES: dict[str, dict[str, float]] = {}  # model -> site -> max |toolkit - HF|
RELATIVE: dict[str, dict[str, float]] = {}  # model -> site -> max of that / the layer's max |HF|


def _hf_reference(folder, encs) -> dict[str, list[torch.Tensor]]:
    """``site -> [per prompt: [layer, pos, width]]`` from a plain HF forward, one prompt at a time."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    layers = hf.model.layers
    gemma = hasattr(layers[0], "pre_feedforward_layernorm")
    grabbed: dict[tuple[str, int], torch.Tensor] = {}

    def out(site, L):
        def fn(mod, args, output):
            grabbed[site, L] = (output[0] if isinstance(output, tuple) else output).detach()
        return fn

    def inp(site, L):
        def fn(mod, args):
            grabbed[site, L] = args[0].detach()
        return fn

    handles = []
    for L, layer in enumerate(layers):
        handles += [
            layer.register_forward_hook(out("layer_out", L)),
            layer.mlp.down_proj.register_forward_pre_hook(inp("mlp_post", L)),
            layer.mlp.gate_proj.register_forward_hook(out("mlp_pre", L)),
        ]
        if gemma:
            handles += [
                layer.pre_feedforward_layernorm.register_forward_pre_hook(inp("resid_mid", L)),
                layer.post_attention_layernorm.register_forward_hook(out("attn_out", L)),
                layer.post_feedforward_layernorm.register_forward_hook(out("mlp_out", L)),
            ]
        else:
            handles += [
                layer.post_attention_layernorm.register_forward_pre_hook(inp("resid_mid", L)),
                layer.self_attn.register_forward_hook(out("attn_out", L)),
                layer.mlp.register_forward_hook(out("mlp_out", L)),
            ]
    n = len(layers)
    ref: dict[str, list[torch.Tensor]] = {s: [] for s in SITES}
    try:
        for enc in encs:
            with torch.inference_mode():
                hs = hf.model(torch.tensor([enc.ids]), output_hidden_states=True).hidden_states
            assert len(hs) == n + 1
            last = grabbed["layer_out", n - 1][0]
            # hidden_states[L+1] is block L's output, except the last entry (final norm applied)
            torch.testing.assert_close(hs[n - 1][0], grabbed["layer_out", n - 2][0], rtol=0, atol=0)
            ref["resid_pre"].append(torch.stack([hs[L][0] for L in range(n)]))
            ref["resid_post"].append(torch.stack([hs[L + 1][0] for L in range(n - 1)] + [last]))
            for s in ("resid_mid", "attn_out", "mlp_out", "mlp_pre", "mlp_post"):
                ref[s].append(torch.stack([grabbed[s, L][0] for L in range(n)]))
            grabbed.clear()
    finally:
        for h in handles:
            h.remove()
    return ref


def _record(name: str, site: str, diff: float, scale: float) -> None:
    for table, value in ((FIGURES, diff), (RELATIVE, diff / max(scale, 1e-30))):
        table.setdefault(name, {})
        table[name][site] = max(table[name].get(site, 0.0), value)


def _check(name, site, got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """``got``/``want``: ``[layer, ..., width]``; per-layer tolerance relative to that layer's scale."""
    for L in range(want.shape[0]):
        diff = (got[L] - want[L]).abs().max().item()
        scale = want[L].abs().max().item()
        _record(name, site, diff, scale)
        assert diff <= RTOL * scale + 1e-6, f"{name} {site} layer {L} ({what}): max |diff| {diff:.3g}, scale {scale:.3g}"


def test_collected_activations_match_hf(real_name, real_models, real_folder):
    model = real_models(real_name)
    folder = real_folder(real_name)
    assert model.interp_source["path"] == str(folder)
    tok = tokenizer_of(model)
    encs = encode(tok, PROMPTS, bos="auto", max_length=int(model.cfg.n_ctx))
    ref = _hf_reference(folder, encs)

    # the last token: left-padded batch, and one prompt at a time (no padding)
    for batch_size, what in ((len(PROMPTS), "batched, left-padded"), (1, "one at a time")):
        acts = interp.collect(model, PROMPTS, SITES, positions="last", batch_size=batch_size,
                              padding_side="left", progress=False)
        for s in SITES:
            got = acts[s].transpose(0, 1)  # [layer, prompt, width]
            want = torch.stack([r[:, -1] for r in ref[s]], dim=1)
            _check(real_name, s, got, want, f"last token, {what}")

    # every token (BOS excluded), right-padded batch
    for s in SITES:
        by_layer = collect_tokens_by_layer(model, PROMPTS, s, batch_size=len(PROMPTS), progress=False)
        first = by_layer[0]
        want = torch.stack([
            torch.stack([ref[s][int(p)][L, int(q)] for p, q in zip(first.prompt, first.position)])
            for L in range(len(by_layer))
        ])
        got = torch.stack([by_layer[L].X for L in range(len(by_layer))])
        _check(real_name, s, got, want, "every token, right-padded")

    print(f"\nmax |toolkit - HF| for {real_name} (float32, {model.cfg.n_layers} layers, all sites/layers/tokens):")
    for s in SITES:
        print(f"  {s:<10} {FIGURES[real_name][s]:.3g}   (relative to the layer's max |HF|: {RELATIVE[real_name][s]:.2g})")
