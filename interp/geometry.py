"""Geometry and divergence: how a base model's activations and its post-trained version's relate, as numbers.

Every function takes NumPy arrays or torch tensors (any float dtype, any device), works in float64 on the CPU and
returns NumPy float64 (floats for one row). Inputs are ``[n_samples, d]`` activation matrices unless said otherwise.
An input that is malformed (mismatched rows, NaN or inf, too few samples for the estimator) raises ``ValueError``;
a quantity that is *undefined on valid data* (a matrix without variance, a zero vector) is returned as NaN with a
``RuntimeWarning`` that says why, never as a number (as :func:`probes.similarity.cosine` does).

**Representational similarity** (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network
Representations Revisited", ICML, §3-4):

* :func:`linear_cka` — linear centred kernel alignment, ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on
  column-centred ``X`` and ``Y`` (their eq. for the linear kernel); ``debiased=True`` replaces each of the three
  HSIC terms by the unbiased HSIC estimator of Song, Smola, Gretton, Bedo & Borgwardt (2012, JMLR 13, eq. 5),
  exactly as Kornblith's reference notebook ``feature_space_linear_cka(..., debiased=True)`` does (also used by
  Nguyen, Raghu & Kornblith 2021). Biased CKA of *independent* matrices is far from 0 unless ``n >> d`` (about
  ``sqrt(d_x d_y / ((n + d_x)(n + d_y)))`` for isotropic Gaussians); the debiased estimate is centred on 0.

**Spectrum** (read from the official code of Li, Agrawal, Ghosh, Teru, Santoro, Lajoie & Richards 2025, "Tracing
the Representation Geometry of Language Models from Pretraining to Post-training", NeurIPS; github.com/melodylizx/
Tracing-the-representation-geometry-of-language-models, ``utils/powerlaw.py`` and ``rankme_alpha_scripts/``):

* :func:`rankme` — RankMe of Garrido, Balestriero, Najman & LeCun (2023, ICML, eq. 1),
  ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / ||sigma||_1 + eps``; ``convention`` picks the paper's spectrum
  (singular values of ``X`` as given) or Li et al.'s (eigenvalues of the covariance of centred ``X``).
* :func:`alpha_req` — alpha-ReQ of Agrawal, Mondal, Ghosh & Richards (2022, NeurIPS): the decay
  ``lambda_i ~ i^-alpha`` of the covariance eigenspectrum, fitted as Li et al.'s code fits it (with the
  ``get_powerlaw`` of Stringer & Pachitariu, github.com/MouseLand/stringer-pachitariu-et-al-2018b: least squares of
  ``log lambda_i`` on ``log i`` weighted by ``1/i`` over eigen-ranks 12..100).

**Paths** (Marín 2026, "How Transformers Reject Wrong Answers: Rotational Dynamics of Factual Constraint
Processing", arXiv:2603.13259):

* :func:`path_geometry` — two residual vectors (or their displacements from a common origin, the paper's
  query-only state): norms, norm ratio, cosine, angle in degrees, and the share of their squared distance due to
  the change of direction (rotation) rather than of length (rescaling).

**Divergence** (logit lens):

* :func:`next_token_divergence` — ``KL(p || q)`` and the Jensen-Shannon divergence per row of two
  log-probability arrays, in nats.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float

from ._checks import as_int

__all__ = ["AlphaReQ", "Divergence", "FIT_RANGE", "LI2025_TOP", "PathGeometry", "RANKME_EPS", "alpha_req",
           "linear_cka", "next_token_divergence", "path_geometry", "rankme"]

Array = np.ndarray | torch.Tensor

#: Eigen-ranks (1-based, inclusive) of the alpha-ReQ fit in Li et al.'s code: ``stringer_get_powerlaw(eigen,
#: np.arange(11, 100))`` fits the 0-based eigenvalues 11..99, i.e. ranks 12..100.
FIT_RANGE = (12, 100)
#: The ``eps`` added to each normalised value in RankMe: Garrido et al.'s reference code and Li et al.'s ``rankme``.
RANKME_EPS = 1e-7
#: Li et al.'s code keeps at most this many covariance eigenvalues (``PCA(n_components=min(2048, n, d))``).
LI2025_TOP = 2048
# Centred data whose Frobenius norm is below this share of the raw data's has no variance beyond centring's rounding.
_NO_VARIANCE = 1e-12
# Rows of log-probabilities whose total probability is off 1 by more than this (in log space) are refused.
_LOGSUMEXP_TOL = 1e-3
# Elements of float64 per block of rows in next_token_divergence (memory bound: 8 arrays of this size).
_BLOCK = 1 << 22


# ------------------------------------------------------------------------------------------------ helpers


def _matrix(name: str, X, *, min_rows: int = 1) -> np.ndarray:
    """``X`` as a float64 ``[n, d]`` NumPy array, checked.

    Raises:
        ValueError: not 2-D, no columns, fewer than ``min_rows`` rows, or NaN/inf.
    """
    arr = X.detach().to("cpu", torch.float64).numpy() if isinstance(X, torch.Tensor) else np.asarray(X, np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a [n_samples, d] matrix with d >= 1; got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has {arr.shape[0]} samples (rows); this needs at least {min_rows}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(0, keepdims=True)


def _no_variance(name: str, X: np.ndarray, Xc: np.ndarray) -> str | None:
    """Why ``X`` (centred: ``Xc``) has no variance, or ``None`` when it has some."""
    scale = float(np.linalg.norm(X))
    if scale == 0.0 or float(np.linalg.norm(Xc)) <= _NO_VARIANCE * scale:
        return f"{name} has no variance (every row is the same, to rounding)"
    return None


def _undefined(what: str, reason: str) -> float:
    warnings.warn(f"{what} is undefined (NaN): {reason}", RuntimeWarning, stacklevel=3)
    return float("nan")


# ------------------------------------------------------------------------------------------------ CKA


def _unbiased_hsic(cross: float, diag_k: np.ndarray, diag_l: np.ndarray, n: int) -> float:
    """``n (n - 3)`` times Song et al.'s (2012, eq. 5) unbiased HSIC of two linear kernels on centred data.

    With ``K = X X^T``, ``L = Y Y^T`` of *centred* data and ``K~``, ``L~`` their copies with zero diagonals,
    ``1^T K 1 = 0``, so ``1^T K~ 1 = -tr K`` and ``K~ 1 = -diag K``; eq. 5's
    ``tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1`` becomes
    ``tr(K L) - n/(n-2) diag(K).diag(L) + tr K tr L / ((n-1)(n-2))``, with ``cross = tr(K L)``.
    """
    return float(cross - n / (n - 2.0) * diag_k @ diag_l + diag_k.sum() * diag_l.sum() / ((n - 1.0) * (n - 2.0)))


def linear_cka(X: Float[Array, "n dx"], Y: Float[Array, "n dy"], debiased: bool = False) -> float:
    """Linear CKA of two representations of the same ``n`` samples (Kornblith et al. 2019), dimensionless, <= 1.

    ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred ``X``, ``Y``: HSIC of the two linear
    kernels, normalised (Kornblith et al., eq. 4 and §4 "linear kernel"). Invariant to an orthogonal transform and
    an isotropic scaling of either side, not to an arbitrary invertible one. Computed from the ``d x d`` products
    when the features are few, from the ``n x n`` Gram matrices when the samples are (the same number either way).

    ``debiased=True``: each of ``||Y^T X||_F^2``, ``||X^T X||_F^2``, ``||Y^T Y||_F^2`` is replaced by the unbiased
    HSIC estimator of Song et al. (2012, eq. 5; up to the common factor ``n (n - 3)``, which cancels), as in
    Kornblith's reference notebook (``feature_space_linear_cka(..., debiased=True)``). This removes the
    positive bias of CKA at ``n`` not much larger than ``d`` (biased CKA of independent random matrices with
    ``n = 50``, ``d = 200`` is about 0.8); its value can be slightly negative, and the ratio of unbiased terms is
    itself not exactly unbiased.

    Args:
        X: ``[n, d_x]`` activations. Y: ``[n, d_y]`` activations of the same samples, row for row.
        debiased: use the unbiased HSIC estimator (needs ``n >= 4``).

    Returns:
        The CKA. NaN with a ``RuntimeWarning`` (undefined) where ``X`` or ``Y`` has no variance (all rows equal, to
        rounding), or, debiased, where an unbiased self-HSIC is not positive (a tiny or degenerate sample).

    Raises:
        ValueError: ``X`` or ``Y`` not 2-D, NaN or inf, different numbers of rows, fewer than 2 rows (4 debiased).

    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> round(linear_cka(x, 3 * x), 12)
    1.0
    """
    X, Y = _matrix("X", X), _matrix("Y", Y)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"X and Y must hold the same samples: X has {n} rows, Y has {Y.shape[0]}")
    low = 4 if debiased else 2
    if n < low:
        raise ValueError(f"linear_cka{' (debiased)' if debiased else ''} needs at least {low} samples; got {n}"
                         + (" (Song et al.'s unbiased HSIC divides by n - 3)" if debiased else ""))
    Xc, Yc = _centred(X), _centred(Y)
    reason = _no_variance("X", X, Xc) or _no_variance("Y", Y, Yc)
    if reason:
        return _undefined("linear CKA", reason)
    dx, dy = X.shape[1], Y.shape[1]
    if n * (dx + dy) < dx * dy + dx * dx + dy * dy:  # the n x n Gram matrices are cheaper than the d x d products
        K, L = Xc @ Xc.T, Yc @ Yc.T
        xy, xx, yy = float((K * L).sum()), float((K * K).sum()), float((L * L).sum())
    else:
        xy = float(np.linalg.norm(Xc.T @ Yc) ** 2)
        xx, yy = float(np.linalg.norm(Xc.T @ Xc) ** 2), float(np.linalg.norm(Yc.T @ Yc) ** 2)
    if debiased:
        kd, ld = np.einsum("ij,ij->i", Xc, Xc), np.einsum("ij,ij->i", Yc, Yc)  # diag(K), diag(L)
        biased_xx, biased_yy = xx, yy
        xy, xx, yy = _unbiased_hsic(xy, kd, ld, n), _unbiased_hsic(xx, kd, kd, n), _unbiased_hsic(yy, ld, ld, n)
        # a self-HSIC at the rounding level of its terms is 0: its square root would turn noise into a number
        for side, value, scale in (("X", xx, biased_xx), ("Y", yy, biased_yy)):
            if value <= _NO_VARIANCE * scale:
                return _undefined("debiased linear CKA", f"the unbiased HSIC of {side} with itself is not positive "
                                                         f"({value:.3g}): too few or degenerate samples")
    return xy / math.sqrt(xx * yy)


# ------------------------------------------------------------------------------------------------ spectrum


def _covariance_spectrum(X: np.ndarray) -> np.ndarray:
    """Eigenvalues of the sample covariance of ``X`` (``ddof=1``), descending, ``min(n, d)`` of them."""
    return np.linalg.svd(_centred(X), compute_uv=False) ** 2 / (X.shape[0] - 1)


def rankme(X: Float[Array, "n d"], *, eps: float = RANKME_EPS,
           convention: Literal["garrido2023", "li2025"] = "garrido2023") -> float:
    """RankMe, the smooth effective rank of Garrido et al. (2023, eq. 1): ``exp(-sum_k p_k log p_k)``, between about
    1 and ``min(n, d)``.

    * ``"garrido2023"`` (default): ``p_k = sigma_k(X) / ||sigma(X)||_1 + eps`` over the ``min(n, d)`` singular values
      of ``X`` **as given, not centred** — the paper's definition on the embedding matrix and its reference code
      (Garrido et al. apply it to raw embeddings; centre ``X`` first for the rank of its variance alone).
    * ``"li2025"``: Li et al.'s ``powerlaw.rankme(get_eigenspectrum(X))``: the same formula on the eigenvalues of the
      covariance of **column-centred** ``X`` (``sigma_k^2 / (n - 1)`` of centred ``X``, squared singular values, so a
      steeper distribution and a smaller value), the largest :data:`LI2025_TOP` (2048) of them, as their
      ``PCA(n_components=min(2048, n, d))`` keeps.

    A matrix with ``k`` equal non-zero singular values and the rest 0 has RankMe ``k`` (to ``O(eps)``) under both.
    Terms with ``p_k = 0`` (only with ``eps = 0``) add nothing (``0 log 0 = 0``).

    Args:
        X: ``[n, d]`` activations. eps: added to each normalised value (``>= 0``; Garrido et al. and Li et al.
            use ``1e-7``). convention: which spectrum (above).

    Returns:
        RankMe. NaN with a ``RuntimeWarning`` (undefined) where the spectrum is all zero (``X == 0``; under
        ``"li2025"`` also all rows equal).

    Raises:
        ValueError: ``X`` not 2-D, empty, NaN or inf; an unknown ``convention``; ``eps`` negative or not finite
            (``"li2025"`` also fewer than 2 rows).

    >>> round(rankme(np.diag([3.0, 3.0, 3.0, 0.0]), eps=0.0), 12)
    3.0
    """
    if convention not in ("garrido2023", "li2025"):
        raise ValueError(f"convention must be 'garrido2023' or 'li2025'; got {convention!r}")
    if not (isinstance(eps, (int, float, np.floating)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    X = _matrix("X", X, min_rows=2 if convention == "li2025" else 1)
    if convention == "garrido2023":
        values = np.linalg.svd(X, compute_uv=False)
    else:
        values = _covariance_spectrum(X)[:LI2025_TOP]
    total = float(np.abs(values).sum())
    if total == 0.0 or (convention == "li2025" and _no_variance("X", X, _centred(X))):
        return _undefined("RankMe", "X has no variance" if convention == "li2025" else "X is all zeros")
    p = values / total + eps
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return float(np.exp(-terms.sum()))


@dataclass(frozen=True)
class AlphaReQ:
    """The power-law decay of a covariance eigenspectrum (:func:`alpha_req`).

    Attributes:
        alpha: the decay exponent ``alpha`` of ``lambda_i ~ i^-alpha`` (dimensionless; larger = faster decay, fewer
            dominant directions). NaN when undefined.
        r2: coefficient of determination of the fitted line for ``log lambda_i`` over the fit range (unweighted,
            as ``sklearn.metrics.r2_score``). NaN when undefined.
        fit_range: ``(first, last)`` 1-based eigen-ranks fitted, inclusive.
        spectrum: ``[min(n, d)]`` the covariance eigenvalues, descending, normalised to sum 1 (explained-variance
            ratios; the normalisation changes neither ``alpha`` nor ``r2``).
    """

    alpha: float
    r2: float
    fit_range: tuple[int, int]
    spectrum: Float[np.ndarray, " k"]


def alpha_req(X: Float[Array, "n d"], fit_range: tuple[int, int] = FIT_RANGE, *, weighted: bool = True) -> AlphaReQ:
    """alpha-ReQ (Agrawal et al. 2022): the exponent of the power-law decay ``lambda_i ~ i^-alpha`` of the eigenvalues
    of the covariance of ``X``, fitted as in the official code of Li et al. (2025).

    What that code does (``utils/powerlaw.py``: ``get_eigenspectrum`` then ``stringer_get_powerlaw(eigen,
    np.arange(11, 100))``), and this function with the defaults:

    1. centre the columns of ``X``; the eigenvalues of its covariance (sklearn ``PCA.explained_variance_ratio_``:
       normalised to sum 1, which shifts ``log lambda`` by a constant and changes neither the slope nor R^2);
    2. fit ``log lambda_i = -alpha log i + c`` over eigen-ranks ``i = 12..100`` by least squares **weighted by**
       ``1/i`` (Stringer & Pachitariu's ``get_powerlaw``, which Li et al. reuse); ``alpha`` is minus the slope.

    ``weighted=False`` fits by ordinary least squares instead (Agrawal et al.'s description: linear regression in
    log-log space). R^2 here is over the fit range itself; Li et al.'s code reports ``r2_100`` over ranks 13..100 (its
    ``trange += 1`` shifts the start by one after the fit) and ``r2`` over ranks 13..500 (13..k-10 with fewer than
    512 eigenvalues) — the fit extrapolated past rank 100 — neither of which is reproduced.

    Args:
        X: ``[n, d]`` activations; the covariance has at most ``min(n - 1, d)`` non-zero eigenvalues, so the default
            range needs ``n >= 101`` and ``d >= 100``.
        fit_range: ``(first, last)`` 1-based eigen-ranks, inclusive, at least 3 of them.
        weighted: weight rank ``i`` by ``1/i`` (Li et al.'s code) or not.

    Returns:
        :class:`AlphaReQ`. ``alpha`` and ``r2`` are NaN, with a ``RuntimeWarning``, where an eigenvalue in the fit
        range is zero to rounding (``X`` spans fewer dimensions than ``last``): its logarithm is undefined. ``r2``
        alone is NaN, with a warning, where the eigenvalues over the range are all equal (``alpha = 0`` fits them
        exactly, but there is no variance for R^2 to explain).

    Raises:
        ValueError: ``X`` not 2-D, NaN or inf; ``fit_range`` not two integers ``1 <= first``, ``last - first >= 2``;
            ``last`` beyond ``min(n - 1, d)``.

    >>> s = np.arange(1, 121.0) ** -0.5  # singular values: lambda_i ~ i^-1
    >>> q, _ = np.linalg.qr(np.column_stack([np.ones(400), np.random.default_rng(0).normal(size=(400, 120))]))
    >>> X = q[:, 1:] * s  # orthonormal columns orthogonal to the ones vector: centring leaves X as it is
    >>> round(alpha_req(X).alpha, 9)
    1.0
    """
    ranks_given = list(fit_range) if isinstance(fit_range, (tuple, list)) else []
    if len(ranks_given) != 2 or any(as_int(v) is None for v in ranks_given):
        raise ValueError(f"fit_range must be two integer eigen-ranks (first, last); got {fit_range!r}")
    first, last = (as_int(v) for v in ranks_given)
    if first < 1 or last - first < 2:
        raise ValueError(f"fit_range must have 1 <= first and at least 3 ranks (last - first >= 2); got {fit_range!r}")
    X = _matrix("X", X, min_rows=2)
    n, d = X.shape
    if last > min(n - 1, d):
        raise ValueError(f"fit_range ends at eigen-rank {last}, but a covariance of n={n} samples in d={d} dimensions "
                         f"has at most min(n - 1, d) = {min(n - 1, d)} non-zero eigenvalues: collect more samples or "
                         f"fit fewer ranks")
    lam = _covariance_spectrum(X)
    total = lam.sum()
    spectrum = lam / total if total > 0 else lam
    ranks = np.arange(first, last + 1, dtype=np.float64)
    seg = lam[first - 1:last]
    zero = seg <= lam[0] * max(n, d) * np.finfo(np.float64).eps  # below the SVD's rounding of the largest
    if total == 0 or zero.any():
        reason = (f"the covariance eigenvalue at rank {first + int(np.argmax(zero))} is zero to rounding (X spans "
                  f"fewer than {last} dimensions), so its logarithm is undefined")
        _undefined("alpha-ReQ", reason)
        return AlphaReQ(float("nan"), float("nan"), (first, last), spectrum)
    x, y = np.log(ranks), np.log(spectrum[first - 1:last])
    w = 1.0 / ranks if weighted else np.ones_like(ranks)
    design = np.stack([x, np.ones_like(x)], 1)
    slope, intercept = np.linalg.solve(design.T @ (design * w[:, None]), design.T @ (w * y))
    residual = y - (slope * x + intercept)
    if np.ptp(y) > _NO_VARIANCE:
        r2 = 1.0 - float((residual ** 2).sum()) / float(((y - y.mean()) ** 2).sum())
    else:  # log lambda equal to rounding (an SVD's relative accuracy is ~1e-15): R^2 would be a ratio of noise
        r2 = _undefined("the R^2 of alpha-ReQ", f"the eigenvalues at ranks {first}..{last} are all equal: there is no "
                                                f"variance of log lambda to explain")
    return AlphaReQ(float(-slope), r2, (first, last), spectrum)


# ------------------------------------------------------------------------------------------------ paths


@dataclass(frozen=True)
class PathGeometry:
    """How two vectors ``a`` and ``b`` differ (:func:`path_geometry`); floats for one pair, ``[n]`` arrays for ``n``.

    Attributes:
        norm_a, norm_b: Euclidean norms (the activations' units).
        norm_ratio: ``||b|| / ||a||`` (1 = same length).
        cosine: ``a.b / (||a|| ||b||)``.
        angle: the angle between them in degrees, in [0, 180].
        rotation_share: the share of ``||a - b||^2`` due to the change of direction, in [0, 1]; the rest, the
            rescaling share, is ``1 - rotation_share`` (see :func:`path_geometry`).
    """

    norm_a: float | np.ndarray
    norm_b: float | np.ndarray
    norm_ratio: float | np.ndarray
    cosine: float | np.ndarray
    angle: float | np.ndarray
    rotation_share: float | np.ndarray


def _vectors(name: str, v) -> np.ndarray:
    arr = v.detach().to("cpu", torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"{name} must be a vector [d] or a batch [n, d] with d >= 1; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def path_geometry(h_a: Float[Array, "*n d"], h_b: Float[Array, "*n d"],
                  origin: Float[Array, "*n d"] | None = None) -> PathGeometry:
    """Norms, angle and the rotation/rescaling split of two residual vectors, or of their displacements from
    ``origin``.

    Forced-completion probing (Marín 2026) runs one query with a correct and with an incorrect continuation and
    reads, per layer, the *displacement vectors from the query-only representation*, ``a = h_correct - h_query`` and
    ``b = h_incorrect - h_query``; its finding is that they "maintain approximately equal magnitude but rotate apart
    in direction". Pass ``origin=h_query`` for that reading, or no origin to compare ``h_a`` and ``h_b`` themselves
    (e.g. one prompt's residual in the base and the post-trained model).

    The split is exact: with ``theta`` the angle, ``||a - b||^2 = (||a|| - ||b||)^2 + 4 ||a|| ||b|| sin^2(theta/2)``
    (the law of cosines); the first term is what changing length alone would give (rescaling), the second what
    turning alone at fixed lengths would give (rotation), and ``rotation_share`` is the second over the sum. Pure
    rotation (``||a|| = ||b||``) gives 1, pure rescaling (``theta = 0``) gives 0. The angle is computed as
    ``2 atan2(||u_a - u_b||, ||u_a + u_b||)`` of the unit vectors, accurate also near 0 and 180 degrees where
    ``arccos`` of the cosine is not.

    The paper's full text could not be read here (only its abstract, v1 and v2); the definitions above are those its
    abstract names (displacement magnitudes and their angular separation), and the rotation share is this module's.

    Args:
        h_a, h_b: ``[d]`` vectors or ``[n, d]`` batches (paired row for row).
        origin: ``[d]`` or ``[n, d]``, subtracted from both first.

    Returns:
        :class:`PathGeometry`. Undefined entries are NaN, with a ``RuntimeWarning`` naming the rows: the norm ratio,
        cosine, angle and rotation share where ``a`` is zero (the ratio) or either vector is zero (the rest), and the
        rotation share also where ``a == b`` (no difference to split).

    Raises:
        ValueError: shapes that are not ``[d]``/``[n, d]`` or do not match, NaN or inf.

    >>> g = path_geometry(np.array([3.0, 0.0]), np.array([0.0, 3.0]))
    >>> float(g.angle), float(g.norm_ratio), float(g.rotation_share)
    (90.0, 1.0, 1.0)
    """
    a, b = _vectors("h_a", h_a), _vectors("h_b", h_b)
    if a.shape != b.shape:
        raise ValueError(f"h_a and h_b must have the same shape; got {a.shape} and {b.shape}")
    if origin is not None:
        o = _vectors("origin", origin)
        if o.shape[-1] != a.shape[-1] or (o.ndim == 2 and o.shape != a.shape):
            raise ValueError(f"origin must be [d] or of h_a's shape {a.shape}; got {o.shape}")
        a, b = a - o, b - o
    single = a.ndim == 1
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    zero_a, zero_b = na == 0, nb == 0
    either = zero_a | zero_b
    with np.errstate(invalid="ignore", divide="ignore"):
        ua, ub = a / np.where(zero_a, 1.0, na)[:, None], b / np.where(zero_b, 1.0, nb)[:, None]
        theta = 2 * np.arctan2(np.linalg.norm(ua - ub, axis=1), np.linalg.norm(ua + ub, axis=1))
        cosine = np.clip((ua * ub).sum(1), -1.0, 1.0)
        ratio = np.where(zero_a, np.nan, nb / np.where(zero_a, 1.0, na))
        radial, turning = (na - nb) ** 2, 4 * na * nb * np.sin(theta / 2) ** 2
        total = radial + turning
        share = np.where(total > 0, turning / np.where(total > 0, total, 1.0), np.nan)
    theta, cosine, share = (np.where(either, np.nan, v) for v in (theta, cosine, share))
    angle = np.degrees(theta)
    bad = either | ~np.isfinite(share)
    if bad.any():
        rows = np.flatnonzero(bad).tolist()
        where = "" if single else f" at rows {rows[:10]}{' ...' if len(rows) > 10 else ''}"
        warnings.warn(f"path_geometry{where}: a zero vector has no direction, and a == b has no difference to split "
                      f"into rotation and rescaling; those entries are NaN (undefined)", RuntimeWarning, stacklevel=2)
    out = (na, nb, ratio, cosine, angle, share)
    if single:
        out = tuple(float(v[0]) for v in out)
    return PathGeometry(*out)


# ------------------------------------------------------------------------------------------------ divergence


@dataclass(frozen=True)
class Divergence:
    """Per-row divergences of two next-token distributions (:func:`next_token_divergence`), in nats.

    Attributes:
        kl: ``KL(p || q) = sum_v p_v (log p_v - log q_v)``, in ``[0, inf]``: ``inf`` where ``q`` gives probability 0
            to a token ``p`` does not.
        js: the Jensen-Shannon divergence ``KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, in
            ``[0, ln 2]``, symmetric and always finite.
    """

    kl: float | np.ndarray
    js: float | np.ndarray


def _logprob_rows(name: str, x, start: int, stop: int, vocab: int) -> np.ndarray:
    rows = x[start:stop]
    rows = rows.detach().to("cpu", torch.float64).numpy() if isinstance(rows, torch.Tensor) else rows.astype(np.float64)
    if np.isnan(rows).any() or np.isposinf(rows).any():
        raise ValueError(f"{name} contains NaN or +inf (rows {start}..{stop - 1}): log-probabilities are <= 0 or -inf")
    top = rows.max(1, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)  # a row of -inf only has no finite maximum
    with np.errstate(divide="ignore"):
        lse = (shift + np.log(np.exp(rows - shift).sum(1, keepdims=True)))[:, 0]
    off = ~(np.abs(lse) <= _LOGSUMEXP_TOL)
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} row {start + r} is not a log-probability distribution over its {vocab} tokens: its "
                         f"probabilities sum to {math.exp(lse[r]) if lse[r] < 700 else float('inf'):.6g} (logsumexp "
                         f"{lse[r]:.3g}, allowed |logsumexp| <= {_LOGSUMEXP_TOL}); pass log_softmax of the logits, "
                         f"computed in float32 or wider")
    return rows - lse[:, None]  # exactly normalised in float64


def next_token_divergence(logp: Float[Array, "*n vocab"], logq: Float[Array, "*n vocab"]) -> Divergence:
    """``KL(p || q)`` and Jensen-Shannon divergence per row of two log-probability arrays (logit lens), in nats.

    ``p`` and ``q`` are next-token distributions given as log-probabilities over the last axis (``log_softmax`` of
    logits; ``-inf`` for a token of probability 0). Each row must sum to 1 within ``|logsumexp| <= 1e-3`` (this
    refuses logits passed by mistake) and is then renormalised exactly in float64.

    * ``KL(p || q) = sum_v p_v (log p_v - log q_v)``; terms with ``p_v = 0`` add nothing (``0 log 0 = 0``); a token
      with ``p_v > 0`` and ``q_v = 0`` makes it ``+inf`` (the divergence is infinite, not undefined). Rounding
      below 0 is clipped to 0.
    * ``JS = KL(p || m)/2 + KL(q || m)/2``, ``m = (p + q)/2`` (Lin 1991), with ``log m = logaddexp(log p, log q) -
      ln 2``: finite, symmetric, in ``[0, ln 2]`` (clipped there against rounding). ``sqrt(JS)`` is
      ``scipy.spatial.distance.jensenshannon`` with its default natural base.

    Rows are processed in blocks, so a ``[n, vocab]`` array of any length needs memory for a few blocks only.

    Args:
        logp, logq: ``[..., vocab]`` log-probabilities of the same shape (NumPy or torch, any float dtype).

    Returns:
        :class:`Divergence` of ``[...]`` arrays (floats for ``[vocab]`` inputs).

    Raises:
        ValueError: shapes that differ, no tokens, NaN or ``+inf``, a row that is not a distribution.

    >>> logp = np.array([[np.log(0.5), np.log(0.5), -np.inf]])  # the third token has probability 0
    >>> d = next_token_divergence(logp, np.log([[0.25, 0.25, 0.5]]))
    >>> round(float(d.kl[0]) / math.log(2), 12), float(next_token_divergence(logp, logp).js[0])
    (1.0, 0.0)
    """
    logp = logp if isinstance(logp, torch.Tensor) else np.asarray(logp)
    logq = logq if isinstance(logq, torch.Tensor) else np.asarray(logq)
    shape_p, shape_q = tuple(logp.shape), tuple(logq.shape)
    if shape_p != shape_q:
        raise ValueError(f"logp and logq must have the same shape; got {shape_p} and {shape_q}")
    if len(shape_p) == 0 or shape_p[-1] == 0:
        raise ValueError(f"logp and logq need a vocabulary axis with at least one token; got shape {shape_p}")
    vocab, lead = shape_p[-1], shape_p[:-1]
    P, Q = logp.reshape(-1, vocab), logq.reshape(-1, vocab)
    n = P.shape[0]
    kl, js = np.empty(n), np.empty(n)
    step = max(1, _BLOCK // vocab)
    ln2 = math.log(2.0)
    for start in range(0, n, step):
        stop = min(n, start + step)
        lp, lq = _logprob_rows("logp", P, start, stop, vocab), _logprob_rows("logq", Q, start, stop, vocab)
        p, q = np.exp(lp), np.exp(lq)
        has_p, has_q = lp > -np.inf, lq > -np.inf
        with np.errstate(invalid="ignore"):
            kl_terms = np.where(has_p & has_q, p * (lp - lq), 0.0)
            lm = np.logaddexp(lp, lq) - ln2  # finite wherever p or q is non-zero
            js_terms = (np.where(has_p, p * (lp - lm), 0.0) + np.where(has_q, q * (lq - lm), 0.0)) / 2
        infinite = (has_p & ~has_q).any(1)
        kl[start:stop] = np.where(infinite, np.inf, np.maximum(kl_terms.sum(1), 0.0))
        js[start:stop] = np.clip(js_terms.sum(1), 0.0, ln2)
    if not lead:
        return Divergence(float(kl[0]), float(js[0]))
    return Divergence(kl.reshape(lead), js.reshape(lead))
