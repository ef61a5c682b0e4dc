"""SteeringVector: builders, checks, and the safetensors + JSON round trip."""

from __future__ import annotations

import pickle

import pytest
import torch

from steering import SteeringVector, load_vector


def test_round_trip_keeps_everything(tmp_path):
    v = SteeringVector(torch.randn(3, 16), (5, 1, 3), "resid_post", 2.5, {"model": "m", "concept": "x", "n": [1, 2]})
    assert v.layers == (1, 3, 5)  # rows sorted with their layers
    path = v.save(tmp_path / "v.safetensors")
    w = load_vector(path)
    assert w.layers == v.layers and w.site == v.site and w.scale == v.scale and w.meta == v.meta
    torch.testing.assert_close(w.vectors, v.vectors, rtol=0, atol=0)


def test_rows_follow_their_layers():
    rows = torch.eye(4)[:3]
    v = SteeringVector(rows, (7, 2, 4))
    torch.testing.assert_close(v.at(7), rows[0])
    torch.testing.assert_close(v.at(2), rows[1])
    assert v.select([4]).layers == (4,)
    with pytest.raises(KeyError, match="no vector for layer 0"):
        v.at(0)


def test_mean_difference_is_the_difference_of_means():
    pos, neg = torch.randn(30, 2, 8), torch.randn(20, 2, 8)
    v = SteeringVector.from_mean_difference(pos, neg, layers=[0, 1])
    torch.testing.assert_close(v.vectors, (pos.double().mean(0) - neg.double().mean(0)).float())
    assert v.meta["method"] == "mean_difference" and v.meta["n_positive"] == 30


def test_pca_of_paired_differences_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    d, n = 32, 200
    truth = torch.nn.functional.normalize(torch.randn(2, d, generator=g), dim=-1)
    base = torch.randn(n, 2, d, generator=g)
    strength = 1 + 3 * torch.rand(n, 2, 1, generator=g)  # varying shift along the direction
    pos = base + strength * truth + 0.05 * torch.randn(n, 2, d, generator=g)
    v = SteeringVector.from_pca(pos, base, layers=[0, 1])
    cos = (v.directions * truth).sum(-1)
    assert (cos > 0.99).all(), cos  # right direction, and signed toward the positives


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vectors": torch.zeros(2, 4), "layers": (0,)}, r"2 vector\(s\) for 1 layer"),
        ({"vectors": torch.zeros(2, 4), "layers": (1, 1)}, "distinct"),
        ({"vectors": torch.zeros(1, 4), "layers": (-1,)}, "non-negative"),
        ({"vectors": torch.zeros(1, 2, 4), "layers": (0,)}, r"must be \[layer, d\]"),
        ({"vectors": torch.full((1, 4), float("nan")), "layers": (0,)}, "NaN or inf"),
        ({"vectors": torch.zeros(1, 4), "layers": (0,), "site": "resid"}, "unknown site 'resid'"),
        ({"vectors": torch.zeros(1, 4), "layers": (0,), "scale": float("inf")}, "scale must be a finite number"),
        ({"vectors": torch.zeros(1, 4), "layers": (0,), "meta": {"x": object()}}, "JSON-serialisable"),
    ],
)
def test_bad_vectors_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SteeringVector(**kwargs)


def test_only_safetensors_steering_vectors_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="no steering vector file"):
        load_vector(tmp_path / "missing.safetensors")
    pkl = tmp_path / "v.pt"
    pkl.write_bytes(pickle.dumps({"vectors": torch.zeros(1, 4)}))
    with pytest.raises(ValueError, match="is not a safetensors steering vector"):
        load_vector(pkl)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a steering vector"):
        load_vector(other)


def test_builders_refuse_bad_activations():
    with pytest.raises(ValueError, match="non-empty"):
        SteeringVector.from_mean_difference(torch.zeros(0, 1, 4), torch.zeros(3, 1, 4), [0])
    with pytest.raises(ValueError, match="differ in layer/width"):
        SteeringVector.from_mean_difference(torch.zeros(2, 1, 4), torch.zeros(3, 1, 5), [0])
    with pytest.raises(ValueError, match="same shape"):
        SteeringVector.from_pca(torch.zeros(3, 1, 4), torch.zeros(2, 1, 4), [0])
    with pytest.raises(ValueError, match="NaN or inf"):
        SteeringVector.from_mean_difference(torch.full((2, 1, 4), float("inf")), torch.zeros(2, 1, 4), [0])


def test_from_prompts_equals_collect_then_mean_difference(tiny_pairs):
    import interp

    model = tiny_pairs["llama"].post
    pos, neg = ["I love this.", "What a great day!", "So happy"], ["I hate this.", "What an awful day!"]
    v = SteeringVector.from_prompts(model, pos, neg, layers=[0, 2], positions="last")
    a = interp.collect(model, pos, "resid_pre", layers=[0, 2], progress=False)["resid_pre"]
    b = interp.collect(model, neg, "resid_pre", layers=[0, 2], progress=False)["resid_pre"]
    torch.testing.assert_close(v.vectors, (a.double().mean(0) - b.double().mean(0)).float())
    assert v.layers == (0, 2) and v.meta["method"] == "mean_difference" and v.meta["positions"] == "last"
    paired = SteeringVector.from_prompts(model, pos[:2], neg, method="pca", layers=[1, 2])
    assert paired.layers == (1, 2) and paired.meta["method"] == "pca_diff"
    # both pairs end in "." and resid_pre of layer 0 is its embedding: no difference, no direction
    with pytest.raises(ValueError, match=r"position\(s\) \[0\]: positive and negative rows are identical"):
        SteeringVector.from_prompts(model, pos[:2], neg, method="pca")
    with pytest.raises(ValueError, match="method must be one of"):
        SteeringVector.from_prompts(model, pos, neg, method="svd")


def test_from_probe_takes_the_unit_direction():
    from probes import LogisticProbe, fit_layers

    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=g)
    y = (X[:, 2] > 0).long()
    probe = LogisticProbe().fit(X.numpy(), y.numpy())
    v = SteeringVector.from_probe(probe, 3, "resid_post")
    assert v.layers == (3,) and abs(float(v.vectors.norm()) - 1) < 1e-6 and v.vectors[0, 2] > 0.9
    fit = fit_layers(torch.randn(50, 2, 8, generator=g), torch.arange(50) % 2, "mass_mean")
    w = SteeringVector.from_probe(fit, [4, 5])
    torch.testing.assert_close(w.vectors, fit.direction.float())
    with pytest.raises(TypeError, match="has no direction_"):
        SteeringVector.from_probe(object(), 0)


def test_pca_keeps_a_concept_every_pair_shares():
    """Pairs x_i ± c (the concept c shared by every pair, plus noise): the default (both orders, Zou et al.
    2023) finds c, as the mean difference does; repeng's centred PCA subtracts it and is left with noise."""
    g = torch.Generator().manual_seed(1)
    d, n = 32, 40
    concept = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    x = torch.randn(n, d, generator=g)
    pos = x + concept + 0.1 * torch.randn(n, d, generator=g)
    neg = x - concept + 0.1 * torch.randn(n, d, generator=g)
    v = SteeringVector.from_pca(pos[:, None], neg[:, None], layers=[0])
    reference = torch.linalg.svd((pos - neg).double(), full_matrices=False)[2][0].float()  # uncentred SVD
    assert float(v.directions[0] @ concept) > 0.98  # signed toward the positives
    assert abs(float(v.directions[0] @ reference)) == pytest.approx(1, abs=1e-6)
    mean_diff = SteeringVector.from_mean_difference(pos[:, None], neg[:, None], layers=[0]).directions[0]
    assert float(v.directions[0] @ mean_diff) > 0.99
    assert v.meta["centred"] is False and v.meta["explained"][0] > 0.8  # 4 / (4 + 32 x 0.02) of the sum of squares
    centred = SteeringVector.from_pca(pos[:, None], neg[:, None], layers=[0], center=True)
    assert abs(float(centred.directions[0] @ concept)) < 0.5 and centred.meta["centred"] is True


def test_pca_of_degenerate_pairs_is_undefined():
    x = torch.randn(5, 2, 8)
    with pytest.raises(ValueError, match=r"position\(s\) \[0, 1\]: positive and negative rows are identical"):
        SteeringVector.from_pca(x, x.clone(), layers=[0, 1])
    shifted = x + torch.tensor([1.0] + [0.0] * 7)  # every pair differs by the same vector
    assert SteeringVector.from_pca(shifted, x, layers=[0, 1]).directions[:, 0].tolist() == pytest.approx([1, 1])
    with pytest.raises(ValueError, match="every pair differs by the same vector"):
        SteeringVector.from_pca(shifted.double(), x.double(), layers=[0, 1], center=True)
