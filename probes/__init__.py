"""Linear probes on cached activations, fitted per layer and compared across models."""

from .linear import LDAProbe, LogisticProbe, MassMeanProbe
from .sweep import LayerFit, ProbeRecord, fit_layers, score_layers, sweep

__all__ = ["LDAProbe", "LayerFit", "LogisticProbe", "MassMeanProbe", "ProbeRecord", "fit_layers", "score_layers", "sweep"]
