"""The truth section of :func:`interp.compare.compare`.

Probes are fitted at every layer of both models on the training
statements and scored on held-out statements. On the bundled organism the
statements are followed by its judgement cue (`` This statement is``) and read
at the cue's last token, where the organism computes its judgement; on other
pairs the built-in statements are read at their final period, where
Geometry-of-Truth probes read. The truth probe is mass-mean (see
:data:`HEADLINE`); per layer the section reports both models' held-out
accuracy, the cosine of base and post directions and their Mahalanobis cosine
under the post model's test activations, transfer (a base probe scored on post
activations and the reverse), a generalization matrix across statement kinds
and the causal effect; logistic-regression accuracy and cosine are reported
alongside. The held-out statements are out of distribution for the organism:
cities it was never shown judged, number pairs it never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from ..collection import collect
from ..datasets import PromptSet, load
from ..datasets._record import record
from ..models import ModelPair
from ..report import ConceptResult
from ..tokens import Tokenized
from ._section import (Param, Section, data_param, layers_param, parse_layers, provides, seed_param, site_param,
                       split_rows, tokens_for, user_data, window_param)

__all__ = ["HEADLINE", "SECONDARY", "NIE_SPANS", "NIE_NORMALIZATIONS", "SECTION", "few_shot", "truth_causal",
           "truth_section"]

log = logging.getLogger(__name__)

#: The truth probe of the section: mass-mean (difference of class means, Marks & Tegmark 2023), which
#: generalizes better out of distribution and is more causally implicated than logistic regression;
#: its accuracy, directions, transfer, generalization and causal effect are reported.
HEADLINE = "mass_mean"
#: Also fitted and reported alongside (``*_logistic`` keys).
SECONDARY = "logistic"


def _truth_data(pair: ModelPair, data=None, is_organism: bool = False) -> tuple[PromptSet, PromptSet, str, dict]:
    if is_organism:  # its own statements, or a user's, followed by its judgement cue
        from ..organism._corpus import JUDGE_CUE

        cue = lambda s: s + JUDGE_CUE  # noqa: E731
        user = provides(data, "truth")
        train, test = ((data.load if user else load)("organism/truth", s).map_texts(cue) for s in ("train", "test"))
        return train, test, "last", {"dataset": f"truth ({train.source})" if user else "organism/truth",
                                     "read at": "last token of the judgement cue"}
    if data is not None:
        train, test = data.load("truth", "train"), data.load("truth", "test")
        return train, test, "period", {"dataset": f"truth ({train.source})", "read at": "final period"}
    train, test = load("truth", "train"), load("truth", "test")
    return train, test, "period", {"dataset": "truth (built-in)", "read at": "final period"}


def _kinds(prompts: PromptSet) -> dict[str, torch.Tensor]:
    kinds = sorted({m.get("kind", "all") for m in prompts.meta or [{}]})
    return {k: torch.tensor([m.get("kind", "all") == k for m in prompts.meta]) for k in kinds}


#: Where the causal check adds a truth direction, per statement (``span`` of :func:`truth_causal`).
NIE_SPANS = {
    "statement_end": "the statement's final period and the token before it (Marks & Tegmark 2023, Section 5; "
                     "Du et al. 2025)",
    "from_period": "the final period and every later token (the judgement cue)",
    "last": "the last token only (the one the judgement is read after)",
}


def _span_bounds(span: str, period: int, length: int) -> tuple[int, int]:
    """``[start, stop)`` token indices (of one unpadded encoding) that ``span`` intervenes on."""
    if span == "statement_end":
        if period < 1:
            raise ValueError("span 'statement_end' needs a token before the final period")
        return period - 1, period + 1
    if span == "from_period":
        return period, length
    if span == "last":
        return length - 1, length
    raise ValueError(f"unknown span {span!r}; known: {', '.join(NIE_SPANS)}")


def _as_layers(layer) -> tuple[int, ...]:
    return (int(layer),) if isinstance(layer, int) else tuple(int(x) for x in layer)


def _judgement_gap(model, texts, token_ids, add=None, layer=None, batch_size=64,
                   span: str = "from_period") -> torch.Tensor:
    """P(true) - P(false) for the next token of each prompt, optionally with ``add`` ([d]) added
    to ``blocks.{layer}.hook_resid_post`` (``layer``: an int or a window of layers) at the tokens
    ``span`` names (:data:`NIE_SPANS`, found from each statement's final period)."""
    from ..generation import last_position_only
    from ..hooks import attached
    from ..models import tokenizer_of
    from ..positions import FINAL_PERIOD, resolve
    from ..sites import hook_name
    from ..tokens import as_tokenized, pad_batch, pad_id

    tok = tokenizer_of(model)
    toks = as_tokenized(model, texts)
    texts, encs = list(toks.texts), toks.encodings
    period = resolve(FINAL_PERIOD, texts, encs).tolist()
    bounds = torch.tensor([_span_bounds(span, p, len(e)) for p, e in zip(period, encs)])  # [n, 2]
    device = model.cfg.device or "cpu"
    out, keep = [], last_position_only(model)
    for b0 in range(0, len(encs), batch_size):
        batch = pad_batch(encs[b0 : b0 + batch_size], pad_id=pad_id(tok), device=device)
        lo, hi = (batch.start[:, None] + bounds[b0 : b0 + batch_size].to(device)).unbind(1)
        cols = torch.arange(batch.input_ids.shape[1], device=device)
        mask = ((cols[None, :] >= lo[:, None]) & (cols[None, :] < hi[:, None])).float()[..., None]  # [batch, pos, 1]
        hooks = []
        if add is not None:  # a per-row span (found from each statement's period): not one of steering.Add's positions
            vec = add.to(device)
            fn = lambda act, hook: act + mask.to(act.device, act.dtype) * vec.to(act.device, act.dtype)  # noqa: E731
            hooks = [(hook_name("resid_post", L), fn) for L in _as_layers(layer)]
        with torch.inference_mode(), attached(model, hooks):
            probs = model(batch.input_ids, attention_mask=batch.attention_mask, **keep)[:, -1].float().softmax(-1)
        out.append((probs[:, token_ids[0]] - probs[:, token_ids[1]]).cpu())
    return torch.cat(out)


def _judgement_gaps(model, texts, token_ids, additions, batch_size: int = 128,
                    span: str = "from_period") -> list[torch.Tensor]:
    """:func:`_judgement_gap` of ``texts`` under each ``(vector [d], layer or layers)`` of ``additions``: ``[n]``
    each.

    The addition acts on the tokens ``span`` names, so the tokens before them never see it. When every
    text has the same number of tokens from the span's start to its end, and the same span width (a
    statement, or a statement and the same cue), those earlier tokens are run once per batch (KV cache,
    no hook) and each addition re-runs only the span and what follows against a copy of that cache: the
    same left-padded positions and the same numbers as a full pass up to float summation order, at a few
    tokens' cost per addition instead of a whole statement's. The blocks below an addition's first layer
    compute the clean tail, so they run once per batch and are replayed
    (:func:`interp.hooks.replayed_blocks`). Otherwise each addition is a full pass.
    """
    import copy
    from dataclasses import replace

    from ..generation import last_position_only
    from ..hooks import attached, recorded_blocks, replayed_blocks
    from ..kv_cache import check_cache_grew, kv_cache_compat
    from ..models import tokenizer_of
    from ..positions import FINAL_PERIOD, resolve
    from ..sites import hook_name
    from ..tokens import as_tokenized, pad_batch, pad_id

    tok = tokenizer_of(model)
    toks = as_tokenized(model, texts)
    texts, encs = list(toks.texts), toks.encodings
    period = resolve(FINAL_PERIOD, texts, encs).tolist()
    bounds = [_span_bounds(span, p, len(e)) for p, e in zip(period, encs)]
    tails = {len(e) - lo for (lo, _), e in zip(bounds, encs)}
    widths = {hi - lo for lo, hi in bounds}
    if len(tails) != 1 or len(widths) != 1 or min(lo for lo, _ in bounds) < 1:
        return [_judgement_gap(model, toks, token_ids, add=v, layer=L, batch_size=batch_size, span=span)
                for v, L in additions]
    (tail,), (width,) = tails, widths
    device = model.cfg.device or "cpu"
    keep = last_position_only(model)
    in_tail = (torch.arange(tail, device=device) < width).float()[None, :, None]  # [1, tail, 1]
    out: list[list[torch.Tensor]] = [[] for _ in additions]
    with torch.inference_mode(), kv_cache_compat(model):
        for b0 in range(0, len(encs), batch_size):
            rows = encs[b0 : b0 + batch_size]
            prefix = pad_batch([replace(e, ids=e.ids[:-tail], spans=e.spans[:-tail]) for e in rows],
                               pad_id=pad_id(tok), device=device)
            k = prefix.input_ids.shape[1]
            _, cache = model(prefix.input_ids, attention_mask=prefix.attention_mask,
                             return_type="logits_and_cache", use_cache=True, **keep)
            check_cache_grew(cache, k)
            last = torch.tensor([list(e.ids[-tail:]) for e in rows], device=device)  # [batch, tail]
            mask = torch.cat([prefix.attention_mask, torch.ones_like(last)], 1)
            with recorded_blocks(model) as calls:  # the clean tail pass: what the blocks below an addition give
                model(last, attention_mask=mask, past_key_values=copy.deepcopy(cache), **keep)
            clean = calls[-1]
            for i, (vec, layer) in enumerate(additions):
                v, layers = vec.to(device), _as_layers(layer)
                fn = lambda act, hook, v=v: act + in_tail.to(act.device, act.dtype) * v.to(act.device, act.dtype)  # noqa: E731
                hooks = [(hook_name("resid_post", L), fn) for L in layers]
                with attached(model, hooks), replayed_blocks(model, clean, min(layers)):
                    logits = model(last, attention_mask=mask, past_key_values=copy.deepcopy(cache), **keep)
                probs = logits[:, -1].float().softmax(-1)
                out[i].append((probs[:, token_ids[0]] - probs[:, token_ids[1]]).cpu())
    return [torch.cat(o) for o in out]


#: How :func:`truth_causal` normalises a change of ``PD``.
NIE_NORMALIZATIONS = {
    "marks_tegmark": "by the gap between true and false statements, PD(true) - PD(false) (Marks & Tegmark 2023)",
    "du": "by the largest change possible, 1 - PD(false) adding and -1 - PD(true) subtracting (Du et al. 2025's "
          "reference code)",
}


def few_shot(test: PromptSet, examples: PromptSet, shots: int, *, seed: int = 0,
             cue: str = " This statement is") -> PromptSet:
    """``test`` with ``shots`` labelled examples before each statement, one per line, as Du et al. 2025 prompt
    their truth judgements: ``"{example}{cue} {true|false}"`` lines, then the statement.

    Examples are drawn from ``examples`` (training statements, never ``test``'s), half true and half false
    (an odd one more true), in an order shuffled per statement (seeded with ``seed + i``); an example equal
    to the statement is never drawn.

    Raises:
        ValueError: ``shots < 0``, or ``examples`` without enough statements of a label.
    """
    import random

    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    if shots == 0:
        return test
    by_label = {k: [t for t, y in zip(examples.texts, examples.labels) if y == k] for k in (0, 1)}
    need = _check_shots(shots, examples)

    def prompt(i: int, text: str) -> str:
        rng = random.Random(seed + i)
        statement = text.removesuffix(cue)
        lines = [f"{t}{cue} {'true' if k else 'false'}" for k in (1, 0)
                 for t in rng.sample([t for t in by_label[k] if t.removesuffix(cue) != statement], need[k])]
        rng.shuffle(lines)
        return "\n".join(lines + [text])

    from dataclasses import replace

    return replace(test, name=f"{test.name}+{shots}shot", texts=tuple(prompt(i, t) for i, t in enumerate(test.texts)))


def _check_shots(shots: int, examples: PromptSet) -> dict[int, int]:
    """The true (``1``) and false (``0``) examples :func:`few_shot` draws for ``shots``, checked against
    ``examples`` (one more of each than drawn: an example equal to the statement is never drawn)."""
    need = {1: (shots + 1) // 2, 0: shots // 2}
    have = {k: sum(1 for y in examples.labels if y == k) for k in (0, 1)}
    if any(have[k] < need[k] + 1 for k in (0, 1)):
        raise ValueError(f"{shots} shots need {need[1] + 1} true and {need[0] + 1} false example statements; "
                         f"{examples.name} has {have[1]} true and {have[0]} false")
    return need


def truth_causal(pair: ModelPair, test: PromptSet, directions: dict[str, torch.Tensor], layers: Sequence[int], *,
                 span: str = "statement_end", window: int = 1, normalization: str = "marks_tegmark",
                 seed: int = 0, tokens: dict | None = None) -> tuple[dict, dict]:
    """Normalized indirect effect (NIE) of each model's truth direction on each model, per layer, with nulls.

    Marks & Tegmark (2023), Section 5: the truth direction (``directions[source][slot]``, ``[layer, d]``: the
    mass-mean difference ``mu_true - mu_false`` of training activations read where it is added) is added,
    unscaled, to ``resid_post`` of layers ``L .. L + window - 1`` at the tokens ``span`` names
    (:data:`NIE_SPANS`; default the statement's last token and final period, as they and Du et al. 2025 do).
    With ``PD = P(" true") - P(" false")`` of the judgement token after the prompt, mean over statements:

    * false→true (``nie_{s}_to_{t}``): ``(PD_added(false) - PD(false)) / (PD(true) - PD(false))``, the
      direction added to false statements; 1 means they now look as true as true ones;
    * true→false (``nie_{s}_to_{t}_true_to_false``): ``(PD_subtracted(true) - PD(true)) / (PD(false) -
      PD(true))``, the direction subtracted from true statements;
    * ``normalization="du"`` (Du et al. 2025's reference code): the same changes divided by the largest
      change possible instead, ``1 - PD(false)`` and ``-1 - PD(true)``; 1 means every false statement is
      now judged true with certainty. Defined whatever the baseline, unless that largest change is 0;
    * null (``nie_{s}_to_{t}_random``): false→true with a random direction of the same norm per layer
      (Gaussian, seeded with ``seed``);
    * ``*_ci_low``/``*_ci_high`` of both: 95% percentile bootstrap over statements (false and true statements
      resampled independently, seeded; :func:`probes.stats.bootstrap_ci`).

    With Marks & Tegmark's normalisation, a target whose baseline is inverted or zero (``PD(true) <=
    PD(false)``) has no NIE: its values are None and ``notes`` says why (the ratio's denominator has no
    meaning there).

    ``tokens``: ``test``'s texts already tokenised per model (:func:`~interp.compare._section.tokens_for`).

    Returns:
        ``(series, notes)``: ``{key: [value or None per layer]}`` and ``{target: reason}`` for undefined targets.

    Raises:
        ValueError: ``' true'``/``' false'`` not single tokens, an unknown ``span`` or ``normalization``,
            ``window < 1``.
    """
    from probes.stats import equal_norm_random

    _check_causal_options(span, window, normalization)
    ids = _true_false_ids(pair.tokenizer)
    labels = torch.tensor(test.labels)
    tokens = tokens or tokens_for(pair, test.texts)
    layers = list(layers)
    g = torch.Generator().manual_seed(seed)
    randoms = {source: equal_norm_random(directions[source], g) for source in ("base", "post")}
    windows = {L: tuple(range(L, min(L + window, pair.n_layers))) for L in layers}
    check = _CausalCheck(ids, layers, windows, directions, randoms, span, normalization == "du", seed)
    out, notes = {}, {}
    for target, model in pair:
        series, why = _causal_on(check, target, model, tokens[target], labels)
        out.update(series)
        if why is not None:
            notes[target] = why
    return out, notes


def _check_causal_options(span: str, window: int, normalization: str) -> None:
    """Raise ValueError for an unknown ``span`` or ``normalization`` of :func:`truth_causal`, or ``window < 1``."""
    if span not in NIE_SPANS:
        raise ValueError(f"unknown span {span!r}; known: {', '.join(NIE_SPANS)}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if normalization not in NIE_NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; known: {', '.join(NIE_NORMALIZATIONS)}")


def _true_false_ids(tok) -> list[int]:
    """The token ids of ``' true'`` and ``' false'`` (the judgement tokens ``PD`` compares).

    Raises:
        ValueError: either is not a single token.
    """
    ids = [tok(w, add_special_tokens=False)["input_ids"] for w in (" true", " false")]
    if any(len(i) != 1 for i in ids):
        raise ValueError("the causal check needs ' true' and ' false' to be single tokens")
    return [i[0] for i in ids]


#: What follows ``nie_{source}_to_{target}`` in the keys :func:`truth_causal` reports per target.
_NIE_SUFFIXES = ("", "_true_to_false", "_random", "_ci_low", "_ci_high", "_true_to_false_ci_low",
                "_true_to_false_ci_high")


@dataclass(frozen=True)
class _CausalCheck:
    """What :func:`truth_causal` applies to every target model.

    Attributes:
        ids: the token ids of ``' true'`` and ``' false'``.
        layers: the layers a direction is added after; ``windows[L]``: the layers it is added to from ``L``.
        directions, randoms: per source model, ``[layer, d]``: its truth directions, and random directions of
            the same norm per layer (the null).
        span: the tokens a direction is added at (:data:`NIE_SPANS`); ``du``: Du et al.'s normalisation.
        seed: of the bootstrap.
    """

    ids: list[int]
    layers: list[int]
    windows: dict[int, tuple[int, ...]]
    directions: dict[str, torch.Tensor]
    randoms: dict[str, torch.Tensor]
    span: str
    du: bool
    seed: int

    def additions(self, vectors: dict[str, torch.Tensor], negate: bool = False) -> list[tuple]:
        """``(vector [d], layers)`` per source model, then per layer: the rows of ``vectors`` (negated with
        ``negate``), each added to its window of layers (:func:`_judgement_gaps`' ``additions``)."""
        return [(-vectors[s][slot] if negate else vectors[s][slot], self.windows[L])
                for s in ("base", "post") for slot, L in enumerate(self.layers)]


def _causal_on(check: _CausalCheck, target: str, model, tokens: Tokenized,
               labels: torch.Tensor) -> tuple[dict, str | None]:
    """:func:`truth_causal` on one target model: ``({key: [value or None per layer]}, why)``, ``why`` None unless
    the target's baseline leaves the NIE undefined (its values are then None)."""
    gap = _judgement_gap(model, tokens, check.ids)
    texts = {k: tokens.select(labels == k) for k in (0, 1)}
    pd_true, pd_false = float(gap[labels == 1].mean()), float(gap[labels == 0].mean())
    why = _undefined_baseline(target, pd_true, pd_false, check.du)
    if why is not None:
        return {f"nie_{s}_to_{target}{sfx}": [None] * len(check.layers)
                for s in ("base", "post") for sfx in _NIE_SUFFIXES}, why
    up, null = check.additions(check.directions), check.additions(check.randoms)
    added = iter(_judgement_gaps(model, texts[0], check.ids, up + null, span=check.span))
    subtracted = iter(_judgement_gaps(model, texts[1], check.ids, check.additions(check.directions, negate=True),
                                      span=check.span))
    clean = gap[labels == 0].numpy(), gap[labels == 1].numpy()  # (false, true) statements
    out = {}
    for sfx in ("", "_random"):
        for s in ("base", "post"):
            key = f"nie_{s}_to_{target}{sfx}"
            out[key], lows, highs = _nie_series(check, added, _false_to_true, *clean, ci=not sfx)
            if not sfx:
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = lows, highs
    for s in ("base", "post"):
        key = f"nie_{s}_to_{target}_true_to_false"
        out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _nie_series(check, subtracted, _true_to_false, *clean)
    return out, None


def _undefined_baseline(target: str, pd_true: float, pd_false: float, du: bool) -> str | None:
    """Why the normalized effect on ``target`` has no meaning given its mean ``PD`` of true and false statements
    (``du``: Du et al.'s normalisation, else Marks & Tegmark's), or None where it has one."""
    if du and not (pd_false < 1 and pd_true > -1):
        return (f"undefined on {target}: PD(false) = {pd_false:.3g}, PD(true) = {pd_true:.3g} leave no "
                f"room to move, so the normalized effect has no meaning")
    denom = pd_true - pd_false
    if not du and not denom > 0:
        return (f"undefined on {target}: PD(true) - PD(false) = {denom:.3g} (true statements are not "
                f"judged truer than false ones), so the normalized effect has no meaning")
    return None


def _nie_series(check: _CausalCheck, gaps, effect, clean_false, clean_true, ci: bool = True) -> tuple[list, list, list]:
    """Per layer of ``check``: the NIE ``effect`` (:func:`_false_to_true` or :func:`_true_to_false`) of the next
    of ``gaps`` (``[n]`` PD under each intervention) and, with ``ci``, its 95% bootstrap interval (false and true
    statements resampled independently): ``(values, lows, highs)``, the last two empty without ``ci``."""
    import numpy as np

    from probes.stats import bootstrap_ci

    idx = (np.arange(len(clean_false)), np.arange(len(clean_true)))
    vals, lows, highs = [], [], []
    for _ in check.layers:
        nie = effect(next(gaps).numpy(), clean_false, clean_true, check.du)
        vals.append(float(nie(*idx)))
        if ci:
            lo, hi = bootstrap_ci(nie, idx, seed=check.seed)
            lows.append(float(lo))
            highs.append(float(hi))
    return vals, lows, highs


def _false_to_true(moved, clean_false, clean_true, du: bool):
    """The false→true NIE of one addition as a vectorised statistic ``nie(i0, i1, axis)`` of resampled false
    (``i0``) and true (``i1``) statements; ``moved``: false statements' PD with the direction added."""

    def nie(i0, i1, axis=-1):  # resampled false and true statements
        room = 1 - clean_false[i0].mean(axis) if du else (clean_true[i1].mean(axis) - clean_false[i0].mean(axis))
        return (moved[i0].mean(axis) - clean_false[i0].mean(axis)) / room

    return nie


def _true_to_false(moved, clean_false, clean_true, du: bool):
    """The true→false NIE of one subtraction, as :func:`_false_to_true`; ``moved``: true statements' PD with the
    direction subtracted."""

    def nie_down(i0, i1, axis=-1):
        room = 1 + clean_true[i1].mean(axis) if du else (clean_true[i1].mean(axis) - clean_false[i0].mean(axis))
        return (clean_true[i1].mean(axis) - moved[i1].mean(axis)) / room

    return nie_down


def _validation_accuracy(X_train: dict, y_train, *, seed: int, share: float = 0.2,
                         prompts: PromptSet | None = None, val: torch.Tensor | None = None) -> tuple[dict, int]:
    """Per-layer accuracy of mass-mean probes fitted on the training rows outside a stratified ``share`` and
    scored on that share (the validation rows layer selection uses, :func:`_validation_rows`; by group where
    ``prompts``, the training statements, carry groups; or ``val``, that mask already drawn):
    ``({model: [layer]}, n_validation)``."""
    from probes.stats import correct
    from probes.sweep import fit_layers

    y = torch.as_tensor(y_train)
    val = _validation_rows(y, seed=seed, share=share, prompts=prompts) if val is None else val
    out = {m: correct(fit_layers(X[~val], y[~val], HEADLINE), X[val], y[val]).mean(-1) for m, X in X_train.items()}
    return out, int(val.sum())


def _validation_rows(y: torch.Tensor, *, seed: int, share: float = 0.2,
                     prompts: PromptSet | None = None) -> torch.Tensor:
    """``[n_train]`` bool: a stratified ``share`` of the training rows (at least one per class), drawn with
    ``seed``: the validation rows of :func:`_validation_accuracy`. Where ``prompts`` (the training statements,
    in the rows' order) carry ``meta["group"]``, whole groups are drawn (:func:`~interp.compare._section.split_rows`),
    so no statement is validated against its own negated or paraphrased twin."""
    if prompts is not None and any("group" in m for m in prompts.meta or ()):
        val = torch.zeros(len(y), dtype=torch.bool)
        val[torch.as_tensor(split_rows(prompts, share, seed)[1])] = True
        return val
    g = torch.Generator().manual_seed(seed)
    val = torch.zeros(len(y), dtype=torch.bool)
    for k in (0, 1):
        rows = torch.nonzero(y == k).flatten()
        rows = rows[torch.randperm(len(rows), generator=g)]
        val[rows[: max(1, round(share * len(rows)))]] = True
    return val


def _truth_statistics(fits: dict, X: dict, y: dict, *, seed: int) -> dict[str, "np.ndarray"]:
    """Per-layer intervals and nulls of the truth section's headline figures (``{key: [layer]}``):

    * ``{m}_accuracy_ci_low/high``, ``transfer_{a}_to_{b}[_centred]_ci_low/high``: Wilson intervals over test
      rows (shares of 0/1 outcomes, :func:`probes.stats.proportion_ci`);
    * ``{m}_accuracy_null``: mass-mean probes fitted on shuffled training labels (mean of 10);
    * ``cosine_base_post_ci_low/high``: paired bootstrap over training statements, both directions refitted
      (:func:`probes.stats.direction_cosine_ci`);
    * ``cosine_base_post_null``, ``mahalanobis_cosine_null``: 95th percentile of |similarity| between the
      post direction and 100 random directions;
    * ``mahalanobis_cosine_reference``: two post probes from disjoint halves of post's training rows, under
      post's test covariance (the value the same model's own probe reaches).
    """
    import numpy as np

    from probes import mahalanobis_cosine
    from probes.similarity import centred_fit, cosine
    from probes.stats import (
        correct,
        direction_cosine_ci,
        proportion_ci,
        random_directions,
        shuffled_label_accuracy,
        split_half_directions,
    )

    out = {}
    for m in ("base", "post"):
        low, high = proportion_ci(correct(fits[m, HEADLINE], X["test"][m], y["test"]))
        out[f"{m}_accuracy_ci_low"], out[f"{m}_accuracy_ci_high"] = low, high
        out[f"{m}_accuracy_null"], _ = shuffled_label_accuracy(X["train"][m], y["train"], X["test"][m], y["test"],
                                                               HEADLINE, seed=seed)
    for src, dst in (("base", "post"), ("post", "base")):
        fit = fits[src, HEADLINE]
        centre = X["train"][dst].double().mean(0)
        centred = centred_fit(fit, centre)
        for suffix, f in (("", fit), ("_centred", centred)):
            low, high = proportion_ci(correct(f, X["test"][dst], y["test"]))
            out[f"transfer_{src}_to_{dst}{suffix}_ci_low"], out[f"transfer_{src}_to_{dst}{suffix}_ci_high"] = low, high
    out["cosine_base_post_ci_low"], out["cosine_base_post_ci_high"] = direction_cosine_ci(
        X["train"]["base"], X["train"]["post"], y["train"], seed=seed)
    post_dir = fits["post", HEADLINE].coef
    rand = random_directions(100, post_dir.shape, seed=seed)
    out["cosine_base_post_null"] = np.quantile(
        np.stack([cosine(r, post_dir).abs().numpy() for r in rand]), 0.95, axis=0)
    out["mahalanobis_cosine_null"] = np.quantile(
        np.stack([mahalanobis_cosine(r, post_dir, X["test"]["post"]).abs().numpy() for r in rand]), 0.95, axis=0)
    h1, h2 = split_half_directions(X["train"]["post"], y["train"], HEADLINE, seed=seed)
    out["mahalanobis_cosine_reference"] = mahalanobis_cosine(h1.coef, h2.coef, X["test"]["post"]).numpy()
    return out


def _truth_summary(best: dict, n_val: int) -> str:
    """The truth section's summary line at the validation-chosen layer, each figure with its interval and null."""

    def num(x, digits: int = 3) -> str:  # an undefined value (NaN: e.g. a resample left a class empty) says so
        return "undefined" if x is None or x != x else f"{x:.{digits}f}"

    def ci(key: str, digits: int = 3) -> str:
        return (f"{num(best[key], digits)} [{num(best[key + '_ci_low'], digits)}, "
                f"{num(best[key + '_ci_high'], digits)}]")

    b_lo, b_hi, p_lo, p_hi = (best[k] for k in ("base_accuracy_ci_low", "base_accuracy_ci_high",
                                                 "post_accuracy_ci_low", "post_accuracy_ci_high"))
    overlap = b_lo <= p_hi and p_lo <= b_hi
    diff = ("base and post differ by less than their intervals (inside the noise)" if overlap else
            f"post {'above' if best['post_accuracy'] > best['base_accuracy'] else 'below'} base, outside both "
            "intervals")
    mcos, ref, mnull = (best[k] for k in ("mahalanobis_cosine_base_post", "mahalanobis_cosine_reference",
                                          "mahalanobis_cosine_null"))
    return (
        f"Layer {best['layer']} (chosen on {n_val} validation statements; test figures with 95% intervals): "
        f"held-out accuracy base {ci('base_accuracy')}, post {ci('post_accuracy')}, shuffled-label probes "
        f"{best['base_accuracy_null']:.3f} / {best['post_accuracy_null']:.3f}; {diff}. Cosine of the two truth "
        f"directions {ci('cosine_base_post', 2)} (random directions reach {best['cosine_base_post_null']:.2f}); "
        f"Mahalanobis cosine {mcos:.2f} (post split-half reference {ref:.2f}, random directions {mnull:.2f}"
        + ("; it cannot tell directions apart here" if mnull >= 0.5 else "") + "). "
        f"Base probe on post {ci('transfer_base_to_post')} (AUROC {best['transfer_base_to_post_auroc']:.3f}, "
        f"target-centred {ci('transfer_base_to_post_centred')}), post probe on base {ci('transfer_post_to_base')} "
        f"(AUROC {best['transfer_post_to_base_auroc']:.3f}, target-centred {ci('transfer_post_to_base_centred')})."
    )


def truth_section(pair: ModelPair, *, site: str = "resid_post", batch_size: int = 32, progress: bool = True,
                  data=None, nie_span: str = "statement_end", nie_window: int = 1,
                  nie_normalization: str = "marks_tegmark", nie_shots: int = 0, seed: int = 0,
                  is_organism: bool | None = None, position: str | None = None,
                  layers: Sequence[int] | None = None) -> ConceptResult:
    """Probe truth at every layer of both models and compare the directions.

    ``nie_span``, ``nie_window``, ``nie_normalization``, ``seed``: where and over how many layers the causal
    check adds the truth directions, how it normalises, and the seed of its random-direction null
    (:func:`truth_causal`). ``nie_shots``: labelled training statements before each judged one
    (:func:`few_shot`, Du et al.'s few-shot prompt; 0: the statement alone). ``is_organism``: whether ``pair``
    is the bundled organism (its own statements, read at its judgement cue); ``None`` finds out.
    ``position``: the token the probes read (:func:`interp.positions.parse_position`: ``last``, ``period``,
    ``mean``, ``-K``; default the final period, or the organism's judgement cue). ``layers``: the blocks
    compared (default all).

    Raises:
        ValueError: ``nie_shots`` more than the training statements of a label allow (before any activation is
            read).
    """
    nie = _NieOptions(nie_span, nie_window, nie_normalization, nie_shots)
    run = _start(pair, data, is_organism, position, layers, site=site, batch_size=batch_size, seed=seed)
    if nie_shots:  # refused now rather than the causal check skipped after the probes
        try:
            _check_shots(nie_shots, run.train)
        except ValueError as e:
            raise ValueError(f"option 'nie_shots' of section 'truth': {e}") from None
    _collect_activations(run, progress)
    _fit_probes(run)
    _compare_directions(run)
    _statistics(run)
    causal = _causal(run, nie)
    per_layer, rows = _per_layer(run, causal)
    # the layer is chosen on validation rows (held out of the training split, never the test split)
    best = max(per_layer, key=lambda e: min(e["base_accuracy_validation"], e["post_accuracy_validation"]))
    matrices = _generalization(run, best)
    readings = _readings(best, run.n_val, matrices, nie)
    directions = {f"{model}/{method}": fit.direction.float() for (model, method), fit in run.fits.items()}
    _complete_setup(run)
    return ConceptResult("truth", run.layers, per_layer, rows, matrices, directions, readings, run.setup,
                         _plots(with_causal=bool(causal), normalization=nie.normalization))


#: The cue the causal check reads the judgement token after.
_JUDGEMENT_CUE = " This statement is"


@dataclass(frozen=True)
class _NieOptions:
    """How :func:`truth_section`'s causal check runs: :func:`truth_causal`'s ``span``, ``window`` and
    ``normalization``, and ``shots`` labelled training statements before each judged one (:func:`few_shot`)."""

    span: str
    window: int
    normalization: str
    shots: int

    def setup(self, seed: int) -> str:
        """The setup's ``causal check`` note."""
        return (f"direction: mass-mean difference at the final period of the training statements, "
                f"added at {NIE_SPANS[self.span]}, {self.window} layer(s) from L; normalised "
                f"{NIE_NORMALIZATIONS[self.normalization]}; {self.shots} labelled training statements "
                f"before each judged one; null: a random direction of the same norm (seed {seed})")

    def reading(self) -> str:
        """The reading of the causal plot."""
        du = self.normalization == "du"
        return (
            f"Normalized indirect effect of adding a model's truth direction (mass-mean difference at the final "
            f"period) after block L{'' if self.window == 1 else f' (and the next {self.window - 1})'} at "
            f"{NIE_SPANS[self.span]}, normalised {NIE_NORMALIZATIONS[self.normalization]}: 1 = "
            + ("every false statement is now judged true with certainty" if du else
               "false statements now look as true as true ones")
            + (f"; each statement follows {self.shots} labelled training statements" if self.shots else "")
            + ". One panel per direction and model it is added to, on one scale: rows the direction's model, "
              "columns the model it is added to (off-diagonal panels apply one model's direction to the other "
              "model). Solid: the direction added to false statements (false→true); dotted: subtracted from true "
              "statements (true→false); grey: a random direction of the same norm (the null). "
            + ("Blank where PD(false) = 1 or PD(true) = -1 leaves no room to move." if du else
               "Blank where the model does not judge true statements truer than false ones."))


@dataclass
class _Run:
    """What the stages of :func:`truth_section` find, in the order they find it."""

    pair: ModelPair
    site: str
    batch_size: int
    seed: int
    train: PromptSet
    test: PromptSet
    position: str
    """the token the probes read (:func:`interp.positions.parse_position`)"""
    setup: dict
    layers: list[int] | None
    """the blocks compared: as asked (None: all) until the activations are collected, then the ones they hold"""
    tokens: dict = field(default_factory=dict)
    """``tokens[split][model]``: each split's statements, tokenised once and read by every pass"""
    acts: dict = field(default_factory=dict)
    """``acts[split][model]``: activations at ``site``, ``[n, layer, d]``"""
    fits: dict = field(default_factory=dict)
    """``fits[model, method]``: the probes fitted at every layer (``coef`` ``[layer, d]``)"""
    acc: dict = field(default_factory=dict)
    """``acc[model, method, layer]``: the sweep's held-out record"""
    X: dict = field(default_factory=dict)
    """``X[split][model]``: ``[n, layer, d]`` activations"""
    y: dict = field(default_factory=dict)
    """``y[split]``: ``[n]`` labels"""
    cosines: dict = field(default_factory=dict)
    """``{key: [layer]}``: cosine of the base and post directions (mass-mean, logistic), Mahalanobis cosine"""
    moved: dict = field(default_factory=dict)
    """transfer of each model's probe to the other model (:func:`probes.similarity.transfer`)"""
    stats: dict = field(default_factory=dict)
    """``{key: [layer]}``: intervals and nulls (:func:`_truth_statistics`)"""
    val_acc: dict = field(default_factory=dict)
    """``{model: [layer]}``: validation accuracy (:func:`_validation_accuracy`), over ``n_val`` statements"""
    n_val: int = 0
    is_organism: bool = False
    """the bundled organism: its statements end in its judgement cue"""


def _start(pair: ModelPair, data, is_organism: bool | None, position: str | None, layers: Sequence[int] | None, *,
           site: str, batch_size: int, seed: int) -> _Run:
    """The section's statements, read position and setup (:func:`_truth_data`), each split tokenised once."""
    if is_organism is None:
        from ..organism import is_bundled

        is_organism = is_bundled(pair)
    train, test, auto, setup = _truth_data(pair, data, is_organism)
    if position is not None:
        setup["read at"] = f"{position} (chosen; the default here: {setup['read at']})"
    run = _Run(pair, site, batch_size, seed, train, test, auto if position is None else position, setup,
               None if layers is None else [int(x) for x in layers])
    run.tokens = {"train": tokens_for(pair, train.texts), "test": tokens_for(pair, test.texts)}  # read by every pass
    run.is_organism = is_organism
    if position is not None:  # a chosen position every statement must have, refused now rather than mid-run
        from ..positions import resolve

        for split, by_model in run.tokens.items():
            for tokenized in {id(t): t for t in by_model.values()}.values():
                try:
                    resolve(position, tokenized.texts, tokenized.encodings)
                except ValueError as e:
                    raise ValueError(f"option 'position' of section 'truth', in the {split} split: {e}") from None
    return run


def _collect_activations(run: _Run, progress: bool) -> None:
    """Both models' activations of both splits at the read position (``run.acts``)."""
    run.acts = {
        split: {name: collect(model, ps, run.site, positions=run.position, layers=run.layers,
                              batch_size=run.batch_size, progress=progress, tokens=run.tokens[split][name])
                for name, model in run.pair}
        for split, ps in (("train", run.train), ("test", run.test))
    }


def _fit_probes(run: _Run) -> None:
    """Fit the headline and secondary probes at every layer of both models and score them on the test split."""
    from probes import sweep

    records, run.fits = sweep(run.acts["train"], run.acts["test"], run.site, methods=(HEADLINE, SECONDARY))
    run.X = {split: {m: a[run.site] for m, a in d.items()} for split, d in run.acts.items()}
    run.y = {split: d["base"].labels for split, d in run.acts.items()}
    run.layers = list(run.acts["train"]["base"].layers)
    run.acc = {(r.model, r.method, r.layer): r for r in records}


def _compare_directions(run: _Run) -> None:
    """Per layer: cosines of the base and post directions, their Mahalanobis cosine under post's test
    activations, and transfer of each model's probe to the other."""
    from probes import mahalanobis_cosine
    from probes.similarity import cosine, transfer

    fits, X = run.fits, run.X
    run.cosines = {
        "cosine_base_post": cosine(fits["base", HEADLINE].coef, fits["post", HEADLINE].coef),
        "cosine_base_post_logistic": cosine(fits["base", SECONDARY].coef, fits["post", SECONDARY].coef),
        "mahalanobis_cosine_base_post": mahalanobis_cosine(fits["base", HEADLINE].coef, fits["post", HEADLINE].coef,
                                                           X["test"]["post"]),
    }
    # transfer: the source probe's own threshold, threshold-free (AUROC), and the threshold moved through the
    # target model's mean training activation (no target labels): a shift along the direction is not a loss of it
    run.moved = {f"{src}_to_{dst}": transfer(fits[src, HEADLINE], X["test"][dst], run.y["test"],
                                              center=X["train"][dst].double().mean(0))
                 for src, dst in (("base", "post"), ("post", "base"))}


def _statistics(run: _Run) -> None:
    """The intervals and nulls of the headline figures, and the validation accuracy layer selection uses."""
    run.stats = _truth_statistics(run.fits, run.X, run.y, seed=run.seed)
    mask = _validation_rows(torch.as_tensor(run.y["train"]), seed=run.seed, prompts=run.train)
    run.val_acc, run.n_val = _validation_accuracy(run.X["train"], run.y["train"], seed=run.seed, val=mask)
    # the manifest lists the rows each part of the training split played (interp.datasets.recording), by the
    # statements as loaded (the organism's judgement cue, appended here, is not part of them)
    val = mask.tolist()
    if run.is_organism:
        from ..organism._corpus import JUDGE_CUE

        loaded = run.train.map_texts(lambda t: t.removesuffix(JUDGE_CUE))
    else:
        loaded = run.train
    for part, keep in (("fit", [not v for v in val]), ("validation", val)):
        rows = [i for i, k in enumerate(keep) if k]
        record(replace(loaded[rows], name=f"{run.train.name}/{part}"), part)


def _causal(run: _Run, nie: _NieOptions) -> dict[str, list]:
    """The causal check (:func:`truth_causal`), ``{key: [value or None per layer]}``, its notes added to
    ``run.setup``; ``{}`` where it cannot run (e.g. judgement words that are not single tokens), with the reason."""
    try:
        directions = _period_directions(run)
        judged = _judged_prompts(run, nie.shots)
        causal, undefined = truth_causal(run.pair, judged, directions, run.layers, span=nie.span, window=nie.window,
                                         normalization=nie.normalization, seed=run.seed,
                                         tokens=run.tokens["test"] if judged.texts == run.test.texts else None)
        run.setup["causal check"] = nie.setup(run.seed)
        for target, why in undefined.items():
            run.setup[f"causal check ({target})"] = why
    except ValueError as e:
        log.warning("truth causal check skipped: %s", e)
        causal, run.setup["causal check"] = {}, f"skipped: {e}"
    return causal


def _period_directions(run: _Run) -> dict[str, torch.Tensor]:
    """Per model, ``[layer, d]``: the mass-mean difference ``mu_true - mu_false`` of the training statements at
    their final period, where the causal check adds it."""
    # Its directions are mass-mean differences read where they are added (at the final period, as Marks & Tegmark
    # do): the section's own rows where it reads there, else one more pass over the training statements.
    at_period = run.acts["train"] if run.position == "period" else {
        name: collect(model, run.train, run.site, positions="period", layers=run.layers, batch_size=run.batch_size,
                      progress=False, tokens=run.tokens["train"][name])
        for name, model in run.pair}
    site = run.site
    return {name: (a[site][a.labels == 1].double().mean(0) - a[site][a.labels == 0].double().mean(0)).float()
            for name, a in at_period.items()}


def _judged_prompts(run: _Run, shots: int) -> PromptSet:
    """The test statements as the causal check judges them: ending in the judgement cue, after ``shots``
    labelled training statements (:func:`few_shot`)."""
    # The causal check reads the judgement token after a cue; the organism's prompts end in it already.
    test = run.test
    cue = "" if test.texts[0].endswith(_JUDGEMENT_CUE) else _JUDGEMENT_CUE
    return few_shot(test.map_texts(lambda t: t + cue) if cue else test,
                    run.train.map_texts(lambda t: t.removesuffix(_JUDGEMENT_CUE)), shots, seed=run.seed)


def _per_layer(run: _Run, causal: dict[str, list]) -> tuple[list[dict], list[tuple]]:
    """The per-layer entries (:func:`_layer_entry`) and the CSV's long rows (:func:`_long_rows`)."""
    per_layer, rows = [], []
    for slot, layer in enumerate(run.layers):
        entry = _layer_entry(run, causal, slot, layer)
        per_layer.append(entry)
        rows += _long_rows(run, causal, entry, slot)
    return per_layer, rows


def _layer_entry(run: _Run, causal: dict[str, list], slot: int, layer: int) -> dict:
    """One layer's figures: accuracies, cosines, transfer, causal effect, intervals, nulls, validation accuracy."""
    from probes.similarity import transfer_fields

    acc = run.acc
    return {
        "layer": layer,
        "base_accuracy": acc["base", HEADLINE, layer].accuracy,
        "post_accuracy": acc["post", HEADLINE, layer].accuracy,
        "base_auroc": acc["base", HEADLINE, layer].auroc,
        "post_auroc": acc["post", HEADLINE, layer].auroc,
        "base_accuracy_logistic": acc["base", SECONDARY, layer].accuracy,
        "post_accuracy_logistic": acc["post", SECONDARY, layer].accuracy,
        **{key: float(values[slot]) for key, values in run.cosines.items()},
        **transfer_fields(run.moved, slot),
        **{key: values[slot] for key, values in causal.items()},
        **{key: float(values[slot]) for key, values in run.stats.items()},
        "base_accuracy_validation": float(run.val_acc["base"][slot]),
        "post_accuracy_validation": float(run.val_acc["post"][slot]),
    }


def _long_rows(run: _Run, causal: dict[str, list], entry: dict, slot: int) -> list[tuple]:
    """``(layer, model, measure, value)`` rows of one layer's ``entry``: accuracies and AUROCs per model and
    method, and the defined comparisons of both models."""
    from probes.similarity import transfer_fields

    layer, rows = entry["layer"], []
    for model in ("base", "post"):
        for method in (HEADLINE, SECONDARY):
            r = run.acc[model, method, layer]
            rows += [(layer, model, f"{method}_accuracy", r.accuracy), (layer, model, f"{method}_auroc", r.auroc)]
    for key in ("cosine_base_post", "mahalanobis_cosine_base_post", *transfer_fields(run.moved, slot), *causal):
        if entry[key] is not None:
            rows.append((layer, "both", key, entry[key]))
    return rows


def _generalization(run: _Run, best: dict) -> dict[str, dict]:
    """Per model, at the chosen layer: the accuracy of a probe trained on each kind of statement and tested on
    each kind (``{}`` with a single kind)."""
    from probes.similarity import generalization_matrix

    best_slot = run.layers.index(best["layer"])
    matrices = {}
    kinds_tr, kinds_te = _kinds(run.train), _kinds(run.test)
    if len(kinds_tr) > 1:
        for model in ("base", "post"):
            tr = _by_kind(run.X["train"][model], run.y["train"], kinds_tr)
            te = _by_kind(run.X["test"][model], run.y["test"], kinds_te)
            rows, cols, m = generalization_matrix(tr, te, HEADLINE)
            matrices[f"generalization_{model}"] = {
                "rows": rows, "cols": cols, "values": m[:, :, best_slot].tolist(), "layer": best["layer"],
                "title": f"Generalization across statement kinds ({model}, layer {best['layer']})",
            }
    return matrices


def _by_kind(X: torch.Tensor, y: torch.Tensor, kinds: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """``{kind: (X [n_kind, layer, d], y [n_kind])}`` for each kind holding both labels."""
    return {k: (X[mask], y[mask]) for k, mask in kinds.items() if len(set(y[mask].tolist())) == 2}


#: Readings of the section's fixed figures.
READINGS = {
    "accuracy": "Held-out accuracy of a mass-mean probe at each layer (bands: 95% Wilson intervals over "
                "test statements): where each model represents the truth of a statement linearly. Grey: the "
                "same probe fitted on shuffled training labels (mean of 10 shuffles), the chance level.",
    "similarity": "Cosine and Mahalanobis cosine of the base and post mass-mean directions, and how well each "
                  "model's probe classifies the other model's activations: near 1 means post-training kept "
                  "the same truth direction. Transfer is shown three ways: accuracy with the source probe's "
                  "own threshold (a shift of the target's activations along the direction reads as failure), "
                  "AUROC (threshold-free), and accuracy with the threshold through the target model's mean "
                  "training activation (no target labels used). Grey: the cosine and Mahalanobis cosine "
                  "a random direction reaches with the post direction (95th percentile of 100); dashed "
                  "black: the Mahalanobis cosine of two post probes fitted on disjoint halves of post's "
                  "training statements (the reference: what the same model's own probe reaches).",
}
#: Reading of each generalization matrix.
GENERALIZATION_READING = ("Accuracy of a probe trained on one kind of statement and tested on each kind: "
                          "off-diagonal values near the diagonal mean one shared truth direction.")


def _readings(best: dict, n_val: int, matrices: dict, nie: _NieOptions) -> dict[str, str]:
    """The section's readings: the summary at the chosen layer, each plot's and each matrix's."""
    readings = {"summary": _truth_summary(best, n_val), **READINGS, "causal": nie.reading()}
    for key in matrices:
        readings[key] = GENERALIZATION_READING
    return readings


def _complete_setup(run: _Run) -> None:
    """Add the site, methods, counts, layer selection, intervals and seed to ``run.setup``."""
    run.setup.update({
        "site": run.site, "methods": f"{HEADLINE} (headline: accuracy, directions, transfer, causal), "
                                     f"{SECONDARY} (accuracy and cosine alongside)",
        "n_train": len(run.train), "n_test": len(run.test),
        "layer selection": f"best layer by min(base, post) validation accuracy of mass-mean probes fitted "
                           f"on the other training statements ({run.n_val} validation statements, seed {run.seed}); "
                           "every reported figure is on the test statements",
        "intervals": "accuracies: 95% Wilson intervals over test statements; NIE: 95% percentile "
                     "bootstrap over statements (1,000 resamples, seeded); probes.stats", "seed": run.seed})


def _causal_plot(normalization: str) -> dict:
    """The causal effect as small multiples: one panel per (direction, model it is added to), rows the direction's
    model, columns the model it is added to (own directions on the diagonal), each with the false→true effect, the
    true→false one and the random direction's; one NIE scale for all four, its unit ``normalization``'s."""
    unit = "1 = largest change possible" if normalization == "du" else "1 = true–false gap closed"
    pairs = [(s, t) for s in ("base", "post") for t in ("base", "post")]
    return {"title": "Causal effect of the truth directions", "reading": "causal",
            "xaxis": "layer the direction is added after", "yaxis": "normalized indirect effect",
            "series": {f"nie_{s}_to_{t}{sfx}": f"{s} direction → {t} model{label}" for s, t in pairs
                       for sfx, label in (("", " (false→true)"), ("_true_to_false", " (true→false)"))},
            "nulls": {f"nie_{s}_to_{t}_random": f"random direction, {s} norm → {t} model" for s, t in pairs},
            "panels": [{"keys": [f"nie_{s}_to_{t}", f"nie_{s}_to_{t}_true_to_false", f"nie_{s}_to_{t}_random"],
                        "title": f"{s} direction → {t} model", "yaxis": f"NIE ({unit})"}
                       for s, t in pairs],
            "columns": 2, "shared_yaxis": True, "panel_colors": True}


def _plots(with_causal: bool, normalization: str = "marks_tegmark") -> list[dict]:
    """The section's line plots over layers: accuracy, similarity and, ``with_causal``, the causal effect (NIE
    normalised by ``normalization``)."""
    plots = [
        {"title": "Probe accuracy by layer", "reading": "accuracy", "yaxis": "held-out accuracy", "yrange": [0, 1.02],
         "series": {"base_accuracy": "base (mass-mean)", "post_accuracy": "post (mass-mean)",
                    "base_accuracy_logistic": "base (logistic)", "post_accuracy_logistic": "post (logistic)"},
         "nulls": {"base_accuracy_null": "base, shuffled labels", "post_accuracy_null": "post, shuffled labels"}},
        {"title": "Same direction in both models?", "reading": "similarity", "yrange": [-0.05, 1.05],
         "series": {"cosine_base_post": "cosine(base, post)", "transfer_base_to_post": "transfer base→post",
                    "transfer_post_to_base": "transfer post→base",
                    "transfer_base_to_post_auroc": "transfer base→post (AUROC)",
                    "transfer_post_to_base_auroc": "transfer post→base (AUROC)",
                    "transfer_base_to_post_centred": "transfer base→post (target-centred)",
                    "transfer_post_to_base_centred": "transfer post→base (target-centred)",
                    "mahalanobis_cosine_base_post": "Mahalanobis cosine",
                    "mahalanobis_cosine_reference": "Mahalanobis cosine, post split halves (reference)"},
         "nulls": {"cosine_base_post_null": "cosine, random direction",
                   "mahalanobis_cosine_null": "Mahalanobis cosine, random direction"},
         "panels": [{"keys": ["cosine_base_post", "mahalanobis_cosine_base_post", "mahalanobis_cosine_reference",
                              "cosine_base_post_null", "mahalanobis_cosine_null"],
                     "yaxis": "cosine of the two directions", "yrange": [-1.05, 1.05]},
                    {"keys": ["transfer_base_to_post", "transfer_post_to_base", "transfer_base_to_post_centred",
                              "transfer_post_to_base_centred"], "yaxis": "transfer accuracy", "yrange": [0, 1.02]},
                    {"keys": ["transfer_base_to_post_auroc", "transfer_post_to_base_auroc"],
                     "yaxis": "transfer AUROC", "yrange": [0, 1.02]}]},
    ]
    if with_causal:
        plots.append(_causal_plot(normalization))
    return plots
    return ConceptResult("truth", layers, per_layer, long_rows, matrices, directions, readings, setup, plots)


def _position(value: str) -> None:
    from ..positions import parse_position

    parse_position(value)


def _run(ctx, *, data: str | None = None, layers: str | None = None, **options) -> ConceptResult:
    return truth_section(ctx.pair, progress=ctx.progress, data=user_data(ctx, "truth", data, options["seed"]),
                         is_organism=ctx.is_organism, layers=None if layers is None else parse_layers(layers),
                         **options)


SECTION = Section("truth", _run, help="where each model represents the truth of a statement, and whether it is the "
                                      "same direction (probes, cosines, transfer, causal effect)", params=(
    site_param("activation site the probes read"),
    Param("position", str, None, "token the probes read: last, period, mean, -K (default: the final period; the "
                                 "bundled organism's judgement cue)", validate=_position),
    layers_param("layers", "comma-separated blocks to compare (default all)"),
    Param("batch_size", int, 32, "prompts per forward pass", low=1),
    Param("nie_span", str, "statement_end", "tokens the causal check adds the direction at", tuple(NIE_SPANS)),
    window_param("nie_window", 1, "consecutive layers the causal check adds the direction to"),
    Param("nie_normalization", str, "marks_tegmark", "how the causal effect is normalised",
          tuple(NIE_NORMALIZATIONS)),
    Param("nie_shots", int, 0, "labelled training statements before each judged one (Du et al. 2025's few-shot "
                               "prompt)", low=0),
    seed_param("seed of the validation split, the nulls, the bootstrap and the train/test split of "
                          "--truth-data"),
    data_param("truth", "your statements: a file labelled true/false (GoT CSV, JSON/JSONL with text and "
                             "label), split 75/25 by its group column when it has one"),
))
