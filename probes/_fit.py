"""Batched fitting of linear probes: one problem per leading index (a layer), solved together.

Every function takes ``X: [batch, n_samples, d]`` and ``y: [batch, n_samples]``
(0/1) as torch tensors and returns ``coef: [batch, d]`` and ``intercept:
[batch]`` in float64, so a whole stack of layers is fitted with a handful of
batched matrix operations instead of a Python loop of estimator fits.
"""

from __future__ import annotations

import torch
from jaxtyping import Float

__all__ = ["mean_difference", "logistic_newton", "ledoit_wolf_shrinkage"]


def _class_means(X, y):
    w1 = y / y.sum(-1, keepdim=True)
    w0 = (1 - y) / (1 - y).sum(-1, keepdim=True)
    return torch.einsum("bn,bnd->bd", w0, X), torch.einsum("bn,bnd->bd", w1, X)


def _pooled_covariance(X, y, mu0, mu1):
    centred = X - torch.where(y[..., None] > 0.5, mu1[:, None], mu0[:, None])
    return centred.transpose(1, 2) @ centred / X.shape[1]


def ledoit_wolf_shrinkage(centred: Float[torch.Tensor, "batch n_samples d"]) -> Float[torch.Tensor, " batch"]:
    """Ledoit & Wolf (2004) optimal shrinkage of the sample covariance towards ``mu * I``.

    Same estimator as ``sklearn.covariance.ledoit_wolf_shrinkage`` (data already centred).
    """
    n, d = centred.shape[1], centred.shape[2]
    emp = centred.transpose(1, 2) @ centred / n
    mu = torch.diagonal(emp, dim1=1, dim2=2).sum(-1) / d
    sq = centred**2
    beta_ = (sq.transpose(1, 2) @ sq).sum((1, 2)) / n - (emp**2).sum((1, 2))
    delta_ = (emp**2).sum((1, 2)) - 2 * mu * torch.diagonal(emp, dim1=1, dim2=2).sum(-1) + d * mu**2
    beta = torch.minimum(beta_ / n, delta_) / d
    delta = delta_ / d
    return torch.where(delta > 0, beta / delta, torch.zeros_like(delta))


def mean_difference(
    X: Float[torch.Tensor, "batch n_samples d"],
    y: Float[torch.Tensor, "batch n_samples"],
    *,
    covariance: bool = False,
    shrinkage: float | str | None = None,
    ridge: float = 1e-6,
) -> tuple[Float[torch.Tensor, "batch d"], Float[torch.Tensor, " batch"]]:
    """Difference of class means ("mass-mean", Marks & Tegmark 2023, eq. 1).

    With ``covariance=True`` the difference is whitened by the pooled
    within-class covariance, ``theta = Sigma^-1 (mu_1 - mu_0)`` (their
    "mass-mean-iid" probe, which is Fisher's LDA direction). ``shrinkage`` is a
    fixed coefficient in [0, 1] or ``"auto"`` (Ledoit-Wolf) blending Sigma with
    a scaled identity; ``ridge`` (relative to the mean variance) keeps the solve
    well posed. The threshold is the midpoint of the projected class means.
    """
    X, y = X.double(), y.double()
    mu0, mu1 = _class_means(X, y)
    coef = mu1 - mu0
    if covariance:
        sigma = _pooled_covariance(X, y, mu0, mu1)
        d = X.shape[-1]
        scale = torch.diagonal(sigma, dim1=1, dim2=2).mean(-1)
        eye = torch.eye(d, dtype=X.dtype, device=X.device)
        if shrinkage is not None:
            if shrinkage == "auto":
                centred = X - torch.where(y[..., None] > 0.5, mu1[:, None], mu0[:, None])
                s = ledoit_wolf_shrinkage(centred)
            else:
                s = torch.full_like(scale, float(shrinkage))
            sigma = (1 - s)[:, None, None] * sigma + (s * scale)[:, None, None] * eye
        sigma = sigma + (ridge * scale)[:, None, None] * eye
        coef = torch.linalg.solve(sigma, coef[..., None])[..., 0]
    intercept = -torch.einsum("bd,bd->b", coef, (mu0 + mu1) / 2)
    return coef, intercept


def logistic_newton(
    X: Float[torch.Tensor, "batch n_samples d"],
    y: Float[torch.Tensor, "batch n_samples"],
    *,
    C: float = 1.0,
    max_iter: int = 50,
    tol: float = 1e-8,
    dtype: torch.dtype = torch.float64,
) -> tuple[Float[torch.Tensor, "batch d"], Float[torch.Tensor, " batch"], int]:
    """L2-regularised logistic regression by batched Newton steps.

    Minimises ``0.5 * |w|^2 + C * sum_i logloss(y_i, x_i . w + b)`` with the
    intercept unpenalised: the objective of scikit-learn's
    ``LogisticRegression(C=C)``, so both reach the same optimum. Returns the
    coefficients, intercepts and the number of Newton steps taken. Steps stop
    when the largest update is below ``tol`` relative to the weights;
    ``dtype=torch.float32`` halves the cost of forming the Hessians.
    """
    X, y = X.to(dtype), y.to(dtype)
    B, n, d = X.shape
    Xb = torch.cat([X, torch.ones(B, n, 1, dtype=X.dtype, device=X.device)], -1)
    w = torch.zeros(B, d + 1, dtype=X.dtype, device=X.device)
    reg = torch.ones(d + 1, dtype=X.dtype, device=X.device)
    reg[-1] = 0.0  # no penalty on the intercept
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        z = (Xb @ w[..., None])[..., 0]
        p = torch.sigmoid(z)
        grad = C * ((p - y)[:, None, :] @ Xb)[:, 0] + reg * w
        s = C * p * (1 - p)
        H = (Xb * s[..., None]).transpose(1, 2) @ Xb + torch.diag_embed(reg + 1e-10)  # batched GEMM
        step = torch.linalg.solve(H, grad[..., None])[..., 0]
        w = w - step
        if step.abs().max() <= tol * (1 + w.abs().max()):
            break
    return w[:, :-1], w[:, -1], n_iter
