"""The batched logistic probe on activations shaped like real residual streams.

Real ``resid_post`` activations (SmolLM2-135M, gemma-3-270m) have a few
"massive" dimensions of ~1e3-1e4 that barely vary next to dimensions of ~1,
constant and zero columns, fewer distinct rows than dimensions, and classes
that a linear probe separates perfectly. On such data the former plain
``torch.linalg.solve(H, g)`` Newton step raised ``input matrix is singular``
(the sweep's float32 default) or silently returned coefficients 1e7 times
too large; :func:`residual_like` is that structure at test size.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from probes import LDAProbe, LogisticProbe, MassMeanProbe
from probes._fit import logistic_newton, mean_difference
from probes.sweep import fit_layers


def residual_like(n=64, layers=4, d=128, rank=32, massive=1e4, seed=0):
    """``X: [n, layer, d]`` float64, ``y: [n]``: massive constant and noisy dims, rank < d, constant columns.

    Per layer: rows are ``rank``-dimensional (``rank < n/2 < d``) plus a planted
    class offset, the second half duplicates the first, columns 0-1 are
    massive constants (collinear with the intercept), column 2 is massive
    with a small spread, columns 3-4 are 1 and 5 is 0. Distinct rows number
    fewer than the dimensions, so the classes are linearly separable.
    """
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    y = torch.randint(0, 2, (half,), generator=g).repeat(2)
    Z = torch.randn(half, layers, rank, generator=g, dtype=torch.float64)
    A = torch.randn(layers, rank, d, generator=g, dtype=torch.float64) / rank**0.5
    X = torch.einsum("nlr,lrd->nld", Z, A).repeat(2, 1, 1)
    dirs = torch.nn.functional.normalize(torch.randn(layers, d, generator=g, dtype=torch.float64), dim=-1)
    X += (2 * y - 1)[:, None, None].double() * dirs[None] * 2.0
    X[..., 0] = massive
    X[..., 1] = -massive / 7
    X[..., 2] = massive / 3 + 30 * torch.randn(half, layers, generator=g, dtype=torch.float64).repeat(2, 1)
    X[..., 3:5] = 1.0
    X[..., 5] = 0.0
    return X, y


def objective(coef, intercept, X, y, C):
    """``LogisticRegression(C)``'s objective: ``0.5 |w|^2 + C * sum_i logloss``."""
    z = X @ coef + intercept
    return 0.5 * coef @ coef + C * np.logaddexp(0, -(2 * y - 1) * z).sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_fits_without_error_or_warning(dtype):
    X, y = residual_like()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit = fit_layers(X, y, "logistic", dtype=dtype)  # the sweep's path; float32 raised "singular" before
    assert torch.isfinite(fit.coef).all() and torch.isfinite(fit.intercept).all()
    # the constant columns carry no weight: the unpenalised intercept absorbs them at the optimum
    assert fit.coef[:, [0, 1, 3, 4, 5]].abs().max() < 1e-6 * fit.coef.abs().max()


def kkt_residual(coef, intercept, X, y, C):
    """Largest entry of the objective's gradient (w and b) in the original coordinates."""
    r = C * (1 / (1 + np.exp(-(X @ coef + intercept))) - y)
    return max(np.abs(coef + X.T @ r).max(), abs(r.sum()))


def test_equals_sklearn_newton_cholesky_on_residual_like():
    """Where scikit-learn's second-order solver converges (massive dims of 1e3), the fits agree to rounding."""
    X, y = residual_like(massive=1e3)
    ours = fit_layers(X, y, "logistic", tol=1e-10, dtype=torch.float64)
    for layer in range(X.shape[1]):
        Xl, yl = X[:, layer].numpy(), y.numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # sklearn must not fall back to lbfgs here
            ref = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(Xl, yl)
        coef, b = ours.coef[layer].numpy(), ours.intercept[layer].item()
        np.testing.assert_allclose(coef, ref.coef_[0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b, ref.intercept_[0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(Xl @ coef + b, ref.decision_function(Xl), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("massive", [1e3, 1e4])
def test_matches_sklearn_lbfgs_on_residual_like(massive):
    """Same optimum as ``LogisticRegression(C)`` (lbfgs, tight tol); the gap is lbfgs stopping short.

    On these scales lbfgs stops with gradient entries of ~1e-3 (a constant
    column of 1e4 multiplies the intercept's residual) and an objective ~1e-5
    above ours. The objective is 1-strongly convex in ``w`` (its L2 term), so
    ``|w_lbfgs - w*|^2 <= 2 (f_lbfgs - f*)``: the coefficients must agree to
    that bound, which the test checks, with ours at a gradient of ~0 (1e-10
    where lbfgs leaves 1e-3).
    """
    X, y = residual_like(layers=2, massive=massive)
    ours = fit_layers(X, y, "logistic", tol=1e-10, dtype=torch.float64)
    for layer in range(X.shape[1]):
        Xl, yl = X[:, layer].numpy(), y.numpy()
        ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(Xl, yl)
        assert ref.n_iter_[0] < 100_000  # lbfgs converged by its own criteria
        coef, b = ours.coef[layer].numpy(), ours.intercept[layer].item()
        assert kkt_residual(coef, b, Xl, yl, 1.0) < 1e-8 * massive
        f_ours, f_ref = objective(coef, b, Xl, yl, 1.0), objective(ref.coef_[0], ref.intercept_[0], Xl, yl, 1.0)
        assert -1e-12 <= f_ref - f_ours <= 1e-4 * f_ref
        bound = np.sqrt(2 * max(f_ref - f_ours, 0.0))
        assert np.linalg.norm(coef - ref.coef_[0]) <= 1.01 * bound + 1e-8
        # lbfgs's weight on a constant massive column shifts its intercept by weight * 1e4, so the offsets are
        # compared through the decision function (the newton-cholesky test compares intercepts directly)
        np.testing.assert_allclose(Xl @ coef + b, ref.decision_function(Xl), atol=1e-2)
        assert ((Xl @ coef + b > 0) == ref.predict(Xl).astype(bool)).all()


def test_accuracy_equals_sklearn():
    X, y = residual_like(n=200, d=96, rank=80, seed=1)
    fit = fit_layers(X[:100], y[:100], "logistic")  # sweep defaults: float32, tol 1e-4
    for layer in range(X.shape[1]):
        ref = LogisticRegression(max_iter=100_000).fit(X[:100, layer].numpy(), y[:100].numpy())
        for rows in (slice(None, 100), slice(100, None)):  # train and held-out rows
            ours = ((X[rows, layer] @ fit.coef[layer] + fit.intercept[layer] > 0).long() == y[rows]).double().mean()
            assert ours.item() == pytest.approx(ref.score(X[rows, layer].numpy(), y[rows].numpy()))


def test_estimator_on_residual_like():
    X, y = residual_like()
    Xl, yl = X[:, 1].numpy(), y.numpy()
    probe = LogisticProbe().fit(Xl, yl)
    ref = LogisticRegression(max_iter=100_000, tol=1e-12).fit(Xl, yl)
    assert probe.score(Xl, yl) == ref.score(Xl, yl) == 1.0
    np.testing.assert_allclose(probe.decision_function(Xl), ref.decision_function(Xl), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("probe", [MassMeanProbe(covariance=True), LDAProbe()], ids=repr)
def test_covariance_probes_on_residual_like(probe):
    X, y = residual_like()
    probe.fit(X[:, 0].numpy(), y.numpy())
    assert np.isfinite(probe.coef_).all() and probe.score(X[:, 0].numpy(), y.numpy()) == 1.0


def test_mean_difference_degenerate_and_non_finite_layers_do_not_raise():
    X = torch.zeros(3, 10, 5, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0] * 5).expand(3, -1)
    X[:, 1::2, 0] = 1.0  # every column constant within each class: zero pooled covariance
    X[2, 0, 2] = float("nan")
    coef, intercept = mean_difference(X, y, covariance=True)
    assert torch.isfinite(coef[:2]).all() and (coef[:2, 0] > 0).all() and (coef[:2, 1:] == 0).all()
    assert torch.isnan(coef[2]).all() and torch.isnan(intercept[2])


def test_non_finite_layer_is_named_not_raised():
    X, y = residual_like(layers=3)
    Xl = X.transpose(0, 1).clone()
    Xl[1, 0, 7] = float("inf")
    with pytest.warns(ConvergenceWarning, match=r"problems \(layers, in a sweep\) \[1\] did not converge"):
        coef, intercept, _ = logistic_newton(Xl, y.double().expand(3, -1))
    assert torch.isfinite(coef[[0, 2]]).all() and (coef[1] == 0).all() and torch.isnan(intercept[1])


def test_non_convergence_is_named():
    X, y = residual_like(layers=2)
    with pytest.warns(ConvergenceWarning, match=r"\[0, 1\] did not converge in 2 Newton steps"):
        coef, _, n_iter = logistic_newton(X.transpose(0, 1), y.double().expand(2, -1), max_iter=2)
    assert n_iter == 2 and torch.isfinite(coef).all()
