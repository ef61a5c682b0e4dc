import pytest
import torch

from probes.similarity import cosine, generalization_matrix, mahalanobis_cosine, transfer
from probes.sweep import fit_layers


def test_cosine_basics():
    a = torch.randn(3, 8)
    assert torch.allclose(cosine(a, a), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(cosine(a, -2 * a), -torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="direction shapes differ"):
        cosine(a, a[:, :4])


def test_mahalanobis_cosine_equals_explicit_formula():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 2, 6, generator=g) * torch.tensor([5.0, 1, 1, 0.1, 0.1, 2])
    a, b = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    got = mahalanobis_cosine(a, b, X)
    for layer in range(2):
        sigma = torch.cov(X[:, layer].double().T)
        u, v = a[layer].double(), b[layer].double()
        want = u @ sigma @ v / torch.sqrt((u @ sigma @ u) * (v @ sigma @ v))
        assert got[layer].item() == pytest.approx(want.item(), abs=1e-10)


def test_mahalanobis_cosine_ignores_directions_without_variance():
    X = torch.zeros(100, 1, 3)
    X[:, 0, 0] = torch.randn(100)  # data varies along axis 0 only
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 5.0, -3.0]])  # differs only where the data does not vary
    assert cosine(a, b).item() < 0.2
    assert mahalanobis_cosine(a, b, X).item() == pytest.approx(1.0)


def planted(direction, n=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, direction.shape[0], direction.shape[1], generator=g)
    return X + 2 * (2 * y - 1)[:, None, None].float() * direction[None], y


def test_transfer_and_generalization_follow_the_shared_direction():
    g = torch.Generator().manual_seed(1)
    shared = torch.nn.functional.normalize(torch.randn(2, 16, generator=g), dim=-1)
    other = torch.randn(2, 16, generator=g)
    other = torch.nn.functional.normalize(other - (other * shared).sum(-1, keepdim=True) * shared, dim=-1)  # orthogonal
    a_tr, a_te, b_te, c_te = planted(shared), planted(shared, seed=2), planted(shared, seed=3), planted(other, seed=4)
    fit = fit_layers(*a_tr, "mass_mean")
    assert (transfer(fit, *b_te)["accuracy"] > 0.95).all()
    assert ((transfer(fit, *c_te)["accuracy"] - 0.5).abs() < 0.1).all()  # chance on an orthogonal direction
    rows, cols, m = generalization_matrix({"a": a_tr}, {"a": a_te, "b": b_te, "c": c_te})
    assert rows == ["a"] and cols == ["a", "b", "c"] and m.shape == (1, 3, 2)
    assert (m[0, :2] > 0.95).all() and ((m[0, 2] - 0.5).abs() < 0.1).all()


def test_transfer_separates_a_shifted_threshold_from_a_lost_direction():
    """The target keeps the source's direction but sits shifted along it: the source threshold reads
    chance, while AUROC and the target-centred threshold show the direction still separates the classes."""
    g = torch.Generator().manual_seed(0)
    n, d = 200, 16
    w = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    y = torch.arange(n) % 2
    noise = 0.3 * torch.randn(n, 1, d, generator=g)
    source = (2 * y - 1)[:, None, None] * w + noise
    fit = fit_layers(source, y, "mass_mean")
    target_train = source + 5 * w  # the same classes, shifted far past the source threshold
    target_test = (2 * y - 1)[:, None, None] * w + 0.3 * torch.randn(n, 1, d, generator=g) + 5 * w
    out = transfer(fit, target_test, y, center=target_train.mean(0))
    assert float(out["accuracy"][0]) == 0.5  # everything lands on the positive side
    assert float(out["auroc"][0]) > 0.99
    # reference: threshold through the target's training mean
    ref = (((target_test[:, 0] - target_train[:, 0].mean(0)) @ fit.coef[0].float()) > 0).long()
    assert float(out["accuracy_centred"][0]) == pytest.approx(float((ref == y).double().mean())) and ref.eq(y).all()
    with pytest.raises(ValueError, match=r"center must be \[layer, d\]"):
        transfer(fit, target_test, y, center=torch.zeros(d))
