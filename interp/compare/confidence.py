"""Confidence: how sure base and post are on facts, and whether entropy neurons carry the difference.

Du et al. 2025 ("How Post-Training Reshapes LLMs: A Mechanistic View on Knowledge, Truthfulness, Refusal, and
Confidence", finding 4) find that post-training changes how confident a model is, and that entropy neurons
(Stolfo et al. 2024) do not explain the change. The ``confidence`` section measures, on the same fact prompts
for both models (raw text ending right before the answer, e.g. "The city of Lyon is in"; no chat template, the
base model has none):

* **Calibration** (Guo et al. 2017): each model's multiple choice among the answer and its alternatives
  (:func:`interp.confidence.multiple_choice`: first tokens, probabilities renormalised over each prompt's own
  options; confidence = the largest, correct = the answer's is largest): accuracy (Wilson interval over facts)
  next to the chance level (``1 / options`` of each prompt, averaged: a facts file may give rows different
  numbers of alternatives, so chance differs per row), mean confidence and ECE with ``n_bins`` equal-width bins
  (percentile bootstrap over facts: the phrasings of one fact are drawn together), next to the ECE a perfectly
  calibrated model with the same confidences shows on as many prompts (the null); both reliability diagrams.
* **Entropy neurons** (Stolfo et al. 2024): the last layer's neurons ranked by the norm they write into the
  unembedding's effective null space (:func:`interp.confidence.entropy_neurons`), with the same criterion in
  both models; the overlap of the two sets (IoU: post is base fine-tuned, so neuron indices correspond); and
  each neuron's total and direct effect on next-token entropy when mean-ablated, over every token of a
  neutral corpus (the built-in ``languages`` sentences, the organism's own on the bundled organism), with the
  whole set and as many random neurons of the layer ablated together (the null).
* **Gap**: mean next-token entropy (full vocabulary, nats) and mean confidence on the fact prompts, post minus
  base (paired bootstrap over facts); the same with each model's entropy neurons mean-ablated (their
  corpus means); and with as many random neurons of the layer ablated instead (``n_random`` draws: the null).
  The summary says whether ablating entropy neurons closes the gap (Du et al.: it does not); the headline (the
  report's contents line) gives that answer in one sentence, with the gap and the share of it closed.

Every reading is written from the figures of the run (what is larger, which intervals hold 0); what the papers
found is stated as theirs.

Nothing is selected on the fact prompts (the neurons come from the weights, the ablation values from the
corpus), so every split of the facts is read (train and test of a built-in set, every row of a user's file),
at most ``max_prompts`` of them drawn with the seed. A user's file is checked before any model boots (it
parses as facts, holds at least 2 prompts, no option repeated within a row); that each option has its own
first token, and one that is a word (not a bare space, punctuation or an article, as the knowledge section requires
of an answer), needs the tokenizer and is checked on every row as the section starts, before any forward pass.
Errors name the file's row and its prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..confidence import (MAX_BINS, AblationEffects, EntropyNeurons, MultipleChoice, ablated_choices, ablation_effects,
                          answer_options, calibrated_ece_null, entropy_neurons, expected_calibration_error,
                          mean_activations, random_neurons, reliability, unembedding_null_space)
from ..datasets import PromptSet
from ..datasets._record import record
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ._section import Param, Section, provides, seed_param, tokens_for

__all__ = ["SECTION", "confidence_section"]

log = logging.getLogger(__name__)

_MODELS = ("base", "post")
#: The ablated block: the last (Stolfo et al. study final-layer neurons).
LAYER = -1
#: Significant digits kept of each neuron's norm and rho in the neuron map.
_DIGITS = 4


# ------------------------------------------------------------------------------------------------ inputs


def facts_file(files, section: str = "confidence") -> PromptSet:
    """Every row of the user's facts file, in file order (row ``i`` of the set is row ``i`` of the file), checked
    for what can be checked without a tokenizer (shared by the sections that read facts with their alternatives:
    ``section`` names the one asking).

    Raises:
        FileNotFoundError: no such file. ValueError: more than one file, a file that does not read as facts
            (:func:`~interp.datasets.load_file`, ``format="facts"``), fewer than 2 prompts, or a row that gives
            one option twice (its answer and alternatives would share a first token under any tokenizer).
    """
    from ..datasets import UserSets, load_file

    (path,) = UserSets({"facts": files}).files["facts"]  # one existing file, else UserSets' errors
    facts = load_file(path, name=path.name, format="facts")
    if len(facts) < 2:
        raise ValueError(f"{path}: {len(facts)} fact prompt(s); the {section} section needs at least 2")
    for i, (text, meta) in enumerate(zip(facts.texts, facts.meta)):
        options = [meta["answer"], *meta["alternatives"]]
        twice = sorted({o for o in options if options.count(o) > 1})
        if twice:
            raise ValueError(f"{path}: row {i} (prompt {text!r}) gives {', '.join(map(repr, twice))} more than once "
                             "among its answer and alternatives; each option must appear once (one first token is "
                             "read per option)")
    return facts


def _check_facts_file(files) -> None:
    """The ``data`` option's check before any model boots (:func:`facts_file`)."""
    facts_file(files)


def fact_prompts(ctx, data, section: str = "confidence") -> PromptSet:
    """Every fact prompt of every split: a user file (``data``: every row, in file order), the facts of
    ``ctx.data`` where it provides them, the organism's planted facts, or the built-in ``facts``.

    Raises:
        ValueError: no fact set in this toolkit and no file given; a bad file (:func:`facts_file`).
    """
    from ..datasets import available, load

    if data is not None:
        return facts_file(data, section)
    if provides(ctx.data, "facts"):
        return ctx.data.load("facts", "all")
    name = "organism/facts" if ctx.is_organism else "facts"
    if name not in available():
        raise ValueError(f"the built-in fact set {name!r} is not available in this version of the toolkit; give "
                         f"your own with data=FILE (--{section}-data): JSONL/CSV rows with the fields prompt, subject "
                         "and answer (alternatives optional)")
    return (ctx.data.load if ctx.data is not None and not ctx.is_organism else load)(name, "all")


def _check_options(pair: ModelPair, facts: PromptSet) -> None:
    """Every row's options under each model's tokenizer (:func:`interp.confidence.answer_options`), before any
    forward pass: an error names the row of ``facts`` (of the file, for a user's file) and its prompt."""
    for _, model in pair:
        answer_options(model, facts)


def _cap(facts: PromptSet, max_prompts: int, seed: int) -> PromptSet:
    """At most ``max_prompts`` rows of ``facts``, drawn with ``seed`` and kept in their order.

    Raises:
        ValueError: fewer than 2 prompts.
    """
    if len(facts) < 2:
        raise ValueError(f"{facts.name}: {len(facts)} fact prompt(s); the intervals need at least 2")
    if len(facts) <= max_prompts:
        return facts
    rows = np.sort(np.random.default_rng(seed).choice(len(facts), max_prompts, replace=False))
    return record(replace(facts[rows.tolist()], name=f"{facts.name}[{max_prompts} of {len(facts)}]"), "all")


def _corpus(ctx, corpus: str, n_corpus: int) -> tuple[list[str], str]:
    """The first ``n_corpus`` training texts of the neutral corpus (the organism's own set of that name on the
    bundled organism) and its source."""
    from ..datasets import available, load

    name = f"organism/{corpus}" if ctx.is_organism and f"organism/{corpus}" in available() else corpus
    loader = ctx.data.load if ctx.data is not None and not ctx.is_organism else load
    ps = loader(name, "train")
    texts = list(ps.texts[:n_corpus])
    if len(texts) < 2:
        raise ValueError(f"the corpus {name!r} has {len(texts)} text(s); the entropy effects need at least 2")
    return texts, f"{ps.source or ps.name} (first {len(texts)} training texts)"


def _check_n_bins(value: int) -> None:
    """The upper bound of ``n_bins``, before any model boots (the lower one is the Param's ``low``).

    Raises:
        ValueError: more than :data:`interp.confidence.MAX_BINS` bins.
    """
    if value > MAX_BINS:
        raise ValueError(f"option 'n_bins' of section 'confidence' must be <= {MAX_BINS}; got {value!r}: bins "
                         f"narrower than 1/{MAX_BINS} hold a handful of prompts each, so the ECE would measure "
                         "sampling noise (Guo et al. 2017 use 15)")


def _check_corpus(value: str) -> None:
    from ..datasets import available

    if value not in available() or value.startswith("organism/"):
        raise ValueError(f"corpus must name a built-in set ({', '.join(n for n in available() if '/' not in n)}); "
                         f"got {value!r}")


# ---------------------------------------------------------------------------------------------- neurons


def _entropy_neurons(pair: ModelPair, *, n_neurons: int, rho_threshold: float, null_dim) -> dict[str, EntropyNeurons]:
    """Each model's :class:`~interp.confidence.EntropyNeurons` of the last layer; the null space is computed
    once when both models have the same unembedding and final norm (its ``W W^T`` over a 262k vocabulary is the
    costly part)."""
    import torch

    spaces = {}
    for name, model in pair:
        same = name == "post" and torch.equal(pair.base.W_U, model.W_U) and all(
            torch.equal(a, b) for a, b in zip(pair.base.ln_final.parameters(), model.ln_final.parameters()))
        if same:
            spaces[name] = spaces["base"]
        else:
            spaces[name] = unembedding_null_space(model, null_dim)
    return {name: entropy_neurons(model, layer=LAYER, n_neurons=n_neurons, rho_threshold=rho_threshold,
                                  null_space=spaces[name]) for name, model in pair}


def _random_iou(a: int, b: int, n: int) -> float:
    """The IoU two independent uniformly random sets of ``a`` and ``b`` of ``n`` neurons have on average (the
    null of the overlap), exactly: the mean over the hypergeometric intersection ``k`` of ``k / (a + b - k)``."""
    from scipy.stats import hypergeom

    if a + b == 0:
        return float("nan")
    k = np.arange(0, min(a, b) + 1)
    return float((hypergeom(n, a, b).pmf(k) * k / (a + b - k)).sum())


def _iou(a: Sequence[int], b: Sequence[int]) -> float | None:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else None


def _corpus_conditions(selected: Sequence[int], random: Sequence[int]) -> dict[str, list[int]]:
    """Each entropy neuron alone, all of them together (when more than one), and as many random neurons."""
    out = {f"neuron {j}": [j] for j in selected}
    if len(selected) > 1:
        out[f"all {len(selected)} entropy neurons"] = list(selected)
    if selected:
        out[f"{len(selected)} random neurons (null)"] = list(random)
    return out


# ------------------------------------------------------------------------------------------- statistics


# Every interval over the fact prompts resamples whole facts (``meta["group"]``: the phrasings of one fact are
# not independent evidence), with probes.stats.cluster_bootstrap_ci; ``groups`` is ``[n_prompts]``.


#: Fewest facts an interval is drawn from: a bootstrap over 2-4 facts gives a range, not an interval.
MIN_FACTS = 5


def _few(groups) -> bool:
    return len(set(map(str, groups))) < MIN_FACTS


def _ci(values: np.ndarray, seed: int, groups) -> list[float] | None:
    """None (undefined) with fewer than :data:`MIN_FACTS` facts."""
    from probes.stats import cluster_bootstrap_ci

    if _few(groups):
        return None
    values = np.asarray(values, dtype=np.float64)
    low, high = cluster_bootstrap_ci(lambda r: values[r].mean(), groups, seed=seed)
    # a constant sample has a single bootstrap value; the percentile can come back a rounding step off it
    return [float(min(low, values.mean())), float(max(high, values.mean()))]


def _ece_ci(conf: np.ndarray, correct: np.ndarray, n_bins: int, seed: int, groups, other=None) -> list[float]:
    """Percentile bootstrap interval over facts of the ECE (with ``other = (conf, correct)`` of the second
    model: of the paired difference, ``other`` minus this)."""
    from probes.stats import cluster_bootstrap_ci

    if _few(groups):
        return None

    def ece(r):
        out = expected_calibration_error(conf[r], correct[r], n_bins)
        return out if other is None else expected_calibration_error(other[0][r], other[1][r], n_bins) - out

    low, high = cluster_bootstrap_ci(ece, groups, seed=seed)
    return [float(low), float(high)]


def _accuracy_ci(correct: np.ndarray, groups) -> list[float] | None:
    """Wilson interval of the accuracy with the number of facts as its sample size (phrasings of one fact are
    not independent; a bootstrap would give [1, 1] when every prompt is right)."""
    from probes.stats import proportion_ci

    if _few(groups):
        return None
    n = len(set(map(str, groups)))
    k = int(round(float(correct.mean()) * n))
    return [float(x) for x in proportion_ci(np.r_[np.ones(k), np.zeros(n - k)])]


def _calibration(mc: MultipleChoice, n_bins: int, seed: int, groups) -> dict:
    """One model's calibration figures on the fact prompts (``chance``: the mean of each prompt's
    ``1 / n_options``)."""
    conf, correct = mc.confidence, mc.correct.astype(np.float64)
    null = calibrated_ece_null(conf, n_bins, seed=seed)
    return {"accuracy": float(correct.mean()), "accuracy_ci": _accuracy_ci(correct, groups),
            "chance": float(mc.chance.mean()),
            "confidence": float(conf.mean()), "confidence_ci": _ci(conf, seed, groups),
            "ece": expected_calibration_error(conf, correct, n_bins),
            "ece_ci": _ece_ci(conf, correct, n_bins, seed, groups),
            "ece_null": null["mean"], "ece_null_range": [null["low"], null["high"]],
            "entropy": float(mc.entropy.mean()), "entropy_ci": _ci(mc.entropy, seed, groups),
            "reliability": reliability(conf, correct, n_bins)}


def _closure(clean: np.ndarray, ablated: np.ndarray, seed: int, groups) -> list[float] | None:
    """Percentile bootstrap interval over facts of ``1 - mean(ablated) / mean(clean)`` (paired gaps)."""
    from probes.stats import cluster_bootstrap_ci

    if _few(groups):
        return None
    low, high = cluster_bootstrap_ci(lambda r: 1 - ablated[r].mean() / clean[r].mean(), groups, seed=seed)
    return [float(low), float(high)]


def _gap(choices: dict[str, dict[str, MultipleChoice]], n_random: int, seed: int, groups) -> dict:
    """Per measure (``entropy``, ``confidence``): the post-minus-base gap per prompt, clean, with each model's
    entropy neurons ablated and with each random draw, and what share of the clean gap each closes,
    ``1 - ablated gap / clean gap`` (1: closed, 0: unchanged, negative: widened)."""
    conds = list(dict.fromkeys([*choices["base"], *choices["post"]]))

    def value(m, cond, measure):  # a model without entropy neurons ablates none: its clean reading
        return getattr(choices[m].get(cond, choices[m]["clean"]), measure)

    out = {}
    for measure in ("entropy", "confidence"):
        per = {cond: value("post", cond, measure) - value("base", cond, measure) for cond in conds}
        clean = per["clean"]
        g = {"clean": float(clean.mean()), "clean_ci": _ci(clean, seed, groups)}
        if g["clean_ci"] is None:
            defined = False
            g["why_undefined"] = f"fewer than {MIN_FACTS} facts, so the {measure} gap has no interval"
        else:
            defined = not (g["clean_ci"][0] <= 0 <= g["clean_ci"][1])
            g["why_undefined"] = None if defined else (
                f"no {measure} gap to explain: its 95% interval [{g['clean_ci'][0]:.3f}, {g['clean_ci'][1]:.3f}] "
                "includes 0")
        if "entropy neurons" in per:
            abl = per["entropy neurons"]
            g["ablated"], g["ablated_ci"] = float(abl.mean()), _ci(abl, seed, groups)
            g["closed"] = float(1 - abl.mean() / clean.mean()) if defined else None
            g["closed_ci"] = _closure(clean, abl, seed, groups) if defined else None
        draws = [per[f"random {r}"] for r in range(n_random) if f"random {r}" in per]
        if draws:
            means = np.array([d.mean() for d in draws])
            g["random"], g["random_range"] = float(means.mean()), [float(means.min()), float(means.max())]
            closed = 1 - means / clean.mean() if defined else None  # (no division by a gap that may be 0)
            g["random_closed"] = float(closed.mean()) if defined else None
            g["random_closed_range"] = [float(closed.min()), float(closed.max())] if defined else None
        g["base"], g["post"] = ({c: float(value(m, c, measure).mean()) for c in conds} for m in _MODELS)
        out[measure] = g
    return out


def _verdict_kind(g: dict) -> tuple[str, list[str]]:
    """``(kind, why)`` of whether ablating each model's entropy neurons closes the entropy gap: ``"closes"`` when
    the ablated gap's interval holds 0 and the share closed exceeds every random draw's; ``"narrows"`` when the
    share closed is above 0 and above every random draw's over its whole interval; ``"not"`` otherwise, ``why``
    naming which of the two fails; ``"undefined"`` without a gap (``why``: its reason) or without entropy neurons
    (``why`` empty)."""
    if g.get("why_undefined"):
        return "undefined", [g["why_undefined"]]
    if "ablated" not in g:
        return "undefined", []
    null_top, low = g["random_closed_range"][1], g["closed_ci"][0]
    if _holds_zero(g["ablated_ci"]) and g["closed"] > null_top:
        return "closes", []
    if low > max(0.0, null_top):
        return "narrows", []
    why = ([f"the share closed is not above 0 over its interval (low end {_pct(low)})"] if low <= 0 else []) + (
        [f"its low end, {_pct(low)}, is not above the most a random draw closes, {_pct(null_top)}"]
        if low <= null_top else [])
    return "not", why


def _verdict(g: dict) -> str:
    """The summary's answer (:func:`_verdict_kind`), with why where it does not close the gap or is undefined."""
    kind, why = _verdict_kind(g)
    if kind == "undefined":
        return ("Whether ablating entropy neurons closes the gap is undefined: "
                + (why[0] if why else "neither model has an entropy neuron by the criterion, so there is nothing to "
                                      "ablate") + ".")
    if kind == "closes":
        return "Ablating entropy neurons closes the entropy gap."
    if kind == "narrows":
        return "Ablating entropy neurons narrows the entropy gap, more than random neurons do, but does not close it."
    return f"Ablating entropy neurons does not close the entropy gap: {'; '.join(why)}."


def _headline(gap: dict, rho_threshold: float) -> str:
    """The contents line, one sentence: the entropy gap with its interval, the share of it closed by ablating
    entropy neurons with its interval next to random neurons', and the verdict (:func:`_verdict_kind`); where the
    verdict is undefined, why, in a few words."""
    g = gap["entropy"]
    head = f"Entropy gap post − base {g['clean']:+.3f} nats {_interval(g['clean_ci'])}"
    kind, why = _verdict_kind(g)
    if kind == "undefined":
        if "ablated" not in g:
            reason = f"neither model has an entropy neuron (rho >= {rho_threshold:g})"
        elif g["clean_ci"] is None:
            reason = f"fewer than {MIN_FACTS} facts"
        else:
            reason = "the gap's interval holds 0"
        return f"{head}; whether ablating entropy neurons closes it is undefined: {reason}."
    share = (f"; ablating entropy neurons closes {_pct(g['closed'])} {_pct_interval(g['closed_ci'])} of it "
             f"(random neurons {_pct(g['random_closed'])}, range {_pct_interval(g['random_closed_range'])})")
    if kind == "closes":
        return f"{head}{share}: it closes the gap."
    if kind == "narrows":
        return f"{head}{share}: it narrows the gap more than random neurons do but does not close it."
    low, null_top = g["closed_ci"][0], g["random_closed_range"][1]
    fails = " and ".join(x for x in ("not above 0" if low <= 0 else "", "not above random neurons'"
                                     if low <= null_top else "") if x)
    return f"{head}{share}: it does not close the gap (share {fails} over its interval)."


# ------------------------------------------------------------------------------------------------ output


#: Why an interval is missing, by what it resamples.
_NO_INTERVAL = {"facts": f"fewer than {MIN_FACTS} facts", "texts": "fewer than 2 corpus texts"}


def _round(x) -> float:
    return float(f"{x:.{_DIGITS}g}")


def _interval(ci, over: str = "facts") -> str:
    """``[low, high]`` to 3 decimals (the precision of the figures beside it); without an interval, why
    (``over``: ``"facts"`` or ``"texts"``, what the bootstrap resamples)."""
    return f"[no interval: {_NO_INTERVAL[over]}]" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _pct(x: float) -> str:
    """A share as a whole percentage, never ``-0%``."""
    return f"{int(round(100 * x)):d}%"


def _pct_interval(ci, over: str = "facts") -> str:
    """An interval of a share in the unit and precision of :func:`_pct`: ``[15%, 21%]``."""
    return f"[no interval: {_NO_INTERVAL[over]}]" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _holds_zero(ci) -> bool:
    return ci is not None and ci[0] <= 0 <= ci[1]


def _signed(x: float, ci, over: str, unit: str = "") -> str:
    """``+0.034 nats [0.02, 0.05]``, with "(holds 0)" after an interval that holds 0."""
    return f"{x:+.3f}{unit and ' ' + unit} {_interval(ci, over)}" + (" (holds 0)" if _holds_zero(ci) else "")


def _undefined(why: str) -> str:
    """A table cell whose value is undefined (an empty cell means nothing applies)."""
    return f"undefined: {why}"


def _bounds(ci, over: str = "facts") -> list:
    """The two numeric interval cells of a table row, or the reason in both where there is no interval."""
    return [float(ci[0]), float(ci[1])] if ci is not None else [_undefined(_NO_INTERVAL[over])] * 2


def _top_bin(calib: dict, m: str) -> tuple[int, int, float, float]:
    """``(prompts in the fullest bin, prompts, bin low edge, bin high edge)`` of model ``m``'s reliability table."""
    rel = calib[m]["reliability"]
    k = int(np.argmax(rel["count"]))
    return int(rel["count"][k]), int(rel["count"].sum()), float(rel["edges"][k]), float(rel["edges"][k + 1])


def _reliability_plot(calib: dict, n_bins: int) -> dict:
    from probes.stats import proportion_ci

    series = {}
    for m in _MODELS:
        rel, c = calib[m]["reliability"], calib[m]
        full = rel["count"] > 0
        lows, highs = [], []
        for k in np.flatnonzero(full):
            n, acc = int(rel["count"][k]), float(rel["accuracy"][k])
            low, high = proportion_ci(np.r_[np.ones(round(acc * n)), np.zeros(n - round(acc * n))])
            lows.append(low)
            highs.append(high)
        edges = rel["edges"]
        series[f"{m} (ECE {c['ece']:.3f}, calibrated null {c['ece_null']:.3f})"] = {
            "x": rel["confidence"][full].tolist(), "y": rel["accuracy"][full].tolist(), "low": lows, "high": highs,
            "text": [f"{int(rel['count'][k])} prompts with confidence in ({edges[k]:.2f}, {edges[k + 1]:.2f}]"
                     for k in np.flatnonzero(full)]}
    return {"kind": "xy", "title": f"Reliability diagram on the fact prompts ({n_bins} equal-width bins)",
            "reading": "reliability", "series": series,
            "nulls": {"perfect calibration (accuracy = confidence)": {"x": [0, 1], "y": [0, 1]}},
            "xaxis": "mean confidence in the bin", "yaxis": "accuracy in the bin (95% Wilson interval)",
            "xrange": [0, 1.02], "yrange": [-0.02, 1.02]}


def _neuron_plot(neurons: dict[str, EntropyNeurons]) -> dict:
    series = {}
    for m in _MODELS:
        en = neurons[m]
        series[f"{m}: neurons of layer {en.layer}"] = {
            "x": [_round(v) for v in en.norm], "y": [_round(v) for v in en.rho],
            "text": [f"{m} neuron {j}" for j in range(len(en.norm))]}
        sel = list(en.selected)
        series[f"{m}: entropy neurons"] = {"x": [_round(en.norm[j]) for j in sel],
                                           "y": [_round(en.rho[j]) for j in sel],
                                           "text": [f"{m} neuron {j}" for j in sel]}
    ns, top = neurons["base"].null_space, float(max(neurons[m].norm.max() for m in _MODELS))
    return {"kind": "xy", "mode": "markers", "reading": "neurons",
            "title": f"Output-weight norm and null-space fraction of the layer-{neurons['base'].layer} neurons",
            "series": series,
            "nulls": {f"rho of a random direction, sqrt(k/d) = {ns.random_rho:.3f}": {
                "x": [0, top], "y": [ns.random_rho, ns.random_rho]},
                f"selection threshold rho = {neurons['base'].rho_threshold:g}": {
                "x": [0, top], "y": [neurons["base"].rho_threshold] * 2}},
            "xaxis": "norm of the neuron's direction in the residual stream",
            "yaxis": "rho: fraction in the null space",
            "yrange": [-0.02, 1.02]}


def _neuron_rows(neurons, effects, means, seed) -> list[list]:
    rows = []
    for m in _MODELS:
        en, other = neurons[m], set(neurons["post" if m == "base" else "base"].selected)
        median = float(np.median(en.norm))
        rank = {int(j): r + 1 for r, j in enumerate(en.order)}
        for j in en.selected:
            key = f"neuron {j}"
            eff: AblationEffects = effects[m]
            rows.append([m, int(j), rank[j], float(en.norm[j]), float(en.norm[j]) / median, float(en.rho[j]),
                         float(means[m][j]),
                         *(x for kind in ("total", "direct", "via_norm")
                           for x in (eff.mean(key, kind), _interval(eff.ci(key, kind, seed=seed), "texts"))),
                         "yes" if j in other else "no"])
    return rows


def _effect_rows(effects: dict[str, AblationEffects], seed: int) -> list[list]:
    rows = []
    for m in _MODELS:
        eff = effects.get(m)
        for key in (eff.total if eff is not None else {}):
            for kind in ("total", "direct"):
                rows.append([m, key, kind, eff.mean(key, kind), *_bounds(eff.ci(key, kind, seed=seed), "texts")])
    return rows


def _gap_rows(gap: dict, n_random: int) -> list[list]:
    """Rows of the gap table: the gap with its interval, base, post, and the share of the clean gap closed with
    its interval, as whole percentages as the summary writes them (empty cells in the clean row, where nothing is
    closed; "undefined: why" without a gap). The bars plot the gap and its interval, which stay numbers."""
    rows = []
    for measure, label in _MEASURES.items():
        g = gap[measure]
        rows.append([label, "clean", g["clean"], *_bounds(g["clean_ci"]), g["base"]["clean"], g["post"]["clean"],
                     "", "", ""])
        why = g.get("why_undefined")
        if "ablated" in g:
            share = ([_undefined(why), "", ""] if g["closed"] is None else  # (closed: a gap, so an interval)
                     [_pct(g["closed"]), *(_pct(x) for x in g["closed_ci"])])
            rows.append([label, "entropy neurons ablated", g["ablated"], *_bounds(g["ablated_ci"]),
                         g["base"]["entropy neurons"], g["post"]["entropy neurons"], *share])
        if "random" in g:
            base, post = (float(np.mean([v for k, v in g[m].items() if k.startswith("random")])) for m in _MODELS)
            share = ([_undefined(why), "", ""] if g.get("random_closed") is None
                     else [_pct(g["random_closed"]), *(_pct(x) for x in g["random_closed_range"])])
            rows.append([label, f"random neurons ablated (mean of {n_random})", g["random"], *g["random_range"],
                         base, post, *share])
    return rows


def _effect_key(eff: AblationEffects | None, selected) -> str | None:
    """The condition of the corpus effects that stands for a model's entropy neurons: all of them together, or
    the one neuron."""
    if eff is None or not selected:
        return None
    return next((k for k in eff.total if k.startswith("all ")), f"neuron {selected[0]}")


def _no_neurons(m: str, en: EntropyNeurons) -> str:
    """Why model ``m`` has no entropy neuron, in its own figures (two sentences)."""
    ns, median = en.null_space, float(np.median(en.norm))
    sv = ns.singular_values
    j = int(np.argmax(en.rho))
    return (f"{m} has none: no neuron of layer {en.layer} has rho >= {en.rho_threshold:g}; the largest is "
            f"{en.rho[j]:.3f} (neuron {j}), where a random direction has {ns.random_rho:.3f} (k = {ns.k} of "
            f"{len(sv)} dimensions). Its largest output-weight norm is {float(en.norm.max()) / median:.2f}× the "
            f"layer median, and the effective unembedding's smallest singular value is "
            f"{float(sv[-1] / sv.median()):.2f}× its median (Stolfo et al. take the null space where the singular "
            "values drop steeply)")


#: Share of the prompts in one confidence bin from which the summary says the ECE rests on that bin.
CROWDED = 0.9


def _crowded_bins(calib: dict) -> str | None:
    """A sentence where at least :data:`CROWDED` of a model's prompts have their confidence in one bin (the ECE and
    the reliability diagram then rest on that bin), else None."""
    tops = {m: _top_bin(calib, m) for m in _MODELS}
    flagged = [m for m in _MODELS if tops[m][0] >= CROWDED * tops[m][1]]
    if not flagged:
        return None
    if all(tops[m][0] == tops[m][1] for m in flagged):
        _, _, lo, hi = tops[flagged[0]]
        same = len(flagged) == 2 and tops["base"][2:] == tops["post"][2:]
        return (f"Every prompt's confidence lies in one bin, ({lo:.2g}, {hi:.2g}], for "
                + ("both models" if same else " and ".join(flagged))
                + ": the reliability diagram has one point per such model, and its ECE compares accuracy with "
                "confidence in that bin only.")
    where = ", ".join(f"{m} {k} of {n} ({_pct(k / n)}) in ({lo:.2g}, {hi:.2g}]" for m in flagged
                      for k, n, lo, hi in [tops[m]])
    return (f"Most prompts' confidences lie in one bin: {where}; the reliability diagram and the ECE of "
            + ("both models" if len(flagged) == 2 else flagged[0]) + " rest almost entirely on that bin.")


def _summary(calib, gap, neurons, iou, effects, n_options, seed) -> str:
    g, c = gap["entropy"], gap["confidence"]
    sel = {m: len(neurons[m].selected) for m in _MODELS}
    parts = [f"Fact prompts: {_options_text(n_options)}.",
             f"Accuracy: base {calib['base']['accuracy']:.2f} {_interval(calib['base']['accuracy_ci'])}, post "
             f"{calib['post']['accuracy']:.2f} {_interval(calib['post']['accuracy_ci'])} (chance "
             f"{calib['base']['chance']:.2f}).",
             f"ECE: base {calib['base']['ece']:.3f} {_interval(calib['base']['ece_ci'])}, post "
             f"{calib['post']['ece']:.3f} {_interval(calib['post']['ece_ci'])}; a perfectly calibrated model would "
             f"show about {calib['base']['ece_null']:.3f} and {calib['post']['ece_null']:.3f} on these prompts."]
    crowded = _crowded_bins(calib)
    if crowded:
        parts.append(crowded)
    parts.append(f"Entropy gap post − base {g['clean']:+.3f} nats {_interval(g['clean_ci'])}; confidence gap "
                 f"{c['clean']:+.3f} {_interval(c['clean_ci'])}.")
    n_layer = len(neurons["base"].norm)
    parts.append(f"Entropy neurons (last layer, same criterion): base {sel['base']}, post {sel['post']}, IoU "
                 + ("undefined (both sets empty)" if iou is None else
                    f"{iou:.2f} (two random sets of these sizes among the layer's {n_layer} neurons: "
                    f"{_random_iou(sel['base'], sel['post'], n_layer):.3f} expected)") + ".")
    parts += [f"{_no_neurons(m, neurons[m])}." for m in _MODELS if not sel[m]]
    for m in _MODELS:
        key = _effect_key(effects.get(m), neurons[m].selected)
        if key:
            eff = effects[m]
            rkey = next(k for k in eff.total if k.endswith("(null)"))
            ci = {kind: eff.ci(key, kind, seed=seed) for kind in ("total", "direct")}
            parts.append(f"On the corpus, ablating {m}'s {key.removeprefix('all ')} changes entropy by "
                         f"{_signed(eff.mean(key), ci['total'], 'texts', 'nats')} (direct "
                         f"{_signed(eff.mean(key, 'direct'), ci['direct'], 'texts')}; as many random neurons "
                         f"{eff.mean(rkey):+.3f}).")
    if "ablated" in g:
        parts.append(f"With each model's entropy neurons ablated the entropy gap is {g['ablated']:+.3f} "
                     f"{_interval(g['ablated_ci'])}"
                     + ("" if g["closed"] is None else f", {_pct(g['closed'])} of it closed "
                                                        f"{_pct_interval(g['closed_ci'])}")
                     + ("" if g.get("random_closed") is None else
                        f"; random neurons close {_pct(g['random_closed'])} "
                        f"(range {_pct_interval(g['random_closed_range'])})")
                     + ".")
    parts.append(f"{_verdict(g)} (Du et al. 2025 find that it does not.)")
    return " ".join(parts)


def _options_text(n_options: np.ndarray) -> str:
    """``"4 options each"`` or ``"3 to 4 options (chance differs per prompt)"``."""
    lo, hi = int(n_options.min()), int(n_options.max())
    return (f"{len(n_options)} prompts, {lo} options each" if lo == hi else
            f"{len(n_options)} prompts, {lo} to {hi} options: the chance level 1/options differs per prompt")


def _effects_reading(neurons, effects, seed) -> str:
    """What the corpus ablations show for each model's entropy neurons, and what Stolfo et al. report: the caption of
    the effects figures, one per model, so each model's part is named by its figure's title, ``(model: base)``."""
    if not effects:
        return "No entropy neuron in either model: nothing was ablated over the corpus."
    parts, agree = ["One figure per model, each with that model's own entropy neurons (alone, together) and as many "
                    "random neurons; bars: total and direct effect."], []
    for m in _MODELS:
        key = _effect_key(effects.get(m), neurons[m].selected)
        if key is None:
            parts.append(f"{m}: no entropy neuron, so no figure.")
            continue
        eff = effects[m]
        mean = {kind: eff.mean(key, kind) for kind in ("total", "direct", "via_norm")}
        ci = {kind: eff.ci(key, kind, seed=seed) for kind in mean}
        larger = "total" if abs(mean["total"]) > abs(mean["direct"]) else "direct"
        singles = [k for k in eff.total if k.startswith("neuron ")]
        n_total = sum(abs(eff.mean(k)) > abs(eff.mean(k, "direct")) for k in singles)
        total, direct, via = (_signed(mean[k], ci[k], "texts", "nats") for k in ("total", "direct", "via_norm"))
        parts.append(f"(model: {m}) {key.removeprefix('all ')}: total {total}, direct {direct}; the {larger} effect "
                     f"is the larger in size, and the part through the final norm (total − direct) is {via}; "
                     f"{n_total} of {len(singles)} neuron(s) alone have a larger total than direct effect.")
        if larger == "total" and ci["via_norm"] is not None and not _holds_zero(ci["via_norm"]):
            agree.append(m)
    parts.append("Stolfo et al. 2024 report that an entropy neuron's total effect is much larger than its direct "
                 "one (it acts through the final norm's scale); here the total effect is the larger, with a "
                 "through-the-norm part whose interval excludes 0, for "
                 + (" and ".join(agree) if agree else "neither model") + ".")
    return " ".join(parts)


def _neurons_reading(neurons) -> str:
    ns = neurons["base"].null_space
    parts = [f"Stolfo et al. 2024 describe entropy neurons as having a large output-weight norm that lies mostly in "
             f"the unembedding's null space (rho near 1, far above a random direction's sqrt(k/d) = "
             f"{ns.random_rho:.3f}). Here:"]
    for m in _MODELS:
        en = neurons[m]
        median = float(np.median(en.norm))
        if en.selected:
            rho, norm = en.rho[list(en.selected)], en.norm[list(en.selected)] / median
            parts.append(f"{m}'s {len(en.selected)} selected neuron(s) have rho {rho.min():.3f} to {rho.max():.3f} "
                         f"and norms {norm.min():.2f} to {norm.max():.2f}× the layer median;")
        else:
            parts.append(f"{m} has no neuron with rho >= {en.rho_threshold:g} (largest {en.rho.max():.3f});")
    return " ".join(parts)[:-1] + "."


#: The gap table's label of each measure: its facet value, so ``(measure: entropy (nats))`` titles its figure.
_MEASURES = {"entropy": "entropy (nats)", "confidence": "confidence"}


def _gap_reading(gap) -> str:
    """The caption of the gap figures, one per measure: each measure's part is named by its figure's title,
    ``(measure: entropy (nats))``, with the gap clean, with entropy neurons and with random neurons ablated, and the
    share of the gap each closes."""
    parts = ["One figure per measure: post − base on the fact prompts, clean and with neurons mean-ablated."]
    for measure, label in _MEASURES.items():
        g = gap[measure]
        unit = " nats" if measure == "entropy" else ""
        text = f"(measure: {label}) clean {g['clean']:+.3f}{unit} {_interval(g['clean_ci'])}"
        why = g.get("why_undefined")
        if "ablated" in g:
            share = (f"share closed undefined: {why}" if g["closed"] is None else
                     f"{_pct(g['closed'])} of the gap closed {_pct_interval(g['closed_ci'])}")
            text += f"; entropy neurons ablated {g['ablated']:+.3f} {_interval(g['ablated_ci'])} ({share})"
        if "random" in g:
            share = ("" if g.get("random_closed") is None else
                     f"; {_pct(g['random_closed'])} closed, range {_pct_interval(g['random_closed_range'])}")
            text += f"; random neurons ablated {g['random']:+.3f} (range {_interval(g['random_range'])}{share})"
        parts.append(text + ".")
    return " ".join(parts) + (" If entropy neurons carried the difference, ablating them would shrink each gap more "
                              "than ablating as many random neurons (Du et al. 2025 find that they do not).")


def _reliability_reading(calib) -> str:
    parts = ["Each point is one confidence bin: a model on the dashed diagonal is calibrated there; below it "
             "over-confident, above it under-confident. The legend gives each ECE next to the ECE a perfectly "
             "calibrated model with these confidences would show on as many prompts. Fullest bin:"]
    for m in _MODELS:
        k, n, lo, hi = _top_bin(calib, m)
        parts.append(f"{m} {k} of {n} prompts in ({lo:.2g}, {hi:.2g}];")
    return " ".join(parts)[:-1] + "."


def _tables(calib, neurons, effects, means, gap, n_random, seed, iou) -> dict:
    cal_cols = ["model", "accuracy", "accuracy 95% CI", "chance accuracy (mean of 1/options)", "mean confidence",
                "confidence 95% CI", "ECE", "ECE 95% CI", "ECE of a calibrated model (mean)", "calibrated 95% range",
                "mean entropy (nats)", "entropy 95% CI"]
    cal_rows = [[m, c["accuracy"], _interval(c["accuracy_ci"]), c["chance"], c["confidence"],
                 _interval(c["confidence_ci"]), c["ece"], _interval(c["ece_ci"]), c["ece_null"],
                 _interval(c["ece_null_range"]), c["entropy"], _interval(c["entropy_ci"])]
                for m, c in ((m, calib[m]) for m in _MODELS)]
    d = calib["difference"]
    cal_rows.append(["post − base", d["accuracy"], _interval(d["accuracy_ci"]), "", d["confidence"],
                     _interval(d["confidence_ci"]), d["ece"], _interval(d["ece_ci"]), "", "", d["entropy"],
                     _interval(d["entropy_ci"])])
    tables = {
        "calibration": {"title": "Calibration on the fact prompts (multiple choice among the answer and its "
                                 "alternatives; intervals: 95%, over facts; the difference's paired)",
                        "columns": cal_cols, "rows": cal_rows},
        "neurons": {"title": f"Entropy neurons of layer {neurons['base'].layer} (IoU of the two sets: "
                             + ("undefined, both sets empty" if iou is None else f"{iou:.2f}")
                             + "); effects on next-token entropy over the corpus when mean-ablated (95% bootstrap "
                             "over texts)",
                    "columns": ["model", "neuron", "rank", "norm", "norm / layer median", "rho", "mean activation",
                                "ΔH total (nats)", "total 95% CI", "ΔH direct (nats)", "direct 95% CI",
                                "ΔH via the final norm (total − direct)", "via the final norm 95% CI",
                                "in the other model's set"],
                    "rows": _neuron_rows(neurons, effects, means, seed)},
    }
    rows = _effect_rows(effects, seed)
    if rows:
        tables["effects"] = {"title": "Mean ablation over the corpus: change of next-token entropy (total: all "
                                      "recomputed; direct: final norm's scale frozen; interval: 95% bootstrap over "
                                      "texts)",
                             "columns": ["model", "ablated", "effect", "ΔH (nats)", "interval low", "interval high"],
                             "rows": rows, "x": "ablated", "y": "ΔH (nats)", "color": "effect", "facet": "model",
                             "low": "interval low", "high": "interval high"}
    tables["gap"] = {"title": "Post − base on the fact prompts, clean and with neurons mean-ablated (interval: 95% "
                              "paired bootstrap over facts; for random neurons the range over the draws); share of "
                              "the gap closed = 1 − ablated gap / clean gap",
                     "columns": ["measure", "condition", "post − base", "interval low", "interval high", "base",
                                 "post", "share of the gap closed", "share low", "share high"],
                     "rows": _gap_rows(gap, n_random), "x": "condition", "y": "post − base", "color": "condition",
                     "facet": "measure", "low": "interval low", "high": "interval high"}
    return tables


def _per_layer(layer, calib, gap, neurons, iou) -> list[dict]:
    entry = {"layer": layer}
    for m in _MODELS:
        c = calib[m]
        for key in ("accuracy", "confidence", "ece", "entropy"):
            entry[f"{m}_{key}"] = c[key]
            entry[f"{m}_{key}_ci_low"], entry[f"{m}_{key}_ci_high"] = c[f"{key}_ci"] or (None, None)
        entry[f"{m}_chance"] = c["chance"]
        entry[f"{m}_ece_null"] = c["ece_null"]
        entry[f"{m}_n_entropy_neurons"] = len(neurons[m].selected)
    for measure, g in gap.items():
        entry[f"{measure}_gap"] = g["clean"]
        entry[f"{measure}_gap_ci_low"], entry[f"{measure}_gap_ci_high"] = g["clean_ci"] or (None, None)
        entry[f"{measure}_gap_ablated"] = g.get("ablated")
        entry[f"{measure}_gap_random"] = g.get("random")
        entry[f"{measure}_gap_closed"] = g.get("closed")
        entry[f"{measure}_gap_closed_null"] = g.get("random_closed")
    entry["entropy_neuron_iou"] = iou
    return [entry]


def _gain_text(model, gain) -> str:
    """What the final norm's gain ``g`` (read by running the norm: :attr:`interp.confidence.NullSpace.gain`) is in
    terms of the norm's weight ``w``: ``1 + w`` only for a Gemma-type RMSNorm (its weight stored as an offset from
    1), ``w`` for the others; where neither matches, that it was read by running the norm."""
    import torch

    module = getattr(model.ln_final, "original_component", model.ln_final)
    w = getattr(module, "weight", None)
    gain = torch.as_tensor(gain, dtype=torch.float64).cpu()
    if not isinstance(w, torch.Tensor) or w.numel() != gain.numel():
        return "g read by running the norm"
    w = w.detach().double().cpu().flatten()
    tol = 1e-2 * max(1.0, float(gain.abs().max()))
    off_one, plain = float((gain - (1 + w)).abs().max()), float((gain - w).abs().max())
    if off_one <= tol and off_one < plain:
        return "g = 1 + w: a Gemma-type RMSNorm, whose weight w is stored as an offset from 1"
    if plain <= tol:
        return "g = w, the norm's weight"
    return "g read by running the norm"


#: Most singular values the setup lists one by one (beyond, the smallest and the largest kept few).
_SHOWN_VALUES = 12


def _spectrum_text(ns) -> str:
    """The ``k`` smallest singular values (the null space kept), smallest first, and the next one up."""
    asc = ns.singular_values.flip(0).tolist()
    kept = [f"{v:.3g}" for v in asc[:ns.k]]
    if len(kept) > _SHOWN_VALUES:
        kept = [*kept[:5], "…", *kept[-5:]]
    above = f"; next {asc[ns.k]:.3g}" if ns.k < len(asc) else "; none above (every dimension kept)"
    return f"kept {', '.join(kept)}{above} (median {float(ns.singular_values.median()):.3g})"


def _setup(facts, n_facts_given, n_options, corpus_source, n_positions, neurons, n_bins, n_random, seed,
           batch_size, gains) -> dict:
    en, ns = neurons["base"], neurons["base"].null_space
    shared = neurons["base"].null_space is neurons["post"].null_space
    gain = gains["base"] if gains["base"] == gains["post"] else "; ".join(f"{m}: {gains[m]}" for m in _MODELS)
    drawn = (f"all {len(facts)} prompts" if len(facts) == n_facts_given else
             f"{len(facts)} prompts drawn with the seed from {n_facts_given}")
    return {
        "facts": f"{facts.name} ({facts.source or 'given'}): {drawn}, every split read (nothing is selected on the "
                 "facts: the neurons come from the weights, the ablation means from the corpus)",
        "formatting": "raw text, the same prompts for both models (no chat template: the base model has none); "
                      "each prompt ends right before the answer",
        "confidence": "multiple choice: next-token probabilities of the first tokens of the answer and its "
                      "alternatives, renormalised over each prompt's own options; confidence = the largest, correct "
                      "= the answer's is the largest (interp.confidence.multiple_choice); "
                      + _options_text(n_options)
                      + f"; chance accuracy (mean of 1/options) {np.mean(1 / n_options):.3f}",
        "ECE": f"Guo et al. 2017, {n_bins} equal-width bins ((m-1)/M, m/M]; null: ECE of correct ~ "
               "Bernoulli(confidence) (a perfectly calibrated model with these confidences), 1,000 seeded draws",
        "entropy": "entropy (nats) of the full next-token distribution",
        "null space": (f"bottom k = {ns.k} left singular vectors of the effective unembedding diag(g) W_U (g: the "
                       f"final norm's gain; here {gain}), centred over the vocabulary"
                       + (", in the mean-zero subspace the final LayerNorm reads" if ns.centred else "")
                       + (" (one for both models: identical unembedding and final norm)" if shared else "")
                       + f"; singular values from the smallest, the k = {ns.k} kept and the next one up: "
                       + "; ".join(f"{m}: {_spectrum_text(neurons[m].null_space)}" for m in _MODELS)),
        "entropy neurons": (f"layer {en.layer} mlp_post neurons ranked by rho * norm (the norm written into the null "
                            f"space; Stolfo et al. 2024), the first {en.n_neurons} with rho >= {en.rho_threshold:g}; "
                            "direction = W_out row (times the post-feedforward norm's gain where the block has one); "
                            f"a random direction has rho ≈ {ns.random_rho:.3f}"),
        "ablation": f"mean ablation at blocks.{en.layer}.mlp.hook_post, means over every non-BOS token of the corpus; "
                    "total effect: all recomputed; direct effect: ln_final.hook_scale frozen at its clean value",
        "corpus": f"{corpus_source}; {n_positions} token positions per model (BOS position excluded)",
        "random null": f"{n_random} seeded draws of as many neurons of layer {en.layer}, outside the model's entropy "
                       "neurons (the corpus table uses the first)",
        "intervals": "95%: Wilson for accuracy with the number of facts as sample size; percentile bootstrap over "
                     "facts (all phrasings of a fact drawn together; 1,000 resamples, seeded) for means, ECE and gaps "
                     f"(paired: the same prompts in both models), none with fewer than {MIN_FACTS} facts; over texts "
                     "for corpus effects",
        "seed": seed, "batch_size": batch_size,
    }


# ----------------------------------------------------------------------------------------------- section


def confidence_section(pair: ModelPair, facts: PromptSet, corpus: Sequence[str], *, corpus_source: str = "corpus",
                       max_prompts: int = 100, n_bins: int = 10, n_neurons: int = 5, rho_threshold: float = 0.5,
                       null_dim: int | None = None, n_random: int = 3, seed: int = 0, batch_size: int = 16
                       ) -> ConceptResult:
    """Compare base and post on confidence (module docstring).

    Args:
        pair: the booted :class:`~interp.ModelPair`.
        facts: fact prompts (:func:`interp.confidence.answer_options`; rows may have different numbers of
            alternatives), read as given; every row's options are checked first, then at most ``max_prompts``
            rows are drawn with ``seed``.
        corpus: texts whose every token position measures the ablation effects and gives the ablation means.
        corpus_source: what ``corpus`` is, for the setup.
        n_bins: ECE bins. n_neurons, rho_threshold, null_dim: :func:`interp.confidence.entropy_neurons`.
        n_random: random draws of the gap's null. seed: of the prompt draw, the nulls and the bootstraps.
        batch_size: prompts per forward pass (corpus passes, which keep every position's logits, take half).

    Returns:
        A :class:`~interp.report.ConceptResult` with one ``per_layer`` entry (the ablated layer, the last):
        ``{model}_accuracy``, ``_confidence``, ``_ece``, ``_entropy`` with ``_ci_low/_ci_high``, ``{model}_chance``,
        ``{model}_ece_null``, ``{model}_n_entropy_neurons``, ``{entropy,confidence}_gap`` (with intervals),
        ``_gap_ablated``, ``_gap_random``, ``_gap_closed``, ``_gap_closed_null``, ``entropy_neuron_iou`` (None
        where undefined); tables ``calibration``, ``neurons``, ``effects``, ``gap``; the reliability diagram and
        neuron map; ``readings``, each written from the figures, ``readings["summary"]`` and
        ``readings["headline"]`` (one sentence: the entropy gap, the share closed, the verdict).

    Raises:
        ValueError: fewer than 2 prompts or corpus texts, fact prompts without answers and alternatives, or options
            sharing a first token (see :func:`interp.confidence.answer_options`; the error names the row of
            ``facts`` and its prompt), bad options.
    """
    n_given = len(facts)
    _check_options(pair, facts)
    facts = _cap(facts, max_prompts, seed)
    toks = {"facts": tokens_for(pair, facts.texts), "corpus": tokens_for(pair, list(corpus))}
    neurons = _entropy_neurons(pair, n_neurons=n_neurons, rho_threshold=rho_threshold, null_dim=null_dim)
    d_mlp = int(pair.base.cfg.d_mlp)
    means, effects, choices = {}, {}, {}
    corpus_batch = max(1, batch_size // 2)
    for m, model in pair:
        sel = list(neurons[m].selected)
        means[m] = mean_activations(model, toks["corpus"][m], layer=LAYER, batch_size=batch_size)
        randoms = random_neurons(d_mlp, len(sel), n_draws=n_random, exclude=sel, seed=seed) if sel else []
        if sel:
            effects[m] = ablation_effects(model, toks["corpus"][m], _corpus_conditions(sel, randoms[0]),
                                          means=means[m], layer=LAYER, batch_size=corpus_batch)
        conditions = ({"entropy neurons": sel} if sel else {}) | {f"random {r}": list(s) for r, s in enumerate(randoms)}
        choices[m] = ablated_choices(model, facts, conditions, means=means[m], layer=LAYER, batch_size=batch_size,
                                     tokens=toks["facts"][m])
        log.info("confidence: %s done (%d entropy neurons)", m, len(sel))
    groups = [m.get("group", f"row:{i}") for i, m in enumerate(facts.meta or ({},) * len(facts))]
    calib = {m: _calibration(choices[m]["clean"], n_bins, seed, groups) for m in _MODELS}
    base, post = choices["base"]["clean"], choices["post"]["clean"]
    calib["difference"] = {
        "accuracy": calib["post"]["accuracy"] - calib["base"]["accuracy"],
        "accuracy_ci": _ci(post.correct.astype(float) - base.correct.astype(float), seed, groups),
        "confidence": calib["post"]["confidence"] - calib["base"]["confidence"],
        "confidence_ci": _ci(post.confidence - base.confidence, seed, groups),
        "ece": calib["post"]["ece"] - calib["base"]["ece"],
        "ece_ci": _ece_ci(base.confidence, base.correct.astype(float), n_bins, seed, groups,
                          other=(post.confidence, post.correct.astype(float))),
        "entropy": calib["post"]["entropy"] - calib["base"]["entropy"],
        "entropy_ci": _ci(post.entropy - base.entropy, seed, groups)}
    gap = _gap(choices, n_random, seed, groups)
    iou = _iou(neurons["base"].selected, neurons["post"].selected)
    layer = neurons["base"].layer
    n_positions = len(next(iter(effects.values())).clean) if effects else sum(
        n - 1 for n in toks["corpus"]["base"].lengths)
    per_layer = _per_layer(layer, calib, gap, neurons, iou)
    n_options = base.n_options
    readings = {"summary": _summary(calib, gap, neurons, iou, effects, n_options, seed),
                "headline": _headline(gap, rho_threshold),
                "reliability": _reliability_reading(calib), "neurons": _neurons_reading(neurons),
                "effects": _effects_reading(neurons, effects, seed), "gap": _gap_reading(gap),
                "calibration": f"ECE post − base {calib['difference']['ece']:+.3f} "
                               f"{_interval(calib['difference']['ece_ci'])} (paired bootstrap over facts)."}
    gains = {m: _gain_text(model, neurons[m].null_space.gain) for m, model in pair}
    setup = _setup(facts, n_given, n_options, corpus_source, n_positions, neurons, n_bins, n_random, seed, batch_size,
                   gains)
    setup["entropy neuron indices"] = {m: list(neurons[m].selected) for m in _MODELS}
    plots = [_reliability_plot(calib, n_bins), _neuron_plot(neurons)]
    tables = _tables(calib, neurons, effects, means, gap, n_random, seed, iou)
    return ConceptResult("confidence", [layer], per_layer, long_rows(per_layer), readings=readings, setup=setup,
                         plots=plots, tables=tables)


def _run(ctx, *, data: str | None = None, corpus: str = "languages", n_corpus: int = 16, **options) -> ConceptResult:
    facts = fact_prompts(ctx, data)
    texts, source = _corpus(ctx, corpus, n_corpus)
    return confidence_section(ctx.pair, facts, texts, corpus_source=source, **options)


def _null_dim_fits(null_dim: int, shape) -> None:
    """``null_dim`` within the models' width (:class:`~interp.models.ModelShape`); a LayerNorm model's unembedding
    reads one dimension fewer, which :func:`~interp.confidence.check_null_dim` refuses when the section runs."""
    if null_dim > shape.d_model:
        raise ValueError(f"must be at most the models' width d_model = {shape.d_model}; got {null_dim}")


SECTION = Section("confidence", _run, help="calibration on facts, entropy neurons and whether "
                  "they carry the base/post confidence gap (Du et al. 2025; Stolfo et al. 2024)", params=(
    Param("max_prompts", int, 100, "most fact prompts read (a seeded draw from every split: nothing is selected on "
                                   "the facts)", low=2),
    Param("n_bins", int, 10, "equal-width confidence bins of the ECE and the reliability diagram (Guo et al. 2017 "
                             f"use 15); at most {MAX_BINS}: narrower bins hold a handful of prompts each, so the ECE "
                             "would measure sampling noise", low=1, validate=_check_n_bins),
    Param("n_neurons", int, 5, "most entropy neurons selected per model (the top ones by rho * norm)", low=1),
    Param("rho_threshold", float, 0.5, "least fraction of a selected neuron's output-weight norm in the "
                                       "unembedding's null space (Stolfo et al. 2024's rho)", low=0, high=1),
    Param("null_dim", int, None, "dimensions of the unembedding's effective null space (default 0.01 d_model)", low=1,
          model_check=_null_dim_fits),
    Param("n_random", int, 3, "random neuron sets ablated for the gap's null", low=1),
    Param("corpus", str, "languages", "built-in set whose training texts give the ablation means and the entropy "
                                      "effects (the organism's own set of that name on the bundled organism)",
          validate=_check_corpus),
    Param("n_corpus", int, 16, "corpus texts read (every token position's full-vocabulary entropy is computed)",
          low=2),
    seed_param("seed of the prompt draw, the random neurons and the bootstraps"),
    Param("batch_size", int, 16, "prompts per forward pass (the corpus passes take half)", low=1),
    Param("data", str, None, "your facts: one JSONL/CSV file whose rows have the fields prompt (ending right before "
                             "the answer), subject (written exactly once in the prompt) and answer; optional: "
                             "alternatives (wrong answers: a JSON list, or |-separated in CSV; when absent, up to 3 "
                             "other answers of the row's relation are drawn, so rows may get different numbers), "
                             "relation and group. Every row is read (no train/test split: nothing is selected on the "
                             "facts), at most max_prompts drawn with the seed; checked before any model boots",
          validate=_check_facts_file),
))
