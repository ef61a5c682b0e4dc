"""Known answers of interp.geometry: CKA, RankMe, alpha-ReQ, path geometry and next-token divergences."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy
from sklearn.linear_model import LinearRegression

import interp.geometry as geometry
from interp.geometry import alpha_req, linear_cka, next_token_divergence, path_geometry, rankme


def rng(seed=0):
    return np.random.default_rng(seed)


def orthogonal(d, seed=0):
    q, r = np.linalg.qr(rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def centred_orthonormal(n, k, seed=0):
    """``[n, k]`` orthonormal columns orthogonal to the ones vector: centring leaves them as they are."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng(seed).normal(size=(n, k))]))
    return q[:, 1:]


def planted(n, d, singular_values, seed=0):
    """``U diag(s) V^T`` with column-centred ``U``: its singular values and covariance spectrum are known exactly."""
    k = len(singular_values)
    return centred_orthonormal(n, k, seed) * singular_values @ orthogonal(d, seed + 1)[:k]


# ------------------------------------------------------------------------------------------------ CKA


def reference_cka(X, Y):
    """Biased linear CKA through centred Gram matrices: HSIC = tr(K H L H), written apart from the module's."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))


def hsic1(K, L):
    """Song et al. (2012, eq. 5) unbiased HSIC, term by term, on (uncentred) kernel matrices."""
    n = K.shape[0]
    K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))


@pytest.mark.parametrize("n,d", [(60, 10), (20, 50)])  # feature-space products and Gram matrices
def test_cka_of_itself_a_rotation_and_a_scaling_is_one(n, d):
    X = rng().normal(size=(n, d)) + 5.0
    for debiased in (False, True):
        assert linear_cka(X, X, debiased) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(X, X @ orthogonal(d), debiased) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(X, -3.7 * X, debiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(torch.tensor(X, dtype=torch.float32), X) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("n,dx,dy", [(80, 6, 9), (15, 40, 30)])
def test_cka_equals_a_gram_matrix_reference(n, dx, dy):
    X, Y = rng(1).normal(size=(n, dx)), rng(2).normal(size=(n, dy))
    Y[:, :3] += X[:, :3]  # some shared signal
    assert linear_cka(X, Y) == pytest.approx(reference_cka(X, Y), abs=1e-12)


@pytest.mark.parametrize("n,dx,dy", [(30, 5, 7), (12, 40, 25)])
def test_debiased_cka_equals_song_unbiased_hsic_reference(n, dx, dy):
    X, Y = rng(3).normal(size=(n, dx)) + 2.0, rng(4).normal(size=(n, dy)) - 1.0
    Y[:, :2] += 0.5 * X[:, :2]
    K, L = X @ X.T, Y @ Y.T
    want = hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))
    assert linear_cka(X, Y, debiased=True) == pytest.approx(want, abs=1e-10)


def test_biased_cka_of_independent_matrices_is_far_from_zero_unless_n_dominates_d():
    """Documents the bias: two independent isotropic Gaussian matrices share nothing, yet biased CKA is about
    sqrt(dx dy / ((n + dx)(n + dy))) — 0.8 at n = 50, d = 200. The debiased estimate is centred on 0: its unbiased
    cross-HSIC sums dx*dy products of independent estimates, each of variance ~1/n^2 after the normalisation, so
    its standard deviation is about sqrt(2)/n (0.028 at n = 50; 0.031 in 300 simulated draws). The tolerance is
    5 of those."""
    n, d = 50, 200
    X, Y = rng(5).normal(size=(n, d)), rng(6).normal(size=(n, d))
    biased = linear_cka(X, Y)
    assert biased == pytest.approx(math.sqrt(d * d / ((n + d) * (n + d))), abs=0.05)
    assert biased > 0.7
    assert abs(linear_cka(X, Y, debiased=True)) < 5 * math.sqrt(2) / n
    X, Y = rng(7).normal(size=(5000, 5)), rng(8).normal(size=(5000, 5))  # n >> d: the bias is negligible
    assert linear_cka(X, Y) < 0.01


def test_cka_bad_inputs_raise_and_undefined_is_nan():
    X = rng().normal(size=(10, 4))
    with pytest.raises(ValueError, match="X and Y must hold the same samples: X has 10 rows, Y has 9"):
        linear_cka(X, X[:9])
    with pytest.raises(ValueError, match=r"linear_cka \(debiased\) needs at least 4 samples; got 3"):
        linear_cka(X[:3], X[:3], debiased=True)
    with pytest.raises(ValueError, match="needs at least 2 samples; got 1"):
        linear_cka(X[:1], X[:1])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="Y contains NaN or inf"):
        linear_cka(X, bad)
    with pytest.raises(ValueError, match=r"X must be a \[n_samples, d\] matrix"):
        linear_cka(X[:, 0], X)
    constant = np.full((10, 3), 0.1)  # the mean of 0.1s is not exactly 0.1: centring leaves rounding only
    with pytest.warns(RuntimeWarning, match="Y has no variance"):
        assert math.isnan(linear_cka(X, constant))
    with pytest.warns(RuntimeWarning, match="X has no variance"):
        assert math.isnan(linear_cka(np.zeros((10, 3)), X, debiased=True))
    # four samples, one apart from three equal ones: Song et al.'s unbiased self-HSIC is exactly 0
    outlier = np.array([[0.1], [0.1], [0.1], [1.3]])
    with pytest.warns(RuntimeWarning, match="the unbiased HSIC of Y with itself is not positive"):
        assert math.isnan(linear_cka(X[:4], outlier, debiased=True))
    assert hsic1(outlier @ outlier.T, outlier @ outlier.T) == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------------------------------ RankMe


def reference_rankme(values, eps=1e-7):
    p = values / values.sum() + eps
    return math.exp(-(p * np.log(p)).sum())


def test_rankme_of_k_equal_singular_values_is_k():
    X = planted(40, 30, np.full(7, 2.5))
    assert rankme(X, eps=0.0) == pytest.approx(7.0, abs=1e-9)
    assert rankme(X, eps=0.0, convention="li2025") == pytest.approx(7.0, abs=1e-9)  # X is centred already
    assert rankme(X) == pytest.approx(7.0, rel=1e-3)  # eps = 1e-7 adds O(eps log eps) per value
    assert rankme(np.eye(5) * 3.0, eps=0.0) == pytest.approx(5.0, abs=1e-12)


def test_rankme_equals_numpy_reference_on_a_planted_power_law():
    s = np.arange(1, 31.0) ** -0.75  # singular values; eigenvalues ~ i^-1.5
    X = planted(80, 40, s) + rng(9).normal(size=(80, 40)) * 1e-3
    sigma = np.sqrt(np.clip(np.linalg.eigvalsh(X.T @ X), 0, None))  # singular values of X, uncentred
    assert rankme(X) == pytest.approx(reference_rankme(sigma), rel=1e-9)
    lam = np.linalg.eigvalsh(np.cov(X.T))  # covariance of centred X (ddof=1)
    assert rankme(X, convention="li2025") == pytest.approx(reference_rankme(np.clip(lam, 0, None)), rel=1e-9)
    # the covariance spectrum (sigma^2) is steeper than the singular values: a smaller effective rank
    assert rankme(X, convention="li2025") < rankme(X)


def test_rankme_conventions_differ_in_centring_and_li2025_keeps_the_top_eigenvalues(monkeypatch):
    X = rng(10).normal(size=(100, 12))
    shifted = X + 50.0  # a large shared offset is one dominant uncentred direction
    assert rankme(shifted) < 0.5 * rankme(X)
    assert rankme(shifted, convention="li2025") == pytest.approx(rankme(X, convention="li2025"), rel=1e-9)
    monkeypatch.setattr(geometry, "LI2025_TOP", 5)
    lam = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1][:5]
    assert rankme(X, convention="li2025") == pytest.approx(reference_rankme(lam), rel=1e-9)


def test_rankme_bad_inputs():
    with pytest.raises(ValueError, match="convention must be 'garrido2023' or 'li2025'"):
        rankme(np.eye(3), convention="garrido")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        rankme(np.eye(3), eps=-1e-7)
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        rankme(np.array([[1.0, np.inf]]))
    with pytest.warns(RuntimeWarning, match="RankMe is undefined .*all zeros"):
        assert math.isnan(rankme(np.zeros((4, 3))))
    with pytest.warns(RuntimeWarning, match="RankMe is undefined .*no variance"):
        assert math.isnan(rankme(np.ones((4, 3)), convention="li2025"))


# ------------------------------------------------------------------------------------------------ alpha-ReQ


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_a_planted_power_law(alpha):
    k = 150
    s = np.arange(1, k + 1.0) ** (-alpha / 2)  # s_i^2 ~ i^-alpha
    got = alpha_req(planted(400, 200, s))
    assert got.alpha == pytest.approx(alpha, abs=1e-9)  # the spectrum is exact: well within 0.05
    assert got.r2 == pytest.approx(1.0, abs=1e-12)
    assert got.fit_range == (12, 100)
    assert got.spectrum.sum() == pytest.approx(1.0) and got.spectrum[:k] == pytest.approx(s ** 2 / (s ** 2).sum())


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_a_sampled_power_law_within_0_05(alpha):
    """Gaussian samples whose population covariance has eigenvalues i^-alpha: the sample spectrum of 4000 draws
    in 300 dimensions scatters around it, and the fit still lands within 0.05."""
    d = 300
    X = rng(11).normal(size=(4000, d)) * np.arange(1, d + 1.0) ** (-alpha / 2)
    assert alpha_req(X @ orthogonal(d, 12)).alpha == pytest.approx(alpha, abs=0.05)


@pytest.mark.parametrize("weighted", [True, False])
def test_alpha_req_equals_a_weighted_regression_reference(weighted):
    X = rng(13).normal(size=(500, 160)) * np.arange(1, 161.0) ** -0.6
    got = alpha_req(X, (5, 120), weighted=weighted)
    lam = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    ranks = np.arange(5, 121)
    x, y = np.log(ranks)[:, None], np.log(lam[4:120] / lam.sum())
    reg = LinearRegression().fit(x, y, sample_weight=1.0 / ranks if weighted else None)
    assert got.alpha == pytest.approx(-reg.coef_[0], abs=1e-10)
    pred = reg.predict(x)
    assert got.r2 == pytest.approx(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum(), abs=1e-10)
    assert 0.5 < got.r2 < 1.0 and got.fit_range == (5, 120)


def test_alpha_req_bad_inputs_and_a_rank_deficient_spectrum():
    X = rng(14).normal(size=(60, 120))
    with pytest.raises(ValueError, match=r"ends at eigen-rank 100, but .* at most min\(n - 1, d\) = 59"):
        alpha_req(X)
    with pytest.raises(ValueError, match="at least 3 ranks"):
        alpha_req(X, (5, 6))
    with pytest.raises(ValueError, match="two integer eigen-ranks"):
        alpha_req(X, (2.5, 30))
    with pytest.raises(ValueError, match="two integer eigen-ranks"):
        alpha_req(X, 30)
    low_rank = rng(15).normal(size=(300, 40)) @ rng(16).normal(size=(40, 200))  # spans 40 dimensions
    with pytest.warns(RuntimeWarning, match="eigenvalue at rank 41 is zero to rounding"):
        got = alpha_req(low_rank)
    assert math.isnan(got.alpha) and math.isnan(got.r2)
    flat = planted(200, 150, np.ones(120))  # 120 equal eigenvalues: alpha = 0 exactly, R^2 has nothing to explain
    with pytest.warns(RuntimeWarning, match="the R\\^2 of alpha-ReQ is undefined"):
        got = alpha_req(flat)
    assert got.alpha == pytest.approx(0.0, abs=1e-9) and math.isnan(got.r2)


# ------------------------------------------------------------------------------------------------ paths


def test_path_geometry_returns_planted_norms_and_angle():
    d, theta = 64, 37.0
    e1, e2 = orthogonal(d, 17)[:2]
    a = 3.0 * e1
    b = 5.0 * (math.cos(math.radians(theta)) * e1 + math.sin(math.radians(theta)) * e2)
    origin = rng(18).normal(size=d) * 10
    g = path_geometry(origin + a, origin + b, origin=origin)
    assert (g.norm_a, g.norm_b, g.norm_ratio) == pytest.approx((3.0, 5.0, 5 / 3), abs=1e-12)
    assert g.angle == pytest.approx(theta, abs=1e-10)
    assert g.cosine == pytest.approx(math.cos(math.radians(theta)), abs=1e-12)
    half = math.sin(math.radians(theta / 2)) ** 2
    assert g.rotation_share == pytest.approx(60 * half / (4 + 60 * half), abs=1e-12)
    # the split is exact: rescaling part + rotation part = squared distance
    dist2 = float(np.sum((a - b) ** 2))
    assert (2 ** 2) / dist2 == pytest.approx(1 - g.rotation_share, abs=1e-12)


def test_path_geometry_pure_rotation_pure_rescaling_and_batches():
    Q = orthogonal(8, 19)
    a = torch.tensor(np.stack([Q[0], Q[1], 2 * Q[2]]))
    b = torch.tensor(np.stack([Q[3], -Q[1], 5 * Q[2]]))  # 90 degrees, 180 degrees, same direction
    g = path_geometry(a, b)
    assert g.angle == pytest.approx([90.0, 180.0, 0.0], abs=1e-9)
    assert g.rotation_share == pytest.approx([1.0, 1.0, 0.0], abs=1e-12)
    assert g.norm_ratio == pytest.approx([1.0, 1.0, 2.5])
    assert g.cosine == pytest.approx([0.0, -1.0, 1.0], abs=1e-12)
    one = path_geometry(a[1].numpy(), b[1].numpy())
    assert isinstance(one.angle, float) and one.angle == pytest.approx(g.angle[1])


def test_path_geometry_resolves_tiny_angles_that_arccos_loses():
    tiny = 1e-7  # degrees; cos = 1 - 1.5e-18 rounds to exactly 1 in float64
    e1, e2 = orthogonal(16, 20)[:2]
    b = math.cos(math.radians(tiny)) * e1 + math.sin(math.radians(tiny)) * e2
    assert math.degrees(math.acos(min(1.0, float(e1 @ b)))) != pytest.approx(tiny, rel=1e-3)
    assert path_geometry(e1, b).angle == pytest.approx(tiny, rel=1e-6)


def test_path_geometry_undefined_and_bad_inputs():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    with pytest.warns(RuntimeWarning, match=r"path_geometry at rows \[1, 2\]: a zero vector has no direction"):
        g = path_geometry(a, b)
    assert np.isnan(g.angle[1]) and np.isnan(g.norm_ratio[1]) and np.isnan(g.rotation_share[2])
    assert g.angle[2] == pytest.approx(0.0) and g.angle[0] == pytest.approx(90.0)
    with pytest.raises(ValueError, match="h_a and h_b must have the same shape"):
        path_geometry(a, b[:2])
    with pytest.raises(ValueError, match="h_b contains NaN or inf"):
        path_geometry(a, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"origin must be \[d\] or of h_a's shape"):
        path_geometry(a, b, origin=np.zeros(3))


# ------------------------------------------------------------------------------------------------ divergence


def distributions(n, vocab, seed, zeros=0.0):
    p = rng(seed).dirichlet(np.full(vocab, 0.5), size=n)
    p[rng(seed + 1).random((n, vocab)) < zeros] = 0.0
    return p / p.sum(1, keepdims=True)


def log(p):
    with np.errstate(divide="ignore"):
        return np.log(p)


def test_divergence_of_a_distribution_with_itself_is_zero():
    p = distributions(6, 40, 21, zeros=0.3)  # zeros in p: 0 log 0 = 0, no NaN
    d = next_token_divergence(log(p), log(p))
    assert d.kl == pytest.approx(np.zeros(6), abs=1e-15)
    assert d.js == pytest.approx(np.zeros(6), abs=1e-15)
    assert np.isfinite(d.kl).all() and np.isfinite(d.js).all()


def test_divergence_matches_scipy_and_js_is_symmetric_and_bounded():
    p, q = distributions(8, 50, 22, zeros=0.2), distributions(8, 50, 24)  # q has no zeros: KL(p || q) is finite
    d = next_token_divergence(torch.tensor(log(p)), torch.tensor(log(q)))
    assert d.kl == pytest.approx([entropy(p[i], q[i]) for i in range(8)], rel=1e-10)
    assert d.js == pytest.approx([jensenshannon(p[i], q[i]) ** 2 for i in range(8)], rel=1e-9)
    assert next_token_divergence(log(q), log(p)).js == pytest.approx(d.js, abs=1e-15)
    assert (d.js <= math.log(2)).all() and (d.js >= 0).all()
    disjoint = next_token_divergence(log(np.array([[0.5, 0.5, 0.0, 0.0]])), log(np.array([[0.0, 0.0, 0.3, 0.7]])))
    assert disjoint.kl[0] == math.inf  # p puts mass where q has none
    assert disjoint.js[0] == pytest.approx(math.log(2), abs=1e-15)


def test_divergence_reads_float32_log_softmax_blocks_and_shapes(monkeypatch):
    logits = torch.randn(2, 3, 100, generator=torch.Generator().manual_seed(0)) * 3
    lp, lq = logits.log_softmax(-1), (logits + torch.randn(2, 3, 100) * 0.5).log_softmax(-1)
    d = next_token_divergence(lp, lq)
    assert d.kl.shape == (2, 3) and d.kl.dtype == np.float64
    want = next_token_divergence(lp.double().numpy(), lq.double().numpy())
    assert d.kl == pytest.approx(want.kl, rel=1e-5)
    monkeypatch.setattr(geometry, "_BLOCK", 150)  # one row per block
    blocked = next_token_divergence(lp, lq)
    assert blocked.kl == pytest.approx(d.kl, rel=1e-12) and blocked.js == pytest.approx(d.js, rel=1e-12)
    single = next_token_divergence(lp[0, 0], lq[0, 0])
    assert isinstance(single.kl, float) and single.kl == pytest.approx(d.kl[0, 0], rel=1e-12)


def test_divergence_bad_inputs():
    logits = torch.randn(4, 10)
    with pytest.raises(ValueError, match="logp row 0 is not a log-probability distribution over its 10 tokens"):
        next_token_divergence(logits, logits.log_softmax(-1))
    with pytest.raises(ValueError, match="logp and logq must have the same shape"):
        next_token_divergence(logits.log_softmax(-1), logits[:3].log_softmax(-1))
    bad = logits.log_softmax(-1).numpy().copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="logq contains NaN or \\+inf"):
        next_token_divergence(logits.log_softmax(-1), bad)
    with pytest.raises(ValueError, match="probabilities sum to 0"):
        next_token_divergence(np.full((1, 3), -np.inf), np.log(np.full((1, 3), 1 / 3)))
