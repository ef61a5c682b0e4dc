"""Comparing probe directions across models and datasets, layer by layer.

* :func:`cosine` — Euclidean cosine of two directions per layer.
* :func:`mahalanobis_cosine` — cosine under the covariance ``Sigma`` of target
  data, ``u' Sigma v / sqrt(u' Sigma u * v' Sigma v)`` (Ying et al. 2026, "The
  truthfulness spectrum hypothesis"): it ignores differences in directions the
  data never varies along. With ``Sigma`` the data covariance it equals the
  Pearson correlation of the two projections, which is how it is computed
  here (no ``d x d`` matrix is formed).
* :func:`transfer` — per-layer accuracy (own threshold and target-centred) and
  AUROC of probes fitted on one activation set and scored on another (base ->
  post, or dataset A -> B).
* :func:`generalization_matrix` — train on each labelled set, test on each.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from jaxtyping import Float

from .sweep import LayerFit, fit_layers, score_layers

__all__ = ["TRANSFER_SCORES", "cosine", "mahalanobis_cosine", "transfer", "transfer_fields", "generalization_matrix"]

#: How reports store :func:`transfer`'s scores: key suffix and score (``transfer_base_to_post`` with the
#: source's threshold, ``..._auroc`` threshold-free, ``..._centred`` threshold through the target's mean).
TRANSFER_SCORES = (("", "accuracy"), ("_auroc", "auroc"), ("_centred", "accuracy_centred"))


def _undefined_where_zero(cos: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, what: str) -> torch.Tensor:
    """``cos`` with NaN (undefined) where a norm is exactly 0, and a ``RuntimeWarning`` naming those layers."""
    zero = (na == 0) | (nb == 0)
    if zero.any():
        warnings.warn(f"{what} at layers {zero.nonzero().flatten().tolist()}: it is NaN (undefined) there",
                      RuntimeWarning, stacklevel=3)
        cos = torch.where(zero, torch.full_like(cos, float("nan")), cos)
    return cos


def cosine(a: Float[torch.Tensor, "layer d"], b: Float[torch.Tensor, "layer d"]) -> Float[torch.Tensor, " layer"]:
    """Cosine similarity of ``a[l]`` and ``b[l]`` for every layer ``l``.

    NaN (undefined), with a ``RuntimeWarning`` naming the layers, where ``a[l]`` or ``b[l]`` has norm 0.

    Raises:
        ValueError: ``a`` and ``b`` of different shapes.
    """
    if a.shape != b.shape:
        raise ValueError(f"direction shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    return _undefined_where_zero((a * b).sum(-1) / (na * nb).clamp_min(1e-30), na, nb,
                                 "cosine: a direction of norm 0 (e.g. a zero difference of means) has no cosine")


def mahalanobis_cosine(
    a: Float[torch.Tensor, "layer d"], b: Float[torch.Tensor, "layer d"], X: Float[torch.Tensor, "n_samples layer d"]
) -> Float[torch.Tensor, " layer"]:
    """Cosine of ``a[l]`` and ``b[l]`` under the covariance of ``X[:, l]`` (the target data).

    NaN (undefined), with a ``RuntimeWarning`` naming the layers, where ``a[l]`` or ``b[l]`` has Mahalanobis
    norm 0 (a zero direction, or one along which ``X[:, l]`` does not vary).

    Raises:
        ValueError: shapes that do not match, fewer than 2 samples, or NaN or inf in ``X``.
    """
    if a.shape != b.shape or X.shape[1:] != a.shape:
        raise ValueError(f"shapes do not match: a {tuple(a.shape)}, b {tuple(b.shape)}, X {tuple(X.shape)}")
    if X.shape[0] < 2:
        raise ValueError("need at least two samples to estimate a covariance")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    Xc = X.double() - X.double().mean(0)
    pa = torch.einsum("nld,ld->ln", Xc, a.double())
    pb = torch.einsum("nld,ld->ln", Xc, b.double())
    na, nb = pa.norm(dim=-1), pb.norm(dim=-1)
    return _undefined_where_zero((pa * pb).sum(-1) / (na * nb).clamp_min(1e-30), na, nb,
                                 "mahalanobis_cosine: a direction along which X does not vary (or of norm 0) has "
                                 "no cosine")


def centred_fit(fit: LayerFit, center: Float[torch.Tensor, "layer d"]) -> LayerFit:
    """``fit``'s weights with the threshold moved through ``center`` (decision ``w . (x - center) > 0``)."""
    return LayerFit(fit.method, fit.coef, -(torch.as_tensor(center).double() * fit.coef.double()).sum(-1))


def transfer(fit: LayerFit, X, y, *, center: Float[torch.Tensor, "layer d"] | None = None) -> dict[str, torch.Tensor]:
    """Per-layer scores ``[layer]`` of probes ``fit`` (fitted elsewhere) on ``X: [n, layer, d]``, ``y: [n]``.

    Returns:
        ``accuracy``: with the probe's own threshold (its intercept, set on the source data): any shift
        of the target's activations along the probe's weight reads as failure. ``auroc``: threshold-free,
        how well the probe's direction still orders the target's classes. With ``center`` (the target's
        mean activation per layer, from its *training* rows, labels unused), ``accuracy_centred``:
        the decision ``w . (x - center) > 0``, the threshold moved through the target's mean, which for
        balanced classes is the mass-mean probe's own rule (midpoint of the class means, Marks & Tegmark
        2023) without the target's labels.

    Raises:
        ValueError: ``center`` is not ``[layer, d]`` like ``fit.coef`` or has NaN or inf, and whatever
            :func:`~probes.sweep.score_layers` raises (``X`` not of the probes' layers and width, ...).
    """
    acc, auc = score_layers(fit, X, y)
    out = {"accuracy": acc, "auroc": auc}
    if center is not None:
        center = torch.as_tensor(center)
        if center.shape != fit.coef.shape:
            raise ValueError(f"center must be [layer, d] = {tuple(fit.coef.shape)}, got {tuple(center.shape)}")
        if not torch.isfinite(center).all():
            raise ValueError("center contains NaN or inf")
        out["accuracy_centred"] = score_layers(centred_fit(fit, center), X, y)[0]
    return out


def transfer_fields(moved: Mapping[str, Mapping[str, torch.Tensor]], index: int) -> dict[str, float]:
    """``{"transfer_<direction><suffix>": value}`` at ``index`` (a layer slot) of each direction's
    :func:`transfer` scores, ``moved``: ``{"base_to_post": ..., "post_to_base": ...}``; suffixes as
    :data:`TRANSFER_SCORES`."""
    return {f"transfer_{direction}{suffix}": float(scores[key][index])
            for direction, scores in moved.items() for suffix, key in TRANSFER_SCORES}


def generalization_matrix(
    train: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    test: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    method: str = "mass_mean",
) -> tuple[list[str], list[str], Float[torch.Tensor, "n_train n_test layer"]]:
    """Held-out accuracy of a probe trained on each set and tested on each other set.

    Args:
        train, test: ``name -> (X [n, layer, d], y [n])``; entry ``[i, j, l]``
            of the result is the accuracy at layer ``l`` of the probe fitted
            on ``train[i]`` and scored on ``test[j]``.

    Raises:
        ValueError: ``train`` or ``test`` empty, and whatever :func:`~probes.sweep.fit_layers` and
            :func:`~probes.sweep.score_layers` raise.
    """
    rows, cols = list(train), list(test)
    if not rows or not cols:
        raise ValueError(f"train and test must each name at least one labelled set, got {len(rows)} and "
                         f"{len(cols)}")
    fits = {name: fit_layers(*train[name], method) for name in rows}
    out = torch.stack([torch.stack([score_layers(fits[r], *test[c])[0] for c in cols]) for r in rows])
    return rows, cols, out
