"""Linear probes on cached activations, fitted per layer and compared across models."""

from .linear import LDAProbe, LogisticProbe, MassMeanProbe

__all__ = ["LDAProbe", "LogisticProbe", "MassMeanProbe"]
