"""Language-specific neurons by activation-probability entropy (LAPE; Tang et al. 2024).

"Language-Specific Neurons: The Key to Multilingual Capabilities in Large
Language Models" (ACL 2024), Section 2 and the authors' ``identify.py``. For
each MLP neuron, ``P[l]`` is the share of language ``l``'s tokens on which its
activation ``act_fn(W_gate x)`` is above zero (:func:`activation_probability`,
read at site ``mlp_pre``, see there). With ``p = P / sum(P)`` its LAPE is the
entropy ``-sum p log p`` (``0 log 0 = 0``): low entropy means the neuron fires
for few languages. Selection, as the reference code does it, over every
neuron of every layer at once (``N`` = layers x neurons):

1. **filter** — ``t = kthvalue(P.flatten(), round(N * L * filter_rate))`` (the
   k-th smallest of all ``N * L`` probabilities, 1-indexed); a neuron with no
   language ``P > t`` (strictly) gets entropy ``+inf``, so it is picked only if
   fewer than the count below pass;
2. **count** — the ``round(N * top_rate)`` neurons of lowest entropy are
   selected: 1% of *all* neurons, not of those that passed the filter;
3. **assign** — ``bar = kthvalue(P.flatten(), round(N * L * activation_bar_ratio))``;
   a selected neuron belongs to every language with ``P > bar`` (strictly), so
   it can serve two languages, or none.

Ties in entropy at the cut (the reference's ``topk`` leaves their order to the
kernel) are broken by (layer, neuron) order here, so the selection is
deterministic.

>>> import numpy as np
>>> P = np.random.default_rng(0).uniform(0.2, 0.6, size=(1, 100, 3))   # [layer, neuron, language]
>>> P[0, 7] = [0.95, 0.01, 0.01]                                         # neuron 7 fires for language 0 only
>>> res = lape(P)                                                        # round(1% of 100 neurons) = 1
>>> np.argwhere(res.selected).tolist(), res.neurons(0, 0)
([[0, 7]], [7])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_integer, check_number

__all__ = ["activation_probability", "lape", "LapeResult", "iou", "LAPE_SITE"]

#: Where LAPE reads its neurons: the gate pre-activation ``W_gate x`` (the MLP pre-activation of a
#: non-gated MLP). Tang et al. count ``act_fn(gate) > 0``; for SiLU, GELU (exact or tanh) and ReLU,
#: ``act_fn(x) > 0`` exactly when ``x > 0``, so counting ``mlp_pre > 0`` is their count.
LAPE_SITE = "mlp_pre"

#: Activation functions for which ``act_fn(x) > 0`` iff ``x > 0`` (see :data:`LAPE_SITE`).
SIGN_PRESERVING = ("silu", "swish", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_tanh", "relu",
                   "quick_gelu")


def check_activation(act_fn: str | None) -> None:
    """Raise ``ValueError`` unless ``act_fn`` (``model.cfg.act_fn``) is one for which ``mlp_pre > 0`` is Tang et
    al.'s ``act_fn(gate) > 0`` (:data:`SIGN_PRESERVING`)."""
    if act_fn not in SIGN_PRESERVING:
        raise ValueError(f"LAPE counts mlp_pre > 0 as act_fn(gate) > 0, which holds for {', '.join(SIGN_PRESERVING)}; "
                         f"this model's activation is {act_fn!r}")


def activation_probability(acts: torch.Tensor, languages: Sequence[int] | torch.Tensor, n_languages: int,
                           threshold: float = 0.0) -> np.ndarray:
    """``[n_neurons, n_languages]`` share of each language's tokens on which each neuron is > ``threshold``.

    Tang et al.'s ``over_zero / n``: the activation ``act_fn(gate)`` above zero, counted over every token
    of each language's text.

    Args:
        acts: ``[n_tokens, n_neurons]`` gate pre-activations (site ``mlp_pre``, :data:`LAPE_SITE`; with the
            default ``threshold=0`` the count equals ``act_fn(gate) > 0`` for SiLU/GELU/ReLU MLPs).
        languages: ``[n_tokens]`` language index of each token.

    Raises:
        ValueError: shapes that do not match, a language with no tokens, ``n_languages`` not a positive
            integer, a language index that is not an integer in ``[0, n_languages)`` (its tokens would be
            dropped), NaN or inf in ``acts``, or a ``threshold`` that is not a finite number.
        TypeError: ``n_languages`` not an integer, or ``threshold`` not a number.
    """
    check_integer("n_languages", n_languages, 1)
    check_number("threshold", threshold, lambda t: True, "a finite number")
    acts = torch.as_tensor(acts)
    raw = torch.as_tensor(languages)
    if raw.is_floating_point() and not (torch.isfinite(raw) & (raw == raw.round())).all():
        raise ValueError("languages must be integer language indices, got non-integer values")
    lang = raw.long()
    if acts.ndim != 2 or lang.shape != (acts.shape[0],):
        raise ValueError(f"acts must be [n_tokens, n_neurons] with one language per token; got {tuple(acts.shape)} "
                         f"and {tuple(lang.shape)}")
    outside = lang[(lang < 0) | (lang >= n_languages)]
    if len(outside):
        raise ValueError(f"language index {int(outside[0])} is outside [0, n_languages) = [0, {n_languages}); "
                         "pass n_languages = the number of languages")
    out = np.zeros((acts.shape[1], n_languages))
    for k in range(n_languages):
        rows = acts[lang == k]
        if rows.shape[0] == 0:
            raise ValueError(f"no tokens of language {k}")
        if rows.is_floating_point() and not torch.isfinite(rows).all():  # NaN > threshold would count as silent
            raise ValueError(f"acts contain NaN or inf (tokens of language {k})")
        out[:, k] = (rows > threshold).double().mean(0).numpy()
    return out


@dataclass(frozen=True)
class LapeResult:
    """Entropy and selection of every neuron of every layer.

    Attributes:
        entropy: ``[layer, neuron]`` LAPE (natural log), before the filter sets anything to ``+inf``.
        kept: ``[layer, neuron]`` neurons that passed the filter (some language ``P > prob_threshold``).
        selected: ``[layer, neuron]`` the ``round(N * top_rate)`` lowest-entropy neurons (step 2).
        assignment: ``[layer, neuron, language]`` the languages each selected neuron belongs to.
        prob_threshold: the filter's value ``t``; activation_bar: the assignment's ``bar``.
    """

    entropy: np.ndarray
    kept: np.ndarray
    selected: np.ndarray
    assignment: np.ndarray
    prob_threshold: float
    activation_bar: float

    def neurons(self, layer: int, language: int) -> list[int]:
        """Indices of the neurons of ``layer`` assigned to ``language``."""
        return np.nonzero(self.assignment[layer, :, language])[0].tolist()

    def counts(self) -> np.ndarray:
        """``[layer, language]`` number of neurons assigned to each language."""
        return self.assignment.sum(1)


def _kth_smallest(values: np.ndarray, rate: float, what: str) -> float:
    """``torch.kthvalue(values, round(len(values) * rate))``: the k-th smallest, 1-indexed."""
    k = round(values.size * rate)
    if not 1 <= k <= values.size:
        raise ValueError(f"{what}={rate} gives k={k} of {values.size} probabilities; it must pick one of them")
    return float(np.partition(values, k - 1)[k - 1])


def lape(probs: np.ndarray, *, top_rate: float = 0.01, filter_rate: float = 0.95,
         activation_bar_ratio: float = 0.95) -> LapeResult:
    """Select language-specific neurons from ``[layer, neuron, language]`` activation probabilities.

    Tang et al. (2024)'s rule as their ``identify.py`` computes it (see the module docstring): the
    defaults are theirs (``top_rate=0.01``, ``filter_rate=0.95``, ``activation_bar_ratio=0.95``).

    Raises:
        ValueError: fewer than 2 languages, probabilities outside [0, 1] (or NaN), a rate that is not a finite
            number, or a rate that picks no value or no neuron.
        TypeError: a rate that is not a number.
    """
    for name, rate in (("top_rate", top_rate), ("filter_rate", filter_rate),
                       ("activation_bar_ratio", activation_bar_ratio)):
        check_number(name, rate, lambda r: True, "a finite number")
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] < 2:
        raise ValueError(f"probs must be [layer, neuron, language] with at least 2 languages, got shape {P.shape}")
    if not ((0 <= P) & (P <= 1)).all():
        raise ValueError("activation probabilities must lie in [0, 1]")
    n_layers, n_neurons, _ = P.shape
    n_select = round(n_layers * n_neurons * top_rate)
    if not 1 <= n_select <= n_layers * n_neurons:
        raise ValueError(f"top_rate={top_rate} selects {n_select} of {n_layers * n_neurons} neurons")
    total = P.sum(-1, keepdims=True)
    p = np.divide(P, total, out=np.zeros_like(P), where=total > 0)  # the reference sets 0/0 to 0
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    flat = P.ravel()
    prob_threshold = _kth_smallest(flat, filter_rate, "filter_rate")
    kept = (P > prob_threshold).any(-1)
    ranked = np.where(kept, entropy, np.inf).ravel()
    order = np.argsort(ranked, kind="stable")[:n_select]  # ties: lower (layer, neuron) first
    selected = np.zeros(n_layers * n_neurons, dtype=bool)
    selected[order] = True
    selected = selected.reshape(n_layers, n_neurons)
    bar = _kth_smallest(flat, activation_bar_ratio, "activation_bar_ratio")
    assignment = selected[..., None] & (P > bar)
    return LapeResult(entropy, kept, selected, assignment, prob_threshold, bar)


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two neuron sets; NaN (undefined) when both are empty."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else float("nan")
