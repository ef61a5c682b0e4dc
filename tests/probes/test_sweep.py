import numpy as np
import pytest
import torch

from probes import LDAProbe, LogisticProbe, MassMeanProbe
from probes.sweep import METHODS, fit_layers, score_layers

ESTIMATORS = {
    "mass_mean": MassMeanProbe(), "mass_mean_cov": MassMeanProbe(covariance=True),
    "lda": LDAProbe(), "logistic": LogisticProbe(),
}


def layered(n=600, layers=4, d=16, seed=0):
    """Each layer separates the classes along its own planted direction, more strongly with depth."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(layers, d, generator=g), dim=-1)
    X = torch.randn(n, layers, d, generator=g)
    X += (2 * y - 1)[:, None, None].float() * dirs[None] * torch.linspace(0.2, 3, layers)[None, :, None]
    return X, y, dirs


@pytest.mark.parametrize("method", METHODS)
def test_batched_fit_equals_one_estimator_per_layer(method):
    X, y, _ = layered()
    fit = fit_layers(X, y, method, tol=1e-10, dtype=torch.float64)
    for layer in range(X.shape[1]):
        est = ESTIMATORS[method].fit(X[:, layer].double().numpy(), y.numpy())
        np.testing.assert_allclose(fit.coef[layer].numpy(), est.coef_[0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(fit.intercept[layer].item(), est.intercept_[0], rtol=1e-6, atol=1e-8)


def test_recovers_each_layers_planted_direction_and_scores_rise_with_depth():
    X, y, dirs = layered(n=4000)
    fit = fit_layers(X, y, "mass_mean")
    cos = (fit.direction.float() * dirs).sum(-1)
    assert (cos[1:] >= 0.99).all()
    acc_same, auc_same = score_layers(fit, X, y)
    assert torch.all(acc_same[1:] > acc_same[:-1]) and acc_same[-1] > 0.99 and auc_same[-1] > 0.999


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    X, y, _ = layered(n=300)
    fit = fit_layers(X, y, "logistic")
    _, auc = score_layers(fit, X, y)
    scores = torch.einsum("nld,ld->ln", X.double(), fit.coef) + fit.intercept[:, None]
    for layer in range(X.shape[1]):
        assert auc[layer].item() == pytest.approx(roc_auc_score(y.numpy(), scores[layer].numpy()))


def test_bad_inputs():
    X, y, _ = layered(n=20)
    with pytest.raises(ValueError, match=r"X must be \[n_samples, layer, d\]"):
        fit_layers(X[:, 0], y)
    with pytest.raises(ValueError, match=r"y must be \[n_samples\]"):
        fit_layers(X, y[:5])
    with pytest.raises(ValueError, match="both classes present"):
        fit_layers(X, torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown probe method 'svm'"):
        fit_layers(X, y, "svm")
    bad = X.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_layers(bad, y)
