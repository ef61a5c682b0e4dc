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

Candidates that sit in the last 20% of layers (``l >= 0.8 * n_layers``), with
``kl`` above a threshold (0.1) or with ``induce <= 0`` are discarded, and the
one with the lowest ``bypass`` is selected. (Arditi et al.'s code rounds the
bound down, ``l >= int(0.8 * n_layers)``; the two agree but for one layer, and
for a small model the rounded bound discards more than 20% of it: 2 of 6.)

The refusal score is ``log p - log(1 - p)`` with ``p`` the probability of the
refusal replies' first tokens (:func:`steering.metrics.refusal_score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.hooks import attached
from interp.models import tokenizer_of
from interp.sites import hook_name
from interp.tokens import encode, pad_batch, pad_id

from .interventions import Ablate, Add
from .metrics import kl_divergence, next_token_logprobs, refusal_score
from .vector import SteeringVector

__all__ = ["post_instruction_offsets", "mean_activations", "Candidate", "RefusalSelection", "score_candidates",
           "select_direction"]


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


@torch.inference_mode()
def mean_activations(model, prompts: Sequence[str], offsets: Sequence[int], *, site: str = "resid_pre",
                     layers: Sequence[int] | None = None, batch_size: int = 32,
                     progress: bool = False) -> Float[torch.Tensor, "pos layer d"]:
    """Mean of ``site`` activations at each negative offset from each prompt's end, every layer, in float64.

    One forward per batch reads every layer and offset (left padding aligns
    the prompts' ends).
    """
    offsets = [int(o) for o in offsets]
    if not offsets or any(o >= 0 for o in offsets):
        raise ValueError(f"offsets must be negative (counted from the prompt's end), got {offsets}")
    tok = tokenizer_of(model)
    encs = encode(tok, list(prompts), max_length=int(model.cfg.n_ctx))
    short = [i for i, e in enumerate(encs) if len(e) < -min(offsets)]
    if short:
        raise ValueError(f"prompt {short[0]} has fewer than {-min(offsets)} tokens")
    layers = list(range(int(model.cfg.n_layers))) if layers is None else list(layers)
    device = model.cfg.device or "cpu"
    idx = torch.tensor(offsets)
    sums = torch.zeros(len(offsets), len(layers), int(model.cfg.d_model), dtype=torch.float64)
    grabbed: dict[int, torch.Tensor] = {}

    def grab(layer):
        def fn(act, hook):
            grabbed[layer] = act[:, idx.to(act.device)].double().sum(0).cpu()
        return fn

    hooks = [(hook_name(site, layer), grab(layer)) for layer in layers]
    with attached(model, hooks):
        for b0 in tqdm(range(0, len(encs), batch_size), desc="means", disable=not progress):
            batch = pad_batch(encs[b0 : b0 + batch_size], pad_id=pad_id(tok), padding_side="left", device=device)
            model(batch.input_ids, attention_mask=batch.attention_mask, stop_at_layer=max(layers) + 1)
            for j, layer in enumerate(layers):
                sums[:, j] += grabbed.pop(layer)
    return sums / len(encs)


@dataclass(frozen=True)
class Candidate:
    """One candidate direction and its validation scores."""

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
                               "bypass": c.bypass, "induce": c.induce, "kl": c.kl})

    def direction(self, layer: int, position: int | None = None) -> torch.Tensor:
        """Candidate ``[d]`` at ``layer`` and ``position`` (default: the selected position)."""
        p = self.selected.position if position is None else position
        return self.diffs[self.positions.index(p), layer]


def score_candidates(
    model,
    diffs: Float[torch.Tensor, "pos layer d"],
    positions: Sequence[int],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    refusal_ids: Sequence[int],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[list[Candidate], dict]:
    """Bypass, induce and KL scores of every candidate (the forward passes; no filtering), and the
    baseline refusal scores ``{"harmful", "harmless"}`` without intervention."""
    n_layers = int(model.cfg.n_layers)
    positions = tuple(int(p) for p in positions)
    if diffs.shape[:2] != (len(positions), n_layers):
        raise ValueError(f"diffs must be [{len(positions)} positions, {n_layers} layers, d], got {tuple(diffs.shape)}")
    clean_harmless = next_token_logprobs(model, harmless_val, batch_size=batch_size)
    baseline = {
        "harmful": float(refusal_score(model, harmful_val, refusal_ids, batch_size=batch_size).mean()),
        "harmless": float(refusal_score(model, harmless_val, refusal_ids, logprobs=clean_harmless).mean()),
    }
    cands = []
    grid = [(p, layer) for p in positions for layer in range(n_layers)]
    for p, layer in tqdm(grid, desc="refusal candidates", disable=not progress):
        vec = SteeringVector(diffs[positions.index(p), layer].float(), (layer,), "resid_pre")
        abl = Ablate(vec)
        bypass = float(refusal_score(model, harmful_val, refusal_ids, abl, batch_size=batch_size).mean())
        induce = float(refusal_score(model, harmless_val, refusal_ids, Add(vec), batch_size=batch_size).mean())
        kl = float(kl_divergence(model, harmless_val, abl, clean=clean_harmless, batch_size=batch_size).mean())
        cands.append(Candidate(layer, p, bypass, induce, kl))
    return cands, baseline


def select_direction(
    model,
    diffs: Float[torch.Tensor, "pos layer d"],
    positions: Sequence[int],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    refusal_ids: Sequence[int],
    *,
    kl_threshold: float = 0.1,
    prune_layers: float = 0.2,
    require_induce: bool = True,
    batch_size: int = 32,
    progress: bool = False,
    scores: tuple[list[Candidate], dict] | None = None,
) -> RefusalSelection:
    """Score every candidate and select one (see the module docstring).

    ``scores``: the output of :func:`score_candidates` for these ``diffs``, to
    select again under other filters without running the model again.

    Raises ``ValueError`` when every candidate is discarded, with the reasons.
    """
    n_layers = int(model.cfg.n_layers)
    positions = tuple(int(p) for p in positions)
    if scores is None:
        scores = score_candidates(model, diffs, positions, harmful_val, harmless_val, refusal_ids,
                                  batch_size=batch_size, progress=progress)
    scored, baseline = scores
    max_layer = (1 - prune_layers) * n_layers  # layers at or past this depth sit in the last prune_layers
    norm_scale = float(diffs.norm(dim=-1).max())
    cands = []
    for c in scored:
        why = []
        if float(diffs[positions.index(c.position), c.layer].norm()) <= 1e-6 * norm_scale:
            why.append("zero difference (harmful and harmless activations identical here)")
        if c.layer >= max_layer:
            why.append(f"layer >= {max_layer:g} (last {prune_layers:.0%} of layers)")
        if not c.kl < kl_threshold:
            why.append(f"KL {c.kl:.3g} >= {kl_threshold}")
        if require_induce and not c.induce > 0:
            why.append(f"addition does not induce refusal (score {c.induce:.3g} <= 0)")
        cands.append(Candidate(c.layer, c.position, c.bypass, c.induce, c.kl, "; ".join(why)))
    kept = [c for c in cands if not c.discarded]
    if not kept:
        reasons = "; ".join(f"L{c.layer}@{c.position}: {c.discarded}" for c in cands[:8])
        raise ValueError(f"every refusal candidate was discarded ({reasons}, ...); "
                         "relax kl_threshold/require_induce or check the prompts")
    best = min(kept, key=lambda c: c.bypass)
    return RefusalSelection(diffs, positions, cands, best, baseline)
