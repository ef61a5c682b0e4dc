"""Real tier: truth probes on Geometry-of-Truth ``cities.csv`` at the final period of both real models.

Published shape (Marks & Tegmark 2023): city statements are linearly separable by truth in the middle
layers of pretrained models, read at the final period; a probe on shuffled labels stays at chance.
The logistic probe must fit every layer of real activations (massive activations, rank-deficient
early layers) without raising.
"""

from __future__ import annotations

import pytest
import torch

import interp
import probes
from interp.datasets import load_file
from tests.conftest import SHARED_DATASETS

pytestmark = pytest.mark.real

CITIES = SHARED_DATASETS / "geometry_of_truth" / "cities.csv"


@pytest.fixture(scope="module")
def cities():
    if not CITIES.exists():
        pytest.skip(f"{CITIES} not found (../shared/datasets beside the repository)")
    return load_file(CITIES)


def _city_split(ps):
    """Test rows: every third city (both its true and its false statement), so no city is on both sides."""
    names = sorted({row["city"] for row in ps.meta})
    held = set(names[::3])
    return torch.tensor([row["city"] in held for row in ps.meta])


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_truth_is_decodable_in_middle_layers_and_shuffled_labels_are_not(real_models, cities, name):
    model = real_models(name)
    acts = interp.collect(model, cities, "resid_post", positions="period", batch_size=64, progress=False)
    X, y = acts["resid_post"], torch.as_tensor(acts.labels)
    test = _city_split(cities)
    n_layers = X.shape[1]
    middle = slice(n_layers // 3, 2 * n_layers // 3 + 1)
    shuffled = y[~test][torch.randperm(int((~test).sum()), generator=torch.Generator().manual_seed(0))]
    null, _ = probes.score_layers(probes.fit_layers(X[~test], shuffled, "mass_mean"), X[test], y[test])
    for method in ("mass_mean", "logistic"):
        fit = probes.fit_layers(X[~test], y[~test], method)
        assert torch.isfinite(fit.coef).all() and torch.isfinite(fit.intercept).all(), method
        acc, _ = probes.score_layers(fit, X[test], y[test])
        best = float(acc[middle].max())
        print(f"{name} {method}: best middle-layer test accuracy {best:.3f}; shuffled-label null "
              f"{float(null[middle].max()):.3f}")
        assert best > 0.7, (method, acc.tolist())
        assert best > float(null[middle].max()) + 0.15, (method, acc.tolist(), null.tolist())
