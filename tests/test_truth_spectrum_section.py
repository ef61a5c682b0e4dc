"""The truth-spectrum section (``interp.compare.truth_spectrum``).

Known answers on planted data: four statement kinds whose truth lies along a shared direction ``s``, two of them
also along a kind-specific ``u`` with opposite signs (so ``u`` cancels when the kinds are pooled). Then probes of the
shared-only kinds generalize to each other, LEACE of the pooled truth label removes ``s`` (shared-only kinds fall to
chance, the pooled class-mean difference vanishes) and leaves ``u`` (the two other kinds stay decodable), and the
Mahalanobis cosine matrix equals a NumPy computation of ``u'Σv / sqrt(u'Σu v'Σv)``. On the bundled organism (two
kinds): the section's fields, an R² reported undefined with its reason, and options refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

import interp
from interp.compare import compare, register
from interp.compare.truth_spectrum import SECTION, kind_spectrum, line_fit, truth_spectrum_section

D, N = 12, 240  # width, rows per kind and split


def planted(seed: int = 0):
    """``(X_train, y_train, X_test, y_test)`` dicts over kinds a, b (truth along s), c (s + u), d (s - u)."""
    rng = np.random.default_rng(seed)
    s, u = np.eye(D)[0], np.eye(D)[1]
    signal = {"a": s, "b": s, "c": s + u, "d": s - u}
    out = ({}, {}, {}, {})
    for i, (k, w) in enumerate(signal.items()):
        offset = 2.0 * np.eye(D)[2 + i]  # each kind sits elsewhere, off the truth directions
        for split in (0, 1):
            y = rng.permutation(np.arange(N) % 2)
            X = rng.normal(size=(N, D)) + offset + 1.5 * (2 * y - 1)[:, None] * w
            out[2 * split][k], out[2 * split + 1][k] = torch.tensor(X), torch.tensor(y)
    return out


@pytest.fixture(scope="module")
def spectrum():
    return kind_spectrum(*planted(), seed=0)


def chance_high(n: int, level: float = 0.999) -> float:
    """Upper end of the accuracy a classifier that knows nothing reaches on ``n`` balanced rows."""
    return binom.ppf((1 + level) / 2, n, 0.5) / n


def test_mahalanobis_cosine_matches_numpy(spectrum):
    X_tr, y_tr, X_te, _ = planted()
    kinds = spectrum.kinds
    w = {k: X_tr[k][y_tr[k] == 1].numpy().mean(0) - X_tr[k][y_tr[k] == 0].numpy().mean(0) for k in kinds}
    for i, a in enumerate(kinds):
        for j, b in enumerate(kinds):
            S = np.cov(X_te[b].numpy(), rowvar=False)
            ref = w[a] @ S @ w[b] / math.sqrt((w[a] @ S @ w[a]) * (w[b] @ S @ w[b]))
            assert spectrum.mahalanobis[i, j] == pytest.approx(ref, abs=1e-9)
    assert np.allclose(np.diag(spectrum.mahalanobis), 1)


def test_generalization_follows_the_planted_directions(spectrum):
    k = {name: i for i, name in enumerate(spectrum.kinds)}
    acc, auc = spectrum.accuracy, spectrum.auroc
    assert acc[k["a"], k["b"]] > 0.85 and acc[k["b"], k["a"]] > 0.85  # the shared direction alone
    # c's truth is s + u, d's s - u: orthogonal probes, so each ranks the other's statements at about chance
    assert abs(auc[k["c"], k["d"]] - 0.5) < 0.1 and abs(auc[k["d"], k["c"]] - 0.5) < 0.1
    assert spectrum.mahalanobis[k["a"], k["b"]] > 0.9 and abs(spectrum.mahalanobis[k["c"], k["d"]]) < 0.2


def test_relation_has_an_interval_and_beats_its_null(spectrum):
    r = spectrum.relation
    assert r["undefined"] is None and r["n_pairs"] == 12
    x = spectrum.mahalanobis[~np.eye(4, dtype=bool)]
    y = spectrum.auroc[~np.eye(4, dtype=bool)]
    slope, intercept = np.polyfit(x, y, 1)
    ref_r2 = np.corrcoef(x, y)[0, 1] ** 2  # R² of a least-squares line is the squared Pearson correlation
    assert r["slope"] == pytest.approx(slope) and r["intercept"] == pytest.approx(intercept)
    assert r["r2"] == pytest.approx(ref_r2)
    assert r["r2_ci_low"] <= r["r2"] <= r["r2_ci_high"] and r["slope_ci_low"] <= r["slope"] <= r["slope_ci_high"]
    assert r["slope"] > 0 and r["r2"] > 0.8 and r["r2"] > r["r2_null"]


def test_leace_removes_the_shared_direction_and_keeps_the_specific_one(spectrum):
    e = spectrum.erasure
    for k in ("a", "b"):  # truth only along s: at chance after erasure
        assert e[k]["before"] > 0.85 and e[k]["after"] <= chance_high(e[k]["n_test"]), (k, e[k])
    for k in ("c", "d"):  # s + u and s - u: u survives
        assert e[k]["after"] > 0.8 and e[k]["after_ci_low"] > e[k]["after_null"], (k, e[k])
    pooled = e["all kinds"]
    assert pooled["before"] > 0.85 and pooled["mean_gap_left"] < 1e-6
    assert math.isnan(pooled["after"]) and "no direction" in pooled["undefined"]
    for k in ("a", "b", "c", "d"):
        assert e[k]["before_ci_low"] <= e[k]["before"] <= e[k]["before_ci_high"]


def test_line_fit_undefined_cases():
    assert "3 to be tested" in line_fit([0.1, 0.5], [0.6, 0.9])[3]
    assert "no variance in the cosines" in line_fit([0.5, 0.5, 0.5], [0.6, 0.7, 0.9])[3]
    slope, intercept, r2, why = line_fit([0, 1, 2], [1, 3, 5])
    assert why is None and (slope, intercept, r2) == pytest.approx((2, 1, 1))


def test_bad_inputs_refused():
    X_tr, y_tr, X_te, y_te = planted()
    with pytest.raises(ValueError, match="at least 2 statement kinds"):
        kind_spectrum({"a": X_tr["a"]}, {"a": y_tr["a"]}, {"a": X_te["a"]}, {"a": y_te["a"]})
    with pytest.raises(ValueError, match="method must be one of"):
        kind_spectrum(X_tr, y_tr, X_te, y_te, method="svm")
    with pytest.raises(ValueError, match="single label"):
        kind_spectrum(X_tr, {**y_tr, "a": torch.zeros(N, dtype=torch.long)}, X_te, y_te)
    with pytest.raises(ValueError, match="same kinds"):
        kind_spectrum(X_tr, y_tr, {k: X_te[k] for k in "abc"}, {k: y_te[k] for k in "abc"})
    with pytest.raises(ValueError, match="probe"):
        SECTION.options({"probe": "svm"})
    with pytest.raises(ValueError, match="batch_size"):
        SECTION.options({"batch_size": 0})
    with pytest.raises(ValueError, match="takes no option"):
        SECTION.options({"kinds": "a,b"})


def test_statement_files_without_two_kinds_are_refused_before_boot(tmp_path):
    import csv

    def write(name, kinds):
        path = tmp_path / name
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["statement", "label", *(["kind"] if kinds else []), "city"])
            for i in range(40):
                w.writerow([f"Statement number {i} is here.", i % 2, *([kinds[i % len(kinds)]] if kinds else []), "x"])
        return str(path)

    with pytest.raises(ValueError, match="has no 'kind' column .*its other columns: city"):
        SECTION.options({"data": write("none.csv", None)})
    with pytest.raises(ValueError, match=r"at least 2 statement kinds .* has \['a'\]"):
        SECTION.options({"data": write("one.csv", ["a"])})
    assert SECTION.options({"data": write("two.csv", ["a", "a", "b", "b"])})["data"].endswith("two.csv")


@pytest.fixture(scope="module")
def organism():
    pair = interp.load_pair()
    return pair, truth_spectrum_section(pair, is_organism=True, progress=False, batch_size=256)


def test_section_on_the_organism(organism):
    pair, result = organism
    assert result.concept == "truth_spectrum" and result.layers == list(range(pair.n_layers))
    kinds = result.setup["kinds"]
    assert kinds == ["cities", "numbers"]
    for m in ("base", "post"):
        layer = result.matrices[f"generalization_{m}"]["layer"]
        val = [row[f"{m}_validation_accuracy"] for row in result.per_layer]
        assert val[result.layers.index(layer)] == max(val)  # the layer is the validation maximum
        for key in ("generalization", "auroc", "mahalanobis_cosine"):
            M = result.matrices[f"{key}_{m}"]
            assert M["rows"] == M["cols"] == kinds and np.shape(M["values"]) == (2, 2)
    base, post = (np.array(result.matrices[f"generalization_{m}"]["values"]) for m in ("base", "post"))
    assert np.allclose(result.matrices["generalization_post_minus_base"]["values"], post - base)
    relation = {row[0]: row for row in result.tables["relation"]["rows"]}
    for m in ("base", "post"):  # two kinds give two pairs: no line to test, said so
        assert relation[m][6] is None and "a line needs 3" in relation[m][-1]
    rows = result.tables["erasure"]["rows"]
    assert len(rows) == 2 * 2 * (len(kinds) + 1)
    for row in rows:
        if row[3] is not None:
            assert row[4] <= row[3] <= row[5]
    assert "undefined: 2 defined kind pairs" in result.readings["summary"]
    assert {p["reading"] for p in result.plots} <= set(result.readings)
    # the headline's count of kind-specific directions is read from the erasure table (after-interval above null)
    for m in ("base", "post"):
        after = [r for r in rows if r[0] == m and r[2] == "after LEACE" and r[1] != "all kinds"]
        kept = [r[1] for r in after if r[4] is not None and r[4] > r[6]]
        assert f"{m} (layer {result.matrices[f'generalization_{m}']['layer']}): R² undefined: 2 defined kind pairs" \
            in result.readings["headline"]
        assert f"a kind-specific direction survives in {len(kept)} of {len(kinds)} kinds" in result.readings["headline"]


def test_runs_through_compare(organism, tmp_path):
    register(SECTION, replace=True)
    report = compare(pair=organism[0], concepts=["truth_spectrum"], out=tmp_path, progress=False,
                     options={"truth_spectrum": {"batch_size": 256}})
    assert "truth_spectrum" in report.concepts


def test_bootstrap_draws_whole_groups(monkeypatch):
    from interp.compare import truth_spectrum
    from interp.compare.truth_spectrum import _draw

    monkeypatch.setattr(truth_spectrum, "N_RESAMPLES", 100)  # the interval's presence, not its precision

    groups = np.repeat(np.arange(30), 2)  # a statement and its negation
    rows = _draw(groups, np.random.default_rng(0)).numpy()
    assert len(rows) == 60
    drawn = groups[rows]
    for g in np.unique(drawn):  # both rows of a drawn group, as often as the group is drawn
        assert sorted(rows[drawn == g].tolist()).count(2 * g) == sorted(rows[drawn == g].tolist()).count(2 * g + 1)
    X_tr, y_tr, X_te, y_te = planted()
    with pytest.raises(ValueError, match="one group per test row"):
        kind_spectrum(X_tr, y_tr, X_te, y_te, groups_test={"a": np.arange(3)})
    paired = kind_spectrum(X_tr, y_tr, X_te, y_te, groups_test={k: np.arange(N) // 2 for k in "abcd"})
    assert paired.relation["r2"] == pytest.approx(kind_spectrum(X_tr, y_tr, X_te, y_te).relation["r2"])
    assert paired.relation["r2_ci_low"] <= paired.relation["r2"] <= paired.relation["r2_ci_high"]
