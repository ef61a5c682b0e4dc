"""Linear probes on cached activations, fitted per layer and compared across models."""

from .linear import LDAProbe, LogisticProbe, MassMeanProbe
from .similarity import cosine, generalization_matrix, mahalanobis_cosine, transfer
from .sweep import LayerFit, ProbeRecord, fit_layers, score_layers, sweep

__all__ = [
    "LDAProbe", "LayerFit", "LogisticProbe", "MassMeanProbe", "ProbeRecord", "cosine", "fit_layers",
    "generalization_matrix", "mahalanobis_cosine", "score_layers", "sweep", "transfer",
]
