"""Fit a probe at every layer of every model in one call, with batched torch ops.

:func:`fit_layers` solves the probe of every layer of a ``[n_samples, layer,
d]`` stack together (one batched solve instead of a loop of estimator fits);
:func:`sweep` does it for each model and method and scores each probe on
held-out rows, returning plain :class:`ProbeRecord` rows.

>>> import torch
>>> X = torch.randn(100, 3, 8); y = (X[:, :, 0].sum(1) > 0).long()
>>> fit = fit_layers(X, y, "mass_mean")
>>> fit.coef.shape, fit.direction.shape
(torch.Size([3, 8]), torch.Size([3, 8]))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float

from ._checks import check_number
from ._fit import logistic_newton, mean_difference

__all__ = ["METHODS", "LayerFit", "ProbeRecord", "fit_layers", "score_layers", "sweep"]

METHODS = ("mass_mean", "mass_mean_cov", "lda", "logistic")


@dataclass(frozen=True)
class LayerFit:
    """Probes of every layer: ``decision = X @ coef + intercept`` (positive = class 1)."""

    method: str
    coef: Float[torch.Tensor, "layer d"]
    intercept: Float[torch.Tensor, " layer"]

    @property
    def direction(self) -> Float[torch.Tensor, "layer d"]:
        """Unit weight vector of each layer's probe."""
        return self.coef / self.coef.norm(dim=-1, keepdim=True).clamp_min(1e-30)


@dataclass(frozen=True)
class ProbeRecord:
    """One probe: fitted on ``model``'s activations at ``layer`` with ``method``."""

    layer: int
    model: str
    method: str
    accuracy: float
    """held-out accuracy on the same model's activations"""
    auroc: float
    train_accuracy: float
    direction: torch.Tensor = field(repr=False)


def _check(X, y, *, both_classes: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``X: [n_samples, layer, d]`` (at least one layer and one dimension, finite) and 0/1 labels ``y:
    [n_samples]``; with ``both_classes``, both labels present."""
    if y is None:
        raise TypeError("y is None: these prompts have no labels (a prompt file read without its label column? "
                        "interp.datasets.load_file names the column with label_column=)")
    X = torch.as_tensor(X)
    y = torch.as_tensor(y)
    if X.ndim != 3:
        raise ValueError(f"X must be [n_samples, layer, d], got shape {tuple(X.shape)}")
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(f"X has no layers or no dimensions (shape {tuple(X.shape)}): nothing to probe; "
                         "collect at least one layer")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must be [n_samples] = [{X.shape[0]}], got shape {tuple(y.shape)}")
    classes = torch.unique(y)
    if not set(classes.tolist()) <= {0, 1} or (both_classes and len(classes) != 2):
        raise ValueError(f"labels must be 0/1 with both classes present, got classes {classes.tolist()}"
                         if both_classes else f"labels must be 0/1, got classes {classes.tolist()}")
    if not torch.isfinite(X).all():
        raise ValueError("activations contain NaN or inf")
    return X, y


def _check_fit(fit: LayerFit, X: torch.Tensor) -> None:
    """``fit`` has one finite probe per layer of ``X: [n_samples, layer, d]``."""
    if tuple(fit.coef.shape) != tuple(X.shape[1:]) or tuple(fit.intercept.shape) != (X.shape[1],):
        raise ValueError(f"the probes are [layer, d] = {tuple(fit.coef.shape)} but X is [n_samples, layer, d] = "
                         f"{tuple(X.shape)}: score them on activations of the layers and width they were fitted on")
    bad = (~torch.isfinite(fit.coef).all(-1) | ~torch.isfinite(fit.intercept)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"the probes have NaN or inf weights at layer slots {bad}")


def fit_layers(
    X, y, method: str = "mass_mean", *, C: float = 1.0, tol: float = 1e-4, dtype: torch.dtype = torch.float32
) -> LayerFit:
    """Fit ``method`` at every layer of ``X: [n_samples, layer, d]`` with labels ``y: [n_samples]`` (0/1).

    Methods: ``mass_mean`` (difference of means), ``mass_mean_cov``
    (covariance-corrected, Marks & Tegmark's iid variant), ``lda``
    (Ledoit-Wolf shrinkage), ``logistic`` (L2, ``C`` as in scikit-learn).
    ``tol`` and ``dtype`` set the logistic solver's stopping rule and
    precision (float32 with ``tol=1e-4`` matches scikit-learn's held-out
    accuracy at half the cost of float64; the mean-based methods always
    accumulate in float64).

    Warns (``RuntimeWarning``) where a layer's weight vector is zero (the classes' activations do not differ
    there, e.g. the same token in every prompt): its direction is undefined (:attr:`LayerFit.direction` is
    zero there) and its probe predicts one class.

    Raises:
        ValueError: ``X`` not ``[n_samples, layer, d]`` with at least one layer and dimension, ``y`` not
            ``[n_samples]`` 0/1 labels with both classes, NaN or inf in ``X``, values of ``X`` whose squares
            overflow float64, an unknown ``method``, ``C`` not a finite positive number, ``tol`` not a finite
            number >= 0, or ``dtype`` other than ``torch.float32``/``torch.float64``.
        TypeError: ``C`` or ``tol`` not a number.
    """
    X, y = _check(X, y)
    if method not in METHODS:
        raise ValueError(f"unknown probe method {method!r}; one of {METHODS}")
    check_number("C", C, lambda c: c > 0, "positive and finite")
    check_number("tol", tol, lambda t: t >= 0, "a finite number >= 0")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64 (the logistic solver's precision), "
                         f"got {dtype!r}")
    big = max(abs(float(X.max())), abs(float(X.min())))
    if not math.isfinite(4 * big * big * (X.shape[0] + X.shape[2])):  # the bound on the fit's sums of squares
        raise ValueError(f"X's values are too large (max |x| = {big:.3g}): their squares overflow float64 in the "
                         "fit; rescale X")
    Xl = X.transpose(0, 1).double()  # [layer, n, d]
    yl = y.double().expand(Xl.shape[0], -1)
    if method == "mass_mean":
        coef, b = mean_difference(Xl, yl)
    elif method == "mass_mean_cov":
        coef, b = mean_difference(Xl, yl, covariance=True)
    elif method == "lda":
        coef, b = mean_difference(Xl, yl, covariance=True, shrinkage="auto")
    elif method == "logistic":
        coef, b, _ = logistic_newton(Xl, yl, C=C, tol=tol, dtype=dtype)
        coef, b = coef.double(), b.double()
    else:  # pragma: no cover - checked above
        raise ValueError(f"unknown probe method {method!r}; one of {METHODS}")
    bad = (~torch.isfinite(coef).all(-1) | ~torch.isfinite(b)).nonzero().flatten().tolist()
    if bad:  # pragma: no cover - a safety net: finite activations of a bounded size give finite probes
        raise ValueError(f"fit_layers: the {method} probe is not finite at layer slots {bad}; rescale X")
    zero = (coef.norm(dim=-1) == 0).nonzero().flatten().tolist()
    if zero:
        warnings.warn(f"fit_layers: the {method} probe's weight vector is zero at layer slots {zero} (the classes' "
                      "activations do not differ there, e.g. the same token in every prompt): its direction is "
                      "undefined there and it predicts one class", RuntimeWarning, stacklevel=2)
    return LayerFit(method, coef, b)


def score_layers(fit: LayerFit, X, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer accuracy and AUROC of ``fit`` on ``X: [n_samples, layer, d]``.

    Raises:
        ValueError: ``X``, ``y`` as :func:`fit_layers` takes them (both classes present: AUROC needs them),
            probes of another shape than ``[layer, d]`` of ``X``, or probes with NaN or inf weights.
    """
    X, y = _check(X, y)
    _check_fit(fit, X)
    scores = torch.einsum("nld,ld->ln", X.double(), fit.coef.double()) + fit.intercept.double()[:, None]
    acc = ((scores > 0).long() == y).double().mean(-1)
    return acc, _auroc(scores, y)


def _auroc(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUROC per row of ``scores: [layer, n]`` (ties count half)."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    greater = (pos[:, :, None] > neg[:, None, :]).double().mean((1, 2))
    ties = (pos[:, :, None] == neg[:, None, :]).double().mean((1, 2))
    return greater + 0.5 * ties


def sweep(
    train: Mapping[str, object],
    test: Mapping[str, object],
    site: str = "resid_post",
    methods: Sequence[str] = ("mass_mean", "logistic"),
) -> tuple[list[ProbeRecord], dict[tuple[str, str], LayerFit]]:
    """Fit every method at every layer of every model and score it on held-out rows.

    Args:
        train, test: ``model name -> Activations`` (e.g. ``{"base": ..., "post": ...}``),
            collected on labelled prompts; test rows must be disjoint from train rows.
        site: which site's activations to probe.
        methods: probe methods (see :data:`METHODS`).

    Returns:
        ``(records, fits)``: one :class:`ProbeRecord` per model x method x
        layer, and the fitted probes keyed by ``(model, method)``.

    Raises:
        ValueError: ``train`` and ``test`` naming different models or none, no methods, activations
            collected at different layers or without labels, and whatever :func:`fit_layers` and
            :func:`score_layers` raise.
        TypeError: ``methods`` given as one string instead of a sequence of names.
    """
    if set(train) != set(test):
        raise ValueError(f"train and test name different models: {sorted(train)} vs {sorted(test)}")
    if not train:
        raise ValueError("train and test name no models: nothing to probe")
    if isinstance(methods, str):
        raise TypeError(f"methods must be a sequence of method names, got the string {methods!r}; "
                        f"pass ({methods!r},)")
    if not methods:
        raise ValueError(f"methods is empty: name at least one of {METHODS}")
    records, fits = [], {}
    for model in train:
        tr, te = train[model], test[model]
        if tr.layers != te.layers:
            raise ValueError(f"{model}: train and test were collected at different layers")
        if tr.labels is None or te.labels is None:
            raise ValueError(f"{model}: probes need labelled prompts")
        Xtr, Xte = tr[site], te[site]
        for method in methods:
            fit = fit_layers(Xtr, tr.labels, method)
            fits[model, method] = fit
            acc, auc = score_layers(fit, Xte, te.labels)
            train_acc, _ = score_layers(fit, Xtr, tr.labels)
            for slot, layer in enumerate(tr.layers):
                records.append(ProbeRecord(
                    layer=layer, model=model, method=method, accuracy=float(acc[slot]), auroc=float(auc[slot]),
                    train_accuracy=float(train_acc[slot]), direction=fit.direction[slot].float(),
                ))
    return records, fits
