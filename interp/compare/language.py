"""The language section of :func:`interp.compare.compare`: language directions, language neurons, steering.

* **Directions.** Parallel prompts: the same sentence subjects in English,
  French, German and Spanish (``The cat`` / ``Le chat`` / ``Die Katze`` /
  ``El gato``), read at their last token (``resid_post``), where the model
  decides the language of what follows. Per layer, the difference of means
  between each language and English, and the paired English→target difference
  matrix's singular values: effective rank (exponential of the entropy of the
  normalised singular values) and eigengap (first over second singular value),
  which Neural FOXP2 uses to pick a steering subspace and a window of layers.
  Directions are computed on two thirds of the subjects; the other third is
  held out for steering. With ``data`` (:class:`~interp.datasets.PublicSets`)
  the prompts are real parallel text instead: the first words of human
  translations of the same message (Django's catalogues,
  :mod:`interp.datasets._parallel`); directions from the train messages,
  steering on the test messages, probe and neurons on the whole texts.
* **Neurons.** LAPE (Tang et al. 2024, :func:`probes.lape`, their rule
  exactly): activation probabilities of the gate activation (``mlp_pre > 0``,
  i.e. ``act_fn(W_gate x) > 0``) over every token of sentences in the four
  languages, the round(1% of all neurons) lowest-entropy neurons among the
  often active; per layer, the number of language-specific neurons of each
  language in each model, and the overlap (IoU) of the base and post neuron
  sets, averaged over the languages where at least one model has a neuron
  (undefined, None, where neither has any).
* **Steering.** Held-out English subjects; each target language's direction is
  added at every position over the window of layers with the largest
  eigengap (scale ``1 / window size`` at each, so the window adds one full
  shift in total), optionally with the English LAPE neurons deactivated.
  Measured: the share of next-token probability on the target language's own
  tokens (tokens that occur in that language's sentences and no other's), the
  share of greedy continuations the project's token-set classifier assigns to
  the target language, and the cost: next-token KL on neutral English text (the
  organism's statements). Each model is steered with its own direction and
  with the other model's.
* **Probe.** A multinomial logistic probe (standardized features) for language identity on the
  sentences (mean over tokens), held-out accuracy per layer and model, and
  each model's probe scored on the other model (transfer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..collection import collect, collect_tokens_by_site, token_means
from ..datasets import load
from ..datasets import _world as W
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ..tokens import Tokenized
from ._section import Param, Section, data_param, provides, tokens_for, user_data

__all__ = ["SECTION", "LanguageTokens", "effective_rank", "language_section"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageTokens:
    """Each language's own tokens (in its texts and in no other language's), and what they classify."""

    languages: tuple[str, ...]
    sets: dict[str, frozenset[int]]

    @classmethod
    def from_texts(cls, tokenizer, texts: dict[str, list[str]]) -> LanguageTokens:
        """From each language's texts (``{language: [text, ...]}``), tokenised here.

        Raises:
            ValueError: a language none of whose tokens is its own.
        """
        return cls._from_ids({lang: [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ts]
                              for lang, ts in texts.items()})

    @classmethod
    def from_tokens(cls, tokens: dict[str, Tokenized]) -> LanguageTokens:
        """From each language's texts already tokenised (a BOS the policy added is not a text's token).

        Raises:
            ValueError: a language none of whose tokens is its own.
        """
        return cls._from_ids({lang: [e.ids[1:] if e.bos_added else e.ids for e in t.encodings]
                              for lang, t in tokens.items()})

    @classmethod
    def _from_ids(cls, ids: dict[str, list]) -> LanguageTokens:
        seen = {lang: {t for row in rows for t in row} for lang, rows in ids.items()}
        texts = ids
        own = {lang: frozenset(s - set().union(*(o for m, o in seen.items() if m != lang))) for lang, s in seen.items()}
        empty = [lang for lang, s in own.items() if not s]
        if empty:
            raise ValueError(f"no token belongs to {empty} alone; give more text per language")
        return cls(tuple(texts), own)

    def share(self, probs: torch.Tensor, language: str) -> torch.Tensor:
        """``[n]`` probability mass on ``language``'s own tokens, from ``[n, vocab]`` probabilities."""
        return probs[:, sorted(self.sets[language])].sum(-1)

    def share_in(self, texts, tokenizer, language: str) -> float:
        """Share of ``texts`` that :meth:`classify` assigns to ``language``."""
        return float(np.mean([self.classify(tokenizer(t, add_special_tokens=False)["input_ids"]) == language
                              for t in texts]))

    def classify(self, ids) -> str | None:
        """The language with most own tokens among ``ids``; ``None`` if none or a tie."""
        votes = {lang: sum(t in s for t in ids) for lang, s in self.sets.items()}
        best = max(votes.values())
        winners = [lang for lang, v in votes.items() if v == best]
        return winners[0] if best > 0 and len(winners) == 1 else None


def _share_ci(share: float, n: int) -> list[float]:
    """95% Wilson interval ``[low, high]`` of a share of ``n`` outcomes (``probes.stats.proportion_ci``)."""
    from probes.stats import proportion_ci

    k = round(share * n)
    lo, hi = proportion_ci(np.r_[np.ones(k), np.zeros(n - k)])
    return [round(lo, 4), round(hi, 4)]


def effective_rank(matrix: torch.Tensor) -> tuple[float, float]:
    """``(effective rank, eigengap)`` of a matrix: ``exp(H(s / sum s))`` and ``s1 / s2`` of its singular values."""
    s = torch.linalg.svdvals(matrix.double())
    p = s / s.sum().clamp_min(1e-30)
    rank = float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))
    gap = float(s[0] / s[1].clamp_min(1e-30)) if len(s) > 1 else float("inf")
    return rank, gap


def _prefixes(train, test, langs) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """Parallel prefixes ``{language: text}`` for the directions (``fit``) and held out for steering.

    A set whose rows carry ``meta["opening"]`` (real parallel text, :mod:`interp.datasets._parallel`): the
    openings of its train messages fit the directions, those of its test messages are steered. Otherwise
    the built-in sentence subjects (``The cat`` / ``Le chat`` / ...): every third is held out.
    """
    if train.meta and "opening" in train.meta[0]:
        def openings(ps):
            by_pair: dict[int, dict[str, str]] = {}
            for m in ps.meta:
                by_pair.setdefault(m["pair_id"], {})[m["language"]] = m["opening"]
            return [p for _, p in sorted(by_pair.items()) if set(p) >= set(langs)]
        return openings(train), openings(test), f"openings (first words) of parallel texts: {train.source}"
    subjects = [{lang: s[lang] for lang in langs} for s in W.SUBJECTS]
    held = subjects[::3]
    return [s for k, s in enumerate(subjects) if k % 3], held, "sentence subjects in en/fr/de/es (parallel)"


def _language_probes(train_x, train_y):
    """One multinomial logistic probe per layer, on standardized features (each feature scaled to zero mean
    and unit variance on the training rows: the residual stream's few huge dimensions otherwise slow L-BFGS
    to thousands of iterations). The scaler is part of the probe, so a probe applied to the other model's
    activations scales them with its own training statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(train_x[:, layer].numpy(),
                                                                                           train_y)
            for layer in range(train_x.shape[1])]


def language_section(pair: ModelPair, *, is_organism: bool = False, window_size: int = 2, scale: float | None = None,
                     max_new_tokens: int = 6, progress: bool = True, data=None, seed: int = 0) -> ConceptResult:
    """Find, compare and steer with language directions and neurons (see the module docstring).

    ``data``: a :class:`~interp.datasets.PublicSets`: its ``languages`` set (real parallel text: the openings
    of its messages are the prefixes read and steered, train messages for the directions, test messages
    steered) and its held-out truth statements (the neutral texts of the KL check).

    ``seed``: of the shuffled-label probes and of the random direction (the steering null: the post direction's
    norm at each window layer, added to the post model).
    """
    from probes import activation_probability, iou, lape
    from probes.lape import LAPE_SITE, check_activation
    from probes.stats import equal_norm_random, paired_difference_cosine_ci, proportion_ci, random_directions
    from steering import Add, Deactivate, SteeringVector
    from steering.generation import greedy_with_first_step
    from steering.metrics import kl_divergence, next_token_logprobs

    name = "organism/languages" if is_organism else "languages"
    user = provides(data, "languages")
    sets = data.load if data is not None and (not is_organism or user) else load
    name = "languages" if user else name
    train, test = sets(name, "train"), sets(name, "test")
    langs = tuple(train.label_names)
    if langs[0] != "en":
        raise ValueError(f"the language section steers from English; {name} starts with {langs[0]!r}")
    tok = pair.tokenizer
    n_layers = pair.n_layers
    train_tokens, test_tokens = tokens_for(pair, train.texts), tokens_for(pair, test.texts)  # read by every pass
    own = LanguageTokens.from_tokens({lang: train_tokens["post"].select([y == k for y in train.labels])
                                      for k, lang in enumerate(langs)})
    fit, held, prompt_kind = _prefixes(train, test, langs)

    # Directions and their low-rank structure, per model.
    dirs, diffs_by_lang, per_model_rank = {}, {}, {}
    fit_tokens = {lang: tokens_for(pair, [p[lang] for p in fit]) for lang in langs}  # each set tokenised once
    for mname, model in pair:
        acts = {lang: collect(model, list(fit_tokens[lang][mname].texts), "resid_post", positions="last",
                              progress=False, tokens=fit_tokens[lang][mname])["resid_post"].double()
                for lang in langs}
        dirs[mname] = {lang: (acts[lang].mean(0) - acts["en"].mean(0)).float() for lang in langs[1:]}  # [layer, d]
        diffs_by_lang[mname] = {lang: acts[lang] - acts["en"] for lang in langs[1:]}
        per_model_rank[mname] = [[effective_rank(diffs_by_lang[mname][lang][:, L]) for lang in langs[1:]]
                                 for L in range(n_layers)]

    # One pass over the training sentences per model reads both what the identity probe is fitted on
    # (resid_post, mean over each sentence's tokens) and what LAPE counts (the gate, mlp_pre, of every token).
    y_tr, y_te = np.array(train.labels), np.array(test.labels)
    probes_, a_te, neuron_sets, counts, token_means_by_model = {}, {}, {}, {}, {}
    for mname, model in pair:
        check_activation(getattr(model.cfg, "act_fn", None))
        tokens = collect_tokens_by_site(model, train_tokens[mname], ["resid_post", LAPE_SITE], progress=False)
        token_means_by_model[mname] = token_means(tokens["resid_post"], len(train))
        probes_[mname] = _language_probes(token_means_by_model[mname], y_tr)
        a_te[mname] = collect(model, test, "resid_post", positions="mean", progress=False,
                              tokens=test_tokens[mname])["resid_post"].float()
        # LAPE neurons per layer
        by_layer = tokens.pop(LAPE_SITE)
        token_lang = torch.tensor(train.labels)[by_layer[0].prompt]
        probs = [activation_probability(by_layer[L].X, token_lang, len(langs)) for L in range(n_layers)]
        res = lape(np.stack(probs))
        neuron_sets[mname] = res
        counts[mname] = res.counts()  # [layer, lang]
        del tokens, by_layer
    # probe[(fitted on, scored on)][layer]: own held-out accuracy and transfer to the other model, with Wilson
    # intervals over the test sentences; the null: the same probe fitted on shuffled training labels
    right = {(f, s): np.stack([p.predict(a_te[s][:, L].numpy()) == y_te for L, p in enumerate(probes_[f])])
             for f in ("base", "post") for s in ("base", "post")}  # [layer, n_test] bool
    probe = {k: v.mean(-1).tolist() for k, v in right.items()}
    probe_ci = {k: proportion_ci(v.astype(float)) for k, v in right.items()}
    shuffled = np.random.default_rng(seed).permutation(y_tr)
    probe_null = {m: [float(p.score(a_te[m][:, L].numpy(), y_te)) for L, p in
                      enumerate(_language_probes(token_means_by_model[m], shuffled))] for m in ("base", "post")}

    # Steering window: consecutive layers with the largest mean eigengap (post model's analysis).
    gaps = [np.mean([g for _, g in per_model_rank["post"][L]]) for L in range(n_layers)]
    starts = range(0, n_layers - window_size + 1)
    start = max(starts, key=lambda s0: sum(gaps[s0 : s0 + window_size]))
    window = list(range(start, start + window_size))
    # each layer's difference already moves English onto the target language; over a window they share it
    scale = 1.0 / window_size if scale is None else scale

    # Steering held-out English prompts toward each language.
    vectors = {f"{m}-{lang}": SteeringVector(dirs[m][lang][window], tuple(window), "resid_post", scale,
                                             {"concept": "language", "target": lang, "model": m})
               for m in ("base", "post") for lang in langs[1:]}
    neutral_set = (load("organism/truth", "test") if is_organism
                   else (load if data is None else data.load)("truth", "test"))
    prompts_of, neutral_of = tokens_for(pair, [p["en"] for p in held]), tokens_for(pair, neutral_set.texts[:40])
    rows, table = [], []
    rng = torch.Generator().manual_seed(seed)
    for target, model in pair:
        prompts, neutral = prompts_of[target], neutral_of[target]
        plain_gen, clean = greedy_with_first_step(model, prompts, max_new_tokens=max_new_tokens)
        clean = clean.exp()  # share wants probabilities
        clean_neutral = next_token_logprobs(model, neutral)
        en_neurons = {L: neuron_sets[target].neurons(L, 0) for L in range(n_layers)}
        for lang in langs[1:]:
            base_share = float(own.share(clean, lang).mean())
            base_gen = own.share_in(plain_gen, tok, lang)
            conditions = [(source, False) for source in (target, "post" if target == "base" else "base")]
            conditions.append((target, True))
            for source, deactivate in conditions:
                ivs = [Add(vectors[f"{source}-{lang}"])] + ([Deactivate(en_neurons)] if deactivate else [])
                gens, steered = greedy_with_first_step(model, prompts, ivs, max_new_tokens=max_new_tokens)
                share = float(own.share(steered.exp(), lang).mean())
                gen_share = own.share_in(gens, tok, lang)
                kl = float(kl_divergence(model, neutral, ivs, clean=clean_neutral).mean())
                label = f"{source} direction" + (" + English neurons off" if deactivate else "")
                rows.append([target, label, lang, base_share, share, share - base_share, float(base_gen), gen_share, kl,
                             gens[0][:40], _share_ci(gen_share, len(gens))])
            if target == "post":  # the null: a random direction with the post direction's norm, same layers and scale
                v = vectors[f"post-{lang}"]
                null_vec = SteeringVector(equal_norm_random(v.vectors, rng), v.layers, v.site, v.scale, {**v.meta, "method": "random", "seed": seed})
                gens, steered = greedy_with_first_step(model, prompts, [Add(null_vec)], max_new_tokens=max_new_tokens)
                share = float(own.share(steered.exp(), lang).mean())
                gen_share = own.share_in(gens, tok, lang)
                kl = float(kl_divergence(model, neutral, [Add(null_vec)], clean=clean_neutral).mean())
                rows.append([target, "random direction (null)", lang, base_share, share, share - base_share,
                             float(base_gen), gen_share, kl, gens[0][:40], _share_ci(gen_share, len(gens))])

    # base/post cosine of each English→target direction: its interval resamples the parallel prefixes (one
    # resample for every language, so the mean over languages gets one too); its null, how close random
    # directions come to the post direction (95th percentile of |cosine| over 100)
    targets = langs[1:]
    cos_low, cos_high = paired_difference_cosine_ci(
        torch.stack([diffs_by_lang["base"][lang] for lang in targets], 1),
        torch.stack([diffs_by_lang["post"][lang] for lang in targets], 1), seed=seed)  # [lang + 1, layer]
    post_dirs = torch.stack([dirs["post"][lang] for lang in targets]).double()  # [lang, layer, d]
    rand_cos = torch.nn.functional.cosine_similarity(
        random_directions(100, tuple(post_dirs.shape), seed=seed), post_dirs[None], dim=-1).abs()  # [100, lang, layer]
    cos_null = torch.cat([rand_cos, rand_cos.mean(1, keepdim=True)], 1).quantile(0.95, dim=0).numpy()
    del diffs_by_lang
    scale_of = {m: max(float(dirs[m][lang].norm(dim=-1).max()) for lang in targets) for m in dirs}
    undefined = [L for L in range(n_layers) if any(float(dirs[m][lang][L].norm()) <= 1e-6 * scale_of[m]
                                                   for m in dirs for lang in targets)]

    per_layer = []
    for L in range(n_layers):
        entry = {"layer": L, "base_accuracy": probe["base", "base"][L], "post_accuracy": probe["post", "post"][L],
                 "transfer_base_to_post": probe["base", "post"][L], "transfer_post_to_base": probe["post", "base"][L]}
        for (f, s_), key in ((("base", "base"), "base_accuracy"), (("post", "post"), "post_accuracy"),
                             (("base", "post"), "transfer_base_to_post"), (("post", "base"), "transfer_post_to_base")):
            entry[f"{key}_ci_low"], entry[f"{key}_ci_high"] = (float(x[L]) for x in probe_ci[f, s_])
        entry["base_accuracy_null"], entry["post_accuracy_null"] = probe_null["base"][L], probe_null["post"][L]
        cosines = [float(torch.nn.functional.cosine_similarity(dirs["base"][lang][L], dirs["post"][lang][L], dim=0))
                   for lang in targets]
        none = L in undefined
        for k, (key, c) in enumerate([*((f"cosine_base_post_{lang}", c) for lang, c in zip(targets, cosines)),
                                      ("cosine_base_post", float(np.mean(cosines)))]):
            entry[key] = None if none else c
            entry[f"{key}_ci_low"], entry[f"{key}_ci_high"] = (None, None) if none else (float(cos_low[k, L]),
                                                                                        float(cos_high[k, L]))
            entry[f"{key}_null"] = None if none else float(cos_null[k, L])
        for mname in ("base", "post"):
            entry[f"{mname}_effective_rank"] = float(np.mean([r for r, _ in per_model_rank[mname][L]]))
            entry[f"{mname}_eigengap"] = float(np.mean([g for _, g in per_model_rank[mname][L]]))
            for k, lang in enumerate(langs):
                entry[f"{mname}_neurons_{lang}"] = int(counts[mname][L, k])
        ious = [iou(neuron_sets["base"].neurons(L, k), neuron_sets["post"].neurons(L, k)) for k in range(len(langs))]
        defined = [v for v in ious if not np.isnan(v)]  # IoU of two empty sets is undefined, not 1
        entry["neuron_iou"] = float(np.mean(defined)) if defined else None
        per_layer.append(entry)
    own_rows = [r for r in rows if r[0] == "post" and r[1] == "post direction"]
    nulls = {r[2]: r for r in rows if r[0] == "post" and r[1] == "random direction (null)"}

    def ci(x):
        return f"[{x[0]:.2f}, {x[1]:.2f}]"

    # every target language is reported: none is picked on the held-out prompts the figures come from
    per_lang = "; ".join(
        f"{r[2]}: next-token mass {r[3]:.2f} → {r[4]:.2f} (random direction {nulls[r[2]][4]:.2f}), continuations "
        f"{r[7]:.2f} {ci(r[10])} (random {nulls[r[2]][7]:.2f}), KL {r[8]:.2f}" for r in own_rows)
    readings = {
        "summary": (
            f"Post model, window {window}, its own English→target directions added to {len(prompts)} held-out English "
            f"prompts — {per_lang}. Continuation shares with 95% Wilson intervals over prompts."
        ),
        "accuracy": "Held-out accuracy of a multinomial logistic probe for the language of a sentence (mean over its "
                    "tokens), each model's probe on the other model, and the cosine of base and post language "
                    "directions.",
        "rank": "Effective rank and eigengap of the paired English→target difference matrices (mean over target "
                "languages): a low rank and a large gap mean one direction carries the language shift.",
        "neurons": "Language-specific neurons (LAPE, Tang et al. 2024: the 1% of all neurons with the lowest "
                   "activation-probability entropy among the often active) per layer and language, and the IoU of "
                   "base and post sets (mean over languages where either model has one; blank where none does).",
    }
    plots = [
        {"title": "Language identity: probe accuracy and base/post cosine", "reading": "accuracy", "yrange": [-0.05, 1.05],
         "series": {"base_accuracy": "base probe", "post_accuracy": "post probe",
                    "transfer_base_to_post": "base probe → post", "transfer_post_to_base": "post probe → base",
                    **{f"cosine_base_post_{lang}": f"cosine en→{lang}" for lang in langs[1:]}},
         "nulls": {"base_accuracy_null": "base probe, shuffled labels", "post_accuracy_null": "post probe, shuffled labels",
                   **{f"cosine_base_post_{lang}_null": f"cosine en→{lang}, random directions (95th percentile)"
                      for lang in langs[1:]}}},
        {"title": "Low-rank structure of the language shift", "reading": "rank", "yaxis": "value",
         "series": {"base_effective_rank": "base effective rank", "post_effective_rank": "post effective rank",
                    "base_eigengap": "base eigengap", "post_eigengap": "post eigengap"}},
        {"title": "Language-specific neurons (LAPE)", "reading": "neurons", "yaxis": "neurons",
         "series": {**{f"{m}_neurons_{lang}": f"{m} {lang}" for m in ("base", "post") for lang in langs},
                    "neuron_iou": "IoU base/post"}},
    ]
    tables = {"steering": {
        "title": f"Steering held-out English prompts (layers {window}, scale {scale:g})",
        "columns": ["model", "intervention", "target", "target share before", "target share after", "gain",
                    "continuations in target before", "continuations in target after", "KL neutral", "example",
                    "continuations after, 95% CI"],
        "rows": rows,
    }}
    directions = {f"{m}/en_to_{lang}": dirs[m][lang] for m in ("base", "post") for lang in langs[1:]}
    setup = {"dataset": train.source or name, "neutral texts (KL)": neutral_set.source, "prompts": prompt_kind,
             "site": "resid_post", "read at": "last token", "held-out prompts (steering)": len(held),
             "direction prompts per language": len(fit),
             "window": window, "scale": scale, "neurons": "LAPE (Tang et al. 2024 rule) over the gate activation (mlp_pre > 0), every sentence token; "
                        "neuron_iou blank where neither model has a neuron of any language at that layer",
             "own tokens": {lang: len(s) for lang, s in own.sets.items()},
             "cosine interval": "paired bootstrap over the direction prompts (both models' directions recomputed per "
                                "resample; the mean over languages from the same resamples)",
             "cosine null": "95th percentile of |cosine| between the post direction and 100 random directions"}
    if undefined:
        setup["cosine undefined"] = (f"layers {undefined}: a zero English→target difference of means has no "
                                     "direction, so no cosine")
    return ConceptResult("language", list(range(n_layers)), per_layer, long_rows(per_layer), {}, directions,
                         readings, setup, plots, tables, vectors=vectors)


def _run(ctx, *, data: str | None = None, **options) -> ConceptResult:
    return language_section(ctx.pair, is_organism=ctx.is_organism, progress=ctx.progress,
                            data=user_data(ctx, "languages", data, options["seed"]), **options)


SECTION = Section("language", _run, help="language directions and LAPE neurons in both models, and steering English "
                                         "toward another language", params=(
    Param("window_size", int, 2, "consecutive layers the language directions are added to", low=1),
    Param("scale", float, None, "multiplier of the added directions (default 1 / window_size)"),
    Param("max_new_tokens", int, 6, "tokens generated per steered prompt", low=1),
    Param("seed", int, 0, "seed of the shuffled-label probes, the random direction and the bootstrap"),
    data_param("languages", "your parallel sentences: one file with a text, a language (en among them) and a "
                             "pair_id per row, split 75/25 by pair"),
))
