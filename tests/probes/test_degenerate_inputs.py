"""Empty, non-finite and degenerate inputs to the public entry points of ``probes``: each is refused with an error
that names the cause, or, where the result is computable but undefined or suspect, reported as such (NaN, a
warning) instead of as a number that looks fine."""

import warnings

import numpy as np
import pytest
import torch

import probes
from probes.lape import activation_probability, lape
from probes.stats import (
    accuracy_ci,
    bootstrap_ci,
    direction_cosine_ci,
    mean_ci,
    paired_difference_cosine_ci,
    proportion_ci,
    shuffled_label_accuracy,
    split_half_directions,
)

NAN, INF = float("nan"), float("inf")


def data(n=20, layers=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, layers, d, generator=g)
    y = torch.arange(n) % 2
    X[:, :, 0] += 2 * y[:, None]  # a class difference along dimension 0
    return X, y


def flat(n=20, d=4, seed=0):
    X, y = data(n, 1, d, seed)
    return X[:, 0].double().numpy(), y.numpy()


# Each case: (call, exception type, message). The messages are the texts /tmp/audit_rows_probes.md quotes.
RAISES = {
    # linear probes (scikit-learn estimators)
    "ridge nan": (lambda: probes.MassMeanProbe(covariance=True, ridge=NAN).fit(*flat()), ValueError,
                  "ridge must be a finite number >= 0, got nan"),
    "ridge negative": (lambda: probes.MassMeanProbe(covariance=True, ridge=-1.0).fit(*flat()), ValueError,
                       "ridge must be a finite number >= 0, got -1.0"),
    "shrinkage string": (lambda: probes.LDAProbe(shrinkage="ledoit").fit(*flat()), ValueError,
                         "shrinkage must be 'auto', None or in [0, 1], got 'ledoit'"),
    "C nan": (lambda: probes.LogisticProbe(C=NAN).fit(*flat()), ValueError, "C must be positive and finite, got nan"),
    "C inf": (lambda: probes.LogisticProbe(C=INF).fit(*flat()), ValueError, "C must be positive and finite, got inf"),
    "max_iter 0": (lambda: probes.LogisticProbe(max_iter=0).fit(*flat()), ValueError,
                   "max_iter must be an integer >= 1, got 0"),
    "max_iter float": (lambda: probes.LogisticProbe(max_iter=2.5).fit(*flat()), TypeError,
                       "max_iter must be an integer, got float 2.5"),
    "probe overflow": (lambda: probes.MassMeanProbe(covariance=True).fit(flat()[0] * 1e200, flat()[1]), ValueError,
                       "their squares overflow float64 in the fit; rescale X"),
    # fit_layers / score_layers / sweep
    "no layers": (lambda: probes.fit_layers(torch.zeros(20, 0, 4), torch.arange(20) % 2), ValueError,
                  "X has no layers or no dimensions (shape (20, 0, 4))"),
    "no dimensions": (lambda: probes.fit_layers(torch.zeros(20, 3, 0), torch.arange(20) % 2, "logistic"), ValueError,
                      "X has no layers or no dimensions (shape (20, 3, 0))"),
    "fit_layers C nan": (lambda: probes.fit_layers(*data(), "logistic", C=NAN), ValueError,
                         "C must be positive and finite, got nan"),
    "fit_layers C 0": (lambda: probes.fit_layers(*data(), "logistic", C=0), ValueError,
                       "C must be positive and finite, got 0"),
    "fit_layers C string": (lambda: probes.fit_layers(*data(), "logistic", C="1"), TypeError,
                            "C must be a number, got str '1'"),
    "fit_layers tol nan": (lambda: probes.fit_layers(*data(), "logistic", tol=NAN), ValueError,
                           "tol must be a finite number >= 0, got nan"),
    "fit_layers dtype": (lambda: probes.fit_layers(*data(), "logistic", dtype=torch.float16), ValueError,
                         "dtype must be torch.float32 or torch.float64"),
    "fit_layers overflow": (lambda: probes.fit_layers(data()[0].double() * 1e200, data()[1], "mass_mean_cov"),
                            ValueError, "their squares overflow float64 in the fit; rescale X"),
    "score other layers": (lambda: probes.score_layers(probes.fit_layers(*data()), data(layers=2)[0], data()[1]),
                           ValueError,
                           "the probes are [layer, d] = (3, 4) but X is [n_samples, layer, d] = (20, 2, 4)"),
    "score other width": (lambda: probes.score_layers(probes.fit_layers(*data()), data(d=3)[0], data()[1]),
                          ValueError, "the probes are [layer, d] = (3, 4) but X is [n_samples, layer, d] = (20, 3, 3)"),
    "score nan probes": (lambda: probes.score_layers(probes.LayerFit("x", torch.full((3, 4), NAN), torch.zeros(3)),
                                                     *data()),
                         ValueError, "the probes have NaN or inf weights at layer slots [0, 1, 2]"),
    "sweep no models": (lambda: probes.sweep({}, {}), ValueError, "train and test name no models: nothing to probe"),
    "sweep no methods": (lambda: probes.sweep({"m": None}, {"m": None}, methods=()), ValueError,
                         "methods is empty: name at least one of"),
    "sweep methods string": (lambda: probes.sweep({"m": None}, {"m": None}, methods="logistic"), TypeError,
                             "methods must be a sequence of method names, got the string 'logistic'"),
    # similarity
    "mahalanobis nan": (lambda: probes.mahalanobis_cosine(torch.ones(3, 4), torch.ones(3, 4),
                                                          torch.full((5, 3, 4), NAN)),
                        ValueError, "X contains NaN or inf"),
    "transfer center nan": (lambda: probes.transfer(probes.fit_layers(*data()), *data(),
                                                    center=torch.full((3, 4), NAN)),
                            ValueError, "center contains NaN or inf"),
    "transfer other layers": (lambda: probes.transfer(probes.fit_layers(*data()), data(layers=2)[0], data()[1]),
                              ValueError, "the probes are [layer, d] = (3, 4) but X is"),
    "generalization empty": (lambda: probes.generalization_matrix({}, {"a": data()}), ValueError,
                             "train and test must each name at least one labelled set, got 0 and 1"),
    # stats
    "bootstrap 0 resamples": (lambda: bootstrap_ci(np.mean, (np.arange(10.0),), n_resamples=0), ValueError,
                              "n_resamples must be an integer >= 2, got 0"),
    "bootstrap 1 resample": (lambda: bootstrap_ci(np.mean, (np.arange(10.0),), n_resamples=1), ValueError,
                             "n_resamples must be an integer >= 2, got 1"),
    "bootstrap confidence 95": (lambda: bootstrap_ci(np.mean, (np.arange(10.0),), confidence=95), ValueError,
                                "confidence must be a number in (0, 1) (e.g. 0.95), got 95"),
    "bootstrap confidence 0": (lambda: bootstrap_ci(np.mean, (np.arange(10.0),), confidence=0.0), ValueError,
                               "confidence must be a number in (0, 1) (e.g. 0.95), got 0.0"),
    "bootstrap confidence negative": (lambda: bootstrap_ci(np.mean, (np.arange(10.0),), confidence=-0.5), ValueError,
                                      "confidence must be a number in (0, 1) (e.g. 0.95), got -0.5"),
    "bootstrap no samples": (lambda: bootstrap_ci(np.mean, ()), ValueError, "samples is empty"),
    "bootstrap scalar sample": (lambda: bootstrap_ci(np.mean, (np.float64(3.0),)), ValueError,
                                "each bootstrap sample needs at least 2 values"),
    "mean_ci nan": (lambda: mean_ci(np.r_[np.arange(10.0), NAN]), ValueError, "values contain NaN or inf"),
    "proportion confidence 1": (lambda: proportion_ci(np.r_[1, 0, 1], confidence=1.0), ValueError,
                                "confidence must be a number in (0, 1) (e.g. 0.95), got 1.0"),
    "proportion scalar": (lambda: proportion_ci(np.float64(1.0)), ValueError,
                          "outcomes must be 0/1 with at least one per row"),
    "accuracy labels": (lambda: accuracy_ci(probes.fit_layers(*data()), data()[0], data()[1] + 1), ValueError,
                        "labels must be 0/1, got classes [1, 2]"),
    "accuracy one label": (lambda: accuracy_ci(probes.fit_layers(*data()), data()[0], torch.tensor([1])), ValueError,
                           "y must be [n_samples] = [20], got shape (1,)"),
    "accuracy nan X": (lambda: accuracy_ci(probes.fit_layers(*data()), torch.full((20, 3, 4), NAN), data()[1]),
                       ValueError, "activations contain NaN or inf"),
    "accuracy other layers": (lambda: accuracy_ci(probes.fit_layers(*data()), *data(layers=2)), ValueError,
                              "the probes are [layer, d] = (3, 4) but X is"),
    "shuffles 0": (lambda: shuffled_label_accuracy(*data(), *data(), n_shuffles=0), ValueError,
                   "n_shuffles must be an integer >= 1, got 0"),
    "shuffles one class": (lambda: shuffled_label_accuracy(data()[0], torch.zeros(20), *data()), ValueError,
                           "labels must be 0/1 with both classes present, got classes [0.0]"),
    "split one row": (lambda: split_half_directions(data()[0][:3], data()[1][:3]), ValueError,
                      "needs at least 2 rows of each class to give both halves one; class 1 has 1"),
    "split third label": (lambda: split_half_directions(data()[0], torch.arange(20) % 3), ValueError,
                          "labels must be 0/1 with both classes present, got classes [0, 1, 2]"),
    "split short y": (lambda: split_half_directions(data()[0], data()[1][:10]), ValueError,
                      "y must be [n_samples] = [20], got shape (10,)"),
    "direction ci nan": (lambda: direction_cosine_ci(torch.full((20, 3, 4), NAN), data()[0], data()[1]), ValueError,
                         "X_a or X_b contains NaN or inf"),
    "direction ci widths": (lambda: direction_cosine_ci(data()[0], data(d=3)[0], data()[1]), ValueError,
                            "X_a, X_b must be [n, layer, d] over the same rows as y"),
    "direction ci no layers": (lambda: direction_cosine_ci(data()[0][:, :0], data()[0][:, :0], data()[1]), ValueError,
                               "X_a, X_b must be [n, layer, d] over the same rows as y"),
    "direction ci 1 resample": (lambda: direction_cosine_ci(*data()[:1], *data(), n_resamples=1), ValueError,
                                "n_resamples must be an integer >= 2, got 1"),
    "paired ci nan": (lambda: paired_difference_cosine_ci(torch.full((10, 3, 4), NAN), torch.ones(10, 3, 4)),
                      ValueError, "D_a or D_b contains NaN or inf"),
    "paired ci no groups": (lambda: paired_difference_cosine_ci(torch.ones(10, 0, 3, 4), torch.ones(10, 0, 3, 4)),
                            ValueError, "D_a, D_b must both be [n, layer, d] or [n, group, layer, d] with n >= 2"),
    # LAPE
    "language beyond n_languages": (lambda: activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 2),
                                    ValueError, "language index 2 is outside [0, n_languages) = [0, 2)"),
    "negative language": (lambda: activation_probability(torch.randn(30, 5), torch.arange(30) % 3 - 1, 2),
                          ValueError, "language index -1 is outside [0, n_languages) = [0, 2)"),
    "n_languages 0": (lambda: activation_probability(torch.randn(30, 5), torch.zeros(30), 0), ValueError,
                      "n_languages must be an integer >= 1, got 0"),
    "n_languages float": (lambda: activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 3.0), TypeError,
                          "n_languages must be an integer, got float 3.0"),
    "fractional languages": (lambda: activation_probability(torch.randn(30, 5), (torch.arange(30) % 3) + 0.5, 4),
                             ValueError, "languages must be integer language indices"),
    "acts nan": (lambda: activation_probability(torch.full((30, 5), NAN), torch.arange(30) % 3, 3), ValueError,
                 "acts contain NaN or inf"),
    "threshold nan": (lambda: activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 3, threshold=NAN),
                      ValueError, "threshold must be a finite number, got nan"),
    "top_rate nan": (lambda: lape(np.full((1, 100, 3), 0.5), top_rate=NAN), ValueError,
                     "top_rate must be a finite number, got nan"),
    "filter_rate inf": (lambda: lape(np.full((1, 100, 3), 0.5), filter_rate=INF), ValueError,
                        "filter_rate must be a finite number, got inf"),
    "top_rate string": (lambda: lape(np.full((1, 100, 3), 0.5), top_rate="0.01"), TypeError,
                        "top_rate must be a number, got str '0.01'"),
    # SNMF
    "snmf zeros": (lambda: probes.SNMF(2, device="cpu").fit(torch.zeros(10, 4)), ValueError,
                   "X is all zeros: there is nothing to factorize"),
    "snmf ridge nan": (lambda: probes.SNMF(2, ridge=NAN).fit(np.ones((10, 4))), ValueError,
                       "ridge must be a finite number >= 0, got nan"),
    "snmf tol nan": (lambda: probes.SNMF(2, tol=NAN).fit(np.ones((10, 4))), ValueError,
                     "tol must be a finite number >= 0, got nan"),
    "snmf max_iter float": (lambda: probes.SNMF(2, max_iter=2.5).fit(np.ones((10, 4))), TypeError,
                            "max_iter must be an integer, got float 2.5"),
    "snmf patience nan": (lambda: probes.SNMF(2, patience=NAN).fit(np.ones((10, 4))), TypeError,
                          "patience must be an integer, got float nan"),
    "snmf chunk_size negative": (lambda: probes.SNMF(2, chunk_size=-5).fit(np.ones((10, 4))), ValueError,
                                 "chunk_size must be an integer >= 1, got -5"),
    "snmf transform_iter negative": (lambda: probes.SNMF(2, transform_iter=-1).fit(np.ones((10, 4))), ValueError,
                                     "transform_iter must be an integer >= 0, got -1"),
    "match nan": (lambda: probes.match_features(np.full((2, 4), NAN), np.ones((2, 4))), ValueError,
                  "feature sets contain NaN or inf"),
    "usage nan": (lambda: probes.feature_usage(np.ones((2, 4)), np.full((5, 2), NAN)), ValueError,
                  "components or coefficients contain NaN or inf"),
    "usage negative": (lambda: probes.feature_usage(np.ones((2, 4)), -np.ones((5, 2))), ValueError,
                       "coefficients must be nonnegative (SNMF's G), got a minimum of -1"),
}


@pytest.mark.parametrize("case", sorted(RAISES))
def test_bad_input_raises_an_error_naming_the_cause(case):
    call, kind, message = RAISES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the error is under test
        with pytest.raises(kind) as info:
            call()
    assert type(info.value) is kind, f"{case}: {type(info.value).__name__}: {info.value}"
    assert message in str(info.value), f"{case}: {info.value}"


@pytest.fixture(scope="module")
def snmf():
    X = np.abs(np.random.default_rng(0).normal(size=(40, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return probes.SNMF(2, sparsity=0.5, max_iter=5, device="cpu").fit(X)


def test_snmf_transform_and_inverse_transform_check_their_input(snmf):
    with pytest.raises(ValueError, match="X has no tokens"):
        snmf.transform(torch.zeros(0, 6))
    with pytest.raises(ValueError, match=r"coefficients must be \[n_tokens, k\] = \[n_tokens, 2\], got shape \(5, 3\)"):
        snmf.inverse_transform(np.ones((5, 3)))
    with pytest.raises(ValueError, match="coefficients contain NaN or inf"):
        snmf.inverse_transform(np.full((5, 2), np.nan))
    np.testing.assert_array_equal(snmf.inverse_transform(np.ones((5, 2))), np.ones((5, 2), np.float32)
                                  @ snmf.components_)


# ------------------------------------------------------------------ undefined or suspect: warned, not a number


@pytest.mark.parametrize("probe", [probes.MassMeanProbe(), probes.MassMeanProbe(covariance=True), probes.LDAProbe(),
                                   probes.LogisticProbe()], ids=lambda p: type(p).__name__)
def test_a_probe_fitted_to_constant_activations_warns_that_its_direction_is_zero(probe):
    with pytest.warns(RuntimeWarning, match="the fitted weight vector is zero"):
        probe.fit(np.ones((6, 4)), np.arange(6) % 2)
    assert (probe.direction_ == 0).all()  # unchanged: the zero vector, now flagged


@pytest.mark.parametrize("method", ["mass_mean", "mass_mean_cov", "lda", "logistic"])
def test_fit_layers_names_the_layers_whose_probe_is_zero(method):
    X, y = data()
    X[:, 1] = 1.0  # layer 1: the same activation in every row
    with pytest.warns(RuntimeWarning, match=r"weight vector is zero at layer slots \[1\]"):
        fit = probes.fit_layers(X, y, method)
    assert (fit.coef[1] == 0).all() and (fit.coef[[0, 2]] != 0).any(-1).all()


def test_a_real_fit_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probes.MassMeanProbe().fit(*flat())
        fit = probes.fit_layers(*data())
        probes.cosine(fit.coef, fit.coef)


def test_score_layers_takes_float32_probes():
    fit = probes.fit_layers(*data())
    single = probes.LayerFit(fit.method, fit.coef.float(), fit.intercept.float())
    acc, auc = probes.score_layers(single, *data())
    ref = probes.score_layers(probes.LayerFit(fit.method, single.coef.double(), single.intercept.double()), *data())
    assert torch.equal(acc, ref[0]) and torch.equal(auc, ref[1])


def test_the_cosine_of_a_zero_direction_is_undefined():
    a = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[1] = 0
    with pytest.warns(RuntimeWarning, match=r"has no cosine at layers \[1\]: it is NaN \(undefined\)"):
        cos = probes.cosine(a, b)
    assert torch.isnan(cos[1]) and torch.allclose(cos[[0, 2]], torch.ones(2, dtype=torch.float64))


def test_the_mahalanobis_cosine_along_no_variance_is_undefined():
    X, _ = data()
    X[:, 2] = 1.0  # layer 2 does not vary: no covariance to measure a direction with
    a = torch.ones(3, 4)
    with pytest.warns(RuntimeWarning, match=r"mahalanobis_cosine: .* has no cosine at layers \[2\]"):
        cos = probes.mahalanobis_cosine(a, a, X)
    assert torch.isnan(cos[2]) and torch.allclose(cos[:2], torch.ones(2, dtype=torch.float64))


def test_the_interval_of_a_cosine_with_a_zero_direction_is_undefined():
    X, y = data()
    X[:, 0] = 1.0  # layer 0: no difference of means
    with pytest.warns(RuntimeWarning, match=r"a direction has norm 0 at layer slots \[0\]"):
        low, high = direction_cosine_ci(X, X, y, n_resamples=20)
    assert np.isnan(low[0]) and np.isnan(high[0]) and np.isfinite(low[1:]).all() and np.isfinite(high[1:]).all()
    D = torch.randn(10, 3, 4, generator=torch.Generator().manual_seed(0))
    D[:, 1] = 0  # no paired difference at layer 1
    with pytest.warns(RuntimeWarning, match=r"a direction has norm 0 at layer slots \[1\]"):
        low, high = paired_difference_cosine_ci(D, D, n_resamples=20)
    assert np.isnan(low[1]) and np.isnan(high[1]) and np.isfinite(low[[0, 2]]).all()


def test_snmf_names_features_that_came_out_zero():
    X = np.ones((20, 4))  # rank 1: a second feature has nothing to carry
    with pytest.warns(RuntimeWarning, match=r"SNMF: features \[1\] of 2 are zero"):
        model = probes.SNMF(2, sparsity=1.0, max_iter=5, device="cpu").fit(X)
    norms = np.linalg.norm(model.components_, axis=1)
    assert norms[1] < 1e-6 * norms[0]


def test_match_features_names_zero_features():
    a = np.random.default_rng(0).normal(size=(3, 8))
    with pytest.warns(RuntimeWarning, match=r"features of norm 0 \(a: \[1\], b: \[\]\)"):
        rows, cols, cos = probes.match_features(np.where(np.arange(3)[:, None] == 1, 0.0, a), a)
    assert len(rows) == 3
