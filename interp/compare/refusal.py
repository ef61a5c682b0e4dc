"""The refusal section of :func:`interp.compare.compare`.

For each model, candidate refusal directions are the difference of means
between harmful and harmless requests — both chat-formatted with the post
model's template, on both models — of the residual stream entering every
layer at every post-instruction position; one is selected as Arditi et al.
(2024) do (:func:`steering.refusal.select_direction`). A model that never
refuses (most base models) has no candidate whose addition induces refusal;
its direction is then taken at the post model's selected layer and position,
and the report says so. A post model none of whose candidates passes the
filters (SmolLM2-135M-Instruct refuses few harmful requests) has no refusal
direction: the report says so in its summary and setup, and its steering rows
use the candidate whose addition raises the refusal score most, labelled as
not a refusal direction. Candidates are scored with pruning
(:func:`steering.refusal.score_candidates`): scores a filter made pointless
are not measured, reported as blank (None) with the reason.

Reported:

* per layer: cosine between the base and post candidates (at the post model's
  selected position), each model's refusal score when that layer's candidate
  is ablated, and a harmful-vs-harmless logistic probe's held-out accuracy per
  model with transfer between models;
* per model: refusal rate on held-out harmful and harmless requests for
  the baseline, ablation, and addition — with its own direction and with the
  other model's (forward transfer base→post, backward post→base) — the
  refusal rate on harmful requests with the direction subtracted at its layer
  (Arditi et al.'s activation subtraction), the next-token KL on harmless
  requests under each intervention and the cross-entropy of plain held-out
  text (the true/false statements) under ablation, as their Pile/Alpaca check
  that ablation leaves other behaviour intact.

With ``base_template`` (Du et al. 2025), the base model reads every request in
a base-style template instead (:data:`DU_BASE_TEMPLATE`: ``User: …\nAssistant:``)
and its candidates are taken at that template's own post-instruction
positions; the base direction is then its own, at its own position, and the
per-layer cosine compares each model's direction at its own selected position.

As Arditi et al.'s ``filter_train``/``filter_val``, the direction and
validation requests are first filtered by the post model's refusal score:
harmful requests it does not refuse (score ≤ 0) and harmless ones it does
(score ≥ 0) are dropped, for both models (the same requests, so the two
directions are comparable).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

import torch

from ..activations import Activations, prompts_digest
from ..collection import collect
from ..datasets import PromptSet, load
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ._section import Param, Section, data_param, provides, user_data

__all__ = ["DU_BASE_TEMPLATE", "ORGANISM_PRUNE_LAYERS", "SECTION", "arditi_filter", "refusal_section"]

log = logging.getLogger(__name__)

#: Du et al. 2025's base-model template (their ``LLAMA3_BASE_TEMPLATE``, ``User: {instruction}\nAssistant:``) as
#: a Jinja chat template, for ``refusal_section(base_template=...)``.
DU_BASE_TEMPLATE = "{% for message in messages %}User: {{ message['content'] }}\nAssistant:{% endfor %}"

#: First words of refusals for pairs other than the organism (Arditi et al. score "I" and "As" for most chat models).
GENERIC_REFUSAL_STARTS = ("I", "As", "Sorry", "Unfortunately")


def _data(pair: ModelPair, is_organism: bool, data=None, base_template: str | None = None) -> dict:
    """Requests per kind and split, formatted per model: ``out[kind, split]`` in the post model's chat template,
    ``out["base", kind, split]`` in ``base_template`` where given (else the same lists)."""
    tok = pair.tokenizer
    from steering.metrics import refusal_token_ids

    if is_organism:
        from ..organism._corpus import REFUSALS

        names, starts, compliant = ("organism/harmful", "organism/harmless"), list(REFUSALS), ["Sure."]
    else:
        names, starts, compliant = ("harmful", "harmless"), list(GENERIC_REFUSAL_STARTS), []
    ids = refusal_token_ids(tok, starts, compliant=compliant)
    # after a template that ends mid-line ("Assistant:") a reply's first token carries a leading space
    try:
        spaced = refusal_token_ids(tok, [" " + r for r in starts], compliant=[" " + c for c in compliant])
    except ValueError:  # every spaced refusal start is also a spaced compliant start
        spaced = []
    both = "organism/refusal" if is_organism else "refusal"  # harmless = 0, harmful = 1, for the probe
    loader = data.load if data is not None and (not is_organism or provides(data, "harmful")) else load
    out = {"refusal_ids": ids, "refusal_ids_spaced": [i for i in spaced if i not in ids], "datasets": names,
           "labelled": both, "load": loader,
           "sources": sorted({loader(n, s).source for n in names for s in ("train", "test")})}
    # plain held-out text for the loss check (Arditi et al. use Pile and Alpaca text): true/false statements
    out["plain"] = list(loader("organism/truth" if is_organism else "truth", "test").texts)
    base_pair = pair if base_template is None else replace(pair, chat_template=base_template)
    out["format"] = {"post": pair, "base": base_pair}
    for kind, name in zip(("harmful", "harmless"), names):
        for split in ("train", "test"):
            out[kind, split] = list(pair.format(loader(name, split), "chat").texts)
            out["base", kind, split] = (out[kind, split] if base_template is None
                                        else list(base_pair.format(loader(name, split), "chat").texts))
    return out


#: About as many validation requests per kind as Arditi et al.'s ``n_val`` (32); at least a fifth of the rows.
N_VAL = 32


def _every(n: int) -> int:
    """Every how many training rows one is held out for selection: 5, or more when that gives over :data:`N_VAL`."""
    return max(5, n // N_VAL)


def _split(texts: list[str]) -> tuple[list[str], list[str]]:
    """(direction rows, validation rows): every :func:`_every`-th training row is held out for selection."""
    every = _every(len(texts))
    return [t for i, t in enumerate(texts) if i % every], texts[::every]


def _split_mask(n: int) -> torch.Tensor:
    """``[n]`` bool, True for the direction rows of :func:`_split`."""
    return torch.arange(n) % _every(n) != 0


def _as_activations(like: Activations, prompts: PromptSet, rows: torch.Tensor) -> Activations:
    """In-memory ``resid_pre`` rows ``[n, layer, d]`` of ``prompts``, described as ``like`` (same model, site,
    layers and read position; left-padded batches, as :func:`steering.refusal.offset_activations` runs)."""
    manifest = {**like.manifest, "n_samples": len(prompts), "prompts_name": prompts.name,
                "prompts_sha256": prompts_digest(prompts),
                "tokenization": {**like.manifest["tokenization"], "padding_side": "left"},
                "extra": {"rows": "steering.refusal.offset_activations"}}
    return Activations(manifest=manifest, prompts=prompts, tensors={"resid_pre": rows})


def _discard_counts(cands) -> str:
    """'n kept, n layer >= bound, n induce < 0, ...' for the setup notes."""
    counts: dict[str, int] = {}
    for c in cands:
        first = c.discarded.split(";")[0].split(" (")[0] if c.discarded else "kept"
        first = "induce < 0" if first.startswith("addition does not induce") else first
        first = "KL > threshold" if first.startswith("KL ") else first
        counts[first] = counts.get(first, 0) + 1
    unscored = sum(not c.scored for c in cands)
    return ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; {unscored} of {len(cands)} not fully scored"


def _finite(x: float):
    """``x``, or None (JSON null, a gap in the plots) when it was not measured."""
    return None if math.isnan(x) else x


def _rates(model, prompts: dict, interventions, stop_tokens, max_new_tokens: int, batch_size: int,
           clean: torch.Tensor | None = None) -> dict:
    """Refusal rates of the greedy replies to ``prompts`` (``{"harmful": [...], "harmless": [...]}``), three
    example replies each, each rate's 95% Wilson interval over requests (``{kind}_ci``), the harmless
    next-token log-probabilities (``harmless_logprobs``) and, given the
    unsteered ones as ``clean``, the mean ``KL(clean || steered)`` on harmless prompts (``harmless_kl``, nats).

    The log-probabilities are the generation's first step (the forward pass over the prompts that picks
    the first token), so the KL costs no pass of its own.
    """
    from probes.stats import proportion_ci
    from steering.generation import greedy_with_first_step
    from steering.metrics import is_refusal, kl_from_logprobs

    # one generation over both kinds: each decoding step streams the weights (262k x 640 unembedding for
    # Gemma-3) once for every row instead of once per kind
    kinds = list(prompts)
    texts = [t for kind in kinds for t in prompts[kind]]
    replies, first = greedy_with_first_step(model, texts, interventions, max_new_tokens=max_new_tokens,
                                            batch_size=batch_size, stop_tokens=stop_tokens)
    out, start = {}, 0
    for kind in kinds:
        n = len(prompts[kind])
        texts_out = replies[start : start + n]
        flags = [float(is_refusal(t)) for t in texts_out]
        out[kind] = sum(flags) / len(flags)  # steering.metrics.refusal_rate
        lo, hi = proportion_ci(flags)
        out[f"{kind}_ci"] = [round(lo, 4), round(hi, 4)]
        out[f"{kind}_examples"] = texts_out[:3]
        if kind == "harmless":
            out["harmless_logprobs"] = first[start : start + n]
            if clean is not None:
                out["harmless_kl"] = float(kl_from_logprobs(clean, out["harmless_logprobs"]).mean())
        start += n
    return out


#: Fewest direction (or validation) requests of a kind the sign filter may leave; below it the filter is not applied.
MIN_FILTERED = 2


def arditi_filter(model, requests: dict[str, list[str]], refusal_ids, *, enabled: bool = True,
                  batch_size: int = 32) -> tuple[dict, dict[str, str]]:
    """Arditi et al.'s ``filter_train``/``filter_val`` (``run_pipeline.filter_data``) on the direction and
    validation rows of :func:`_split`.

    Keeps the harmful requests ``model`` refuses (refusal score > 0, :func:`steering.metrics.refusal_score`) and
    the harmless ones it does not (score < 0). A kind the filter would leave with fewer than
    :data:`MIN_FILTERED` direction or validation requests is kept whole, and its note says so.

    Args:
        model: the model whose refusal decides (the post model, for both models' directions).
        requests: ``{"harmful": [...], "harmless": [...]}``, chat-formatted training requests.
        refusal_ids: first tokens of refusals.
        enabled: False keeps everything (the note says "off").

    Returns:
        ``(masks, notes)``: ``masks[kind]`` (``[n]`` bool) selects the direction rows kept, ``masks[kind, "val"]``
        the validation rows kept; ``notes[kind]`` says how many were kept, or why the filter was not applied.
    """
    from steering.metrics import refusal_score

    masks, notes = {}, {}
    for kind, sign in (("harmful", "> 0"), ("harmless", "< 0")):
        texts = requests[kind]
        direction_rows = _split_mask(len(texts))
        keep = torch.ones(len(texts), dtype=torch.bool)
        if enabled:
            score = refusal_score(model, texts, refusal_ids, batch_size=batch_size)
            keep = score > 0 if kind == "harmful" else score < 0
        kept_dir, kept_val = int((direction_rows & keep).sum()), int((~direction_rows & keep).sum())
        counts = (f"{kept_dir} of {int(direction_rows.sum())} direction and {kept_val} of "
                  f"{int((~direction_rows).sum())} validation requests")
        if not enabled:
            notes[kind] = "off"
        elif min(kept_dir, kept_val) < MIN_FILTERED:
            notes[kind] = f"not applied: the refusal score is {sign} for {counts} (fewer than {MIN_FILTERED})"
            keep = torch.ones(len(texts), dtype=torch.bool)
        else:
            notes[kind] = f"{counts} kept (refusal score {sign})"
        masks[kind], masks[kind, "val"] = direction_rows & keep, ~direction_rows & keep
    return masks, notes


#: The organism's layer filter: Arditi et al.'s 20% rounds down to a third of its 6 layers (``int(6 * 0.8) = 4``),
#: which discards the layer its refusal direction lives in; 0.15 discards its last layer only (``int(6 * 0.85)``).
ORGANISM_PRUNE_LAYERS = 0.15


def refusal_section(pair: ModelPair, *, is_organism: bool = False, kl_threshold: float = 0.1,
                    prune_layers: float | None = None, filter_prompts: bool = True, base_template: str | None = None,
                    max_new_tokens: int = 16, batch_size: int = 32, progress: bool = True,
                    data=None, generation_batch_size: int = 128, seed: int = 0) -> ConceptResult:
    """Find, compare and steer with each model's refusal direction (see the module docstring).

    ``batch_size`` batches the forward passes; ``generation_batch_size`` the steered generations, where fewer,
    larger batches mean fewer decoding steps (each step's cost on a CPU is mostly per call, not per row).

    ``data``: a :class:`~interp.datasets.PublicSets` to take the requests from (Arditi et al.'s train/val
    files) instead of the built-in sets; ignored on the bundled organism.

    ``seed``: of the shuffled-label probes and the random direction (the null of
    ablation and addition, with the post direction's norm at its layer, steering the post model).

    ``prune_layers``: share of the last layers Arditi et al.'s filter discards (``l >= int(n_layers * (1 -
    prune_layers))``); default 0.2, theirs, except on the bundled organism (:data:`ORGANISM_PRUNE_LAYERS`,
    stated in the report's setup).

    ``filter_prompts``: Arditi et al.'s filter of the direction and validation requests by the sign of the post
    model's refusal score (harmful kept where it is > 0, harmless where it is < 0), applied to both models. A kind
    the filter would leave with fewer than :data:`MIN_FILTERED` direction or validation requests is not filtered,
    and the setup says so.

    ``base_template``: a Jinja chat template the base model reads the requests in (e.g.
    :data:`DU_BASE_TEMPLATE`, as Du et al. 2025 build base models' refusal directions); default: the post
    model's chat template on both models.
    """
    from probes import sweep
    from probes.similarity import centred_fit, transfer, transfer_fields
    from probes.stats import (
        accuracy_ci,
        correct,
        direction_cosine_ci,
        equal_norm_random,
        proportion_ci,
        random_directions,
        shuffled_label_accuracy,
    )
    from steering import Ablate, Add
    from steering.metrics import heldout_loss
    from steering.refusal import (
        RefusalSelection,
        apply_filters,
        offset_activations,
        post_instruction_offsets,
        score_candidates,
        select_direction,
    )

    if prune_layers is None:
        prune_layers = ORGANISM_PRUNE_LAYERS if is_organism else 0.2
    data = _data(pair, is_organism, data, base_template)
    ids = data["refusal_ids"]
    offsets = post_instruction_offsets(pair.tokenizer, pair.chat_template)
    own = base_template is not None  # the base model reads its own template, at its own positions
    offsets_of = {"post": offsets,
                  "base": post_instruction_offsets(pair.tokenizer, base_template) if own else offsets}

    # refusal's first tokens per model: the base template ends mid-line, so its replies start with a space
    ids_of = {"post": ids, "base": ids + data["refusal_ids_spaced"] if own else ids}

    def texts(name: str, kind: str, split: str) -> list[str]:
        return data[kind, split] if name == "post" else data["base", kind, split]
    n_layers = pair.n_layers
    stop = [t for t in getattr(pair.tokenizer, "additional_special_tokens", []) or []]
    notes = {}
    stages, t0 = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t0
        stages[stage] = round(time.perf_counter() - t0, 1)
        log.info("refusal: %s %.1f s", stage, stages[stage])
        t0 = time.perf_counter()

    masks, filtered = arditi_filter(pair.post, {kind: data[kind, "train"] for kind in ("harmful", "harmless")}, ids,
                                    enabled=filter_prompts, batch_size=batch_size)

    def rows_of(name: str, kind: str, mask: torch.Tensor) -> list[str]:
        return [t for t, k in zip(texts(name, kind, "train"), mask) if k]

    harm_dir, safe_dir = rows_of("post", "harmful", masks["harmful"]), rows_of("post", "harmless", masks["harmless"])
    val = {name: (rows_of(name, "harmful", masks["harmful", "val"]), rows_of(name, "harmless", masks["harmless", "val"]))
           for name in ("base", "post")}  # validation requests, in each model's own format
    harm_val, safe_val = val["post"]
    lap("prompt filter")

    # One pass over the training requests per model reads every layer at every post-instruction position: the
    # direction rows give the candidates (Arditi et al.'s difference of means), and all of them, at the position
    # selected below, are the probe's training rows, so nothing is run twice.
    diffs, train_rows = {}, {}
    for name, model in pair:
        train_rows[name] = {kind: offset_activations(model, texts(name, kind, "train"), offsets_of[name],
                                                     batch_size=batch_size)
                            for kind in ("harmful", "harmless")}
        direction = {kind: rows[masks[kind]].double().mean(0) for kind, rows in train_rows[name].items()}
        diffs[name] = direction["harmful"] - direction["harmless"]  # [pos, layer, d] as mean_activations gives
    lap("difference of means")
    sel: dict[str, RefusalSelection] = {}
    # Pruned scoring (steering.refusal.score_candidates): only what can change the selection is measured, the rest
    # is NaN with the reason; the selection is the exhaustive one's.
    scores = {name: score_candidates(model, diffs[name], offsets_of[name], *val[name], ids_of[name], prune=True,
                                     kl_threshold=kl_threshold, prune_layers=prune_layers, batch_size=batch_size,
                                     progress=progress)
              for name, model in pair}

    def select(name: str) -> RefusalSelection:  # the scores were pruned under these filters: no forward pass
        return select_direction(getattr(pair, name), diffs[name], offsets_of[name], *val[name], ids_of[name],
                                scores=scores[name], kl_threshold=kl_threshold,
                                prune_layers=prune_layers)

    def at(name: str, layer: int, position: int) -> RefusalSelection:
        """A non-qualifying 'selection' of the candidate at (layer, position), fully scored, with its reasons."""
        scores[name] = score_candidates(getattr(pair, name), diffs[name], offsets_of[name], *val[name], ids_of[name],
                                        scores=scores[name], only=[(layer, position)], batch_size=batch_size)
        cands = apply_filters(scores[name][0], diffs[name], offsets_of[name], n_layers, kl_threshold=kl_threshold,
                              prune_layers=prune_layers)
        chosen = next(c for c in cands if c.layer == layer and c.position == position)
        return RefusalSelection(diffs[name], tuple(offsets_of[name]), cands, chosen, scores[name][1])

    qualifies = {}
    for name in ("post", "base"):
        try:
            sel[name] = select(name)
            qualifies[name] = True
            notes[f"{name} selection"] = "own candidates (Arditi et al. filters)"
        except ValueError:
            qualifies[name] = False
    if not qualifies["post"]:
        # No post candidate passes the filters: there is no refusal direction by Arditi et al.'s criteria. The
        # steering rows still need a direction; take the candidate whose addition raises the refusal score most.
        cands = apply_filters(scores["post"][0], diffs["post"], offsets, n_layers, kl_threshold=kl_threshold,
                              prune_layers=prune_layers)
        eligible = [c for c in cands if not math.isnan(c.induce)] or cands
        best = max(eligible, key=lambda c: -math.inf if math.isnan(c.induce) else c.induce)
        sel["post"] = at("post", best.layer, best.position)
        notes["post selection"] = (
            f"NO REFUSAL DIRECTION: none of the post model's {len(cands)} candidates passes Arditi et al.'s filters "
            f"({_discard_counts(cands)}); the steering rows use the candidate whose addition raises the refusal "
            f"score most (layer {best.layer}, position {best.position}, score {best.induce:.2f}), which is not a "
            "refusal direction by Arditi et al.'s criteria")
        log.warning("refusal: %s", notes["post selection"])
    if not qualifies["base"]:
        # No base candidate passes (a base model that never refuses): take the post model's layer and position
        # (in its own template: its last token, where it would start its reply).
        p_sel = sel["post"].selected
        b_pos = offsets_of["base"][-1] if own else p_sel.position
        sel["base"] = at("base", p_sel.layer, b_pos)
        notes["base selection"] = (f"no base candidate passed the filters ({_discard_counts(sel['base'].candidates)}); "
                                   f"the base direction is its difference of means at the post model's layer "
                                   f"{p_sel.layer} and " + (f"its own template's last position ({b_pos})" if own else
                                                            f"position {p_sel.position}")
                                   + ("" if qualifies["post"] else ", itself no refusal direction"))
        log.info("refusal: %s", notes["base selection"])
    vec = {name: replace(s.vector, meta={**s.vector.meta, "model": name, "source": pair.info()[name]["name"]})
           for name, s in sel.items()}
    lap("candidate scoring")

    # Steering on held-out requests: baseline, ablation and addition with each direction.
    test_of = {name: {kind: texts(name, kind, "test") for kind in ("harmful", "harmless")} for name in ("base", "post")}
    test = test_of["post"]
    steering_rows, bars = [], []
    # The null of ablation and addition: a random direction with the post direction's norm, at its layer
    g = torch.Generator().manual_seed(seed)
    post_v = vec["post"].vectors[0].double()
    random_vec = replace(vec["post"], vectors=equal_norm_random(post_v, g)[None],
                         meta={**vec["post"].meta, "method": "random", "seed": seed})
    for target, model in pair:
        conditions = [("baseline", "none", None)]
        for source in ("post", "base") if target == "post" else ("base", "post"):
            conditions += [(f"ablate {source} direction", source, Ablate(vec[source])),
                           (f"add {source} direction", source, Add(vec[source])),
                           (f"subtract {source} direction", source, Add(vec[source], scale=-vec[source].scale))]
        if target == "post":
            conditions += [("ablate random direction (null)", "random", Ablate(random_vec)),
                           ("add random direction (null)", "random", Add(random_vec)),
                           ("subtract random direction (null)", "random", Add(random_vec, scale=-random_vec.scale))]
        clean = None
        for label, source, iv in conditions:  # the baseline comes first: its first step is the clean distribution
            # activation subtraction is Arditi et al.'s test on harmful requests only
            kinds = {"harmful": test_of[target]["harmful"]} if label.startswith("subtract") else test_of[target]
            rates = _rates(model, kinds, iv, stop, max_new_tokens, generation_batch_size, clean=clean)
            if iv is None:
                clean, kl = rates["harmless_logprobs"], 0.0
            else:
                kl = rates.get("harmless_kl")
            # Arditi et al.'s check that ablation leaves other behaviour intact (their Pile/Alpaca cross-entropy):
            # the cross-entropy of plain held-out text, here the true/false statements
            ce = (heldout_loss(model, data["plain"], iv, batch_size=batch_size)
                  if iv is None or label in (f"ablate {target} direction", "ablate random direction (null)") else None)
            steering_rows.append([target, label, source, rates["harmful"], rates.get("harmless"), kl,
                                  rates["harmful_examples"][0], (rates.get("harmless_examples") or [None])[0],
                                  rates["harmful_ci"], rates.get("harmless_ci"), ce])
            bars += [[target, label, kind, rates[kind]] for kind in kinds]

    lap("steered generation")
    # Per layer: cosine of the candidates, ablation score, and a harmful-vs-harmless probe with transfer.
    pos = sel["post"].selected.position
    pos_of = {"post": pos, "base": sel["base"].selected.position if own else pos}
    slot_of = {name: offsets_of[name].index(pos_of[name]) for name in pos_of}
    cos = torch.nn.functional.cosine_similarity(diffs["base"][slot_of["base"]], diffs["post"][slot_of["post"]], dim=-1)
    # its interval: the direction rows resampled (the same requests for both models), both candidates refitted;
    # its null: how close random directions come to the post candidate (95th percentile of |cosine|)
    at_slot = {name: torch.cat([train_rows[name][kind][masks[kind]][:, slot_of[name]] for kind in ("harmful", "harmless")])
               for name, _ in pair}
    is_harmful = [1] * int(masks["harmful"].sum()) + [0] * int(masks["harmless"].sum())
    cos_low, cos_high = direction_cosine_ci(at_slot["base"], at_slot["post"], is_harmful, seed=seed)
    cos_null = torch.stack([torch.nn.functional.cosine_similarity(r, diffs["post"][slot_of["post"]], dim=-1).abs()
                            for r in random_directions(100, tuple(diffs["post"][slot_of["post"]].shape), seed=seed)]
                           ).quantile(0.95, dim=0)
    del at_slot
    probe_sets = {"test": {name: collect(model, data["format"][name].format(data["load"](data["labelled"], "test"),
                                                                             "chat"),
                                         "resid_pre", positions=pos_of[name], batch_size=batch_size, progress=False)
                           for name, model in pair}}
    train_set = PromptSet.from_classes("refusal/train", {"harmless": data["harmless", "train"],
                                                         "harmful": data["harmful", "train"]})
    probe_sets["train"] = {name: _as_activations(probe_sets["test"][name], train_set, torch.cat(
        [train_rows[name]["harmless"][:, slot_of[name]], train_rows[name]["harmful"][:, slot_of[name]]]))
        for name, _ in pair}
    del train_rows
    records, fits = sweep(probe_sets["train"], probe_sets["test"], "resid_pre", methods=("logistic",))
    acc = {(r.model, r.layer): r.accuracy for r in records}
    y_test = probe_sets["test"]["base"].labels
    probe_stats = {}  # per-layer accuracy intervals (Wilson, over test requests) and shuffled-label nulls
    for name in ("base", "post"):
        X_te, X_tr = probe_sets["test"][name]["resid_pre"], probe_sets["train"][name]["resid_pre"]
        _, lo, hi = accuracy_ci(fits[name, "logistic"], X_te, y_test)
        null, _ = shuffled_label_accuracy(X_tr, probe_sets["train"][name].labels, X_te, y_test, "logistic", seed=seed,
                                          n_shuffles=3)
        probe_stats.update({f"{name}_accuracy_ci_low": lo, f"{name}_accuracy_ci_high": hi, f"{name}_accuracy_null": null})
    # transfer three ways (probes.similarity.TRANSFER_SCORES): own threshold, AUROC, threshold through the target's
    # mean training activation (labels unused)
    moved = {f"{src}_to_{dst}": transfer(fits[src, "logistic"], probe_sets["test"][dst]["resid_pre"], y_test,
                                          center=probe_sets["train"][dst]["resid_pre"].double().mean(0))
             for src, dst in (("base", "post"), ("post", "base"))}
    for src, dst in (("base", "post"), ("post", "base")):  # Wilson intervals over test requests, as in truth
        fit = fits[src, "logistic"]
        centred = centred_fit(fit, probe_sets["train"][dst]["resid_pre"].double().mean(0))
        for suffix, f in (("", fit), ("_centred", centred)):
            lo, hi = proportion_ci(correct(f, probe_sets["test"][dst]["resid_pre"], y_test))
            probe_stats[f"transfer_{src}_to_{dst}{suffix}_ci_low"] = lo
            probe_stats[f"transfer_{src}_to_{dst}{suffix}_ci_high"] = hi
    by = {name: {(c.layer, c.position): c for c in s.candidates} for name, s in sel.items()}
    scale = {name: float(diffs[name].norm(dim=-1).max()) for name in diffs}

    def zero(name: str, slot: int, layer: int) -> bool:  # the filter's "zero difference": no direction to compare
        return float(diffs[name][slot, layer].norm()) <= 1e-6 * scale[name]

    undefined = [layer for layer in range(n_layers) if zero("base", slot_of["base"], layer)
                 or zero("post", slot_of["post"], layer)]
    if undefined:
        notes["cosine undefined"] = (f"layers {undefined}: a zero difference of means (harmful and harmless "
                                     "activations identical there) has no direction, so no cosine")
    per_layer = []
    for layer in range(n_layers):
        none = layer in undefined
        entry = {
            "layer": layer,
            "base_accuracy": acc["base", layer],
            "post_accuracy": acc["post", layer],
            "cosine_base_post": None if none else float(cos[layer]),
            "cosine_base_post_ci_low": None if none else float(cos_low[layer]),
            "cosine_base_post_ci_high": None if none else float(cos_high[layer]),
            "cosine_base_post_null": None if none else float(cos_null[layer]),
            **transfer_fields(moved, layer),
            **{key: float(values[layer]) for key, values in probe_stats.items()},
            **{f"{name}_ablation_score": _finite(by[name][layer, pos_of[name]].bypass) for name in ("base", "post")},
            **{f"{name}_addition_score": _finite(by[name][layer, pos_of[name]].induce) for name in ("base", "post")},
            **{f"{name}_ablation_kl": _finite(by[name][layer, pos_of[name]].kl) for name in ("base", "post")},
            **({} if own else {f"cosine_base_post_at_{p}": None if zero("base", i, layer) or zero("post", i, layer)
                               else float(torch.nn.functional.cosine_similarity(diffs["base"][i, layer],
                                                                                diffs["post"][i, layer], dim=0))
                               for i, p in enumerate(offsets)}),
        }
        per_layer.append(entry)
    matrices = {}
    for name, s in sel.items():
        matrices[f"candidates_{name}"] = {
            "rows": [str(p) for p in offsets_of[name]], "cols": list(range(n_layers)),
            "values": [[_finite(by[name][layer, p].bypass) for layer in range(n_layers)] for p in offsets_of[name]],
            "notes": [[by[name][layer, p].discarded for layer in range(n_layers)] for p in offsets_of[name]],
            "zmin": None, "zmax": None, "colorscale": "RdBu", "xaxis": "layer", "yaxis": "post-instruction position",
            "title": f"Refusal score on harmful prompts when each candidate is ablated ({name})",
        }
    tables = {
        "steering": {
            "title": "Steering with the refusal directions (held-out requests)",
            "columns": ["model", "intervention", "direction from", "harmful refusal rate", "harmless refusal rate",
                        "harmless KL (nats)", "harmful example", "harmless example", "harmful rate 95% CI",
                        "harmless rate 95% CI", "cross-entropy of plain held-out text (nats/token)"],
            "rows": steering_rows,
        },
        "refusal_rates": {
            "title": "Refusal rate on held-out requests", "columns": ["model", "condition", "prompts", "refusal rate"],
            "rows": bars, "x": "condition", "y": "refusal rate", "color": "prompts", "facet": "model",
            "yrange": [0, 1.1],
        },
    }
    rows = {(r[0], r[1]): r for r in steering_rows}
    own_abl, own_add, base_line = rows["post", "ablate post direction"], rows["post", "add post direction"], rows["post", "baseline"]
    steered = (f"Post model, layer {sel['post'].selected.layer} position {pos}: refusal on held-out harmful requests "
               if qualifies["post"] else
               f"No refusal direction qualifies: none of the post model's candidates passes Arditi et al.'s filters"
               + (f"; the post model does not refuse ({base_line[3]:.2f} of held-out harmful requests refused, "
                  f"validation refusal score {sel['post'].baseline['harmful']:.2f} log-odds)"
                  if base_line[3] < 0.5 else "")
               + f". Not a refusal direction by those criteria, the candidate at layer {sel['post'].selected.layer} "
                 f"position {pos} (largest addition score) gives: refusal on held-out harmful requests ")
    null_abl, null_add = rows["post", "ablate random direction (null)"], rows["post", "add random direction (null)"]
    own_sub, null_sub = rows["post", "subtract post direction"], rows["post", "subtract random direction (null)"]

    def ci(row, col):  # "0.97 [0.90, 1.00]": a rate and its 95% Wilson interval over requests
        lo, hi = row[8 if col == 3 else 9]
        return f"{row[col]:.2f} [{lo:.2f}, {hi:.2f}]"

    readings = {
        "summary": (
            steered + f"{ci(base_line, 3)} → {ci(own_abl, 3)} under ablation (harmless KL {own_abl[5]:.3f} nats); adding "
            f"it makes {ci(own_add, 4)} of harmless requests refused (baseline {ci(base_line, 4)}); subtracting it "
            f"at its layer, {ci(own_sub, 3)} of harmful requests refused. Cross-entropy of plain held-out text "
            f"(true/false statements): {base_line[10]:.3f} → {own_abl[10]:.3f} nats/token under ablation. A random direction of the same "
            f"norm (the null): ablation {null_abl[3]:.2f} (cross-entropy {null_abl[10]:.3f}), addition "
            f"{null_add[4]:.2f}, subtraction {null_sub[3]:.2f}. Base direction on "
            f"post: ablation {ci(rows['post', 'ablate base direction'], 3)}, addition "
            f"{ci(rows['post', 'add base direction'], 4)}. Intervals: 95% Wilson over held-out requests."
        ),
        "cosine": ("Cosine between the base and post difference-of-means refusal candidates at each layer, "
                   + (f"each at its own selected position (base in its own template at {pos_of['base']}, post at "
                      f"{pos})" if own else "at each post-instruction position")
                   + ": near 1 means post-training kept the base model's harm direction. The selected position "
                     "carries a 95% bootstrap band (direction requests resampled, both candidates refitted); grey: "
                     "the 95th percentile of |cosine| between the post candidate and random directions."),
        "scores": "Mean refusal score (log-odds of a refusal first token) on validation harmful prompts when the layer's "
                  "candidate is ablated from every layer, and on harmless prompts when it is added at that layer.",
        "accuracy": "Held-out accuracy of a logistic probe separating harmful from harmless requests at each layer, "
                    "and of each model's probe applied to the other model: with its own threshold, as AUROC "
                    "(threshold-free) and with the threshold through the other model's mean training activation.",
        "refusal_rates": "Share of held-out requests refused (phrase match), per model, without intervention, with each "
                         "direction ablated, added at its layer, and subtracted at its layer (harmful requests only); "
                         "the null rows do the same with a random direction of the post direction's norm. The "
                         "steering table gives each rate's 95% Wilson interval over requests, and the cross-entropy "
                         "of plain held-out text (the true/false statements) without intervention and with the "
                         "model's own or the random direction ablated.",
    }
    for name in sel:
        readings[f"candidates_{name}"] = ("Lower is better for selection: the candidate whose ablation most lowers "
                                          "refusal on harmful prompts is chosen among those that pass the filters. "
                                          "Blank cells were not scored: a filter (layer, induce < 0, KL) had "
                                          "already discarded the candidate (reason in the cell's hover text).")
    plots = [
        {"title": "Harmful vs harmless: probe accuracy by layer", "reading": "accuracy", "yrange": [0, 1.02],
         "xaxis": "layer (input of block)", "yaxis": "held-out accuracy",
         "series": {"base_accuracy": "base", "post_accuracy": "post", "transfer_base_to_post": "base probe → post",
                    "transfer_post_to_base": "post probe → base",
                    "transfer_base_to_post_auroc": "base probe → post (AUROC)",
                    "transfer_post_to_base_auroc": "post probe → base (AUROC)",
                    "transfer_base_to_post_centred": "base probe → post (target-centred)",
                    "transfer_post_to_base_centred": "post probe → base (target-centred)"},
         "nulls": {"base_accuracy_null": "base, shuffled labels", "post_accuracy_null": "post, shuffled labels"}},
        {"title": "Same refusal direction in both models?", "reading": "cosine", "yrange": [-1.05, 1.05],
         "xaxis": "layer (input of block)", "yaxis": "cosine",
         "series": {"cosine_base_post": (f"base at {pos_of['base']}, post at {pos} (selected; 95% bootstrap band)" if own
                                         else f"position {pos} (selected; 95% bootstrap band)"),
                    **({} if own else {f"cosine_base_post_at_{p}": f"position {p}" for p in offsets if p != pos})},
         "nulls": {"cosine_base_post_null": "random directions (95th percentile |cosine|)"}},
        {"title": "Refusal score under ablation / addition of each layer's candidate", "reading": "scores",
         "xaxis": "layer (input of block)", "yaxis": "refusal score (log-odds)",
         "series": {"post_ablation_score": "post, ablated (harmful)", "base_ablation_score": "base, ablated (harmful)",
                    "post_addition_score": "post, added (harmless)", "base_addition_score": "base, added (harmless)"}},
    ]
    lap("probes and tables")
    setup = {
        "datasets": " + ".join(data["datasets"]), "sources": data["sources"], "format": ("post model's chat template on post; the base template on base (Du et al. 2025): "
                   + repr(base_template) if own else "post model's chat template on both models"),
        "site": "resid_pre", "post-instruction positions": offsets,
        **({"base post-instruction positions": offsets_of["base"]} if own else {}),
        "selected": {name: {"layer": s.selected.layer, "position": s.selected.position} for name, s in sel.items()},
        "refusal tokens": [pair.tokenizer.decode([i]) for i in ids],
        **({"base refusal tokens": [pair.tokenizer.decode([i]) for i in ids_of["base"]]} if own else {}),
        "KL threshold": kl_threshold,
        "layer filter": (f"l >= int({n_layers} x {1 - prune_layers:g}) = {int(n_layers * (1 - prune_layers))} discarded"
                         + ("" if prune_layers == 0.2 else
                            f" (prune_layers {prune_layers:g}; Arditi et al. use 0.2"
                            + (", which on this 6-layer organism discards a third of its layers, the one its "
                               "refusal direction lives in included)" if is_organism else ")"))),
        "validation requests": {"harmful": len(harm_val), "harmless": len(safe_val)},
        "direction requests": {"harmful": len(harm_dir), "harmless": len(safe_dir)},
        "prompt filter (Arditi et al. filter_train/filter_val)": filtered,
        "stage wall time (s)": stages,
        "refusal direction qualifies": dict(qualifies),
        "candidates": {name: _discard_counts(apply_filters(scores[name][0], diffs[name], offsets_of[name], n_layers,
                                                           kl_threshold=kl_threshold, prune_layers=prune_layers))
                       for name in ("base", "post")},
        "n_train": len(harm_dir) + len(safe_dir), "n_validation": len(harm_val) + len(safe_val),
        "n_test": len(test["harmful"]) + len(test["harmless"]), **notes,
    }
    directions = {f"{name}/refusal": s.diffs[s.positions.index(s.selected.position)].float() for name, s in sel.items()}
    return ConceptResult("refusal", list(range(n_layers)), per_layer, long_rows(per_layer), matrices, directions,
                         readings, setup, plots, tables, vectors=vec)


def _run(ctx, *, base_template: str | None = None, data: str | None = None, **options) -> ConceptResult:
    template = DU_BASE_TEMPLATE if base_template == "du" else base_template
    return refusal_section(ctx.pair, is_organism=ctx.is_organism, progress=ctx.progress,
                           data=user_data(ctx, "refusal", data, options["seed"]), base_template=template, **options)


SECTION = Section("refusal", _run, help="each model's refusal direction (Arditi et al. 2024), base vs post, and "
                                        "what ablating or adding it does", params=(
    Param("kl_threshold", float, 0.1, "Arditi et al.'s filter: largest next-token KL (nats) on harmless requests "
                                      "a candidate's ablation may cause", low=0),
    Param("prune_layers", float, None, "share of the last layers the filter discards (default 0.2, Arditi et "
                                       f"al.'s; {ORGANISM_PRUNE_LAYERS} on the bundled organism)", low=0, high=0.99),
    Param("filter_prompts", bool, True, "Arditi et al.'s filter of the requests by the sign of post's refusal "
                                        "score"),
    Param("base_template", str, None, "template the base model reads requests in: 'du' for Du et al. 2025's "
                                      "'User: ...\nAssistant:', or a Jinja chat template (default: post's)"),
    Param("max_new_tokens", int, 16, "tokens generated per request when refusal is judged", low=1),
    Param("batch_size", int, 32, "prompts per forward pass", low=1),
    Param("generation_batch_size", int, 128, "prompts per steered generation batch", low=1),
    Param("seed", int, 0, "seed of the nulls and the bootstrap"),
    data_param("refusal", "your requests: two files, harmful,harmless (instruction JSON, JSONL, CSV), each "
                             "split 75/25"),
))
