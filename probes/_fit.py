"""Batched fitting of linear probes: one problem per leading index (a layer), solved together.

Every function takes ``X: [batch, n_samples, d]`` and ``y: [batch, n_samples]``
(0/1) as torch tensors and returns ``coef: [batch, d]`` and ``intercept:
[batch]`` in float64, so a whole stack of layers is fitted with a handful of
batched matrix operations instead of a Python loop of estimator fits.
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Float
from sklearn.exceptions import ConvergenceWarning

__all__ = ["mean_difference", "logistic_newton", "ledoit_wolf_shrinkage"]


def solve_each(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.solve_ex(A, B)`` for a batch ``A: [batch, d, d]``, ``B: [batch, d, k]``, one matrix at a time.

    Torch's batched CPU LU factorises the matrices of a batch on several threads at once, and MKL's
    ``getrf`` is not safe to call that way: once ``torch.set_num_threads`` has been called in the process
    (by the user, a notebook, a library), a batched solve of matrices larger than about 150 x 150 prints
    ``Intel oneMKL ERROR: Parameter 6 was incorrect on entry to SLASWP`` and hangs or returns wrong
    results (pytorch/pytorch issues 141358 and 142815, open in torch 2.13). Solving each matrix alone
    takes MKL's own threaded path, which is safe, and costs no more here (measured: 30 systems of size
    578, 0.06 s looped against 0.07 s batched on two cores). Returns ``(solution, info)`` as
    ``solve_ex`` does (``info[i] > 0``: matrix ``i`` is singular).
    """
    if len(A) == 0:
        return torch.empty_like(B), torch.zeros(0, dtype=torch.int32, device=A.device)
    out = [torch.linalg.solve_ex(a, b) for a, b in zip(A, B)]
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


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
        # The relative ridge bounds cond(sigma) by about d / ridge whatever the scales of the columns (massive
        # activations, n < d); a layer whose columns are all constant within each class (scale 0) gets ridge * I.
        sigma = sigma + (ridge * torch.where(scale > 0, scale, torch.ones_like(scale)))[:, None, None] * eye
        # non-finite activations would corrupt the LU's pivots: those layers get NaN coefficients instead of a raise
        ok = torch.isfinite(sigma).all((1, 2)) & torch.isfinite(coef).all(-1)
        solved = torch.full_like(coef, float("nan"))
        sol, info = solve_each(sigma[ok], coef[ok][..., None])
        if (info > 0).any():  # the ridge keeps sigma positive definite; a zero pivot means broken input
            raise torch.linalg.LinAlgError(f"singular covariance in problems {ok.nonzero()[info > 0, 0].tolist()}")
        solved[ok] = sol[..., 0]
        coef = solved
    intercept = -torch.einsum("bd,bd->b", coef, (mu0 + mu1) / 2)
    return coef, intercept


def _column_stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-problem column means and scales ``[batch, d]`` (float64); constant columns get scale 1."""
    mean = X.mean(1)
    std = X.std(1, correction=0)
    # Any positive scale is an exact reparametrisation; 1 for (numerically) constant columns keeps 1/scale^2 finite.
    return mean, torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))


def _logistic_terms(Xb, y, theta, pen, C, z):
    """Gradient and Hessian of the penalised loss at ``theta``, whose logits are ``z = Xb @ theta``."""
    p = torch.sigmoid(z)
    # sigma(z) sigma(-z), not p (1 - p): 1 - p rounds to 0 for z > 17 in float32 although the weight is e^-z.
    s = (C * p) * torch.sigmoid(-z)
    g = C * ((p - y)[:, None, :] @ Xb)[:, 0] + pen * theta
    H = (Xb * s[..., None]).transpose(1, 2) @ Xb  # batched GEMM: the main cost
    torch.diagonal(H, dim1=1, dim2=2).add_(pen)
    return g, H


def _change(Xb, y, z, theta, step, pen, C):
    """Change of ``C * sum_i logloss_i + 0.5 * theta' diag(pen) theta`` from ``theta`` to ``theta - step``.

    Computed as a sum of per-sample differences, ``log1p(expm1(-dz) sigma(z)) +
    y dz`` (the exact difference of ``log(1 + e^z) - y z``), so its rounding is
    relative to the change rather than to the objective: in float32 the
    objective itself is too noisy (logits of ~10 carry errors of ~1e-5) to
    compare two iterates near the optimum. Returns the change, the sum of
    the absolute terms (the scale of its rounding error) and the change of
    the logits.
    """
    dz = (Xb @ step[..., None])[..., 0]
    terms = torch.log1p(torch.expm1(-dz) * torch.sigmoid(z)) + y * dz
    if not torch.isfinite(terms).all():  # expm1 overflowed (a huge step): the plain difference is accurate enough there
        direct = torch.nn.functional.softplus(z - dz) - torch.nn.functional.softplus(z) + y * dz
        terms = torch.where(torch.isfinite(terms), terms, direct)
    terms = C * terms
    quad = pen * step * (0.5 * step - theta)
    return terms.sum(-1) + quad.sum(-1), terms.abs().sum(-1) + quad.abs().sum(-1), dz


def _damped_solve(H, g, lam, lam_min, tries: int = 16):
    """Solve ``(H + lam * mu * I) step = g`` per problem, raising ``lam`` where that fails; never raises.

    ``mu`` is the mean diagonal of ``H``, so ``lam`` is relative. A solve fails
    where the LU factorisation meets a zero pivot, the step is not finite, or
    it is not a descent direction (``g . step <= 0``: ``H`` lost its positive
    definiteness to rounding). ``torch.linalg.solve_ex`` reports failures per
    problem instead of raising (one matrix at a time, :func:`solve_each`).
    Systems that fail at every damping get a short gradient step, which the
    caller's decrease test accepts or rejects like any other. The caller
    keeps non-finite systems away from the LU (they corrupt its pivots).
    """
    step, lam = torch.zeros_like(g), lam.clone()
    todo = torch.arange(len(g), device=g.device)
    if not lam.any():  # the common case: plain Newton steps for every problem, no copies
        sol, info = solve_each(H, g[..., None])
        sol = sol[..., 0]
        good = (info == 0) & torch.isfinite(sol).all(-1) & (((g * sol).sum(-1) > 0) | (g == 0).all(-1))
        if good.all():
            return sol, lam
        step[good] = sol[good]
        todo = todo[~good]
        lam[todo] = lam_min
    mu = torch.diagonal(H, dim1=1, dim2=2).mean(-1).abs().clamp_min(torch.finfo(H.dtype).tiny)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    for _ in range(tries):
        if len(todo) == 0:
            break
        sol, info = solve_each(H[todo] + (lam[todo] * mu[todo])[:, None, None] * eye, g[todo][..., None])
        sol = sol[..., 0]
        descent = ((g[todo] * sol).sum(-1) > 0) | (g[todo] == 0).all(-1)
        good = (info == 0) & torch.isfinite(sol).all(-1) & descent
        step[todo[good]] = sol[good]
        todo = todo[~good]
        lam[todo] = torch.clamp(lam[todo] * 10, min=lam_min)
    if len(todo):
        bound = torch.diagonal(H[todo], dim1=1, dim2=2).abs().amax(-1) + lam[todo] * mu[todo]
        step[todo] = torch.nan_to_num(g[todo] / bound[:, None], nan=0.0, posinf=0.0, neginf=0.0)
    return step, lam


def _newton(Xb, y, pen, theta, C: float, max_iter: int, tol: float):
    """Damped Newton iterations from ``theta`` on standardised ``Xb = [X_std, 1]`` (see :func:`logistic_newton`).

    Returns the final ``theta``, which problems converged, the number of
    iterations and each problem's last step size. Problems whose system is
    not finite (non-finite activations, which would corrupt the LU's pivots)
    are left where they started and reported as not converged.
    """
    B, n, _ = Xb.shape
    z = (Xb @ theta[..., None])[..., 0]  # logits at theta
    g, H = _logistic_terms(Xb, y, theta, pen, C, z)
    eps = torch.finfo(Xb.dtype).eps
    lam_min, slack = eps**0.5, 4 * n**0.5 * eps  # slack: rounding of a sum of n terms, relative to their sum
    lam = Xb.new_zeros(B)
    # a non-finite activation makes its column's gradient and Hessian diagonal non-finite: O(d) to check
    finite = torch.isfinite(torch.diagonal(H, dim1=1, dim2=2)).all(-1) & torch.isfinite(g).all(-1)
    done = ~finite  # converged, or not finite
    last_step = Xb.new_full((B,), float("inf"))
    f = C * (torch.nn.functional.softplus(z) - y * z).sum(-1) + 0.5 * (pen * theta**2).sum(-1)  # objective, then
    # updated by each accepted step's change: only a scale for the stopping test, so its drift does not matter
    n_iter = 0
    while n_iter < max_iter and not done.all():
        n_iter += 1
        idx = (~done).nonzero()[:, 0]
        take = (lambda t: t) if len(idx) == B else (lambda t: t[idx])  # no copies in the common case
        Xi, yi, zi, thi, gi, pi = take(Xb), take(y), take(z), take(theta), take(g), take(pen)
        step, lam_i = _damped_solve(take(H), gi, take(lam), lam_min)
        cand = thi - step
        change, scale_change, dz = _change(Xi, yi, zi, thi, step, pi, C)
        ok = torch.isfinite(change) & torch.isfinite(cand).all(-1) & (change <= slack * scale_change)
        size = step.abs().amax(-1)
        # Stop on a small step, or where the Newton decrement g.step (twice the predicted decrease) is below the
        # objective's rounding, where no further step can be verified to help (Boyd & Vandenberghe, Convex
        # Optimization, sec. 9.5.1). Either test needs a step damped by at most lam_min, which differs from
        # Newton's only along curvatures below the working precision.
        small = (size <= tol * (1 + cand.abs().amax(-1))) | ((gi * step).sum(-1) <= eps * take(f).abs())
        small &= lam_i <= lam_min
        # Levenberg-Marquardt: relax the damping after a decrease, stiffen it after a failed step
        lam_i = torch.where(ok, lam_i / 10, torch.clamp(lam_i * 10, min=lam_min))
        lam[idx] = torch.where(lam_i < lam_min, torch.zeros_like(lam_i), lam_i)
        last_step[idx] = size
        done[idx] = small
        if len(idx) == B and ok.all():  # the common case: every problem moved; no copies
            theta, z, f = cand, z - dz, f + change
        else:
            theta[idx[ok]], z[idx[ok]], f[idx[ok]] = cand[ok], (zi - dz)[ok], (take(f) + change)[ok]
        more = ok & ~small  # new Hessians only where the iterate moved and more steps follow
        if more.all() and len(idx) == B:
            g, H = _logistic_terms(Xb, y, theta, pen, C, z)
        elif more.any():
            m = idx[more]
            g[m], H[m] = _logistic_terms(Xi[more] if len(m) < len(idx) else Xi, y[m], theta[m], pen[m], C, z[m])
    return theta, done & finite, n_iter, last_step


def logistic_newton(
    X: Float[torch.Tensor, "batch n_samples d"],
    y: Float[torch.Tensor, "batch n_samples"],
    *,
    C: float = 1.0,
    max_iter: int = 50,
    tol: float = 1e-8,
    dtype: torch.dtype = torch.float64,
) -> tuple[Float[torch.Tensor, "batch d"], Float[torch.Tensor, " batch"], int]:
    """L2-regularised logistic regression by batched, damped Newton steps (IRLS).

    Minimises ``0.5 * |w|^2 + C * sum_i logloss(y_i, x_i . w + b)`` with the
    intercept unpenalised: the objective of scikit-learn's
    ``LogisticRegression(C=C)``, so both reach the same optimum. Returns the
    coefficients and intercepts (float64) and the number of Newton steps taken.
    A problem stops when its (at most minimally damped) step is below ``tol``
    relative to its (standardised) weights or its Newton decrement is below
    the rounding of the objective. ``dtype=torch.float32`` halves the cost of
    forming the Hessians; problems it cannot finish (nearly flat directions
    below its precision) are finished in float64 from where it stopped.

    Robust to residual-stream activations (massive dimensions of ~1e4 next to
    ~1, constant columns, fewer samples than dimensions, separable classes),
    on which a plain ``solve(H, g)`` broke down: the constant massive columns
    are collinear with the unpenalised intercept, so ``H`` has a condition
    number of 1e14-1e18 (singular in float32, where the penalty of 1 is below
    the rounding of entries of ~1e10), and undamped Newton steps from garbage
    solves overshoot until every sample saturates. Three things fix it:

    - the columns are centred and scaled inside the solve (an exact affine
      reparametrisation: the penalty becomes ``sum_j (v_j / s_j)^2`` and the
      coefficients are mapped back), which removes the collinearity with the
      intercept; Newton's iterates are affine invariant, so the common case
      takes the same steps as before;
    - each step solves ``(H + lam * mu * I) step = g`` (batched LU that
      reports failure per problem), with the Levenberg-Marquardt damping
      ``lam`` raised tenfold wherever the solve fails or the step does not
      decrease the objective, and cut tenfold (to 0) after an accepted step
      (Nocedal & Wright, *Numerical Optimization*, 2nd ed., ch. 4 and
      sec. 10.3; Marquardt 1963), so the objective never increases and
      nothing raises;
    - a step's change of the objective is summed from per-sample differences
      in ``log1p``/``expm1`` form (float32 cannot compare two objective
      values near the optimum) and the IRLS weights are ``sigma(z) sigma(-z)``,
      which neither overflow nor round to 0 early.

    Problems that have not converged after ``max_iter`` steps keep their best
    iterate and are named in a ``ConvergenceWarning``; problems with
    non-finite activations get zero coefficients and a NaN intercept.

    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(2, 40, 3, generator=g); y = (X[..., 0] > 0).double()
    >>> X[..., 1] = 1e4  # a constant "massive activation" column
    >>> coef, intercept, n_iter = logistic_newton(X, y)
    >>> coef.shape, bool(coef[:, 1].abs().max() < 1e-12)
    (torch.Size([2, 3]), True)
    """
    B, n, d = X.shape
    X64 = X.double()
    mean, scale = _column_stats(X64)

    def design(rows, dt):
        Xb = X64.new_ones(len(rows), n, d + 1, dtype=dt)
        Xb[..., :d] = torch.sub(X64[rows], mean[rows, None]).div_(scale[rows, None])
        return Xb

    everything = torch.arange(B, device=X.device)
    # coefficient v_j = w_j * s_j in standardised units: penalty 0.5 w_j^2 = 0.5 v_j^2 / s_j^2; none on the intercept
    pen = torch.cat([scale.pow(-2), scale.new_zeros(B, 1)], -1)
    y64 = y.double()
    theta, converged, n_iter, last_step = _newton(
        design(everything, dtype), y64.to(dtype), pen.to(dtype), X64.new_zeros(B, d + 1, dtype=dtype), C, max_iter, tol
    )
    theta, last_step = theta.double(), last_step.double()
    finite = torch.isfinite(mean).all(-1) & torch.isfinite(y64).all(-1)  # the mean of a non-finite column is not finite
    redo = (~converged & finite).nonzero()[:, 0]
    if dtype != torch.float64 and len(redo):
        theta[redo], converged[redo], more, last_step[redo] = _newton(
            design(redo, torch.float64), y64[redo], pen[redo], theta[redo], C, max_iter, tol
        )
        n_iter += more
    if not converged.all():
        bad = (~converged).nonzero()[:, 0].tolist()
        warnings.warn(
            f"logistic_newton: problems (layers, in a sweep) {bad} did not converge in {max_iter} Newton steps "
            f"(last step sizes {[f'{v:.2g}' for v in last_step[bad].tolist()]}); their coefficients are the best "
            "iterate found (none where the activations are not finite: zero coefficients, NaN intercept). "
            "Raise max_iter or check the activations for non-finite values.",
            ConvergenceWarning, stacklevel=2,
        )
    coef = theta[:, :-1] / scale
    return coef, theta[:, -1] - torch.einsum("bd,bd->b", coef, mean), n_iter
