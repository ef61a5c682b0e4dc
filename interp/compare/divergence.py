"""The divergence section of :func:`interp.compare.compare`: where, layer by layer and token by token, did
post-training change the model?

Both models read the same neutral text (:mod:`interp.compare._corpus`: a built-in set, the organism's own on the
bundled organism, or the user's file; at most ``n_texts`` texts, the first ``max_tokens`` tokens of each) and
their ``resid_post`` is taken at every block and every token **except BOS** (an attention sink: its norm is 2 to 28
times the other tokens' mean over gemma-3-270m's layers, so it would weigh up to hundreds of tokens in a second
moment). Per layer ``l``, over those ``n`` tokens (rows paired: the same token in both models):

* **CKA** (:func:`interp.geometry.linear_cka`): linear centred kernel alignment of the ``[n, d]`` base and post
  matrices (Kornblith, Norouzi, Lee & Hinton 2019, ICML), ``cka`` debiased (each HSIC replaced by the unbiased
  estimator of Song et al. 2012, as Kornblith's notebook does: centred on 0 for unrelated matrices at any ``n``)
  and ``cka_biased`` (the common one; biased upward when ``n`` is not much larger than ``d``). 1 = the same
  representation up to rotation and scale.
* **Relative change** ``rel_change``: the mean over tokens of ``||h_post - h_base|| / ||h_base||``.
* **Logit lens** (nostalgebraist 2020): each model's state decoded by *its own* final norm and unembedding
  (``unembed(ln_final(h))``, with the model's logit soft-cap where its config has one), ``log_softmax`` over the
  full vocabulary; ``kl`` = mean over tokens of ``KL(base || post)`` and ``js`` of the Jensen-Shannon divergence,
  in nats (:func:`interp.geometry.next_token_divergence`). At the last layer this *is* the two models' next-token
  divergence: the section checks, on the first text, that the lens there reproduces each model's own output
  (the setup gives the largest KL between them). At early layers the lens is a reading, not what either model
  predicts (Belrose et al. 2023 train a "tuned lens" for this reason): compare base and post *at* a layer, and
  read the curve's rise, not its early values.
* **Per token** (table ``tokens``): the ``n_top`` tokens with the largest KL at ``table_layer`` (default: the last,
  the models' own predictions), with their context, the next token of the text, and each model's top prediction
  there: where post-training acted.

**Intervals.** Means over tokens (``rel_change``, ``kl``, ``js``): 95% percentile bootstrap over texts (1,000
resamples, seeded; a text's tokens together, and the texts of one ``meta["group"]``, the translations of one
sentence in ``languages``, together). CKA: 95% delete-a-group jackknife over the same groups (``n_blocks``
blocks, seeded; clipped to CKA's range, [-1, 1] debiased, [0, 1] biased), because a bootstrap resample repeats
texts and repeated rows bias CKA.

**Null** (``_null`` keys): the same measure with the two models' tokens *misaligned*: base's token ``i`` paired
with post's token ``pi(i)``, ``pi`` a seeded derangement over the corpus (one cycle through a random order), the
same pairing for every measure. It is what the measure gives when the two models' states or predictions have
nothing to do with each other at the same token: about 0 for debiased CKA (the biased one stays above 0, more
so the smaller ``n`` is against ``d``), and the scale of *unrelated* states or predictions for the relative
change, KL and JS, so the observed value reads as a share of it. An unchanged model gives exactly 0 (KL, JS,
relative change) and 1 (CKA): the known answers. The null KL and JS are averaged over the first
:data:`NULL_TOKENS` tokens of the random order (a reference level; each costs one more full-vocabulary divergence
per layer).

Cost model (CPU, float32, one thread; ``n`` tokens, ``L`` layers, vocabulary ``V``, width ``d``): the lens is
``2 L n`` rows of ``d x V`` matmul plus ``L (n + NULL_TOKENS)`` full-vocabulary divergences in float64
(:func:`~interp.geometry.next_token_divergence`, about 30 ms per row at ``V`` = 262k); CKA is
``2 L (1 + n_blocks)`` calls of :func:`~interp.geometry.linear_cka`. Measured with the defaults (24 texts of the
``languages`` set, at most 32 tokens each): google/gemma-3-270m's pair (``gemma-270m-organism``: 18 layers, d 640,
V 262,144) read 269 tokens in 186 to 228 s on 2 CPU cores shared with other work (422 s at load average 5-6), the
lens 219 of the 228 s, about 45 ms per token and layer; the bundled organism (6 layers, V 1,024) 0.5 s. The lens
grows linearly with ``n_texts`` and ``max_tokens``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..geometry import linear_cka, next_token_divergence
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ..sites import check_layers
from ._corpus import (MIN_GROUPS, Corpus, States, as_corpus, check_corpus_choice, corpus_params, group_intervals,
                      jackknife_intervals, load_corpus, token_states)
from ._section import Param, Section, layer_param, seed_param

__all__ = ["NULL_TOKENS", "SECTION", "divergence_section", "lens_logprobs", "misaligned"]

log = logging.getLogger(__name__)

_MODELS = ("base", "post")
#: Tokens (of the seeded random order) over which the null KL and JS are averaged.
NULL_TOKENS = 64
#: Floats of one ``[rows, vocabulary]`` block of lens log-probabilities (32 MB in float32).
_LENS_BLOCK = 1 << 23
#: Largest KL (nats) allowed between a model's own next-token distribution and its lens at the last layer.
_LENS_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
_LENS_TOLERANCE_LOW = 5e-2  # bfloat16 / float16 weights
#: Per-layer means over tokens (bootstrap intervals) and statistics of the whole token matrix (jackknife intervals).
_MEANS = ("rel_change", "kl", "js")
_MATRIX = ("cka", "cka_biased")


# ------------------------------------------------------------------------------------------------ measures


def misaligned(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, pi)``: a seeded random order of the ``n`` rows and the derangement ``pi`` that pairs each row with
    the next one in that order (the last with the first): ``pi[order[j]] = order[j + 1]``. No row is paired with
    itself (``n >= 2``)."""
    order = np.random.default_rng(seed).permutation(n)
    pi = np.empty(n, dtype=int)
    pi[order] = np.roll(order, -1)
    return order, pi


def lens_logprobs(model, X: torch.Tensor) -> torch.Tensor:
    """``[rows, vocab]`` float32 log-probabilities of the logit lens of ``[rows, d]`` states: the model's own final
    norm and unembedding (its logit soft-cap ``c * tanh(logits / c)`` where ``cfg.output_logits_soft_cap > 0``,
    as Gemma 2 applies), then ``log_softmax`` in float32."""
    weight = next(model.ln_final.parameters(), None)
    weight = next(model.unembed.parameters()) if weight is None else weight
    with torch.inference_mode():
        h = X.to(device=weight.device, dtype=weight.dtype)[None]
        logits = model.unembed(model.ln_final(h))[0].float()
        cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return torch.log_softmax(logits, -1).cpu()


def _lens_check(pair: ModelPair, states: States) -> dict[str, float]:
    """Per model, the largest KL (nats) over the first text's tokens between the model's own next-token
    distribution (a full forward pass) and its logit lens at the last layer.

    Raises:
        RuntimeError: above the tolerance for the model's dtype: something between the last block and the logits
            (a logit scale, a soft-cap the config does not name) is not reproduced, so no lens figure would mean
            what it says.
    """
    text = int(states.text[0])
    rows = np.flatnonzero(states.text == text)
    out = {}
    for m, model in pair:
        ids = torch.tensor(states.encodings[text].ids, device=model.cfg.device or "cpu")[None]
        with torch.inference_mode():
            logits = model(ids)[0].float()
        own = torch.log_softmax(logits[torch.as_tensor(states.position[rows])], -1).cpu()
        lens = lens_logprobs(model, states.X[m][-1][rows])
        gap = float(np.max(next_token_divergence(own, lens).kl))
        dtype = next(model.unembed.parameters()).dtype
        tolerance = _LENS_TOLERANCE.get(dtype, _LENS_TOLERANCE_LOW)
        if not gap <= tolerance:
            raise RuntimeError(f"the logit lens of {m} at its last layer (ln_final then unembed) differs from its own "
                               f"next-token distribution by KL {gap:.3g} nats on the first corpus text (tolerance "
                               f"{tolerance:g} for {dtype}): the model does something after the final norm that the "
                               f"lens does not, so the section's lens figures would not mean what they say")
        out[m] = gap
    return out


def _lens(pair: ModelPair, states: States, order: np.ndarray, table_layer: int, progress: bool) -> dict:
    """Per layer and token, KL(base || post) and JS of the two lenses (``[layer, n]``); over the first
    :data:`NULL_TOKENS` rows of ``order``, the same with post's token the next in the order (the null); at
    ``table_layer`` each model's top prediction and its probability (``[n]``)."""
    from .._progress import tqdm

    n, n_layers = states.n, states.X["base"].shape[0]
    vocab = int(pair.base.cfg.d_vocab)
    step = max(2, min(n, _LENS_BLOCK // vocab))
    n_null = min(n, NULL_TOKENS)
    kl, js = np.empty((n_layers, n)), np.empty((n_layers, n))
    kl_null, js_null = np.empty((n_layers, n_null)), np.empty((n_layers, n_null))
    top = {m: np.empty(n, dtype=int) for m in _MODELS}
    top_p = {m: np.empty(n) for m in _MODELS}
    models = dict(pair)
    chunks = [(s, min(n, s + step)) for s in range(0, n, step)]
    bar = tqdm(total=n_layers * len(chunks), desc="logit lens", disable=not progress)
    for layer in range(n_layers):
        for s, e in chunks:
            rows = order[s:e]
            wanted = np.concatenate([rows, [order[e % n]]]) if s < n_null else rows  # the null's partner too
            lp = {m: lens_logprobs(models[m], states.X[m][layer][torch.as_tensor(rows if m == "base" else wanted)])
                  for m in _MODELS}
            d = next_token_divergence(lp["base"], lp["post"][:len(rows)])
            kl[layer, rows], js[layer, rows] = d.kl, d.js
            if s < n_null:
                k = min(e, n_null) - s
                dn = next_token_divergence(lp["base"][:k], lp["post"][1:k + 1])
                kl_null[layer, s:s + k], js_null[layer, s:s + k] = dn.kl, dn.js
            if layer == table_layer:
                for m in _MODELS:
                    p, i = lp[m][:len(rows)].max(-1)
                    top[m][rows], top_p[m][rows] = i.numpy(), p.exp().double().numpy()
            bar.update()
    bar.close()
    return {"kl": kl, "js": js, "kl_null": kl_null.mean(1), "js_null": js_null.mean(1), "top": top, "top_p": top_p,
            "n_null": n_null}


def _relative_change(states: States, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``([layer, n], [layer])``: ``||h_post - h_base|| / ||h_base||`` per token, and its mean with post's token
    misaligned by ``pi`` (the null). NaN (undefined) where ``h_base`` is zero."""
    n_layers = states.X["base"].shape[0]
    rel, null = np.empty((n_layers, states.n)), np.empty((n_layers, states.n))
    for layer in range(n_layers):  # one layer at a time: float64 copies of [n, d], not of [layer, n, d]
        base, post = states.X["base"][layer].double(), states.X["post"][layer].double()
        norm = base.norm(dim=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel[layer] = ((post - base).norm(dim=-1) / norm).numpy()
            null[layer] = ((post[torch.as_tensor(pi)] - base).norm(dim=-1) / norm).numpy()
    rel[~np.isfinite(rel)], null[~np.isfinite(null)] = np.nan, np.nan
    return rel, null.mean(1)


def _cka(states: States, rows: np.ndarray, pi: np.ndarray | None = None) -> np.ndarray:
    """``[2, layer]``: debiased and biased linear CKA of base and post over ``rows`` (post's rows ``pi[rows]``
    where given: misaligned); NaN where undefined."""
    base, post = states.X["base"], states.X["post"]
    other = rows if pi is None else pi[rows]
    out = np.empty((2, base.shape[0]))
    for layer in range(base.shape[0]):
        X, Y = base[layer][torch.as_tensor(rows)], post[layer][torch.as_tensor(other)]
        out[0, layer] = linear_cka(X, Y, debiased=True) if len(rows) >= 4 else np.nan
        out[1, layer] = linear_cka(X, Y)
    return out


# ------------------------------------------------------------------------------------------------ figures


def _curves(states: States, lens: dict, rel: np.ndarray, rel_null: np.ndarray, pi: np.ndarray, *, seed: int,
            n_blocks: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-layer series ``{key: [layer]}`` (module docstring) and why an entry is undefined ``{key: reason}``."""
    from probes.stats import N_RESAMPLES

    n_layers = rel.shape[0]
    why: dict[str, str] = {}
    out: dict[str, np.ndarray] = {}
    per_token = {"rel_change": rel, "kl": lens["kl"], "js": lens["js"]}
    stacked = np.concatenate([per_token[k] for k in _MEANS])  # [3 layer, n]
    every = np.arange(states.n)
    for i, key in enumerate(_MEANS):
        out[key] = stacked[i * n_layers:(i + 1) * n_layers].mean(1)
    ci = group_intervals(lambda r: stacked[:, r].mean(1), states.groups, seed=seed, n_resamples=N_RESAMPLES)
    for i, key in enumerate(_MEANS):
        part = slice(i * n_layers, (i + 1) * n_layers)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = ((np.full(n_layers, np.nan),) * 2 if ci is None else
                                                       (ci[0][part], ci[1][part]))
    out["rel_change_null"], out["kl_null"], out["js_null"] = rel_null, lens["kl_null"], lens["js_null"]
    found = {}
    for key, pairing in (("cka", None), ("cka_null", pi)):  # each with why it is undefined, where it is
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            found[key] = _cka(states, every, pairing)
        if caught:
            why[key] = str(caught[0].message)
    cka, null = found["cka"], found["cka_null"]
    if states.n < 4:
        why["cka"] = f"debiased CKA needs at least 4 tokens; the corpus gave {states.n}"
    jack = jackknife_intervals(lambda r: _cka(states, r).ravel(), states.groups, cka.ravel(), seed=seed,
                               n_blocks=n_blocks)
    for i, key in enumerate(_MATRIX):
        out[key], out[f"{key}_null"] = cka[i], null[i]
        part = slice(i * n_layers, (i + 1) * n_layers)
        # CKA lies in [-1, 1] (Cauchy-Schwarz; [0, 1] biased): the jackknife's symmetric interval is clipped to it
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = ((np.full(n_layers, np.nan),) * 2 if jack is None else
                                                       (np.clip(jack[0][part], -1.0 if i == 0 else 0.0, 1.0),
                                                        np.clip(jack[1][part], -1.0 if i == 0 else 0.0, 1.0)))
    if ci is None or jack is None:
        why["intervals"] = (f"the corpus has {states.n_groups} group(s) of texts; intervals need at least "
                            f"{MIN_GROUPS}")
    for key in _MEANS:
        if not np.isfinite(out[key]).all():
            why.setdefault(key, "a token whose base state is zero has no relative change" if key == "rel_change"
                           else "a divergence is infinite at some token")
    return out, why


def _token_rows(pair: ModelPair, states: States, lens: dict, table_layer: int, n_top: int) -> list[list]:
    """The ``n_top`` tokens with the largest KL at ``table_layer`` (ties: corpus order), largest first."""
    from ..models import tokenizer_of
    from ..tokens import display_token, shown_whitespace

    tok = tokenizer_of(pair.base)
    kl, js = lens["kl"][table_layer], lens["js"][table_layer]
    order = np.lexsort((np.arange(states.n), -kl))[:n_top]
    rows = []
    for rank, i in enumerate(order, start=1):
        before, token = states.rows.context(int(i), tok)
        nxt = int(states.next_ids[i])
        rows.append([rank, int(states.text[i]), int(states.position[i]), "…" + before, shown_whitespace(token),
                     "(end of text)" if nxt < 0 else display_token(tok, nxt), float(kl[i]), float(js[i]),
                     display_token(tok, int(lens["top"]["base"][i])), float(lens["top_p"]["base"][i]),
                     display_token(tok, int(lens["top"]["post"][i])), float(lens["top_p"]["post"][i])])
    return rows


def _num(x, digits: int = 3) -> str:
    return "undefined" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _ci(curves: dict, key: str, layer: int) -> str:
    lo, hi = curves[f"{key}_ci_low"][layer], curves[f"{key}_ci_high"][layer]
    return "[no interval]" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3g}, {hi:.3g}]"


def _at(curves: dict, key: str, layer: int, unit: str = "") -> str:
    return f"{_num(curves[key][layer])}{unit and ' ' + unit} {_ci(curves, key, layer)} at layer {layer}"


def _finite_arg(values: np.ndarray, pick) -> int | None:
    finite = np.isfinite(values)
    return None if not finite.any() else int(np.flatnonzero(finite)[pick(values[finite])])


def _emergence(kl: np.ndarray) -> str:
    """How the lens KL runs over layers: where it is largest and, when that is the last layer, where it first
    reaches half of it."""
    peak, low = _finite_arg(kl, np.argmax), _finite_arg(kl, np.argmin)
    if peak is None:
        return "it is undefined at every layer"
    if kl[peak] <= 0:
        return "it is 0 at every layer"
    if peak == len(kl) - 1:
        half = next(layer for layer in range(len(kl)) if math.isfinite(kl[layer]) and kl[layer] >= kl[peak] / 2)
        if half == peak and peak > 0:
            return (f"it is largest at the last layer, and no earlier layer reaches half of that (layer {peak - 1}: "
                    f"{_num(kl[peak - 1])} nats)")
        return f"it is largest at the last layer and first reaches half of that at layer {half}"
    return (f"over layers it is largest at layer {peak} ({_num(kl[peak])} nats) and smallest at layer {low} "
            f"({_num(kl[low])} nats)")


def _summary(curves: dict, states: States, corpus: Corpus, lens: dict, token_rows: list, table_layer: int,
             max_tokens: int, why: dict) -> str:
    last = len(curves["kl"]) - 1
    parts = [f"On {states.n} tokens of {states.n_texts} texts ({corpus.source}; at most {max_tokens} per text, BOS "
             f"excluded):"]
    low, high = _finite_arg(curves["cka"], np.argmin), _finite_arg(curves["cka"], np.argmax)
    if low is None:
        parts.append(f"debiased CKA of base and post is undefined ({why.get('cka', 'no finite value')});")
    else:
        null = curves["cka_null"][np.isfinite(curves["cka_null"])]
        span = f"{_num(null.min())} to {_num(null.max())}" if len(null) else f"undefined, {why.get('cka_null')}"
        biased = curves["cka_biased"][np.isfinite(curves["cka_biased"])]
        parts.append(f"debiased CKA of base and post is lowest {_at(curves, 'cka', low)} and highest "
                     f"{_at(curves, 'cka', high)} (misaligned tokens: {span}; biased CKA "
                     + (f"{_num(biased.min())} to {_num(biased.max())});" if len(biased) else "undefined);"))
    big = _finite_arg(curves["rel_change"], np.argmax)
    if big is not None:
        parts.append(f"the relative change ||post − base|| / ||base|| is largest {_at(curves, 'rel_change', big)} "
                     f"(misaligned tokens: {_num(curves['rel_change_null'][big])});")
    parts.append(f"logit-lens KL(base ‖ post) at the last layer, the two models' own next-token divergence, is "
                 f"{_at(curves, 'kl', last, 'nats')} (JS {_num(curves['js'][last])} {_ci(curves, 'js', last)}; "
                 f"misaligned tokens: KL {_num(curves['kl_null'][last])}, JS {_num(curves['js_null'][last])}); "
                 f"{_emergence(curves['kl'])}.")
    if token_rows:
        shown = "; ".join(f"{r[4]!r} after {r[3]!r} (KL {_num(r[6])}; base predicts {r[8]!r}, post {r[10]!r})"
                          for r in token_rows[:3])
        parts.append(f"Largest layer-{table_layer} KL at: {shown}.")
    if "intervals" in why:
        parts.append(f"No intervals: {why['intervals']}.")
    return " ".join(parts)


def _headline(curves: dict) -> str:
    last = len(curves["kl"]) - 1
    low = _finite_arg(curves["cka"], np.argmin)
    cka = "undefined" if low is None else f"{_num(curves['cka'][low])} (layer {low})"
    return (f"Lowest debiased CKA of base and post {cka}; last-layer KL(base ‖ post) "
            f"{_num(curves['kl'][last])} nats {_ci(curves, 'kl', last)} (misaligned tokens: "
            f"{_num(curves['kl_null'][last])}).")


_READINGS = {
    "cka": "Linear CKA of the base and post residual states over the corpus tokens, per layer (1: the same "
           "representation up to rotation and scale), debiased (Song et al.'s unbiased HSIC) and biased, with 95% "
           "delete-a-group jackknife bands over texts. Grey: the same with each base token paired with another "
           "token's post state (misaligned): near 0 debiased; the biased CKA's floor at this many tokens.",
    "rel_change": "Mean ||h_post − h_base|| / ||h_base|| over the corpus tokens, per layer, with a 95% bootstrap "
                  "band over texts. Grey: the same with post's state at another token (the scale of unrelated "
                  "states).",
    "lens": "Each model's state decoded by its own final norm and unembedding (logit lens): mean KL(base ‖ post) "
            "and Jensen-Shannon divergence over the corpus tokens, nats, with 95% bootstrap bands over texts. At "
            "the last layer it is the two models' own next-token divergence; at early layers the lens is a "
            "reading of the state, not a prediction either model makes. Grey: the same with post's prediction at "
            "another token (the scale of unrelated predictions).",
}


def _plots() -> list[dict]:
    return [
        {"title": "Linear CKA of base and post, per layer", "reading": "cka", "yaxis": "CKA",
         "series": {"cka": "debiased CKA", "cka_biased": "biased CKA"},
         "nulls": {"cka_null": "debiased, misaligned tokens", "cka_biased_null": "biased, misaligned tokens"}},
        {"title": "Relative change of the residual state, ||post − base|| / ||base||", "reading": "rel_change",
         "yaxis": "relative change", "series": {"rel_change": "relative change"},
         "nulls": {"rel_change_null": "misaligned tokens"}},
        {"title": "Logit lens: divergence of base's and post's next-token distributions, per layer",
         "reading": "lens", "series": {"kl": "KL(base ‖ post)", "js": "Jensen-Shannon"},
         "nulls": {"kl_null": "KL, misaligned tokens", "js_null": "JS, misaligned tokens"},
         "panels": [{"keys": ["kl", "kl_null"], "yaxis": "KL(base ‖ post), nats"},
                    {"keys": ["js", "js_null"], "yaxis": "JS, nats", "yrange": [0, math.log(2) * 1.02]}]},
    ]


def _layer_rows(curves: dict) -> list[list]:
    def cell(key, layer):
        v = curves[key][layer]
        return float(v) if math.isfinite(v) else "undefined"

    def interval(key, layer):  # [low, high], rounded and aligned by the report as an interval
        lo, hi = curves[f"{key}_ci_low"][layer], curves[f"{key}_ci_high"][layer]
        return [float(lo), float(hi)] if math.isfinite(lo) and math.isfinite(hi) else "no interval"

    return [[layer, *(x for key in ("cka", "cka_biased", "rel_change", "kl", "js")
                      for x in (cell(key, layer), interval(key, layer), cell(f"{key}_null", layer)))]
            for layer in range(len(curves["kl"]))]


def _tables(curves: dict, token_rows: list, table_layer: int) -> dict:
    cols = ["layer"] + [c for name in ("debiased CKA", "biased CKA", "relative change", "KL(base ‖ post), nats",
                                       "JS, nats") for c in (name, "95% CI", "misaligned (null)")]
    return {
        "layers": {"title": "Per layer (CKA: jackknife intervals; relative change, KL, JS: bootstrap over texts)",
                   "columns": cols, "rows": _layer_rows(curves)},
        "tokens": {"title": f"Where post-training acted: the tokens with the largest layer-{table_layer} KL(base ‖ "
                            "post) of the logit lens (each model's top next token there, and its probability)",
                   "columns": ["rank", "text", "position", "context", "token", "next token in the text",
                               "KL (nats)", "JS (nats)", "base: top next token", "base: its p",
                               "post: top next token", "post: its p"],
                   "rows": token_rows},
    }


def _setup(corpus: Corpus, states: States, max_tokens: int, lens: dict, check: dict, table_layer: int, seed: int,
           n_blocks: int, batch_size: int, why: dict) -> dict:
    from ._corpus import jackknife_blocks

    k = int(jackknife_blocks(states.groups, n_blocks, seed).max()) + 1
    setup = {
        "corpus": corpus.source,
        "tokens": f"{states.n} tokens of {states.n_texts} texts ({states.n_groups} bootstrap groups), at most "
                  f"{max_tokens} per text after BOS; the BOS position is excluded (an attention sink, whose norm "
                  "would dominate the second moments); the same tokens in both models, row for row",
        "site": "resid_post of every block (the output of block l)",
        "CKA": "interp.geometry.linear_cka over tokens: debiased (Song et al. 2012's unbiased HSIC, as Kornblith's "
               "notebook) and biased (Kornblith et al. 2019)",
        "relative change": "mean over tokens of ||h_post − h_base|| / ||h_base||",
        "logit lens": "each model's own ln_final then unembed (soft-cap where the config has one), log_softmax over "
                      "the full vocabulary; KL(base ‖ post) and JS in nats (interp.geometry.next_token_divergence); "
                      "checked on the first text: the lens at the last layer is each model's own next-token "
                      "distribution to KL " + ", ".join(f"{m} {check[m]:.2g}" for m in _MODELS) + " nats",
        "null": f"misaligned tokens: base's token i with post's token pi(i), pi a seeded derangement (one cycle "
                f"through a random order of the tokens), the same for every measure; KL and JS over the first "
                f"{lens['n_null']} tokens of that order",
        "per-token table": f"layer {table_layer}, largest KL first",
        "intervals": f"95%: percentile bootstrap over texts (1,000 resamples, seeded; a group's texts together) for "
                     f"the means; delete-a-group jackknife (t with K − 1 df, K = {k} blocks of groups, seeded) for "
                     "CKA, clipped to its range",
        "seed": seed, "batch_size": batch_size,
    }
    if why:
        setup["undefined"] = why
    return setup


# ------------------------------------------------------------------------------------------------ section


def divergence_section(pair: ModelPair, texts: Sequence[str], *, groups: Sequence | None = None,
                       corpus_source: str = "corpus", max_tokens: int = 32, table_layer: int | None = None,
                       n_top: int = 20, n_blocks: int = 20, seed: int = 0, batch_size: int = 16,
                       progress: bool = True) -> ConceptResult:
    """Compare base and post layer by layer and token by token on neutral text (module docstring).

    Args:
        pair: the booted :class:`~interp.ModelPair` (one tokenizer: the rows are paired token for token).
        texts: the corpus, every text read (a :class:`~interp.datasets.PromptSet` or strings).
        groups: ``[len(texts)]`` texts of one group are resampled together (translations of one sentence); default
            ``meta["group"]`` of a PromptSet, else each text its own.
        corpus_source: what the texts are, for the setup and summary.
        max_tokens: tokens read per text after BOS (the first ones).
        table_layer: the layer of the per-token table (default the last: the models' own predictions; negative
            counts from the end).
        n_top: rows of the per-token table. n_blocks: jackknife blocks of the CKA intervals.
        seed: of the misaligned pairing, the bootstrap and the jackknife blocks.
        batch_size: texts per forward pass. progress: progress bars.

    Returns:
        A :class:`~interp.report.ConceptResult` ``"divergence"`` with, per layer, ``cka`` and ``cka_biased``
        (dimensionless, <= 1), ``rel_change`` (dimensionless), ``kl`` and ``js`` (nats), each with
        ``_ci_low``/``_ci_high`` and ``_null`` (None where undefined; why in ``setup["undefined"]``); tables
        ``layers`` and ``tokens``; three plots; ``readings["summary"]`` and ``readings["headline"]``, written from
        the figures.

    Raises:
        ValueError: fewer than 2 texts, ``groups`` of another length, a ``table_layer`` outside the model, no token
            besides BOS, models that tokenise the corpus differently, bad counts.
        RuntimeError: the logit lens at the last layer does not reproduce a model's own next-token distribution.
    """
    from .._checks import check_int

    for name, value in (("max_tokens", max_tokens), ("n_top", n_top), ("batch_size", batch_size)):
        check_int(name, value)
    if check_int("n_blocks", n_blocks) < MIN_GROUPS:
        raise ValueError(f"n_blocks must be >= {MIN_GROUPS}; got {n_blocks}")
    n_layers = pair.n_layers
    try:
        table_layer = check_layers(n_layers - 1 if table_layer is None else table_layer, n_layers)[0]
    except ValueError as e:
        raise ValueError(f"table_layer: {e}") from None
    meta = getattr(texts, "meta", None)
    texts = list(getattr(texts, "texts", texts))
    if groups is not None:
        if len(groups) != len(texts):
            raise ValueError(f"groups has {len(groups)} entries for {len(texts)} texts")
        meta = [{"group": str(g)} for g in groups]
    corpus = as_corpus(texts, meta, corpus_source)
    states = token_states(pair, corpus, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
    if states.n < 2:
        raise ValueError(f"the corpus gives {states.n} token(s) besides BOS; at least 2 are needed")
    check = _lens_check(pair, states)
    order, pi = misaligned(states.n, seed)
    lens = _lens(pair, states, order, table_layer, progress)
    rel, rel_null = _relative_change(states, pi)
    curves, why = _curves(states, lens, rel, rel_null, pi, seed=seed, n_blocks=n_blocks)
    per_layer = [{"layer": layer, **{k: float(v[layer]) for k, v in curves.items()}} for layer in range(n_layers)]
    token_rows = _token_rows(pair, states, lens, table_layer, n_top)
    readings = {"summary": _summary(curves, states, corpus, lens, token_rows, table_layer, max_tokens, why),
                "headline": _headline(curves), **_READINGS}
    setup = _setup(corpus, states, max_tokens, lens, check, table_layer, seed, n_blocks, batch_size, why)
    return ConceptResult("divergence", list(range(n_layers)), per_layer, long_rows(per_layer), readings=readings,
                         setup=setup, plots=_plots(), tables=_tables(curves, token_rows, table_layer))


def _run(ctx, *, corpus: str = "languages", data: str | None = None, n_texts: int = 24, **options) -> ConceptResult:
    c = load_corpus(ctx, corpus, data, n_texts, options["seed"])
    return divergence_section(ctx.pair, c.texts, groups=c.groups, corpus_source=c.source, progress=ctx.progress,
                              **options)


def _validate(options: dict, given: frozenset) -> None:
    check_corpus_choice("divergence", options, given)


SECTION = Section("divergence", _run, validate=_validate,
                  help="where post-training changed the model: CKA, relative change and logit-lens KL/JS of base "
                       "and post per layer, and the tokens where they diverge most", params=(
    *corpus_params("the two models read", 24),
    layer_param("table_layer", "layer of the per-token table of the largest KL (default: the last, the models' own "
                               "next-token predictions; -1 is the last)"),
    Param("n_top", int, 20, "rows of the per-token table", low=1),
    Param("n_blocks", int, 20, f"blocks of text groups of the delete-a-group jackknife behind the CKA intervals "
                               f"(CKA is recomputed once per block; at least {MIN_GROUPS})", low=MIN_GROUPS),
    seed_param("seed of the text draw, the misaligned pairing (null), the bootstrap and the jackknife "
                          "blocks"),
    Param("batch_size", int, 16, "texts per forward pass", low=1),
))
