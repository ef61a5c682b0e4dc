"""SNMF features of MLP activations: describe them, steer with them, match them across base and post.

The ``snmf`` section of :func:`interp.compare.compare` (Shafran, Geiger & Geva
2025, "Decomposing MLP activations into interpretable features via
semi-nonnegative matrix factorization"):

* at every layer, :class:`probes.SNMF` is fitted on each model's ``mlp_post``
  activations of every token (BOS excluded) of the same prompts, with
  ``n_seeds`` seeds per model, and base's seed-1 features are matched
  one-to-one with post's seed-0 features by cosine in neuron space (Hungarian
  algorithm; fine-tuning keeps neuron indices; different seeds, as in the
  reference below, so neither comparison shares a random draw the other lacks). Per layer: mean matched cosine (with a
  bootstrap interval over the matched pairs), the share of features with a
  counterpart (matched cosine ≥ 0.5; Wilson interval over features),
  relative reconstruction error, and how usage (:func:`probes.feature_usage`)
  shifted between matched features. The reference level (``_null``) is the
  same matching between two seeds of one model, averaged over both models:
  two fits of one model do not give the same features either, so base↔post
  matching means a change only where it falls below that level;
* at one layer (default: the middle), each post feature is described by its
  top-activating tokens in context and its output-vocabulary projection
  (:func:`logit_lens`: feature → MLP output weights → the block's
  post-MLP norm where it has one → final norm → unembedding); the features
  table also counts the fewest neurons holding 90% of each feature's |weight|,
  names the other feature whose coefficients over the tokens are most alike
  (cosine), and lists the features shown with the same contexts;
* the most used post features are steered: ``+α·(unit feature)`` added at the
  same layer's ``mlp_post`` at every position, ``α`` calibrated by bisection
  to a target next-token KL on a neutral prompt
  (:func:`steering.calibrate_scale`), and the generations are scored by the
  share of generated tokens among the feature's top-10 logit-lens tokens,
  against unsteered generation and against 3 random unit directions in the same
  space calibrated to the same KL (the null: any push of that size; the largest
  share they reach), with a bootstrap interval over the prompts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from steering.metrics import MAX_REPETITION, MAX_TOKEN_RUN

from .._progress import tqdm
from ..collection import collect_tokens_by_layer
from ..datasets import load
from ..models import ModelPair, tokenizer_of
from ..report import ConceptResult, long_rows
from ..tokens import display_token, from_a_word, shown_whitespace, tokenize
from ._section import (MAX_SEED, Param, Section, data_param, layer_param, layers_param, parse_layers, provides,
                       tokens_for, user_data)

__all__ = ["SECTION", "FeatureCard", "describe_features", "logit_lens", "shown_context", "snmf_section"]

#: Matched cosine at or above which a feature counts as having a counterpart.
COUNTERPART_COSINE = 0.5

log = logging.getLogger(__name__)

#: Prompts the organism steers from (neutral: no concept of the planted ones).
NEUTRAL = ("The", "I think that", "Here is a short story:", "It was a")


#: Top-activating contexts of a feature the features table shows.
SHOWN_CONTEXTS = 3
#: Characters of context the features table shows before each top-activating token.
SHOWN_CHARS = 25
#: Share of a feature's L1 norm (sum of its neurons' |weight|) the features table counts the fewest neurons up to.
WEIGHT_SHARE = 0.9


def shown_context(before: str, token: str) -> str:
    """A top-activating token as the features table shows it: its context's last :data:`SHOWN_CHARS` characters
    or fewer, cut at a word's start (``…`` marks the cut; a tail without whitespace, e.g. CJK, is cut where it
    falls), then the token in brackets (``"The cat is on the[ table]"``, ``"… sat on the[ table]"``)."""
    if len(before) <= SHOWN_CHARS:
        return f"{before}[{token}]"
    tail = before[-SHOWN_CHARS:]
    if not before[-SHOWN_CHARS - 1].isspace():  # the cut falls inside a word: start at the next one
        tail = from_a_word(tail)
    return f"…{tail}[{token}]"


def _shown_key(before: str, token: str) -> str:
    """What a reader of the HTML report sees of :func:`shown_context`: whitespace runs read as one space."""
    return " ".join(shown_context(before, token).split())


@dataclass(frozen=True)
class FeatureCard:
    """One feature: index, usage (:func:`probes.feature_usage`), top tokens in context, logit-lens tokens."""

    index: int
    usage: float
    top_tokens: list[tuple[str, str, float]]
    """``(context before, token, coefficient)`` of the most activating tokens, largest coefficient first; no
    two read the same in the features table (:func:`shown_context`)"""
    logit_lens: list[tuple[str, float]]
    """``(token, logit)`` of the largest entries of the feature's vocabulary projection (tokens as
    :func:`interp.tokens.display_token` shows them)"""
    neurons: list[int]
    """the neurons with a nonzero weight (their count is set by the fit's sparsity)"""


def _through_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x) - norm(0)`` for ``[k, d_model]`` rows, float32 on CPU: the norm as the model applies it to a
    stream equal to each row, less the row-independent offset (a LayerNorm's bias; 0 for RMSNorm)."""
    module = getattr(norm, "original_component", norm)
    weight = next(module.parameters(), None)
    kw = {} if weight is None else {"dtype": weight.dtype, "device": weight.device}
    with torch.no_grad():
        x = x.to(**kw)
        return (module(x) - module(torch.zeros_like(x))).float().cpu()


def logit_lens(model, layer: int, features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[k, d_vocab]`` logits of each of ``[k, d_mlp]`` features' contribution to the residual stream.

    The feature's MLP output at coefficient 1, ``c = f W_out[layer]`` (``[k, d_model]``), goes through what
    lies between it and the unembedding: the block's own post-MLP norm where it has one (Gemma 2/3's
    post-feedforward RMSNorm, bridge ``blocks.L.ln2_post``; applied to ``c`` as if it were the MLP's whole
    output), then the final norm, then ``W_U``::

        logits = (ln_final(c) - ln_final(0)) W_U

    This is the logit lens (nostalgebraist 2020) of a feature's output, as Geva et al. (2022) project FFN
    value vectors and Shafran et al. (2025) describe SNMF features by the tokens they promote. For RMSNorm
    (Llama, Qwen, Gemma) ``ln_final(c) = c ⊙ g / rms(c)``: each row is the feature's direction scaled by
    the final norm's gain ``g`` (Gemma: ``1 + w``) and a positive factor, so the ranking of tokens is the
    direction's. Subtracting ``ln_final(0)`` drops a LayerNorm's bias (the same offset for every feature).
    Not applied, because they do not change a row's ranking: the unembedding bias and Gemma's final logit
    soft-capping (monotone).

    Args:
        model: a :class:`~transformer_lens.model_bridge.TransformerBridge`.
        layer: the block whose ``mlp_post`` the features live in.
        features: ``[k, d_mlp]``.

    Returns:
        ``[k, d_vocab]`` float32 logits on CPU, in the model's logit units for a residual stream equal to
        the feature's (normed) output.
    """
    F = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    W_out = model.W_out[layer].detach().float().cpu()  # [d_mlp, d_model]
    W_U = model.W_U.detach().float().cpu()  # [d_model, d_vocab]
    out = F @ W_out
    block = model.blocks[layer]
    if "ln2_post" in dict(block.named_children()):
        out = _through_norm(block.ln2_post, out)
    return _through_norm(model.ln_final, out) @ W_U


def describe_features(model, snmf, tokens, layer: int, coefficients: np.ndarray | None = None, *,
                      top_k: int = 6, n_logits: int = 8, context: int = 6) -> list[FeatureCard]:
    """A :class:`FeatureCard` per feature of a fitted :class:`probes.SNMF`.

    ``tokens``: the :class:`interp.collection.TokenActivations` it was fitted on
    (or others of the same layer); ``coefficients``: their ``[n_tokens, k]``
    coefficients if already known (else ``snmf.transform``).

    A feature's top tokens are its ``top_k`` tokens of largest coefficient (top-activating, as Shafran et al.
    2025 describe features) that read differently in the features table: a token whose :func:`shown_context`
    (``context`` tokens before it, cut to :data:`SHOWN_CHARS` characters; whitespace runs as one space) equals
    that of a higher-ranked one is skipped, since a prompt set may repeat a text and a shared ending reads the
    same. Logit-lens tokens are shown by :func:`interp.tokens.display_token` (a byte of a split character as
    ``<0xE2>``, not U+FFFD).
    """
    from probes import feature_usage

    tok = tokenizer_of(model)
    G = snmf.transform(tokens.X) if coefficients is None else np.asarray(coefficients)
    usage = feature_usage(snmf.components_, G)
    lens = logit_lens(model, layer, snmf.components_)
    cards = []
    for j in range(G.shape[1]):
        tops, seen = [], set()
        for r in np.argsort(-G[:, j]):  # the top_k most activating contexts that read differently as shown
            before, token = tokens.context(int(r), tok, before=context, whole_words=True)
            if _shown_key(before, token) not in seen:
                seen.add(_shown_key(before, token))
                tops.append((before, token, float(G[r, j])))
            if len(tops) == top_k:
                break
        vals, ids = lens[j].topk(n_logits)
        logits = [(display_token(tok, int(i)), float(v)) for v, i in zip(vals, ids)]
        neurons = np.nonzero(snmf.components_[j])[0].tolist()
        cards.append(FeatureCard(j, float(usage[j]), tops, logits, neurons))
    return cards


def _prompts(pair: ModelPair, is_organism: bool, n: int, data=None) -> tuple[list[str], list[str]]:
    """``n`` training prompts split evenly over the section's sets (the first sets take one more where ``n`` does
    not divide), and those sets' sources."""
    if provides(data, "snmf"):
        names, loader = ("snmf",), data.load
    elif is_organism:
        names, loader = ("organism/truth", "organism/languages", "organism/refusal"), load
    elif data is not None:
        names, loader = ("snmf", "truth", "refusal"), data.load
    else:
        names, loader = ("truth", "refusal"), load
    out, sources = [], []
    for i, name in enumerate(names):
        ps = loader(name, "train")
        sources.append(ps.source)
        chat = name.endswith("refusal") and pair.chat_template
        texts = list(pair.format(ps, "chat").texts) if chat else list(ps.texts)
        out += texts[: n // len(names) + (i < n % len(names))]
    return out, sources


def _hits(gens, targets: set[int]) -> np.ndarray:
    """0/1 per generated token of ``gens`` (:class:`steering.Generation`, the ids as generated): is it one of
    ``targets``."""
    return np.array([float(t in targets) for g in gens for t in g.token_ids])


def _share(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else float("nan")


#: Random directions the SNMF steering null draws.
N_RANDOM = 3

#: The steering table's columns (:func:`_steer_row`): success among the fluent generations first, then among all.
STEERING_COLUMNS = (
    "feature", "share steered, fluent generations only", "95% CI, fluent generations only", "fluent generations",
    "share steered, all generations", "95% CI, all generations", "share unsteered",
    f"random direction (null), fluent generations only (largest of {N_RANDOM})",
    f"random direction (null), all generations (largest of {N_RANDOM})", "usage", "alpha", "KL",
    "logit-lens tokens", "steered example (the first fluent one)", "seq-rep-4 (mean)",
    "perplexity under the unsteered model (median)")
#: The steering table's columns ``interp compare`` prints when the section finishes.
STEERING_PRINTED = (*STEERING_COLUMNS[:6], STEERING_COLUMNS[13])
#: Where a steering row holds what the summary reads.
_FLUENT_CI, _FLUENT, _UNSTEERED, _FLUENT_NULL = 2, 3, 6, 7


def _fluency(model, gens, prompts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fluent [n] bool, seq-rep-4 [n], perplexity [n] under the unsteered model)`` of generations
    (:class:`steering.Generation`) from the tokenised ``prompts``; fluent by :func:`steering.metrics.is_fluent`
    (no loop of 4-grams, no token three times in a row)."""
    from steering.metrics import continuation_perplexity, is_fluent, repetition_rate

    rep = np.array([repetition_rate(g.token_ids, 4) for g in gens])
    fluent = np.array([is_fluent(g.token_ids) for g in gens], dtype=bool)
    return fluent, rep, np.array(continuation_perplexity(model, gens, prompts=prompts))


def _prompt_ci(per_prompt: list[np.ndarray], *, seed: int) -> list[float] | None:
    """95% percentile bootstrap interval of the pooled share of hits, resampling prompts (tokens of one
    generation are not independent); None with fewer than 2 prompts or no tokens."""
    from probes.stats import bootstrap_ci

    hits = np.array([h.sum() for h in per_prompt], dtype=np.float64)
    counts = np.array([len(h) for h in per_prompt], dtype=np.float64)
    if len(per_prompt) < 2 or counts.sum() == 0:
        return None

    def pooled(i, axis=-1):
        return hits[i].sum(axis) / np.maximum(counts[i].sum(axis), 1)

    lo, hi = bootstrap_ci(pooled, (np.arange(len(per_prompt)),), seed=seed)
    return [round(float(lo), 4), round(float(hi), 4)]


def snmf_section(pair: ModelPair, *, is_organism: bool = False, n_components: int = 24, sparsity: float | None = None,
                 layer: int | None = None, n_prompts: int = 480, target_kl: float = 0.5, n_steer: int = 6,
                 max_new_tokens: int = 12, progress: bool = True, random_state: int = 0, n_seeds: int = 2,
                 data=None, layers: Sequence[int] | None = None, batch_size: int = 16) -> ConceptResult:
    """Fit, describe, steer and match SNMF features (see the module docstring).

    Args:
        layers: the blocks fitted and matched (default all; each fit costs ``n_seeds`` factorizations per model),
            ``layer`` among them.
        batch_size: prompts per forward pass when the tokens' activations are read.
        n_seeds: SNMF fits per model and layer (seeds ``random_state + s``); seed 0's features are the
            ones matched, described and steered, and the matching between seeds of one model is the
            reference level of base↔post matching (``matched_*_null``; None with one seed).
        data: a :class:`~interp.datasets.PublicSets`; its SNMF concept sentences, Geometry-of-Truth
            statements and Arditi requests replace the built-in prompts (ignored on the bundled organism).

    Raises:
        ValueError: ``n_seeds`` < 1, ``layer`` or a block of ``layers`` outside the model (negative ones count from
            the end), ``layer`` not among ``layers``, ``n_components`` above the model's ``d_mlp``; above the
            tokens factorized, once they are read.
    """
    from ..sites import check_layers

    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    n_layers, d_mlp = pair.n_layers, int(pair.post.cfg.d_mlp)
    layers = check_layers(None if layers is None else list(layers), n_layers)
    layer = layers[len(layers) // 2] if layer is None else check_layers(layer, n_layers)[0]  # all: n_layers // 2
    if layer not in layers:
        raise ValueError(f"the described layer {layer} is not among the fitted layers {layers}")
    _check_components(n_components, d_mlp, "n_components ")
    prompts, sources = _prompts(pair, is_organism, n_prompts, data)
    sparsity = sparsity if sparsity is not None else max(0.01, 10 / d_mlp)
    run = _Run(pair, prompts, sources, n_components, sparsity, layer, [random_state + s for s in range(n_seeds)],
               random_state, target_kl, max_new_tokens, layers, batch_size)
    _fit_and_match(run, progress)
    _describe(run)
    _steer(run, n_steer)
    return _result(run)


@dataclass
class _Run:
    """What the stages of :func:`snmf_section` find, in the order they find it, and the settings they share."""

    pair: ModelPair
    prompts: list[str]
    sources: list[str]
    n_components: int
    sparsity: float
    layer: int
    """the layer whose post features are described and steered"""
    seeds: list[int]
    random_state: int
    target_kl: float
    max_new_tokens: int
    layers: list[int]
    """the blocks fitted and matched, ascending"""
    batch_size: int
    fits: dict = field(default_factory=dict)
    """``fits[model, layer, seed]``: ``(SNMF, [n_tokens, n_components] coefficients)``"""
    token_sets: dict = field(default_factory=dict)
    """``token_sets[model, layer]``: the :class:`~interp.collection.TokenActivations` fitted"""
    per_layer: list = field(default_factory=list)
    order: list = field(default_factory=list)
    """the post features' :class:`FeatureCard` at :attr:`layer`, most used first"""
    steer_rows: list = field(default_factory=list)
    vectors: dict = field(default_factory=dict)
    unsteerable: dict = field(default_factory=dict)
    """feature index -> why it could not be calibrated to the target KL"""
    random_gens: list = field(default_factory=list)
    random_fluency: list = field(default_factory=list)
    """per random direction, :func:`_fluency` of its generations"""
    plain_fluency: tuple | None = None
    """:func:`_fluency` of the unsteered generations"""
    """the generations steered by each random direction that could be calibrated (the null)"""
    random_why: str | None = None
    """why a random direction could not be calibrated, if one could not"""

    @property
    def base_seed(self) -> int:
        """The base fit matched against post's seed 0: seed 1, or seed 0 where there is one seed."""
        return self.seeds[1] if len(self.seeds) > 1 else self.seeds[0]


def _fit_and_match(run: _Run, progress: bool) -> None:
    """Fit SNMF at every layer on each model's ``mlp_post`` tokens, and match the fits (:attr:`_Run.per_layer`:
    relative errors, base↔post matching, the seed-to-seed reference and the matching itself per layer)."""
    toks = tokens_for(run.pair, run.prompts)
    tokens_of = {name: collect_tokens_by_layer(model, toks[name], "mlp_post", run.layers, batch_size=run.batch_size,
                                               progress=progress)
                 for name, model in run.pair}
    n_tokens = min(len(tokens_of[name][run.layers[0]].X) for name, _ in run.pair)
    if run.n_components > n_tokens:
        raise ValueError(f"option 'n_components' of section 'snmf' asks for {run.n_components} features, more than "
                         f"the {n_tokens} tokens of the {len(run.prompts)} prompts factorized: lower it, or give more "
                         f"prompts (option 'n_prompts' of section 'snmf', or a larger corpus)")
    bar = tqdm(total=len(run.layers) * 2 * len(run.seeds), desc="SNMF fits", disable=not progress)
    for L in run.layers:
        errors = _fit_layer(run, L, tokens_of, bar)
        matched, matching = _match_layer(run, L)
        run.per_layer.append({"layer": L, **errors, **matched, **_seed_reference(run, L), "matching": matching})
    bar.close()


def _fit_layer(run: _Run, L: int, tokens_of: dict, bar) -> dict[str, float]:
    """Fit SNMF on each model's layer-``L`` tokens with every seed (into :attr:`_Run.fits`); returns each
    model's seed-0 reconstruction error relative to the activations' norm (``{model}_relative_error``)."""
    from probes import SNMF

    errors = {}
    for name, _ in run.pair:
        tokens = tokens_of[name][L]
        run.token_sets[name, L] = tokens
        for seed in run.seeds:
            est = SNMF(run.n_components, sparsity=run.sparsity, random_state=seed, max_iter=150)
            run.fits[name, L, seed] = (est, est.fit_transform(tokens.X))
            bar.update()
        errors[f"{name}_relative_error"] = (run.fits[name, L, run.seeds[0]][0].reconstruction_err_
                                            / float(tokens.X.norm()))
    return errors


def _match_layer(run: _Run, L: int) -> tuple[dict, list[list]]:
    """Base's features matched one-to-one with post's at layer ``L``: the mean matched cosine with its bootstrap
    interval, the share with a counterpart with its Wilson interval and the usage shift of matched features;
    and the matching itself, ``[base feature, post feature, cosine]`` per pair."""
    from probes import feature_usage, match_features
    from probes.stats import mean_ci, proportion_ci

    # base seed 1 against post seed 0: different seeds, as in the seed-to-seed reference, so that neither
    # comparison shares a random draw the other lacks (post seed 0 is the one described and steered)
    (eb, Gb), (ep, Gp) = run.fits["base", L, run.base_seed], run.fits["post", L, run.seeds[0]]
    rows, cols, cos = match_features(eb.components_, ep.components_)
    usage_b, usage_p = feature_usage(eb.components_, Gb)[rows], feature_usage(ep.components_, Gp)[cols]
    kept = cos >= COUNTERPART_COSINE
    lo, hi = mean_ci(cos, seed=run.random_state)
    share_lo, share_hi = proportion_ci(kept.astype(float))
    matched = {
        "matched_cosine_mean": float(cos.mean()), "matched_cosine_mean_ci_low": float(lo),
        "matched_cosine_mean_ci_high": float(hi),
        "matched_share": float(kept.mean()), "matched_share_ci_low": share_lo, "matched_share_ci_high": share_hi,
        "usage_shift": float(np.abs(np.log((usage_p[kept] + 1e-12) / (usage_b[kept] + 1e-12))).mean())
        if kept.any() else None,
    }
    return matched, [[int(r), int(c), float(x)] for r, c, x in zip(rows, cols, cos)]


def _seed_reference(run: _Run, L: int) -> dict[str, float | None]:
    """The reference level of matching at layer ``L``: mean matched cosine and share with a counterpart between
    two seeds of one model, averaged over pairs of seeds and both models; None with one seed."""
    from probes import match_features

    seeds = run.seeds
    # the reference: two seeds of one model, matched the same way
    within = [match_features(run.fits[name, L, a][0].components_, run.fits[name, L, b][0].components_)[2]
              for name, _ in run.pair for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    return {"matched_cosine_mean_null": float(np.mean([c.mean() for c in within])) if within else None,
            "matched_share_null": (float(np.mean([(c >= COUNTERPART_COSINE).mean() for c in within]))
                                   if within else None)}


def _describe(run: _Run) -> None:
    """Describe the post model's seed-0 features at :attr:`_Run.layer` (:attr:`_Run.order`, most used first)."""
    est, G = run.fits["post", run.layer, run.seeds[0]]
    cards = describe_features(run.pair.post, est, run.token_sets["post", run.layer], run.layer, G)
    run.order = sorted(cards, key=lambda c: -c.usage)


def _steer(run: _Run, n_steer: int) -> None:
    """Steer the post model with its ``n_steer`` most used features and with the random-direction null, from
    the neutral prompts (:attr:`_Run.steer_rows`, :attr:`_Run.vectors`, :attr:`_Run.unsteerable`)."""
    from steering import generate

    model = run.pair.post
    est = run.fits["post", run.layer, run.seeds[0]][0]
    lens = logit_lens(model, run.layer, est.components_)
    neutral = tokenize(model, NEUTRAL)  # once, for every generation and calibration below
    first = neutral.select([0])
    plain = generate(model, neutral, max_new_tokens=run.max_new_tokens, stop_at_eos=False, return_details=True)
    run.plain_fluency = _fluency(model, plain, neutral)
    _random_null(run, neutral, first)
    for card in run.order[:n_steer]:
        _steer_feature(run, card, est, lens, neutral, first, plain)


def _random_null(run: _Run, neutral, first) -> None:
    """Generations steered by :data:`N_RANDOM` random unit directions, each calibrated to the target KL
    (:attr:`_Run.random_gens`; :attr:`_Run.random_why` for one that could not be)."""
    from probes.stats import equal_norm_random
    from steering import SteeringVector, calibrate_scale, generate

    model, d_mlp = run.pair.post, int(run.pair.post.cfg.d_mlp)
    # the null: random unit directions in the same space, each calibrated to the same KL
    g = torch.Generator().manual_seed(run.random_state)
    unit_like = torch.full((1, d_mlp), d_mlp ** -0.5)
    for r in range(N_RANDOM):
        random_vec = SteeringVector(equal_norm_random(unit_like, g), (run.layer,), "mlp_post",
                                    meta={"concept": "snmf", "feature": f"random-{r}", "model": "post"})
        try:
            random_cal = calibrate_scale(model, random_vec, first, run.target_kl)
        except ValueError as e:
            run.random_why = str(e)
            continue
        gens = generate(model, neutral, random_cal, max_new_tokens=run.max_new_tokens, stop_at_eos=False,
                        return_details=True)
        run.random_fluency.append(_fluency(model, gens, neutral))
        run.random_gens.append(gens)


def _steer_feature(run: _Run, card: FeatureCard, est, lens: torch.Tensor, neutral, first, plain: list) -> None:
    """Calibrate the unit feature ``card`` to the target KL and steer with it: a steering row and its vector,
    or the reason it is not steerable."""
    from steering import SteeringVector, calibrate_scale, generate

    targets = set(lens[card.index].topk(10).indices.tolist())
    unit = torch.as_tensor(est.components_[card.index]).float()
    vec = SteeringVector(unit[None], (run.layer,), "mlp_post", meta={"concept": "snmf", "feature": card.index,
                                                                     "model": "post"})
    try:
        cal = calibrate_scale(run.pair.post, vec, first, run.target_kl)
    except ValueError as e:
        log.info("feature %d not steerable: %s", card.index, e)
        run.unsteerable[card.index] = str(e)
        return
    details = generate(run.pair.post, neutral, cal, max_new_tokens=run.max_new_tokens, stop_at_eos=False,
                       return_details=True)
    fluency = _fluency(run.pair.post, details, neutral)
    run.steer_rows.append(_steer_row(run, card, cal, details, plain, targets, fluency))
    run.vectors[f"post-feature-{card.index}"] = cal


def _steer_row(run: _Run, card: FeatureCard, cal, steered: list, plain: list, targets: set[int], fluency) -> list:
    """One row of the steering table (columns :data:`STEERING_COLUMNS`): the feature; the share of its top
    logit-lens tokens among the fluent steered generations (:func:`steering.metrics.is_fluent`) with its CI, and
    how many are fluent; the share among all steered generations with its CI; the unsteered share; the random
    directions' largest share among their fluent generations and among all; then its usage, α and KL, its
    logit-lens tokens, an example (the first fluent generation, else the first), the mean seq-rep-4 and the median
    perplexity under the unsteered model. ``steered``, ``plain``: :class:`steering.Generation` records, whose
    token ids are counted as generated."""
    per_prompt = [_hits([g], targets) for g in steered]
    hits = np.concatenate(per_prompt)
    ci = _prompt_ci(per_prompt, seed=run.random_state)
    nulls = [_share(_hits(gen, targets)) for gen in run.random_gens]
    nulls = [x for x in nulls if not math.isnan(x)]
    null = max(nulls) if nulls else None  # the largest share any random direction reached
    fluent, rep, ppl = fluency
    kept = [h for h, f in zip(per_prompt, fluent) if f]
    fluent_share = _share(np.concatenate(kept)) if kept else None
    fluent_ci = _prompt_ci(kept, seed=run.random_state) if kept else None
    fluent_nulls = []
    for gen, (ok, _, _) in zip(run.random_gens, run.random_fluency):
        share = _share(_hits([g for g, f in zip(gen, ok) if f], targets))
        if not math.isnan(share):
            fluent_nulls.append(share)
    shown = int(np.flatnonzero(fluent)[0]) if fluent.any() else 0
    # success among fluent generations leads: a looping generation full of the feature's tokens is not success
    return [card.index, fluent_share if fluent_share is not None else "undefined: none fluent", fluent_ci,
            f"{int(fluent.sum())} of {len(fluent)}", _share(hits), ci, _share(_hits(plain, targets)),
            max(fluent_nulls) if fluent_nulls else None, null, round(card.usage, 4), float(cal.scale),
            float(cal.meta["calibrated_kl"]), "".join(f"[{t}]" for t, _ in card.logit_lens[:5]),
            _example(steered[shown].text, bool(fluent[shown])),
            float(np.nanmean(rep)) if np.isfinite(rep).any() else None,
            float(np.nanmedian(ppl)) if np.isfinite(ppl).any() else None]


def _example(text: str, fluent: bool, chars: int = 60) -> str:
    """A steered generation as the table shows it: whether it is fluent (first: a terminal cuts the cell), then its
    first ``chars`` characters, whitespace escaped."""
    text = shown_whitespace(text)
    return f"({'fluent' if fluent else 'not fluent'}) {text[:chars]}{'…' if len(text) > chars else ''}"


def _result(run: _Run) -> ConceptResult:
    """The section's :class:`~interp.report.ConceptResult`: per-layer rows, directions, readings, setup, plots
    and tables."""
    per_layer = run.per_layer
    return ConceptResult("snmf", list(run.layers), per_layer, long_rows(per_layer), {}, _directions(run),
                         _readings(run), _setup(run), _plots(), _tables(run), vectors=run.vectors)


def _directions(run: _Run) -> dict[str, torch.Tensor]:
    """``{model}/layer{layer}``: the matched fits' ``[n_components, d_mlp]`` features at the described layer."""
    return {f"{name}/layer{run.layer}": torch.as_tensor(
        run.fits[name, run.layer, run.base_seed if name == "base" else run.seeds[0]][0].components_)
        for name in ("base", "post")}


#: The matching plot's reading; ``{cosine}`` is :data:`COUNTERPART_COSINE`, ``{base_seed}`` the base fit's seed.
MATCHING_READING = ("Per layer, the SNMF features of base (seed {base_seed}) and post (seed 0) matched one-to-one by "
                    "cosine in neuron space: mean matched cosine with its bootstrap interval over matched pairs, "
                    "share of features with a counterpart (cosine ≥ {cosine}) with its Wilson interval, and the mean "
                    "absolute log-ratio of matched features' usage (0 = unchanged). Grey: the same matching between "
                    "two seeds of one model (mean of both models) — the level refits alone reach.")
ERROR_READING = "Reconstruction error of the factorization relative to the activations' norm, per model (seed 0)."


def _readings(run: _Run) -> dict[str, str]:
    """The section's readings: the summary, and what the matching and error plots show."""
    matching = MATCHING_READING.format(cosine=COUNTERPART_COSINE, base_seed=run.base_seed - run.seeds[0])
    return {"summary": _summary(run), "matching": matching, "error": ERROR_READING}


def _summary(run: _Run) -> str:
    """The section's headline: matching at the described layer against seed noise, then the steering."""
    mid = run.per_layer[run.layers.index(run.layer)]
    return (f"Layer {run.layer}: base↔post mean matched cosine {mid['matched_cosine_mean']:.2f} "
            f"[{mid['matched_cosine_mean_ci_low']:.2f}, {mid['matched_cosine_mean_ci_high']:.2f}], "
            f"{mid['matched_share']:.0%} of post features with a base counterpart (cosine ≥ {COUNTERPART_COSINE})"
            + _noise_text(mid) + "." + _below_text(run) + _steering_text(run))


def _noise_text(mid: dict) -> str:
    """Whether base↔post matching at the described layer falls below the seed-to-seed level."""
    if mid["matched_cosine_mean_null"] is None:
        return " (one seed per model: no seed-to-seed reference, so no statement on noise)"
    if mid["matched_cosine_mean_ci_high"] < mid["matched_cosine_mean_null"]:
        return (f"; two seeds of one model match at {mid['matched_cosine_mean_null']:.2f}, above the interval: base "
                f"and post features differ beyond seed noise here")
    return (f"; two seeds of one model match at {mid['matched_cosine_mean_null']:.2f}: base and post match as "
            f"well as two fits of one model do, so the difference is within seed noise")


def _below_text(run: _Run) -> str:
    """The layers where base↔post matching falls below the seed-to-seed level ("" with one seed)."""
    below = [e["layer"] for e in run.per_layer
             if e["matched_cosine_mean_null"] is not None
             and e["matched_cosine_mean_ci_high"] < e["matched_cosine_mean_null"]]
    if run.per_layer[run.layers.index(run.layer)]["matched_cosine_mean_null"] is None:
        return ""
    return (f" Below the seed-to-seed level at {len(below)} of {len(run.layers)} layers"
            + (f" ({', '.join(map(str, below))})." if below else "."))


def _steering_text(run: _Run) -> str:
    """How many steered features beat both unsteered generation and the random-direction null, or why none
    could be read against it."""
    rows, target_kl = run.steer_rows, run.target_kl
    if rows and run.random_gens:
        up = [r for r in rows if r[_FLUENT_CI] is not None and r[_FLUENT_NULL] is not None
              and not math.isnan(r[_UNSTEERED]) and r[_FLUENT_CI][0] > max(r[_UNSTEERED], r[_FLUENT_NULL])]
        fluent = sum(int(r[_FLUENT].split(" of ")[0]) for r in rows)
        total = sum(int(r[_FLUENT].split(" of ")[1]) for r in rows)
        plain_rep, plain_ppl = (float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
                                for x in run.plain_fluency[1:])
        tried = len(rows) + len(run.unsteerable)
        steered = (f" Of the {tried} most-used post features, the {len(rows)} that could be calibrated were steered"
                   if run.unsteerable else f" Of the {len(rows)} most-used post features steered")
        return (f"{steered} (α calibrated to next-token KL "
                f"{target_kl}), {fluent} of {total} generations stay fluent (seq-rep-4 at most {MAX_REPETITION} "
                f"and no token "
                f"three times in a row; "
                f"unsteered: mean seq-rep-4 {plain_rep:.2f}, perplexity {plain_ppl:.1f} under the unsteered "
                f"model), and {len(up)} feature{'' if len(up) == 1 else 's'} raise{'s' if len(up) == 1 else ''} "
                f"the share of their top logit-lens tokens among their fluent "
                f"generations above both unsteered generation and {N_RANDOM} random directions at the same KL "
                f"(the 95% interval's lower end, bootstrap over the fluent prompts, above the unsteered share and "
                f"the largest random one among its fluent generations)"
                + (f": features {', '.join(str(r[0]) for r in up)}." if up else "."))
    if rows:
        return (f" {len(rows)} post features were steered, but the random-direction null could not be "
                f"calibrated to KL {target_kl} ({run.random_why}), so no feature's effect is read against it.")
    return (f" No feature could be calibrated to the target KL {target_kl}"
            + "".join(f" (feature {i}: {why})" for i, why in list(run.unsteerable.items())[:1]) + ".")


def _top_neurons(w: np.ndarray, k: int = 4) -> str:
    """The ``k`` largest-magnitude of a feature's neuron weights ``w``, ``"17: +0.62, 201: -0.41, ..."``."""
    w = np.asarray(w)
    top = [int(i) for i in np.argsort(-np.abs(w))[:k] if w[i] != 0]
    return ", ".join(f"{i}: {w[i]:+.2f}" for i in top)


def _neurons_holding(w: np.ndarray, share: float = WEIGHT_SHARE) -> int:
    """The fewest neurons whose ``|weight|`` sums to at least ``share`` of the feature's L1 norm ``Σ|w|`` (0 for an
    all-zero feature): how concentrated the feature is, where its count of nonzero neurons is set by the fit's
    sparsity."""
    a = np.sort(np.abs(np.asarray(w, dtype=np.float64)))[::-1]
    total = a.sum()
    if total == 0:
        return 0
    cum = np.cumsum(a)
    return int(min(np.searchsorted(cum, share * total * (1 - 1e-12)) + 1, len(a)))


def _most_similar(coefficients: np.ndarray) -> list[tuple[int, float] | None]:
    """Per feature, the other feature whose coefficient column over the tokens is closest by cosine, and that
    cosine (in [0, 1]: coefficients are nonnegative); None for a feature with all-zero coefficients or when
    there is no other feature with nonzero ones. Two features that fire on the same tokens in the same
    proportions have cosine 1, whatever their neuron weights."""
    G = np.asarray(coefficients, dtype=np.float64)
    norms = np.linalg.norm(G, axis=0)
    live = norms > 0
    cos = (G.T @ G) / np.where(live, norms, 1.0)[:, None] / np.where(live, norms, 1.0)[None, :]
    cos[:, ~live] = -np.inf
    np.fill_diagonal(cos, -np.inf)
    out = []
    for j in range(G.shape[1]):
        other = int(np.argmax(cos[j])) if G.shape[1] > 1 else j
        out.append((other, float(min(cos[j, other], 1.0))) if live[j] and np.isfinite(cos[j, other]) else None)
    return out


def _shared_contexts(cards: Sequence[FeatureCard]) -> dict[int, str]:
    """Per feature, the other features among ``cards`` that the features table shows with one of the same
    contexts (:func:`shown_context`, first :data:`SHOWN_CONTEXTS`): ``"15 (3 of 3)"``, or ``"none"``."""
    shown = {c.index: {_shown_key(b, t) for b, t, _ in c.top_tokens[:SHOWN_CONTEXTS]} for c in cards}
    out = {}
    for j, mine in shown.items():
        common = [(i, len(mine & theirs)) for i, theirs in shown.items() if i != j and mine & theirs]
        out[j] = ", ".join(f"{i} ({n} of {len(mine)})" for i, n in common) or "none"
    return out


def _feature_rows(cards: Sequence[FeatureCard], components: np.ndarray, coefficients: np.ndarray) -> list[list]:
    """The features table's rows, one per card in its order: index, usage, shown top-activating contexts,
    logit-lens tokens, neurons holding :data:`WEIGHT_SHARE` of the weight, largest-weight neurons, the most
    similar other feature by coefficients (``"15: 0.98"``) and the features shown with the same contexts.

    ``components``: ``[k, d_mlp]`` (``SNMF.components_``); ``coefficients``: ``[n_tokens, k]`` of the tokens the
    cards were described on."""
    components = np.asarray(components)
    similar, shared = _most_similar(coefficients), _shared_contexts(cards)
    return [[c.index, round(c.usage, 4),
             " | ".join(shown_context(b, t) for b, t, _ in c.top_tokens[:SHOWN_CONTEXTS]),
             "".join(f"[{t}]" for t, _ in c.logit_lens[:6]), _neurons_holding(components[c.index]),
             _top_neurons(components[c.index]),
             "none" if similar[c.index] is None else f"{similar[c.index][0]}: {similar[c.index][1]:.2f}",
             shared[c.index]]
            for c in cards]


def _tables(run: _Run) -> dict[str, dict]:
    """The features table (every post feature at the described layer, most used first) and the steering table."""
    est, G = run.fits["post", run.layer, run.seeds[0]]
    nonzero = sorted({int(np.count_nonzero(w)) for w in np.asarray(est.components_)})
    of = f"of {nonzero[0]} nonzero" if len(nonzero) == 1 else f"of {nonzero[0]}–{nonzero[-1]} nonzero"
    return {
        "features": {"title": f"Post features at layer {run.layer} (most used first): top-activating tokens [in "
                              f"context] (largest coefficient first, {SHOWN_CONTEXTS} that read differently), logit "
                              "lens",
                     "columns": ["feature", "usage (mean ‖F_j‖·g_j)", "top-activating tokens", "logit-lens tokens",
                                 f"neurons holding {WEIGHT_SHARE:.0%} of |weight| (fewest; {of})",
                                 "largest-weight neurons (index: weight)",
                                 "most similar feature (feature: cosine of coefficients over the tokens)",
                                 f"features shown with the same contexts (how many of the {SHOWN_CONTEXTS})"],
                     "rows": _feature_rows(run.order, est.components_, G)},
        "steering": {"title": f"Steering with post features at layer {run.layer} (α calibrated to KL "
                              f"{run.target_kl} on {NEUTRAL[0]!r}): share of generated tokens among the feature's "
                              f"top-10 logit-lens tokens, among the fluent generations (seq-rep-4 <= "
                              f"{MAX_REPETITION}, no token {MAX_TOKEN_RUN + 1}x in a row) first, then among all; 95% "
                              f"CIs bootstrap over the prompts (the fluent ones, or all {len(NEUTRAL)})",
                     "columns": list(STEERING_COLUMNS), "print": list(STEERING_PRINTED),
                     "rows": run.steer_rows,
                     "empty": "no feature was steered" + "".join(
                         f" (feature {i}: {why})" for i, why in list(run.unsteerable.items())[:1])},
    }


def _plots() -> list[dict]:
    """The matching plot (with the seed-to-seed reference as nulls) and the reconstruction-error plot."""
    return [
        {"title": "Same features in base and post?", "reading": "matching", "yrange": [0, 1.02],
         "xaxis": "layer", "yaxis": "value",
         "series": {"matched_cosine_mean": "mean matched cosine",
                    "matched_share": f"share matched (cos ≥ {COUNTERPART_COSINE})",
                    "usage_shift": "usage shift |log ratio|"},
         "nulls": {"matched_cosine_mean_null": "mean matched cosine, two seeds of one model",
                   "matched_share_null": "share matched, two seeds of one model"},
         "panels": [{"keys": ["matched_cosine_mean", "matched_cosine_mean_null"], "yaxis": "mean matched cosine",
                     "yrange": [0, 1.02]},
                    {"keys": ["matched_share", "matched_share_null"], "yaxis": "share of post features matched",
                     "yrange": [0, 1.02]},
                    {"keys": ["usage_shift"], "yaxis": "usage shift |log ratio|"}]},
        {"title": "Reconstruction error", "reading": "error", "xaxis": "layer", "yaxis": "‖A - FG‖ / ‖A‖",
         "series": {"base_relative_error": "base", "post_relative_error": "post"}},
    ]


def _setup(run: _Run) -> dict:
    """The section's setup: data, site, fits, seeds, steering settings, the null and the matching."""
    one_seed = len(run.seeds) == 1
    return {
        "site": "mlp_post", "tokens": "every token of the prompts except BOS", "n_prompts": len(run.prompts),
        "sources": run.sources, "n_tokens": len(run.token_sets["post", run.layer]),
        "n_components": run.n_components, "sparsity": run.sparsity, "seeds": run.seeds, "described layer": run.layer,
        "target KL": run.target_kl, "neutral prompts": list(NEUTRAL),
        "features not steerable": {str(i): why for i, why in run.unsteerable.items()},
        "fluency": (f"seq-rep-4 of each generation's tokens (Welleck et al. 2019: share of repeated 4-grams) at most "
                    f"{MAX_REPETITION} and no token more than {MAX_TOKEN_RUN} times in a row "
                    f"(steering.metrics.is_fluent); "
                    f"success is read among fluent generations only; perplexity of the "
                    "generated tokens under the unsteered post model given the prompt, reported beside"),
        "steering null": (f"{len(run.random_gens)} of {N_RANDOM} random unit directions in mlp_post space calibrated "
                          f"to the same KL; the largest share they reach"
                          + ("" if run.random_why is None else f" (not calibrated: {run.random_why})")),
        "matching": (f"base seed {run.base_seed} against post seed {run.seeds[0]}"
                     + (" (one seed per model: both fits share the initialisation's random draw)" if one_seed else "")
                     + "; with the default SVD initialisation the seed sets the randomized range finder's draw"),
        "matching null": ("undefined: one seed per model" if one_seed else
                          "matched cosine and share between seeds of one model, mean over pairs of seeds and both "
                          "models"),
        "method": "Shafran, Geiger & Geva 2025; Ding, Li & Jordan 2010 update",
    }


def _run(ctx, *, data: str | None = None, layers: str | None = None, **options) -> ConceptResult:
    return snmf_section(ctx.pair, is_organism=ctx.is_organism, progress=ctx.progress,
                        data=user_data(ctx, "snmf", data, options["random_state"]),
                        layers=None if layers is None else parse_layers(layers), **options)


def _check_components(n_components: int, d_mlp: int | None, name: str = "") -> None:
    """A fit has at most as many features as the MLP has neurons (its features are directions among them);
    ``name`` leads the message where no option prefix will."""
    if d_mlp is not None and n_components > d_mlp:
        raise ValueError(f"{name}must be at most the model's {d_mlp} MLP neurons (d_mlp): each feature is a "
                         f"direction among them; got {n_components}")


def _check_pair(shape, *, layers=None, layer=None, **_) -> None:
    """With the model's blocks known (:class:`~interp.models.ModelShape`): the described layer among the fitted
    ones, before the pair boots."""
    from ..sites import check_layers

    if layer is not None and layers is not None:
        fitted = check_layers(parse_layers(layers), shape.n_layers)
        if check_layers(layer, shape.n_layers)[0] not in fitted:
            raise ValueError(f"--snmf-layer {layer} is not among the fitted layers {fitted} (--snmf-layers "
                             f"{layers})")


SECTION = Section("snmf", _run, check=_check_pair, help="semi-nonnegative matrix factorization features of MLP activations, matched "
                                     "base vs post and steered", params=(
    Param("n_components", int, 24, "features per fit (at most the model's MLP neurons)", low=1,
          model_check=lambda value, shape: _check_components(value, shape.d_mlp)),
    Param("sparsity", float, None, "share of nonzero neurons per feature, in (0, 1] (default max(0.01, "
                                   "10 / d_mlp))", above=0, high=1),
    layers_param("layers", "comma-separated blocks fitted and matched (default all)"),
    layer_param("layer", "layer whose features are described and steered (default: the middle fitted one; -1 is "
                         "the last)"),
    Param("batch_size", int, 16, "prompts per forward pass", low=1),
    Param("n_prompts", int, 480, "prompts whose tokens are factorized", low=2),
    Param("target_kl", float, 0.5, "next-token KL (nats) each steered feature is calibrated to", low=0),
    Param("n_steer", int, 6, "most-used post features steered", low=0),
    Param("max_new_tokens", int, 12, "tokens generated per steered prompt", low=1),
    Param("random_state", int, 0, "seed of the first fit (seed s of n_seeds is random_state + s)", low=0,
          high=MAX_SEED),
    Param("n_seeds", int, 2, "fits per model and layer (the seed-to-seed level of matching)", low=1),
    data_param("snmf", "your corpus: a file of texts (JSON/JSONL/CSV); its training split is factorized"),
))
