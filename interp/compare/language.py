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
  share of greedy continuations that are fluent (:func:`steering.metrics.is_fluent`)
  and that langid.py (:func:`steering.metrics.language_of`) assigns to the target
  language (a collapsed ``est est est est`` is not French text), how many stay
  fluent and the share in the target among those, then the share in the target
  of all continuations, fluent or not; and the cost: next-token KL on neutral
  English text (the organism's statements). Each model is steered with its own
  direction and with the other model's.
* **Probe.** A multinomial logistic probe (standardized features) for language identity on the
  sentences (mean over tokens), held-out accuracy per layer and model, and
  each model's probe scored on the other model (transfer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from steering.metrics import MAX_REPETITION

from ..collection import collect, collect_tokens_by_site, token_means
from ..datasets import load
from ..datasets import _world as W
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ..tokens import Tokenized
from ._section import Param, Section, data_param, provides, seed_param, tokens_for, user_data, window_param

__all__ = ["SECTION", "LanguageTokens", "effective_rank", "language_section"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageTokens:
    """Each language's own tokens (in its texts and in no other language's): where next-token mass on a language
    is read."""

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
                     max_new_tokens: int = 6, progress: bool = True, data=None, seed: int = 0,
                     batch_size: int | None = None) -> ConceptResult:
    """Find, compare and steer with language directions and neurons (see the module docstring).

    ``data``: a :class:`~interp.datasets.PublicSets`: its ``languages`` set (real parallel text: the openings
    of its messages are the prefixes read and steered, train messages for the directions, test messages
    steered) and its held-out truth statements (the neutral texts of the KL check).

    ``seed``: of the shuffled-label probes and of the random direction (the steering null: the post direction's
    norm at each window layer, added to the post model).

    ``batch_size``: prompts per forward pass of every pass (default: each pass's own, 16 when activations are
    read and 32 when continuations are generated or next-token distributions scored).
    """
    name, train, test = _datasets(data, is_organism)
    langs = tuple(train.label_names)
    train_tokens, test_tokens = tokens_for(pair, train.texts), tokens_for(pair, test.texts)  # read by every pass
    own = LanguageTokens.from_tokens({lang: train_tokens["post"].select([y == k for y in train.labels])
                                      for k, lang in enumerate(langs)})
    fit, held, prompt_kind = _prefixes(train, test, langs)
    run = _Run(pair, langs, own, {} if batch_size is None else {"batch_size": batch_size})
    _directions(run, fit)
    _identity_and_neurons(run, train, test, train_tokens, test_tokens, seed)
    run.window = _window(run, window_size)
    # each layer's difference already moves English onto the target language; over a window they share it
    run.scale = 1.0 / window_size if scale is None else scale
    vectors = _vectors(run)
    neutral_set = _neutral_set(data, is_organism)
    prompts_of, neutral_of = tokens_for(pair, [p["en"] for p in held]), tokens_for(pair, neutral_set.texts[:40])
    rows = _steer(run, vectors, prompts_of, neutral_of, seed, max_new_tokens)
    per_layer = _per_layer(run, seed)
    setup = _setup(run, train.source or name, neutral_set.source, prompt_kind, len(held), len(fit))
    return _result(run, per_layer, rows, vectors, len(prompts_of["post"]), setup)


@dataclass
class _Run:
    """What the stages of :func:`language_section` find, in the order they find it."""

    pair: ModelPair
    langs: tuple[str, ...]
    """the languages, English first"""
    own: LanguageTokens
    batch: dict
    """``{"batch_size": n}`` for every pass, or ``{}`` (each pass's default)"""
    dirs: dict = field(default_factory=dict)
    """``dirs[model][lang]``: ``[layer, d]`` the English→``lang`` difference of means (float32)"""
    diffs: dict = field(default_factory=dict)
    """``diffs[model][lang]``: ``[n_prefix, layer, d]`` the paired English→``lang`` differences (float64)"""
    ranks: dict = field(default_factory=dict)
    """``ranks[model][layer]``: ``(effective rank, eigengap)`` of each target language's paired differences"""
    neurons: dict = field(default_factory=dict)
    """``neurons[model]``: its LAPE result (:func:`probes.lape`)"""
    counts: dict = field(default_factory=dict)
    """``counts[model]``: ``[layer, lang]`` its number of language-specific neurons"""
    probe: dict = field(default_factory=dict)
    """``probe[(fitted on, scored on)]``: held-out accuracy per layer"""
    probe_ci: dict = field(default_factory=dict)
    """``probe_ci[(fitted on, scored on)]``: ``(low, high)``, each ``[layer]``, Wilson intervals of :attr:`probe`"""
    probe_null: dict = field(default_factory=dict)
    """``probe_null[model]``: per layer, held-out accuracy of its probe fitted on shuffled labels"""
    window: list[int] = field(default_factory=list)
    """the steering window's layers"""
    scale: float = 1.0
    """the steering scale at each window layer"""
    undefined: list[int] = field(default_factory=list)
    """layers where some direction is zero, so no cosine"""

    @property
    def targets(self) -> tuple[str, ...]:
        """The languages steered toward (all but English)."""
        return self.langs[1:]

    @property
    def n_layers(self) -> int:
        return self.pair.n_layers


def _datasets(data, is_organism: bool):
    """``(name, train, test)``: the parallel sentences' set name and its two splits, user ``data`` where it
    provides them (always off the organism).

    Raises:
        ValueError: the set's first language is not English.
    """
    name = "organism/languages" if is_organism else "languages"
    user = provides(data, "languages")
    sets = data.load if data is not None and (not is_organism or user) else load
    name = "languages" if user else name
    train, test = sets(name, "train"), sets(name, "test")
    langs = tuple(train.label_names)
    if langs[0] != "en":
        raise ValueError(f"the language section steers from English; {name} starts with {langs[0]!r}")
    from steering.metrics import check_language_codes

    check_language_codes(langs)  # continuations are identified among the set's labels
    return name, train, test


def _neutral_set(data, is_organism: bool):
    """The truth statements whose next-token KL measures the steering's cost (held-out split)."""
    return (load("organism/truth", "test") if is_organism
            else (load if data is None else data.load)("truth", "test"))


def _directions(run: _Run, fit: list[dict[str, str]]) -> None:
    """Directions and their low-rank structure, per model: from the last token of the ``fit`` prefixes, the
    English→target differences of means (:attr:`_Run.dirs`), the paired differences (:attr:`_Run.diffs`) and
    per layer their effective rank and eigengap (:attr:`_Run.ranks`)."""
    fit_tokens = {lang: tokens_for(run.pair, [p[lang] for p in fit]) for lang in run.langs}  # each set tokenised once
    for mname, model in run.pair:
        acts = {lang: collect(model, list(fit_tokens[lang][mname].texts), "resid_post", positions="last",
                              progress=False, tokens=fit_tokens[lang][mname], **run.batch)["resid_post"].double()
                for lang in run.langs}
        run.dirs[mname] = {lang: (acts[lang].mean(0) - acts["en"].mean(0)).float()
                           for lang in run.targets}  # [layer, d]
        run.diffs[mname] = {lang: acts[lang] - acts["en"] for lang in run.targets}
        run.ranks[mname] = [[effective_rank(run.diffs[mname][lang][:, L]) for lang in run.targets]
                            for L in range(run.n_layers)]


def _identity_and_neurons(run: _Run, train, test, train_tokens: dict[str, Tokenized],
                          test_tokens: dict[str, Tokenized], seed: int) -> None:
    """The language-identity probes (:func:`_probe_accuracy`) and each model's LAPE neurons (:attr:`_Run.neurons`,
    :attr:`_Run.counts`)."""
    from probes.lape import LAPE_SITE, check_activation

    # One pass over the training sentences per model reads both what the identity probe is fitted on
    # (resid_post, mean over each sentence's tokens) and what LAPE counts (the gate, mlp_pre, of every token).
    y_tr, y_te = np.array(train.labels), np.array(test.labels)
    probes_, a_te, token_means_by_model = {}, {}, {}
    for mname, model in run.pair:
        check_activation(getattr(model.cfg, "act_fn", None))
        tokens = collect_tokens_by_site(model, train_tokens[mname], ["resid_post", LAPE_SITE], progress=False,
                                        **run.batch)
        token_means_by_model[mname] = token_means(tokens["resid_post"], len(train))
        probes_[mname] = _language_probes(token_means_by_model[mname], y_tr)
        a_te[mname] = collect(model, test, "resid_post", positions="mean", progress=False,
                              tokens=test_tokens[mname], **run.batch)["resid_post"].float()
        run.neurons[mname] = _lape_neurons(tokens.pop(LAPE_SITE), train.labels, len(run.langs), run.n_layers)
        run.counts[mname] = run.neurons[mname].counts()  # [layer, lang]
        del tokens
    _probe_accuracy(run, probes_, a_te, token_means_by_model, y_tr, y_te, seed)


def _lape_neurons(by_layer, labels, n_langs: int, n_layers: int):
    """LAPE neurons per layer (:func:`probes.lape`) from the gate activation of every token (``by_layer[L].X``)
    and each sentence's language (``labels``)."""
    from probes import activation_probability, lape

    token_lang = torch.tensor(labels)[by_layer[0].prompt]
    probs = [activation_probability(by_layer[L].X, token_lang, n_langs) for L in range(n_layers)]
    return lape(np.stack(probs))


def _probe_accuracy(run: _Run, probes_: dict, a_te: dict, train_x: dict, y_tr: np.ndarray, y_te: np.ndarray,
                    seed: int) -> None:
    """Per layer, each model's probe scored on each model's held-out sentences (``a_te[model]``,
    ``[n_test, layer, d]``): :attr:`_Run.probe`, its interval :attr:`_Run.probe_ci` and the shuffled-label null
    :attr:`_Run.probe_null` (probes refitted on ``train_x[model]`` with permuted labels)."""
    from probes.stats import proportion_ci

    # probe[(fitted on, scored on)][layer]: own held-out accuracy and transfer to the other model, with Wilson
    # intervals over the test sentences; the null: the same probe fitted on shuffled training labels
    right = {(f, s): np.stack([p.predict(a_te[s][:, L].numpy()) == y_te for L, p in enumerate(probes_[f])])
             for f in ("base", "post") for s in ("base", "post")}  # [layer, n_test] bool
    run.probe = {k: v.mean(-1).tolist() for k, v in right.items()}
    run.probe_ci = {k: proportion_ci(v.astype(float)) for k, v in right.items()}
    shuffled = np.random.default_rng(seed).permutation(y_tr)
    run.probe_null = {m: [float(p.score(a_te[m][:, L].numpy(), y_te)) for L, p in
                          enumerate(_language_probes(train_x[m], shuffled))] for m in ("base", "post")}


def _window(run: _Run, window_size: int) -> list[int]:
    """Steering window: the ``window_size`` consecutive layers with the largest mean eigengap (post model's
    analysis)."""
    gaps = [np.mean([g for _, g in run.ranks["post"][L]]) for L in range(run.n_layers)]
    starts = range(0, run.n_layers - window_size + 1)
    start = max(starts, key=lambda s0: sum(gaps[s0 : s0 + window_size]))
    return list(range(start, start + window_size))


def _vectors(run: _Run) -> dict:
    """``{"{model}-{lang}": SteeringVector}``: each model's English→``lang`` direction at the window's layers, with
    the steering scale."""
    from steering import SteeringVector

    return {f"{m}-{lang}": SteeringVector(run.dirs[m][lang][run.window], tuple(run.window), "resid_post", run.scale,
                                          {"concept": "language", "target": lang, "model": m})
            for m in ("base", "post") for lang in run.targets}


@dataclass(frozen=True)
class _Reference:
    """One model's unsteered reading of the held-out English prompts and the neutral texts, which its steering
    rows are measured against."""

    target: str
    model: object
    prompts: Tokenized
    neutral: Tokenized
    gens: list
    """greedy continuations of the prompts (:class:`steering.Generation` records)"""
    probs: torch.Tensor
    """``[n, vocab]`` next-token probabilities on the prompts"""
    neutral_logprobs: torch.Tensor
    """next-token log-probabilities on the neutral texts (the KL's clean side)"""
    batch: dict
    """the passes' ``batch_size`` (:attr:`_Run.batch`)"""


def _reference(target: str, model, prompts: Tokenized, neutral: Tokenized, max_new_tokens: int,
               batch: dict) -> _Reference:
    """``model``'s unsteered continuations and next-token distributions (see :class:`_Reference`)."""
    from steering.generation import greedy_with_first_step
    from steering.metrics import next_token_logprobs

    plain_gen, clean = greedy_with_first_step(model, prompts, max_new_tokens=max_new_tokens, return_details=True,
                                              **batch)
    clean = clean.exp()  # share wants probabilities
    return _Reference(target, model, prompts, neutral, plain_gen, clean, next_token_logprobs(model, neutral, **batch),
                      batch)


def _conditions(target: str) -> list[tuple[str, bool]]:
    """``(direction from, English neurons off)`` of ``target``'s steering rows: its own direction, the other
    model's, and its own with the English LAPE neurons deactivated."""
    conditions = [(source, False) for source in (target, "post" if target == "base" else "base")]
    conditions.append((target, True))
    return conditions


def _steer(run: _Run, vectors: dict, prompts_of: dict[str, Tokenized], neutral_of: dict[str, Tokenized], seed: int,
           max_new_tokens: int) -> list[list]:
    """Steering held-out English prompts toward each language: the steering table's rows, per model and target
    language, for each of :func:`_conditions` and, on post, the null (a random direction)."""
    from steering import Add, Deactivate

    rows = []
    rng = torch.Generator().manual_seed(seed)  # one draw per target language, in order, on post only
    for target, model in run.pair:
        ref = _reference(target, model, prompts_of[target], neutral_of[target], max_new_tokens, run.batch)
        en_neurons = {L: run.neurons[target].neurons(L, 0) for L in range(run.n_layers)}
        plain_fluent = _fluent(ref.gens)
        for lang in run.targets:
            plain_in = _in_language(ref.gens, lang, run.langs)
            before = (float(run.own.share(ref.probs, lang).mean()), float((plain_in & plain_fluent).mean()),
                      float(plain_in.mean()))
            for source, deactivate in _conditions(target):
                ivs = [Add(vectors[f"{source}-{lang}"])] + ([Deactivate(en_neurons)] if deactivate else [])
                label = f"{source} direction" + (" + English neurons off" if deactivate else "")
                rows.append(_steered_row(run, ref, lang, before, label, ivs, max_new_tokens))
            if target == "post":  # the null: a random direction with the post direction's norm, same layers and scale
                null = [Add(_null_vector(vectors[f"post-{lang}"], rng, seed))]
                rows.append(_steered_row(run, ref, lang, before, "random direction (null)", null, max_new_tokens))
    return rows


def _null_vector(v, rng: torch.Generator, seed: int):
    """A random direction with ``v``'s norm at each of its layers, same layers, site and scale (draws from
    ``rng``)."""
    from probes.stats import equal_norm_random
    from steering import SteeringVector

    return SteeringVector(equal_norm_random(v.vectors, rng), v.layers, v.site, v.scale,
                          {**v.meta, "method": "random", "seed": seed})


def _steered_row(run: _Run, ref: _Reference, lang: str, before: tuple[float, float, float], label: str,
                 ivs: list, max_new_tokens: int) -> list:
    """One steering-table row (columns :data:`STEERING_COLUMNS`): ``ref``'s model under ``ivs``; the share of
    continuations fluent (:func:`steering.metrics.is_fluent`) and in ``lang`` (:func:`steering.metrics.language_of`)
    with its 95% Wilson interval, how many are fluent and the share in ``lang`` among those with its interval
    (undefined when none is fluent), the share in ``lang`` of all continuations with its interval, the two shares
    unsteered; next-token mass on ``lang``'s own tokens before and after and its gain, the KL on neutral text and an
    example continuation. ``before``: the unsteered mass, share fluent and in ``lang``, and share in ``lang``."""
    from steering.generation import greedy_with_first_step
    from steering.metrics import kl_divergence

    base_share, base_steered, base_gen = before
    gens, steered = greedy_with_first_step(ref.model, ref.prompts, ivs, max_new_tokens=max_new_tokens,
                                           return_details=True, **ref.batch)
    share = float(run.own.share(steered.exp(), lang).mean())
    in_lang = _in_language(gens, lang, run.langs)
    fluent = _fluent(gens)
    # a continuation counts as in the language only while it is fluent: "est est est est" is not French text
    steered_share, gen_share = float((in_lang & fluent).mean()), float(in_lang.mean())
    kept = in_lang[fluent]
    fluent_share = float(kept.mean()) if len(kept) else "undefined: no fluent continuation"
    kl = float(kl_divergence(ref.model, ref.neutral, ivs, clean=ref.neutral_logprobs, **ref.batch).mean())
    return [ref.target, label, lang, steered_share, _share_ci(steered_share, len(gens)),
            f"{int(fluent.sum())} of {len(fluent)}", fluent_share,
            _share_ci(fluent_share, len(kept)) if len(kept) else None, gen_share, _share_ci(gen_share, len(gens)),
            base_steered, base_gen, base_share, share, share - base_share, kl, gens[0].text[:40]]


def _in_language(gens: list, lang: str, langs: tuple[str, ...]) -> np.ndarray:
    """``[n]`` bool: each continuation (:class:`steering.Generation`) identified as ``lang`` among ``langs``
    (:func:`steering.metrics.language_of`, its prompt's words not included)."""
    from steering.metrics import language_of

    return np.array([language_of(g.text, langs) == lang for g in gens], dtype=bool)


def _fluent(gens: list) -> np.ndarray:
    """``[n]`` bool: each continuation (:class:`steering.Generation`) fluent by :func:`steering.metrics.is_fluent`
    (no loop of 4-grams, no token three times in a row), read on its token ids as generated."""
    from steering.metrics import is_fluent

    return np.array([is_fluent(g.token_ids) for g in gens], dtype=bool)


def _cosine_bounds(run: _Run, seed: int) -> tuple:
    """``(low, high, null)``, each ``[lang + 1, layer]`` (the target languages, then their mean): the base/post
    cosine's 95% interval and its null."""
    from probes.stats import paired_difference_cosine_ci, random_directions

    # base/post cosine of each English→target direction: its interval resamples the parallel prefixes (one
    # resample for every language, so the mean over languages gets one too); its null, how close random
    # directions come to the post direction (95th percentile of |cosine| over 100)
    targets = run.targets
    cos_low, cos_high = paired_difference_cosine_ci(
        torch.stack([run.diffs["base"][lang] for lang in targets], 1),
        torch.stack([run.diffs["post"][lang] for lang in targets], 1), seed=seed)  # [lang + 1, layer]
    post_dirs = torch.stack([run.dirs["post"][lang] for lang in targets]).double()  # [lang, layer, d]
    rand_cos = torch.nn.functional.cosine_similarity(
        random_directions(100, tuple(post_dirs.shape), seed=seed), post_dirs[None], dim=-1).abs()  # [100, lang, layer]
    cos_null = torch.cat([rand_cos, rand_cos.mean(1, keepdim=True)], 1).quantile(0.95, dim=0).numpy()
    return cos_low, cos_high, cos_null


def _undefined_layers(run: _Run) -> list[int]:
    """Layers where some model's English→target difference of means is zero (relative to its largest): no
    direction, so no cosine."""
    scale_of = {m: max(float(run.dirs[m][lang].norm(dim=-1).max()) for lang in run.targets) for m in run.dirs}
    return [L for L in range(run.n_layers) if any(float(run.dirs[m][lang][L].norm()) <= 1e-6 * scale_of[m]
                                                  for m in run.dirs for lang in run.targets)]


def _per_layer(run: _Run, seed: int) -> list[dict]:
    """Per layer: the probes (:func:`_probe_fields`), the base/post cosines (:func:`_cosine_fields`), and the
    rank and neurons (:func:`_structure_fields`)."""
    bounds = _cosine_bounds(run, seed)
    run.diffs.clear()
    run.undefined = _undefined_layers(run)
    return [{"layer": L, **_probe_fields(run, L), **_cosine_fields(run, L, bounds), **_structure_fields(run, L)}
            for L in range(run.n_layers)]


#: ``((fitted on, scored on), key)`` of the per-layer probe accuracies.
_PROBE_KEYS = ((("base", "base"), "base_accuracy"), (("post", "post"), "post_accuracy"),
               (("base", "post"), "transfer_base_to_post"), (("post", "base"), "transfer_post_to_base"))


def _probe_fields(run: _Run, L: int) -> dict:
    """Layer ``L``'s probe accuracies and transfers, their Wilson intervals and the shuffled-label nulls."""
    entry = {key: run.probe[fs][L] for fs, key in _PROBE_KEYS}
    for fs, key in _PROBE_KEYS:
        entry[f"{key}_ci_low"], entry[f"{key}_ci_high"] = (float(x[L]) for x in run.probe_ci[fs])
    entry["base_accuracy_null"], entry["post_accuracy_null"] = run.probe_null["base"][L], run.probe_null["post"][L]
    return entry


def _cosine_fields(run: _Run, L: int, bounds: tuple) -> dict:
    """Layer ``L``'s base/post cosine per target language and their mean, with interval and null from ``bounds``
    (:func:`_cosine_bounds`); None where the layer is undefined."""
    cos_low, cos_high, cos_null = bounds
    cosines = [float(torch.nn.functional.cosine_similarity(run.dirs["base"][lang][L], run.dirs["post"][lang][L],
                                                           dim=0))
               for lang in run.targets]
    none = L in run.undefined
    entry = {}
    for k, (key, c) in enumerate([*((f"cosine_base_post_{lang}", c) for lang, c in zip(run.targets, cosines)),
                                  ("cosine_base_post", float(np.mean(cosines)))]):
        entry[key] = None if none else c
        entry[f"{key}_ci_low"], entry[f"{key}_ci_high"] = (None, None) if none else (float(cos_low[k, L]),
                                                                                    float(cos_high[k, L]))
        entry[f"{key}_null"] = None if none else float(cos_null[k, L])
    return entry


def _structure_fields(run: _Run, L: int) -> dict:
    """Layer ``L``'s effective rank and eigengap per model (mean over target languages), its language-specific
    neurons per model and language, and the base/post neuron IoU."""
    from probes import iou

    entry = {}
    for mname in ("base", "post"):
        entry[f"{mname}_effective_rank"] = float(np.mean([r for r, _ in run.ranks[mname][L]]))
        entry[f"{mname}_eigengap"] = float(np.mean([g for _, g in run.ranks[mname][L]]))
        for k, lang in enumerate(run.langs):
            entry[f"{mname}_neurons_{lang}"] = int(run.counts[mname][L, k])
    ious = [iou(run.neurons["base"].neurons(L, k), run.neurons["post"].neurons(L, k)) for k in range(len(run.langs))]
    defined = [v for v in ious if not np.isnan(v)]  # IoU of two empty sets is undefined, not 1
    entry["neuron_iou"] = float(np.mean(defined)) if defined else None
    return entry


def _result(run: _Run, per_layer: list[dict], rows: list[list], vectors: dict, n_prompts: int,
            setup: dict) -> ConceptResult:
    """The section's :class:`~interp.report.ConceptResult`: directions, readings, plots and the steering table."""
    directions = {f"{m}/en_to_{lang}": run.dirs[m][lang] for m in ("base", "post") for lang in run.targets}
    readings = {"summary": _summary(run, rows, n_prompts), "headline": _headline(run, rows), **READINGS}
    readings["accuracy"] += _ceiling_note(per_layer)
    return ConceptResult("language", list(range(run.n_layers)), per_layer, long_rows(per_layer), {}, directions,
                         readings, setup, _plots(run.langs, per_layer), _tables(run, rows), vectors=vectors)


def _headline(run: _Run, rows: list[list]) -> str:
    """The report's one line for the section: per target language, the share of continuations the post model's own
    direction makes fluent and in that language, its interval and the random direction's share; a language counts
    as steered when the interval's lower end lies above the random direction's share."""
    c = {name: k for k, name in enumerate(STEERING_COLUMNS)}
    k = c["continuations fluent and in target after"]
    own = [r for r in rows if r[0] == "post" and r[1] == "post direction"]
    nulls = {r[2]: r[k] for r in rows if r[0] == "post" and r[1] == "random direction (null)"}
    steered = [r[2] for r in own if r[k + 1][0] > nulls[r[2]]]
    per_lang = ", ".join(f"{r[2]} {r[k]:.2f} [{r[k + 1][0]:.2f}, {r[k + 1][1]:.2f}] (random {nulls[r[2]]:.2f})"
                         for r in own)
    return (f"The post model's own English→target directions make continuations fluent and in the language: "
            f"{per_lang}; above the random direction (interval's lower end) in {len(steered)} of {len(own)} "
            f"languages{' (' + ', '.join(steered) + ')' if steered else ''}.")


def _summary(run: _Run, rows: list[list], n_prompts: int) -> str:
    """The section's headline: the post model's own directions' steering effects per language, with the nulls';
    the continuations counted in a language are the fluent ones, the share of all continuations follows."""
    c = {name: k for k, name in enumerate(STEERING_COLUMNS)}
    own_rows = [r for r in rows if r[0] == "post" and r[1] == "post direction"]
    nulls = {r[2]: r for r in rows if r[0] == "post" and r[1] == "random direction (null)"}

    def ci(x):
        return f"[{x[0]:.2f}, {x[1]:.2f}]"

    def among_fluent(r):
        k = c["in target among fluent after"]
        if r[k + 1] is None:  # no fluent continuation: the share among them is undefined, and says why
            return f"{r[c['fluent after']]} fluent, share in {r[2]} among them {r[k]}"
        return f"{r[c['fluent after']]} fluent, {r[k]:.2f} {ci(r[k + 1])} of them in {r[2]}"

    # every target language is reported: none is picked on the held-out prompts the figures come from
    steered = c["continuations fluent and in target after"]
    every = c["continuations in target after, all (fluent or not)"]
    mass = c["target share after"]
    per_lang = "; ".join(
        f"{r[2]}: next-token mass {r[c['target share before']]:.2f} → {r[mass]:.2f} (random direction "
        f"{nulls[r[2]][mass]:.2f}), continuations fluent and in {r[2]} {r[steered]:.2f} {ci(r[steered + 1])} "
        f"(random {nulls[r[2]][steered]:.2f}; {among_fluent(r)}), all continuations in {r[2]}, fluent or not, "
        f"{r[every]:.2f} {ci(r[every + 1])}, KL {r[c['KL neutral']]:.2f}"
        for r in own_rows)
    return (f"Post model, window {run.window}, its own English→target directions added to {n_prompts} held-out "
            f"English prompts — {per_lang}. A continuation counts as in a language only if it is fluent "
            f"(seq-rep-4 at most {MAX_REPETITION} and no token three times in a row) and langid.py identifies it as "
            f"that language (among {'/'.join(run.langs)}). Shares with 95% Wilson intervals over prompts.")


READINGS = {
    "accuracy": "Held-out accuracy of a multinomial logistic probe for the language of a sentence (mean over its "
                "tokens; bands: 95% Wilson intervals), each model's probe on the other model (transfer), post − "
                "base of the own probes' accuracy, and the cosine of base and post language directions.",
    "rank": "Effective rank and eigengap of the paired English→target difference matrices (mean over target "
            "languages): a low rank and a large gap mean one direction carries the language shift.",
    "neurons": "Language-specific neurons (LAPE, Tang et al. 2024: the 1% of all neurons with the lowest "
               "activation-probability entropy among the often active) per layer and language, and the IoU of "
               "base and post sets (mean over languages where either model has one; blank where none does).",
}


#: The identity probes' accuracies (own probes, then transfer) with their labels in the figure and caption.
ACCURACIES = {"base_accuracy": "base probe", "post_accuracy": "post probe",
              "transfer_base_to_post": "base probe → post", "transfer_post_to_base": "post probe → base"}


def _at_ceiling(per_layer: list[dict], key: str) -> bool:
    """Whether ``key`` reads 1.00 (to two decimals) at every layer where it is defined."""
    values = [e[key] for e in per_layer if e.get(key) is not None]
    return bool(values) and min(values) >= 0.995


def _ceiling_note(per_layer: list[dict]) -> str:
    """The accuracy caption's sentence naming the accuracies at ceiling (empty where none is)."""
    top = [label for key, label in ACCURACIES.items() if _at_ceiling(per_layer, key)]
    if not top:
        return ""
    return (f" At ceiling (1.00 at every layer): {', '.join(top)}; {'each is' if len(top) > 1 else 'it is'} drawn in "
            "a panel of its own, as the lines would coincide on one axis.")


def _identity_plot(langs: tuple[str, ...], per_layer: list[dict]) -> dict:
    """The identity probes' accuracies as small multiples (each model's own probe, each transfer, their
    difference post − base) and the base/post cosines; a panel whose accuracy is at ceiling says so."""
    def title(key, text):
        return text + (" (1.00 at every layer)" if _at_ceiling(per_layer, key) else "")

    acc = {"yaxis": "held-out accuracy", "yrange": [-0.05, 1.05]}
    return {
        "title": "Language identity: probe accuracy and base/post cosine", "reading": "accuracy",
        "yrange": [-0.05, 1.05], "columns": 2,
        "series": {**ACCURACIES, "post_minus_base_accuracy": "post − base (own probes)",
                   **{f"cosine_base_post_{lang}": f"cosine en→{lang}" for lang in langs[1:]}},
        "nulls": {"base_accuracy_null": "base probe, shuffled labels",
                  "post_accuracy_null": "post probe, shuffled labels",
                  **{f"cosine_base_post_{lang}_null": f"cosine en→{lang}, random directions (95th percentile)"
                     for lang in langs[1:]}},
        "differences": {"post_minus_base_accuracy": ["post_accuracy", "base_accuracy"]},
        "panels": [{"keys": ["base_accuracy", "base_accuracy_null"], **acc,
                    "title": title("base_accuracy", "base probe on base")},
                   {"keys": ["post_accuracy", "post_accuracy_null"], **acc,
                    "title": title("post_accuracy", "post probe on post")},
                   {"keys": ["transfer_base_to_post"], **acc,
                    "title": title("transfer_base_to_post", "base probe on post (transfer)")},
                   {"keys": ["transfer_post_to_base"], **acc,
                    "title": title("transfer_post_to_base", "post probe on base (transfer)")},
                   {"keys": ["post_minus_base_accuracy"], "yaxis": "accuracy, post − base", "yrange": None,
                    "title": "post − base accuracy (own probes)"},
                   {"keys": [k for lang in langs[1:] for k in (f"cosine_base_post_{lang}",
                                                               f"cosine_base_post_{lang}_null")],
                    "yaxis": "cosine", "yrange": [-0.05, 1.05], "title": "cosine of base and post directions"}]}


def _plots(langs: tuple[str, ...], per_layer: list[dict]) -> list[dict]:
    """The section's figures: identity probes and cosines, low-rank structure, LAPE neurons."""
    return [
        _identity_plot(langs, per_layer),
        {"title": "Low-rank structure of the language shift", "reading": "rank", "yaxis": "value",
         "series": {"base_effective_rank": "base effective rank", "post_effective_rank": "post effective rank",
                    "base_eigengap": "base eigengap", "post_eigengap": "post eigengap"},
         "panels": [{"keys": ["base_effective_rank", "post_effective_rank"], "yaxis": "effective rank (dimensions)"},
                    {"keys": ["base_eigengap", "post_eigengap"], "yaxis": "eigengap (ratio)"}]},
        {"title": "Language-specific neurons (LAPE)", "reading": "neurons", "yaxis": "neurons",
         "series": {**{f"{m}_neurons_{lang}": f"{m} {lang}" for m in ("base", "post") for lang in langs},
                    "neuron_iou": "IoU base/post"},
         "panels": [*({"keys": [f"{m}_neurons_{lang}" for lang in langs], "yaxis": f"{m}: neurons per language"}
                      for m in ("base", "post")),
                    {"keys": ["neuron_iou"], "yaxis": "IoU of base and post sets", "yrange": [0, 1.02]}]},
    ]


#: The steering table's columns (:func:`_steered_row`): continuations fluent and in the target first, then in the
#: target among the fluent ones, then all continuations in the target, fluent or not; next-token mass after them.
STEERING_COLUMNS = ("model", "intervention", "target", "continuations fluent and in target after",
                    "continuations fluent and in target after, 95% CI", "fluent after", "in target among fluent after",
                    "in target among fluent after, 95% CI", "continuations in target after, all (fluent or not)",
                    "continuations in target after, all (fluent or not), 95% CI",
                    "continuations fluent and in target before", "continuations in target before, all (fluent or not)",
                    "target share before", "target share after", "gain", "KL neutral", "example")


def _tables(run: _Run, rows: list[list]) -> dict:
    """The steering table (:data:`STEERING_COLUMNS`); "target share" is next-token mass on the target's own
    tokens, the other shares are of greedy continuations."""
    return {"steering": {
        "title": f"Steering held-out English prompts (layers {run.window}, scale {run.scale:g})",
        "columns": list(STEERING_COLUMNS),
        "rows": rows,
    }}


NEURONS_SETUP = ("LAPE (Tang et al. 2024 rule) over the gate activation (mlp_pre > 0), every sentence token; "
                 "neuron_iou blank where neither model has a neuron of any language at that layer")
COSINE_INTERVAL_SETUP = ("paired bootstrap over the direction prompts (both models' directions recomputed per "
                         "resample; the mean over languages from the same resamples)")
COSINE_NULL_SETUP = "95th percentile of |cosine| between the post direction and 100 random directions"


def _setup(run: _Run, source: str, neutral_source: str, prompt_kind: str, n_held: int, n_fit: int) -> dict:
    """The section's setup: data, prompts, site, window and scale, neurons, own tokens, cosine interval and null."""
    setup = {"dataset": source, "neutral texts (KL)": neutral_source, "prompts": prompt_kind,
             "site": "resid_post", "read at": "last token", "held-out prompts (steering)": n_held,
             "direction prompts per language": n_fit,
             "window": run.window, "scale": run.scale, "neurons": NEURONS_SETUP,
             "own tokens": {lang: len(s) for lang, s in run.own.sets.items()},
             "cosine interval": COSINE_INTERVAL_SETUP, "cosine null": COSINE_NULL_SETUP}
    if run.undefined:
        setup["cosine undefined"] = (f"layers {run.undefined}: a zero English→target difference of means has no "
                                     "direction, so no cosine")
    return setup


def _run(ctx, *, data: str | None = None, **options) -> ConceptResult:
    return language_section(ctx.pair, is_organism=ctx.is_organism, progress=ctx.progress,
                            data=user_data(ctx, "languages", data, options["seed"]), **options)


SECTION = Section("language", _run, help="language directions and LAPE neurons in both models, and steering English "
                                         "toward another language", params=(
    window_param("window_size", 2, "consecutive layers the language directions are added to"),
    Param("scale", float, None, "multiplier of the added directions (default 1 / window_size)"),
    Param("max_new_tokens", int, 6, "tokens generated per steered prompt", low=1),
    seed_param("seed of the shuffled-label probes, the random direction, the bootstrap and the "
                          "train/test split of --language-data"),
    Param("batch_size", int, None, "prompts per forward pass (default: 16 reading activations, 32 generating)",
          low=1),
    data_param("languages", "your parallel sentences: one file with a text, a language (en among them) and a "
                             "pair_id per row, split 75/25 by pair"),
))
