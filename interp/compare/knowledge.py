"""The knowledge section of :func:`interp.compare.compare`: does post-training move where facts are recalled?

Du et al. 2025 ("How Post-Training Reshapes LLMs: A Mechanistic View on Knowledge, Truthfulness, Refusal, and
Confidence") trace factual recall in base and post-trained models and find the causal-tracing peaks at the
same layers. This section repeats that comparison on a pair:

* **Facts.** Prompts ending right before their answer (:func:`interp.datasets.load` ``"facts"``; on the
  bundled organism ``"organism/facts"``, its planted city facts; or the user's file, the ``data`` option).
  Only facts *known by both models* are traced: the answer's first token is the top-1 prediction of the clean
  run of each (ROME keeps only facts its model predicts). Facts are taken in a seeded order, one per fact group
  (``meta["group"]``: the phrasings of one fact) before a second, and run clean in chunks of
  ``2 x max_prompts`` until ``max_prompts`` are known by both; the table ``prompts`` says how many of how many
  evaluated were known.
* **Causal tracing** (:func:`interp.tracing.causal_trace`; ROME, Meng et al. 2022, sec. 2.1): noise on the
  subject's embeddings, then one clean state restored at a time; the indirect effect is
  ``p_restored - p_corrupted`` of the answer token. Both models get the same standard-normal noise draws,
  each scaled by its own embedding std over the traced subjects (x ``noise``).
* **Where each kind is read** (:data:`interp.tracing.PEAK_ROLES`; ROME sec. 2.2): the MLP's and the residual
  stream's effect at the subject's last token (ROME's early site), attention's at the last token (its late site).
* **Selection.** The peak layer of each kind's effect at its token is chosen on the validation split (the set's
  ``train`` split, traced at those tokens only) and every figure is reported on the ``test`` split, with 95%
  percentile bootstrap intervals over test facts (1,000 resamples, seeded).
* **Nulls.** For tracing: the same restoration at the same token with *another* fact's clean state there (another
  fact group, subject and answer token): what restoring a clean-looking state that does not hold the fact gives.
  (Restoring a token before the subject would give exactly 0: the noise never reaches it under causal attention,
  so that is no null.) For cross-model patching: the target's own state moved by as much as the source's differs
  from it, in a random direction (a random direction of equal norm).
* **Same place?** For mlp and attn, the shift of the peak layer, post - base, measured on the test facts with a
  paired bootstrap (each resample draws the same facts for both models and takes each model's argmax layer): the
  same place when the 95% interval of the shift lies within +-:data:`PLACE_TOLERANCE` layer (on Gemma-3-270M the
  default window restores 4 layers, so a one-layer shift is below the trace's resolution), different places when
  it lies wholly beyond it, undetermined otherwise (more facts narrow it); undefined with fewer than
  :data:`MIN_FACTS` test facts or where either model's peak effect has an interval reaching 0 (no effect to
  locate). Not tested for resid: restoring the residual stream at the last subject token restores everything
  below it, so its effect is a plateau whose argmax locates nothing. The table ``peaks`` also gives each model's
  half-peak range and the 95% range of its validation peak layer over bootstrap resamples.
* **Intervals** resample whole facts (``meta["group"]``, else subject and answer: the phrasings of one fact, and
  a repeated row, are one piece of evidence; the cluster bootstrap, :class:`_Groups`).
* **Same strength?** The paired bootstrap interval of post - base at each model's peak layer (the same facts in
  both); the same strength where every such interval holds 0.
* **Cross-model patching** (:func:`interp.tracing.cross_model_patch`): each model's ``resid_post`` at layer
  ``l`` (every position) put into the other; ``survival = p_patched / p_target_clean``.

Cost model (CPU, float32; one restored run = one prompt through the model, unembedded at the last position):
a test fact of ``T`` tokens whose subject starts at token ``f`` costs ``samples x kinds x layers x (T - f + 1)``
restored runs per model (the ``+ 1``: the null; the blocks below the restored layer are replayed from the
corrupted run, about a third of the block work), a validation fact ``samples x kinds x layers``; the known
filter one clean run per fact evaluated per model, and patching ``2 + 2 x layers`` runs per test fact per
direction. google/gemma-3-270m (18 layers, 262k vocabulary) runs about 60 restored runs of 9 tokens a second
on 2 CPU cores in batches of 64, so the default (16 facts a split, 1 sample, 3 kinds; its test facts average
``T - f + 1 = 6.7``, a validation fact adds one more position) is about 2 x 16 x 54 x (6.7 + 1 + 1) / 60 = 250 s
of tracing, less what the replayed blocks save: measured 253 s for the section
(known filter 8 s, tracing 215 s, patching 29 s; booting the pair another 18 s). The bundled organism (6
layers, 1,024 tokens) takes about 5 s. Each option scales its part linearly.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..datasets import PromptSet, load
from ..datasets._record import record
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ..tracing import KINDS, PEAK_ROLES, ROLES, causal_trace, cross_model_patch, fact_predictions
from ..tracing import subject_embedding_std
from ._section import (Param, Section, data_param, layer_runs, provides, seed_param, tokens_for, user_data,
                       window_param)

__all__ = ["SECTION", "knowledge_section"]

log = logging.getLogger(__name__)

_MODELS = ("base", "post")
#: The largest shift of the peak layer, in layers, still called "the same place".
PLACE_TOLERANCE = 1


def _key(m: str, kind: str) -> str:
    """The per-layer key of model ``m``'s effect of ``kind`` at its token (:data:`~interp.tracing.PEAK_ROLES`)."""
    return f"{m}_{kind}_" + ("last_token" if PEAK_ROLES[kind] == ROLES[5] else "last_subject")
_SPLITS = ("validation", "test")
#: Bootstrap resamples of the peak layer.
_N_BOOT = 1000
#: The patching directions: (source, target).
_DIRECTIONS = (("base", "post"), ("post", "base"))


def _positive(name: str):
    def check(value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return check


def _check_options(pair, max_prompts, samples, noise, window, seed, batch_size) -> int:
    """The options checked before any model runs; returns the window (:func:`~interp.tracing.default_window`
    for None).

    Raises:
        ValueError, TypeError: as :func:`interp._checks.check_int` (counts below 1), a noise that is not a finite
            number > 0, a window outside 1..n_layers.
    """
    from .._checks import as_int, check_int
    from ..tracing import _check_window

    for name, value in (("max_prompts", max_prompts), ("samples", samples), ("batch_size", batch_size)):
        check_int(name, value)
    _positive("noise")(noise)
    if as_int(seed) is None:
        raise TypeError(f"seed must be an int, got {seed!r}")
    return _check_window(window, pair.n_layers)


def _parse_kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in str(value).split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a comma-separated subset of {', '.join(KINDS)}; got {value!r}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct; got {value!r}")
    return kinds


# ------------------------------------------------------------------------------------------------ inputs


def _fact_sets(data, is_organism: bool) -> tuple[PromptSet, PromptSet, str]:
    """``(validation, test, source)``: the user's facts where ``data`` provides them, else the built-in set
    (``organism/facts`` on the bundled organism); validation is the set's ``train`` split."""
    if provides(data, "facts"):
        val, test = data.load("facts", "train"), data.load("facts", "test")
        return val, test, f"facts ({test.source or 'user file'})"
    name = "organism/facts" if is_organism else "facts"
    return load(name, "train"), load(name, "test"), f"{name} (built-in)"


def _order(prompts: PromptSet, seed: int) -> list[int]:
    """Rows of ``prompts`` in a seeded order that takes one row of every ``meta["group"]`` (the phrasings of one
    fact) before a second of any."""
    rows = [int(i) for i in np.random.default_rng(seed).permutation(len(prompts))]
    seen: dict[str, int] = {}
    rank = {}
    for i in rows:
        group = (prompts.meta[i] or {}).get("group", f"row:{i}")
        rank[i] = seen.get(group, 0)
        seen[group] = rank[i] + 1
    return sorted(rows, key=lambda i: rank[i])  # stable: the seeded order within each rank


@dataclass
class _Run:
    """What the stages of :func:`knowledge_section` find, in the order they find them."""

    pair: ModelPair
    kinds: tuple[str, ...]
    samples: int
    noise: float
    window: int
    seed: int
    batch_size: int
    progress: bool
    sets: dict = field(default_factory=dict)
    """``sets[split]``: every fact of the split"""
    source: str = ""
    known: dict = field(default_factory=dict)
    """``known[split][model]``: ``[n]`` the answer token is the clean top-1 (False where not evaluated)"""
    evaluated: dict = field(default_factory=dict)
    """``evaluated[split]``: facts run clean to find those known (from the start of :func:`_order`)"""
    chosen: dict = field(default_factory=dict)
    """``chosen[split]``: the facts traced (known by both, at most ``max_prompts``)"""
    tokens: dict = field(default_factory=dict)
    """``tokens[split][model]``: the chosen facts, tokenised once"""
    std: dict = field(default_factory=dict)
    """``std[model]``: embedding std over the chosen facts' subject tokens (the noise unit)"""
    traces: dict = field(default_factory=dict)
    """``traces[split, model]``: :class:`~interp.tracing.CausalTrace` (validation: the kinds' tokens only)"""
    patches: dict = field(default_factory=dict)
    """``patches["base_to_post"]``: :class:`~interp.tracing.CrossPatch` on the test facts"""
    groups: dict = field(default_factory=dict)
    """``groups[split]``: :class:`_Groups`, the cluster bootstrap over the traced prompts' facts"""

    @property
    def n_layers(self) -> int:
        return self.pair.n_layers

    def n(self, split: str) -> int:
        return len(self.chosen.get(split, ()))


def _known_facts(run: _Run, max_prompts: int) -> None:
    """The facts to trace in each split: in :func:`_order`, chunks of ``2 max_prompts`` facts are run clean
    through both models until ``max_prompts`` are known by both (or the split is exhausted); ``run.known``
    records each model's verdict on the facts evaluated."""
    for split, prompts in run.sets.items():
        toks = tokens_for(run.pair, prompts.texts)
        order, chosen = _order(prompts, run.seed), []
        run.known[split] = {m: torch.zeros(len(prompts), dtype=torch.bool) for m in _MODELS}
        run.evaluated[split] = 0
        for c0 in range(0, len(order), 2 * max_prompts):
            rows = order[c0:c0 + 2 * max_prompts]
            for m, model in run.pair:
                run.known[split][m][rows] = fact_predictions(model, prompts[rows], tokens=toks[m].select(rows),
                                                             batch_size=run.batch_size)[1]
            run.evaluated[split] += len(rows)
            chosen += [i for i in rows if run.known[split]["base"][i] and run.known[split]["post"][i]]
            if len(chosen) >= max_prompts:
                break
        rows = sorted(chosen[:max_prompts])
        if rows:
            run.chosen[split] = record(replace(prompts[rows], name=f"{prompts.name}/traced"), split)
            run.tokens[split] = {m: t.select(rows) for m, t in toks.items()}
            run.groups[split] = _Groups(fact_groups(run.chosen[split]), run.seed)


def _trace(run: _Run) -> None:
    """Causal traces of the chosen facts in both models: validation at each kind's token
    (:data:`~interp.tracing.PEAK_ROLES`), test everywhere with the null; one noise unit per model over both
    splits' subjects."""
    splits = [s for s in _SPLITS if s in run.chosen]
    if not splits:
        return
    for m, model in run.pair:
        every = PromptSet.concat(*(run.chosen[s] for s in splits), name="traced")
        toks = run.tokens[splits[0]][m]
        for s in splits[1:]:
            toks = toks + run.tokens[s][m]
        run.std[m] = subject_embedding_std(model, every, tokens=toks, batch_size=run.batch_size)
        for split in splits:
            run.traces[split, m] = causal_trace(
                model, run.chosen[split], kinds=run.kinds, noise=run.noise, samples=run.samples, window=run.window,
                seed=run.seed, batch_size=run.batch_size, embedding_std=run.std[m], null=split == "test",
                roles=tuple(dict.fromkeys(PEAK_ROLES[k] for k in run.kinds)) if split == "validation" else None,
                tokens=run.tokens[split][m],
                progress=run.progress)


def _patch(run: _Run) -> None:
    """Cross-model patching of the test facts, both directions."""
    if "test" not in run.chosen:
        return
    models = dict(run.pair)
    for src, dst in _DIRECTIONS:
        run.patches[f"{src}_to_{dst}"] = cross_model_patch(models[src], models[dst], run.chosen["test"],
                                                           batch_size=run.batch_size, seed=run.seed,
                                                           tokens=run.tokens["test"][dst])


# ------------------------------------------------------------------------------------------- statistics


def _mean(values: np.ndarray) -> np.ndarray:
    """Mean per column of ``[n, layer]`` values over their finite rows (NaN where none is)."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        return np.where(finite, values, 0).sum(0) / finite.sum(0)


#: Fewest facts an interval is drawn from: a bootstrap over 2-4 facts gives a range, not an interval.
MIN_FACTS = 5


def fact_groups(prompts: PromptSet) -> list[str]:
    """The fact each prompt states: ``meta["group"]`` (the phrasings of one fact), else its subject and answer
    (so that a repeated row is one fact, not two)."""
    return [str((m or {}).get("group") or f"{(m or {}).get('subject')}\0{(m or {}).get('answer')}")
            for m in (prompts.meta or ({},) * len(prompts))]


class _Groups:
    """The cluster bootstrap over facts (Davison & Hinkley 1997, sec. 3.8): each of :data:`_N_BOOT` seeded
    resamples draws as many facts as there are, with replacement, and takes every prompt of each fact drawn, so the
    phrasings of one fact count as one piece of evidence. ``weights[b, g]``: how often resample ``b`` drew fact
    ``g``."""

    def __init__(self, groups, seed: int):
        _, self.ids = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
        self.n = int(self.ids.max()) + 1 if len(self.ids) else 0
        draws = np.random.default_rng(seed).integers(0, max(self.n, 1), (_N_BOOT, self.n))
        self.weights = np.zeros((_N_BOOT, self.n))
        np.add.at(self.weights, (np.arange(_N_BOOT)[:, None], draws), 1.0)

    def facts(self, rows: np.ndarray) -> int:
        """Distinct facts among the prompts where ``rows`` (``[n]`` bool) holds."""
        return len(set(self.ids[rows].tolist()))

    def means(self, values: np.ndarray) -> np.ndarray:
        """``[resample, column]`` mean of ``[n, column]`` values over each resample's prompts, undefined (NaN)
        values left out (NaN where a resample draws none)."""
        finite = np.isfinite(values)
        sums, counts = np.zeros((self.n, values.shape[1])), np.zeros((self.n, values.shape[1]))
        np.add.at(sums, self.ids, np.where(finite, values, 0.0))
        np.add.at(counts, self.ids, finite.astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.weights @ sums) / (self.weights @ counts)

    def ci(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """95% percentile interval per column of the mean, NaN (undefined) for a column whose finite values come
        from fewer than :data:`MIN_FACTS` facts."""
        means = self.means(values)
        low, high = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
        for c in range(values.shape[1]):
            if self.facts(np.isfinite(values[:, c])) >= MIN_FACTS:
                low[c], high[c] = np.nanquantile(means[:, c], [0.025, 0.975])
        mean, defined = _mean(values), ~np.isnan(low)  # a constant column: its mean inside despite rounding
        low[defined], high[defined] = np.minimum(low, mean)[defined], np.maximum(high, mean)[defined]
        return low, high


def _mean_ci(values: np.ndarray, groups: _Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, low, high)`` per column of ``[n, layer]`` values over their finite rows; the interval is the
    seeded cluster bootstrap over facts (:class:`_Groups`), NaN (undefined) with fewer than :data:`MIN_FACTS`
    facts."""
    low, high = groups.ci(values)
    return _mean(values), low, high


def _curves(run: _Run) -> dict[str, np.ndarray]:
    """Per-layer series ``{key: [layer]}``: each model's and kind's indirect effect at its token on the test facts
    (mean, interval, the different-fact null) and on the validation facts, and the survival of
    each patching direction with its null."""
    nan = np.full(run.n_layers, np.nan)
    out = {}
    for m in _MODELS:
        for k, kind in enumerate(run.kinds):
            key, role = _key(m, kind), PEAK_ROLES[kind]
            test = run.traces.get(("test", m))
            if test is not None:
                out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _mean_ci(
                    test.at_role(role)[:, k].double().numpy(), run.groups["test"])
                out[f"{key}_null"] = _mean(test.null_effect()[:, k].double().numpy())
                norm = f"{key}_normalised"
                out[norm], out[f"{norm}_ci_low"], out[f"{norm}_ci_high"] = _mean_ci(
                    test.at_role(role, test.normalised_effect())[:, k].double().numpy(), run.groups["test"])
            else:
                for suffix in ("", "_ci_low", "_ci_high", "_null", "_normalised", "_normalised_ci_low",
                               "_normalised_ci_high"):
                    out[key + suffix] = nan
            val = run.traces.get(("validation", m))
            out[f"{key}_validation"] = (val.at_role(role)[:, k].double().mean(0).numpy() if val is not None
                                        else nan)
    for src, dst in _DIRECTIONS:
        key, patch = f"survival_{src}_to_{dst}", run.patches.get(f"{src}_to_{dst}")
        if patch is None:
            for suffix in ("", "_ci_low", "_ci_high", "_null", "_minus_null", "_minus_null_ci_low",
                           "_minus_null_ci_high", "_distance"):
                out[key + suffix] = nan
            continue
        surv, null = patch.survival().double().numpy(), patch.null_survival().double().numpy()
        out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _mean_ci(surv, run.groups["test"])
        out[f"{key}_null"] = _mean(null)
        d = f"{key}_minus_null"
        out[d], out[f"{d}_ci_low"], out[f"{d}_ci_high"] = _mean_ci(surv - null, run.groups["test"])
        out[f"{key}_distance"] = _mean(patch.distance.double().numpy())
    return out


def _half_range(curve: np.ndarray, peak: int) -> tuple[int, int] | None:
    """The run of layers around ``peak`` where ``curve`` is at least half of ``curve[peak]`` (None when that is not
    positive)."""
    top = curve[peak]
    if not np.isfinite(top) or top <= 0:
        return None
    lo = hi = peak
    while lo > 0 and curve[lo - 1] >= top / 2:
        lo -= 1
    while hi < len(curve) - 1 and curve[hi + 1] >= top / 2:
        hi += 1
    return lo, hi


def _peak(run: _Run, m: str, k: int, curves: dict) -> dict:
    """Model ``m``'s peak of kind ``k`` at its token: the layer chosen on validation facts, its test
    effect with interval and null, the half-peak range on the test facts, and the 95% interval of the peak layer
    over bootstrap resamples of the validation facts. Empty when either split has no fact traced."""
    val, test = run.traces.get(("validation", m)), run.traces.get(("test", m))
    if val is None or test is None:
        return {}
    v = val.at_role(PEAK_ROLES[run.kinds[k]])[:, k].double().numpy()  # [n_val, layer]
    peak = int(np.argmax(_mean(v)))
    key = _key(m, run.kinds[k])
    groups = run.groups["validation"]
    boot = np.argmax(np.nan_to_num(groups.means(v), nan=-np.inf), -1)
    return {"layer": peak, "effect": curves[key][peak], "low": curves[f"{key}_ci_low"][peak],
            "high": curves[f"{key}_ci_high"][peak], "null": curves[f"{key}_null"][peak],
            "half": _half_range(curves[key], peak),
            "boot": (int(np.quantile(boot, 0.025, method="inverted_cdf")),
                     int(np.quantile(boot, 0.975, method="inverted_cdf")))
            if groups.facts(np.ones(len(v), bool)) >= MIN_FACTS else None}


def _difference_at(run: _Run, k: int, layer: int, normalised: bool = False) -> tuple[float, float, float]:
    """Post - base indirect effect of kind ``k`` at its token at ``layer`` on the test facts (``normalised``: each
    model's effect over its own ``p_clean - p_corrupted``): mean and paired bootstrap interval (the same facts in
    both models; the cluster bootstrap over facts of the per-prompt differences, prompts where either is
    undefined left out)."""
    effect = {m: run.traces["test", m] for m in _MODELS}
    role = PEAK_ROLES[run.kinds[k]]
    effect = {m: t.at_role(role, t.normalised_effect() if normalised else None)[:, k, layer]
              for m, t in effect.items()}
    mean, low, high = _mean_ci((effect["post"] - effect["base"]).double().numpy()[:, None], run.groups["test"])
    return float(mean[0]), float(low[0]), float(high[0])


def _holds_zero(low: float, high: float) -> str:
    return "undefined" if not math.isfinite(low) else "yes" if low <= 0 <= high else "no"


def _place(run: _Run, k: int, peaks: dict) -> dict:
    """Whether kind ``k`` peaks at the same layer in both models (module docstring, "Same place?"): ``{"shift",
    "low", "high", "base", "post", "verdict", "why"}``, the post - base shift of the test facts' peak layer with its
    95% paired bootstrap interval (``None`` where undefined, ``why`` saying why)."""
    kind = run.kinds[k]
    out = {"kind": kind, "shift": None, "low": None, "high": None, "base": None, "post": None, "why": None}
    if not all(("test", m) in run.traces for m in _MODELS):
        return {**out, "verdict": "undefined", "why": "no test fact is known by both models"}
    effect = {m: run.traces["test", m].at_role(PEAK_ROLES[kind])[:, k].double().numpy() for m in _MODELS}
    groups = run.groups["test"]
    out["base"], out["post"] = (int(np.argmax(_mean(effect[m]))) for m in _MODELS)
    out["shift"] = out["post"] - out["base"]
    if kind == "resid":
        half = {m: _half_range(_mean(effect[m]), out[m]) for m in _MODELS}
        spans = " and ".join(f"{a}-{b}" if (a, b) != (None, None) else "none" for a, b in
                             (half[m] or (None, None) for m in _MODELS))
        return {**out, "verdict": "not tested",
                "why": f"restoring the residual stream at the last subject token restores everything below it, so "
                       f"its effect is a plateau (at least half its peak over layers {spans} in base and post) "
                       "and its argmax locates nothing; the MLP's peak locates where the fact is recalled"}
    n = groups.facts(np.ones(len(effect["base"]), bool))
    if n < MIN_FACTS:
        return {**out, "verdict": "undefined", "why": f"fewer than {MIN_FACTS} test facts ({n}) to resample"}
    flat = [m for m in _MODELS if not peaks[m, kind] or not peaks[m, kind]["low"] > 0]
    if flat:
        return {**out, "verdict": "undefined",
                "why": f"{' and '.join(flat)}'s effect at {'its' if len(flat) == 1 else 'their'} peak layer has a 95% "
                       "interval reaching 0: no effect to locate"}
    peak = {m: np.argmax(np.nan_to_num(groups.means(effect[m]), nan=-np.inf), -1) for m in _MODELS}
    shift = peak["post"] - peak["base"]  # the same facts drawn for both models: paired
    out["low"] = int(np.quantile(shift, 0.025, method="inverted_cdf"))
    out["high"] = int(np.quantile(shift, 0.975, method="inverted_cdf"))
    if -PLACE_TOLERANCE <= out["low"] and out["high"] <= PLACE_TOLERANCE:
        out["verdict"] = "the same place"
    elif out["low"] > PLACE_TOLERANCE or out["high"] < -PLACE_TOLERANCE:
        out["verdict"] = "different places"
    else:
        out["verdict"] = "undetermined"
        out["why"] = (f"the interval reaches beyond ±{PLACE_TOLERANCE} layer but not wholly; more facts "
                      "(max_prompts) narrow it")
    return out


def _comparisons(run: _Run, curves: dict) -> tuple[dict, list, dict]:
    """``({(model, kind): peak}, agreement rows, {kind: place})``: :func:`_peak` per model and kind, post - base at
    each model's peak layer, as it is and normalised (:func:`_difference_at`), and :func:`_place` per kind."""
    peaks = {(m, kind): _peak(run, m, k, curves) for m in _MODELS for k, kind in enumerate(run.kinds)}
    places = {kind: _place(run, k, peaks) for k, kind in enumerate(run.kinds)}
    rows = []
    for k, kind in enumerate(run.kinds):
        for m in _MODELS:
            p = peaks[m, kind]
            if p:
                mean, low, high = _difference_at(run, k, p["layer"])
                n_mean, n_low, n_high = _difference_at(run, k, p["layer"], normalised=True)
                rows.append([kind, f"{m}'s peak", p["layer"], mean, [low, high], _holds_zero(low, high), n_mean,
                             [n_low, n_high], _holds_zero(n_low, n_high)])
    return peaks, rows, places


# ------------------------------------------------------------------------------------------------ report


def _num(x, digits: int = 2) -> str:
    return "undefined" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(low, high, digits: int = 2) -> str:
    if (low is None or not math.isfinite(low)) and (high is None or not math.isfinite(high)):
        return f"[no interval: fewer than {MIN_FACTS} facts]"
    return f"[{_num(low, digits)}, {_num(high, digits)}]"


def _model_phrase(p: dict) -> str:
    half = p["half"]
    span = ("no positive effect there" if half is None else f"≥ half of it over layers {half[0]}-{half[1]}"
            if half[0] != half[1] else f"≥ half only at layer {half[0]}")
    return f"layer {p['layer']} ({_num(p['effect'])} {_ci(p['low'], p['high'])}, {span})"


def _strength(rows: list, diff: int, holds: int) -> str:
    """The verdict on post - base at the peak layers (column ``diff`` of the agreement ``rows``, ``holds``: whether
    its interval holds 0)."""
    if any(r[holds] == "undefined" for r in rows):
        return "undefined (too few test facts for an interval)"
    if all(r[holds] == "yes" for r in rows):
        return "the same in both"
    return ("higher in post" if all(r[diff] > 0 for r in rows) else "higher in base" if all(r[diff] < 0 for r in rows)
            else "different")


#: Each kind as the summary's sentences name it.
_NAMES = {"mlp": "The MLP output", "resid": "The residual stream", "attn": "The attention output"}


def _shift(place: dict) -> str:
    """The peak-layer shift and its interval, e.g. ``"+1 layer [0, +2]"``, ``"0 layers [-1, +1]"``."""
    if place["shift"] is None:
        return "undefined"
    def signed(x: int) -> str:
        return f"{x:+d}" if x else "0"

    unit = "layer" if abs(place["shift"]) == 1 else "layers"
    return (f"{signed(place['shift'])} {unit}"
            + ("" if place["low"] is None else f" [{signed(place['low'])}, {signed(place['high'])}]"))


def _place_phrase(place: dict) -> str:
    """The summary's words on :func:`_place`."""
    at = ("" if place["base"] is None else
          f"on the test facts the effect peaks at layer {place['base']} in base and {place['post']} in post, ")
    shift = f"{at}post - base peak layer {_shift(place)}"
    if place["verdict"] == "not tested":
        return f"whether at the same place is not tested ({place['why']})"
    if place["verdict"] == "undefined":
        return f"whether at the same place is undefined ({place['why']}; {shift})"
    if place["verdict"] == "undetermined":
        return f"{shift}: the same place or not is undetermined ({place['why']})"
    if place["verdict"] == "the same place":
        return f"{shift}, within ±{PLACE_TOLERANCE} layer: the same place"
    return f"{shift}, wholly beyond ±{PLACE_TOLERANCE} layer: different places"


def _kind_phrase(kind: str, pb: dict, pp: dict, diffs: list, place: dict) -> str:
    """Where ``kind``'s effect peaks in each model, whether that is the same place (:func:`_place`), and post -
    base at the peak layers, as it is and normalised (the same strength)."""
    at = list({r[2]: r for r in diffs}.values())  # one figure per distinct peak layer
    figures = ", ".join(f"{_num(r[3])} {_ci(*r[4])} at layer {r[2]}" for r in at)
    normalised = ", ".join(f"{_num(r[6])} {_ci(*r[7])}" for r in at)
    return (f"{_NAMES[kind]} at the {PEAK_ROLES[kind]} peaks at {_model_phrase(pb)} in base and {_model_phrase(pp)} in "
            f"post, {_place_phrase(place)}; post - base {figures}: {_strength(at, 3, 5)}; as a share of each model's "
            f"own p_clean - p_corrupted, post - base {normalised}: {_strength(at, 6, 8)} (another fact's state: "
            f"{_num(pb['null'])} / {_num(pp['null'])})")


def _summary(run: _Run, peaks: dict, agreement: list, curves: dict, places: dict) -> str:
    """A few sentences: per kind (mlp, resid, attn), each model's validation-chosen peak layer with its
    test effect, interval and half-peak range, whether the places and strengths agree, the null; and what
    survives cross-model patching."""
    n_val, n_test = run.n("validation"), run.n("test")
    if not n_val or not n_test:
        missing = [s for s, n in (("validation", n_val), ("test", n_test)) if not n]
        counts = "; ".join(f"{s}: 0 of {run.evaluated[s]} evaluated" for s in missing)
        return (f"Undefined: no {' and no '.join(missing)} fact is known by both models (the answer token is not "
                f"the top-1 prediction of both clean runs; {counts}), so there is nothing to trace.")
    order = [k for k in ("mlp", "resid", "attn") if k in run.kinds]
    parts = [_kind_phrase(kind, peaks["base", kind], peaks["post", kind], [r for r in agreement if r[0] == kind],
                          places[kind]) for kind in order]
    surv = [_survival_phrase(src, dst, curves) for src, dst in _DIRECTIONS
            if np.isfinite(curves[f"survival_{src}_to_{dst}"]).any()]
    both = int((run.known["test"]["base"] & run.known["test"]["post"]).sum())
    p = {(m, r): float(getattr(run.traces["test", m], f"p_{r}").mean())
         for m in _MODELS for r in ("clean", "corrupted")}
    facts = {s: run.groups[s].facts(np.ones(run.n(s), bool)) for s in _SPLITS}
    return (f"On {n_test} test prompts of {facts['test']} facts known by both models ({both} of "
            f"{run.evaluated['test']} evaluated; peaks chosen on {n_val} validation prompts of {facts['validation']} "
            f"facts; indirect effect p_restored - p_corrupted with 95% bootstrap intervals over facts; mean p(answer) "
            f"clean {p['base', 'clean']:.2f} base / {p['post', 'clean']:.2f} post, corrupted "
            f"{p['base', 'corrupted']:.2f} / {p['post', 'corrupted']:.2f}). "
            + " ".join(part + "." for part in parts) + " "
            + (f"Patching one model's residual stream into the other (every position) keeps this share of the "
               f"target's answer probability, over layers: {'; '.join(surv)}; at the last layer it is p_source / "
               f"p_target by construction." if surv else ""))


def _headline(run: _Run, peaks: dict, agreement: list, places: dict) -> str:
    """The contents line: where the MLP (else the first kind) peaks in each model, the place verdict, and post -
    base at base's peak as it is and normalised."""
    if not run.n("validation") or not run.n("test"):
        return "Undefined: no fact is known by both models, so there is nothing to trace."
    kind = "mlp" if "mlp" in run.kinds else run.kinds[0]
    pb, pp, place = peaks["base", kind], peaks["post", kind], places[kind]
    row = next(r for r in agreement if r[0] == kind)
    verdict = place["verdict"] if place["verdict"] != "undefined" else f"undefined, {place['why']}"
    return (f"{kind} recall peaks at layer {pb['layer']} in base and {pp['layer']} in post (shift {_shift(place)}: "
            f"{verdict}); post - base there {_num(row[3])} {_ci(*row[4])}, as a share of each model's own damage "
            f"{_num(row[6])} {_ci(*row[7])}.")


def _survival_phrase(src: str, dst: str, curves: dict) -> str:
    """One patching direction's survival range over layers, its null's, and the layers where the paired interval
    of survival - null lies above 0."""
    key = f"survival_{src}_to_{dst}"
    curve, null = curves[key], curves[f"{key}_null"]
    low = curves[f"{key}_minus_null_ci_low"]
    above = [layer for layer in range(len(curve)) if np.isfinite(low[layer]) and low[layer] > 0]
    verdict = ("undefined: too few test facts for an interval" if not np.isfinite(low).any() else
               f"above it (paired 95% interval of the difference above 0) at layers {layer_runs(above)}" if above
               else "above it at no layer")
    return (f"{src}→{dst} {_num(np.nanmin(curve))} to {_num(np.nanmax(curve))}, a random change of the same size "
            f"{_num(np.nanmin(null))} to {_num(np.nanmax(null))}, {verdict}")


def _matrices(run: _Run) -> dict[str, dict]:
    """Per kind: the mean indirect effect over test facts by layer and token role, base above post on one scale,
    and post - base on a diverging scale centred on 0."""
    if not all(("test", m) in run.traces for m in _MODELS):
        return {}
    by_role = {m: run.traces["test", m].by_role().double().numpy() for m in _MODELS}  # [n, kind, layer, role]
    has = np.isfinite(by_role["base"][:, 0, 0, :]).sum(0)  # facts with a token of each role
    layers = list(range(run.n_layers))
    out = {}
    for k, kind in enumerate(run.kinds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a role no test fact has: its mean is undefined (NaN)
            means = {m: np.nanmean(by_role[m][:, k], 0).T for m in _MODELS}  # [role, layer]
        both = np.concatenate([means["base"], means["post"]])
        top = float(np.nanmax(both)) if np.isfinite(both).any() else 1.0
        low = min(0.0, float(np.nanmin(both))) if np.isfinite(both).any() else 0.0
        notes = [[f"{int(has[r])} test facts" if has[r] else "no test fact has a token of this role"] * len(layers)
                 for r in range(len(ROLES))]
        out[f"{kind}_by_role"] = {
            "title": f"{kind}: mean indirect effect by token role (test facts; colour: p_restored - p_corrupted, one "
                     "scale for base and post)",
            "rows": [f"{m} · {r}" for m in _MODELS for r in ROLES], "cols": layers,
            "values": _cells(both), "zmin": low, "zmax": max(top, low + 1e-9), "colorscale": "Viridis",
            "xaxis": "layer restored (centre of the window)" if kind != "resid" else "layer restored",
            "yaxis": "model · token role", "notes": notes + notes}
        diff = means["post"] - means["base"]
        span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
        out[f"{kind}_post_minus_base"] = {
            "title": f"{kind}: post - base mean indirect effect by token role (test facts; blue: higher in post)",
            "rows": list(ROLES), "cols": layers, "values": _cells(diff), "zmin": -max(span, 1e-9),
            "zmax": max(span, 1e-9), "colorscale": "RdBu", "xaxis": "layer restored", "yaxis": "token role",
            "notes": notes}
    return out


def _cells(values: np.ndarray) -> list[list]:
    return [[float(v) if np.isfinite(v) else None for v in row] for row in values]


def _per_layer(curves: dict, n_layers: int) -> list[dict]:
    return [{"layer": layer, **{key: float(v[layer]) for key, v in curves.items()}} for layer in range(n_layers)]


def _plots(kinds) -> list[dict]:
    plots = [{"title": f"{kind} at the {PEAK_ROLES[kind]}: indirect effect by layer", "reading": "peak_role",
              "xaxis": "layer restored" + (" (centre of the window)" if kind != "resid" else ""),
              "yaxis": "p_restored - p_corrupted",
              "series": {_key(m, kind): f"{m} (test facts)" for m in _MODELS},
              "nulls": {f"{_key(m, kind)}_null": f"{m}, another fact's state" for m in _MODELS}}
             for kind in kinds]
    plots.append({"title": "Normalised indirect effect (mlp and resid at the last subject token, attn at the last "
                           "token)" if "attn" in kinds else "Normalised indirect effect at the last subject token",
                  "reading": "normalised",
                  "xaxis": "layer restored", "yaxis": "(p_restored - p_corrupted) / (p_clean - p_corrupted)",
                  "series": {f"{_key(m, kind)}_normalised": f"{m}, {kind}" for kind in kinds for m in _MODELS}})
    plots.append({"title": "Cross-model patching: how much of the answer probability survives", "reading": "patching",
                  "xaxis": "layer patched (resid_post, every position)", "yaxis": "p_patched / p_target_clean",
                  "series": {f"survival_{s}_to_{t}": f"{s} → {t}" for s, t in _DIRECTIONS},
                  "nulls": {f"survival_{s}_to_{t}_null": f"{s} → {t}, a random change of the same size"
                            for s, t in _DIRECTIONS}})
    return plots


_READINGS = {
    "peak_role": "Indirect effect of restoring one clean state after noising the subject (ROME's causal tracing), "
                 "at the subject's last token for the MLP and the residual stream and at the last token for "
                 "attention (ROME's early and late sites), mean over the test facts with a 95% bootstrap band. Du et "
                 "al. 2025 find the peaks at the same layers in base and post-trained models; the summary says "
                 "whether this pair agrees. Grey: the same restoration with another fact's clean state (the null).",
    "normalised": "The indirect effect as a share of each fact's own p_clean - p_corrupted (1: the restoration "
                  "undoes all the damage the noise did), mean over the test facts with a 95% bootstrap band; a model "
                  "more confident in its answers has larger raw effects, not larger shares. Facts whose noise did "
                  "not lower p are left out (undefined).",
    "patching": "The target model run with its residual stream at one layer (every position) taken from the other "
                "model on the same prompt, as a share of its own answer probability (1: nothing lost; above 1: the "
                "other model's state raises it; at the last layer the ratio is p_source / p_target by "
                "construction, the other model's own output). Grey: "
                "the target's own state moved at every position by as much as the other model's differs from it, "
                "in a random direction: survival above grey means the two models' states differ in directions the "
                "target reads as the same fact.",
}
_MATRIX_READING = ("Mean indirect effect of restoring each kind of state, by layer and ROME's six token roles, over "
                   "the test facts; tokens before the subject hold no role (restoring them changes nothing). "
                   "Blank: no test fact has a token of that role.")
_DIFF_READING = "Post minus base of the maps above: blue where restoring the state helps post more, red base."


def _tables(run: _Run, peaks: dict, agreement: list, places: dict) -> dict[str, dict]:
    prompts = []
    for split in _SPLITS:
        known = run.known[split]
        prompts.append([split, len(run.sets[split]), run.evaluated[split], int(known["base"].sum()),
                        int(known["post"].sum()), int((known["base"] & known["post"]).sum()), run.n(split)])
    peak_rows = [[m, kind, PEAK_ROLES[kind], p["layer"], p["effect"], _ci(p["low"], p["high"], 3),
                  "none" if p["half"] is None else f"{p['half'][0]}-{p['half'][1]}",
                  "undefined" if p["boot"] is None else f"{p['boot'][0]}-{p['boot'][1]}",
                  p["null"]]
                 for (m, kind), p in peaks.items() if p]
    agreement = [[*r[:4], _ci(*r[4], 3), r[5], r[6], _ci(*r[7], 3), r[8]] for r in agreement]
    place_rows = [[kind, PEAK_ROLES[kind], "undefined" if p["base"] is None else p["base"],
                   "undefined" if p["post"] is None else p["post"], _shift(p), p["verdict"], p["why"] or ""]
                  for kind, p in places.items()]
    return {
        "prompts": {"title": "Facts: known (answer token is the clean top-1) by each model, and traced",
                    "columns": ["split", "facts", "evaluated", "known by base", "known by post", "known by both",
                                "traced"],
                    "rows": prompts},
        "peaks": {"title": "Peak layer of each kind at its token (chosen on validation facts; figures on test facts)",
                  "columns": ["model", "kind", "token", "peak layer", "indirect effect", "95% CI",
                              "layers >= half the peak", "validation peak layer, 95% of bootstrap resamples",
                              "null (another fact's state)"],
                  "rows": peak_rows},
        "place": {"title": f"Same place? Post - base shift of the peak layer on the test facts (paired bootstrap; the "
                           f"same place within ±{PLACE_TOLERANCE} layer)",
                  "columns": ["kind", "token", "base peak layer (test)", "post peak layer (test)",
                              "post - base [95% CI]", "verdict", "why"],
                  "rows": place_rows},
        "agreement": {"title": "Post - base indirect effect at each model's peak layer (test facts, paired bootstrap)",
                      "columns": ["kind", "at", "layer", "post - base", "95% CI", "interval holds 0",
                              "post - base, normalised", "95% CI (normalised)", "interval holds 0 (normalised)"],
                      "rows": agreement},
    }


def _setup(run: _Run) -> dict:
    return {
        "dataset": run.source, "validation": "the set's train split: chooses each peak layer (traced at the kinds' "
                                            "tokens only)", "test": "the set's test split: every figure",
        **{f"n_{split}_traced": run.n(split) for split in _SPLITS},
        "known": "the answer's first token is the top-1 next token of the clean prompt in both models",
        "selection": "known facts in a seeded order, one per fact group before a second, at most max_prompts per "
                     "split",
        "causal tracing": f"ROME (Meng et al. 2022, sec. 2.1): noise on the subject tokens at blocks.0.hook_resid_pre, "
                          f"std = {run.noise:g} x the embedding std over the traced subjects (base "
                          f"{_num(run.std.get('base'), 3)}, post {_num(run.std.get('post'), 3)}), {run.samples} "
                          f"samples per fact (the same standard-normal draws in both models); kinds "
                          f"{', '.join(run.kinds)}; mlp/attn restored over a window of {run.window} layer(s) around "
                          "each layer, as ROME; indirect effect = p_restored - p_corrupted of the answer's first token",
        "where read": "mlp and resid at the last subject token (ROME's early site), attn at the last token (its "
                      "late site)",
        "null (tracing)": "the clean state of another fact (another fact group, subject and answer token; seeded) at "
                          "the same token role restored in its place, same layers",
        "cross-model patching": "resid_post of layer l at every position from the other model on the same prompt; "
                                "survival = p_patched / p_target_clean, mean over test facts; null: the target's "
                                "own resid_post moved at each position by |source - target| in a seeded random "
                                "direction",
        "agreement": f"place (mlp, attn): the paired bootstrap 95% interval over test facts of post - base argmax "
                     f"layer lies within ±{PLACE_TOLERANCE} layer (the same place), wholly beyond it (different "
                     "places), or neither (undetermined); not tested for resid (a plateau); strength: the paired bootstrap interval of post - base at each model's peak "
                     "layer holds 0, for the indirect effect and for it normalised by each model's p_clean - "
                     "p_corrupted",
        "intervals": "95% percentile cluster bootstrap over test facts: the phrasings of one fact (meta group, else "
                     "subject and answer) drawn together (1,000 resamples, seeded)",
        "seed": run.seed,
    }


def knowledge_section(pair: ModelPair, *, data=None, is_organism: bool = False, max_prompts: int = 16,
                      samples: int = 1, noise: float = 3.0, window: int | None = None,
                      kinds: str = "resid,mlp,attn", seed: int = 0, batch_size: int = 64,
                      progress: bool = True) -> ConceptResult:
    """Causal tracing and cross-model patching of facts known by both models (module docstring).

    Args:
        pair: the booted :class:`~interp.ModelPair`.
        data: sets to read facts from (a :class:`~interp.datasets.UserSets` holding the user's ``facts``);
            otherwise the built-in ``facts`` (``organism/facts`` where ``is_organism``).
        max_prompts: most facts traced per split (validation, test).
        samples: noise draws per fact (ROME: 10). noise: noise std in units of the subject embeddings' std
            (ROME: 3). window: MLP/attention layers restored around each layer (None:
            :func:`interp.tracing.default_window`).
        kinds: comma-separated states traced (``resid``, ``mlp``, ``attn``).
        seed: of the noise, the selection of facts, the nulls and the bootstrap.
        batch_size: restored runs (or prompts) per forward pass. progress: progress bars.

    Returns:
        A :class:`~interp.report.ConceptResult` ``"knowledge"``: per layer ``{model}_{kind}_last_subject``
        (``_last_token`` for attn; test mean, ``_ci_low``/``_ci_high``, ``_null``, ``_validation``) and
        ``survival_{a}_to_{b}`` (with interval, ``_null``, ``_minus_null`` with interval, ``_distance``: the mean
        relative distance between the two models' states); matrices ``{kind}_by_role`` and
        ``{kind}_post_minus_base``; tables ``prompts``, ``peaks``, ``place``, ``agreement``;
        ``readings["summary"]``.

    Raises:
        ValueError: bad options (an unknown kind, a window outside 1..n_layers, a noise that is not > 0, fewer
            than 1 sample or prompt), and as :func:`interp.tracing.causal_trace` for malformed facts.
    """
    kinds_t = _parse_kinds(kinds)
    window = _check_options(pair, max_prompts, samples, noise, window, seed, batch_size)
    run = _Run(pair, kinds_t, samples, noise, window, seed, batch_size, progress)
    val, test, run.source = _fact_sets(data, is_organism)
    run.sets = {"validation": val, "test": test}
    _known_facts(run, max_prompts)
    _trace(run)
    _patch(run)
    curves = _curves(run)
    peaks, agreement, places = _comparisons(run, curves)
    per_layer = _per_layer(curves, run.n_layers)
    readings = {"summary": _summary(run, peaks, agreement, curves, places),
                "headline": _headline(run, peaks, agreement, places), **_READINGS}
    matrices = _matrices(run)
    for key in matrices:
        readings[key] = _DIFF_READING if key.endswith("_post_minus_base") else _MATRIX_READING
    return ConceptResult("knowledge", list(range(run.n_layers)), per_layer, long_rows(per_layer), matrices, {},
                         readings, _setup(run), _plots(kinds_t), _tables(run, peaks, agreement, places))


def _run(ctx, *, data: str | None = None, **options) -> ConceptResult:
    return knowledge_section(ctx.pair, data=user_data(ctx, "facts", data, options["seed"]),
                             is_organism=ctx.is_organism, progress=ctx.progress, **options)


SECTION = Section("knowledge", _run, help="where each model recalls facts (causal tracing, ROME) and whether "
                                          "post-training moved it; cross-model patching of the residual stream",
                  params=(
    Param("max_prompts", int, 16, "most facts traced per split (validation, test); cost grows linearly", low=1),
    Param("samples", int, 1, "noise draws per fact (ROME: 10); cost grows linearly", low=1),
    Param("noise", float, 3.0, "noise std in units of the subject embeddings' std (ROME: 3; at most 100, far past "
                               "where the subject is erased)", above=0, high=100),
    window_param("window", None, "MLP/attention layers restored around each layer (ROME: 10 of 48; default: that "
                                 "share of the model's layers, at least 1)"),
    Param("kinds", str, "resid,mlp,attn", "states traced: comma-separated resid, mlp, attn", validate=_parse_kinds),
    seed_param("seed of the noise, the choice of facts, the nulls and the bootstrap"),
    Param("batch_size", int, 64, "restored runs (or prompts) per forward pass", low=1),
    data_param("facts", "your facts: a file of prompts ending before their answer, each with a subject (a substring "
                        "of the prompt) and an answer, split by its group column when it has one"),
))
