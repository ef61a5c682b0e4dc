"""Concept erasure: LEACE (Belrose, Schneider-Joseph, Ravfogel, Cotterell, Raff & Biderman 2023, "LEACE: Perfect
linear concept erasure in closed form", NeurIPS), through EleutherAI's ``concept-erasure`` library.

* :func:`erase` — fit a LEACE eraser of a concept ``z`` on activations ``X`` and return the erased activations
  with the eraser (to apply the same erasure to other rows, e.g. held-out ones).

LEACE is the affine map ``x -> x - W^+ P W (x - mean)`` with ``W`` the whitening ``Sigma_xx^{-1/2}`` and ``P`` the
orthogonal projection onto the column space of ``W Sigma_xz``: among affine maps after which the cross-covariance
of ``X`` with ``z`` is zero, the one that moves ``X`` least in expected squared distance (under every norm
``a^T M b`` with ``M`` p.s.d., Belrose et al. §4). Zero cross-covariance is what they show to be equivalent to
linear guardedness (§3): no linear classifier of the erased ``X`` predicts ``z`` better than a constant, on the data
the eraser was fitted on. It is not a re-implementation here: the fit is ``concept_erasure.LeaceFitter.fit`` and
the map its ``LeaceEraser``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from jaxtyping import Float

__all__ = ["RESIDUAL_TOL", "erase"]

#: Largest share of the concept's cross-covariance (Frobenius norm) left after erasure before :func:`erase` warns.
RESIDUAL_TOL = 1e-6


def _concept(z, n: int) -> torch.Tensor:
    """``z`` as a float64 ``[n, k]`` tensor: one-hot columns of the classes of 1-D labels, 2-D values as they are.

    Raises:
        ValueError: not 1-D/2-D, not ``n`` rows, NaN or inf, a single class.
    """
    arr = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"z must be [n] class labels or an [n, k] concept with n = {n} rows of X; got shape "
                         f"{arr.shape}")
    if arr.ndim == 1:
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ValueError("z contains NaN or inf")
        classes, ids = np.unique(arr, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"z has a single class ({classes[0]!r} for every row): there is no concept to erase")
        return torch.nn.functional.one_hot(torch.from_numpy(ids.reshape(-1)), len(classes)).double()
    values = arr.astype(np.float64)
    if arr.shape[1] == 0 or not np.isfinite(values).all():
        raise ValueError(f"z must have at least one column and finite values; got shape {arr.shape}"
                         f"{' with NaN or inf' if arr.shape[1] else ''}")
    return torch.from_numpy(values)


def erase(X: Float[np.ndarray | torch.Tensor, "n d"], z, **fitter_options):
    """Erase the concept ``z`` from ``X`` with LEACE; returns ``(X_erased, eraser)``.

    ``z`` is either ``[n]`` class labels (any values; each distinct value a class, one-hot encoded, so that more than
    two classes are erased as categories, not as one ordered number) or an ``[n, k]`` concept taken as it is (a
    continuous score: pass ``z[:, None]``). The fit and the map run in float64 through
    ``concept_erasure.LeaceFitter.fit(X, z_onehot, **fitter_options).eraser`` with the library's defaults unless
    ``fitter_options`` overrides them: ``method="leace"``, ``affine=True`` (the mean of ``X`` is kept),
    ``shrinkage=True`` (the covariance is shrunk toward a multiple of the identity before whitening, which changes
    how little the map moves ``X`` but not the zero cross-covariance), ``svd_tol=0.01`` (singular values of the
    whitened cross-covariance below it are not erased) and ``constrain_cov_trace=True`` (if the map would
    increase the total variance, it is mixed toward an orthogonal projection).

    The last two can leave some cross-covariance: ``erase`` measures what is left on the fitting rows,
    ``||Cov(X_erased, z)||_F / ||Cov(X, z)||_F``, and warns (``RuntimeWarning``) when it exceeds
    :data:`RESIDUAL_TOL`. The guarantee is about the fitting rows: applied to held-out rows, the eraser leaves a
    cross-covariance of the order of the estimation error, ``O(1/sqrt(n))``.

    Args:
        X: ``[n, d]`` activations (NumPy or torch, any float dtype, finite).
        z: ``[n]`` labels with at least 2 classes, or an ``[n, k]`` concept.
        fitter_options: keyword arguments of ``concept_erasure.LeaceFitter`` (above).

    Returns:
        ``(X_erased, eraser)``: ``X_erased`` ``[n, d]`` float64, a NumPy array for a NumPy ``X`` and a tensor on
        ``X``'s device for a tensor; ``eraser`` the fitted ``concept_erasure.LeaceEraser``, a callable on float64
        tensors ``[m, d]`` on that device (``eraser(torch.as_tensor(X_new, dtype=torch.float64))``).

    Raises:
        ValueError: ``X`` not 2-D, fewer than 2 rows, NaN or inf; ``z`` of the wrong shape, NaN or inf, or a single
            class. ImportError: ``concept-erasure`` is not installed.
    """
    from concept_erasure import LeaceFitter

    is_tensor = isinstance(X, torch.Tensor)
    Xt = X.detach().double() if is_tensor else torch.from_numpy(np.array(X, dtype=np.float64))
    if Xt.ndim != 2 or Xt.shape[0] < 2 or Xt.shape[1] == 0:
        raise ValueError(f"X must be a [n_samples, d] matrix with n >= 2 and d >= 1; got shape {tuple(Xt.shape)}")
    if not torch.isfinite(Xt).all():
        raise ValueError("X contains NaN or inf")
    Z = _concept(z, Xt.shape[0]).to(Xt.device)
    eraser = LeaceFitter.fit(Xt, Z, **fitter_options).eraser
    erased = eraser(Xt)
    Zc = Z - Z.mean(0)
    before = torch.linalg.norm((Xt - Xt.mean(0)).T @ Zc)
    after = torch.linalg.norm((erased - erased.mean(0)).T @ Zc)
    if before > 0 and after > RESIDUAL_TOL * before:
        warnings.warn(f"erase: {float(after / before):.3g} of the concept's cross-covariance is left on the fitting "
                      f"rows (svd_tol or constrain_cov_trace of concept_erasure.LeaceFitter); the concept may stay "
                      f"linearly decodable", RuntimeWarning, stacklevel=2)
    return (erased if is_tensor else erased.numpy()), eraser
