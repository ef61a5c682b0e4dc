"""SNMF features of MLP activations: describe them, steer with them, match them across base and post.

The ``snmf`` section of :func:`interp.compare.compare` (Shafran, Geiger & Geva
2025, "Decomposing MLP activations into interpretable features via
semi-nonnegative matrix factorization"):

* at every layer, :class:`probes.SNMF` is fitted on each model's ``mlp_post``
  activations of every token (BOS excluded) of the same prompts, and the two
  feature sets are matched one-to-one by cosine in neuron space (Hungarian
  algorithm; fine-tuning keeps neuron indices). Per layer: mean matched
  cosine, the share of features with a counterpart (matched cosine ≥ 0.5;
  the rest are new in post or lost from base), relative reconstruction error,
  and how coefficient usage shifted between matched features;
* at one layer (default: the middle), each post feature is described by its
  top-activating tokens in context and its output-vocabulary projection
  (logit lens: feature → MLP output weights → unembedding);
* the most used post features are steered: ``±α·(unit feature)`` added at the
  same layer's ``mlp_post`` at every position, ``α`` calibrated by bisection
  to a target next-token KL on a neutral prompt
  (:func:`steering.calibrate_scale`), and the generations are scored by the
  share of generated tokens among the feature's logit-lens top tokens,
  against unsteered generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .collection import collect_tokens_by_layer
from .datasets import load
from .models import ModelPair, tokenizer_of
from .report import ConceptResult, long_rows

__all__ = ["FeatureCard", "describe_features", "logit_lens", "snmf_section"]

log = logging.getLogger(__name__)

#: Prompts the organism steers from (neutral: no concept of the planted ones).
NEUTRAL = ("The", "I think that", "Here is a short story:", "It was a")


@dataclass(frozen=True)
class FeatureCard:
    """One feature: index, usage (mean coefficient), top tokens in context, logit-lens tokens."""

    index: int
    usage: float
    top_tokens: list[tuple[str, str, float]]
    """``(context before, token, coefficient)`` of the most activating tokens"""
    logit_lens: list[tuple[str, float]]
    """``(token, logit)`` of the largest entries of the feature's vocabulary projection"""
    neurons: list[int]


def logit_lens(model, layer: int, features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[k, d_vocab]`` projection of ``[k, d_mlp]`` features through ``W_out[layer]`` and ``W_U``."""
    F = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    W_out = model.W_out[layer].detach().float().cpu()  # [d_mlp, d_model]
    W_U = model.W_U.detach().float().cpu()  # [d_model, d_vocab]
    return F @ W_out @ W_U


def describe_features(model, snmf, tokens, layer: int, coefficients: np.ndarray | None = None, *,
                      top_k: int = 6, n_logits: int = 8, context: int = 6) -> list[FeatureCard]:
    """A :class:`FeatureCard` per feature of a fitted :class:`probes.SNMF`.

    ``tokens``: the :class:`interp.collection.TokenActivations` it was fitted on
    (or others of the same layer); ``coefficients``: their ``[n_tokens, k]``
    coefficients if already known (else ``snmf.transform``).
    """
    tok = tokenizer_of(model)
    G = snmf.transform(tokens.X) if coefficients is None else np.asarray(coefficients)
    lens = logit_lens(model, layer, snmf.components_)
    cards = []
    for j in range(G.shape[1]):
        rows = np.argsort(-G[:, j])[:top_k]
        tops = []
        for r in rows:
            before, token = tokens.context(int(r), tok, before=context)
            tops.append((before, token, float(G[r, j])))
        vals, ids = lens[j].topk(n_logits)
        logits = [(tok.decode([int(i)]), float(v)) for v, i in zip(vals, ids)]
        neurons = np.nonzero(snmf.components_[j])[0].tolist()
        cards.append(FeatureCard(j, float(G[:, j].mean()), tops, logits, neurons))
    return cards


def _prompts(pair: ModelPair, is_organism: bool, n: int, data=None) -> tuple[list[str], list[str]]:
    """``n`` training prompts split evenly over the section's sets, and those sets' sources."""
    if is_organism:
        names, loader = ("organism/truth", "organism/languages", "organism/refusal"), load
    elif data is not None:
        names, loader = ("snmf", "truth", "refusal"), data.load
    else:
        names, loader = ("truth", "refusal"), load
    out, sources = [], []
    for name in names:
        ps = loader(name, "train")
        sources.append(ps.source)
        texts = list(pair.format(ps, "chat").texts) if name.endswith("refusal") and pair.chat_template else list(ps.texts)
        out += texts[: n // len(names)]
    return out, sources


def _share(texts: list[str], tok, targets: set[int]) -> float:
    ids = [t for text in texts for t in tok(text, add_special_tokens=False)["input_ids"]]
    return sum(t in targets for t in ids) / max(len(ids), 1)


def snmf_section(pair: ModelPair, *, is_organism: bool = False, n_components: int = 24, sparsity: float | None = None,
                 layer: int | None = None, n_prompts: int = 480, target_kl: float = 0.5, n_steer: int = 6,
                 max_new_tokens: int = 12, progress: bool = True, random_state: int = 0,
                 data=None) -> ConceptResult:
    """Fit, describe, steer and match SNMF features (see the module docstring).

    ``data``: a :class:`~interp.datasets.PublicSets`; its SNMF concept sentences, Geometry-of-Truth
    statements and Arditi requests replace the built-in prompts (ignored on the bundled organism).
    """
    from probes import SNMF, match_features
    from steering import SteeringVector, calibrate_scale, generate

    prompts, sources = _prompts(pair, is_organism, n_prompts, data)
    n_layers, d_mlp = pair.n_layers, int(pair.post.cfg.d_mlp)
    sparsity = sparsity if sparsity is not None else max(0.01, 10 / d_mlp)
    layer = n_layers // 2 if layer is None else layer
    per_layer, fits, token_sets = [], {}, {}
    tokens_of = {name: collect_tokens_by_layer(model, prompts, "mlp_post", progress=False) for name, model in pair}
    for L in range(n_layers):
        entry = {"layer": L}
        for name, model in pair:
            tokens = tokens_of[name][L]
            est = SNMF(n_components, sparsity=sparsity, random_state=random_state, max_iter=150)
            G = est.fit_transform(tokens.X)
            fits[name, L] = (est, G)
            token_sets[name, L] = tokens
            entry[f"{name}_relative_error"] = est.reconstruction_err_ / float(tokens.X.norm())
        (eb, Gb), (ep, Gp) = fits["base", L], fits["post", L]
        rows, cols, cos = match_features(eb.components_, ep.components_)
        usage_b, usage_p = Gb.mean(0)[rows], Gp.mean(0)[cols]
        kept = cos >= 0.5
        entry.update({
            "matched_cosine_mean": float(cos.mean()),
            "matched_share": float(kept.mean()),
            "usage_shift": float(np.abs(np.log((usage_p[kept] + 1e-9) / (usage_b[kept] + 1e-9))).mean()) if kept.any()
            else float("nan"),
        })
        entry["matching"] = [[int(r), int(c), float(x)] for r, c, x in zip(rows, cols, cos)]
        per_layer.append(entry)

    # Describe and steer the post model's features at one layer.
    model, tok = pair.post, pair.tokenizer
    est, G = fits["post", layer]
    cards = describe_features(model, est, token_sets["post", layer], layer, G)
    order = sorted(cards, key=lambda c: -c.usage)
    lens = logit_lens(model, layer, est.components_)
    plain = generate(model, list(NEUTRAL), max_new_tokens=max_new_tokens, stop_at_eos=False)
    steer_rows, vectors, unsteerable = [], {}, {}
    for card in order[:n_steer]:
        targets = set(lens[card.index].topk(10).indices.tolist())
        base_share = _share(plain, tok, targets)
        unit = torch.as_tensor(est.components_[card.index]).float()
        vec = SteeringVector(unit[None], (layer,), "mlp_post", meta={"concept": "snmf", "feature": card.index,
                                                                     "model": "post"})
        try:
            cal = calibrate_scale(model, vec, list(NEUTRAL[:1]), target_kl)
        except ValueError as e:
            log.info("feature %d not steerable: %s", card.index, e)
            unsteerable[card.index] = str(e)
            continue
        steered = generate(model, list(NEUTRAL), cal, max_new_tokens=max_new_tokens, stop_at_eos=False)
        share = _share(steered, tok, targets)
        steer_rows.append([card.index, round(card.usage, 4), float(cal.scale), float(cal.meta["calibrated_kl"]),
                           base_share, share, " ".join(t for t, _ in card.logit_lens[:5]), steered[0][:60]])
        vectors[f"post-feature-{card.index}"] = cal
    feature_rows = [[c.index, round(c.usage, 4), " | ".join(f"{b[-25:]}[{t}]" for b, t, _ in c.top_tokens[:3]),
                     " ".join(t for t, _ in c.logit_lens[:6]), len(c.neurons)] for c in order]
    best = max(steer_rows, key=lambda r: r[5] - r[4]) if steer_rows else None
    mid = per_layer[layer]
    readings = {
        "summary": (
            f"Layer {layer}: {mid['matched_share']:.0%} of post features have a base counterpart (mean matched cosine "
            f"{mid['matched_cosine_mean']:.2f}). " + (
                f"Steering post feature {best[0]} (α = {best[2]:.1f}, next-token KL {best[3]:.2f}) raises the share of its "
                f"top logit-lens tokens in generations from {best[4]:.2f} to {best[5]:.2f}." if best else
                f"No feature could be calibrated to the target KL {target_kl}"
                + "".join(f" (feature {i}: {why})" for i, why in list(unsteerable.items())[:1]) + ".")
        ),
        "matching": "Per layer, the SNMF features of base and post matched one-to-one by cosine in neuron space: mean "
                    "matched cosine, share of features with a counterpart (cosine ≥ 0.5), and the mean absolute log-ratio "
                    "of matched features' usage (0 = unchanged).",
        "error": "Reconstruction error of the factorization relative to the activations' norm, per model.",
    }
    tables = {
        "features": {"title": f"Post features at layer {layer} (most used first): top tokens [in context], logit lens",
                     "columns": ["feature", "usage", "top-activating tokens", "logit-lens tokens", "neurons"],
                     "rows": feature_rows},
        "steering": {"title": f"Steering with post features at layer {layer} (α calibrated to KL {target_kl} on "
                              f"{NEUTRAL[0]!r}); share of generated tokens among the feature's top-10 logit-lens tokens",
                     "columns": ["feature", "usage", "alpha", "KL", "share unsteered", "share steered",
                                 "logit-lens tokens", "steered example"],
                     "rows": steer_rows},
    }
    plots = [
        {"title": "Same features in base and post?", "reading": "matching", "yrange": [0, 1.02],
         "xaxis": "layer", "yaxis": "value",
         "series": {"matched_cosine_mean": "mean matched cosine", "matched_share": "share matched (cos ≥ 0.5)",
                    "usage_shift": "usage shift |log ratio|"}},
        {"title": "Reconstruction error", "reading": "error", "xaxis": "layer", "yaxis": "‖A - FG‖ / ‖A‖",
         "series": {"base_relative_error": "base", "post_relative_error": "post"}},
    ]
    directions = {f"{name}/layer{layer}": torch.as_tensor(fits[name, layer][0].components_) for name in ("base", "post")}
    setup = {"site": "mlp_post", "tokens": "every token of the prompts except BOS", "n_prompts": len(prompts), "sources": sources,
             "n_tokens": len(token_sets["post", layer]), "n_components": n_components, "sparsity": sparsity,
             "described layer": layer, "target KL": target_kl, "neutral prompts": list(NEUTRAL),
             "features not steerable": {str(i): why for i, why in unsteerable.items()},
             "method": "Shafran, Geiger & Geva 2025; Ding, Li & Jordan 2010 update"}
    return ConceptResult("snmf", list(range(n_layers)), per_layer, long_rows(per_layer), {}, directions, readings,
                         setup, plots, tables, vectors=vectors)
