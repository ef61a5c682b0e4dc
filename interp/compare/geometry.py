"""The geometry section of :func:`interp.compare.compare`: did post-training spread the residual stream over more
directions, or concentrate it on fewer?

Li, Agrawal, Ghosh, Teru, Santoro, Lajoie & Richards (2025, "Tracing the Representation Geometry of Language
Models from Pretraining to Post-training", NeurIPS) track two spectral measures of a model's representations and
read post-training by them: supervised fine-tuning and DPO make the representations **entropy-seeking** (higher
RankMe, lower alpha-ReQ: variance spread over more directions), RLVR **compression-seeking** (the reverse). This
section measures both, per layer and model, on the same tokens of a neutral corpus (:mod:`interp.compare._corpus`;
``resid_post`` of every block, every token after BOS, the BOS position excluded: its attention-sink norm, 2 to 28
times the other tokens' mean over gemma-3-270m's layers, would dominate the spectrum):

* **RankMe** (:func:`interp.geometry.rankme`; Garrido et al. 2023): ``exp(-sum_k p_k log p_k)``; with the default
  ``convention="li2025"`` ``p`` are the eigenvalues of the covariance of the column-centred ``[n, d]`` token matrix,
  normalised to sum 1 (Li et al.'s code; ``"garrido2023"``: the singular values of the matrix as it is, not
  centred). Between 1 and ``min(n - 1, d)``: **it depends on n**, which is the same for both models (the same
  tokens) and stated; compare base and post, not RankMe across corpora of other sizes.
* **alpha-ReQ** (:func:`interp.geometry.alpha_req`; Agrawal et al. 2022): the decay ``lambda_i ~ i^-alpha`` of the
  same eigenvalues, fitted as Li et al.'s official code fits it (least squares of ``log lambda_i`` on ``log i``
  weighted by ``1/i`` over eigen-ranks ``fit_first..fit_last``, 12..100), with the fit's R^2 over that range.
  Undefined (with the reason) where the token matrix has fewer than ``fit_last + 1`` rows, or spans fewer than
  ``fit_last`` dimensions; a ``fit_last`` above the model's width is refused before the section runs.

Rows: ``rows="tokens"`` (default) reads every token (correlated within a text: the intervals resample texts);
``rows="last"`` one row per text, its last token read, as Li et al. read one row per sequence (they take the
last token of FineWeb sequences of more than 32 tokens, at the last layer *after* the final norm; here every
layer is read before it).

**Intervals**: 95% delete-a-group jackknife over texts (``n_blocks`` blocks of text groups, seeded; the
translations of one ``languages`` sentence are one group), each model's curve and the paired post - base
difference (the same texts left out of both models in each replicate). Not the percentile bootstrap: a resample
repeats texts, repeated rows add no direction, and the bootstrap spectrum is biased: at gemma-3-270m's last layer
(base, the default 649 tokens) all of 100 bootstrap resamples over texts gave a RankMe below the estimate (95% of
them in 57-69, estimate 75) and an alpha-ReQ above it (0.94-1.05, estimate 0.91); on the bundled organism the 2.5th
percentile of 200 resampled alpha-ReQ values lay above the estimate at each of its 6 layers.

**Null / reference**: post - base = 0 for an unchanged model (its interval is the noise of the texts drawn). Each
model's value sits next to an **isotropic reference** (``_isotropic`` keys): the same measure of an ``[n, d]``
standard-normal matrix (mean of ``n_isotropic`` seeded draws): what a representation with no preferred direction
gives at this ``n`` and ``d`` (both measures are scale-free, so any total variance gives the same).

**Verdict** (summary): a layer is *entropy-seeking* in post when the paired interval of RankMe post - base lies
above 0, or of alpha post - base below 0; *compression-seeking* the reverse; each measure's reading is the
direction a majority of its defined layers take. The pair is called entropy-seeking (compression-seeking) only
where both measures say so. Li et al.'s finding is stated as theirs.

Cost model (CPU, one thread): one SVD of an ``[n, d]`` matrix per RankMe and per alpha-ReQ, per model and layer,
``1 + n_blocks`` times (the jackknife), about ``n d^2``: with the defaults (64 texts of ``languages``, at most 32
tokens each, 20 blocks) google/gemma-3-270m's pair (18 layers, d 640) read 649 tokens in 65 to 71 s on 2 CPU cores
shared with other work (104 s at load average 5-6), the bundled organism (6 layers, d 128) in 1.7 s. The cost
grows linearly with ``n_blocks``, and with the number of rows once they outnumber ``d`` (quadratically below).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np

from ..geometry import alpha_req, rankme
from ..models import ModelPair
from ..report import ConceptResult, long_rows
from ._corpus import MIN_GROUPS, States, as_corpus, corpus_params, jackknife_blocks, jackknife_intervals
from ._corpus import check_corpus_choice, load_corpus, token_states
from ._section import Param, Section, layer_runs, seed_param

__all__ = ["SECTION", "geometry_section"]

log = logging.getLogger(__name__)

_MODELS = ("base", "post")
_MEASURES = ("rankme", "alpha")
_LABEL = {"rankme": "RankMe", "alpha": "α-ReQ"}
#: Which sign of post - base is entropy-seeking, per measure (Li et al. 2025).
_ENTROPY_SIGN = {"rankme": 1, "alpha": -1}


# ------------------------------------------------------------------------------------------------ measures


def _alpha_undefined(n: int, d: int, fit: tuple[int, int]) -> str | None:
    """Why alpha-ReQ over ``fit`` cannot be fitted to ``n`` rows of width ``d``, or None."""
    if fit[1] > min(n - 1, d):
        return (f"the fit range ends at eigen-rank {fit[1]}, but {n} rows of width {d} have at most min(n − 1, d) = "
                f"{min(n - 1, d)} covariance eigenvalues")
    return None


def _measure(X: np.ndarray, convention: str, fit: tuple[int, int], why: dict | None = None, key: str = ""
             ) -> tuple[float, float, float, np.ndarray | None]:
    """``(rankme, alpha, r2, spectrum)`` of one ``[n, d]`` matrix; NaN where undefined, the reason recorded in
    ``why[key + measure]`` when ``why`` is given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rm = rankme(X, convention=convention)
        if why is not None and caught:
            why.setdefault(f"{key}rankme", str(caught[-1].message))
        caught.clear()
        reason = _alpha_undefined(X.shape[0], X.shape[1], fit)
        if reason:
            if why is not None:
                why.setdefault(f"{key}alpha", reason)
            return rm, float("nan"), float("nan"), None
        a = alpha_req(X, fit)
        if why is not None and caught:
            why.setdefault(f"{key}alpha", str(caught[-1].message))
    return rm, a.alpha, a.r2, a.spectrum


def _select_rows(states: States, rows: str) -> np.ndarray:
    """The token rows read: every one, or the last of each text."""
    if rows == "tokens":
        return np.arange(states.n)
    last = {}
    for i, t in enumerate(states.text):
        last[int(t)] = i  # rows are in text order, positions ascending
    return np.array(sorted(last.values()), dtype=int)


def _spectra(states: States, sel: np.ndarray, convention: str, fit: tuple[int, int]) -> tuple[dict, dict, dict]:
    """``(values, r2, found)``: per model, ``values[m]`` ``[2, layer]`` RankMe and alpha and ``r2[m]`` ``[layer]``;
    ``found["spectra"][m]`` the last layer's normalised spectrum (None where alpha is undefined) and
    ``found["why"]`` the reasons for undefined entries."""
    why: dict[str, str] = {}
    values, r2, last = {}, {}, {}
    n_layers = states.X["base"].shape[0]
    for m in _MODELS:
        values[m], r2[m] = np.empty((2, n_layers)), np.empty(n_layers)
        for layer in range(n_layers):
            X = states.X[m][layer][sel].numpy()
            rm, a, r, spectrum = _measure(X, convention, fit, why, f"{m} layer {layer}: ")
            values[m][:, layer], r2[m][layer] = (rm, a), r
            if layer == n_layers - 1:
                last[m] = spectrum
    return values, r2, {"spectra": last, "why": why}


def _replicate(states: States, sel: np.ndarray, convention: str, fit: tuple[int, int]):
    """The jackknife's statistic: ``rows`` (indices into ``sel``) -> ``[rankme base, post, post - base, alpha base,
    post, post - base]`` over layers, concatenated."""
    n_layers = states.X["base"].shape[0]

    def stat(rows: np.ndarray) -> np.ndarray:
        out = {m: np.empty((2, n_layers)) for m in _MODELS}
        for m in _MODELS:
            for layer in range(n_layers):
                rm, a, _, _ = _measure(states.X[m][layer][sel[rows]].numpy(), convention, fit)
                out[m][:, layer] = rm, a
        b, p = out["base"], out["post"]
        return np.concatenate([b[0], p[0], p[0] - b[0], b[1], p[1], p[1] - b[1]])

    return stat


def _isotropic(n: int, d: int, convention: str, fit: tuple[int, int], draws: int, seed: int
               ) -> tuple[float, float, str | None, np.ndarray | None]:
    """RankMe and alpha-ReQ of an ``[n, d]`` standard-normal matrix, the mean of ``draws`` seeded draws (the
    isotropic reference), the reason alpha is undefined (or None) and the first draw's normalised spectrum."""
    rng = np.random.default_rng(seed)
    rms, alphas, spectrum, why = [], [], None, {}
    for k in range(draws):
        rm, a, _, s = _measure(rng.standard_normal((n, d)), convention, fit, why)
        rms.append(rm)
        alphas.append(a)
        spectrum = s if k == 0 else spectrum
    return float(np.mean(rms)), float(np.mean(alphas)), why.get("alpha"), spectrum


# ------------------------------------------------------------------------------------------------ figures


def _curves(values, r2, iso, jack, n_layers) -> dict[str, np.ndarray]:
    nan = np.full(n_layers, np.nan)
    est = {"rankme": {m: values[m][0] for m in _MODELS}, "alpha": {m: values[m][1] for m in _MODELS}}
    out: dict[str, np.ndarray] = {}
    for i, measure in enumerate(_MEASURES):
        b, p = est[measure]["base"], est[measure]["post"]
        for j, (key, value) in enumerate(((f"base_{measure}", b), (f"post_{measure}", p),
                                          (f"{measure}_diff", p - b))):
            part = slice((3 * i + j) * n_layers, (3 * i + j + 1) * n_layers)
            out[key] = value
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (nan, nan) if jack is None else (jack[0][part],
                                                                                           jack[1][part])
        out[f"{measure}_isotropic"] = np.full(n_layers, iso[measure])
    for m in _MODELS:
        out[f"{m}_alpha_r2"] = r2[m]
    return out


def _direction(curves: dict, measure: str, layer: int) -> str:
    """``"entropy-seeking"``, ``"compression-seeking"``, ``"interval holds 0"`` or ``"undefined"`` at ``layer``."""
    lo, hi = curves[f"{measure}_diff_ci_low"][layer], curves[f"{measure}_diff_ci_high"][layer]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undefined"
    if lo > 0 or hi < 0:
        up = lo > 0
        return "entropy-seeking" if up == (_ENTROPY_SIGN[measure] > 0) else "compression-seeking"
    return "interval holds 0"


def _reading(curves: dict, measure: str, n_layers: int) -> dict:
    """Per measure: the layers of each direction and the majority reading (module docstring)."""
    by = {k: [layer for layer in range(n_layers) if _direction(curves, measure, layer) == k]
          for k in ("entropy-seeking", "compression-seeking", "interval holds 0", "undefined")}
    defined = n_layers - len(by["undefined"])
    majority = next((k for k in ("entropy-seeking", "compression-seeking") if defined and len(by[k]) > defined / 2),
                    None)
    return {**by, "defined": defined, "majority": majority}


def _at_layers(layers, of: int | None = None) -> str:
    """``"at 0 layers"``, ``"at 1 layer (5)"``, ``"at 4 of 6 layers (1-3, 5)"`` (``of`` given)."""
    n = len(layers)
    count = f"{n} of {of}" if of is not None else str(n)
    return f"at {count} layer{'' if n == 1 and of is None else 's'}" + (f" ({layer_runs(layers)})" if n else "")


def _rank_bound(n: int, d: int, convention: str) -> str:
    """The largest RankMe ``n`` rows of width ``d`` can have (to ``eps``), as text."""
    if convention == "li2025":  # centred: rank <= n - 1; Li et al. keep at most LI2025_TOP eigenvalues
        from ..geometry import LI2025_TOP

        top = f", {LI2025_TOP}" if min(n - 1, d) > LI2025_TOP else ""
        return f"min(n − 1, d{top}) = {min(n - 1, d, LI2025_TOP)}"
    return f"min(n, d) = {min(n, d)}"


def _num(x, digits: int = 3) -> str:
    return "undefined" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _ci(curves: dict, key: str, layer: int) -> str:
    lo, hi = curves[f"{key}_ci_low"][layer], curves[f"{key}_ci_high"][layer]
    return "[no interval]" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3g}, {hi:.3g}]"


def _measure_phrase(curves: dict, reading: dict, measure: str, why: dict) -> str:
    label, n_layers = _LABEL[measure], len(curves[f"{measure}_diff"])
    if not reading["defined"]:
        reason = next((v for k, v in why.items() if k.endswith(measure)), why.get("intervals", "no interval"))
        return f"whether {label} moves in post is undefined at every layer ({reason})"
    up = "higher" if _ENTROPY_SIGN[measure] > 0 else "lower"
    down = "lower" if up == "higher" else "higher"
    return (f"{label} is {up} in post (entropy-seeking) "
            f"{_at_layers(reading['entropy-seeking'], reading['defined'])}, {down} (compression-seeking) "
            f"{_at_layers(reading['compression-seeking'])}, and the "
            f"interval holds 0 {_at_layers(reading['interval holds 0'])}"
            + (f"; undefined at {len(reading['undefined'])} of {n_layers}" if reading["undefined"] else ""))


def _verdict(readings: dict) -> str:
    r, a = readings["rankme"]["majority"], readings["alpha"]["majority"]
    defined = {"RankMe": readings["rankme"]["defined"] > 0, "α-ReQ": readings["alpha"]["defined"] > 0}
    if not any(defined.values()):
        return "No direction can be read: neither measure's post − base has an interval at any layer."
    if r is not None and r == a:
        return f"Post is {r} relative to base at most layers by both measures."
    if r is None and a is None:
        undefined = [k for k, v in defined.items() if not v]
        return ("Neither measure moves one way at most layers: no direction is seen"
                + (f" ({undefined[0]} is undefined at every layer)." if undefined else "."))
    if r is not None and a is not None:
        return f"The measures disagree: RankMe reads {r}, α-ReQ {a}, at most layers."
    one, other = ("RankMe", "α-ReQ") if r is not None else ("α-ReQ", "RankMe")
    does = "is undefined at every layer" if not defined[other] else "does not"
    return f"Only {one} moves one way at most layers ({r or a}); {other} {does}: no direction is called."


def _summary(curves, readings, states, corpus, n, d, rows, convention, fit, max_tokens, why) -> str:
    last = len(curves["rankme_diff"]) - 1
    unit = "tokens" if rows == "tokens" else "texts' last tokens"
    parts = [f"On {n} {unit} of {states.n_texts} texts ({corpus.source}; at most {max_tokens} tokens per text, BOS "
             f"excluded; d = {d}; RankMe ({convention}) depends on n and is at most {_rank_bound(n, d, convention)}):"]
    for measure in _MEASURES:
        iso = curves[f"{measure}_isotropic"][0]
        parts.append(f"{_measure_phrase(curves, readings[measure], measure, why)}. At the last layer "
                     f"{_LABEL[measure]} is {_num(curves[f'base_{measure}'][last])} "
                     f"{_ci(curves, f'base_{measure}', last)} in base and {_num(curves[f'post_{measure}'][last])} "
                     f"{_ci(curves, f'post_{measure}', last)} in post (an isotropic Gaussian of this n and d gives "
                     f"{_num(iso)}), post − base {_num(curves[f'{measure}_diff'][last])} "
                     f"{_ci(curves, f'{measure}_diff', last)} (0 for an unchanged model"
                     + ("" if readings[measure]["defined"] else "; a point value, no interval") + ").")
    if np.isfinite(curves["base_alpha_r2"]).any():
        r2 = np.concatenate([curves[f"{m}_alpha_r2"] for m in _MODELS])
        parts.append(f"The α-ReQ fit over eigen-ranks {fit[0]}..{fit[1]} has R² {_num(np.nanmin(r2))} to "
                     f"{_num(np.nanmax(r2))}.")
    parts.append(_verdict(readings))
    parts.append("(Li et al. 2025 find SFT and DPO entropy-seeking, higher RankMe and lower α, and RLVR "
                 "compression-seeking; they read the last token of each sequence at the models' last hidden state, "
                 "after the final norm.)")
    return " ".join(parts)


_READINGS = {
    "rankme": "RankMe of each model's token matrix per layer, with 95% jackknife bands over texts; grey: an "
              "isotropic Gaussian matrix of the same n and d. Higher: variance spread over more directions.",
    "alpha": "α-ReQ, the power-law decay of the covariance eigenspectrum (Li et al.'s fit), with 95% jackknife bands "
             "and the fit's R²; grey: the isotropic Gaussian. Lower: a flatter spectrum.",
    "difference": "Post − base of each measure per layer, paired 95% jackknife intervals over texts (the same texts "
                  "left out of both models). Entropy-seeking (Li et al. 2025): RankMe above 0, α below 0.",
    "spectrum": "The normalised covariance eigenvalues at the last layer, log-log; α-ReQ is minus the slope over the "
                "fit range (weighted least squares). Grey: an isotropic Gaussian of the same n and d.",
}


def _plots(spectra: dict, iso_spectrum, fit, last: int) -> list[dict]:
    plots = [
        {"title": "RankMe per layer", "reading": "rankme", "yaxis": "RankMe (effective number of directions)",
         "series": {"base_rankme": "base", "post_rankme": "post"}, "nulls": {"rankme_isotropic": "isotropic Gaussian"}},
        {"title": "α-ReQ per layer (eigenspectrum decay) and the fit's R²", "reading": "alpha",
         "series": {"base_alpha": "base α", "post_alpha": "post α", "base_alpha_r2": "base R²",
                    "post_alpha_r2": "post R²"},
         "nulls": {"alpha_isotropic": "isotropic Gaussian"},
         "panels": [{"keys": ["base_alpha", "post_alpha", "alpha_isotropic"], "yaxis": "α"},
                    {"keys": ["base_alpha_r2", "post_alpha_r2"], "yaxis": "R² of the fit", "yrange": [0, 1.02]}]},
        {"title": "Post − base per layer", "reading": "difference",
         "series": {"rankme_diff": "RankMe post − base", "alpha_diff": "α post − base"},
         "panels": [{"keys": ["rankme_diff"], "yaxis": "RankMe post − base"},
                    {"keys": ["alpha_diff"], "yaxis": "α post − base"}]},
    ]
    if all(spectra.get(m) is not None for m in _MODELS):
        def series(s):
            keep = s > s[0] * 1e-12  # eigenvalues zero to rounding (rank below min(n, d)) have no logarithm
            ranks = np.arange(1, len(s) + 1)[keep]
            return {"x": np.log10(ranks).tolist(), "y": np.log10(s[keep]).tolist()}

        plot = {"kind": "xy", "title": f"Covariance eigenspectrum at layer {last} (fit range {fit[0]}..{fit[1]})",
                "reading": "spectrum", "mode": "lines", "xaxis": "log10 eigen-rank",
                "yaxis": "log10 normalised eigenvalue", "series": {m: series(spectra[m]) for m in _MODELS}}
        if iso_spectrum is not None:
            plot["nulls"] = {"isotropic Gaussian": series(iso_spectrum)}
        plots.append(plot)
    return plots


def _layer_rows(curves: dict, n_layers: int) -> list[list]:
    def cell(key, layer):
        v = curves[key][layer]
        return float(v) if math.isfinite(v) else "undefined"

    rows = []
    for layer in range(n_layers):
        row = [layer]
        for measure in _MEASURES:
            for key in (f"base_{measure}", f"post_{measure}", f"{measure}_diff"):
                row += [cell(key, layer), _ci(curves, key, layer)]
            row.append(_direction(curves, measure, layer))
        row += [cell("base_alpha_r2", layer), cell("post_alpha_r2", layer)]
        rows.append(row)
    return rows


def _tables(curves: dict, n_layers: int) -> dict:
    cols = ["layer"]
    for measure in _MEASURES:
        label = _LABEL[measure]
        cols += [f"base {label}", "95% CI", f"post {label}", "95% CI", "post − base", "95% CI (paired)",
                 f"{label}: post is"]
    cols += ["base R² (α fit)", "post R² (α fit)"]
    return {"layers": {"title": "Per layer (95% delete-a-group jackknife intervals over texts)", "columns": cols,
                       "rows": _layer_rows(curves, n_layers)}}


def _setup(corpus, states, n, d, rows, convention, fit, max_tokens, n_isotropic, seed, n_blocks, groups, batch_size,
           why) -> dict:
    k = int(jackknife_blocks(groups, n_blocks, seed).max()) + 1
    setup = {
        "corpus": corpus.source,
        "rows": (f"{n} token rows (every token after BOS of {states.n_texts} texts, at most {max_tokens} per text; the "
                 "BOS position excluded)" if rows == "tokens" else
                 f"{n} rows: the last token read of each text (at most {max_tokens} after BOS)")
                + f"; width d = {d}; the same rows in both models",
        "site": "resid_post of every block (before the final norm)",
        "RankMe": f"interp.geometry.rankme, convention {convention!r}: exp of the entropy of the normalised "
                  + ("covariance eigenvalues of the column-centred rows (Li et al. 2025)" if convention == "li2025"
                     else "singular values of the rows as they are (Garrido et al. 2023)")
                  + f", eps 1e-7; at most {_rank_bound(n, d, convention)}",
        "alpha-ReQ": f"interp.geometry.alpha_req: weighted (1/i) least squares of log eigenvalue on log rank over "
                     f"eigen-ranks {fit[0]}..{fit[1]} (Li et al.'s code: stringer_get_powerlaw on np.arange(11, 100)); "
                     "R² over the same range",
        "reference": f"isotropic Gaussian: the same measures of a [{n}, {d}] standard-normal matrix, mean of "
                     f"{n_isotropic} seeded draws",
        "intervals": f"95% delete-a-group jackknife over texts (K = {k} blocks of text groups, seeded; t with K − 1 "
                     "df), paired for post − base; not the percentile bootstrap, which repeats texts and biases a "
                     "spectrum",
        "verdict": "a layer is entropy-seeking where RankMe post − base's interval lies above 0 (α's below 0), "
                   "compression-seeking the reverse; a measure reads the direction of a majority of its defined "
                   "layers; the pair's direction is called only where both measures agree",
        "seed": seed, "batch_size": batch_size,
    }
    if why:
        setup["undefined"] = why
    return setup


# ------------------------------------------------------------------------------------------------ section


def geometry_section(pair: ModelPair, texts: Sequence[str], *, groups: Sequence | None = None,
                     corpus_source: str = "corpus", max_tokens: int = 32, rows: str = "tokens",
                     convention: str = "li2025", fit_first: int = 12, fit_last: int = 100, n_blocks: int = 20,
                     n_isotropic: int = 3, seed: int = 0, batch_size: int = 16, progress: bool = True
                     ) -> ConceptResult:
    """RankMe and alpha-ReQ of base and post, per layer, on the same tokens (module docstring).

    Args:
        pair: the booted :class:`~interp.ModelPair` (one tokenizer: the rows are the same tokens).
        texts: the corpus, every text read (a :class:`~interp.datasets.PromptSet` or strings).
        groups: ``[len(texts)]`` texts of one group are left out together (translations of one sentence); default
            ``meta["group"]`` of a PromptSet, else each text its own.
        corpus_source: what the texts are. max_tokens: tokens read per text after BOS (the first ones).
        rows: ``"tokens"`` (every token) or ``"last"`` (each text's last token read).
        convention: RankMe's spectrum, ``"li2025"`` or ``"garrido2023"`` (:func:`interp.geometry.rankme`).
        fit_first, fit_last: alpha-ReQ's eigen-ranks, 1-based inclusive (Li et al.: 12, 100).
        n_blocks: jackknife blocks. n_isotropic: draws of the isotropic reference.
        seed: of the jackknife blocks and the reference. batch_size: texts per forward pass. progress: bars.

    Returns:
        A :class:`~interp.report.ConceptResult` ``"geometry"``: per layer ``{base,post}_rankme`` (effective number
        of directions) and ``{base,post}_alpha`` (decay exponent, dimensionless), each with ``_ci_low``/``_ci_high``,
        ``{base,post}_alpha_r2``, ``rankme_diff`` / ``alpha_diff`` (post - base, paired intervals),
        ``rankme_isotropic`` / ``alpha_isotropic`` (the reference); None where undefined (why in
        ``setup["undefined"]``); table ``layers``; plots; ``readings["summary"]`` with the verdict, written from
        the figures.

    Raises:
        ValueError: fewer than 2 texts, ``groups`` of another length, an unknown ``rows`` or ``convention``, a fit
            range that is not ``1 <= fit_first``, ``fit_last - fit_first >= 2``, or ends beyond the model's width,
            no token besides BOS, models that tokenise the corpus differently, bad counts.
    """
    from .._checks import check_int

    for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size), ("n_isotropic", n_isotropic)):
        check_int(name, value)
    if check_int("n_blocks", n_blocks) < MIN_GROUPS:
        raise ValueError(f"n_blocks must be >= {MIN_GROUPS}; got {n_blocks}")
    if rows not in ("tokens", "last"):
        raise ValueError(f"rows must be 'tokens' or 'last'; got {rows!r}")
    if convention not in ("li2025", "garrido2023"):
        raise ValueError(f"convention must be 'li2025' or 'garrido2023'; got {convention!r}")
    d = int(pair.base.cfg.d_model)
    fit = _check_fit(fit_first, fit_last, d)
    meta = getattr(texts, "meta", None)
    texts = list(getattr(texts, "texts", texts))
    if groups is not None:
        if len(groups) != len(texts):
            raise ValueError(f"groups has {len(groups)} entries for {len(texts)} texts")
        meta = [{"group": str(g)} for g in groups]
    corpus = as_corpus(texts, meta, corpus_source)
    states = token_states(pair, corpus, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
    sel = _select_rows(states, rows)
    n, n_layers = len(sel), pair.n_layers
    if n < 2:
        raise ValueError(f"the corpus gives {n} row(s); RankMe of a centred matrix needs at least 2")
    values, r2, found = _spectra(states, sel, convention, fit)
    why = found["why"]
    row_groups = states.groups[sel]
    estimate = np.concatenate([values["base"][0], values["post"][0], values["post"][0] - values["base"][0],
                               values["base"][1], values["post"][1], values["post"][1] - values["base"][1]])
    jack = jackknife_intervals(_replicate(states, sel, convention, fit), row_groups, estimate, seed=seed,
                               n_blocks=n_blocks)
    if jack is None:
        why["intervals"] = (f"the corpus has {len(np.unique(row_groups))} group(s) of texts; intervals need at least "
                            f"{MIN_GROUPS}")
    rm_iso, a_iso, iso_why, iso_spectrum = _isotropic(n, d, convention, fit, n_isotropic, seed)
    if iso_why:
        why["alpha_isotropic"] = iso_why
    curves = _curves(values, r2, {"rankme": rm_iso, "alpha": a_iso}, jack, n_layers)
    readings_by = {measure: _reading(curves, measure, n_layers) for measure in _MEASURES}
    per_layer = [{"layer": layer, **{k: float(v[layer]) for k, v in curves.items()}} for layer in range(n_layers)]
    summary = _summary(curves, readings_by, states, corpus, n, d, rows, convention, fit, max_tokens, why)
    readings = {"summary": summary, "headline": _verdict(readings_by), **_READINGS}
    setup = _setup(corpus, states, n, d, rows, convention, fit, max_tokens, n_isotropic, seed, n_blocks, row_groups,
                   batch_size, why)
    setup["layers read"] = {measure: {k: v for k, v in r.items() if k != "majority"}
                            for measure, r in readings_by.items()}
    return ConceptResult("geometry", list(range(n_layers)), per_layer, long_rows(per_layer), readings=readings,
                         setup=setup, plots=_plots(found["spectra"], iso_spectrum, fit, n_layers - 1),
                         tables=_tables(curves, n_layers))


def _check_fit(first: int, last: int, d: int) -> tuple[int, int]:
    """``(fit_first, fit_last)`` checked against each other and the width ``d``.

    Raises:
        ValueError: ``fit_first < 1``, fewer than 3 ranks, ``fit_last > d``.
    """
    if first < 1 or last - first < 2:
        raise ValueError(f"fit_first and fit_last must satisfy 1 <= fit_first and fit_last - fit_first >= 2 (at least "
                         f"3 eigen-ranks); got {first}..{last}")
    if last > d:
        raise ValueError(f"fit_last {last} exceeds the model's width d_model = {d}: its covariance has at most {d} "
                         f"eigenvalues; pass fit_last <= {d}")
    return first, last


def _within_width(fit_last: int, shape) -> None:
    """``fit_last`` within the model's width (its :class:`~interp.models.ModelShape`), before the boot."""
    if fit_last > shape.d_model:
        raise ValueError(f"must be at most the model's width d_model = {shape.d_model} (its covariance has at most "
                         f"{shape.d_model} eigenvalues); got {fit_last}")


def _validate(options: dict, given: frozenset) -> None:
    """Before any model boots: the corpus choice, the fit range's order, and with ``rows="last"`` enough texts for
    the fit range (one row per text: at most ``n_texts - 1`` centred eigenvalues).

    Raises:
        ValueError: as :func:`check_corpus_choice`; ``fit_last - fit_first < 2``; ``rows="last"`` with
            ``n_texts <= fit_last`` (α undefined at every layer).
    """
    check_corpus_choice("geometry", options, given)
    first, last = options["fit_first"], options["fit_last"]
    if last - first < 2:
        raise ValueError(f"geometry: fit_first and fit_last must satisfy fit_last - fit_first >= 2 (at least 3 "
                         f"eigen-ranks); got --geometry-fit-first {first} --geometry-fit-last {last}")
    if options["rows"] == "last" and options["n_texts"] <= last:
        raise ValueError(f"geometry: rows='last' reads one row per text, so {options['n_texts']} texts give at most "
                         f"{options['n_texts'] - 1} eigenvalues, short of the α-ReQ fit range's end {last}: α would be "
                         f"undefined at every layer; pass --geometry-n-texts {last + 1} or more (a corpus that "
                         f"large), or --geometry-fit-last below {options['n_texts']}")


def _run(ctx, *, corpus: str = "languages", data: str | None = None, n_texts: int = 64, **options) -> ConceptResult:
    c = load_corpus(ctx, corpus, data, n_texts, options["seed"])
    return geometry_section(ctx.pair, c.texts, groups=c.groups, corpus_source=c.source, progress=ctx.progress,
                            **options)


SECTION = Section("geometry", _run, validate=_validate,
                  help="RankMe and α-ReQ of base and post per layer: entropy- or compression-seeking post-training "
                       "(Li et al. 2025)", params=(
    *corpus_params("give the token matrices", 64),
    Param("rows", str, "tokens", "rows of the matrix: every token read (tokens) or each text's last token read "
                                 "(last, one row per text as Li et al. 2025)", choices=("tokens", "last")),
    Param("convention", str, "li2025", "RankMe's spectrum: covariance eigenvalues of the centred rows (li2025, Li et "
                                       "al.'s code) or singular values of the rows as they are (garrido2023)",
          choices=("li2025", "garrido2023")),
    Param("fit_first", int, 12, "first eigen-rank of the α-ReQ fit, 1-based (Li et al.: 12)", low=1),
    Param("fit_last", int, 100, "last eigen-rank of the α-ReQ fit, inclusive (Li et al.: 100); at most d_model; α is "
                                "undefined with fewer than fit_last + 1 rows", low=3,
          model_check=_within_width),
    Param("n_blocks", int, 20, f"blocks of text groups of the delete-a-group jackknife behind every interval (both "
                               f"models' spectra are recomputed once per block; at least {MIN_GROUPS})",
          low=MIN_GROUPS),
    Param("n_isotropic", int, 3, "seeded draws of the isotropic Gaussian reference", low=1),
    seed_param("seed of the text draw, the jackknife blocks and the reference"),
    Param("batch_size", int, 16, "texts per forward pass", low=1),
))
