"""The truth-spectrum section of :func:`interp.compare.compare` (Ying, Ravfogel, Kriegeskorte & Hase 2026, "The
truthfulness spectrum hypothesis").

It reads the truth section's statements (:mod:`interp.compare.truth`: the same sets, read position and
validation split) and asks whether truth is one direction shared by every kind of statement (cities, numbers,
translations, ...) or several, in each model at one layer chosen on validation statements:

* a probe per statement kind (:data:`PROBE`, fitted on the kind's training statements) and its accuracy and
  AUROC on each kind's test statements: the generalization matrix;
* the Mahalanobis cosine of probe ``A`` with the probe of the target kind ``B`` under the covariance of ``B``'s
  test activations (:func:`probes.mahalanobis_cosine`), and how well it predicts ``A``'s AUROC on ``B`` over the
  off-diagonal pairs: slope and R² of a least-squares line, with a bootstrap interval over test statements and a
  permutation null (the paper's relation, its R² = 0.98 being of MCS to the target kind's probe against AUROC);
* LEACE (:func:`probes.erasure.erase`, EleutherAI's ``concept-erasure``) of the truth label fitted on the
  training statements of every kind together (what is linearly shared), after which each kind's probe is refitted:
  what it still decodes is kind-specific; the all-kinds probe refitted after erasure is the check that the shared
  part is gone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models import ModelPair
from ..report import ConceptResult
from ._section import Param, Section, data_param, layers_param, parse_layers, seed_param, site_param, user_data

__all__ = ["PROBES", "SECTION", "KindSpectrum", "kind_spectrum", "line_fit", "truth_spectrum_section"]

#: Probes the section can fit per kind. ``mass_mean`` (difference of class means, the truth section's headline,
#: Marks & Tegmark 2023) is the default: it has no regularisation to tune on a kind's few training statements
#: and generalizes better out of distribution than logistic regression in their experiments.
PROBES = ("mass_mean", "logistic")
#: Bootstrap resamples of the relation's interval and permutations of its null.
N_RESAMPLES = 500
#: Share of the pooled class-mean difference left after LEACE below which the all-kinds mass-mean probe has no
#: direction (its accuracy is then reported undefined).
NO_DIRECTION = 1e-6
#: Shuffled-label probes averaged for the erasure null (a mass-mean probe on shuffled labels swings far on either
#: side of 0.5 when the data hold a strong direction: 10 shuffles leave a mean well away from 0.5).
N_SHUFFLES = 100
_MODELS = ("base", "post")


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, str | None]:
    """Least-squares line ``y = slope * x + intercept`` and its R² (share of ``y``'s variance it explains):
    ``(slope, intercept, r2, None)``, or NaNs and the reason where it is undefined (fewer than 3 points: a line
    through 2 fits them exactly; no variance in ``x`` or ``y``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return math.nan, math.nan, math.nan, f"{len(x)} defined kind pairs (a line needs 3 to be tested)"
    sxx, syy = ((x - x.mean()) ** 2).sum(), ((y - y.mean()) ** 2).sum()
    if sxx == 0 or syy == 0:
        return math.nan, math.nan, math.nan, f"no variance in the {'cosines' if sxx == 0 else 'generalization'}"
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x.mean())
    r2 = float(1 - ((y - slope * x - intercept) ** 2).sum() / syy)
    return slope, intercept, r2, None


@dataclass
class KindSpectrum:
    """One model's spectrum at one layer (kinds in :attr:`kinds` order; ``[a][b]``: probe of kind ``a`` on the
    test statements of kind ``b``)."""

    kinds: list[str]
    accuracy: np.ndarray
    auroc: np.ndarray
    mahalanobis: np.ndarray
    """``[a][b]``: Mahalanobis cosine of probe ``a`` and probe ``b`` under the covariance of ``b``'s test rows"""
    relation: dict
    """slope, intercept, r2 (AUROC on MCS) and their intervals, r2_null, r2_accuracy; ``undefined``: why not"""
    erasure: dict
    """per kind: accuracy before / after LEACE with Wilson intervals, shuffled-label null after; pooled probe"""
    n_test: dict


def _one(X: torch.Tensor) -> torch.Tensor:
    return X[:, None, :]  # [n, d] -> [n, 1, d]: the probes' per-layer API at one layer


def _mcs(a: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> float:
    from probes import mahalanobis_cosine

    return float(mahalanobis_cosine(a[None], b[None], _one(X))[0])


def _pair_scores(fits, X_te, y_te, kinds, rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, AUROC and MCS matrices of the kind probes ``fits`` on the test rows (``rows[k]``: indices into
    kind ``k``'s test rows, a resample; None: all)."""
    from probes import score_layers

    K = len(kinds)
    acc, auc, mcs = (np.full((K, K), np.nan) for _ in range(3))
    for j, b in enumerate(kinds):
        Xb, yb = X_te[b], y_te[b]
        if rows is not None:
            Xb, yb = Xb[rows[b]], yb[rows[b]]
        if len(torch.unique(yb)) < 2:
            continue  # a resample without both classes: AUROC undefined there
        for i, a in enumerate(kinds):
            ac, au = score_layers(fits[a], _one(Xb), yb)
            acc[i, j], auc[i, j] = float(ac[0]), float(au[0])
            mcs[i, j] = _mcs(fits[a].coef[0], fits[b].coef[0], Xb)
    return acc, auc, mcs


def _off(M: np.ndarray) -> np.ndarray:
    return M[~np.eye(len(M), dtype=bool)]


def _draw(groups: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Row indices of a bootstrap resample of ``groups`` (one id per row): whole groups drawn with replacement."""
    ids, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(ids))]
    return torch.as_tensor(np.concatenate([members[g] for g in rng.integers(0, len(ids), len(ids))]))


def _relation(fits, X_te, y_te, kinds, acc, auc, mcs, *, seed: int, groups: dict) -> dict:
    """Slope and R² of AUROC (and accuracy) on MCS over the off-diagonal pairs; bootstrap interval over each
    kind's test statements (whole groups, e.g. a statement and its negation, drawn together; probes fixed, MCS
    and AUROC recomputed); null: R² with the cosines re-paired at random."""
    slope, intercept, r2, why = line_fit(_off(mcs), _off(auc))
    out = {"slope": slope, "intercept": intercept, "r2": r2, "r2_accuracy": line_fit(_off(mcs), _off(acc))[2],
           "slope_accuracy": line_fit(_off(mcs), _off(acc))[0], "n_pairs": int(len(kinds) * (len(kinds) - 1)),
           "undefined": why}
    keys = ("slope_ci_low", "slope_ci_high", "r2_ci_low", "r2_ci_high", "r2_null")
    if why is not None:
        return {**out, **dict.fromkeys(keys, math.nan)}
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(N_RESAMPLES):
        rows = {k: _draw(groups[k], rng) for k in kinds}
        _, a_b, m_b = _pair_scores(fits, X_te, y_te, kinds, rows)
        s, _, r, _ = line_fit(_off(m_b), _off(a_b))
        boot.append((s, r))
    boot = np.array(boot)
    lo, hi = np.nanquantile(boot, [0.025, 0.975], axis=0)
    x, y = _off(mcs), _off(auc)
    null = [line_fit(rng.permutation(x), y)[2] for _ in range(N_RESAMPLES)]
    return {**out, "slope_ci_low": float(lo[0]), "slope_ci_high": float(hi[0]), "r2_ci_low": float(lo[1]),
            "r2_ci_high": float(hi[1]), "r2_null": float(np.nanquantile(null, 0.95))}


def _erasure(X_tr, y_tr, X_te, y_te, kinds, method: str, *, seed: int) -> dict:
    """LEACE of the truth label fitted on every kind's training rows together, applied to every row; each kind's
    probe (and the all-kinds probe) refitted on erased training rows and scored on erased test rows."""
    from probes import fit_layers
    from probes.erasure import erase
    from probes.stats import correct, proportion_ci, shuffled_label_accuracy

    all_X = torch.cat([X_tr[k] for k in kinds]).double()
    all_y = torch.cat([y_tr[k] for k in kinds])
    _, eraser = erase(all_X, all_y)
    er = lambda X: eraser(X.double())  # noqa: E731

    def scored(Xa, ya, Xb, yb):
        c = correct(fit_layers(_one(Xa), ya, method), _one(Xb), yb)[0]
        low, high = proportion_ci(c)
        return float(c.mean()), float(low), float(high)

    out = {}
    for k in [*kinds, "all kinds"]:
        if k == "all kinds":
            Xa, ya = all_X, all_y
            Xb, yb = torch.cat([X_te[j] for j in kinds]).double(), torch.cat([y_te[j] for j in kinds])
        else:
            Xa, ya, Xb, yb = X_tr[k].double(), y_tr[k], X_te[k].double(), y_te[k]
        before, after = scored(Xa, ya, Xb, yb), scored(er(Xa), ya, er(Xb), yb)
        null = float(shuffled_label_accuracy(_one(er(Xa)), ya, _one(er(Xb)), yb, method, seed=seed,
                                           n_shuffles=N_SHUFFLES)[0][0])
        left = float(_mean_gap(er(Xa), ya) / _mean_gap(Xa, ya))
        out[k] = {"before": before[0], "before_ci_low": before[1], "before_ci_high": before[2],
                  "after": after[0], "after_ci_low": after[1], "after_ci_high": after[2], "after_null": null,
                  "mean_gap_left": left, "n_test": int(len(yb)), "undefined": None}
        if k == "all kinds" and method == "mass_mean" and left < NO_DIRECTION:
            # LEACE zeroes the training rows' class-mean difference: the mass-mean probe has no direction left,
            # and what it scores on test rows is rounding error's orientation, not a reading
            out[k].update(dict.fromkeys(("after", "after_ci_low", "after_ci_high"), math.nan),
                          undefined=f"the erased training rows keep {left:.1e} of the class-mean difference: "
                                    f"the all-kinds mass-mean probe has no direction after LEACE")
    return out


def _mean_gap(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Norm of the difference of the class means of ``X`` (rows labelled 1 minus rows labelled 0)."""
    return (X[y == 1].mean(0) - X[y == 0].mean(0)).norm()


def kind_spectrum(X_train: dict, y_train: dict, X_test: dict, y_test: dict, *, method: str = "mass_mean",
                  seed: int = 0, groups_test: dict | None = None) -> KindSpectrum:
    """The spectrum of one model at one layer from ``{kind: X [n, d]}`` and ``{kind: y [n]}`` (0/1) of each split.
    ``groups_test``: ``{kind: [n] group ids}`` of the test rows, resampled whole by the bootstrap (None: each row
    its own group).

    Raises:
        ValueError: fewer than 2 kinds, a kind without both labels in a split or absent from one, an unknown
            ``method``.
    """
    from probes import fit_layers

    if method not in PROBES:
        raise ValueError(f"method must be one of {', '.join(PROBES)}; got {method!r}")
    kinds = sorted(X_train)
    if sorted(X_test) != kinds or sorted(y_train) != kinds or sorted(y_test) != kinds:
        raise ValueError(f"train and test must hold the same kinds; got {sorted(X_train)} and {sorted(X_test)}")
    if len(kinds) < 2:
        raise ValueError(f"the truth spectrum needs at least 2 statement kinds; got {kinds}")
    y_train = {k: torch.as_tensor(v).long() for k, v in y_train.items()}
    y_test = {k: torch.as_tensor(v).long() for k, v in y_test.items()}
    for split, ys in (("train", y_train), ("test", y_test)):
        for k, y in ys.items():
            if len(torch.unique(y)) < 2:
                raise ValueError(f"kind {k!r} has a single label in the {split} split: no truth to probe")
    X_train = {k: torch.as_tensor(v).double() for k, v in X_train.items()}
    X_test = {k: torch.as_tensor(v).double() for k, v in X_test.items()}
    fits = {k: fit_layers(_one(X_train[k]), y_train[k], method) for k in kinds}
    acc, auc, mcs = _pair_scores(fits, X_test, y_test, kinds)
    groups = {k: np.asarray((groups_test or {}).get(k, np.arange(len(y_test[k])))) for k in kinds}
    bad = [k for k in kinds if len(groups[k]) != len(y_test[k])]
    if bad:
        raise ValueError(f"groups_test of kind {bad[0]!r} must give one group per test row")
    relation = _relation(fits, X_test, y_test, kinds, acc, auc, mcs, seed=seed, groups=groups)
    erasure = _erasure(X_train, y_train, X_test, y_test, kinds, method, seed=seed)
    return KindSpectrum(kinds, acc, auc, mcs, relation, erasure, {k: int(len(y_test[k])) for k in kinds})


def _kind_rows(prompts, y: torch.Tensor) -> dict[str, torch.Tensor]:
    from .truth import _kinds

    return {k: m for k, m in _kinds(prompts).items() if len(torch.unique(y[m])) == 2}


def _num(x, digits: int = 2) -> str:
    return "undefined" if x is None or x != x else f"{x:.{digits}f}"


def _verdict(spec: dict, layers: dict) -> str:
    """The headline: per model, whether the probes' geometry explains their generalization (R²'s interval above
    its permutation null), whether LEACE of the shared label left the pooled probe at chance (its Wilson interval
    holding its shuffled-label null), and in how many kinds a kind-specific direction survives the erasure (the
    kind's refitted probe's interval above its null)."""
    parts = []
    for m in _MODELS:
        s, r = spec[m], spec[m].relation
        if r["undefined"] is not None:
            rel = f"R² undefined: {r['undefined']}"
        else:
            beats = r["r2_ci_low"] is not None and r["r2_null"] is not None and r["r2_ci_low"] > r["r2_null"]
            rel = (f"Mahalanobis cosine's fit to cross-kind AUROC is {'above' if beats else 'not above'} its "
                   f"permutation null (R² {_num(r['r2'])} [{_num(r['r2_ci_low'])}, {_num(r['r2_ci_high'])}], null "
                   f"{_num(r['r2_null'])})")
        pooled = s.erasure["all kinds"]
        if pooled["undefined"]:
            shared = "LEACE removes the shared direction (no class-mean difference left)"
        elif pooled["after_ci_low"] > pooled["after_null"]:
            shared = (f"after LEACE the pooled probe still reads {_num(pooled['after'])} "
                      f"[{_num(pooled['after_ci_low'])}, {_num(pooled['after_ci_high'])}] on held-out statements (null {_num(pooled['after_null'])}): "
                      "residual decodability LEACE's in-sample guarantee does not cover")
        else:
            shared = f"after LEACE the pooled probe is at its null ({_num(pooled['after'])})"
        specific = [k for k in s.kinds if not s.erasure[k]["undefined"]
                    and s.erasure[k]["after_ci_low"] > s.erasure[k]["after_null"]]
        parts.append(f"{m} (layer {layers[m]}): {rel}; {shared}; a kind-specific direction survives in "
                     f"{len(specific)} of {len(s.kinds)} kinds" + (f" ({', '.join(specific)})" if specific else ""))
    return "; ".join(parts) + "."


def _summary(spec: dict, layers: dict, n_val: int) -> str:
    parts = []
    for m in _MODELS:
        s, r = spec[m], spec[m].relation
        off = _off(s.accuracy)
        rel = (f"R² of AUROC on Mahalanobis cosine {_num(r['r2'])} [{_num(r['r2_ci_low'])}, {_num(r['r2_ci_high'])}]"
               f" over {r['n_pairs']} kind pairs (permutation null 95th percentile {_num(r['r2_null'])}), slope "
               f"{_num(r['slope'])}" if r["undefined"] is None else
               f"R² of AUROC on Mahalanobis cosine undefined: {r['undefined']}")
        pooled = s.erasure["all kinds"]
        after = (f"keeps {pooled['mean_gap_left']:.1e} of its class-mean difference on the training statements, so "
                 f"its probe has no direction" if pooled["undefined"] else
                 f"reads {_num(pooled['after'])} [{_num(pooled['after_ci_low'])}, {_num(pooled['after_ci_high'])}] "
                 f"on the test statements (before {_num(pooled['before'])}, null {_num(pooled['after_null'])})")
        kinds = ", ".join(f"{k} {_num(s.erasure[k]['before'])}→{_num(s.erasure[k]['after'])} "
                          f"[{_num(s.erasure[k]['after_ci_low'])}, {_num(s.erasure[k]['after_ci_high'])}] "
                          f"(null {_num(s.erasure[k]['after_null'])})" for k in s.kinds)
        parts.append(f"{m} (layer {layers[m]}): mean off-diagonal generalization accuracy {_num(float(off.mean()))} "
                     f"(diagonal {_num(float(np.diag(s.accuracy).mean()))}; point values, each pair in the "
                     f"matrices); {rel}. After LEACE of the shared truth label (fitted on the training statements) "
                     f"the all-kinds probe {after}; each kind's own probe before→after, on its test statements "
                     f"with the after-value's Wilson interval: {kinds}")
    return (f"Layers chosen by the all-kinds probe's validation accuracy ({n_val} validation statements); test "
            "figures. " + " | ".join(parts) + ".")


def truth_spectrum_section(pair: ModelPair, *, site: str = "resid_post", batch_size: int = 32, progress: bool = True,
                           data=None, probe: str = "mass_mean", seed: int = 0, is_organism: bool | None = None,
                           position: str | None = None, layers: Sequence[int] | None = None) -> ConceptResult:
    """Per-kind truth probes, their Mahalanobis cosines against generalization, and LEACE, in both models.

    The statements, read position and validation rows are the truth section's (:mod:`interp.compare.truth`);
    each model's layer is the one where a probe fitted on the training statements outside the validation share
    (every kind together) classifies the validation statements best.

    Raises:
        ValueError: fewer than 2 statement kinds with both labels in both splits, an unknown ``probe``.
    """
    from .truth import _collect_activations, _start, _validation_accuracy, _validation_rows

    if probe not in PROBES:
        raise ValueError(f"probe must be one of {', '.join(PROBES)}; got {probe!r}")
    run = _start(pair, data, is_organism, position, layers, site=site, batch_size=batch_size, seed=seed)
    kinds_tr = _kind_rows(run.train, torch.as_tensor(run.train.labels))
    kinds_te = _kind_rows(run.test, torch.as_tensor(run.test.labels))
    common = sorted(set(kinds_tr) & set(kinds_te))
    if len(common) < 2:
        raise ValueError(f"truth_spectrum needs at least 2 statement kinds (meta 'kind') with both labels in both "
                         f"splits; the statements have {common or 'none'}")
    _collect_activations(run, progress)
    X = {split: {m: a[site] for m, a in d.items()} for split, d in run.acts.items()}
    y = {split: torch.as_tensor(d["base"].labels).long() for split, d in run.acts.items()}
    layer_ids = list(run.acts["train"]["base"].layers)
    val = _validation_rows(y["train"], seed=seed, prompts=run.train)
    val_acc, n_val = _validation_accuracy(X["train"], y["train"], seed=seed, val=val)
    chosen = {m: int(np.argmax(np.asarray(val_acc[m]))) for m in _MODELS}
    meta = run.test.meta or ({},) * len(run.test)
    groups = np.array([str(m_.get("group", f"row:{i}")) for i, m_ in enumerate(meta)], dtype=object)
    spec = {}
    for m in _MODELS:
        s = chosen[m]
        spec[m] = kind_spectrum({k: X["train"][m][kinds_tr[k], s] for k in common},
                                {k: y["train"][kinds_tr[k]] for k in common},
                                {k: X["test"][m][kinds_te[k], s] for k in common},
                                {k: y["test"][kinds_te[k]] for k in common}, method=probe, seed=seed,
                                groups_test={k: groups[kinds_te[k].numpy()] for k in common})
    at = {m: layer_ids[chosen[m]] for m in _MODELS}
    per_layer = [{"layer": layer, **{f"{m}_validation_accuracy": float(val_acc[m][i]) for m in _MODELS}}
                 for i, layer in enumerate(layer_ids)]
    return _result(spec, at, per_layer, layer_ids, n_val, run, probe, seed, common)


def _result(spec, at, per_layer, layer_ids, n_val, run, probe, seed, kinds) -> ConceptResult:
    matrices = {}
    for m in _MODELS:
        s = spec[m]
        for key, M, title, z in (("generalization", s.accuracy, "accuracy of the row kind's probe on the column "
                                  "kind's test statements", (0, 1)),
                                 ("auroc", s.auroc, "AUROC of the row kind's probe on the column kind", (0, 1)),
                                 ("mahalanobis_cosine", s.mahalanobis, "Mahalanobis cosine of the row kind's probe "
                                  "with the column kind's, under the column kind's test covariance", (-1, 1))):
            matrices[f"{key}_{m}"] = {"rows": s.kinds, "cols": s.kinds, "values": M.tolist(), "layer": at[m],
                                      "zmin": z[0], "zmax": z[1], "title": f"{title} ({m}, layer {at[m]})",
                                      **({"colorscale": "RdBu"} if z[0] < 0 else {})}
    diff = spec["post"].accuracy - spec["base"].accuracy
    matrices["generalization_post_minus_base"] = {
        "rows": kinds, "cols": kinds, "values": diff.tolist(), "zmin": -1, "zmax": 1, "colorscale": "RdBu",
        "title": f"Generalization accuracy, post (layer {at['post']}) − base (layer {at['base']})"}
    rows = []
    for m in _MODELS:
        for k in [*spec[m].kinds, "all kinds"]:
            e = spec[m].erasure[k]
            for cond in ("before", "after"):
                rows.append([m, k, f"{cond} LEACE", e[cond], e[f"{cond}_ci_low"], e[f"{cond}_ci_high"],
                             e["after_null"], e["mean_gap_left"], e["n_test"],
                             (e["undefined"] or "") if cond == "after" else ""])
    tables = {"erasure": {"title": "Probe accuracy on each kind before and after LEACE of the shared truth label",
                          "columns": ["model", "kind", "condition", "accuracy", "ci_low", "ci_high",
                                      "shuffled-label null after", "class-mean difference left (train)",
                                      "n_test", "undefined because"], "rows": rows,
                          "x": "kind", "y": "accuracy", "color": "condition", "facet": "model",
                          "low": "ci_low", "high": "ci_high"}}
    relation_rows = []
    for m in _MODELS:
        r = spec[m].relation
        relation_rows.append([m, at[m], r["n_pairs"], r["slope"], r["slope_ci_low"], r["slope_ci_high"], r["r2"],
                              r["r2_ci_low"], r["r2_ci_high"], r["r2_null"], r["r2_accuracy"], r["undefined"] or ""])
    b, p = spec["base"].relation, spec["post"].relation
    relation_rows.append(["post − base", "", "", p["slope"] - b["slope"], None, None, p["r2"] - b["r2"], None, None,
                          None, p["r2_accuracy"] - b["r2_accuracy"], "difference of the point values"])
    tables["relation"] = {"title": "AUROC of a kind's probe on another kind against their Mahalanobis cosine",
                          "columns": ["model", "layer", "kind pairs", "slope", "slope_ci_low", "slope_ci_high", "R²",
                                      "R²_ci_low", "R²_ci_high", "R² null (95th pct)", "R² (accuracy)",
                                      "undefined because"], "rows": relation_rows}
    series = {}
    for m in _MODELS:
        s = spec[m]
        pairs = [(i, j) for i in range(len(s.kinds)) for j in range(len(s.kinds)) if i != j]
        series[f"{m} (layer {at[m]})"] = {"x": [float(s.mahalanobis[i, j]) for i, j in pairs],
                                          "y": [float(s.auroc[i, j]) for i, j in pairs],
                                          "text": [f"{s.kinds[i]} probe on {s.kinds[j]}" for i, j in pairs]}
    plots = [
        {"title": "Validation accuracy of the all-kinds probe (layer selection)", "reading": "validation",
         "yaxis": "validation accuracy", "yrange": [0, 1.02],
         "series": {f"{m}_validation_accuracy": m for m in _MODELS}},
        {"kind": "xy", "mode": "markers", "title": "Mahalanobis cosine predicts cross-kind AUROC?",
         "reading": "relation", "series": series, "nulls": {"chance AUROC": {"x": [-1, 1], "y": [0.5, 0.5]}},
         "xaxis": "Mahalanobis cosine with the target kind's probe", "yaxis": "AUROC on the target kind",
         "xrange": [-1.05, 1.05], "yrange": [-0.02, 1.02]},
    ]
    readings = {
        "summary": _summary(spec, at, n_val),
        "headline": _verdict(spec, at),
        "validation": "Accuracy of a probe fitted on every kind's training statements outside the validation share, "
                      "on that share: each model's analysed layer is its maximum.",
        "relation": "Each point is a probe of one kind scored on another kind's test statements: x its Mahalanobis "
                    "cosine with the target kind's own probe (under the target's test covariance), y its AUROC. "
                    "A line with high R² means the geometry of the probes explains how far they generalize.",
        "erasure": "LEACE of the truth label fitted on all kinds' training statements removes every direction "
                   "along which truth is linearly shared; a kind's probe refitted afterwards that still beats its "
                   "shuffled-label null reads a kind-specific truth direction. The all-kinds row is the check that "
                   "the shared part is gone (at chance after erasure).",
    }
    for key in matrices:
        readings[key] = ("Off-diagonal values near the diagonal mean a shared truth direction; post − base compares "
                         "each model at its own layer." if key.startswith("generalization") else
                         "Rows: the probe's kind; columns: the kind it is scored on.")
    setup = {**run.setup, "site": run.site, "probe": f"{probe} per statement kind", "kinds": kinds,
             "n_train": len(run.train), "n_test": len(run.test),
             "layer selection": f"per model, best validation accuracy of a mass-mean probe fitted on every kind "
                                f"({n_val} validation statements, seed {seed})",
             "mahalanobis cosine": "u'Σv / sqrt(u'Σu · v'Σv), Σ the covariance of the target kind's test "
                                   "activations; the reference is the target kind's own probe",
             "relation": f"least squares AUROC ~ MCS over off-diagonal pairs; interval: 95% percentile bootstrap "
                         f"over each kind's test statements, a group (meta 'group') drawn whole ({N_RESAMPLES} "
                         f"resamples, probes fixed); null: 95th "
                         f"percentile of R² with the cosines permuted ({N_RESAMPLES})",
             "erasure": "LEACE (concept-erasure LeaceFitter, library defaults) of the truth label on all training "
                        "statements; probes refitted on erased rows; accuracies with 95% Wilson intervals; null: "
                        f"shuffled-label probe on erased rows (mean of {N_SHUFFLES})", "seed": seed}
    return ConceptResult("truth_spectrum", layer_ids, per_layer, [], matrices, {}, readings, setup, plots, tables)


def _run(ctx, *, data: str | None = None, layers: str | None = None, **options) -> ConceptResult:
    return truth_spectrum_section(ctx.pair, progress=ctx.progress,
                                  data=user_data(ctx, "truth", data, options["seed"]), is_organism=ctx.is_organism,
                                  layers=None if layers is None else parse_layers(layers), **options)


def _check_kinds(sets) -> None:
    """Before any model boots: the user's statements carry a ``kind`` column with at least 2 kinds that each hold
    both labels.

    Raises:
        ValueError: no ``kind`` column, or fewer than 2 kinds with both labels.
    """
    rows = [sets.load("truth", split) for split in ("train", "test")]
    meta = [m for r in rows for m in r.meta]
    labels = [y for r in rows for y in r.labels]
    source = rows[0].source
    if not any("kind" in m for m in meta):
        columns = sorted({k for m in meta for k in m if k != "group"})
        raise ValueError(f"truth_spectrum compares kinds of statement, and {source} has no 'kind' column (one value "
                         f"per row, e.g. cities / numbers); its other columns: {', '.join(columns) or 'none'}")
    both = sorted(k for k in {m.get("kind") for m in meta}
                  if len({y for m, y in zip(meta, labels) if m.get("kind") == k}) == 2)
    if len(both) < 2:
        raise ValueError(f"truth_spectrum needs at least 2 statement kinds that each hold true and false statements; "
                         f"{source} has {both or 'none'}")


def _position(value: str) -> None:
    from ..positions import parse_position

    parse_position(value)


SECTION = Section("truth_spectrum", _run, help="whether truth is one direction across kinds of statement: per-kind "
                                              "probes, Mahalanobis cosine vs generalization, LEACE", params=(
    site_param("activation site the probes read"),
    Param("position", str, None, "token the probes read: last, period, mean, -K (default: the truth section's)",
          validate=_position),
    layers_param("layers", "comma-separated blocks to choose among (default all)"),
    Param("batch_size", int, 32, "prompts per forward pass", low=1),
    Param("probe", str, "mass_mean", "probe fitted per statement kind", PROBES),
    seed_param("seed of the validation split, bootstrap, permutation and shuffled-label nulls"),
    data_param("truth", "your statements: a file labelled true/false with a kind column, split 75/25",
               check=_check_kinds),
))
