"""Uncertainty and chance levels for the figures the comparison reports.

* :func:`bootstrap_ci` — a seeded percentile bootstrap interval of any statistic
  of one or more samples, resampled independently (``scipy.stats.bootstrap``).
* :func:`mean_ci` — the bootstrap interval of a mean per row.
* :func:`proportion_ci` — the Wilson score interval of a share of 0/1 outcomes
  per row (accuracy, refusal rate). A percentile bootstrap of a share that
  is 0 or 1 collapses to that point (every resample agrees), which claims a
  certainty 60 requests do not give; Wilson's interval does not (Wilson 1927;
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``), and in the
  interior it agrees with the bootstrap.
* :func:`accuracy_ci` — per-layer accuracy of a probe with its Wilson interval.
* :func:`shuffled_label_accuracy` — the null of a probe: the held-out accuracy
  of the same method fitted on training labels permuted at random (Hewitt &
  Liang 2019's control idea: what a probe reaches without the concept).
* :func:`split_half_directions` — two probes of one model from disjoint halves
  of its training rows (seed-to-seed agreement, the ceiling of a similarity).
* :func:`direction_cosine_ci` — the bootstrap interval of the per-layer cosine
  between two models' difference-of-means directions fitted on the same rows.
* :func:`paired_difference_cosine_ci` — the same for two models' mean paired
  differences (parallel sentences), resampling pairs.
* :func:`random_directions` — Gaussian directions, the null of a similarity.

Bootstrap intervals are 95% percentile intervals from 1,000 resamples, seeded:
the same seed gives the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from jaxtyping import Float

from ._checks import check_integer, check_number
from .sweep import LayerFit, _check, _check_fit, fit_layers

__all__ = ["bootstrap_ci", "cluster_bootstrap_ci", "mean_ci", "proportion_ci", "accuracy_ci", "direction_cosine_ci",
           "paired_difference_cosine_ci", "equal_norm_random",
           "shuffled_label_accuracy", "split_half_directions", "random_directions", "N_RESAMPLES"]

#: Bootstrap resamples per interval.
N_RESAMPLES = 1000


def _check_confidence(confidence) -> None:
    check_number("confidence", confidence, lambda c: 0 < c < 1, "a number in (0, 1) (e.g. 0.95)")


def _check_resamples(n_resamples) -> None:
    check_integer("n_resamples", n_resamples, 2)  # one resample gives an interval of zero width


def bootstrap_ci(statistic: Callable, samples: Sequence, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                 confidence: float = 0.95, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``statistic(*samples, axis=-1)``.

    Each sample is resampled independently along its last axis (leading axes are batch axes: one
    interval each). ``statistic`` must be vectorised (take ``axis``). Thin wrapper over
    ``scipy.stats.bootstrap(method="percentile")``, seeded; ``batch`` resamples go through ``statistic``
    per call (memory; default all at once).

    Returns:
        ``(low, high)``, arrays of the statistic's batch shape (floats for 1-D samples).

    Raises:
        ValueError: a sample with fewer than 2 values along its last axis (or none: a scalar), no samples,
            ``n_resamples`` below 2 (one resample gives an interval of zero width), or ``confidence`` outside
            (0, 1).
        TypeError: ``n_resamples`` not an integer, or ``confidence`` not a number.
    """
    from scipy.stats import bootstrap

    samples = tuple(np.asarray(s) for s in samples)
    if not samples:
        raise ValueError("samples is empty: pass a sequence of at least one sample, e.g. (values,)")
    if any(s.ndim == 0 or s.shape[-1] < 2 for s in samples):
        raise ValueError("each bootstrap sample needs at least 2 values")
    _check_resamples(n_resamples)
    _check_confidence(confidence)
    res = bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence, vectorized=True,
                    paired=False, axis=-1, method="percentile", random_state=np.random.default_rng(seed),
                    batch=batch)
    return res.confidence_interval.low, res.confidence_interval.high


def cluster_bootstrap_ci(statistic: Callable[[np.ndarray], float | np.ndarray], groups: Sequence, *, seed: int = 0,
                         n_resamples: int = N_RESAMPLES, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``statistic(rows)`` resampling whole groups (the cluster bootstrap;
    Davison & Hinkley 1997, sec. 3.8): rows that share a group (one fact in several phrasings) are drawn
    together, so their correlation widens the interval as it should instead of passing for independent evidence.

    Args:
        statistic: takes an int array of row indices (a resample: every row of each drawn group, groups drawn
            with replacement) and returns a float or an array (one interval per entry).
        groups: ``[n]`` the group of each row (any hashable values); with every row its own group this is the
            ordinary bootstrap over rows.

    Returns:
        ``(low, high)`` of the statistic's shape. Thin wrapper over ``scipy.stats.bootstrap`` (percentile, seeded)
        over the group ids.

    Raises:
        ValueError: fewer than 2 groups, and what :func:`bootstrap_ci` raises for ``n_resamples``/``confidence``.
    """
    from scipy.stats import bootstrap

    _, ids = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    members = [np.flatnonzero(ids == g) for g in range(ids.max() + 1 if len(ids) else 0)]
    if len(members) < 2:
        raise ValueError(f"a cluster bootstrap needs at least 2 groups; got {len(members)}")
    _check_resamples(n_resamples)
    _check_confidence(confidence)

    def on_groups(drawn, axis=-1):
        return statistic(np.concatenate([members[int(g)] for g in drawn]))

    res = bootstrap((np.arange(len(members)),), on_groups, n_resamples=n_resamples, confidence_level=confidence,
                    vectorized=False, method="percentile", random_state=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def mean_ci(values: Float[np.ndarray, "... n"], *, seed: int = 0,
            n_resamples: int = N_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap interval of the mean of each row of ``values`` (``[..., n]``).

    Raises:
        ValueError: NaN or inf in ``values``, and whatever :func:`bootstrap_ci` raises (fewer than 2 values
            per row, ``n_resamples`` < 2).
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or inf: their mean has no interval")
    low, high = bootstrap_ci(np.mean, (values,), seed=seed, n_resamples=n_resamples)
    # a constant row has a single bootstrap value; the percentile can come back a rounding step off it
    return np.minimum(low, values.mean(-1)), np.maximum(high, values.mean(-1))


def proportion_ci(outcomes: Float[np.ndarray, "... n"], *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the share of 1s in each row of 0/1 ``outcomes`` (``[..., n]``); ``(low, high)``
    of the batch shape (floats for one row).

    Raises:
        ValueError: outcomes other than 0 and 1, an empty row (or a scalar), or ``confidence`` outside (0, 1).
        TypeError: ``confidence`` not a number.
    """
    from scipy.stats import binomtest

    _check_confidence(confidence)
    x = np.asarray(outcomes, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] < 1 or not np.isin(x, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0/1 with at least one per row")
    k, n = x.sum(-1).astype(int), x.shape[-1]
    low, high = np.empty(k.shape), np.empty(k.shape)
    for i in np.ndindex(k.shape):
        ci = binomtest(int(k[i]), n).proportion_ci(confidence_level=confidence, method="wilson")
        low[i], high[i] = ci.low, ci.high
    return (float(low), float(high)) if k.ndim == 0 else (low, high)


def correct(fit: LayerFit, X: Float[torch.Tensor, "n layer d"], y) -> np.ndarray:
    """``[layer, n]`` 1.0 where ``fit`` classifies a row right (decision > 0 means class 1), else 0.0.

    Raises:
        ValueError: ``X`` not ``[n, layer, d]`` (finite, at least one layer and dimension), ``y`` not ``[n]``
            0/1 labels (one class is fine), or probes not ``[layer, d]`` of ``X`` or not finite.
    """
    X, y = _check(X, y, both_classes=False)
    _check_fit(fit, X)
    scores = torch.einsum("nld,ld->ln", X.double(), fit.coef.double()) + fit.intercept.double()[:, None]
    return ((scores > 0).long() == y).double().numpy()


def accuracy_ci(fit: LayerFit, X: Float[torch.Tensor, "n layer d"], y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer held-out accuracy of ``fit`` on ``X`` and its Wilson interval (:func:`proportion_ci`):
    ``(accuracy, low, high)``, each ``[layer]``.

    Raises:
        ValueError: what :func:`correct` raises, or no rows.
    """
    c = correct(fit, X, y)
    low, high = proportion_ci(c)
    return c.mean(-1), low, high


def shuffled_label_accuracy(X_train, y_train, X_test, y_test, method: str = "mass_mean", *, seed: int = 0,
                            n_shuffles: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy per layer of ``method`` fitted on permuted training labels: ``(mean, max)`` over
    ``n_shuffles`` permutations, each ``[layer]``. The value a probe reaches by chance on these rows.

    Raises:
        ValueError: ``n_shuffles`` below 1, training labels not 0/1 with both classes, and what
            :func:`~probes.sweep.fit_layers` and :func:`correct` raise.
        TypeError: ``n_shuffles`` not an integer.
    """
    check_integer("n_shuffles", n_shuffles, 1)
    _, y_train = _check(X_train, y_train)
    g = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(n_shuffles):
        perm = y_train[torch.randperm(len(y_train), generator=g)]
        if len(torch.unique(perm)) < 2:
            continue
        with warnings.catch_warnings():  # a layer without a direction: the real labels' fit says so already
            warnings.filterwarnings("ignore", message="fit_layers: .* weight vector is zero", category=RuntimeWarning)
            accs.append(correct(fit_layers(X_train, perm, method), X_test, y_test).mean(-1))
    accs = np.stack(accs)
    return accs.mean(0), accs.max(0)


def split_half_directions(X, y, method: str = "mass_mean", *, seed: int = 0) -> tuple[LayerFit, LayerFit]:
    """Two fits of ``method`` on disjoint halves of the rows (each class split in two at random).

    Raises:
        ValueError: ``X``, ``y`` as :func:`~probes.sweep.fit_layers` takes them, or fewer than 2 rows of a class
            (a half would have none).
    """
    X, y = _check(X, y)
    few = [k for k in (0, 1) if int((y == k).sum()) < 2]
    if few:
        raise ValueError(f"split_half_directions needs at least 2 rows of each class to give both halves one; "
                         f"class {few[0]} has {int((y == few[0]).sum())}")
    g = torch.Generator().manual_seed(seed)
    halves: list[list[int]] = [[], []]
    for k in (0, 1):
        rows = torch.nonzero(y == k).flatten()
        rows = rows[torch.randperm(len(rows), generator=g)].tolist()
        halves[0] += rows[: len(rows) // 2]
        halves[1] += rows[len(rows) // 2:]
    return tuple(fit_layers(X[h], y[h], method) for h in halves)


def equal_norm_random(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian directions of ``like``'s shape (``[..., d]``) with each row's norm equal to ``like``'s, float32:
    the null of an intervention with the direction ``like``. Draws from ``generator``."""
    r = torch.randn(like.shape, generator=generator, dtype=torch.float64)
    return (r / r.norm(dim=-1, keepdim=True) * like.double().norm(dim=-1, keepdim=True)).float()


def random_directions(n: int, shape: Sequence[int], *, seed: int = 0) -> torch.Tensor:
    """``[n, *shape]`` float64 Gaussian directions (seeded), the null of a direction similarity."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g, dtype=torch.float64)


def direction_cosine_ci(X_a: Float[torch.Tensor, "n layer d"], X_b: Float[torch.Tensor, "n layer d"], y, *,
                        seed: int = 0, n_resamples: int = N_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap interval of the per-layer cosine between two models' difference-of-means directions.

    Both directions are ``mean(X[y == 1]) - mean(X[y == 0])`` (the mass-mean probe's and the difference-of-means
    refusal candidate's direction) of the same ``n`` prompts read in two models, so rows are resampled with
    replacement once for both (a paired bootstrap over prompts); each resample refits both directions and
    takes their cosine per layer (:func:`bootstrap_ci`, percentile, seeded). The cosine of two estimated
    directions is biased toward 0 when they are noisy (few rows, a weak class difference); the interval is
    the spread of that estimate and covers the cosine of the population directions only where the bias is
    small (planted check in the tests: 92% and 95% coverage at a 4σ class difference, 80 rows, d = 6).

    Args:
        X_a, X_b: ``[n, layer, d]`` activations of the same rows in the two models.
        y: ``[n]`` 0/1 labels.

    Returns:
        ``(low, high)``, each ``[layer]`` float64; NaN at a layer where a resample left a class empty, or
        where a direction has norm 0 (then with a ``RuntimeWarning`` naming the layers: no cosine there).

    Raises:
        ValueError: shapes that do not agree (or no layers or dimensions), NaN or inf activations, labels
            other than 0/1, fewer than 2 rows of a class, and what :func:`bootstrap_ci` raises
            (``n_resamples`` < 2).
    """
    A = torch.as_tensor(X_a).float()
    B = torch.as_tensor(X_b).float()
    labels = np.asarray(y)
    if (A.ndim != 3 or A.shape != B.shape or labels.shape != (A.shape[0],) or A.shape[1] == 0
            or A.shape[2] == 0):
        raise ValueError(f"X_a, X_b must be [n, layer, d] over the same rows as y, got {tuple(A.shape)}, "
                         f"{tuple(B.shape)} and {len(labels)} labels")
    if not (torch.isfinite(A).all() and torch.isfinite(B).all()):
        raise ValueError("X_a or X_b contains NaN or inf")
    if not np.isin(labels, (0, 1)).all() or min((labels == 0).sum(), (labels == 1).sum()) < 2:
        raise ValueError("y must be 0/1 with at least 2 rows of each class")
    pos = torch.as_tensor(labels == 1, dtype=torch.float32)

    def direction(counts, M):  # [resample, n] row counts -> [resample, layer * d] difference of class means
        w1, w0 = counts * pos, counts * (1 - pos)
        return (w1 @ M) / w1.sum(1, keepdim=True) - (w0 @ M) / w0.sum(1, keepdim=True)

    return _resampled_cosine_ci(A, B, direction, seed=seed, n_resamples=n_resamples)


def paired_difference_cosine_ci(D_a: Float[torch.Tensor, "n *group layer d"], D_b: Float[torch.Tensor, "n *group layer d"],
                                *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap interval of the cosine between two models' mean paired differences, per layer.

    ``D[i]`` is the difference of one pair's activations (e.g. a sentence's French opening minus its English
    one, both read in the same model), so each model's direction is ``mean_i D[i]``: the paired
    difference-of-means the language section steers with. Pairs are resampled with replacement once for both
    models (a paired bootstrap), both directions recomputed, and their cosine taken per layer
    (:func:`bootstrap_ci`, percentile, seeded). With a group axis (``[n, group, layer, d]``: several target
    languages of the same pairs) one resample serves every group, and a last row gives the interval of the
    cosine averaged over groups.

    Args:
        D_a, D_b: ``[n, layer, d]`` or ``[n, group, layer, d]`` paired differences of the same pairs in the two
            models.

    Returns:
        ``(low, high)``: each ``[layer]``, or ``[group + 1, layer]`` (the last row: the mean over groups);
        NaN where a direction has norm 0 (with a ``RuntimeWarning``: no cosine there).

    Raises:
        ValueError: shapes that do not agree (or an empty group, layer or width axis), fewer than 2 pairs,
            NaN or inf differences, and what :func:`bootstrap_ci` raises (``n_resamples`` < 2).
    """
    A = torch.as_tensor(D_a).float()
    B = torch.as_tensor(D_b).float()
    if A.shape != B.shape or A.ndim not in (3, 4) or A.shape[0] < 2 or 0 in A.shape:
        raise ValueError(f"D_a, D_b must both be [n, layer, d] or [n, group, layer, d] with n >= 2, got "
                         f"{tuple(A.shape)} and {tuple(B.shape)}")
    if not (torch.isfinite(A).all() and torch.isfinite(B).all()):
        raise ValueError("D_a or D_b contains NaN or inf")
    grouped = A.ndim == 4
    if grouped:  # groups as extra "layers" of one resample; the mean over groups appended after
        n, k, n_layers, d = A.shape
        A, B = A.reshape(n, k * n_layers, d), B.reshape(n, k * n_layers, d)

    def direction(counts, M):
        return (counts @ M) / counts.sum(1, keepdim=True)

    def with_mean(cos):  # [resample, group * layer] -> [resample, (group + 1) * layer]
        c = cos.reshape(len(cos), k, n_layers)
        return torch.cat([c, c.mean(1, keepdim=True)], 1).reshape(len(cos), -1)

    low, high = _resampled_cosine_ci(A, B, direction, seed=seed, n_resamples=n_resamples,
                                     combine=with_mean if grouped else None)
    return (low.reshape(k + 1, n_layers), high.reshape(k + 1, n_layers)) if grouped else (low, high)


def _resampled_cosine_ci(A, B, direction, *, seed, n_resamples, combine=None) -> tuple[np.ndarray, np.ndarray]:
    """The shared bootstrap of :func:`direction_cosine_ci` and :func:`paired_difference_cosine_ci`: rows of
    ``A`` and ``B`` (``[n, slot, d]``, the same rows in two models) resampled together; ``direction(counts,
    M)`` turns ``[resample, n]`` row counts and ``M`` (``[n, slot * d]``) into ``[resample, slot * d]``
    directions; the cosine per slot (``combine`` may append summaries) is bootstrapped. A cosine with a
    direction of norm 0 is NaN (undefined), and slots where the full sample's direction has norm 0 are named
    in a ``RuntimeWarning``."""
    n, n_slots = A.shape[:2]
    flat = [M.reshape(n, -1) for M in (A, B)]
    _check_resamples(n_resamples)  # before any work; bootstrap_ci checks it too
    with np.errstate(invalid="ignore", divide="ignore"):
        whole = [direction(torch.ones(1, n), M).reshape(n_slots, -1).norm(dim=-1) for M in flat]
    zero = ((whole[0] == 0) | (whole[1] == 0)).nonzero().flatten().tolist()
    if zero:
        warnings.warn(f"a direction has norm 0 at layer slots {zero} (e.g. a zero difference of means; with "
                      "groups, slot = group * n_layers + layer): the cosine is undefined there and its interval "
                      "NaN", RuntimeWarning, stacklevel=3)

    def statistic(idx, axis=-1):
        one = np.ndim(idx) == 1  # the original sample: one set of indices
        idx = np.atleast_2d(np.asarray(idx))
        counts = torch.as_tensor(np.stack([np.bincount(row, minlength=n) for row in idx]), dtype=torch.float32)
        dirs = []
        for M in flat:
            with np.errstate(invalid="ignore", divide="ignore"):
                d = direction(counts, M)
            dirs.append(d.double().reshape(len(idx), n_slots, -1))
        cos = torch.nn.functional.cosine_similarity(dirs[0], dirs[1], dim=-1)  # [resample, slot]
        zero = (dirs[0].norm(dim=-1) == 0) | (dirs[1].norm(dim=-1) == 0)  # no direction: no cosine
        cos = torch.where(zero, torch.full_like(cos, float("nan")), cos)
        if combine is not None:
            cos = combine(cos)
        return cos[0].numpy() if one else cos.T.numpy()

    # resamples per call: about 256 MB of float32 per [resample, slot x d] product
    batch = max(1, min(n_resamples, (1 << 26) // max(1, n_slots * A.shape[2])))
    with warnings.catch_warnings():
        if zero:  # scipy's note on NaN resamples names BCa, which is not used here; the warning above says why
            warnings.filterwarnings("ignore", message="The BCa confidence interval cannot be calculated")
        low, high = bootstrap_ci(statistic, (np.arange(n),), seed=seed, n_resamples=n_resamples, batch=batch)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
