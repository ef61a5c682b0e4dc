"""Find a model's refusal direction as Arditi et al. (2024) do.

"Refusal in language models is mediated by a single direction": for every
layer ``l`` and every post-instruction position ``i`` (the chat template's
tokens after the user's message), the candidate is the difference of means
``r = mean(x_harmful) - mean(x_harmless)`` of the residual stream entering
block ``l`` (``resid_pre``). Each candidate is scored on validation prompts:

* ``bypass`` — mean refusal score on harmful prompts with ``r`` ablated from
  every layer and position (lower = ablation removes refusal better);
* ``induce`` — mean refusal score on harmless prompts with ``r`` added at
  layer ``l`` at every position;
* ``kl`` — mean next-token KL on harmless prompts under ablation.

The filters are those of Arditi et al.'s ``select_direction.py``, comparisons
included: a candidate is discarded if its layer is ``l >= int(n_layers * (1 -
0.2))`` (rounded down, so 2 of a 6-layer model's layers and 4 of an 18-layer
one's), if ``kl > 0.1`` (strictly), or if ``induce < 0`` (strictly: a score
of exactly 0 passes); the kept candidate with the lowest ``bypass`` is
selected.

Only what can change the selection is measured (:func:`score_candidates`
with ``prune=True``, what :func:`select_direction` does): candidates in the
last 20% of layers get no pass, induce is measured first (one pass over the
harmless prompts), KL only for those that induce refusal, bypass only for
those under the KL threshold; each skipped score is NaN with the filter that
made it pointless in ``discarded``. Every measured score is bit-identical to
an exhaustive run's, so the selection is too (tests/steering/
test_refusal_pruning.py). Arditi et al. score candidates on 32 harmful and
32 harmless validation prompts (``n_val = 32`` in their pipeline config).

The refusal score is ``log p - log(1 - p)`` with ``p`` the probability of the
refusal replies' first tokens (:func:`steering.metrics.refusal_score`).
"""

from __future__ import annotations

import logging
import math
import operator
import warnings
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial

import torch
from jaxtyping import Float
from interp._progress import tqdm

from interp.generation import last_position_only
from interp.hooks import attached, forward_blocks, recorded_blocks, replayed_blocks
from interp.kv_cache import check_cache_grew, kv_cache_compat
from interp.models import tokenizer_of
from interp.sites import check_layers, hook_name
from interp.tokens import Tokenized, as_tokenized, length_batches, pad_batch, pad_id

from .interventions import Ablate, Add, apply
from .metrics import _d_vocab, _token_ids, kl_from_logprobs, refusal_score
from .vector import SteeringVector

__all__ = ["post_instruction_offsets", "mean_activations", "offset_activations", "Candidate", "RefusalSelection",
           "score_candidates", "select_direction", "apply_filters"]

log = logging.getLogger(__name__)


def post_instruction_offsets(tokenizer, chat_template: str | None = None) -> list[int]:
    """Offsets (``-k .. -1``) of the chat template's tokens after the user's message.

    Found by rendering one user turn with a marker message and counting the
    tokens after the marker.
    """
    marker = "zq marker text zq"
    kwargs = {"chat_template": chat_template} if chat_template else {}
    text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                         add_generation_prompt=True, **kwargs)
    tail = text[text.rindex(marker) + len(marker):]
    if not tail:
        raise ValueError("the chat template writes nothing after the user's message; no post-instruction tokens")
    n = len(tokenizer(tail, add_special_tokens=False)["input_ids"])
    return list(range(-n, 0))


def _prompt_tokens(model, prompts) -> Tokenized:
    """``prompts`` tokenised, refusing one string and an empty list.

    Raises:
        TypeError: ``prompts`` is one string.
        ValueError: no prompts.
    """
    if isinstance(prompts, (str, bytes)):
        raise TypeError(f"prompts must be a list of texts (or Tokenized), not one string; wrap a single one in a "
                        f"list: [{prompts[:40]!r}]")
    toks = as_tokenized(model, prompts)
    if not len(toks):
        raise ValueError("prompts is empty")
    return toks


def _offset_layers(layers, n_layers: int) -> list[int]:
    """``layers`` as block indices in the order given (negative ones count from the end), duplicates dropped;
    None: every layer. Checked as :func:`interp.sites.check_layers` checks ``collect``'s ``layers``.

    Raises:
        ValueError: no layers, or a layer outside the model.
        TypeError: a layer that is not an int.
    """
    if layers is None or isinstance(layers, int):
        return check_layers(layers, n_layers)
    layers = list(layers)
    check_layers(layers, n_layers)
    return list(dict.fromkeys(operator.index(layer) % n_layers for layer in layers))


def _offset_batches(model, prompts: Sequence[str] | Tokenized, offsets: Sequence[int], site: str,
                    layers: Sequence[int] | None, batch_size: int, progress: bool, desc: str):
    """Yield ``(indices, rows)``: the prompts' indices and their ``[batch, pos, layer, d]`` activations (model
    dtype, CPU) at each negative offset from each prompt's end. One forward per batch reads every layer and
    offset (left padding aligns the prompts' ends); prompts of similar length share a batch
    (:func:`interp.tokens.length_batches`), so the batches come out of prompt order."""
    offsets = [int(o) for o in offsets]
    if not offsets or any(o >= 0 for o in offsets):
        raise ValueError(f"offsets must be negative (counted from the prompt's end), got {offsets}")
    tok = tokenizer_of(model)
    toks = _prompt_tokens(model, prompts)
    short = [i for i, n in enumerate(toks.lengths) if n < -min(offsets)]
    if short:
        raise ValueError(f"prompt {short[0]} has fewer than {-min(offsets)} tokens")
    layers = _offset_layers(layers, int(model.cfg.n_layers))
    device = model.cfg.device or "cpu"
    idx = torch.tensor(offsets)
    grabbed: dict[int, torch.Tensor] = {}

    def grab(layer):
        def fn(act, hook):
            grabbed[layer] = act[:, idx.to(act.device)].cpu()
        return fn

    hooks = [(hook_name(site, layer), grab(layer)) for layer in layers]
    with torch.inference_mode(), attached(model, hooks):
        batches = toks.batches(batch_size, pad_id=pad_id(tok), device=device, by_length=True)
        for rows, batch in tqdm(batches, total=-(-len(toks) // batch_size), desc=desc, disable=not progress):
            forward_blocks(model, batch.input_ids, batch.attention_mask, max(layers) + 1)
            yield rows, torch.stack([grabbed.pop(layer) for layer in layers], 2)


def mean_activations(model, prompts: Sequence[str] | Tokenized, offsets: Sequence[int], *, site: str = "resid_pre",
                     layers: Sequence[int] | None = None, batch_size: int = 32,
                     progress: bool = False) -> Float[torch.Tensor, "pos layer d"]:
    """Mean of ``site`` activations at each negative offset from each prompt's end, every layer, in float64.

    One forward per batch reads every layer and offset (left padding aligns the prompts' ends); only the
    running sums are kept.

    ``layers``: block indices (negative ones count from the end), in the order the result keeps; default
    every layer.

    Raises:
        ValueError: an offset that is not negative, empty ``prompts``, a prompt shorter than the offsets,
            empty ``layers`` or a layer outside the model.
        TypeError: ``prompts`` given as one string (wrap it in a list), a layer that is not an int.
    """
    toks = _prompt_tokens(model, prompts)
    sums = None
    for _, rows in _offset_batches(model, toks, offsets, site, layers, batch_size, progress, "means"):
        part = rows.double().sum(0)
        sums = part if sums is None else sums + part
    return sums / len(toks)


def offset_activations(model, prompts: Sequence[str] | Tokenized, offsets: Sequence[int], *, site: str = "resid_pre",
                       layers: Sequence[int] | None = None, batch_size: int = 32,
                       progress: bool = False) -> Float[torch.Tensor, "n_prompts pos layer d"]:
    """Every prompt's ``site`` activations at each negative offset from its end, every layer (float32, CPU).

    What :func:`mean_activations` averages, kept per prompt (``n x len(offsets) x layers x d_model x 4``
    bytes), for callers that also need single rows, e.g. probes at the selected position.

    Raises:
        ValueError: as :func:`mean_activations`.
        TypeError: as :func:`mean_activations`.
    """
    toks = _prompt_tokens(model, prompts)
    out = None
    for index, rows in _offset_batches(model, toks, offsets, site, layers, batch_size, progress, "activations"):
        if out is None:
            out = torch.empty((len(toks), *rows.shape[1:]), dtype=torch.float32)
        out[index] = rows.float()
    return out


@dataclass(frozen=True)
class Candidate:
    """One candidate direction and its validation scores (NaN: not scored, and ``discarded`` says why)."""

    layer: int
    position: int
    bypass: float
    """mean refusal score on harmful prompts under ablation"""
    induce: float
    """mean refusal score on harmless prompts under addition at ``layer``"""
    kl: float
    """mean next-token KL on harmless prompts under ablation"""
    discarded: str = ""
    """why the candidate was discarded ('' if kept)"""

    @property
    def scored(self) -> bool:
        """Whether all three scores were measured."""
        return not any(math.isnan(v) for v in (self.bypass, self.induce, self.kl))


@dataclass
class RefusalSelection:
    """Candidates of one model and the selected direction."""

    diffs: Float[torch.Tensor, "pos layer d"]
    positions: tuple[int, ...]
    candidates: list[Candidate]
    selected: Candidate
    baseline: dict = field(default_factory=dict)
    """mean refusal scores without intervention: ``harmful``, ``harmless``"""

    @property
    def vector(self) -> SteeringVector:
        """The selected difference-of-means vector (natural norm) at its layer, site ``resid_pre``."""
        c = self.selected
        v = self.diffs[self.positions.index(c.position), c.layer]
        return SteeringVector(v.float(), (c.layer,), "resid_pre", 1.0,
                              {"method": "mean_difference", "concept": "refusal", "position": c.position,
                               **{k: (None if math.isnan(x) else x)
                                  for k, x in (("bypass", c.bypass), ("induce", c.induce), ("kl", c.kl))}})

    def direction(self, layer: int, position: int | None = None) -> torch.Tensor:
        """Candidate ``[d]`` at ``layer`` and ``position`` (default: the selected position)."""
        p = self.selected.position if position is None else position
        return self.diffs[self.positions.index(p), layer]


def _sliding_window(model) -> int | None:
    """The Hugging Face config's sliding attention window, if any layer uses one."""
    cfg = getattr(getattr(model, "original_model", None), "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    if cfg is None or getattr(cfg, "use_sliding_window", True) is False:
        return None
    window = getattr(cfg, "sliding_window", None)
    return int(window) if window else None


def _shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every row shares, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return 0
    k, first = 0, rows[0]
    limit = min(len(r) for r in rows) - 1
    while k < limit and all(r[k] == first[k] for r in rows):
        k += 1
    return k


class _Scorer:
    """The three validation passes of one candidate, on prompts tokenised and padded once.

    Each pass is a function of the candidate alone (same batches, same order),
    so a score does not depend on which other candidates were scored: a pruned
    run and an exhaustive one give bit-identical numbers for what both score.
    Only the last position's logits are computed (``logits_to_keep=1`` where
    the Hugging Face model takes it): the unembedding of every other position,
    about a fifth of a small model's FLOPs, is never read. An induce pass adds
    at ``resid_pre`` of its layer, so every block below it computes exactly the
    clean harmless pass: those blocks' outputs are recorded once and replayed
    (:func:`interp.hooks.replayed_blocks`), which leaves the score bit for bit
    the same and skips, averaged over the scored layers, about 40% of the
    induce passes' block compute.
    """

    def __init__(self, model, diffs, positions, harmful_val, harmless_val, refusal_ids, batch_size,
                 share_prefix: bool = True, replay: bool = True):
        tok = tokenizer_of(model)
        device = model.cfg.device or "cpu"
        self.model, self.diffs, self.positions = model, diffs, positions
        self.ids = _token_ids(refusal_ids, _d_vocab(model))  # checked before any pass
        self.device = device
        self.batches, self.prefix = {}, {}
        for kind, texts in (("harmful", harmful_val), ("harmless", harmless_val)):
            encs = list(as_tokenized(model, texts).encodings)
            k = _shared_prefix_length([e.ids for e in encs]) if share_prefix else 0
            window = _sliding_window(model)
            if k and window is not None and max(len(e) for e in encs) + k > window:
                # padding between the prefix and a row would move keys out of a sliding window that a full
                # left-padded pass keeps in it: share nothing
                k = 0
            self.prefix[kind] = torch.tensor([encs[0].ids[:k]], device=device) if k else None
            if k:  # the rows without their shared prefix (each keeps at least one token)
                encs = [replace(e, ids=e.ids[k:], spans=e.spans[k:]) for e in encs]
            # prompts of similar length share a batch; a score is a mean over prompts, so their order is moot
            self.batches[kind] = [pad_batch([encs[i] for i in rows], pad_id=pad_id(tok), padding_side="left",
                                            device=device) for rows in length_batches([len(e) for e in encs],
                                                                                      batch_size)]
        self.keep = last_position_only(model)
        self.replay = replay
        self._clean, self._clean_blocks = None, []
        self.passes = 0

    def _forward(self, kind: str, b, rows=nullcontext) -> torch.Tensor:
        """Last-position logits of one batch; a shared prefix is run once and its KV cache reused by every row.

        The prefix pass sees the same interventions (they act at every position), and the rows then attend
        to its keys and values exactly as in one full pass: the mask is ``[prefix ones, row mask]`` and
        positions follow the mask, so only the floating-point summation order differs from a full pass.
        ``rows``: a context manager factory entered around the rows' pass only (recording or replaying
        its blocks); the prefix pass, one row of a few tokens, always runs every block.
        """
        prefix = self.prefix[kind]
        if prefix is None:
            with rows():
                return self.model(b.input_ids, attention_mask=b.attention_mask, **self.keep)[:, -1]
        k, n = prefix.shape[1], b.input_ids.shape[0]
        _, cache = self.model(prefix, return_type="logits_and_cache", use_cache=True, **self.keep)
        check_cache_grew(cache, k)
        cache.batch_repeat_interleave(n)
        mask = torch.cat([torch.ones(n, k, dtype=b.attention_mask.dtype, device=self.device), b.attention_mask], 1)
        with rows():
            logits = self.model(b.input_ids, attention_mask=mask, past_key_values=cache, **self.keep)
        return logits[:, -1]

    @torch.inference_mode()
    def logprobs(self, kind: str, interventions=None, *, record: list | None = None,
                 skip_below: int = 0) -> torch.Tensor:
        """``[n, d_vocab]`` next-token log-probabilities of the ``kind`` prompts under ``interventions``.

        ``record``: a list that receives, per batch, what every block returned in the rows' pass
        (:func:`interp.hooks.recorded_blocks`). ``skip_below``: replay blocks ``0 .. skip_below - 1`` from the
        clean harmless pass's record instead of running them (only for interventions at or above that block).
        """
        out = []
        with kv_cache_compat(self.model), apply(self.model, interventions):
            for i, b in enumerate(self.batches[kind]):
                if record is not None:
                    rows = partial(self._recording, record)
                elif skip_below:
                    rows = partial(replayed_blocks, self.model, self._clean_blocks[i], skip_below)
                else:
                    rows = nullcontext
                out.append(self._forward(kind, b, rows).float().cpu())
        self.passes += 1
        return torch.cat(out).log_softmax(-1)

    @contextmanager
    def _recording(self, into: list):
        with recorded_blocks(self.model) as calls:
            yield
        into.append(calls[-1])

    @property
    def clean_harmless(self) -> torch.Tensor:
        """The unsteered harmless pass; what its blocks returned is kept for :meth:`score` (induce)."""
        if self._clean is None:
            blocks: list = []
            self._clean = self.logprobs("harmless", record=blocks)
            self._clean_blocks = blocks
        return self._clean

    def baseline(self) -> dict:
        return {"harmful": float(refusal_score(self.model, [], self.ids, logprobs=self.logprobs("harmful")).mean()),
                "harmless": float(refusal_score(self.model, [], self.ids, logprobs=self.clean_harmless).mean())}

    def score(self, p: int, layer: int, name: str) -> float:
        vec = SteeringVector(self.diffs[self.positions.index(p), layer].float(), (layer,), "resid_pre")
        # a zero difference (scored when nothing is pruned) adds and ablates nothing: the unsteered passes
        zero = not float(vec.vectors.norm()) > 0
        if name == "induce":  # blocks below the addition compute the clean pass: replayed, not run
            _ = self.clean_harmless  # the record the replay reads
            logprobs = self.logprobs("harmless", None if zero else Add(vec), skip_below=layer if self.replay else 0)
            return float(refusal_score(self.model, [], self.ids, logprobs=logprobs).mean())
        ablate = None if zero else Ablate(vec)
        if name == "bypass":
            return float(refusal_score(self.model, [], self.ids, logprobs=self.logprobs("harmful", ablate)).mean())
        return float(kl_from_logprobs(self.clean_harmless, self.logprobs("harmless", ablate)).mean())


@dataclass(frozen=True)
class _Filters:
    kl_threshold: float
    prune_layers: float
    require_induce: bool
    candidate_layers: frozenset[int] | None = None

    def __post_init__(self):
        p = self.prune_layers
        try:
            ok = not isinstance(p, (str, bytes)) and 0 <= float(p) < 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"prune_layers must be in [0, 1) (the share of last layers whose candidates are "
                             f"discarded; Arditi et al. use 0.2), got {p!r}")

    def static(self, c: Candidate, diffs, positions, n_layers: int) -> list[str]:
        """Reasons that need no forward pass: a zero difference, a layer in the last ``prune_layers``, a layer
        outside ``candidate_layers``."""
        why = []
        if self.candidate_layers is not None and c.layer not in self.candidate_layers:
            why.append(f"layer not among the candidate layers {sorted(self.candidate_layers)}")
        norm_scale = float(diffs.norm(dim=-1).max())
        if float(diffs[positions.index(c.position), c.layer].norm()) <= 1e-6 * norm_scale:
            why.append("zero difference (harmful and harmless activations identical here)")
        bound = int(n_layers * (1.0 - self.prune_layers))  # Arditi et al.: source_layer >= int(n_layer * (1 - p))
        if c.layer >= bound:
            why.append(f"layer >= {bound} (int({n_layers} x {1 - self.prune_layers:g}), Arditi et al.'s layer filter)")
        return why

    def stages(self) -> list[tuple[str, object]]:
        """Scores in the order they are measured, each with its test (None: no test, selection ranks it).

        Induce first and KL second: each needs one pass over 32 harmless prompts,
        and a candidate that fails either can never be selected, so its later
        passes are skipped. Bypass (harmful prompts) is the ranking score.
        """
        kl = lambda v: None if v <= self.kl_threshold else f"KL {v:.3g} > {self.kl_threshold}"  # noqa: E731
        out = [("kl", kl), ("bypass", None)]
        if self.require_induce:
            out.insert(0, ("induce", lambda v: None if v >= 0 else
                           f"addition does not induce refusal (score {v:.3g} < 0)"))
        return out

    def reasons(self, c: Candidate, diffs, positions, n_layers: int) -> list[str]:
        why = self.static(c, diffs, positions, n_layers)
        for name, test in self.stages():
            v = getattr(c, name)
            if test is not None and not math.isnan(v) and (r := test(v)):
                why.append(r)
        missing = [n for n in ("induce", "kl", "bypass") if math.isnan(getattr(c, n))]
        if missing:
            why.append(f"{', '.join(missing)} not scored" + ("" if why else " (no filter has discarded it yet)"))
        return why


def score_candidates(
    model,
    diffs: Float[torch.Tensor, "pos layer d"],
    positions: Sequence[int],
    harmful_val: Sequence[str] | Tokenized,
    harmless_val: Sequence[str] | Tokenized,
    refusal_ids: Sequence[int],
    *,
    prune: bool = False,
    kl_threshold: float = 0.1,
    prune_layers: float = 0.2,
    require_induce: bool = True,
    scores: tuple[list[Candidate], dict] | None = None,
    only: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 32,
    progress: bool = False,
    candidate_layers: Sequence[int] | None = None,
) -> tuple[list[Candidate], dict]:
    """Bypass, induce and KL scores of the candidates, and the baseline refusal scores ``{"harmful",
    "harmless"}`` without intervention.

    ``prune=False`` (default) scores every candidate (no filtering; ``discarded``
    is empty). ``prune=True`` measures only what can change the selection
    under the filters ``kl_threshold``, ``prune_layers``, ``require_induce``
    (see :func:`select_direction`): no pass for a candidate the layer or a zero
    difference discards, no KL or bypass pass once a candidate fails the
    induce test, no bypass pass once it fails the KL test. What was not
    measured is NaN, and ``discarded`` says which filter discarded it and what
    was not scored. The selection is exactly the exhaustive run's: a skipped
    score belongs to a candidate that a measured score (or its layer) already
    discards, and each measured score is bit-identical to the exhaustive one
    (same batches, same order).

    ``scores``: an earlier result to complete (nothing measured twice);
    ``only``: ``(layer, position)`` pairs to score fully, leaving the others
    as they are. ``candidate_layers``: the layers whose candidates may be
    selected (default all); the others are discarded as the layer filter
    discards, without a pass.

    Raises:
        ValueError: empty ``positions``, ``diffs`` of another shape than ``[positions, layers, d]`` or
            holding NaN or inf, empty ``harmful_val`` or ``harmless_val``, ``prune_layers`` outside
            ``[0, 1)``, a pair of ``only`` that is no candidate (a layer outside the model or a position
            not in ``positions``), ``candidate_layers`` outside the model, ``scores`` for other candidates;
            and as :func:`steering.metrics.refusal_score` for ``refusal_ids``.

    Warns:
        UserWarning: ``harmful_val`` and ``harmless_val`` are the same prompts (every score compares a set
            with itself).
    """
    n_layers = int(model.cfg.n_layers)
    positions = _check_candidates(diffs, positions, n_layers)
    harmful_val, harmless_val = _check_val(harmful_val, harmless_val)
    if only is not None:
        only = list(only)
        bad = [pair for pair in only if not (len(pair) == 2 and 0 <= int(pair[0]) < n_layers
                                             and int(pair[1]) in positions)]
        if bad:
            raise ValueError(f"only names {tuple(bad[0])} (layer, position), which is no candidate: layers are "
                             f"0..{n_layers - 1} and positions {list(positions)}")
    scorer = _Scorer(model, diffs, positions, harmful_val, harmless_val, refusal_ids, batch_size)
    nan = float("nan")
    if scores is None:
        cands, baseline = [Candidate(layer, p, nan, nan, nan) for p in positions for layer in range(n_layers)], None
    else:
        cands, baseline = list(scores[0]), dict(scores[1])
        if [(c.position, c.layer) for c in cands] != [(p, layer) for p in positions for layer in range(n_layers)]:
            raise ValueError("scores do not match these positions and layers")
    if baseline is None:
        baseline = scorer.baseline()
    filters = _Filters(kl_threshold, prune_layers, require_induce, _layer_set(candidate_layers, n_layers))
    wanted = None if only is None else {(int(layer), int(p)) for layer, p in only}
    out = []
    for c in tqdm(cands, desc="refusal candidates", disable=not progress):
        values = {"induce": c.induce, "kl": c.kl, "bypass": c.bypass}
        if wanted is not None and (c.layer, c.position) not in wanted:
            out.append(c)
            continue
        if prune and wanted is None:
            if not filters.static(c, diffs, positions, n_layers):
                for name, test in filters.stages():
                    if math.isnan(values[name]):
                        values[name] = scorer.score(c.position, c.layer, name)
                    if test is not None and test(values[name]):
                        break
                else:  # kept: also measure the scores that are no filter here (induce without require_induce)
                    for name in values:
                        if math.isnan(values[name]):
                            values[name] = scorer.score(c.position, c.layer, name)
        else:
            for name in ("bypass", "induce", "kl"):
                if math.isnan(values[name]):
                    values[name] = scorer.score(c.position, c.layer, name)
        c = Candidate(c.layer, c.position, values["bypass"], values["induce"], values["kl"])
        if not c.scored:
            c = replace(c, discarded="; ".join(filters.reasons(c, diffs, positions, n_layers)))
        out.append(c)
    log.debug("refusal candidates: %d validation passes", scorer.passes)
    return out, baseline


def select_direction(
    model,
    diffs: Float[torch.Tensor, "pos layer d"],
    positions: Sequence[int],
    harmful_val: Sequence[str] | Tokenized,
    harmless_val: Sequence[str] | Tokenized,
    refusal_ids: Sequence[int],
    *,
    kl_threshold: float = 0.1,
    prune_layers: float = 0.2,
    require_induce: bool = True,
    batch_size: int = 32,
    progress: bool = False,
    scores: tuple[list[Candidate], dict] | None = None,
    prune: bool = True,
    candidate_layers: Sequence[int] | None = None,
) -> RefusalSelection:
    """Score the candidates and select one (see the module docstring).

    ``scores``: the output of :func:`score_candidates` for these ``diffs``, to
    select again under other filters; scores these filters need that are
    missing (NaN, from a pruned run) are measured, and nothing else is.
    ``prune``: measure only what can change the selection (the default; the
    same selection as scoring everything, see :func:`score_candidates`).

    Raises:
        ValueError: when every candidate is discarded, with the reasons; and as :func:`score_candidates`
            (empty ``positions`` or validation prompts, non-finite ``diffs``, ``prune_layers`` outside
            ``[0, 1)``, ...).

    Warns:
        UserWarning: as :func:`score_candidates`.
    """
    n_layers = int(model.cfg.n_layers)
    positions = _check_candidates(diffs, positions, n_layers)
    filters = _Filters(kl_threshold, prune_layers, require_induce, _layer_set(candidate_layers, n_layers))
    kw = dict(kl_threshold=kl_threshold, prune_layers=prune_layers, require_induce=require_induce,
              batch_size=batch_size, progress=progress, candidate_layers=candidate_layers)
    if scores is None or _needs_scores(scores[0], filters, diffs, positions, n_layers):
        scores = score_candidates(model, diffs, positions, harmful_val, harmless_val, refusal_ids, prune=prune,
                                  scores=scores, **kw)
    scored, baseline = scores
    cands = apply_filters(scored, diffs, positions, n_layers, kl_threshold=kl_threshold, prune_layers=prune_layers,
                          require_induce=require_induce, candidate_layers=candidate_layers)
    kept = [c for c in cands if not c.discarded]
    if not kept:
        reasons = "; ".join(f"L{c.layer}@{c.position}: {c.discarded}" for c in cands[:8])
        raise ValueError(f"every refusal candidate was discarded ({reasons}, ...); "
                         "relax kl_threshold/require_induce or check the prompts")
    assert all(c.scored for c in kept)
    best = min(kept, key=lambda c: c.bypass)
    return RefusalSelection(diffs, positions, cands, best, baseline)


def _check_candidates(diffs, positions, n_layers: int) -> tuple[int, ...]:
    """``positions`` as a tuple of ints, checked against ``diffs``.

    Raises:
        ValueError: no positions, ``diffs`` not ``[positions, n_layers, d]``, or NaN/inf in ``diffs``.
    """
    positions = tuple(int(p) for p in positions)
    if not positions:
        raise ValueError("positions is empty: no candidate to score; give the post-instruction offsets the diffs "
                         "were taken at (steering.refusal.post_instruction_offsets)")
    if diffs.ndim != 3 or diffs.shape[:2] != (len(positions), n_layers):
        raise ValueError(f"diffs must be [{len(positions)} positions, {n_layers} layers, d], got {tuple(diffs.shape)}")
    bad = (~torch.isfinite(diffs)).any(-1).nonzero()
    if len(bad):
        i, layer = (int(x) for x in bad[0])
        raise ValueError(f"diffs contains NaN or inf (at position {positions[i]}, layer {layer}); check the "
                         "activations the difference of means was taken from")
    return positions


def _check_val(harmful_val, harmless_val) -> tuple:
    """``(harmful_val, harmless_val)``, texts as lists (a Tokenized or one string as given); refuses empty
    validation sets and warns when both are the same prompts.

    Raises:
        ValueError: ``harmful_val`` or ``harmless_val`` empty.
    """
    texts, out = {}, []
    for name, val in (("harmful_val", harmful_val), ("harmless_val", harmless_val)):
        if not isinstance(val, (Tokenized, str)):
            val = list(val)
        out.append(val)
        texts[name] = tuple(val.texts) if isinstance(val, Tokenized) else (val,) if isinstance(val, str) else \
            tuple(val)
        if not texts[name]:
            raise ValueError(f"{name} is empty: give validation prompts to score the candidates on (Arditi et al. "
                             "use 32 harmful and 32 harmless)")
    if texts["harmful_val"] == texts["harmless_val"]:
        warnings.warn("harmful_val and harmless_val are the same prompts: every candidate is scored on one set as "
                      "both classes, so the selection means nothing; pass held-out harmful and harmless prompts",
                      stacklevel=3)
    return tuple(out)


def apply_filters(candidates: Sequence[Candidate], diffs: Float[torch.Tensor, "pos layer d"],
                  positions: Sequence[int], n_layers: int, *, kl_threshold: float = 0.1, prune_layers: float = 0.2,
                  require_induce: bool = True, candidate_layers: Sequence[int] | None = None) -> list[Candidate]:
    """``candidates`` with ``discarded`` set to the reasons Arditi et al.'s filters give ('' if kept); no pass.

    A score that was not measured (NaN) discards nothing by itself; it is named
    as not scored next to the reason that made measuring it pointless.

    Raises:
        ValueError: ``prune_layers`` outside ``[0, 1)``, ``candidate_layers`` outside the model.
    """
    filters = _Filters(kl_threshold, prune_layers, require_induce, _layer_set(candidate_layers, n_layers))
    positions = tuple(int(p) for p in positions)
    return [replace(c, discarded="; ".join(filters.reasons(c, diffs, positions, n_layers))) for c in candidates]


def _layer_set(layers: Sequence[int] | None, n_layers: int) -> frozenset[int] | None:
    """``layers`` as a set of block indices (a negative one counts from the end), or None (every layer).

    Raises:
        ValueError: a layer outside the model.
    """
    if layers is None:
        return None
    from interp.sites import check_layers

    try:
        return frozenset(check_layers(layers, n_layers))
    except ValueError as e:
        raise ValueError(f"candidate_layers: {e}") from None


def _needs_scores(cands: list[Candidate], filters: _Filters, diffs, positions, n_layers: int) -> bool:
    """Whether some candidate lacks a score that could decide the selection under ``filters``."""
    for c in cands:
        if c.scored or filters.static(c, diffs, positions, n_layers):
            continue
        for name, test in filters.stages():
            v = getattr(c, name)
            if math.isnan(v):
                return True
            if test is not None and test(v):
                break
        else:  # kept, so every score is reported
            return True
    return False
