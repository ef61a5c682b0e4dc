"""SNMF: planted features recovered, chunked equals in-memory, NNLS transform, matching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from probes import SNMF, SafetensorsChunks, feature_usage, match_features


def _planted(n=256, k=8, T=4000, per_feature=6, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    F = torch.zeros(n, k)
    for j in range(k):
        idx = torch.randperm(n, generator=g)[:per_feature]
        F[idx, j] = torch.randn(per_feature, generator=g) * 3
    G = torch.rand(k, T, generator=g) ** 3
    A = F @ G + noise * torch.randn(n, T, generator=g)
    return F, G, A


def test_recovers_planted_sparse_features():
    F, G, A = _planted()
    model = SNMF(8, sparsity=6 / 256, random_state=0).fit(A.T)
    rows, cols, cos = match_features(F.T.numpy(), model.components_)
    assert cos.min() >= 0.95, cos
    assert (np.count_nonzero(model.components_, axis=1) <= 6).all()  # each feature keeps its top 6 neurons
    assert model.reconstruction_err_ == min(model.history_)  # the best iterate is kept
    assert model.reconstruction_err_ < 0.05 * float(A.norm())


def test_reported_error_is_the_true_reconstruction_error():
    _, _, A = _planted(T=1500)
    model = SNMF(8, sparsity=0.05, max_iter=15, random_state=0)
    Gt = model.fit_transform(A.T)
    recon = Gt @ model.components_
    assert model.reconstruction_err_ == pytest.approx(float(np.linalg.norm(A.T.numpy() - recon)), rel=1e-4)
    assert (Gt >= 0).all()


def test_bfloat16_recovers_planted_features_and_reports_its_true_error():
    F, G, A = _planted()
    model = SNMF(8, sparsity=6 / 256, random_state=0, dtype="bfloat16")
    Gt = model.fit_transform(A.T)
    _, _, cos = match_features(F.T.numpy(), model.components_)
    assert cos.min() >= 0.95, cos
    comp = torch.as_tensor(model.components_)
    assert torch.equal(comp, comp.bfloat16().float())  # the features are the bfloat16 values that were used
    recon = Gt.astype(np.float64) @ model.components_.astype(np.float64)
    true_err = float(np.linalg.norm(A.T.double().numpy() - recon))  # against the float32 data
    assert model.reconstruction_err_ == pytest.approx(true_err, rel=1e-3)


def test_bfloat16_least_squares_step_is_not_amplified_by_an_ill_conditioned_gram_matrix():
    # rows of G that share most of their mass make GGᵀ ill-conditioned; a bfloat16 A Gᵀ (output rounded
    # to 2^-9) solved against it would give F wrong by ~2^-9 x cond. One iteration from the same G:
    _, _, A = _planted(n=128, T=3000, seed=1)
    g = torch.Generator().manual_seed(2)
    G0 = 1 + 0.05 * torch.rand(3000, 8, generator=g)
    assert torch.linalg.cond(G0.T @ G0) > 1e4
    kw = dict(sparsity=1.0, max_iter=1, patience=2, random_state=0)
    f32 = SNMF(8, **kw).fit(A.T, coefficients=G0).components_
    b16 = SNMF(8, dtype="bfloat16", **kw).fit(A.T, coefficients=G0).components_
    assert np.linalg.norm(b16 - f32) / np.linalg.norm(f32) < 5e-3


def test_bfloat16_error_tracks_float32_iteration_by_iteration():
    _, _, A = _planted(n=256, T=4000, noise=0.1, seed=3)
    kw = dict(sparsity=0.03, max_iter=15, patience=16, tol=0, random_state=0)
    G0 = SNMF(8, **kw).initial_coefficients(A.T)  # the same start for both
    f32 = SNMF(8, **kw).fit(A.T, coefficients=G0)
    b16 = SNMF(8, dtype="bfloat16", **kw).fit(A.T, coefficients=G0)
    gap = np.abs(np.array(b16.history_) - f32.history_) / np.array(f32.history_)
    assert gap.max() < 2e-3, gap
    Gt = b16.transform(A.T)
    np.testing.assert_allclose(Gt, f32.transform(A.T), atol=0.05 * float(Gt.max()))


def test_an_interrupted_fit_keeps_its_best_iterate(monkeypatch):
    import probes.snmf as snmf_module

    _, _, A = _planted(T=1500)
    real, calls = snmf_module._feature_product, []

    def interrupt_in_fourth_iteration(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(snmf_module, "_feature_product", interrupt_in_fourth_iteration)
    model = SNMF(8, sparsity=0.05, max_iter=50, random_state=0, verbose=True)
    with pytest.raises(KeyboardInterrupt, match="after 3 iterations"):
        model.fit(A.T)
    assert model.n_iter_ == 3 and len(model.history_) == 3
    assert model.reconstruction_err_ == min(model.history_)
    monkeypatch.setattr(snmf_module, "_feature_product", real)
    uninterrupted = SNMF(8, sparsity=0.05, max_iter=3, patience=4, random_state=0).fit(A.T)
    np.testing.assert_array_equal(model.components_, uninterrupted.components_)  # the same best iterate
    assert model.transform(A.T).shape == (1500, 8)  # and it is usable


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_chunked_and_on_disk_fits_equal_the_in_memory_fit(tmp_path, dtype):
    _, _, A = _planted(T=3000)
    X = A.T.contiguous()
    # bfloat16 rounds each chunk's products on their own (so the initialisation differs too, and a
    # near-tie in the top-1% selection can go the other way): its fits start from the same
    # coefficients and are compared by error (bfloat16's trajectories part at ~1e-3) and matched features
    G0 = SNMF(8, sparsity=0.03).initial_coefficients(X) if dtype == "bfloat16" else None
    kw = dict(sparsity=0.03, max_iter=30, random_state=0, dtype=dtype)
    whole = SNMF(8, **kw).fit(X, coefficients=G0)
    chunked = SNMF(8, chunk_size=700, **kw).fit(X, coefficients=G0)
    paths = []
    for i, start in enumerate(range(0, 3000, 1000)):
        paths.append(tmp_path / f"shard-{i}.safetensors")
        save_file({"X": X[start : start + 1000].clone()}, str(paths[-1]))
    disk = SNMF(8, **kw).fit(SafetensorsChunks(paths), coefficients=G0)
    for other in (chunked, disk):
        if dtype == "float32":
            np.testing.assert_allclose(other.components_, whole.components_, rtol=1e-3, atol=1e-3)
            assert other.reconstruction_err_ == pytest.approx(whole.reconstruction_err_, rel=1e-4)
        else:
            _, _, cos = match_features(whole.components_, other.components_)
            assert cos.min() >= 0.99, cos
            assert other.reconstruction_err_ == pytest.approx(whole.reconstruction_err_, rel=5e-3)


def test_transform_solves_nonnegative_least_squares():
    from scipy.optimize import nnls

    F, G, A = _planted(T=2000)
    model = SNMF(8, sparsity=6 / 256, random_state=0).fit(A.T)
    new = (F @ torch.rand(8, 5) ** 2).T.numpy()
    coef = model.transform(new)
    assert coef.shape == (5, 8) and (coef >= 0).all()
    for row, x in zip(coef, new):
        ref, _ = nnls(model.components_.T.astype(np.float64), x.astype(np.float64))
        res, best = np.linalg.norm(x - row @ model.components_), np.linalg.norm(x - ref @ model.components_)
        assert res <= best + 1e-3 * np.linalg.norm(x)  # an iterative solver, at the optimum to 0.1% of |x|
        np.testing.assert_allclose(row, ref, atol=5e-3 * ref.max())  # same solution, to 0.5% of its scale
    np.testing.assert_allclose(model.inverse_transform(coef), coef @ model.components_, rtol=1e-6)


@pytest.mark.parametrize("init", ["svd", "kmeans", "random"])
def test_every_initialisation_fits(init):
    _, _, A = _planted(T=1500)
    model = SNMF(8, sparsity=0.05, init=init, max_iter=40, random_state=0).fit(A.T)
    assert model.reconstruction_err_ < 0.3 * float(A.norm()) and model.components_.shape == (8, 256)
    again = SNMF(8, sparsity=0.05, init=init, max_iter=40, random_state=0).fit(A.T)
    np.testing.assert_array_equal(model.components_, again.components_)  # reproducible for a seed


def test_usage_is_the_mean_contribution_norm_and_recovers_a_planted_ranking():
    """Feature A adds 10·F_A on 10% of tokens, feature B 1·F_B on 50% (unit F): mean contribution norms 1.0 and
    0.5. The fit moves each coefficient row's scale into F, so the mean coefficient alone ranks B first."""
    g = torch.Generator().manual_seed(0)
    n, T = 64, 4000
    F = torch.zeros(n, 2)
    F[:4, 0], F[10:14, 1] = 0.5, 0.5  # unit norm, disjoint neurons
    G = torch.zeros(2, T)
    G[0, torch.randperm(T, generator=g)[: T // 10]] = 10.0
    G[1, torch.randperm(T, generator=g)[: T // 2]] = 1.0
    A = F @ G + 1e-3 * torch.randn(n, T, generator=g)
    model = SNMF(2, sparsity=4 / n, random_state=0).fit(A.T)
    coef = model.transform(A.T)
    usage = feature_usage(model.components_, coef)
    rows, cols, _ = match_features(F.T.numpy(), model.components_)
    planted = dict(zip(rows, cols))
    np.testing.assert_allclose(usage[[planted[0], planted[1]]], [1.0, 0.5], rtol=0.02)
    assert coef[:, planted[0]].mean() < coef[:, planted[1]].mean()  # what the mean coefficient would have said
    with pytest.raises(ValueError, match=r"components \[k, n_neurons\] and coefficients \[n_tokens, k\]"):
        feature_usage(model.components_, coef[:, :1])


def test_matching_pairs_permuted_features():
    g = np.random.default_rng(0)
    a = g.normal(size=(6, 50))
    perm = g.permutation(6)
    b = a[perm] + 0.01 * g.normal(size=(6, 50))
    rows, cols, cos = match_features(a, b)
    assert (perm[cols] == rows).all() and (cos > 0.99).all()
    rows, cols, cos = match_features(a[:4], b)  # unequal sizes: min(k_a, k_b) pairs
    assert len(rows) == 4
    with pytest.raises(ValueError, match="same neurons"):
        match_features(a, b[:, :10])


@pytest.mark.parametrize("kwargs, X, match", [
    ({"n_components": 0}, np.ones((10, 4)), "n_components must be a positive integer"),
    ({"sparsity": 0}, np.ones((10, 4)), r"sparsity must be in \(0, 1\]"),
    ({"init": "nndsvd"}, np.ones((10, 4)), "init must be"),
    ({"n_components": 5}, np.ones((10, 4)), "exceeds min"),
    ({}, np.full((10, 4), np.nan), "Input X contains NaN"),
    ({}, np.ones((10, 4, 2)), "Found array with dim 3"),
    ({}, torch.full((10, 4), float("inf")), "NaN or inf"),
    ({}, torch.ones(10, 4, 2), r"must be \[n_tokens, n_neurons\]"),
])
def test_bad_input(kwargs, X, match):
    with pytest.raises(ValueError, match=match):
        SNMF(**{"n_components": 2, **kwargs}).fit(X)


def test_transform_checks_width_and_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SNMF(2).transform(np.ones((3, 4)))
    model = SNMF(2, sparsity=0.5, max_iter=5).fit(np.abs(np.random.default_rng(0).normal(size=(50, 4))))
    with pytest.raises(ValueError, match="X has 5 features, but SNMF is expecting 4"):
        model.transform(np.ones((3, 5)))
    with pytest.raises(ValueError, match="X has 5 neurons; the model was fitted on 4"):
        model.transform(torch.ones(3, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.transform(torch.full((3, 4), float("nan")))


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([SNMF(2, sparsity=0.5, max_iter=20), SNMF(2, sparsity=0.5, max_iter=20, dtype="bfloat16")])
def test_scikit_learn_contract(estimator, check):
    check(estimator)
