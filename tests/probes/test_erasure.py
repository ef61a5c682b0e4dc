"""LEACE through concept-erasure (probes.erasure.erase): a planted concept becomes undecodable, an unrelated
planted signal stays decodable."""

import numpy as np
import pytest
import torch
from scipy.stats import binom
from sklearn.linear_model import LogisticRegression

from probes.erasure import erase


def balanced(n, k, rng):
    return rng.permutation(np.arange(n) % k)


def planted(n=4000, d=24, k=2, seed=0):
    """Correlated Gaussian noise plus a concept ``y`` (k classes, each a mean along its own direction) and an
    independent binary signal ``s`` along another direction. Rows 0..n/2 fit, the rest are held out."""
    rng = np.random.default_rng(seed)
    y, s = balanced(n, k, rng), balanced(n, 2, rng)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    centres = rng.normal(size=(k, d)) * 3
    signal = rng.normal(size=d)
    X = rng.normal(size=(n, d)) @ mix + centres[y] + 5.0 * (2 * s - 1)[:, None] * signal / np.linalg.norm(signal)
    half = n // 2
    return (X[:half], y[:half], s[:half]), (X[half:], y[half:], s[half:])


def held_out_accuracy(X_train, t_train, X_test, t_test):
    return LogisticRegression(max_iter=2000).fit(X_train, t_train).score(X_test, t_test)


def chance_band(n, k, level=0.999):
    """Accuracy a classifier that knows nothing reaches on n balanced held-out rows of k classes: Binomial(n, 1/k)
    correct answers; the two-sided ``level`` interval (a fixed seed makes the test deterministic, the band says
    what "at chance" means at this n)."""
    low, high = binom.ppf([(1 - level) / 2, (1 + level) / 2], n, 1 / k)
    return low / n, high / n


@pytest.mark.parametrize("k", [2, 3])
def test_leace_makes_a_planted_concept_undecodable_and_keeps_an_unrelated_signal(k):
    (X, y, s), (X_test, y_test, s_test) = planted(k=k)
    assert held_out_accuracy(X, y, X_test, y_test) > 0.95  # the concept is linearly decodable before
    assert held_out_accuracy(X, s, X_test, s_test) > 0.95
    erased, eraser = erase(X, y)
    erased_test = eraser(torch.from_numpy(X_test)).numpy()  # the eraser fitted on the first half, applied to the rest
    low, high = chance_band(len(y_test), k)
    acc = held_out_accuracy(erased, y, erased_test, y_test)
    assert low <= acc <= high, f"accuracy {acc:.3f} after erasure, chance band [{low:.3f}, {high:.3f}]"
    assert held_out_accuracy(erased, s, erased_test, s_test) > 0.95  # the unrelated signal survives


def test_erased_activations_have_zero_cross_covariance_with_the_concept():
    (X, y, _), _ = planted(k=3)
    onehot = np.eye(3)[y]
    erased, _ = erase(torch.from_numpy(X).float(), torch.from_numpy(y))
    assert isinstance(erased, torch.Tensor) and erased.dtype == torch.float64
    E = erased.numpy()
    cross = (E - E.mean(0)).T @ (onehot - onehot.mean(0)) / len(y)
    before = (X - X.mean(0)).T @ (onehot - onehot.mean(0)) / len(y)
    assert np.abs(before).max() > 0.5
    assert np.abs(cross).max() < 1e-10 * np.abs(before).max()
    assert E.mean(0) == pytest.approx(X.mean(0), abs=1e-4)  # affine: the mean of X is kept (float32 input)


def test_labels_are_categories_not_numbers():
    """Three classes coded 0, 1, 2 whose means do not lie on a line in that order: erasing the codes as one number
    (an [n, 1] concept) leaves the classes decodable, erasing them as categories does not."""
    (X, y, _), (X_test, y_test, _) = planted(k=3, seed=1)
    as_number, number_eraser = erase(X, y[:, None].astype(float))
    assert held_out_accuracy(as_number, y, number_eraser(torch.from_numpy(X_test)).numpy(), y_test) > 0.6
    as_classes, eraser = erase(X, y)
    low, high = chance_band(len(y_test), 3)
    assert low <= held_out_accuracy(as_classes, y, eraser(torch.from_numpy(X_test)).numpy(), y_test) <= high


def test_erase_warns_when_the_library_leaves_cross_covariance():
    (X, y, _), _ = planted()
    with pytest.warns(RuntimeWarning, match="of the concept's cross-covariance is left on the fitting rows"):
        erase(X, y, svd_tol=1e6)  # every singular value below the tolerance: nothing is erased


def test_erase_bad_inputs():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"z must be \[n\] class labels or an \[n, k\] concept with n = 10 rows"):
        erase(X, np.zeros(9))
    with pytest.raises(ValueError, match="z has a single class"):
        erase(X, np.ones(10, dtype=int))
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        erase(X, np.r_[np.zeros(9), np.nan])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        erase(bad, np.arange(10) % 2)
    with pytest.raises(ValueError, match=r"X must be a \[n_samples, d\] matrix with n >= 2"):
        erase(X[:1], np.array([0]))
