"""Bootstrap intervals and nulls: widths as the binomial gives them, chance levels where there is no signal."""

import numpy as np
import pytest
import torch

from probes import fit_layers, mahalanobis_cosine
from probes.stats import (
    accuracy_ci,
    bootstrap_ci,
    mean_ci,
    proportion_ci,
    random_directions,
    shuffled_label_accuracy,
    split_half_directions,
)


def test_wilson_interval_of_a_share_and_at_the_boundary():
    # 148 test statements at accuracy 0.9: about +-1.96 * sqrt(0.9 * 0.1 / 148) = +-4.8 points, as the bootstrap
    k = round(0.9 * 148)
    low, high = proportion_ci(np.r_[np.ones(k), np.zeros(148 - k)])
    assert abs((high - low) / 2 - 1.96 * np.sqrt(0.9 * 0.1 / 148)) < 0.01
    # 60 of 60 refused: Wilson's lower bound n / (n + z^2) = 0.940, where a percentile bootstrap says [1, 1]
    lo, hi = proportion_ci(np.ones(60))
    assert hi == 1.0 and abs(lo - 60 / (60 + 1.959964**2)) < 1e-4
    assert mean_ci(np.ones(60), seed=0) == (1.0, 1.0)
    rows = proportion_ci(np.stack([np.ones(60), np.zeros(60)]))
    assert rows[0].shape == (2,) and rows[1][0] == hi and rows[0][1] == 0.0 and rows[0][0] == lo
    with pytest.raises(ValueError, match="must be 0/1"):
        proportion_ci(np.array([0.5, 1.0]))


def test_accuracy_interval_has_the_binomial_width():
    # 148 test statements at accuracy 0.9: the 95% interval is about +-1.96 * sqrt(0.9 * 0.1 / 148) = +-4.8 points
    correct = np.zeros(148)
    correct[: round(0.9 * 148)] = 1
    low, high = mean_ci(correct, seed=0)
    half = 1.96 * np.sqrt(0.9 * 0.1 / 148)
    assert low < correct.mean() < high
    assert abs((high - low) / 2 - half) < 0.01, (low, high, half)
    assert mean_ci(correct, seed=0) == (low, high)  # seeded
    assert mean_ci(correct, seed=1) != (low, high)
    rows = np.stack([correct, np.ones(148)])  # one interval per row
    lo, hi = mean_ci(rows, seed=0)
    assert lo.shape == (2,) and lo[1] == hi[1] == 1.0


def test_bootstrap_of_a_ratio_of_two_independent_samples_covers_the_truth():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 1.0, 400), rng.normal(4.0, 1.0, 300)
    idx = (np.arange(400), np.arange(300))
    lo, hi = bootstrap_ci(lambda i, j, axis=-1: a[i].mean(axis) / b[j].mean(axis), idx, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.1
    with pytest.raises(ValueError, match="at least 2 values"):
        bootstrap_ci(np.mean, (np.ones(1),))


def _planted(n=400, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, 2, d, generator=g)
    X[:, :, 0] += 3.0 * (2 * y[:, None] - 1)  # class signal along axis 0 at both "layers"
    return X, y


def test_shuffled_labels_give_chance_while_the_true_labels_decode():
    X, y = _planted()
    tr, te = slice(0, 300), slice(300, 400)
    fit = fit_layers(X[tr], y[tr])
    acc, low, high = accuracy_ci(fit, X[te], y[te])
    assert (acc > 0.95).all() and (low <= acc).all() and (acc <= high).all()
    null, worst = shuffled_label_accuracy(X[tr], y[tr], X[te], y[te], seed=0)
    # a shuffled mass-mean direction still leans on the high-variance class axis, by a random sign: the null
    # scatters widely around chance (why it is reported), far below the real probe
    assert (null < acc - 0.2).all() and (worst >= null).all() and (worst <= 1).all()


def test_mahalanobis_cosine_saturates_when_one_direction_holds_the_variance():
    """Under a covariance dominated by one axis every direction's projection is that axis' projection: random
    directions reach |Mahalanobis cosine| near 1, so the measure cannot tell directions apart. Two probes of the
    same data from disjoint halves (the reference) agree; with an isotropic covariance random directions do not."""
    X, y = _planted(d=64)
    post = fit_layers(X, y).coef
    rand = random_directions(100, post.shape, seed=0)
    noise = torch.randn(400, 2, 64, generator=torch.Generator().manual_seed(1))  # isotropic target data
    iso = np.quantile([mahalanobis_cosine(r, post, noise).abs().numpy() for r in rand], 0.95, axis=0)
    dominated = noise.clone()
    dominated[:, :, 0] *= 50.0  # one axis, the one the probe leans on, holds almost all the variance
    sat = np.quantile([mahalanobis_cosine(r, post, dominated).abs().numpy() for r in rand], 0.95, axis=0)
    assert (iso < 0.4).all() and (sat > 0.9).all(), (iso, sat)
    h1, h2 = split_half_directions(X, y, seed=0)
    assert (mahalanobis_cosine(h1.coef, h2.coef, X) > 0.9).all()


def test_direction_cosine_interval_covers_the_planted_cosine():
    """Two 'models' read the same rows; their class-mean differences have a planted cosine per layer. The
    paired bootstrap interval of the refitted directions' cosine covers it in about 95% of 100 datasets."""
    from probes.stats import direction_cosine_ci

    rng = np.random.default_rng(0)
    d, n = 6, 80
    planted = np.array([0.9, 0.3])  # layer 0, layer 1
    covered = np.zeros(2)
    for trial in range(100):
        y = np.repeat([0, 1], n // 2)
        mu_a = np.zeros((2, d)); mu_a[:, 0] = 1.0
        mu_b = np.zeros((2, d)); mu_b[:, 0] = planted; mu_b[:, 1] = np.sqrt(1 - planted**2)
        A = y[:, None, None] * mu_a * 4 + rng.normal(size=(n, 2, d))
        B = y[:, None, None] * mu_b * 4 + rng.normal(size=(n, 2, d))
        low, high = direction_cosine_ci(torch.tensor(A), torch.tensor(B), y, seed=trial, n_resamples=300)
        covered += (low <= planted) & (planted <= high)
    assert ((covered >= 88) & (covered <= 100)).all(), covered


def test_direction_cosine_interval_of_one_model_with_itself_is_one_and_bad_input_raises():
    from probes.stats import direction_cosine_ci

    rng = np.random.default_rng(1)
    X, y = torch.tensor(rng.normal(size=(20, 3, 4))), np.repeat([0, 1], 10)
    low, high = direction_cosine_ci(X, X, y)
    np.testing.assert_allclose(low, 1, atol=1e-6) and np.testing.assert_allclose(high, 1, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 rows of each class"):
        direction_cosine_ci(X, X, np.r_[np.zeros(19), 1])
    with pytest.raises(ValueError, match=r"must be \[n, layer, d\] over the same rows"):
        direction_cosine_ci(X, X[:5], y)


def test_paired_difference_cosine_interval_matches_a_direct_bootstrap_and_covers_the_planted_cosine():
    """Per group and for the group mean, the interval equals a bootstrap over pairs written out directly
    (cosine of the two resampled mean differences, numpy); over 100 datasets it covers a planted cosine in
    about 95% of them; bad shapes raise."""
    from probes.stats import bootstrap_ci, paired_difference_cosine_ci

    rng = np.random.default_rng(0)
    n, k, L, d = 30, 2, 3, 5
    A = rng.normal(size=(n, k, L, d)) + 1.0
    B = A * 0.5 + rng.normal(size=(n, k, L, d))

    def cos(u, v):
        return (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)

    def reference(idx, axis=-1):
        idx = np.atleast_2d(idx)
        per = np.stack([cos(A[i].mean(0), B[i].mean(0)) for i in idx])  # [resample, group, layer]
        full = np.concatenate([per, per.mean(1, keepdims=True)], 1).reshape(len(idx), -1)
        return full.T if len(idx) > 1 else full[0]

    low, high = paired_difference_cosine_ci(torch.tensor(A), torch.tensor(B), seed=3, n_resamples=200)
    want_low, want_high = bootstrap_ci(reference, (np.arange(n),), seed=3, n_resamples=200)
    assert low.shape == (k + 1, L)
    np.testing.assert_allclose(low, want_low.reshape(k + 1, L), atol=1e-6)
    np.testing.assert_allclose(high, want_high.reshape(k + 1, L), atol=1e-6)

    planted, covered = 0.6, 0
    for trial in range(100):
        mu_b = np.zeros(4); mu_b[0], mu_b[1] = planted, np.sqrt(1 - planted**2)
        Da = np.eye(4)[0] * 1.5 + rng.normal(size=(60, 1, 4))
        Db = mu_b * 1.5 + rng.normal(size=(60, 1, 4))
        lo, hi = paired_difference_cosine_ci(torch.tensor(Da), torch.tensor(Db), seed=trial, n_resamples=300)
        covered += int(lo[0] <= planted <= hi[0])
    assert 88 <= covered <= 100, covered
    with pytest.raises(ValueError, match=r"\[n, layer, d\] or \[n, group, layer, d\]"):
        paired_difference_cosine_ci(torch.tensor(A), torch.tensor(B[:, :1]))
    with pytest.raises(ValueError, match="n >= 2"):
        paired_difference_cosine_ci(torch.tensor(A[:1]), torch.tensor(B[:1]))


def test_cluster_bootstrap_draws_whole_groups():
    """Each value written three times (one fact in three phrasings): resampling groups gives the interval of the
    distinct values, while resampling rows treats the copies as evidence and narrows it by about sqrt(3)."""
    from probes.stats import cluster_bootstrap_ci, mean_ci

    values = np.random.default_rng(0).normal(size=40)
    rows, groups = np.repeat(values, 3), np.repeat(np.arange(40), 3)
    low, high = cluster_bootstrap_ci(lambda r: rows[r].mean(), groups, seed=3)
    ref_low, ref_high = mean_ci(values, seed=3)  # the same distribution of resampled means (other draws)
    width = ref_high - ref_low
    assert abs(low - ref_low) < 0.1 * width and abs(high - ref_high) < 0.1 * width
    naive_low, naive_high = mean_ci(rows, seed=3)
    assert 1.4 < (high - low) / (naive_high - naive_low) < 2.2
    # every row its own group: the ordinary bootstrap over rows; seeded
    own = cluster_bootstrap_ci(lambda r: values[r].mean(), np.arange(40), seed=3)
    assert abs(own[0] - ref_low) < 0.1 * width and abs(own[1] - ref_high) < 0.1 * width
    assert own == cluster_bootstrap_ci(lambda r: values[r].mean(), np.arange(40), seed=3)
    with pytest.raises(ValueError, match="a cluster bootstrap needs at least 2 groups; got 1"):
        cluster_bootstrap_ci(lambda r: rows[r].mean(), np.zeros(6))
