"""Confidence: calibration of a model's answers, entropy neurons and what ablating them does to entropy.

**Calibration** (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks", §2):

* :func:`multiple_choice` — for fact prompts (``meta["answer"]`` and ``meta["alternatives"]``), the
  model's next-token probabilities of the *first token* of the answer and of each alternative,
  renormalised over those options (a softmax over the options' logits, i.e. ``p_i / sum_j p_j``); the
  confidence is the largest option probability and a prompt is answered correctly when the answer's option
  is the largest (ties go to the answer, the first option). Rows may have different numbers of
  alternatives (a user's facts file draws fewer where its relation has few distinct answers): each row is
  renormalised over its own options, so its chance level is ``1 / n_options`` of that row
  (:attr:`MultipleChoice.chance`). Each option's first token must be a word of its own: not a bare space,
  punctuation or an article, which many answers share (:func:`answer_options`).
* :func:`expected_calibration_error` — Guo et al.'s ECE with ``M`` equal-width bins
  ``B_m = ((m-1)/M, m/M]`` (the first bin also holds 0): ``ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)|``.
* :func:`reliability` — the reliability diagram's table: per bin the count, the mean confidence and the
  accuracy (scikit-learn's ``calibration_curve`` gives the per-bin means; it drops empty bins and gives no
  counts, so the counts are taken here with the same binning).
* :func:`calibrated_ece_null` — the ECE a *perfectly calibrated* model with the same confidences shows at
  this sample size (``correct ~ Bernoulli(confidence)``, seeded draws): ECE is biased upward at small ``n``,
  so this is what "calibrated" looks like on the data at hand.

**Entropy neurons** (Stolfo, Wu, Gurnee, Belinkov, Song, Sachan & Nanda 2024, "Confidence Regulation
Neurons in Language Models", NeurIPS, §3): final-layer MLP neurons with a large output weight that writes
into the unembedding's *effective null space* — the span of the bottom singular vectors of ``W_U`` — so
they change the residual stream's norm, and through the final norm the logits' scale (the entropy), while
barely moving the logits directly.

* :func:`unembedding_null_space` — the bottom ``k`` left singular vectors of the effective unembedding:
  the final norm's gain folded in (``diag(g) W_U``; ``g = 1 + w`` for Gemma's RMSNorm, read from the norm
  module itself), centred over the vocabulary (softmax ignores a shift shared by every logit;
  TransformerLens' ``center_unembed``, with which the reference code's models are loaded), and for a final
  LayerNorm restricted to the mean-zero subspace it reads. ``k`` defaults to ``0.01 d_model`` (Stolfo et
  al., Fig. 2f: "k = 40 ≈ 0.01 d_model" for LLaMA2 7B; their code picks ``k`` per model where the
  singular values drop, 40-96 dimensions for 768-4096-wide models).
* :func:`entropy_neurons` — per neuron of one layer: the norm of its direction in the residual stream,
  the fraction ``rho = ||U_0^T w|| / ||w||`` of it in that null space (Stolfo et al.'s rho), and the
  ranking by ``rho ||w||`` (the norm written into the null space, large only when both are).
* :func:`ablation_effects` — mean ablation (the activation at ``mlp_post`` replaced by its mean over a
  reference corpus) and the change of next-token entropy at every token position of a corpus, as the
  **total effect** (everything downstream recomputed) and the **direct effect** (the final norm's scale
  frozen at its clean value, ``ln_final.hook_scale``: Stolfo et al.'s effect that bypasses the norm); their
  difference is the part that goes through the norm's scale (:meth:`AblationEffects.values`, ``"via_norm"``).
* :func:`ablated_choices` — the multiple-choice reading of fact prompts with neurons mean-ablated.

A neuron's *direction* is its row of ``W_out`` (``[d_mlp, d_model]``); where the block normalises the MLP's
output before adding it to the residual stream (Gemma 2/3's post-feedforward RMSNorm, bridge
``blocks.L.ln2_post``), it is that row times the norm's gain: the norm divides the whole MLP output by one
positive number per token, so each neuron adds ``a_j (w_j * g_post) / rms(mlp_out)`` — the direction is
``w_j * g_post``, its length in units of the MLP output's rms. There, removing one neuron's output also
changes ``rms(mlp_out)`` and so rescales every other neuron's output: even a neuron entirely in the null
space has a direct effect.

All passes use hooks attached with :func:`interp.hooks.attached`; the blocks below the ablated layer are
replayed from the clean pass of the same batch (:func:`interp.hooks.replayed_blocks`), which leaves every
number as a full forward pass gives it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float, Int

from ._checks import as_int, check_int
from .hooks import attached, recorded_blocks, replayed_blocks
from .models import tokenizer_of
from .sites import check_layers, hook_name
from .tokens import Tokenized, as_tokenized, pad_id

__all__ = ["AblationEffects", "EntropyNeurons", "MAX_BINS", "MultipleChoice", "NO_OPTION", "NullSpace",
           "ablated_choices", "ablation_effects", "answer_options", "calibrated_ece_null", "choice_probabilities",
           "entropy_neurons", "expected_calibration_error", "mean_activations", "multiple_choice",
           "neuron_directions", "next_token_entropy", "random_neurons", "reliability", "unembedding_null_space"]

#: The bridge's hook of the final norm's scale (the denominator ``sqrt(mean(x^2) + eps)``), frozen for the
#: direct effect.
SCALE_HOOK = "ln_final.hook_scale"
#: Share of ``d_model`` the null space spans by default (Stolfo et al. 2024, Fig. 2f caption).
NULL_SHARE = 0.01
#: Default selection: at least this share of a neuron's output-weight norm in the null space.
RHO_THRESHOLD = 0.5
#: Most confidence bins of the ECE and the reliability table: a bin narrower than 0.01 holds a handful of predictions
#: at any sample size read here, so its |accuracy - confidence| is sampling noise (Guo et al. 2017 use 15 bins).
MAX_BINS = 100
#: The id padding a multiple-choice row with fewer options than the widest (:func:`answer_options`).
NO_OPTION = -1
# the bridge warns whenever a hook edits hook_scale: here that edit is the point (the direct effect)
_EDIT_WARNING = "A forward hook edited hook_scale"


# ------------------------------------------------------------------------------------------ calibration


def _check_calibration(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, correct)`` as float64 arrays, checked.

    Raises:
        ValueError: arrays that are not 1-D of one length, empty, confidences outside [0, 1] (or NaN), or
            ``correct`` holding anything but 0/1 (booleans).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct)
    if conf.ndim != 1 or corr.ndim != 1 or conf.shape != corr.shape:
        raise ValueError(f"confidence and correct must be 1-D arrays of the same length; got shapes {conf.shape} "
                         f"and {corr.shape}")
    if conf.size == 0:
        raise ValueError("confidence is empty: calibration needs at least one prediction")
    if not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1:
        raise ValueError(f"confidence must hold probabilities in [0, 1]; got values from {np.nanmin(conf):g} to "
                         f"{np.nanmax(conf):g}{' and NaN' if np.isnan(conf).any() else ''}")
    if not np.isin(corr, (0, 1)).all():
        raise ValueError(f"correct must hold 0/1 or booleans; got values {sorted(set(np.unique(corr).tolist()))[:5]}")
    return conf, corr.astype(np.float64)


def _bins(n_bins) -> np.ndarray:
    """``M + 1`` equal-width edges of ``[0, 1]``.

    Raises:
        TypeError: ``n_bins`` not an integer. ValueError: ``n_bins < 1`` or above :data:`MAX_BINS`.
    """
    n = check_int("n_bins", n_bins)
    if n > MAX_BINS:
        raise ValueError(f"n_bins must be at most {MAX_BINS}, got {n_bins!r}: bins narrower than 1/{MAX_BINS} hold a "
                         "handful of predictions each, so the ECE would measure sampling noise (Guo et al. 2017 use "
                         "15)")
    return np.linspace(0.0, 1.0, n + 1)


def _bin_ids(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each confidence: ``((m-1)/M, m/M]``, 0 in the first; scikit-learn's ``calibration_curve`` binning."""
    return np.searchsorted(edges[1:-1], conf, side="left")


def _ece(conf: np.ndarray, corr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """ECE of each row of ``[..., n]`` confidences and 0/1 outcomes (vectorised over leading axes):
    ``sum_m |sum_{B_m} correct - sum_{B_m} confidence| / n``, which is Guo et al.'s
    ``sum_m |B_m|/n |acc(B_m) - conf(B_m)|`` (empty bins add 0). The per-bin sums are one ``bincount`` over
    (row, bin) pairs: memory of the inputs' size plus one number per row and bin."""
    diff = np.broadcast_to(corr - conf, np.broadcast_shapes(np.shape(corr), np.shape(conf)))
    ids = np.broadcast_to(_bin_ids(conf, edges), diff.shape)
    lead, m = diff.shape[:-1], len(edges) - 1
    rows = int(np.prod(lead, dtype=np.int64))
    flat = (np.arange(rows).reshape(*lead, 1) * m + ids).ravel()
    gap = np.bincount(flat, weights=diff.ravel(), minlength=rows * m).reshape(*lead, m)
    return np.abs(gap).sum(-1) / diff.shape[-1]


def expected_calibration_error(confidence: Float[np.ndarray, " n"], correct, n_bins: int = 10) -> float:
    """Expected calibration error (Guo et al. 2017, §2, "Expected Calibration Error"), in probability units.

    ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over ``n_bins`` equal-width bins
    ``((m-1)/M, m/M]`` of the confidence (0 falls in the first).

    Args:
        confidence: ``[n]`` the probability the model gives its prediction, in [0, 1].
        correct: ``[n]`` 1 (True) where the prediction is right.
        n_bins: ``M``, 1 to :data:`MAX_BINS` (100).

    Raises:
        ValueError: empty or mismatched inputs, confidences outside [0, 1], ``correct`` not 0/1, ``n_bins`` outside
            1 .. :data:`MAX_BINS`.
        TypeError: ``n_bins`` not an integer.

    >>> round(expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1], n_bins=10), 6)  # (0.8 + 0.8) / 4
    0.4
    """
    edges = _bins(n_bins)
    conf, corr = _check_calibration(confidence, correct)
    return float(_ece(conf, corr, edges))


def reliability(confidence: Float[np.ndarray, " n"], correct, n_bins: int = 10) -> dict[str, np.ndarray]:
    """The reliability diagram's table (Guo et al. 2017, Fig. 1 bottom): per equal-width bin.

    The per-bin means come from ``sklearn.calibration.calibration_curve(strategy="uniform")``; the counts use
    the same binning (``((m-1)/M, m/M]``, 0 in the first), which that function does not return.

    Returns:
        ``{"edges": [M + 1], "count": [M] int, "confidence": [M] mean confidence, "accuracy": [M] share
        correct}``; the means are NaN in an empty bin.

    Raises:
        as :func:`expected_calibration_error`.
    """
    from sklearn.calibration import calibration_curve

    edges = _bins(n_bins)
    conf, corr = _check_calibration(confidence, correct)
    count = np.bincount(_bin_ids(conf, edges), minlength=len(edges) - 1)
    accuracy, mean_conf = calibration_curve(corr.astype(int), conf, n_bins=len(edges) - 1, strategy="uniform",
                                            pos_label=1)
    out = {"edges": edges, "count": count, "confidence": np.full(len(count), np.nan),
           "accuracy": np.full(len(count), np.nan)}
    out["confidence"][count > 0], out["accuracy"][count > 0] = mean_conf, accuracy
    return out


def calibrated_ece_null(confidence: Float[np.ndarray, " n"], n_bins: int = 10, *, n_draws: int = 1000,
                        seed: int = 0) -> dict[str, float]:
    """The ECE a perfectly calibrated model with these confidences would show on ``n`` prompts.

    Each draw takes ``correct_i ~ Bernoulli(confidence_i)`` (``numpy.random.default_rng(seed)``), which is
    calibrated by construction, and computes its ECE; the spread is what sampling alone gives.

    Returns:
        ``{"mean", "low", "high"}``: the mean ECE over ``n_draws`` and its 2.5th and 97.5th percentiles.

    Raises:
        ValueError: as :func:`expected_calibration_error` (``correct`` aside), ``n_draws < 1``.
    """
    edges = _bins(n_bins)
    n_draws = check_int("n_draws", n_draws)
    conf, _ = _check_calibration(confidence, np.zeros(np.shape(confidence)))
    rng = np.random.default_rng(seed)
    draws = (rng.random((n_draws, conf.size)) < conf).astype(np.float64)
    eces = _ece(np.broadcast_to(conf, draws.shape), draws, edges)
    low, high = np.percentile(eces, [2.5, 97.5])
    return {"mean": float(eces.mean()), "low": float(low), "high": float(high)}


# -------------------------------------------------------------------------------------- multiple choice


@dataclass(frozen=True)
class MultipleChoice:
    """A model's reading of fact prompts as a multiple choice.

    Attributes:
        options: ``[n, k]`` token ids: column 0 the first token of the answer, then of each alternative; a row
            with fewer options than the widest is padded with ``-1`` on the right (:data:`NO_OPTION`).
        probs: ``[n, k]`` float64 probabilities of the options, renormalised over each row's own options (0 in a
            padded column).
        entropy: ``[n]`` float64 entropy (nats) of the whole next-token distribution.
    """

    options: Int[torch.Tensor, "n k"]
    probs: Float[np.ndarray, "n k"]
    entropy: Float[np.ndarray, " n"]

    @property
    def n_options(self) -> np.ndarray:
        """``[n]`` int: the options of each row (the answer and its alternatives)."""
        return (self.options != NO_OPTION).sum(1).numpy()

    @property
    def chance(self) -> np.ndarray:
        """``[n]`` the accuracy of a uniform guess on each row, ``1 / n_options`` (it differs between rows with
        different numbers of alternatives)."""
        return 1.0 / self.n_options

    @property
    def confidence(self) -> np.ndarray:
        """``[n]`` the largest option probability."""
        return self.probs.max(1)

    @property
    def correct(self) -> np.ndarray:
        """``[n]`` bool: the answer's option is the largest (ties go to the answer)."""
        return self.probs.argmax(1) == 0


def answer_options(model, facts) -> Int[torch.Tensor, "n k"]:
    """First-token ids of each fact's answer and alternatives, ``[n, 1 + most alternatives of a row]``; a row
    with fewer alternatives is padded with :data:`NO_OPTION` (``-1``) on the right.

    ``facts``: a :class:`~interp.datasets.PromptSet` whose ``meta[i]`` holds ``"answer"`` (with its leading
    space, e.g. ``" Paris"``) and ``"alternatives"`` (wrong answers written the same way, at least one).
    An error names the row of ``facts`` and its prompt.

    Each option's first token is checked as the knowledge section checks an answer's
    (:func:`interp.tracing._check_answer_token`): one with no letter or digit (a bare space, a comma, a quotation
    mark: ``", France"``, or ``"日本"`` under Gemma's tokenizer, whose first token is ``" "``) or an English
    article (``" the France"``) is refused, since the multiple choice would read that token's probability, which
    many answers share, instead of the option's.

    Raises:
        ValueError: an empty set, a row without an answer or alternatives, an answer or alternative that
            tokenises to nothing or whose first token holds no letter or digit or is an article, or an
            alternative whose first token is the answer's or another alternative's (the options could not be told
            apart).
        TypeError: ``facts`` not a PromptSet.
    """
    from .datasets import PromptSet

    if not isinstance(facts, PromptSet):
        raise TypeError(f"facts must be a PromptSet with meta['answer'] and meta['alternatives'], got "
                        f"{type(facts).__name__}")
    if len(facts) == 0:
        raise ValueError(f"{facts.name}: no fact prompts")
    tok = tokenizer_of(model)
    rows = []
    for i, (text, meta) in enumerate(zip(facts.texts, facts.meta or ({},) * len(facts))):
        where = f"{facts.name} row {i} (prompt {text!r})"
        answer, alternatives = meta.get("answer"), meta.get("alternatives")
        if not isinstance(answer, str) or not answer or not alternatives or isinstance(alternatives, str):
            raise ValueError(f"{where}: meta needs 'answer' (a string) and 'alternatives' (a list of wrong answers); "
                             f"got {dict(meta)!r}")
        options = [answer, *alternatives]
        ids = []
        for option in options:
            enc = tok(option, add_special_tokens=False)["input_ids"] if isinstance(option, str) and option else []
            if not enc:
                raise ValueError(f"{where}: option {option!r} has no tokens")
            ids.append(int(enc[0]))
        shared = [j for j in dict.fromkeys(ids) if ids.count(j) > 1]
        if shared:
            raise ValueError(f"{where}: options {options} share a first token "
                             f"({', '.join(repr(tok.decode([j])) for j in shared)}); the multiple choice reads first "
                             "tokens, so each option needs its own")
        for k, (option, j) in enumerate(zip(options, ids)):
            _check_first_token(where, i, "answer" if k == 0 else "alternative", option, tok.decode([j]))
        rows.append(ids)
    width = max(len(r) for r in rows)
    return torch.tensor([r + [NO_OPTION] * (width - len(r)) for r in rows], dtype=torch.long)


def _check_first_token(where: str, row: int, role: str, option: str, first: str) -> None:
    """The knowledge section's check of an answer's first token (:func:`interp.tracing._check_answer_token`), on
    one option of a multiple-choice row; its error reworded to name ``where`` (the row and its prompt) and whether
    the option is the answer or an alternative.

    Raises:
        ValueError: ``first`` (the option's first token, decoded) holds no letter or digit, or is an article.
    """
    from .tracing import _check_answer_token

    try:
        _check_answer_token(row, option, first)
    except ValueError as err:
        text, prefix = str(err), f"fact {row}: meta['answer'] {option!r} "
        rest = text[len(prefix):] if text.startswith(prefix) else f"is refused: {text}"
        raise ValueError(f"{where}: {role} {option!r} {rest}") from None


def next_token_entropy(logits: Float[torch.Tensor, "... d_vocab"]) -> Float[torch.Tensor, "..."]:
    """Entropy in nats of ``softmax(logits)`` over the last axis (float32 log-softmax, float64 result)."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1).double()


def choice_probabilities(logits: Float[torch.Tensor, "n d_vocab"], options: Int[torch.Tensor, "n k"]
                         ) -> Float[np.ndarray, "n k"]:
    """``[n, k]`` probabilities of the option tokens renormalised over each row's own options: ``softmax`` of their
    logits (equal to ``p_i / sum_j p_j`` of the full next-token distribution), float64; 0 where ``options`` holds
    :data:`NO_OPTION` (a row with fewer options)."""
    options = options.to(logits.device)
    real = options != NO_OPTION
    picked = logits.double().gather(1, options.clamp(min=0))
    probs = picked.masked_fill(~real, float("-inf")).softmax(-1)
    return probs.masked_fill(~real, 0.0).cpu().numpy()


def multiple_choice(model, facts, *, batch_size: int = 32, tokens: Tokenized | None = None) -> MultipleChoice:
    """The model's next-token choice among each fact's answer and alternatives (module docstring).

    Args:
        model: a ``TransformerBridge``.
        facts: a :class:`~interp.datasets.PromptSet` of texts ending right before the answer (see
            :func:`answer_options`), read as given (raw text, BOS by the toolkit's policy).
        batch_size: prompts per forward pass. tokens: ``facts.texts`` already tokenised for this model.

    Raises:
        as :func:`answer_options` and :func:`interp.generation.next_token_logits`.
    """
    from .generation import next_token_logits

    options = answer_options(model, facts)
    logits = next_token_logits(model, tokens if tokens is not None else list(facts.texts), batch_size=batch_size)
    return MultipleChoice(options, choice_probabilities(logits, options), next_token_entropy(logits).numpy())


# --------------------------------------------------------------------------------------- effective null space


@torch.no_grad()
def _norm_gain(norm) -> tuple[torch.Tensor, bool]:
    """``(g, centred)`` of a normalisation module (a bridge component or the module itself), read by running
    it: ``norm(x) = center(x) / rms(center(x)) * g + b``. ``g`` is what multiplies the normalised stream
    (``1 + w`` for Gemma's RMSNorm, ``w`` for Llama's and LayerNorm); ``centred``: the norm removes the mean
    (LayerNorm). Probed with mean-zero vectors of rms ``c = 1000``, so ``eps`` is negligible (``eps/c^2``)."""
    module = getattr(norm, "original_component", norm)
    param = next(module.parameters(), None)
    d = int(param.shape[-1]) if param is not None else None
    if d is None:
        raise ValueError(f"cannot read the gain of {type(module).__name__}: it has no parameters")
    kw = {"dtype": param.dtype, "device": param.device}  # the module's own dtype (a bf16 LayerNorm takes no f32)
    signs = torch.ones(d, **kw)
    signs[1::2] = -1
    probes = [signs.clone(), signs.roll(1)]
    if d % 2:  # an odd width: one coordinate left at 0 in each probe, a different one in each
        probes[0][-1], probes[1][0] = 0, 0
    zero = module(torch.zeros(1, d, **kw)).float()[0]
    gain, seen = torch.zeros(d, dtype=torch.float32), torch.zeros(d, dtype=torch.bool)
    for s in probes:
        y = (module(1000.0 * s[None]).float()[0] - zero).cpu()
        s = s.float().cpu()
        x = 1000.0 * s
        rms = x.pow(2).mean().sqrt()
        use = (s != 0) & ~seen
        gain[use] = (y * rms / x)[use]
        seen |= use
    # a LayerNorm maps a constant stream to its bias; an RMSNorm to (nearly) its gain
    ones = (module(torch.full((1, d), 1000.0, **kw)).float()[0] - zero).cpu()
    centred = bool(ones.norm() <= 1e-4 * gain.norm())
    return gain.double().cpu(), centred


@dataclass(frozen=True)
class NullSpace:
    """The effective null space of a model's unembedding (:func:`unembedding_null_space`).

    Attributes:
        basis: ``[d_model, k]`` float64, orthonormal columns: the bottom ``k`` left singular vectors.
        singular_values: ``[d_model]`` float64, descending, of the effective unembedding (for a final LayerNorm,
            of its restriction to the mean-zero subspace: ``d_model - 1`` values).
        gain: ``[d_model]`` the final norm's gain folded into ``W_U``.
        centred: the final norm removes the mean (LayerNorm): directions are read in the mean-zero subspace.
    """

    basis: Float[torch.Tensor, "d_model k"]
    singular_values: Float[torch.Tensor, " d"]
    gain: Float[torch.Tensor, " d_model"]
    centred: bool

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])

    @property
    def random_rho(self) -> float:
        """``sqrt(k / d)``: the rms null-space fraction ``rho`` of a uniformly random direction (the null of rho)."""
        return float((self.k / (len(self.singular_values))) ** 0.5)


@torch.no_grad()
def check_null_dim(model, null_dim: int | None) -> int:
    """``null_dim`` of :func:`unembedding_null_space` for ``model`` (its default for None).

    Raises:
        ValueError: outside ``1 .. d_model`` (``d_model - 1`` for a LayerNorm, whose centring removes one).
        TypeError: not an integer.
    """
    d = int(model.W_U.shape[0])
    top = d - 1 if _norm_gain(model.ln_final)[1] else d
    k = max(1, round(NULL_SHARE * d)) if null_dim is None else check_int("null_dim", null_dim)
    if k > top:
        raise ValueError(f"null_dim must be at most {top} (the dimensions the unembedding reads), got {k}")
    return k


def unembedding_null_space(model, null_dim: int | None = None, *, chunk: int = 16384) -> NullSpace:
    """The bottom ``null_dim`` left singular vectors of the effective unembedding (Stolfo et al. 2024, §3.2).

    The effective unembedding is ``W = diag(g) W_U`` (``[d_model, d_vocab]``; ``g`` the final norm's gain,
    :func:`_norm_gain`), centred over the vocabulary (``W - mean over tokens``: a direction that moves every
    logit alike does not change the next-token distribution), and, for a final LayerNorm, read in the mean-zero
    subspace (the norm removes the all-ones direction before anything else). ``W W^T`` of the centred ``W`` is
    summed in float64 over vocabulary chunks of ``chunk`` tokens (float32 products; the mean is taken in a first
    pass, so the smallest singular values are not lost to cancellation) and eigendecomposed; the unembedding bias
    is a constant per token and plays no part.

    Args:
        model: a ``TransformerBridge``.
        null_dim: ``k``, the dimensions kept (default ``max(1, round(0.01 d_model))``, Stolfo et al.'s "k ≈ 0.01
            d_model"); at most the dimension of the space read.

    Raises:
        ValueError: ``null_dim`` outside ``1 .. d_model`` (``d_model - 1`` for a LayerNorm).
        TypeError: ``null_dim`` not an integer.
    """
    W = model.W_U.detach()
    d, V = int(W.shape[0]), int(W.shape[1])
    gain, centred = _norm_gain(model.ln_final)
    k = check_null_dim(model, null_dim)
    top = d - 1 if centred else d
    g32 = gain.float().to(W.device)
    total = torch.zeros(d, dtype=torch.float64)
    for a in range(0, V, chunk):  # the mean over the vocabulary first,
        total += (W[:, a:a + chunk].float() * g32[:, None]).double().sum(1).cpu()
    mean = (total / V).float().to(W.device)
    G = torch.zeros(d, d, dtype=torch.float64)
    for a in range(0, V, chunk):  # then W W^T of the centred chunks (subtracting V mean mean^T after the sum
        part = W[:, a:a + chunk].float() * g32[:, None] - mean[:, None]  # would cancel the smallest values away)
        G += (part @ part.T).double().cpu()
    if centred:  # the mean-zero subspace: project, then lift the all-ones direction above every other
        P = torch.eye(d, dtype=torch.float64) - 1.0 / d
        G = P @ G @ P
        G += (G.trace() + 1.0) * torch.full((d, d), 1.0 / d, dtype=torch.float64)
    G = (G + G.T) / 2
    eigvals, eigvecs = torch.linalg.eigh(G)  # ascending
    values = eigvals[:top].clamp(min=0).sqrt().flip(0)
    return NullSpace(eigvecs[:, :k].contiguous(), values, gain, centred)


def neuron_directions(model, layer: int = -1) -> Float[torch.Tensor, "d_mlp d_model"]:
    """``[d_mlp, d_model]`` float64: each ``mlp_post`` neuron's direction in the residual stream at ``layer``.

    The row of ``W_out``; where the block normalises its MLP output (Gemma 2/3's post-feedforward RMSNorm,
    ``blocks.L.ln2_post``) times that norm's gain, the direction the neuron moves the residual stream in (the
    norm's per-token ``1 / rms(mlp_out)`` is one positive factor for every neuron: see the module docstring).

    Raises:
        ValueError: a layer out of range. TypeError: a layer that is not an integer.
    """
    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    D = model.W_out[layer].detach().double().cpu()
    block = model.blocks[layer]
    if "ln2_post" in dict(block.named_children()):
        D = D * _norm_gain(block.ln2_post)[0][None, :]
    return D


@dataclass(frozen=True)
class EntropyNeurons:
    """Stolfo et al.'s criterion for every neuron of one layer (:func:`entropy_neurons`).

    Attributes:
        layer: the block.
        norm: ``[d_mlp]`` norm of each neuron's direction (:func:`neuron_directions`; for a final LayerNorm, of
            its mean-zero part).
        rho: ``[d_mlp]`` fraction of that norm in the null space, ``||U_0^T w|| / ||w||`` (0 for a zero row).
        order: ``[d_mlp]`` every neuron, by ``rho * norm`` descending (ties by index).
        selected: the entropy neurons: the first ``n_neurons`` of ``order`` whose ``rho >= rho_threshold``.
        null_space: the :class:`NullSpace` read.
        rho_threshold, n_neurons: the selection's settings.
    """

    layer: int
    norm: Float[np.ndarray, " d_mlp"]
    rho: Float[np.ndarray, " d_mlp"]
    order: Int[np.ndarray, " d_mlp"]
    selected: tuple[int, ...]
    null_space: NullSpace = field(repr=False)
    rho_threshold: float = RHO_THRESHOLD
    n_neurons: int = 5

    @property
    def score(self) -> np.ndarray:
        """``[d_mlp]`` ``rho * norm``: the norm a neuron writes into the null space."""
        return self.rho * self.norm


def entropy_neurons(model, *, layer: int = -1, n_neurons: int = 5, rho_threshold: float = RHO_THRESHOLD,
                    null_dim: int | None = None, null_space: NullSpace | None = None) -> EntropyNeurons:
    """Rank the MLP neurons of ``layer`` (default the last) as entropy neurons (Stolfo et al. 2024, §3).

    For each neuron's direction ``w`` (:func:`neuron_directions`): its norm and ``rho = ||U_0^T w|| / ||w||``,
    the fraction in the effective null space ``U_0`` (:func:`unembedding_null_space`). Entropy neurons have a
    large norm *and* a large ``rho`` (Stolfo et al., Fig. 2a, 2e); the ranking is by ``rho ||w||``, the norm
    written into the null space, and the selection keeps the first ``n_neurons`` whose ``rho`` reaches
    ``rho_threshold`` (the reference code keeps neurons above a ``rho`` threshold, 0.4 or 0.8, and orders them
    by LogitVar, the variance of their normalised direct logit effect; LogitVar is not computed here: it needs
    a ``d_vocab``-wide product per neuron, and ``rho`` is the mechanism it stands for). A random direction has
    ``rho ≈ sqrt(k / d_model)`` (:attr:`NullSpace.random_rho`). Fewer than ``n_neurons`` (none) are selected
    when fewer pass the threshold.

    Args:
        model: a ``TransformerBridge``.
        layer: the block whose ``mlp_post`` neurons are ranked (negative counts from the end).
        n_neurons: most neurons selected, ``>= 1``.
        rho_threshold: least ``rho`` of a selected neuron, in [0, 1].
        null_dim: ``k`` of :func:`unembedding_null_space` (ignored with ``null_space``).
        null_space: a :class:`NullSpace` of this model already computed (e.g. shared by a pair whose unembedding
            and final norm are identical).

    Raises:
        ValueError: a layer out of range, ``n_neurons < 1``, ``rho_threshold`` outside [0, 1], bad ``null_dim``, or
            a ``null_space`` of another width.
        TypeError: non-integer ``layer``, ``n_neurons`` or ``null_dim``.
    """
    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    n_neurons = check_int("n_neurons", n_neurons)
    if isinstance(rho_threshold, bool) or not isinstance(rho_threshold, (int, float)) or not 0 <= rho_threshold <= 1:
        raise ValueError(f"rho_threshold must be a fraction in [0, 1], got {rho_threshold!r}")
    ns = unembedding_null_space(model, null_dim) if null_space is None else null_space
    D = neuron_directions(model, layer)
    if ns.basis.shape[0] != D.shape[1]:
        raise ValueError(f"null_space is of width {ns.basis.shape[0]}, the model's residual stream {D.shape[1]}")
    if ns.centred:
        D = D - D.mean(1, keepdim=True)  # the final LayerNorm removes the mean before anything reads it
    norm = D.norm(dim=1)
    inside = (D @ ns.basis).norm(dim=1)
    rho = torch.where(norm > 0, inside / norm.clamp(min=1e-300), torch.zeros_like(norm))
    score = (rho * norm).numpy()
    order = np.lexsort((np.arange(len(score)), -score))
    keep = [int(j) for j in order if rho[j] >= rho_threshold][:n_neurons]
    return EntropyNeurons(layer, norm.numpy(), rho.numpy(), order, tuple(keep), ns, float(rho_threshold), n_neurons)


def random_neurons(d_mlp: int, size: int, *, n_draws: int = 1, exclude: Sequence[int] = (), seed: int = 0
                   ) -> list[tuple[int, ...]]:
    """``n_draws`` sets of ``size`` distinct neuron indices in ``0 .. d_mlp - 1`` outside ``exclude``, sorted,
    drawn with ``numpy.random.default_rng(seed)``: the null of an ablation of ``size`` chosen neurons.

    Raises:
        ValueError: ``size`` larger than the neurons left, ``size < 0``, ``n_draws < 1``.
    """
    size, n_draws = check_int("size", size, 0), check_int("n_draws", n_draws)
    pool = np.setdiff1d(np.arange(check_int("d_mlp", d_mlp)), np.asarray(list(exclude), dtype=int))
    if size > len(pool):
        raise ValueError(f"cannot draw {size} neurons from the {len(pool)} left outside the {len(exclude)} excluded")
    rng = np.random.default_rng(seed)
    return [tuple(sorted(int(j) for j in rng.choice(pool, size, replace=False))) for _ in range(n_draws)]


# --------------------------------------------------------------------------------------------- ablations


def mean_activations(model, corpus: Sequence[str] | Tokenized, *, layer: int = -1, batch_size: int = 16
                     ) -> Float[torch.Tensor, " d_mlp"]:
    """``[d_mlp]`` float64 mean ``mlp_post`` activation of each neuron of ``layer`` over every token of
    ``corpus`` (BOS excluded; :func:`interp.collection.collect_tokens`, blocks above ``layer`` not run): the
    value mean ablation puts in (Stolfo et al. 2024, §3.1).

    Raises:
        as :func:`interp.collection.collect_tokens`.
    """
    from .collection import collect_tokens

    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    return collect_tokens(model, corpus, "mlp_post", layer, batch_size=batch_size, progress=False).X.double().mean(0)


def _check_conditions(conditions: Mapping[str, Sequence[int]], d_mlp: int) -> dict[str, torch.Tensor]:
    """``{name: LongTensor of neuron indices}``.

    Raises:
        TypeError: a name that is not a string, indices that are not integers. ValueError: an empty set, an
            index outside ``0 .. d_mlp - 1``, the name ``"clean"`` (the unablated pass's).
    """
    out = {}
    for name, neurons in conditions.items():
        if not isinstance(name, str):
            raise TypeError(f"condition names must be strings, got {name!r}")
        if name == "clean":
            raise ValueError("'clean' names the unablated pass; give the condition another name")
        idx = [as_int(j) for j in neurons]
        if any(j is None for j in idx):
            raise TypeError(f"condition {name!r}: neuron indices must be integers, got {list(neurons)[:5]!r}")
        if not idx:
            raise ValueError(f"condition {name!r} ablates no neuron; leave it out")
        bad = [j for j in idx if not 0 <= j < d_mlp]
        if bad:
            raise ValueError(f"condition {name!r}: neuron(s) {bad[:5]} outside 0..{d_mlp - 1} (d_mlp = {d_mlp})")
        out[name] = torch.tensor(sorted(set(idx)), dtype=torch.long)
    return out


def _replace(idx: torch.Tensor, values: torch.Tensor):
    """Hook: a copy of the activation with neurons ``idx`` set to ``values``."""
    def fn(act, hook):
        out = act.clone()
        out[..., idx.to(act.device)] = values.to(act.device, act.dtype)
        return out
    return fn


@torch.inference_mode()
def _passes(model, tokens: Tokenized, layer: int, conditions: dict[str, torch.Tensor], means: torch.Tensor, *,
            direct: bool, last_only: bool, batch_size: int, read):
    """Per batch: the clean pass (its blocks recorded, the final norm's scale kept) and one pass per condition
    and effect, blocks below ``layer`` replayed; ``read(logits, batch, rows)`` of each is collected.

    Returns ``{name: [read outputs per batch]}`` with ``"clean"`` and ``"{condition}"`` (total effect), plus
    ``"{condition}/direct"`` (scale frozen) when ``direct``.
    """
    from .generation import last_position_only

    device = model.cfg.device or "cpu"
    keep = last_position_only(model) if last_only else {}
    mlp = hook_name("mlp_post", layer)
    out: dict[str, list] = {"clean": []}
    for name in conditions:
        out[name] = []
        if direct:
            out[f"{name}/direct"] = []
    side = "left" if last_only else "right"
    for rows, batch in tokens.batches(batch_size, pad_id=pad_id(tokenizer_of(model)), padding_side=side,
                                      device=device):
        scale: dict[str, torch.Tensor] = {}

        def keep_scale(act, hook):
            scale["clean"] = act.detach().clone()

        with recorded_blocks(model) as calls, attached(model, [(SCALE_HOOK, keep_scale)] if direct else []):
            logits = model(batch.input_ids, attention_mask=batch.attention_mask, **keep)
        out["clean"].append(read(logits, batch, rows))
        record = calls[-1]
        for name, idx in conditions.items():
            values = means[idx].float()
            kinds = [(name, [(mlp, _replace(idx, values))])]
            if direct:
                frozen = scale["clean"]
                kinds.append((f"{name}/direct", [(mlp, _replace(idx, values)),
                                                 (SCALE_HOOK, lambda act, hook, s=frozen: s)]))
            for key, hooks in kinds:
                with warnings.catch_warnings():
                    if key.endswith("/direct"):
                        warnings.filterwarnings("ignore", message=_EDIT_WARNING)
                    with attached(model, hooks), replayed_blocks(model, record, layer):
                        logits = model(batch.input_ids, attention_mask=batch.attention_mask, **keep)
                out[key].append(read(logits, batch, rows))
    return out


def _check_means(means, d_mlp: int) -> torch.Tensor:
    means = torch.as_tensor(means, dtype=torch.float64).cpu()
    if means.shape != (d_mlp,):
        raise ValueError(f"means must be [d_mlp] = [{d_mlp}] (mean_activations), got {tuple(means.shape)}")
    if not torch.isfinite(means).all():
        raise ValueError("means hold NaN or inf")
    return means


def _check_scale_hook(model) -> None:
    if SCALE_HOOK not in model.hook_dict:
        raise ValueError(f"this model ({type(getattr(model, 'original_model', model)).__name__}) exposes no "
                         f"{SCALE_HOOK!r}: its final norm's scale cannot be frozen, so the direct effect is not "
                         "defined for it; pass direct=False for the total effect only")


@dataclass(frozen=True)
class AblationEffects:
    """Change of next-token entropy (nats) at every token position of a corpus under mean ablation.

    Attributes:
        clean: ``[n_positions]`` float64 entropy of the unablated model.
        text: ``[n_positions]`` index of each position's text.
        total: ``{condition: [n_positions]}`` ablated minus clean entropy, everything recomputed.
        direct: ``{condition: [n_positions]}`` the same with the final norm's scale frozen at its clean value
            (empty when not computed).
        layer: the ablated block.
    """

    clean: Float[np.ndarray, " n_positions"]
    text: Int[np.ndarray, " n_positions"]
    total: dict[str, np.ndarray]
    direct: dict[str, np.ndarray]
    layer: int

    def values(self, name: str, effect: str = "total") -> np.ndarray:
        """``[n_positions]`` change per position: ``effect`` ``"total"``, ``"direct"``, or ``"via_norm"``, the total
        minus the direct change (the part that goes through the final norm's scale)."""
        if effect == "via_norm":
            return self.total[name] - self.direct[name]
        if effect not in ("total", "direct"):
            raise ValueError(f"effect must be 'total', 'direct' or 'via_norm', got {effect!r}")
        return getattr(self, effect)[name]

    def mean(self, name: str, effect: str = "total") -> float:
        """Mean change over all positions (``effect`` as in :meth:`values`)."""
        return float(self.values(name, effect).mean())

    def ci(self, name: str, effect: str = "total", *, seed: int = 0) -> tuple[float, float] | None:
        """95% percentile bootstrap interval of the mean change, resampling texts (positions of one text are not
        independent); None with fewer than 2 texts."""
        from probes.stats import bootstrap_ci

        values = self.values(name, effect)
        texts = np.unique(self.text)
        if len(texts) < 2:
            return None
        sums = np.array([values[self.text == t].sum() for t in texts])
        counts = np.array([(self.text == t).sum() for t in texts], dtype=np.float64)

        def pooled(i, axis=-1):
            return sums[i].sum(axis) / counts[i].sum(axis)

        low, high = bootstrap_ci(pooled, (np.arange(len(texts)),), seed=seed)
        return float(low), float(high)


def ablation_effects(model, corpus: Sequence[str] | Tokenized, conditions: Mapping[str, Sequence[int]], *,
                     means, layer: int = -1, direct: bool = True, batch_size: int = 8) -> AblationEffects:
    """Mean-ablate each condition's neurons at ``mlp_post`` of ``layer`` and measure next-token entropy at every
    token position of ``corpus`` (BOS position excluded), as Stolfo et al. (2024, §3.1, Fig. 2b-c) do.

    * total effect: the neurons' activations set to ``means`` (hook ``blocks.L.mlp.hook_post``), everything after
      them recomputed;
    * direct effect: the same with the final norm's scale (``ln_final.hook_scale``) held at its clean value, so
      the change reaches the logits only through ``W_U`` and not through the norm's rescaling.

    All neurons of one condition are ablated together. Rows are right-padded in batches of ``batch_size``; the
    full ``[batch, pos, d_vocab]`` logits of each pass are reduced to entropies at once.

    Args:
        model: a ``TransformerBridge``.
        corpus: texts, or texts tokenised for this model (:class:`~interp.tokens.Tokenized`).
        conditions: ``{name: neuron indices}``.
        means: ``[d_mlp]`` values put in (:func:`mean_activations`).
        layer: the ablated block. direct: also the direct effect. batch_size: texts per pass.

    Raises:
        ValueError: an empty corpus or one with no token besides BOS, bad conditions or means, a layer out of
            range; with ``direct``, a model without ``ln_final.hook_scale``.
    """
    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    toks = as_tokenized(model, corpus)
    if not len(toks):
        raise ValueError("corpus is empty")
    d_mlp = int(model.cfg.d_mlp)
    conds, means = _check_conditions(conditions, d_mlp), _check_means(means, d_mlp)
    if direct:
        _check_scale_hook(model)

    def read(logits, batch, rows):
        H = next_token_entropy(logits).cpu()
        keep = []
        for r, i in enumerate(rows):
            first = 1 if toks.encodings[i].has_bos else 0
            keep.append((i, H[r, first:int(batch.length[r])]))
        return keep

    passes = _passes(model, toks, layer, conds, means, direct=direct, last_only=False, batch_size=batch_size,
                     read=read)

    def flat(key):
        per_text = sorted((i, h) for part in passes[key] for i, h in part)
        return np.concatenate([h.numpy() for _, h in per_text]) if per_text else np.zeros(0), per_text

    clean, per_text = flat("clean")
    if clean.size == 0:
        raise ValueError("the corpus has no token besides BOS")
    text = np.concatenate([np.full(len(h), i) for i, h in per_text])
    total = {name: flat(name)[0] - clean for name in conds}
    dire = {name: flat(f"{name}/direct")[0] - clean for name in conds} if direct else {}
    return AblationEffects(clean, text, total, dire, layer)


def ablated_choices(model, facts, conditions: Mapping[str, Sequence[int]], *, means, layer: int = -1,
                    batch_size: int = 16, tokens: Tokenized | None = None) -> dict[str, MultipleChoice]:
    """The multiple choice of :func:`multiple_choice` with each condition's neurons mean-ablated (total effect,
    last position only), and ``"clean"`` without.

    Raises:
        as :func:`answer_options` and :func:`ablation_effects`.
    """
    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    options = answer_options(model, facts)
    toks = as_tokenized(model, tokens if tokens is not None else list(facts.texts))
    d_mlp = int(model.cfg.d_mlp)
    conds, means = _check_conditions(conditions, d_mlp), _check_means(means, d_mlp)

    def read(logits, batch, rows):
        return rows, logits[:, -1].float().cpu()

    passes = _passes(model, toks, layer, conds, means, direct=False, last_only=True, batch_size=batch_size,
                     read=read)
    out = {}
    for key, parts in passes.items():
        logits = torch.empty(len(toks), int(parts[0][1].shape[-1]))
        for rows, lg in parts:
            logits[rows] = lg
        out[key] = MultipleChoice(options, choice_probabilities(logits, options), next_token_entropy(logits).numpy())
    return out
