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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from ..activations import Activations, prompts_digest
from ..collection import collect
from ..datasets import PromptSet, load
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ..tokens import Tokenized, end_of_turn_tokens, tokenize
from ._section import (Param, Section, data_param, layers_param, parse_layers, provides, seed_param, tokens_for,
                       user_data)

__all__ = ["DU_BASE_TEMPLATE", "ORGANISM_PRUNE_LAYERS", "SECTION", "arditi_filter", "refusal_section"]

log = logging.getLogger(__name__)

#: Du et al. 2025's base-model template (their ``LLAMA3_BASE_TEMPLATE``, ``User: {instruction}\nAssistant:``) as
#: a Jinja chat template, for ``refusal_section(base_template=...)``.
DU_BASE_TEMPLATE = "{% for message in messages %}User: {{ message['content'] }}\nAssistant:{% endfor %}"

#: First words of refusals for pairs other than the organism (Arditi et al. score "I" and "As" for most chat models).
GENERIC_REFUSAL_STARTS = ("I", "As", "Sorry", "Unfortunately")


@dataclass(frozen=True)
class Requests:
    """The section's prompt sets, each formatted and tokenised once and read by every pass.

    Attributes:
        sets: ``(model, kind, split) -> Tokenized``, ``model`` in ``("base", "post")``, ``kind`` in
            ``("harmful", "harmless")``, ``split`` in ``("train", "test")``: the requests in the post model's
            chat template, or for the base model in ``base_template`` where one is given; one object for
            both models where they read the same tokens (:func:`~interp.compare._section.tokens_for`).
        plain: per model, plain held-out text (the true/false statements) for the loss check.
        refusal_ids: per model, the first tokens of refusals (the base template ends mid-line, so the base
            model's also hold their spaced forms).
        offsets: per model, the post-instruction offsets of its template.
        datasets: the harmful and harmless sets' names; ``sources``: where they were read from.
        base_template: the base model's template, or None (the post model's).
    """

    sets: dict[tuple[str, str, str], Tokenized]
    plain: dict[str, Tokenized]
    refusal_ids: dict[str, list[int]]
    offsets: dict[str, list[int]]
    datasets: tuple[str, str]
    sources: list[str]
    base_template: str | None = None

    def __call__(self, model: str, kind: str, split: str) -> Tokenized:
        return self.sets[model, kind, split]

    @property
    def own(self) -> bool:
        """Whether the base model reads its own template (at its own positions)."""
        return self.base_template is not None


def requests(pair: ModelPair, is_organism: bool, data=None, base_template: str | None = None) -> Requests:
    """Load, format and tokenise the section's requests (see :class:`Requests`)."""
    from steering.metrics import refusal_token_ids
    from steering.refusal import post_instruction_offsets

    tok = pair.tokenizer
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
    loader = data.load if data is not None and (not is_organism or provides(data, "harmful")) else load
    base_pair = pair if base_template is None else replace(pair, chat_template=base_template)
    sets, sources = {}, set()
    for kind, name in zip(("harmful", "harmless"), names):
        for split in ("train", "test"):
            rows = loader(name, split)
            sources.add(rows.source)
            toks = tokens_for(pair, pair.format(rows, "chat").texts)
            sets["post", kind, split] = toks["post"]
            sets["base", kind, split] = (toks["base"] if base_template is None else
                                         tokenize(pair.base, base_pair.format(rows, "chat").texts))
    # plain held-out text for the loss check (Arditi et al. use Pile and Alpaca text): true/false statements
    plain = tokens_for(pair, loader("organism/truth" if is_organism else "truth", "test").texts)
    offsets = post_instruction_offsets(tok, pair.chat_template)
    return Requests(sets, plain,
                    {"post": ids, "base": ids + [i for i in spaced if i not in ids] if base_template else ids},
                    {"post": offsets,
                     "base": post_instruction_offsets(tok, base_template) if base_template else offsets},
                    names, sorted(sources), base_template)


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


def _rates(model, prompts: dict[str, Tokenized], interventions, stop_tokens, max_new_tokens: int, batch_size: int,
           clean: torch.Tensor | None = None) -> dict:
    """Refusal rates of the greedy replies to ``prompts`` (``{"harmful": ..., "harmless": ...}``), three
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
    texts = prompts[kinds[0]]
    for kind in kinds[1:]:
        texts = texts + prompts[kind]
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


def arditi_filter(model, requests: dict[str, Sequence[str] | Tokenized], refusal_ids, *, enabled: bool = True,
                  batch_size: int = 32) -> tuple[dict, dict[str, str]]:
    """Arditi et al.'s ``filter_train``/``filter_val`` (``run_pipeline.filter_data``) on the direction and
    validation rows of :func:`_split`.

    Keeps the harmful requests ``model`` refuses (refusal score > 0, :func:`steering.metrics.refusal_score`) and
    the harmless ones it does not (score < 0). A kind the filter would leave with fewer than
    :data:`MIN_FILTERED` direction or validation requests is kept whole, and its note says so.

    Args:
        model: the model whose refusal decides (the post model, for both models' directions).
        requests: ``{"harmful": ..., "harmless": ...}``, chat-formatted training requests (texts or
            :class:`~interp.tokens.Tokenized`).
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
                    data=None, generation_batch_size: int = 128, seed: int = 0,
                    candidate_layers: Sequence[int] | None = None) -> ConceptResult:
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

    ``candidate_layers``: the layers whose candidates are scored and may be selected (default all; on a large
    model scoring is most of the section's time); the per-layer probes and cosines still cover every layer,
    and the other layers' scores are blank with the reason.

    ``base_template``: a Jinja chat template the base model reads the requests in (e.g.
    :data:`DU_BASE_TEMPLATE`, as Du et al. 2025 build base models' refusal directions); default: the post
    model's chat template on both models.

    Each prompt set is tokenised once (:func:`requests`) and every pass reads those tokens: the prompt
    filter, the difference of means, candidate scoring, steered generation, the loss check and the probes.
    """
    if prune_layers is None:
        prune_layers = ORGANISM_PRUNE_LAYERS if is_organism else 0.2
    if candidate_layers is not None:
        from steering.refusal import _layer_set

        candidate_layers = sorted(_layer_set(candidate_layers, pair.n_layers))
    _check_filter(pair.n_layers, prune_layers, candidate_layers)
    timer = _Stages()
    req = requests(pair, is_organism, data, base_template)
    run = _Run(pair, req, kl_threshold, prune_layers, batch_size, candidate_layers)
    run.masks, run.filtered = arditi_filter(pair.post, {k: req("post", k, "train") for k in KINDS},
                                            req.refusal_ids["post"], enabled=filter_prompts, batch_size=batch_size)
    timer.lap("prompt filter")
    run.directions()
    timer.lap("difference of means")
    run.select(progress)
    timer.lap("candidate scoring")
    steering_rows, bars = _steer(run, seed, max_new_tokens, generation_batch_size)
    timer.lap("steered generation")
    per_layer = _per_layer(run, seed)
    result = _result(run, per_layer, steering_rows, bars, is_organism)
    timer.lap("probes and tables")
    result.setup["stage wall time (s)"] = timer.stages
    return result


KINDS = ("harmful", "harmless")


class _Stages:
    """Wall time of each stage, for the setup and the log."""

    def __init__(self):
        self.stages, self.t0 = {}, time.perf_counter()

    def lap(self, stage: str) -> None:
        self.stages[stage] = round(time.perf_counter() - self.t0, 1)
        log.info("refusal: %s %.1f s", stage, self.stages[stage])
        self.t0 = time.perf_counter()


@dataclass
class _Run:
    """What the stages of :func:`refusal_section` find, in the order they find it."""

    pair: ModelPair
    req: Requests
    kl_threshold: float
    prune_layers: float
    batch_size: int
    candidate_layers: list[int] | None = None
    """the layers whose candidates may be selected (None: all)"""
    masks: dict = field(default_factory=dict)
    """``masks[kind]``: the direction rows kept by the prompt filter; ``masks[kind, "val"]`` the validation rows"""
    filtered: dict = field(default_factory=dict)
    train_rows: dict = field(default_factory=dict)
    """``train_rows[model][kind]``: ``[n, pos, layer, d]`` every training request at every post-instruction offset"""
    diffs: dict = field(default_factory=dict)
    """``diffs[model]``: ``[pos, layer, d]`` the difference-of-means candidates"""
    scores: dict = field(default_factory=dict)
    sel: dict = field(default_factory=dict)
    qualifies: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    vec: dict = field(default_factory=dict)
    _norms: dict = field(default_factory=dict, repr=False)
    """per model, the candidates' norms ``[pos, layer]`` (:meth:`zero`)"""

    def val(self, name: str) -> tuple[Tokenized, Tokenized]:
        """(harmful, harmless) validation requests kept by the filter, in ``name``'s own format."""
        return tuple(self.req(name, kind, "train").select(self.masks[kind, "val"]) for kind in KINDS)

    def directions(self) -> None:
        """One pass over the training requests per model reads every layer at every post-instruction position:
        the direction rows give the candidates (Arditi et al.'s difference of means), and all of them, at the
        position selected later, are the probe's training rows, so nothing is run twice."""
        from steering.refusal import offset_activations

        for name, model in self.pair:
            self.train_rows[name] = {kind: offset_activations(model, self.req(name, kind, "train"),
                                                              self.req.offsets[name], batch_size=self.batch_size)
                                     for kind in KINDS}
            mean = {kind: rows[self.masks[kind]].double().mean(0) for kind, rows in self.train_rows[name].items()}
            self.diffs[name] = mean["harmful"] - mean["harmless"]  # [pos, layer, d] as mean_activations gives

    def filters(self, name: str):
        """Every candidate of ``name`` with Arditi et al.'s filters applied to its scores so far."""
        from steering.refusal import apply_filters

        return apply_filters(self.scores[name][0], self.diffs[name], self.req.offsets[name], self.pair.n_layers,
                             kl_threshold=self.kl_threshold, prune_layers=self.prune_layers,
                             candidate_layers=self.candidate_layers)

    def select(self, progress: bool) -> None:
        """Score the candidates (pruned: only what can change the selection is measured, the rest is NaN with
        the reason; the selection is the exhaustive one's) and select each model's direction; a model none of
        whose candidates qualifies gets the fallback :meth:`_fallback_post` or :meth:`_fallback_base` says."""
        from steering.refusal import score_candidates, select_direction

        self.scores = {name: score_candidates(model, self.diffs[name], self.req.offsets[name], *self.val(name),
                                              self.req.refusal_ids[name], prune=True,
                                              kl_threshold=self.kl_threshold, prune_layers=self.prune_layers,
                                              batch_size=self.batch_size, progress=progress,
                                              candidate_layers=self.candidate_layers)
                       for name, model in self.pair}
        for name in ("post", "base"):
            try:  # the scores were pruned under these filters: no forward pass
                self.sel[name] = select_direction(getattr(self.pair, name), self.diffs[name], self.req.offsets[name],
                                                  *self.val(name), self.req.refusal_ids[name],
                                                  scores=self.scores[name], kl_threshold=self.kl_threshold,
                                                  prune_layers=self.prune_layers,
                                                  candidate_layers=self.candidate_layers)
                self.qualifies[name] = True
                self.notes[f"{name} selection"] = "own candidates (Arditi et al. filters)"
            except ValueError:
                self.qualifies[name] = False
        if not self.qualifies["post"]:
            self._fallback_post()
        if not self.qualifies["base"]:
            self._fallback_base()
        self.vec = {name: replace(s.vector, meta={**s.vector.meta, "model": name,
                                                  "source": self.pair.info()[name]["name"]})
                    for name, s in self.sel.items()}

    def _at(self, name: str, layer: int, position: int):
        """A non-qualifying 'selection' of the candidate at (layer, position), fully scored, with its reasons."""
        from steering.refusal import RefusalSelection, score_candidates

        self.scores[name] = score_candidates(getattr(self.pair, name), self.diffs[name], self.req.offsets[name],
                                             *self.val(name), self.req.refusal_ids[name], scores=self.scores[name],
                                             only=[(layer, position)], batch_size=self.batch_size)
        cands = self.filters(name)
        chosen = next(c for c in cands if c.layer == layer and c.position == position)
        return RefusalSelection(self.diffs[name], tuple(self.req.offsets[name]), cands, chosen, self.scores[name][1])

    def _fallback_post(self) -> None:
        """No post candidate passes the filters: there is no refusal direction by Arditi et al.'s criteria. The
        steering rows still need a direction; take the candidate whose addition raises the refusal score most."""
        cands = self.filters("post")
        slot = {p: i for i, p in enumerate(self.req.offsets["post"])}
        allowed = set(range(self.pair.n_layers) if self.candidate_layers is None else self.candidate_layers)
        nonzero = [c for c in cands if c.layer in allowed and not self.zero("post", slot[c.position], c.layer)]
        if not nonzero:
            raise ValueError("every refusal candidate of the post model is a zero difference of means: harmful "
                             "and harmless requests give the same activations, so there is no direction to take")
        # among the candidates with a direction, the one whose addition raises the refusal score most (those
        # whose induce score the pruned scoring skipped come last)
        best = max(nonzero, key=lambda c: -math.inf if math.isnan(c.induce) else c.induce)
        self.sel["post"] = self._at("post", best.layer, best.position)
        self.notes["post selection"] = (
            f"NO REFUSAL DIRECTION: none of the post model's {len(cands)} candidates passes Arditi et al.'s filters "
            f"({_discard_counts(cands)}); the steering rows use the candidate whose addition raises the refusal "
            f"score most (layer {best.layer}, position {best.position}, score {best.induce:.2f}), which is not a "
            "refusal direction by Arditi et al.'s criteria")
        log.warning("refusal: %s", self.notes["post selection"])

    def _fallback_base(self) -> None:
        """No base candidate passes (a base model that never refuses): take the post model's layer and position
        (in its own template: its last token, where it would start its reply)."""
        p_sel = self.sel["post"].selected
        b_pos = self.req.offsets["base"][-1] if self.req.own else p_sel.position
        self.sel["base"] = self._at("base", p_sel.layer, b_pos)
        self.notes["base selection"] = (
            f"no base candidate passed the filters ({_discard_counts(self.sel['base'].candidates)}); the base "
            f"direction is its difference of means at the post model's layer {p_sel.layer} and "
            + (f"its own template's last position ({b_pos})" if self.req.own else f"position {p_sel.position}")
            + ("" if self.qualifies["post"] else ", itself no refusal direction"))
        log.info("refusal: %s", self.notes["base selection"])

    @property
    def pos_of(self) -> dict[str, int]:
        """Each model's selected post-instruction offset (the post model's for both, unless base reads its own
        template)."""
        pos = self.sel["post"].selected.position
        return {"post": pos, "base": self.sel["base"].selected.position if self.req.own else pos}

    @property
    def slot_of(self) -> dict[str, int]:
        """Index of :attr:`pos_of` among each model's offsets."""
        return {name: self.req.offsets[name].index(p) for name, p in self.pos_of.items()}

    def zero(self, name: str, slot: int, layer: int) -> bool:
        """The filter's "zero difference": no direction to compare."""
        norms = self._norms.get(name)
        if norms is None:  # [pos, layer], once per model
            norms = self._norms[name] = self.diffs[name].norm(dim=-1)
        return float(norms[slot, layer]) <= 1e-6 * float(norms.max())


def _steer(run: _Run, seed: int, max_new_tokens: int, batch_size: int) -> tuple[list, list]:
    """Steering on held-out requests: baseline, ablation, addition and subtraction with each direction, and on
    post a random direction of the post direction's norm at its layer (the null).

    Returns:
        ``(rows, bars)``: the steering table's rows and the refusal-rate bars.
    """
    from probes.stats import equal_norm_random
    from steering import Ablate, Add
    from steering.metrics import heldout_loss

    vec = run.vec
    g = torch.Generator().manual_seed(seed)
    random_vec = replace(vec["post"], vectors=equal_norm_random(vec["post"].vectors[0].double(), g)[None],
                         meta={**vec["post"].meta, "method": "random", "seed": seed})
    # the chat's end-of-turn token (from the post model's template, which both models are prompted with): a reply
    # ends there, and the base model's tokenizer may have no template to name it
    stop = list(end_of_turn_tokens(run.pair.tokenizer))
    rows, bars = [], []
    for target, model in run.pair:
        conditions = [("baseline", "none", None)]
        for source in ("post", "base") if target == "post" else ("base", "post"):
            conditions += [(f"ablate {source} direction", source, Ablate(vec[source])),
                           (f"add {source} direction", source, Add(vec[source])),
                           (f"subtract {source} direction", source, Add(vec[source], scale=-vec[source].scale))]
        if target == "post":
            conditions += [("ablate random direction (null)", "random", Ablate(random_vec)),
                           ("add random direction (null)", "random", Add(random_vec)),
                           ("subtract random direction (null)", "random", Add(random_vec, scale=-random_vec.scale))]
        test = {kind: run.req(target, kind, "test") for kind in KINDS}
        clean = None
        for label, source, iv in conditions:  # the baseline comes first: its first step is the clean distribution
            # activation subtraction is Arditi et al.'s test on harmful requests only
            kinds = {"harmful": test["harmful"]} if label.startswith("subtract") else test
            rates = _rates(model, kinds, iv, stop, max_new_tokens, batch_size, clean=clean)
            if iv is None:
                clean, kl = rates["harmless_logprobs"], 0.0
            else:
                kl = rates.get("harmless_kl")
            # Arditi et al.'s check that ablation leaves other behaviour intact (their Pile/Alpaca cross-entropy):
            # the cross-entropy of plain held-out text, here the true/false statements
            ce = (heldout_loss(model, run.req.plain[target], iv, batch_size=run.batch_size)
                  if iv is None or label in (f"ablate {target} direction", "ablate random direction (null)") else None)
            rows.append([target, label, source, rates["harmful"], rates.get("harmless"), kl,
                         rates["harmful_examples"][0], (rates.get("harmless_examples") or [None])[0],
                         rates["harmful_ci"], rates.get("harmless_ci"), ce])
            bars += [[target, label, kind, rates[kind]] for kind in kinds]
    return rows, bars


def _cosines(run: _Run, seed: int) -> dict[str, torch.Tensor]:
    """Per layer ``[n_layers]``: the cosine of the base and post candidates at each model's selected position,
    its 95% interval (the direction rows resampled, the same requests for both models, both candidates
    refitted) and its null (how close random directions come to the post candidate: the 95th percentile of
    |cosine|)."""
    from probes.stats import direction_cosine_ci, random_directions

    slot_of = run.slot_of
    post = run.diffs["post"][slot_of["post"]]
    cos = torch.nn.functional.cosine_similarity(run.diffs["base"][slot_of["base"]], post, dim=-1)
    at_slot = {name: torch.cat([run.train_rows[name][kind][run.masks[kind]][:, slot_of[name]] for kind in KINDS])
               for name, _ in run.pair}
    is_harmful = [1] * int(run.masks["harmful"].sum()) + [0] * int(run.masks["harmless"].sum())
    low, high = direction_cosine_ci(at_slot["base"], at_slot["post"], is_harmful, seed=seed)
    null = torch.stack([torch.nn.functional.cosine_similarity(r, post, dim=-1).abs()
                        for r in random_directions(100, tuple(post.shape), seed=seed)]).quantile(0.95, dim=0)
    return {"cosine_base_post": cos, "cosine_base_post_ci_low": low, "cosine_base_post_ci_high": high,
            "cosine_base_post_null": null}


def _probe_sets(run: _Run) -> dict:
    """``{"train"|"test": {model: Activations}}`` of ``resid_pre`` at each model's selected position, harmless
    (label 0) then harmful (1): the training rows from the direction pass, the test rows collected from the
    section's tokens."""
    pos_of, slot_of = run.pos_of, run.slot_of
    sets = {"test": {}, "train": {}}
    for name, model in run.pair:
        test = {kind: run.req(name, kind, "test") for kind in ("harmless", "harmful")}
        labelled = PromptSet.from_classes("refusal/test", {kind: t.texts for kind, t in test.items()})
        sets["test"][name] = collect(model, labelled, "resid_pre", positions=pos_of[name], batch_size=run.batch_size,
                                     progress=False, tokens=test["harmless"] + test["harmful"])
        train = {kind: run.req(name, kind, "train") for kind in ("harmless", "harmful")}
        sets["train"][name] = _as_activations(
            sets["test"][name], PromptSet.from_classes("refusal/train", {k: t.texts for k, t in train.items()}),
            torch.cat([run.train_rows[name][kind][:, slot_of[name]] for kind in ("harmless", "harmful")]))
    return sets


def _probes(run: _Run, seed: int) -> dict[str, list]:
    """Per layer: a harmful-vs-harmless logistic probe's held-out accuracy per model, its Wilson interval and
    shuffled-label null, and transfer between models three ways (:data:`probes.similarity.TRANSFER_SCORES`: own
    threshold, AUROC, threshold through the target's mean training activation), with Wilson intervals."""
    from probes import sweep
    from probes.similarity import centred_fit, transfer, transfer_fields
    from probes.stats import accuracy_ci, correct, proportion_ci, shuffled_label_accuracy

    sets = _probe_sets(run)
    records, fits = sweep(sets["train"], sets["test"], "resid_pre", methods=("logistic",))
    acc = {(r.model, r.layer): r.accuracy for r in records}
    y_test = sets["test"]["base"].labels
    stats = {}  # per-layer intervals (Wilson, over test requests) and shuffled-label nulls
    for name in ("base", "post"):
        X_te, X_tr = sets["test"][name]["resid_pre"], sets["train"][name]["resid_pre"]
        _, lo, hi = accuracy_ci(fits[name, "logistic"], X_te, y_test)
        null, _ = shuffled_label_accuracy(X_tr, sets["train"][name].labels, X_te, y_test, "logistic", seed=seed,
                                          n_shuffles=3)
        stats.update({f"{name}_accuracy_ci_low": lo, f"{name}_accuracy_ci_high": hi, f"{name}_accuracy_null": null})
    centre = {dst: sets["train"][dst]["resid_pre"].double().mean(0) for dst in ("base", "post")}
    moved = {f"{src}_to_{dst}": transfer(fits[src, "logistic"], sets["test"][dst]["resid_pre"], y_test,
                                         center=centre[dst])
             for src, dst in (("base", "post"), ("post", "base"))}
    for src, dst in (("base", "post"), ("post", "base")):  # Wilson intervals over test requests, as in truth
        fit = fits[src, "logistic"]
        for suffix, f in (("", fit), ("_centred", centred_fit(fit, centre[dst]))):
            lo, hi = proportion_ci(correct(f, sets["test"][dst]["resid_pre"], y_test))
            stats[f"transfer_{src}_to_{dst}{suffix}_ci_low"] = lo
            stats[f"transfer_{src}_to_{dst}{suffix}_ci_high"] = hi
    layers = range(run.pair.n_layers)
    return [{"base_accuracy": acc["base", layer], "post_accuracy": acc["post", layer],
             **transfer_fields(moved, layer), **{key: float(values[layer]) for key, values in stats.items()}}
            for layer in layers]


def _per_layer(run: _Run, seed: int) -> list[dict]:
    """Per layer: cosine of the candidates (:func:`_cosines`), ablation and addition scores, and the probes
    (:func:`_probes`)."""
    cos = _cosines(run, seed)
    probes = _probes(run, seed)
    run.train_rows.clear()
    pos_of, slot_of, offsets = run.pos_of, run.slot_of, run.req.offsets["post"]
    by = {name: {(c.layer, c.position): c for c in s.candidates} for name, s in run.sel.items()}
    undefined = [layer for layer in range(run.pair.n_layers)
                 if run.zero("base", slot_of["base"], layer) or run.zero("post", slot_of["post"], layer)]
    if undefined:
        run.notes["cosine undefined"] = (f"layers {undefined}: a zero difference of means (harmful and harmless "
                                         "activations identical there) has no direction, so no cosine")

    def at(i: int, layer: int):  # the cosine at another post-instruction position
        if run.zero("base", i, layer) or run.zero("post", i, layer):
            return None
        return float(torch.nn.functional.cosine_similarity(run.diffs["base"][i, layer], run.diffs["post"][i, layer],
                                                           dim=0))

    per_layer = []
    for layer in range(run.pair.n_layers):
        c = {name: by[name][layer, pos_of[name]] for name in ("base", "post")}
        entry = {"layer": layer, **{k: v for k, v in probes[layer].items() if k.endswith("_accuracy")},
                 **{key: None if layer in undefined else float(values[layer]) for key, values in cos.items()},
                 **{k: v for k, v in probes[layer].items() if not k.endswith("_accuracy")},
                 **{f"{name}_ablation_score": _finite(c[name].bypass) for name in ("base", "post")},
                 **{f"{name}_addition_score": _finite(c[name].induce) for name in ("base", "post")},
                 **{f"{name}_ablation_kl": _finite(c[name].kl) for name in ("base", "post")},
                 **({} if run.req.own else {f"cosine_base_post_at_{p}": at(i, layer) for i, p in enumerate(offsets)})}
        per_layer.append(entry)
    return per_layer


def _result(run: _Run, per_layer: list[dict], steering_rows: list, bars: list, is_organism: bool) -> ConceptResult:
    """The section's :class:`~interp.report.ConceptResult`: figures, tables, readings and setup."""
    n_layers, sel = run.pair.n_layers, run.sel
    matrices = {f"candidates_{name}": _candidate_matrix(run, name) for name in sel}
    # one colour scale for both models' maps, centred on 0 (RdBu), so the same colour is the same score
    span = max([abs(v) for m in matrices.values() for row in m["values"] for v in row if v is not None] or [1.0])
    for m in matrices.values():
        m["zmin"], m["zmax"] = -span, span
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
    by_row = {(r[0], r[1]): r for r in steering_rows}
    readings = {"summary": _summary(run, by_row), "headline": _headline(run, by_row), "cosine": _cosine_reading(run),
                **READINGS}
    for name in sel:
        readings[f"candidates_{name}"] = CANDIDATES_READING
    directions = {f"{name}/refusal": s.diffs[s.positions.index(s.selected.position)].float() for name, s in sel.items()}
    return ConceptResult("refusal", list(range(n_layers)), per_layer, long_rows(per_layer), matrices, directions,
                         readings, _setup(run, is_organism), _plots(run),
                         tables, vectors=run.vec)


def _candidate_matrix(run: _Run, name: str) -> dict:
    """The refusal score under ablation of every candidate of ``name`` (position x layer), blank where unscored."""
    by = {(c.layer, c.position): c for c in run.sel[name].candidates}
    offsets, layers = run.req.offsets[name], range(run.pair.n_layers)
    chosen = run.sel[name].selected
    return {"rows": [str(p) for p in offsets], "cols": list(layers),
            "values": [[_finite(by[layer, p].bypass) for layer in layers] for p in offsets],
            "notes": [[by[layer, p].discarded for layer in layers] for p in offsets],
            "zmin": None, "zmax": None, "colorscale": "RdBu", "xaxis": "layer", "yaxis": "post-instruction position",
            "zlabel": "refusal score (log-odds)",
            "marks": [[str(chosen.position), chosen.layer, "selected" if run.qualifies[name] else
                       "steered with (no candidate qualifies)"]],
            "title": f"Refusal score on harmful prompts when each candidate is ablated ({name})"}


def _summary(run: _Run, rows: dict) -> str:
    """The section's headline: the post direction's steering effects with intervals, and the nulls'."""
    sel, pos = run.sel, run.pos_of["post"]
    own_abl, own_add, base_line = rows["post", "ablate post direction"], rows["post", "add post direction"], rows[
        "post", "baseline"]
    steered = (f"Post model, layer {sel['post'].selected.layer} position {pos}: refusal on held-out harmful requests "
               if run.qualifies["post"] else
               "No refusal direction qualifies: none of the post model's candidates passes Arditi et al.'s filters"
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

    return (steered + f"{ci(base_line, 3)} → {ci(own_abl, 3)} under ablation (harmless KL {own_abl[5]:.3f} nats); "
            f"adding it makes {ci(own_add, 4)} of harmless requests refused (baseline {ci(base_line, 4)}); "
            f"subtracting it at its layer, {ci(own_sub, 3)} of harmful requests refused. Cross-entropy of plain "
            f"held-out text (true/false statements): {base_line[10]:.3f} → {own_abl[10]:.3f} nats/token under "
            f"ablation. A random direction of the same norm (the null): ablation {null_abl[3]:.2f} (cross-entropy "
            f"{null_abl[10]:.3f}), addition {null_add[4]:.2f}, subtraction {null_sub[3]:.2f}. Base direction on "
            f"post: ablation {ci(rows['post', 'ablate base direction'], 3)}, addition "
            f"{ci(rows['post', 'add base direction'], 4)}. Intervals: 95% Wilson over held-out requests.")


def _headline(run: _Run, rows: dict) -> str:
    """The report's one line for the section: what ablating the post direction does to refusal of held-out harmful
    requests, and whether the drop survives its interval (the ablated rate's Wilson interval below the baseline's)
    and the null (a random direction of the same norm, ablated, leaves refusal above that interval)."""
    if not run.qualifies["post"]:
        return ("No refusal direction qualifies: none of the post model's candidates passes Arditi et al.'s "
                "filters (the summary gives the best candidate's effects).")
    base_line, own = rows["post", "baseline"], rows["post", "ablate post direction"]
    null = rows["post", "ablate random direction (null)"]
    (base_low, _), (_, own_high) = base_line[8], own[8]
    below, above_null = own_high < base_low, null[3] > own_high
    verdict = ("the drop survives its interval and the null" if below and above_null else
               "the drop does not survive " + ("its interval (the two intervals overlap)" if not below else
                                               "the null (a random direction lowers refusal as much)"))
    return (f"Ablating the post model's refusal direction (layer {run.sel['post'].selected.layer}) takes refusal of "
            f"held-out harmful requests from {base_line[3]:.2f} [{base_line[8][0]:.2f}, {base_line[8][1]:.2f}] to "
            f"{own[3]:.2f} [{own[8][0]:.2f}, {own[8][1]:.2f}]; a random direction of the same norm, {null[3]:.2f}: "
            f"{verdict}.")


def _cosine_reading(run: _Run) -> str:
    pos_of = run.pos_of
    return ("Cosine between the base and post difference-of-means refusal candidates at each layer, "
            + (f"each at its own selected position (base in its own template at {pos_of['base']}, post at "
               f"{pos_of['post']})" if run.req.own else "at each post-instruction position")
            + ": near 1 means post-training kept the base model's harm direction. The selected position "
              "carries a 95% bootstrap band (direction requests resampled, both candidates refitted); grey: "
              "the 95th percentile of |cosine| between the post candidate and random directions.")


READINGS = {
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
CANDIDATES_READING = ("Lower is better for selection: the candidate whose ablation most lowers refusal on harmful "
                      "prompts is chosen among those that pass the filters. Blank cells were not scored: a filter "
                      "(layer, induce < 0, KL) had already discarded the candidate (reason in the cell's hover "
                      "text).")


def _plots(run: _Run) -> list[dict]:
    pos_of, own = run.pos_of, run.req.own
    pos = pos_of["post"]
    return [
        {"title": "Harmful vs harmless: probe accuracy by layer", "reading": "accuracy", "yrange": [0, 1.02],
         "xaxis": "layer (input of block)", "yaxis": "held-out accuracy",
         "series": {"base_accuracy": "base", "post_accuracy": "post", "transfer_base_to_post": "base probe → post",
                    "transfer_post_to_base": "post probe → base",
                    "transfer_base_to_post_auroc": "base probe → post (AUROC)",
                    "transfer_post_to_base_auroc": "post probe → base (AUROC)",
                    "transfer_base_to_post_centred": "base probe → post (target-centred)",
                    "transfer_post_to_base_centred": "post probe → base (target-centred)"},
         "nulls": {"base_accuracy_null": "base, shuffled labels", "post_accuracy_null": "post, shuffled labels"},
         "panels": [{"keys": ["base_accuracy", "post_accuracy", "base_accuracy_null", "post_accuracy_null"],
                     "yaxis": "held-out accuracy (own probe)", "yrange": [0, 1.02]},
                    {"keys": ["transfer_base_to_post", "transfer_post_to_base", "transfer_base_to_post_centred",
                              "transfer_post_to_base_centred"],
                     "yaxis": "transfer accuracy (other model's probe)", "yrange": [0, 1.02]},
                    {"keys": ["transfer_base_to_post_auroc", "transfer_post_to_base_auroc"],
                     "yaxis": "transfer AUROC", "yrange": [0, 1.02]}]},
        {"title": "Same refusal direction in both models?", "reading": "cosine", "yrange": [-1.05, 1.05],
         "xaxis": "layer (input of block)", "yaxis": "cosine",
         "series": {"cosine_base_post": (f"base at {pos_of['base']}, post at {pos} (selected; 95% bootstrap band)"
                                         if own else f"position {pos} (selected; 95% bootstrap band)"),
                    **({} if own else {f"cosine_base_post_at_{p}": f"position {p}" for p in run.req.offsets["post"]
                                       if p != pos})},
         "nulls": {"cosine_base_post_null": "random directions (95th percentile |cosine|)"}},
        {"title": "Refusal score under ablation / addition of each layer's candidate", "reading": "scores",
         "xaxis": "layer (input of block)", "yaxis": "refusal score (log-odds)",
         "series": {"post_ablation_score": "post, ablated (harmful)", "base_ablation_score": "base, ablated (harmful)",
                    "post_addition_score": "post, added (harmless)", "base_addition_score": "base, added (harmless)"}},
    ]


def _setup(run: _Run, is_organism: bool) -> dict:
    """The section's setup: data, template, positions, filters, selections and counts."""
    req, n_layers, p = run.req, run.pair.n_layers, run.prune_layers
    decode = run.pair.tokenizer.decode
    n = {(kind, which): int(run.masks[kind].sum()) if which == "dir" else int(run.masks[kind, "val"].sum())
         for kind in KINDS for which in ("dir", "val")}
    return {
        "datasets": " + ".join(req.datasets), "sources": req.sources,
        "format": ("post model's chat template on post; the base template on base (Du et al. 2025): "
                   + repr(req.base_template) if req.own else "post model's chat template on both models"),
        "site": "resid_pre", "post-instruction positions": req.offsets["post"],
        **({"base post-instruction positions": req.offsets["base"]} if req.own else {}),
        "selected": {name: {"layer": s.selected.layer, "position": s.selected.position} for name, s in run.sel.items()},
        "refusal tokens": [decode([i]) for i in req.refusal_ids["post"]],
        **({"base refusal tokens": [decode([i]) for i in req.refusal_ids["base"]]} if req.own else {}),
        "KL threshold": run.kl_threshold,
        **({} if run.candidate_layers is None else {"candidate layers": run.candidate_layers}),
        "layer filter": (f"l >= int({n_layers} x {1 - p:g}) = {int(n_layers * (1 - p))} discarded"
                         + ("" if p == 0.2 else
                            f" (prune_layers {p:g}; Arditi et al. use 0.2"
                            + (", which on this 6-layer organism discards a third of its layers, the one its "
                               "refusal direction lives in included)" if is_organism else ")"))),
        "validation requests": {kind: n[kind, "val"] for kind in KINDS},
        "direction requests": {kind: n[kind, "dir"] for kind in KINDS},
        "prompt filter (Arditi et al. filter_train/filter_val)": run.filtered,
        "refusal direction qualifies": dict(run.qualifies),
        "candidates": {name: _discard_counts(run.filters(name)) for name in ("base", "post")},
        "n_train": n["harmful", "dir"] + n["harmless", "dir"],
        "n_validation": n["harmful", "val"] + n["harmless", "val"],
        "n_test": sum(len(req("post", kind, "test")) for kind in KINDS), **run.notes,
    }


def _run(ctx, *, base_template: str | None = None, data: str | None = None, candidate_layers: str | None = None,
         **options) -> ConceptResult:
    template = DU_BASE_TEMPLATE if base_template == "du" else base_template
    return refusal_section(ctx.pair, is_organism=ctx.is_organism, progress=ctx.progress,
                           data=user_data(ctx, "refusal", data, options["seed"]), base_template=template,
                           candidate_layers=None if candidate_layers is None else parse_layers(candidate_layers),
                           **options)


def _check_template(value: str) -> None:
    """``base_template``: ``'du'``, or a Jinja chat template that writes the user's message and something after it
    (the post-instruction tokens the refusal direction is read at), checked before anything boots."""
    if value == "du":
        return
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    marker = "zq marker text zq"
    try:  # rendered as a tokenizer renders a chat template, with the names templates use
        text = ImmutableSandboxedEnvironment().from_string(value).render(
            messages=[{"role": "user", "content": marker}], add_generation_prompt=True, bos_token="", eos_token="")
    except TemplateError as e:
        raise ValueError(f"is not a Jinja chat template that renders ({type(e).__name__}: {e}); give 'du' or a "
                         "template such as " + repr(DU_BASE_TEMPLATE)) from None
    if marker not in text:
        raise ValueError(f"{value!r} does not write the user's message (no {{{{ message['content'] }}}}); give 'du' "
                         f"or a template such as {DU_BASE_TEMPLATE!r}")
    if not text[text.rindex(marker) + len(marker):]:
        raise ValueError(f"{value!r} writes nothing after the user's message, where the refusal direction is read "
                         f"(e.g. 'Assistant:')")


def _check_filter(n_layers: int, prune_layers: float, candidate_layers: Sequence[int] | None) -> None:
    """Arditi et al.'s layer filter (``l < int(n_layers * (1 - prune_layers))``) must leave a layer, and one of
    ``candidate_layers`` (non-negative) when they are given."""
    bound = int(n_layers * (1 - prune_layers))
    if bound < 1:
        raise ValueError(f"prune_layers={prune_layers:g} discards every layer of this {n_layers}-layer model "
                         f"(l >= int({n_layers} x {1 - prune_layers:g}) = {bound}); lower it")
    if candidate_layers is not None and min(candidate_layers) >= bound:
        raise ValueError(f"every candidate layer {list(candidate_layers)} is discarded by the layer filter (l >= "
                         f"{bound}, prune_layers={prune_layers:g}); choose layers below {bound} or lower prune_layers")


def _check_pair(shape, *, prune_layers=None, candidate_layers=None, **_) -> None:
    """Before the boot, with the model's blocks known: the layer filter leaves a candidate (with the default
    prune_layers, refused only when neither default, the organism's nor Arditi et al.'s, would leave one)."""
    from steering.refusal import _layer_set

    layers = None if candidate_layers is None else sorted(_layer_set(parse_layers(candidate_layers), shape.n_layers))
    named = "option 'prune_layers' of section 'refusal'"
    if prune_layers is not None:
        try:
            _check_filter(shape.n_layers, prune_layers, layers)
        except ValueError as e:
            raise ValueError(f"{named}: {e}") from None
    elif layers is not None:
        bounds = {p: int(shape.n_layers * (1 - p)) for p in (0.2, ORGANISM_PRUNE_LAYERS)}
        if min(layers) >= max(bounds.values()):
            raise ValueError(f"{named}: every candidate layer {layers} is discarded by the layer filter at the "
                             f"default prune_layers (l >= {bounds[0.2]} at Arditi et al.'s 0.2, l >= "
                             f"{bounds[ORGANISM_PRUNE_LAYERS]} at the bundled organism's {ORGANISM_PRUNE_LAYERS}); "
                             f"choose lower layers or a lower prune_layers")


SECTION = Section("refusal", _run, check=_check_pair,
                  help="each model's refusal direction (Arditi et al. 2024), base vs post, and what ablating or "
                       "adding it does", params=(
    Param("kl_threshold", float, 0.1, "Arditi et al.'s filter: largest next-token KL (nats) on harmless requests "
                                      "a candidate's ablation may cause", low=0),
    Param("prune_layers", float, None, "share of the last layers the filter discards (default 0.2, Arditi et "
                                       f"al.'s; {ORGANISM_PRUNE_LAYERS} on the bundled organism)", low=0, high=0.99),
    layers_param("candidate_layers", "comma-separated blocks whose candidate directions are scored and may be "
                                     "selected (default all; the per-layer figures cover every layer)"),
    Param("filter_prompts", bool, True, "Arditi et al.'s filter of the requests by the sign of post's refusal "
                                        "score"),
    Param("base_template", str, None, "template the base model reads requests in: 'du' for Du et al. 2025's "
                                      "'User: ...\nAssistant:', or a Jinja chat template (default: post's)",
          validate=_check_template),
    Param("max_new_tokens", int, 16, "tokens generated per request when refusal is judged", low=1),
    Param("batch_size", int, 32, "prompts per forward pass", low=1),
    Param("generation_batch_size", int, 128, "prompts per steered generation batch", low=1),
    seed_param("seed of the nulls, the bootstrap and the train/test split of --refusal-data"),
    data_param("refusal", "your requests: two files, harmful,harmless (instruction JSON, JSONL, CSV), each "
                             "split 75/25"),
))
