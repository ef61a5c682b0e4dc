"""Language-specific neurons by activation-probability entropy (LAPE; Tang et al. 2024).

"Language-Specific Neurons: The Key to Multilingual Capabilities in Large
Language Models": for each MLP neuron, ``P[l]`` is the probability that it is
active (activation > 0) on a token of language ``l``. With ``p = P / sum(P)``
its LAPE is the entropy ``-sum p log p``: low entropy means the neuron fires
for few languages. Selection, as published:

1. keep neurons whose largest activation probability reaches the
   ``prob_quantile`` quantile (95%) of all activation probabilities (a neuron
   that almost never fires is not "specific", only rare);
2. among them, the ``entropy_quantile`` (1%) with the lowest entropy are
   language-specific;
3. a selected neuron belongs to every language whose activation probability
   reaches that same 95% threshold (a neuron can serve two languages).

>>> import numpy as np
>>> P = np.random.default_rng(0).uniform(0.2, 0.6, size=(1, 100, 3))   # [layer, neuron, language]
>>> P[0, 7] = [0.95, 0.01, 0.01]                                         # neuron 7 fires for language 0 only
>>> res = lape(P, entropy_quantile=0.01)
>>> np.argwhere(res.selected).tolist(), res.neurons(0, 0)
([[0, 7]], [7])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["activation_probability", "lape", "LapeResult", "iou"]


def activation_probability(acts: torch.Tensor, languages: Sequence[int] | torch.Tensor, n_languages: int,
                           threshold: float = 0.0) -> np.ndarray:
    """``[n_neurons, n_languages]`` share of each language's tokens on which each neuron is > ``threshold``.

    Args:
        acts: ``[n_tokens, n_neurons]`` MLP activations (``mlp_post``).
        languages: ``[n_tokens]`` language index of each token.
    """
    acts = torch.as_tensor(acts)
    lang = torch.as_tensor(languages, dtype=torch.long)
    if acts.ndim != 2 or lang.shape != (acts.shape[0],):
        raise ValueError(f"acts must be [n_tokens, n_neurons] with one language per token; got {tuple(acts.shape)} "
                         f"and {tuple(lang.shape)}")
    out = np.zeros((acts.shape[1], n_languages))
    for k in range(n_languages):
        rows = acts[lang == k]
        if rows.shape[0] == 0:
            raise ValueError(f"no tokens of language {k}")
        out[:, k] = (rows > threshold).double().mean(0).numpy()
    return out


@dataclass(frozen=True)
class LapeResult:
    """Entropy and selection of every neuron of every layer.

    Attributes:
        entropy: ``[layer, neuron]`` LAPE (natural log).
        selected: ``[layer, neuron]`` language-specific neurons.
        assignment: ``[layer, neuron, language]`` the languages each selected neuron belongs to.
        prob_threshold, entropy_threshold: the thresholds the quantiles gave.
    """

    entropy: np.ndarray
    selected: np.ndarray
    assignment: np.ndarray
    prob_threshold: float
    entropy_threshold: float

    def neurons(self, layer: int, language: int) -> list[int]:
        """Indices of the neurons of ``layer`` assigned to ``language``."""
        return np.nonzero(self.assignment[layer, :, language])[0].tolist()

    def counts(self) -> np.ndarray:
        """``[layer, language]`` number of neurons assigned to each language."""
        return self.assignment.sum(1)


def lape(probs: np.ndarray, *, entropy_quantile: float = 0.01, prob_quantile: float = 0.95) -> LapeResult:
    """Select language-specific neurons from ``[layer, neuron, language]`` activation probabilities."""
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] < 2:
        raise ValueError(f"probs must be [layer, neuron, language] with at least 2 languages, got shape {P.shape}")
    if not ((0 <= P) & (P <= 1)).all():
        raise ValueError("activation probabilities must lie in [0, 1]")
    if not 0 < entropy_quantile < 1 or not 0 < prob_quantile < 1:
        raise ValueError("entropy_quantile and prob_quantile must be in (0, 1)")
    p = P / np.maximum(P.sum(-1, keepdims=True), 1e-12)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    prob_threshold = float(np.quantile(P, prob_quantile))
    active = P.max(-1) >= prob_threshold
    if not active.any():
        raise ValueError("no neuron reaches the activation-probability threshold")
    # "nearest": the threshold is an observed entropy (the bottom quantile rounded to whole neurons), never a
    # value interpolated between two neurons
    entropy_threshold = float(np.quantile(entropy[active], entropy_quantile, method="nearest"))
    selected = active & (entropy <= entropy_threshold)
    assignment = selected[..., None] & (P >= prob_threshold)
    return LapeResult(entropy, selected, assignment, prob_threshold, entropy_threshold)


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two neuron sets (1.0 when both are empty)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0
