import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from probes import LDAProbe, LogisticProbe, MassMeanProbe

PROBES = [MassMeanProbe(), MassMeanProbe(covariance=True), LDAProbe(), LogisticProbe()]


@parametrize_with_checks(PROBES)
def test_sklearn_contract(estimator, check):
    check(estimator)


def planted(n=4000, d=32, seed=0, noise=1.0):
    """Two Gaussian classes separated along a random unit direction, with anisotropic noise."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, d)) * noise + np.outer(2 * y - 1, direction) * 1.5
    return X, y, direction


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: repr(p))
def test_recovers_planted_direction(probe):
    X, y, direction = planted()
    probe.fit(X, y)
    assert abs(float(probe.direction_ @ direction)) >= 0.99
    assert np.linalg.norm(probe.direction_) == pytest.approx(1.0)
    # Bayes-optimal accuracy at a 1.5 sigma offset is Phi(1.5) = 0.933; AUROC Phi(3 / sqrt 2) = 0.983.
    assert probe.score(X, y) > 0.92 and probe.auroc(X, y) > 0.975


def test_logistic_matches_sklearn():
    X, y, _ = planted(noise=3.0)
    ours = LogisticProbe(C=0.5).fit(X, y)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-4, atol=1e-6)


def test_lda_matches_sklearn_direction():
    X, y, _ = planted(noise=3.0)
    ours = LDAProbe().fit(X, y)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
    ref_dir = ref.coef_[0] / np.linalg.norm(ref.coef_[0])
    assert float(ours.direction_ @ ref_dir) > 0.99
    assert (ours.predict(X) == ref.predict(X)).mean() > 0.99


def test_mass_mean_is_difference_of_means():
    X, y, _ = planted()
    probe = MassMeanProbe().fit(X, y)
    diff = X[y == 1].mean(0) - X[y == 0].mean(0)
    np.testing.assert_allclose(probe.coef_[0], diff, rtol=1e-10)


def test_bad_labels():
    X, _, _ = planted(n=30)
    with pytest.raises(ValueError, match="binary probe; y has 1 class"):
        MassMeanProbe().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="binary probe; y has 3 class"):
        LogisticProbe().fit(X, np.arange(30) % 3)
    with pytest.raises(ValueError, match="C must be positive"):
        LogisticProbe(C=0).fit(X, np.arange(30) % 2)
