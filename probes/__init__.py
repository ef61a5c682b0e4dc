"""Linear probes on cached activations, fitted per layer and compared across models; SNMF features."""

from .lape import LapeResult, activation_probability, iou, lape
from .linear import LDAProbe, LogisticProbe, MassMeanProbe
from .snmf import SNMF, SafetensorsChunks, feature_usage, match_features
from .similarity import cosine, generalization_matrix, mahalanobis_cosine, transfer
from .sweep import LayerFit, ProbeRecord, fit_layers, score_layers, sweep

__all__ = [
    "LDAProbe", "LayerFit", "LogisticProbe", "MassMeanProbe", "ProbeRecord", "SNMF", "SafetensorsChunks",
    "cosine", "feature_usage", "fit_layers", "match_features", "LapeResult", "activation_probability", "iou", "lape",
    "generalization_matrix", "mahalanobis_cosine", "score_layers", "sweep", "transfer",
]
