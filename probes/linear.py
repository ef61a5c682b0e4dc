"""Linear probes as scikit-learn estimators.

Each probe is a binary classifier with a unit ``direction_`` in activation
space, a ``decision_function`` (signed distance along its weight vector plus an
intercept), ``predict``/``score`` (accuracy) and :meth:`auroc`. They follow the
scikit-learn contract (``__init__`` only stores hyper-parameters, ``fit``
returns ``self``, learned attributes end in ``_``), so they clone per layer and
drop into pipelines and ``cross_val_score``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 5)); y = (X[:, 0] > 0).astype(int)
>>> probe = MassMeanProbe().fit(X, y)
>>> round(float(abs(probe.direction_[0])), 2), probe.score(X, y) > 0.9
(0.98, True)
"""

from __future__ import annotations

import math
import warnings
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._checks import check_integer, check_number
from ._fit import logistic_newton, mean_difference

__all__ = ["MassMeanProbe", "LogisticProbe", "LDAProbe"]


class _LinearProbe(ClassifierMixin, BaseEstimator):
    """Shared fit/predict logic; subclasses implement ``_solve(X, y) -> (coef, intercept)`` in torch."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _solve(self, X: torch.Tensor, y: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y):
        """Fit on ``X: [n_samples, d]`` and binary labels ``y``.

        Warns (``RuntimeWarning``) where the fitted weight vector is zero (the two classes' rows do not differ
        along any direction the probe can use, e.g. constant ``X``): ``direction_`` is then the zero vector, an
        undefined direction, and every prediction is one class.

        Raises:
            ValueError: ``y`` with other than two classes, NaN or inf in ``X``, ``X`` and ``y`` of different
                lengths, values of ``X`` so large that their squares overflow float64, or a
                hyper-parameter out of range (see the subclass).
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(
                f"Only binary classification is supported. {type(self).__name__} is a binary probe; "
                f"y has {len(self.classes_)} class(es): {self.classes_[:5]}"
            )
        big = max(abs(float(X.max())), abs(float(X.min())))
        if not math.isfinite(4 * big * big * sum(X.shape)):  # the bound on the fit's sums of squares
            raise ValueError(f"X's values are too large (max |x| = {big:.3g}): their squares overflow float64 in "
                             "the fit; rescale X")
        y01 = torch.tensor(y == self.classes_[1], dtype=torch.float64)[None]
        coef, intercept = self._solve(torch.tensor(X, dtype=torch.float64)[None], y01)
        coef = coef[0].numpy()
        if not (np.isfinite(coef).all() and np.isfinite(intercept.numpy()).all()):
            raise ValueError(
                f"{type(self).__name__}: the fitted weights are not finite (max |x| = {float(np.abs(X).max()):.3g}); "
                "rescale X"
            )
        norm = np.linalg.norm(coef)
        self.coef_ = coef[None, :]
        self.intercept_ = intercept.numpy().reshape(1)
        self.direction_ = coef / norm if norm > 0 else coef
        if norm == 0:
            warnings.warn(
                f"{type(self).__name__}: the fitted weight vector is zero (the classes' rows do not differ along "
                "any direction, e.g. constant X): direction_ is the zero vector (undefined) and every prediction "
                f"is {np.asarray(self.classes_[int(self.intercept_[0] > 0)]).item()!r}",
                RuntimeWarning, stacklevel=2,
            )
        return self

    def decision_function(self, X) -> np.ndarray:
        """``X @ coef_ + intercept_``: positive means ``classes_[1]``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.coef_[0] + self.intercept_[0]

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def auroc(self, X, y) -> float:
        """Area under the ROC curve of the decision function."""
        return float(roc_auc_score(np.asarray(y) == self.classes_[1], self.decision_function(X)))


class MassMeanProbe(_LinearProbe):
    """Difference of class means (Marks & Tegmark 2023, "mass-mean" probe).

    Args:
        covariance: whiten the difference by the pooled within-class covariance
            (their "iid" variant, ``Sigma^-1 (mu_1 - mu_0)``), which classifies
            better; the plain difference is the more causal direction.
        ridge: relative ridge added to the covariance for the solve.

    Raises:
        ValueError: (in ``fit``) ``ridge`` negative or not finite.
        TypeError: (in ``fit``) ``ridge`` not a number.
    """

    def __init__(self, covariance: bool = False, ridge: float = 1e-6):
        self.covariance = covariance
        self.ridge = ridge

    def _solve(self, X, y):
        check_number("ridge", self.ridge, lambda r: r >= 0, "a finite number >= 0")
        return mean_difference(X, y, covariance=self.covariance, ridge=self.ridge)


class LDAProbe(_LinearProbe):
    """Fisher's linear discriminant with Ledoit-Wolf shrinkage of the pooled covariance.

    The shrinkage is estimated once on the pooled within-class residuals
    (scikit-learn's ``LinearDiscriminantAnalysis`` shrinks each class's
    covariance separately on standardised features; the directions agree to
    a cosine above 0.99 on typical data).

    Args:
        shrinkage: ``"auto"`` (Ledoit-Wolf), a float in [0, 1], or ``None``.

    Raises:
        ValueError: (in ``fit``) ``shrinkage`` other than ``"auto"``, ``None`` or a number in [0, 1].
    """

    def __init__(self, shrinkage: float | str | None = "auto"):
        self.shrinkage = shrinkage

    def _solve(self, X, y):
        if self.shrinkage is not None and self.shrinkage != "auto" and (
                not isinstance(self.shrinkage, Real) or not 0 <= float(self.shrinkage) <= 1):
            raise ValueError(f"shrinkage must be 'auto', None or in [0, 1], got {self.shrinkage!r}")
        return mean_difference(X, y, covariance=True, shrinkage=self.shrinkage)


class LogisticProbe(_LinearProbe):
    """L2-regularised logistic regression, same objective as ``LogisticRegression(C=C)``.

    Fitted by batched Newton steps (see :func:`probes._fit.logistic_newton`),
    so a sweep fits every layer at once.

    Raises:
        ValueError: (in ``fit``) ``C`` not a finite positive number, or ``max_iter`` below 1.
        TypeError: (in ``fit``) ``C`` not a number, or ``max_iter`` not an integer.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 50):
        self.C = C
        self.max_iter = max_iter

    def _solve(self, X, y):
        check_number("C", self.C, lambda c: c > 0, "positive and finite")
        check_integer("max_iter", self.max_iter, 1)
        coef, intercept, n_iter = logistic_newton(X, y, C=self.C, max_iter=self.max_iter)
        self.n_iter_ = np.array([n_iter])
        return coef, intercept
