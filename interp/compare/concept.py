"""A user's own concept, given as two labelled prompt sets, compared across a base model and its post-trained version.

:func:`concept` turns a name and two prompt sets (or files :func:`interp.datasets.load_file` reads) into a
:class:`~interp.compare.Section`; register it (:func:`interp.compare.register`) and it runs in
``compare(concepts=[name])``. What :func:`concept_section` measures:

* **Split.** Positive prompts are label 1, negative label 0. The rows are split into train and test
  (:meth:`PromptSet.split <interp.datasets.PromptSet.split>`, stratified); rows whose ``meta["group"]`` is the
  same (a prompt and its minimal-pair twin, one fact in several framings) land on the same side
  (:func:`group_split`, :meth:`PromptSet.split` by group). A validation share of the *training* rows,
  split the same way, chooses the layer; every reported figure is on the test rows.
* **Probes.** At every layer of both models, a mass-mean probe (difference of class means, threshold at their
  midpoint; Marks & Tegmark 2023) read at ``site`` and ``position``: held-out accuracy with a Wilson interval,
  and the same probe fitted on shuffled training labels (the null).
* **Same direction?** Cosine of the base and post difference-of-means directions (paired bootstrap interval;
  null: random Gaussian directions) and transfer of each model's probe to the other three ways: own
  threshold, AUROC, threshold through the target model's mean training activation (Du et al. 2025 compare
  base and post directions this way).
* **Steering.** At the layer chosen on validation rows, each model's difference of means ``mu_pos - mu_neg``
  (unscaled by default: the full shift from the negative mean to the positive one) is added to each model at
  every position of the negative test prompts (activation addition, Turner et al. 2023; contrastive
  activation addition, Rimsky et al. 2024). Measured: the share of those prompts the model's own probe at the
  last layer classifies positive, before and after, and the mean probe-score shift; and the cost, next-token
  KL between steered and unsteered on the same prompts. The null: a Gaussian direction of the same norm.

The prompts are used as given (apply a chat template first, with :meth:`interp.ModelPair.format`, to read
them as chat requests).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..datasets import PromptSet
from ..datasets._record import record
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ._section import Param, Section, seed_param, site_param, split_rows, tokens_for

__all__ = ["METHOD", "STEERING_COLUMNS", "concept", "concept_section", "group_split", "labelled_set"]

log = logging.getLogger(__name__)

#: The probe and direction of the section: mass-mean (difference of class means, Marks & Tegmark 2023), as the
#: truth section's headline (:data:`interp.compare.truth.HEADLINE`).
METHOD = "mass_mean"
#: Fewest prompts a class needs: at least one each in test, validation and the rows validation probes are fit on.
MIN_ROWS = 4
#: Columns of ``tables["steering"]``.
STEERING_COLUMNS = ["model", "direction", "layer", "norm", "classified positive before", "before, 95% CI",
                    "classified positive after", "after, 95% CI", "probe score shift", "KL (nats)", "example before",
                    "example after"]
_MODELS = ("base", "post")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")


# ----------------------------------------------------------------------------------------------- inputs


def _as_prompts(value, role: str, name: str) -> PromptSet:
    """``value`` as a :class:`PromptSet`: a PromptSet as is, a path read with :func:`interp.datasets.load_file`.

    Raises:
        FileNotFoundError: no such file. ValueError: an empty file or set (the role and path are named).
        TypeError: anything else.
    """
    from ..datasets import load_file

    if isinstance(value, (str, os.PathLike)):
        try:
            value = load_file(value, label_column=False)  # each file is one class: a label field stays in meta
        except ValueError as e:
            raise ValueError(f"concept {name!r}, {role} prompts: {e}") from None
    if not isinstance(value, PromptSet):
        raise TypeError(f"concept {name!r}: {role} prompts must be a PromptSet or a file path, got "
                        f"{type(value).__name__}")
    if len(value) == 0:
        raise ValueError(f"concept {name!r}: the {role} prompt set {value.name!r} is empty")
    if value.labels is not None and len(set(value.labels)) > 1:
        log.warning("concept %r: the %s set %r carries labels of %d classes; every row is taken as %s",
                    name, role, value.name, len(set(value.labels)), role)
    return value


def labelled_set(name: str, positive: PromptSet, negative: PromptSet) -> tuple[PromptSet, dict]:
    """One labelled set of the concept: ``negative`` rows (label 0) then ``positive`` rows (label 1), each row's
    meta kept (a ``group`` in it keeps rows together in :func:`group_split`); any labels of the inputs are
    ignored. Also returns setup notes (texts found in both sets).

    Raises:
        ValueError: a class with fewer than :data:`MIN_ROWS` rows (it cannot be split into train, validation
            and test), or positive and negative sets holding the same texts (no difference of means to measure).
    """
    counts = {"positive": len(positive), "negative": len(negative)}
    few = {k: n for k, n in counts.items() if n < MIN_ROWS}
    if few:
        raise ValueError(f"concept {name!r}: {', '.join(f'{n} {k} prompt(s)' for k, n in few.items())}; each class "
                         f"needs at least {MIN_ROWS} to split into train, validation and test rows")
    if set(positive.texts) == set(negative.texts):
        raise ValueError(f"concept {name!r}: the positive and negative prompts are identical, so their difference of "
                         "means is zero and there is no concept to measure")
    notes = {}
    shared = set(positive.texts) & set(negative.texts)
    if shared:
        log.warning("concept %r: %d text(s) are both positive and negative", name, len(shared))
        notes["texts in both sets"] = (f"{len(shared)} text(s) appear as both positive and negative, e.g. "
                                       f"{sorted(shared)[0][:60]!r}; they count in both classes")
    meta = tuple(dict(m) for s in (negative, positive) for m in (s.meta or ({},) * len(s)))
    prompts = PromptSet(f"concept/{name}", negative.texts + positive.texts,
                        labels=(0,) * len(negative) + (1,) * len(positive), label_names=("negative", "positive"),
                        meta=meta, source=",".join(s.source or s.name for s in (positive, negative)))
    return prompts, notes


# ------------------------------------------------------------------------------------------------ split


def group_split(prompts: PromptSet, test_size: float = 0.25, random_state: int = 0) -> tuple[PromptSet, PromptSet]:
    """A deterministic ``(train, test)`` split of a labelled set that keeps each ``meta["group"]`` on one side:
    :meth:`PromptSet.split` (stratified; by group when any row carries one, a row without one being a group of
    its own), checked to leave both classes on both sides.

    Raises:
        ValueError: ``test_size`` outside (0, 1), fewer groups than folds, or a part left without a class.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    train, test = split_rows(prompts, test_size, random_state)
    parts = replace(prompts[train.tolist()], name=f"{prompts.name}/train"), replace(prompts[test.tolist()],
                                                                                    name=f"{prompts.name}/test")
    for part in parts:
        missing = sorted({0, 1} - set(part.labels))
        if missing:
            raise ValueError(f"{part.name}: the split left no {prompts.label_names[missing[0]]} row on this side "
                             f"({part.class_counts()}); give more prompts or groups, or another test_size")
    return parts


# ------------------------------------------------------------------------------------------- statistics


def _validation_accuracy(X_train: dict, y_train: torch.Tensor, val: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-layer accuracy ``{model: [layer]}`` of mass-mean probes fitted on the training rows outside ``val``
    (``[n_train]`` bool) and scored on those inside: what the layer is chosen on. Takes training rows only."""
    from probes.stats import correct
    from probes.sweep import fit_layers

    return {m: correct(fit_layers(X[~val], y_train[~val], METHOD), X[val], y_train[val]).mean(-1)
            for m, X in X_train.items()}


def _probe_statistics(fits: dict, X: dict, y: dict, *, seed: int) -> dict[str, np.ndarray]:
    """Per-layer figures of the probes, each ``{key: [layer]}``, named as in the truth section:

    * ``{m}_accuracy``, ``{m}_auroc`` on test rows; ``_ci_low/_ci_high``: Wilson intervals
      (:func:`probes.stats.proportion_ci`); ``_null``: probes fitted on shuffled training labels (mean of 10);
    * ``transfer_{a}_to_{b}[_auroc|_centred]`` (:func:`probes.similarity.transfer`), Wilson intervals on the
      accuracies;
    * ``cosine_base_post`` with a paired bootstrap interval over training rows
      (:func:`probes.stats.direction_cosine_ci`) and ``_null``: 95th percentile of |cosine| between the post
      direction and 100 Gaussian directions.
    """
    from probes.similarity import TRANSFER_SCORES, centred_fit, cosine, transfer
    from probes.stats import correct, direction_cosine_ci, proportion_ci, random_directions, shuffled_label_accuracy
    from probes.sweep import score_layers

    out = {}
    for m in _MODELS:
        c = correct(fits[m], X["test"][m], y["test"])
        out[f"{m}_accuracy"], out[f"{m}_auroc"] = c.mean(-1), score_layers(fits[m], X["test"][m], y["test"])[1].numpy()
        out[f"{m}_accuracy_ci_low"], out[f"{m}_accuracy_ci_high"] = proportion_ci(c)
        out[f"{m}_accuracy_null"], _ = shuffled_label_accuracy(X["train"][m], y["train"], X["test"][m], y["test"],
                                                               METHOD, seed=seed)
    moved = {}
    for src, dst in (("base", "post"), ("post", "base")):
        centre = X["train"][dst].double().mean(0)  # the target's mean training activation: no target labels used
        moved[f"{src}_to_{dst}"] = transfer(fits[src], X["test"][dst], y["test"], center=centre)
        for suffix, f in (("", fits[src]), ("_centred", centred_fit(fits[src], centre))):
            low, high = proportion_ci(correct(f, X["test"][dst], y["test"]))
            out[f"transfer_{src}_to_{dst}{suffix}_ci_low"], out[f"transfer_{src}_to_{dst}{suffix}_ci_high"] = low, high
    out.update({f"transfer_{pair}{suffix}": scores[key].numpy()  # the keys of transfer_fields
                for pair, scores in moved.items() for suffix, key in TRANSFER_SCORES})
    out["cosine_base_post"] = cosine(fits["base"].coef, fits["post"].coef).numpy()
    out["cosine_base_post_ci_low"], out["cosine_base_post_ci_high"] = direction_cosine_ci(
        X["train"]["base"], X["train"]["post"], y["train"], seed=seed)
    post_dir = fits["post"].coef
    rand = random_directions(100, tuple(post_dir.shape), seed=seed)
    out["cosine_base_post_null"] = np.quantile(np.stack([cosine(r, post_dir).abs().numpy() for r in rand]), 0.95, 0)
    return out


def zero_difference_layers(coefs: dict[str, torch.Tensor]) -> list[int]:
    """Layer slots where some model's difference of means (``{model: [layer, d]}``) is zero (norm at most 1e-6
    of that model's largest): no direction there, so no cosine."""
    out = set()
    for coef in coefs.values():
        norms = coef.double().norm(dim=-1)
        out |= set(torch.nonzero(norms <= 1e-6 * norms.max()).flatten().tolist())
    return sorted(out)


def _per_layer(layers: list[int], stats: dict, val_acc: dict, undefined: list[int]) -> list[dict]:
    """One entry per layer: every statistic as a float, the cosine's keys None at an undefined slot."""
    cosine_keys = ("cosine_base_post", "cosine_base_post_ci_low", "cosine_base_post_ci_high", "cosine_base_post_null")
    per_layer = []
    for slot, layer in enumerate(layers):
        entry = {"layer": layer}
        entry.update({key: None if (key in cosine_keys and slot in undefined) else float(values[slot])
                      for key, values in stats.items()})
        entry.update({f"{m}_accuracy_validation": float(val_acc[m][slot]) for m in _MODELS})
        per_layer.append(entry)
    return per_layer


# --------------------------------------------------------------------------------------------- steering


def _readout(model, tokens, site, layer, position, batch_size, interventions=None) -> torch.Tensor:
    """``[n, d]`` float64 activations at ``site`` of ``layer``, read at ``position``, with ``interventions``, of
    the prompts ``tokens`` (:class:`~interp.tokens.Tokenized`)."""
    from steering import apply

    from ..collection import collect

    with apply(model, interventions):
        acts = collect(model, list(tokens.texts), site, layers=[layer], positions=position, batch_size=batch_size,
                       progress=False, tokens=tokens)
    return acts[site][:, 0].double()


def _example(model, tokens, interventions, max_new_tokens: int) -> str:
    """Greedy continuation of the first negative test prompt (``""`` when ``max_new_tokens`` is 0)."""
    from steering import generate

    if max_new_tokens == 0:
        return ""
    return generate(model, tokens.select([0]), interventions, max_new_tokens=max_new_tokens)[0]


def _steering_rows(pair: ModelPair, fits: dict, vectors: dict, randoms: dict, negatives: dict, *, site: str,
                   position, readout: tuple[int, int], max_new_tokens: int, batch_size: int) -> list[list]:
    """Rows of ``tables["steering"]`` (:data:`STEERING_COLUMNS`): each target model steered with its own
    direction, the other model's and its random null, on the negative test prompts (``negatives[model]``, a
    :class:`~interp.tokens.Tokenized` every pass reads).

    The readout is each target's own probe at ``readout = (layer, slot)``: ``classified positive`` is the share
    with ``w . x + b > 0`` (Wilson interval), ``probe score shift`` the mean of ``w . (x_after - x_before)`` over
    ``w . w`` (1: moved by the whole distance between the class means along the probe; None where ``w`` is 0).
    """
    from probes.stats import proportion_ci
    from steering import Add
    from steering.metrics import kl_divergence, next_token_logprobs

    layer, slot = readout
    rows = []
    for target, model in pair:
        texts = negatives[target]
        w, b = fits[target].coef[slot], float(fits[target].intercept[slot])
        before = _readout(model, texts, site, layer, position, batch_size)
        clean = next_token_logprobs(model, texts, None, batch_size=batch_size)
        pos_before = ((before @ w + b) > 0).double().numpy()
        example_before = _example(model, texts, None, max_new_tokens)
        other = "post" if target == "base" else "base"
        for label, vec in ((f"{target} direction", vectors[target]), (f"{other} direction", vectors[other]),
                           ("random direction (null)", randoms[target])):
            ivs = [Add(vec)]
            after = _readout(model, texts, site, layer, position, batch_size, ivs)
            pos_after = ((after @ w + b) > 0).double().numpy()
            ww = float(w @ w)
            shift = float(((after - before) @ w).mean()) / ww if ww > 0 else None
            kl = float(kl_divergence(model, texts, ivs, clean=clean, batch_size=batch_size).mean())
            rows.append([target, label, vec.layers[0], float(vec.vectors.norm() * vec.scale), float(pos_before.mean()),
                         [round(float(x), 4) for x in proportion_ci(pos_before)], float(pos_after.mean()),
                         [round(float(x), 4) for x in proportion_ci(pos_after)], shift, kl, example_before,
                         _example(model, texts, ivs, max_new_tokens)])
    return rows


def _steering_vectors(fits: dict, name: str, slot: int, layer: int, site: str, scale: float, seed: int,
                      sources: dict) -> tuple[dict, dict]:
    """Each model's difference of means at ``layer`` as a :class:`steering.SteeringVector` (``{model: vec}``),
    and for each model a Gaussian direction of the same norm (the null, seeded with ``seed``)."""
    from probes.stats import equal_norm_random
    from steering import SteeringVector

    g = torch.Generator().manual_seed(seed)
    meta = {"concept": name, "layer": layer, "site": site, "scale": scale, "method": f"{METHOD} difference of means",
            **sources}
    vectors = {m: SteeringVector(fits[m].coef[slot].float(), (layer,), site, scale, {**meta, "model": m})
               for m in _MODELS}
    randoms = {m: SteeringVector(equal_norm_random(vectors[m].vectors[0], g), (layer,), site, scale,
                                 {**meta, "model": m, "method": "random", "seed": seed}) for m in _MODELS}
    return vectors, randoms


# ---------------------------------------------------------------------------------------------- writing


def _ci(entry: dict, key: str) -> str:
    return f"{entry[key]:.3f} [{entry[key + '_ci_low']:.3f}, {entry[key + '_ci_high']:.3f}]"


def _accuracy_difference(best: dict) -> str:
    """Whether base and post accuracy differ beyond their intervals, in words."""
    b, p = best["base_accuracy"], best["post_accuracy"]
    b_lo, b_hi, p_lo, p_hi = (best[k] for k in ("base_accuracy_ci_low", "base_accuracy_ci_high",
                                                 "post_accuracy_ci_low", "post_accuracy_ci_high"))
    if p_lo <= b <= p_hi and b_lo <= p <= b_hi:
        return "base and post are inside each other's intervals (no difference this test set can show)"
    if b_lo <= p_hi and p_lo <= b_hi:
        return "their intervals overlap, but one estimate lies outside the other's interval"
    return f"post {'above' if p > b else 'below'} base, outside both intervals"


def _steering_summary(rows: list[list]) -> str:
    parts = []
    for target in _MODELS:
        own = next(r for r in rows if r[0] == target and r[1] == f"{target} direction")
        null = next(r for r in rows if r[0] == target and r[1].startswith("random"))
        if own[3] == 0:
            parts.append(f"{target}: nothing to add (its difference of means is zero at this layer)")
            continue
        parts.append(f"{target}: {own[4]:.2f} → {own[6]:.2f} [{own[7][0]:.2f}, {own[7][1]:.2f}] with its own "
                     f"direction (random direction of the same norm: {null[6]:.2f} [{null[7][0]:.2f}, "
                     f"{null[7][1]:.2f}]), KL {own[9]:.3f} nats (random {null[9]:.3f})")
    return "; ".join(parts)


def _summary(name: str, best: dict, n_val: int, rows: list[list], readout: int, n_neg: int) -> str:
    """The summary line at the validation-chosen layer, each figure with its interval and null."""
    if best["cosine_base_post"] is None:
        cos = "The cosine of the two directions is undefined here (a zero difference of means)."
    else:
        cos = (f"Cosine of the two directions {_ci(best, 'cosine_base_post')} (random directions reach "
               f"{best['cosine_base_post_null']:.2f}).")
    return (
        f"{name}, layer {best['layer']} (chosen on {n_val} validation prompts of the training rows; test figures "
        f"with 95% intervals): held-out accuracy base {_ci(best, 'base_accuracy')}, post {_ci(best, 'post_accuracy')}, "
        f"shuffled-label probes {best['base_accuracy_null']:.3f} / {best['post_accuracy_null']:.3f}; "
        f"{_accuracy_difference(best)}. {cos} Base probe on post {_ci(best, 'transfer_base_to_post')} (AUROC "
        f"{best['transfer_base_to_post_auroc']:.3f}, target-centred {_ci(best, 'transfer_base_to_post_centred')}), "
        f"post probe on base {_ci(best, 'transfer_post_to_base')} (AUROC {best['transfer_post_to_base_auroc']:.3f}, "
        f"target-centred {_ci(best, 'transfer_post_to_base_centred')}). Adding each model's difference of means at "
        f"layer {best['layer']} to its {n_neg} negative test prompts moves the share its layer-{readout} probe "
        f"classifies positive — {_steering_summary(rows)}."
    )


_READINGS = {
    "accuracy": "Held-out accuracy of a mass-mean probe (difference of class means, threshold at their midpoint) at "
                "each layer, bands: 95% Wilson intervals over test prompts: where each model represents the concept "
                "linearly. Grey: the same probe fitted on shuffled training labels (mean of 10 shuffles), chance.",
    "similarity": "Cosine of the base and post difference-of-means directions (band: paired bootstrap over training "
                  "prompts) and how well each model's probe classifies the other model's test activations: with "
                  "the source probe's own threshold, threshold-free (AUROC), and with the threshold moved through "
                  "the target model's mean training activation (no target labels). Near 1: post-training kept the "
                  "concept's direction. Grey: 95th percentile of |cosine| of the post direction with 100 random "
                  "directions.",
    "steering": "Each model's difference of means at the chosen layer added at every position of the negative test "
                "prompts, in each model: the share the target model's own last-layer probe classifies positive, "
                "before and after (95% Wilson intervals), the mean probe-score shift in units of the distance "
                "between the class means, and next-token KL(unsteered || steered) in nats. Null: a Gaussian "
                "direction of the same norm, same layer.",
}


def _plots(name: str) -> list[dict]:
    return [
        {"title": f"{name}: probe accuracy by layer", "reading": "accuracy", "yaxis": "held-out accuracy",
         "yrange": [0, 1.02], "series": {"base_accuracy": "base (mass-mean)", "post_accuracy": "post (mass-mean)"},
         "nulls": {"base_accuracy_null": "base, shuffled labels", "post_accuracy_null": "post, shuffled labels"}},
        {"title": f"{name}: same direction in both models?", "reading": "similarity", "yrange": [-0.05, 1.05],
         "series": {"cosine_base_post": "cosine(base, post)", "transfer_base_to_post": "transfer base→post",
                    "transfer_post_to_base": "transfer post→base",
                    "transfer_base_to_post_auroc": "transfer base→post (AUROC)",
                    "transfer_post_to_base_auroc": "transfer post→base (AUROC)",
                    "transfer_base_to_post_centred": "transfer base→post (target-centred)",
                    "transfer_post_to_base_centred": "transfer post→base (target-centred)"},
         "nulls": {"cosine_base_post_null": "cosine, random directions (95th percentile)"}},
    ]


def _setup(sources: dict, n: dict, *, position: str, site: str, seed: int, val_share: float, test_size: float,
           grouped: bool, layer: int, readout: int, scale: float, undefined: list[int], notes: dict) -> dict:
    split = ("whole meta['group'] groups on one side (PromptSet.split: scikit-learn StratifiedGroupKFold, first "
             "of round(1/share) folds)" if grouped else "stratified on the label (PromptSet.split)")
    setup = {**sources, **n, "position": position, "site": site, "seed": seed, "method": f"{METHOD} (Marks & "
             "Tegmark 2023): w = mu_positive - mu_negative, threshold at the midpoint of the class means",
             "split": f"test {test_size:g} of the prompts, validation {val_share:g} of the training prompts; {split}",
             "layer selection": f"argmax over layers of min(base, post) validation accuracy of mass-mean probes "
                                f"fitted on the other training prompts (first on ties; seed {seed}); every reported "
                                "figure is on the test prompts",
             "steering": f"each model's mu_positive - mu_negative at {site} of layer {layer} (training prompts), "
                         f"scale {scale:g}, added at every position of the negative test prompts of each model "
                         f"(Turner et al. 2023; Rimsky et al. 2024); effect read by the target model's own probe at "
                         f"layer {readout} (the last{'; the direction is added there too' if layer == readout else ''}"
                         f"); cost: next-token KL(unsteered || steered); null: a Gaussian "
                         f"direction of the same norm (seed {seed})",
             "intervals": "accuracies and shares: 95% Wilson intervals over test prompts; cosine: 95% paired "
                          "percentile bootstrap over training prompts (1,000 resamples, seeded)",
             **notes}
    if undefined:
        setup["cosine undefined"] = (f"layers {undefined}: a zero difference of means (positive and negative "
                                     "activations have the same mean there) has no direction, so no cosine")
    return setup


# ----------------------------------------------------------------------------------------------- section


def _check_options(test_size, val_share, steer_scale, max_new_tokens, batch_size, position):
    from ..positions import parse_position

    for key, value in (("test_size", test_size), ("val_share", val_share)):
        if not 0 < value < 1:
            raise ValueError(f"{key} must be a fraction in (0, 1), got {value!r}")
    if steer_scale is not None and not math.isfinite(steer_scale):
        raise ValueError(f"steer_scale must be a finite number, got {steer_scale!r}")
    if max_new_tokens < 0 or batch_size < 1:
        raise ValueError(f"max_new_tokens must be >= 0 and batch_size >= 1, got {max_new_tokens}, {batch_size}")
    return parse_position(position)


def _prepare(name, positive, negative, test_size, val_share, seed):
    """The concept's train and test sets, the validation mask over training rows, and setup notes; each split's
    rows (fit, validation, test) are recorded for the run's manifest.

    Raises:
        ValueError: see :func:`labelled_set` and :func:`group_split`.
    """
    pos, neg = _as_prompts(positive, "positive", name), _as_prompts(negative, "negative", name)
    prompts, notes = labelled_set(name, pos, neg)
    train, test = group_split(prompts, test_size, seed)
    fit_rows, val_rows = split_rows(train, val_share, seed)
    for part, rows in (("validation", val_rows), ("fit", fit_rows)):
        have = {int(k) for k in np.asarray(train.labels)[rows]}
        if have != {0, 1}:
            raise ValueError(f"concept {name!r}: the validation split of {len(train)} training prompts leaves the "
                             f"{part} rows without a class; give more prompts or groups")
    val = torch.zeros(len(train), dtype=torch.bool)
    val[torch.as_tensor(val_rows)] = True
    # the manifest lists each split's rows (interp.datasets.recording)
    record(replace(train[sorted(fit_rows.tolist())], name=f"{train.name}/fit"), "fit")
    record(replace(train[sorted(val_rows.tolist())], name=f"{train.name}/validation"), "validation")
    record(test, "test")
    sources = {"positive": pos.source or pos.name, "negative": neg.source or neg.name}
    return train, test, val, sources, notes, any("group" in m for m in prompts.meta)


def concept_section(pair: ModelPair, name: str, positive, negative, *, site: str = "resid_post",
                    position: str = "last", test_size: float = 0.25, val_share: float = 0.2,
                    steer_scale: float | None = None, max_new_tokens: int = 8, batch_size: int = 32, seed: int = 0,
                    progress: bool = True, data=None, is_organism: bool = False) -> ConceptResult:
    """Compare a user's concept (positive vs negative prompts) across ``pair``, layer by layer (module docstring).

    Args:
        pair: the booted :class:`~interp.ModelPair`.
        name: the concept's name (the result's ``concept``).
        positive, negative: :class:`~interp.datasets.PromptSet` or file paths (:func:`interp.datasets.load_file`);
            every positive row is label 1, every negative row label 0. A ``meta["group"]`` keeps rows together.
        site: activation site read and steered (:data:`interp.SITES`; layer ``L`` = output of block ``L`` for
            ``resid_post``).
        position: the token read (:func:`interp.positions.parse_position`: ``"last"``, ``"mean"``, ``"period"``,
            ``"-2"``, ...).
        test_size: share of the prompts held out for test; ``val_share``: share of the training prompts
            held out to choose the layer.
        steer_scale: multiplier of the added difference of means (None: 1, the full shift between the class means).
        max_new_tokens: tokens of the example continuations in the steering table (0: none).
        batch_size: prompts per forward pass. seed: of the splits, nulls, bootstrap and random direction.
        progress: show progress bars. data, is_organism: from the section context; the user's prompts are used
            as given whatever they say.

    Returns:
        A :class:`~interp.report.ConceptResult`: per-layer keys as the truth section's (``base_accuracy``,
        ``*_ci_low/_ci_high``, ``*_null``, ``cosine_base_post``, ``transfer_*``, ``*_accuracy_validation``);
        ``directions`` ``{"base/mass_mean", "post/mass_mean"}``: ``[layer, d]`` unnormalised differences of means
        ``mu_pos - mu_neg`` of the training prompts; ``vectors`` ``{"base", "post"}``: the steering vectors;
        ``tables["steering"]`` (:data:`STEERING_COLUMNS`).

    Raises:
        FileNotFoundError: a missing file. ValueError: an empty file or set, fewer than 4 prompts in a class,
            identical positive and negative sets, a split that leaves a part without a class, bad options.
    """
    from probes.sweep import fit_layers

    from ..collection import collect

    read_at = _check_options(test_size, val_share, steer_scale, max_new_tokens, batch_size, position)
    scale = 1.0 if steer_scale is None else float(steer_scale)
    train, test, val, sources, notes, grouped = _prepare(name, positive, negative, test_size, val_share, seed)
    toks = {split: tokens_for(pair, ps.texts) for split, ps in (("train", train), ("test", test))}
    acts = {split: {m: collect(model, ps, site, positions=read_at, batch_size=batch_size, progress=progress,
                               tokens=toks[split][m])
                    for m, model in pair} for split, ps in (("train", train), ("test", test))}
    X = {split: {m: a[site] for m, a in d.items()} for split, d in acts.items()}
    y = {split: torch.as_tensor(ps.labels) for split, ps in (("train", train), ("test", test))}
    layers = list(acts["train"]["base"].layers)
    fits = {m: fit_layers(X["train"][m], y["train"], METHOD) for m in _MODELS}
    undefined = zero_difference_layers({m: f.coef for m, f in fits.items()})
    stats = _probe_statistics(fits, X, y, seed=seed)
    val_acc = _validation_accuracy(X["train"], y["train"], val)  # training rows only
    per_layer = _per_layer(layers, stats, val_acc, undefined)
    # the layer is chosen on validation rows (held out of the training split, never the test split)
    slot = max(range(len(layers)), key=lambda s: min(val_acc["base"][s], val_acc["post"][s]))
    layer, readout = layers[slot], (layers[-1], len(layers) - 1)
    vectors, randoms = _steering_vectors(fits, name, slot, layer, site, scale, seed, sources)
    negatives = {m: toks["test"][m].select([lab == 0 for lab in test.labels]) for m in _MODELS}
    rows = _steering_rows(pair, fits, vectors, randoms, negatives, site=site, position=read_at, readout=readout,
                          max_new_tokens=max_new_tokens, batch_size=batch_size)
    n = {"n_train": len(train), "n_validation": int(val.sum()), "n_test": len(test),
         "n_negative_test (steered)": len(negatives["post"])}
    setup = _setup(sources, n, position=position, site=site, seed=seed, val_share=val_share, test_size=test_size,
                   grouped=grouped, layer=layer, readout=readout[0], scale=scale,
                   undefined=[layers[s] for s in undefined], notes=notes)
    readings = {"summary": _summary(name, per_layer[slot], int(val.sum()), rows, readout[0], len(negatives["post"])),
                **_READINGS}
    tables = {"steering": {"title": f"{name}: steering the negative test prompts (layer {layer}, scale {scale:g}, "
                                    f"read by each model's own probe at layer {readout[0]})",
                           "columns": list(STEERING_COLUMNS), "rows": rows}}
    directions = {f"{m}/{METHOD}": fits[m].coef.float() for m in _MODELS}
    return ConceptResult(name, layers, per_layer, long_rows(per_layer), {}, directions, readings, setup,
                         _plots(name), tables, vectors=vectors)


# ----------------------------------------------------------------------------------------------- factory


def _check_source(value, role: str, name: str):
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.exists():
            raise FileNotFoundError(f"concept {name!r}: {role} prompt file {path} does not exist")
        if not path.is_file():
            raise ValueError(f"concept {name!r}: {role} prompts {path} is a directory, not a prompt file")
        if not path.read_bytes().strip():
            raise ValueError(f"concept {name!r}: {role} prompt file {path} is empty")
        return path
    if not isinstance(value, PromptSet):
        raise TypeError(f"concept {name!r}: {role} prompts must be a PromptSet or a file path, got "
                        f"{type(value).__name__}")
    return value


def concept(name: str, positive, negative) -> Section:
    """A :class:`~interp.compare.Section` comparing a user's concept; pass it to :func:`interp.compare.register`.

    ``positive``/``negative``: :class:`~interp.datasets.PromptSet` or paths of prompt files
    (:func:`interp.datasets.load_file` formats), read when the section runs. The section's options are
    :func:`concept_section`'s keywords.

    >>> import interp.compare as ic                                                       # doctest: +SKIP
    >>> ic.register(concept("sarcasm", "sarcastic.jsonl", "sincere.jsonl"))               # doctest: +SKIP
    >>> ic.compare(concepts=["sarcasm"], options={"sarcasm": {"position": "mean"}})      # doctest: +SKIP

    Raises:
        ValueError: a name that is not a word (letters, digits, ``_``, inner ``-``; it names report files and
            command-line options), a directory for a file, or an empty file. FileNotFoundError: a missing file.
            Both are checked here, so a typo fails before any model boots. TypeError: prompts of another type.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a concept name must start with a letter and hold letters, digits, '_' or inner '-'; "
                         f"got {name!r}")
    positive, negative = _check_source(positive, "positive", name), _check_source(negative, "negative", name)

    def run(ctx, **options) -> ConceptResult:
        return concept_section(ctx.pair, name, positive, negative, data=ctx.data, is_organism=ctx.is_organism,
                               progress=ctx.progress, **options)

    what = ", ".join(f"{role}: {v if isinstance(v, Path) else v.name}"
                     for role, v in (("positive", positive), ("negative", negative)))
    return Section(name, run, help=f"the user concept {name!r} ({what}): mass-mean probes, base/post cosine and "
                                   "transfer, steering with each model's difference of means", params=(
        site_param("activation site the probes read and the steering adds at"),
        Param("position", str, "last", "token read: 'last', 'mean', 'period', a negative offset such as '-2'"),
        Param("test_size", float, 0.25, "share of the prompts held out for test (whole groups when rows carry "
                                        "meta['group'])"),
        Param("val_share", float, 0.2, "share of the training prompts held out to choose the layer"),
        Param("steer_scale", float, None, "multiplier of the added difference of means (default 1: the full shift "
                                          "from the negative mean to the positive one; Turner et al. 2023)"),
        Param("max_new_tokens", int, 8, "tokens of the example continuations in the steering table (0: none)"),
        Param("batch_size", int, 32, "prompts per forward pass"),
        seed_param("seed of the splits, the nulls, the bootstrap and the random direction"),
    ))
