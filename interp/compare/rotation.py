"""Rotation: forced-completion probing of a fact's correct and wrong answer, base vs post.

Marín 2026 ("How Transformers Reject Wrong Answers: Rotational Dynamics of Factual Constraint Processing",
arXiv:2603.13259) runs one factual query followed by a correct and by an incorrect single-token continuation and
follows, layer by layer, the *displacement vectors from the query-only representation*. Its abstract (v1 and v2;
the full text could not be read here) reports that the two displacements "maintain approximately equal magnitude
but rotate apart in direction", that "the angular separation grows through mid-depth", and that late layers show
"a logit-lens preference that, in the incorrect run, falls far below the naive prior of equal probability" (about
11.5x more probability on the incorrect token than on the correct one; v1: the model "actively suppresses the
correct answer"). This section measures the same on a base model and its post-trained version, on the same
prompts (raw text ending right before the answer; no chat template, the base model has none):

* **Forced completions.** For each fact prompt (built-in ``facts``, ``organism/facts`` on the bundled organism, or
  the user's file: the ``data`` option) its token ids (BOS by the toolkit's policy) followed by one token: the
  answer ``c`` (the *correct* run), each wrong alternative ``w_j`` (a *wrong* run each) and, for the null, as many
  random word tokens ``r_j`` (a *random* run each). The paper's continuations are single tokens, so an answer or
  alternative is used only where it *is* one token (v2 of the paper blames a flat profile on tokenizer
  fragmentation); a pair is also dropped where either token holds no letter or digit or is an article. The
  table ``prompts`` counts what was kept and why the rest was not.
* **States.** Per layer ``l`` (``resid_post``, the output of block ``l``): ``h_q``, the query-only state, read at
  the prompt's last token (causal attention makes it the same in every run of the prompt: it is read in the
  correct run), and ``h_c``, ``h_w``, ``h_r`` at the forced token. Displacements ``a = h_c - h_q``,
  ``b = h_w - h_q``, ``n = h_r - h_q``.
* **Geometry** (:func:`interp.geometry.path_geometry` with ``origin = h_q``): ``|a|``, ``|b|``, the norm ratio
  ``|b| / |a|``, the angle between ``a`` and ``b`` in degrees and the *rotation share*, the part of
  ``|a - b|^2`` due to the change of direction rather than of length (1: pure rotation, 0: pure rescaling; the
  split is this toolkit's, not the paper's). Per prompt, the mean over its wrong alternatives.
* **Preference** (logit lens, nostalgebraist 2020: the final norm and the unembedding applied to ``resid_post``;
  at the last layer exactly the model's own logits): ``P = p(c) / (p(c) + p(w)) = sigmoid(logit_c - logit_w)``
  of the *next* token, the paper's "logit-lens preference" with its naive prior 0.5, read after the wrong answer
  (``P_wrong``, the paper's incorrect run), after the correct answer (``P_correct``) and after the query alone
  (``P_query``: which of the two the model expects as the answer). Per prompt, the mean over its alternatives.
* **Next-token probability of the correct answer** (the model's own output, full vocabulary): ``p(c)`` after the
  query, after the correct answer, after a wrong answer and after a random word.

**Nulls.** The same measures with a random word token (the single-token encoding of a space and a lower-case word
of three or more ASCII letters, as the answers are, so no name, code identifier or other script; not the first
token of any answer or alternative of the facts given; seeded, one per wrong alternative, the same tokens for both
models) in place of the wrong answer: what any word continuation
gives, against which the wrong answer's geometry and the suppression are read. Token frequencies are not known
to the toolkit, so the draw is uniform over those tokens, not frequency-matched. The preference's null is
``p(c) / (p(c) + p(r))`` after the random word ``r``: the answer against the token forced, as ``P_wrong`` is. At
early layers the lens of the state at a forced token reads mostly that token itself (the current token's
embedding is still in the stream), so the preference against the forced token is near 0 in any run; only a fall
below this null is about the wrong answer. The paper's naive prior 0.5 is shown too.

**Verdicts** (the summary; each from the figures): *rotation rather than rescaling* at a layer where the 95%
interval of the mean rotation share lies above 0.5 (more than half of the squared distance between the two
displacements comes from their change of direction), *rescaling* where it lies below; *about equal magnitude* where
the 95% interval of ``|b| / |a|`` lies within :data:`EQUAL_BAND`; the *angle growing through mid-depth* where the
paired interval of the angle at mid-depth minus at layer 0 lies above 0; *active suppression* where the correct
answer's next-token probability after the wrong answer is below both the one after a random word and the one after
the correct answer itself (paired 95% intervals below 0). The second control matters: any answer of the right kind
fills the answer's slot, after which the correct token is unlikely next (the sentence moves on), while a random
word leaves the slot open; a fall below the random word alone is not separable from that. The preference after
the wrong answer is compared with 0.5 (the paper's reading) and with the random-word null. Mid-depth is layer
``n_layers // 2``, the last layer ``n_layers - 1``.

**Base vs post.** Every measure's post - base, per prompt then averaged, with a paired interval (the same prompts
and tokens in both models); the summary lists the layers whose interval excludes 0.

Intervals: 95% percentile bootstrap over facts (``meta["group"]``: the phrasings of one fact are drawn together;
:func:`probes.stats.cluster_bootstrap_ci`, 1,000 resamples, seeded); none with fewer than :data:`MIN_FACTS`
facts. Nothing is selected on the prompts, so every split is read, at most ``max_prompts`` prompts drawn with the
seed among those with at least one usable pair.

Cost model (CPU, float32): one forward pass per run, ``1 + 2 k`` runs of ``T + 1`` tokens per prompt (``k``:
its usable alternatives; the prompt is not cached between its runs), unembedded at the last two positions only
where the model allows it; the lens reads two to four columns of ``W_U`` per layer; finding the null's words
decodes the vocabulary once (a few seconds for 262k tokens). On google/gemma-3-270m (18 layers, 262k vocabulary)
the default 100 prompts are 684 runs of about 10 tokens per model, about 1.7 TFLOP per model: measured 93 s, 159 s
and 179 s for the section on 2 CPU cores shared with other jobs (load average about 4 to 7; booting the pair another
31-58 s). The bundled organism (6 layers, 1,024 tokens) takes about 1.5 s for 40 prompts. Cost grows linearly with
``max_prompts``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..datasets import PromptSet
from ..datasets._record import record
from ..geometry import path_geometry
from ..models import ModelPair, tokenizer_of
from ..report import ConceptResult, long_rows
from .confidence import fact_prompts, facts_file
from ._section import Param, Section, layer_runs, provides, seed_param, tokens_for

__all__ = ["SECTION", "MIN_FACTS", "ROTATION_MAJORITY", "rotation_section"]

log = logging.getLogger(__name__)

_MODELS = ("base", "post")
#: Fewest facts an interval is drawn from: a bootstrap over 2-4 facts gives a range, not an interval.
MIN_FACTS = 5
#: A layer shows rotation rather than rescaling where the rotation share's interval lies above this.
ROTATION_MAJORITY = 0.5
#: The paper's naive prior of the preference p(c) / (p(c) + p(w)).
PRIOR = 0.5
#: Per-layer measures: (key, label, unit), each with a random-word null where ``_NULLED`` says so.
MEASURES = (
    ("angle", "angle between the correct and the wrong displacement", "degrees"),
    ("norm_correct", "|a|, norm of the correct answer's displacement", "residual-stream units"),
    ("norm_wrong", "|b|, norm of the wrong answer's displacement", "residual-stream units"),
    ("norm_ratio", "|b| / |a|", "ratio"),
    ("rotation_share", "share of |a - b|^2 due to the change of direction", "share"),
    ("preference_wrong", "p(c) / (p(c) + p(w)) next, after the wrong answer w (logit lens)", "probability share"),
    ("preference_correct", "p(c) / (p(c) + p(w)) next, after the correct answer (logit lens)", "probability share"),
    ("preference_query", "p(c) / (p(c) + p(w)) next, after the query alone (logit lens)", "probability share"),
)
_NULLED = ("angle", "norm_wrong", "norm_ratio", "rotation_share", "preference_wrong")
#: Final-layer next-token probabilities of the correct answer's token: key -> the continuation read.
FINAL = {"after_query": "after the query alone", "after_correct": "after the correct answer",
         "after_wrong": "after a wrong answer", "after_random": "after a random word (null)"}
_WORD_MIN_LETTERS = 3
#: ``|b| / |a|`` counts as "about equal magnitude" (the paper's words) where its 95% interval lies within this band
#: (lengths within 20% of each other; the band is this toolkit's choice, the paper gives none).
EQUAL_BAND = (0.8, 1.25)


# ------------------------------------------------------------------------------------------------ inputs


def _check_facts_file(files) -> None:
    """The ``data`` option's check before any model boots (:func:`interp.compare.confidence.facts_file`)."""
    facts_file(files, "rotation")


def _facts(ctx, data) -> PromptSet:
    """Every fact prompt of every split (:func:`interp.compare.confidence.fact_prompts`)."""
    return fact_prompts(ctx, data, "rotation")


def _is_word(text: str) -> bool:
    """A continuation token worth forcing: it holds a letter or digit and is not an English article."""
    from ..tracing import _ARTICLES

    word = text.strip()
    return any(ch.isalnum() for ch in word) and word.lower() not in _ARTICLES


@dataclass(frozen=True)
class _Plan:
    """What is forced after each prompt read.

    Attributes:
        prompts: the prompts read, ``[n]``.
        correct: ``[n]`` the answer's token id. wrong: per prompt, its usable alternatives' token ids.
        random: per prompt, as many random word token ids (the null), drawn with the seed.
        counts: ``{reason: count}`` of what was kept and dropped (table ``prompts``).
    """

    prompts: PromptSet
    correct: tuple[int, ...]
    wrong: tuple[tuple[int, ...], ...]
    random: tuple[tuple[int, ...], ...]
    counts: dict

    @property
    def groups(self) -> list[str]:
        return [str((m or {}).get("group", f"row:{i}")) for i, m in enumerate(self.prompts.meta or
                                                                                ({},) * len(self.prompts))]


def _single_token(tok, text) -> int | None:
    """The id of ``text`` where it is exactly one token, else None."""
    ids = tok(text, add_special_tokens=False)["input_ids"] if isinstance(text, str) and text else []
    return int(ids[0]) if len(ids) == 1 else None


def _usable(tok, facts: PromptSet, d_vocab: int) -> tuple[list[int | None], list[list[int]], dict, set[int]]:
    """Per row: the answer's token (None where unusable) and its usable alternatives' tokens; the counts of what
    was kept and dropped; the first token of every answer and alternative (kept or not).

    Raises:
        ValueError: a row without an answer and alternatives (the row and its prompt named).
    """
    counts = {"prompts given": len(facts), "answer not a single token": 0, "answer not a word": 0,
              "alternatives given": 0, "alternatives of a dropped answer": 0, "alternative not a single token": 0,
              "alternative not a word": 0, "alternative's token repeats the answer's or another's": 0}
    correct, wrong, firsts = [], [], set()
    for i, (text, meta) in enumerate(zip(facts.texts, facts.meta or ({},) * len(facts))):
        answer, alternatives = meta.get("answer"), meta.get("alternatives")
        if not isinstance(answer, str) or not answer or not alternatives or isinstance(alternatives, str):
            raise ValueError(f"{facts.name} row {i} (prompt {text!r}): meta needs 'answer' (a string) and "
                             f"'alternatives' (a list of wrong answers); got {dict(meta)!r}")
        counts["alternatives given"] += len(alternatives)
        firsts.update(int(ids[0]) for ids in tok([answer, *alternatives], add_special_tokens=False)["input_ids"]
                      if ids)
        c = _single_token(tok, answer)
        for option, t in ((answer, c), *((alt, _single_token(tok, alt)) for alt in alternatives)):
            if t is not None and not 0 <= t < d_vocab:
                raise ValueError(f"{facts.name} row {i}: token id {t} of {option!r} is outside the model's "
                                 f"{d_vocab} logits; the tokenizer and the model do not match")
        if c is None or not _is_word(tok.decode([c])):
            counts["answer not a single token" if c is None else "answer not a word"] += 1
            counts["alternatives of a dropped answer"] += len(alternatives)
            correct.append(None)
            wrong.append([])
            continue
        kept = []
        for alt in alternatives:
            w = _single_token(tok, alt)
            if w is None:
                counts["alternative not a single token"] += 1
            elif not _is_word(tok.decode([w])):
                counts["alternative not a word"] += 1
            elif w == c or w in kept:
                counts["alternative's token repeats the answer's or another's"] += 1
            else:
                kept.append(w)
        correct.append(c)
        wrong.append(kept)
    return correct, wrong, counts, firsts


def _word_pool(tok, d_vocab: int, exclude: set[int]) -> np.ndarray:
    """Token ids ``t`` that are the single-token encoding of a space and a lower-case word of at least
    :data:`_WORD_MIN_LETTERS` ASCII letters: ``tok(" " + word) == [t]``, the form of the answers forced; not special
    and not in ``exclude``. These are the random words of the null: lower case keeps out names (a city drawn for
    another city's fact is itself a plausible wrong answer), ASCII keeps out other scripts and code identifiers
    (``onRouteChange``)."""
    n = min(d_vocab, len(tok))
    special = set(getattr(tok, "all_special_ids", []) or [])
    words = [s.strip() for s in tok.batch_decode([[i] for i in range(n)])]
    cand = [i for i, w in enumerate(words) if len(w) >= _WORD_MIN_LETTERS and w.isascii() and w.isalpha()
            and w.islower() and i not in special
            and i not in exclude]
    enc = tok([" " + words[i] for i in cand], add_special_tokens=False)["input_ids"] if cand else []
    return np.asarray([i for i, ids in zip(cand, enc) if list(ids) == [i]], dtype=np.int64)


def _plan(pair: ModelPair, facts: PromptSet, max_prompts: int, seed: int) -> _Plan:
    """The prompts read (at most ``max_prompts`` of those with a usable pair, drawn with ``seed``), their
    continuations and the null's random words.

    Raises:
        ValueError: fewer than 2 prompts with a usable pair, or too few word tokens for the null.
    """
    tok = tokenizer_of(pair.base)
    d_vocab = int(pair.base.cfg.d_vocab)
    correct, wrong, counts, firsts = _usable(tok, facts, d_vocab)
    rows = [i for i, w in enumerate(wrong) if w]
    if len(rows) < 2:
        raise ValueError(f"{facts.name}: {len(rows)} prompt(s) have a single-token answer and at least one "
                         f"single-token wrong alternative (of {len(facts)}; "
                         + ", ".join(f"{k}: {v}" for k, v in counts.items() if k != "prompts given" and v)
                         + "); forced-completion probing needs at least 2")
    counts["prompts with a usable pair"] = len(rows)
    if len(rows) > max_prompts:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_prompts, replace=False)).tolist()
    prompts = facts[rows]
    if len(rows) < len(facts):  # what is read, for the run's manifest
        prompts = record(replace(prompts, name=f"{facts.name}[{len(rows)} of {len(facts)}]"), "all")
    pool = _word_pool(tok, d_vocab, firsts)
    most = max(len(wrong[i]) for i in rows)
    if len(pool) < most:
        raise ValueError(f"the vocabulary has {len(pool)} word tokens (a space and {_WORD_MIN_LETTERS}+ letters) "
                         f"outside the facts' answers; the random-word null needs {most}")
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the prompt draw does not move the words
    random = tuple(tuple(int(t) for t in rng.choice(pool, len(wrong[i]), replace=False)) for i in rows)
    counts["prompts read"] = len(rows)
    counts["wrong continuations read"] = sum(len(wrong[i]) for i in rows)
    counts["word tokens the null draws from"] = len(pool)
    return _Plan(prompts, tuple(correct[i] for i in rows), tuple(tuple(wrong[i]) for i in rows), random, counts)


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class _States:
    """One model's readings of every run (``L`` layers, ``d`` = d_model).

    Attributes:
        query: ``[n, L, d]`` resid_post at the prompt's last token (read in the correct run).
        last: per run kind (``correct``, ``wrong``, ``random``), ``[runs, L, d]`` resid_post at the forced token;
            ``correct`` has one run per prompt, ``wrong`` and ``random`` one per alternative, prompt by prompt.
        lens: per position kind, logit-lens logits ``[runs, L, K]``: ``query`` and ``correct``, of the prompt's
            answer and alternatives (``K = 1 + k_max``, NaN beyond a prompt's own); ``wrong`` and ``random``, of the
            answer and the run's own forced token (``K = 2``).
        final: per position kind, ``[runs]`` the model's own next-token probability of the answer's token.
    """

    query: torch.Tensor
    last: dict
    lens: dict
    final: dict


def _runs(plan: _Plan) -> list[tuple[int, str, int, int]]:
    """``(prompt, kind, alternative, token)`` of every run, correct first, then each prompt's wrong and random."""
    out = [(i, "correct", -1, c) for i, c in enumerate(plan.correct)]
    out += [(i, "wrong", j, w) for i, ws in enumerate(plan.wrong) for j, w in enumerate(ws)]
    out += [(i, "random", j, r) for i, rs in enumerate(plan.random) for j, r in enumerate(rs)]
    return out


def _softcap(model) -> float | None:
    """The final logit soft-cap the model applies (Gemma 2: ``cap * tanh(logits / cap)``), or None."""
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    if cap is None or cap <= 0:
        hf = getattr(getattr(model, "original_model", None), "config", None)
        cap = getattr(hf, "final_logit_softcapping", None)
    return float(cap) if cap is not None and cap > 0 else None


@torch.inference_mode()
def _lens(model, h: torch.Tensor, options: torch.Tensor) -> torch.Tensor:
    """``[runs, L, K]`` logit-lens logits (final norm, ``W_U``, ``b_U``, soft-cap) of ``options`` ``[runs, K]``
    (``-1``: none; NaN there) from ``h`` ``[runs, L, d]``; float64 on the CPU."""
    norm = getattr(model.ln_final, "original_component", model.ln_final)
    weight = next(norm.parameters(), None)
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else "cpu"
    W_U = model.W_U.detach()
    b_U = getattr(model, "b_U", None)
    ids = options.clamp(min=0)
    cols = W_U[:, ids.to(W_U.device)].permute(1, 2, 0).float().cpu()  # [runs, K, d]
    bias = b_U.detach()[ids.to(b_U.device)].float().cpu() if b_U is not None else torch.zeros(ids.shape)
    normed = norm(h.to(device=device, dtype=dtype)).float().cpu()  # [runs, L, d]
    logits = torch.einsum("rld,rkd->rlk", normed, cols) + bias[:, None, :]
    cap = _softcap(model)
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    return logits.double().masked_fill((options < 0)[:, None, :], float("nan"))


@torch.inference_mode()
def _read(model, tokens, plan: _Plan, batch_size: int, progress: bool) -> _States:
    """Every forced completion of ``plan`` through ``model``: resid_post of every block at the last two positions,
    the model's next-token log-probabilities there, and the logit lens of each prompt's options."""
    from .._progress import tqdm
    from ..generation import last_position_only
    from ..hooks import attached
    from ..sites import hook_name

    n_layers, d = int(model.cfg.n_layers), int(model.cfg.d_model)
    device = model.cfg.device or "cpu"
    runs = _runs(plan)
    states = torch.empty((len(runs), 2, n_layers, d), dtype=torch.float32)
    final = torch.empty((len(runs), 2), dtype=torch.float64)  # p(answer) at the query and the forced token
    keep = {"logits_to_keep": 2} if last_position_only(model) else {}
    by_len: dict[int, list[int]] = {}
    for r, (i, *_) in enumerate(runs):
        by_len.setdefault(len(tokens.encodings[i].ids) + 1, []).append(r)
    batches = [rows[b:b + batch_size] for n in sorted(by_len) for rows in [by_len[n]]
               for b in range(0, len(rows), batch_size)]
    for rows in tqdm(batches, desc="rotation: forced completions", disable=not progress, leave=False):
        ids = torch.tensor([[*tokens.encodings[runs[r][0]].ids, runs[r][3]] for r in rows], device=device)
        buf = torch.empty((len(rows), 2, n_layers, d), dtype=torch.float32)

        def read(layer):
            def fn(act, hook):
                buf[:, :, layer] = act[:, -2:].detach().float().cpu()
            return fn

        with attached(model, [(hook_name("resid_post", layer), read(layer)) for layer in range(n_layers)]):
            logits = model(ids, **keep)[:, -2:].float()
        if not bool(torch.isfinite(logits).all()):
            raise FloatingPointError("non-finite logits; check the model's dtype (float16 overflows are common)")
        answers = torch.tensor([plan.correct[runs[r][0]] for r in rows], device=logits.device)
        logp = logits.log_softmax(-1).gather(-1, answers[:, None, None].expand(-1, 2, 1))[..., 0]
        states[rows], final[rows] = buf, logp.double().exp().cpu()
    width = 1 + max(len(w) for w in plan.wrong)
    options = torch.full((len(plan.correct), width), -1, dtype=torch.long)
    for i, (c, ws) in enumerate(zip(plan.correct, plan.wrong)):
        options[i, :1 + len(ws)] = torch.tensor([c, *ws])
    kinds = np.array([k for _, k, _, _ in runs])
    prompt_of = torch.tensor([i for i, *_ in runs])
    forced = torch.tensor([t for *_, t in runs])
    last, lens, fin = {}, {}, {}
    for kind in ("correct", "wrong", "random"):
        sel = torch.from_numpy(np.flatnonzero(kinds == kind))
        last[kind] = states[sel, 1]
        # the correct run against each alternative; a wrong or random run against its own forced token
        opts = options[prompt_of[sel]] if kind == "correct" else torch.stack(
            [options[prompt_of[sel], 0], forced[sel]], 1)
        lens[kind] = _lens(model, last[kind], opts)
        fin[kind] = final[sel, 1].numpy()
    n = len(plan.correct)  # the correct runs come first, prompt by prompt
    query = states[:n, 0]
    lens["query"], fin["query"] = _lens(model, query, options), final[:n, 0].numpy()
    return _States(query, last, lens, fin)


# ------------------------------------------------------------------------------------------- per prompt


def _by_prompt(values: np.ndarray, prompt_of: np.ndarray, n: int) -> np.ndarray:
    """Mean over each prompt's rows of ``values`` ``[rows, ...]`` -> ``[n, ...]``."""
    out = np.zeros((n, *values.shape[1:]))
    np.add.at(out, prompt_of, values)
    return out / np.bincount(prompt_of, minlength=n).reshape(-1, *[1] * (values.ndim - 1))


def _geometry(s: _States, kind: str, prompt_of: np.ndarray) -> dict[str, np.ndarray]:
    """``path_geometry(h_c, h_kind, origin=h_q)`` per (alternative, layer), averaged per prompt: ``[n, L]``."""
    n, n_layers, d = s.query.shape
    h_c = s.last["correct"][prompt_of].reshape(-1, d)
    origin = s.query[prompt_of].reshape(-1, d)
    g = path_geometry(h_c, s.last[kind].reshape(-1, d), origin=origin)
    shape = (len(prompt_of), n_layers)
    return {key: _by_prompt(np.asarray(getattr(g, field)).reshape(shape), prompt_of, n)
            for key, field in (("angle", "angle"), ("norm_correct", "norm_a"), ("norm_wrong", "norm_b"),
                               ("norm_ratio", "norm_ratio"), ("rotation_share", "rotation_share"))}


def _preference(logits: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``sigmoid(logit_c - logit_t)`` ``[rows, L]``: ``p(c) / (p(c) + p(t))`` of the answer (column 0) against
    each row's token in ``column``."""
    from scipy.special import expit  # the logistic function without overflow at large |diff|

    rows = np.arange(len(column))
    return expit(logits[rows, :, 0] - logits[rows, :, column])


def _measures(plan: _Plan, s: _States) -> dict[str, np.ndarray]:
    """One model's per-prompt figures: every :data:`MEASURES` key ``[n, L]`` (nulls ``_null``), and every
    :data:`FINAL` key ``final_*`` ``[n]``."""
    n = len(plan.correct)
    prompt_of = np.array([i for i, ws in enumerate(plan.wrong) for _ in ws])
    alternative = np.array([j for ws in plan.wrong for j in range(len(ws))])
    out = _geometry(s, "wrong", prompt_of)
    for key, v in _geometry(s, "random", prompt_of).items():
        if key != "norm_correct":
            out[f"{key}_null"] = v
    lens = {k: v.numpy() for k, v in s.lens.items()}
    own = np.ones(len(prompt_of), dtype=int)  # a wrong or random run: the answer against the token forced
    out["preference_wrong"] = _by_prompt(_preference(lens["wrong"], own), prompt_of, n)
    out["preference_wrong_null"] = _by_prompt(_preference(lens["random"], own), prompt_of, n)
    for kind in ("correct", "query"):  # one run per prompt, read against each of its alternatives
        out[f"preference_{kind}"] = _by_prompt(_preference(lens[kind][prompt_of], 1 + alternative), prompt_of, n)
    out["final_after_query"], out["final_after_correct"] = s.final["query"], s.final["correct"]
    out["final_after_wrong"] = _by_prompt(s.final["wrong"], prompt_of, n)
    out["final_after_random"] = _by_prompt(s.final["random"], prompt_of, n)
    return out


# ------------------------------------------------------------------------------------------- statistics


def _statistics(columns: dict[str, np.ndarray], groups: list[str], seed: int) -> dict[str, tuple]:
    """``{key: (mean, low, high)}`` of each ``[n]`` or ``[n, L]`` array, over its finite rows; the 95% cluster
    bootstrap interval over facts (one call: every key on the same resamples); ``low``/``high`` None with fewer than
    :data:`MIN_FACTS` facts."""
    from probes.stats import cluster_bootstrap_ci

    keys = list(columns)
    n = len(groups)
    flat = [np.asarray(columns[k], dtype=np.float64).reshape(n, -1) for k in keys]
    widths = [f.shape[1] for f in flat]
    stacked = np.concatenate(flat, axis=1)

    def mean(rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no finite row: undefined (NaN)
            return np.nanmean(stacked[rows], axis=0)

    centre = mean(np.arange(n))
    if len(set(groups)) < MIN_FACTS:
        low = high = None
    else:
        low, high = (np.asarray(x, dtype=np.float64) for x in cluster_bootstrap_ci(mean, groups, seed=seed))
        # a constant column has one bootstrap value; the percentile can come back a rounding step off it
        low, high = np.fmin(low, centre), np.fmax(high, centre)
    out, start = {}, 0
    for key, width, f in zip(keys, widths, flat):
        part = slice(start, start + width)
        shape = np.asarray(columns[key]).shape[1:]
        out[key] = tuple(None if v is None else v[part].reshape(shape) for v in (centre, low, high))
        start += width
    return out


def _columns(per: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every figure averaged: each model's measures, nulls and measure - null, and post - base of each."""
    cols = {}
    for m in _MODELS:
        for key, v in per[m].items():
            cols[f"{m}_{key}"] = v
        for key in _NULLED:
            cols[f"{m}_{key}_minus_null"] = per[m][key] - per[m][f"{key}_null"]
        cols[f"{m}_final_wrong_minus_random"] = per[m]["final_after_wrong"] - per[m]["final_after_random"]
        cols[f"{m}_final_wrong_minus_correct"] = per[m]["final_after_wrong"] - per[m]["final_after_correct"]
        angle = per[m]["angle"]  # [n, L]
        cols[f"{m}_angle_growth"] = angle[:, angle.shape[1] // 2] - angle[:, 0]
    for key in (k for k in per["base"] if not k.endswith("_null")):
        cols[f"{key}_post_minus_base"] = per["post"][key] - per["base"][key]
    return cols


# ------------------------------------------------------------------------------------------------ output


def _per_layer(stats: dict, n_layers: int) -> list[dict]:
    entries = []
    for layer in range(n_layers):
        e = {"layer": layer}
        for key, (mean, low, high) in stats.items():
            if np.ndim(mean) == 0:  # a final-layer figure (tables and summary)
                continue
            e[key] = float(mean[layer])
            e[f"{key}_ci_low"] = None if low is None else float(low[layer])
            e[f"{key}_ci_high"] = None if high is None else float(high[layer])
        e["preference_prior"] = PRIOR
        entries.append(e)
    return entries


def _num(x, digits: int = 3) -> str:
    return "undefined" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _interval(low, high, digits: int = 3) -> str:
    if low is None or high is None:
        return f"[no interval: fewer than {MIN_FACTS} facts]"
    return f"[{_num(low, digits)}, {_num(high, digits)}]"


def _at(stats: dict, key: str, layer: int | None = None) -> tuple:
    """``(mean, low, high)`` of ``key`` as floats (at ``layer`` for a per-layer key)."""
    mean, low, high = stats[key]
    pick = (lambda v: float(v)) if layer is None else (lambda v: float(v[layer]))
    return pick(mean), None if low is None else pick(low), None if high is None else pick(high)


def _fig(stats: dict, key: str, layer: int | None = None, digits: int = 3, unit: str = "") -> str:
    """``0.123 [0.1, 0.15]`` (with ``unit`` after the mean)."""
    mean, low, high = _at(stats, key, layer)
    return f"{_num(mean, digits)}{unit} {_interval(low, high, digits)}"


def _layers_where(stats: dict, key: str, n_layers: int, side: str, ref: float = 0.0) -> list[int] | None:
    """Layers whose interval of ``key`` lies above (``side="above"``) or below ``ref``; None without intervals."""
    _, low, high = stats[key]
    if low is None:
        return None
    return [layer for layer in range(n_layers)
            if (low[layer] > ref if side == "above" else high[layer] < ref)]


def _layer_list(layers: list[int] | None, n_layers: int) -> str:
    """``"at layers 3-5 (3 of 18)"``, ``"at no layer"``, ``"at every layer (0-17)"``; without intervals
    ``"undefined (...)"``."""
    if layers is None:
        return f"undefined (fewer than {MIN_FACTS} facts, so no interval)"
    if not layers:
        return "at no layer"
    if len(layers) == n_layers:
        return f"at every layer (0-{n_layers - 1})"
    text = layer_runs(layers)
    return f"at layer{'s' if len(layers) > 1 else ''} {text} ({len(layers)} of {n_layers})"


def _rotation_phrase(stats: dict, m: str, mid: int, n_layers: int) -> str:
    rot = _layers_where(stats, f"{m}_rotation_share", n_layers, "above", ROTATION_MAJORITY)
    res = _layers_where(stats, f"{m}_rotation_share", n_layers, "below", ROTATION_MAJORITY)
    closer = _layers_where(stats, f"{m}_angle_minus_null", n_layers, "below")
    farther = _layers_where(stats, f"{m}_angle_minus_null", n_layers, "above")
    text = (f"{m}: at mid-depth (layer {mid}) the correct and the wrong displacement are "
            f"{_fig(stats, f'{m}_angle', mid, unit='°')} apart (a random word's: "
            f"{_fig(stats, f'{m}_angle_null', mid, unit='°')}), ‖wrong‖/‖correct‖ is "
            f"{_fig(stats, f'{m}_norm_ratio', mid)} (random word: {_fig(stats, f'{m}_norm_ratio_null', mid)}) and "
            f"{_fig(stats, f'{m}_rotation_share', mid)} of their squared distance is due to direction (random word: "
            f"{_fig(stats, f'{m}_rotation_share_null', mid)}); the angle is "
            f"{_fig(stats, f'{m}_angle', 0, unit='°')} at layer 0 and "
            f"{_fig(stats, f'{m}_angle', n_layers - 1, unit='°')} at layer {n_layers - 1}. Rotation rather than "
            f"rescaling (rotation share's interval above {ROTATION_MAJORITY:g}) {_layer_list(rot, n_layers)}")
    if res:
        text += f", rescaling (below it) {_layer_list(res, n_layers)}"
    text += (f"; the wrong answer's displacement is closer in direction to the correct one's than a random word's "
             f"(angle − null below 0) {_layer_list(closer, n_layers)}")
    if farther:
        text += f", farther {_layer_list(farther, n_layers)}"
    equal = _layers_where_holding(stats, f"{m}_norm_ratio", n_layers, 1.0)
    text += f"; equal lengths (‖wrong‖/‖correct‖'s interval holds 1) {_layer_list(equal, n_layers)}"
    null_rot = _layers_where(stats, f"{m}_rotation_share_null", n_layers, "above", ROTATION_MAJORITY)
    return text + (f"; a random word's displacement, too, differs from the correct one's mostly by direction (null "
                   f"rotation share above {ROTATION_MAJORITY:g}) {_layer_list(null_rot, n_layers)}.")


def _layers_where_holding(stats: dict, key: str, n_layers: int, ref: float) -> list[int] | None:
    """Layers whose interval of ``key`` holds ``ref``; None without intervals."""
    _, low, high = stats[key]
    return None if low is None else [layer for layer in range(n_layers) if low[layer] <= ref <= high[layer]]


def _suppression(stats: dict, m: str, last: int) -> dict:
    """The last layer's suppression figures and verdicts of model ``m``."""
    pref, p_low, p_high = _at(stats, f"{m}_preference_wrong", last)
    _, d_low, d_high = _at(stats, f"{m}_preference_wrong_minus_null", last)
    _, f_low, f_high = _at(stats, f"{m}_final_wrong_minus_random")
    _, s_low, s_high = _at(stats, f"{m}_final_wrong_minus_correct")
    defined = p_low is not None
    return {"preference": pref,
            "below_prior": None if not defined else p_high < PRIOR,
            "above_prior": None if not defined else p_low > PRIOR,
            "below_null": None if not defined else d_high < 0,
            "below_random": None if not defined else f_high < 0,
            "below_slot": None if not defined else s_high < 0,
            "suppressed": None if not defined else (f_high < 0 and s_high < 0),
            "raised": None if not defined else f_low > 0}


def _suppression_phrase(stats: dict, m: str, last: int) -> str:
    v = _suppression(stats, m, last)
    if v["below_prior"] is None:
        prior = f"whether it is below {PRIOR:g} is undefined (no interval)"
    else:
        prior = (f"below the naive prior {PRIOR:g}" if v["below_prior"] else f"above {PRIOR:g}" if v["above_prior"]
                 else f"not distinguishable from {PRIOR:g}")
        prior += (", and below the random-word null (paired interval below 0)" if v["below_null"]
                  else ", not below the random-word null")
    if v["suppressed"] is None:
        verdict = "active suppression is undefined (no interval)"
    elif v["suppressed"]:
        verdict = ("lower after the wrong answer than after a random word and than after the correct answer itself: "
                   "active suppression of the correct answer, beyond the answer slot being filled")
    elif v["below_random"]:
        verdict = ("lower after the wrong answer than after a random word, but not lower than after the correct "
                   "answer itself: not separable from the answer slot being filled (any answer lowers it), so no "
                   "active suppression shown")
    elif v["raised"]:
        verdict = "higher after the wrong answer than after a random word: no active suppression"
    else:
        verdict = "the difference's interval holds 0: no active suppression shown"
    ratio = (1 - v["preference"]) / v["preference"] if v["preference"] > 0 else float("inf")
    return (f"{m}: at the last layer (model output) the preference p(c) / (p(c) + p(w)) for the correct answer as "
            f"the next token is {_fig(stats, f'{m}_preference_wrong', last)} after the wrong answer ((1 − P)/P = "
            f"{ratio:.3g}): {prior}; it is {_fig(stats, f'{m}_preference_wrong_null', last)} after a random word r "
            f"against r and {_fig(stats, f'{m}_preference_query', last)} after the query alone. The correct "
            f"answer's next-token probability is {_fig(stats, f'{m}_final_after_wrong')} after the wrong answer, "
            f"{_fig(stats, f'{m}_final_after_random')} after a random word (paired difference "
            f"{_fig(stats, f'{m}_final_wrong_minus_random')}) and {_fig(stats, f'{m}_final_after_correct')} after "
            f"the correct answer itself, the slot filled (paired difference "
            f"{_fig(stats, f'{m}_final_wrong_minus_correct')}): {verdict}.")


def _differences_phrase(stats: dict, n_layers: int) -> str:
    parts = []
    for key, label in (("angle", "angle"), ("rotation_share", "rotation share"), ("norm_ratio", "norm ratio"),
                       ("preference_wrong", "preference after the wrong answer"),
                       ("preference_query", "preference after the query alone")):
        up = _layers_where(stats, f"{key}_post_minus_base", n_layers, "above")
        down = _layers_where(stats, f"{key}_post_minus_base", n_layers, "below")
        if up is None:
            parts.append(f"{label}: undefined (fewer than {MIN_FACTS} facts)")
            continue
        parts.append(f"{label} higher in post {_layer_list(up, n_layers)}, lower {_layer_list(down, n_layers)}")
    final = _fig(stats, "final_after_wrong_post_minus_base")
    return ("Post − base (paired: the same prompts and tokens in both; interval excluding 0): " + "; ".join(parts)
            + f"; the correct answer's next-token probability after the wrong answer changes by {final}.")


def _verdict_words(stats: dict, m: str, mid: int, last: int, n_layers: int) -> dict[str, str]:
    """Model ``m``'s answers to the paper's readings, each ``"seen"``, ``"not seen"`` or ``"undefined"``: about
    equal magnitude at mid-depth (the norm ratio's interval within :data:`EQUAL_BAND`), the angle growing through
    mid-depth (angle at mid-depth minus at layer 0, paired interval above 0), rotation rather than rescaling at
    mid-depth (and the same for the random-word null), the last layer's preference after the wrong answer below
    0.5, and active suppression (below the random-word null and below the slot-filled control)."""
    def word(flag):
        return "undefined" if flag is None else "seen" if flag else "not seen"

    rot = _layers_where(stats, f"{m}_rotation_share", n_layers, "above", ROTATION_MAJORITY)
    null = _layers_where(stats, f"{m}_rotation_share_null", n_layers, "above", ROTATION_MAJORITY)
    sup = _suppression(stats, m, last)
    _, r_low, r_high = _at(stats, f"{m}_norm_ratio", mid)
    _, g_low, _ = _at(stats, f"{m}_angle_growth")
    return {"equal": word(None if r_low is None else EQUAL_BAND[0] <= r_low and r_high <= EQUAL_BAND[1]),
            "growth": word(None if g_low is None else g_low > 0),
            "rotation": word(None if rot is None else mid in rot),
            "rotation_null": word(None if null is None else mid in null),
            "below_prior": word(sup["below_prior"]), "suppression": word(sup["suppressed"])}


def _summary(plan: _Plan, stats: dict, n_layers: int) -> tuple[str, str]:
    """``(summary, headline)``, written from the figures."""
    mid, last = n_layers // 2, n_layers - 1
    k = plan.counts["wrong continuations read"]
    n, facts = len(plan.correct), len(set(plan.groups))
    parts = [f"Forced completions of {n} prompts ({facts} facts; {k} wrong continuations, the prompts' single-token "
             f"alternatives; null: as many random word tokens), the same token ids through base and post; "
             f"displacements from the query-only state (resid_post at the prompt's last token) to the state at the "
             f"forced token; means over prompts with 95% bootstrap intervals over facts."]
    parts += [_rotation_phrase(stats, m, mid, n_layers) for m in _MODELS]
    parts += [_suppression_phrase(stats, m, last) for m in _MODELS]
    words = {m: _verdict_words(stats, m, mid, last, n_layers) for m in _MODELS}
    parts.append("Marín 2026 (abstract) reports displacements of about equal magnitude that rotate apart, the angle "
                 "growing through mid-depth, and a late-layer preference far below 0.5 after the incorrect answer "
                 "(about 11.5× more probability on it), the model actively suppressing the correct answer; here "
                 f"about equal magnitude at mid-depth (‖wrong‖/‖correct‖'s interval within "
                 f"[{EQUAL_BAND[0]:g}, {EQUAL_BAND[1]:g}]) is "
                 + ", ".join(f"{words[m]['equal']} in {m}" for m in _MODELS)
                 + ", the angle growing from layer 0 to mid-depth (paired difference "
                 + ", ".join(f"{m} {_fig(stats, f'{m}_angle_growth', unit='°')}" for m in _MODELS) + ") is "
                 + ", ".join(f"{words[m]['growth']} in {m}" for m in _MODELS)
                 + ", rotation rather than rescaling at mid-depth is "
                 + ", ".join(f"{words[m]['rotation']} in {m}" for m in _MODELS)
                 + " (for a random word in place of the wrong answer: "
                 + ", ".join(f"{words[m]['rotation_null']} in {m}" for m in _MODELS)
                 + "), the last layer's preference after the wrong answer below 0.5 is "
                 + ", ".join(f"{words[m]['below_prior']} in {m}" for m in _MODELS)
                 + ", and active suppression (the correct answer's next-token probability after the wrong answer "
                 "below that after a random word and that after the correct answer itself) is "
                 + ", ".join(f"{words[m]['suppression']} in {m}" for m in _MODELS) + ".")
    parts.append(_differences_phrase(stats, n_layers))
    headline = ("Rotation share at mid-depth (layer " + str(mid) + ") "
                + "; ".join(f"{m} {_fig(stats, f'{m}_rotation_share', mid)} (random word "
                            f"{_num(_at(stats, f'{m}_rotation_share_null', mid)[0])})" for m in _MODELS)
                + "; preference for the correct answer after a wrong one at the last layer "
                + "; ".join(f"{m} {_fig(stats, f'{m}_preference_wrong', last)} (random word "
                            f"{_num(_at(stats, f'{m}_preference_wrong_null', last)[0])}, prior 0.5)"
                            for m in _MODELS) + ".")
    return " ".join(parts), headline


def _plots() -> list[dict]:
    return [
        {"title": "Angle between the displacements after the correct and after the wrong answer",
         "reading": "angle", "yaxis": "angle (degrees)",
         "series": {f"{m}_angle": f"{m}: correct vs wrong answer" for m in _MODELS},
         "nulls": {f"{m}_angle_null": f"{m}: correct answer vs a random word" for m in _MODELS}},
        {"title": "Lengths of the displacements and how they differ", "reading": "lengths",
         "series": {**{f"{m}_norm_{w}": f"{m}: |{'a' if w == 'correct' else 'b'}|, {w} answer"
                       for m in _MODELS for w in ("correct", "wrong")},
                    **{f"{m}_norm_ratio": f"{m}: |b| / |a|" for m in _MODELS},
                    **{f"{m}_rotation_share": f"{m}: rotation share" for m in _MODELS}},
         "nulls": {**{f"{m}_norm_wrong_null": f"{m}: |n|, random word" for m in _MODELS},
                   **{f"{m}_norm_ratio_null": f"{m}: |n| / |a|, random word" for m in _MODELS},
                   **{f"{m}_rotation_share_null": f"{m}: rotation share, random word" for m in _MODELS}},
         "panels": [{"keys": [f"{m}_norm_{w}" for m in _MODELS for w in ("correct", "wrong")]
                     + [f"{m}_norm_wrong_null" for m in _MODELS],
                     "yaxis": "displacement norm (residual-stream units)", "yrange": None},
                    {"keys": [f"{m}_norm_ratio{s}" for m in _MODELS for s in ("", "_null")],
                     "yaxis": "norm ratio", "yrange": None},
                    {"keys": [f"{m}_rotation_share{s}" for m in _MODELS for s in ("", "_null")],
                     "yaxis": "rotation share of |a − b|²", "yrange": [-0.02, 1.02]}]},
        {"title": "Logit-lens preference p(c) / (p(c) + p(w)) for the correct answer as the next token",
         "reading": "preference", "yrange": [-0.02, 1.02],
         "series": {**{f"{m}_preference_wrong": f"{m}: after the wrong answer" for m in _MODELS},
                    **{f"{m}_preference_query": f"{m}: after the query alone" for m in _MODELS},
                    **{f"{m}_preference_correct": f"{m}: after the correct answer" for m in _MODELS}},
         "nulls": {**{f"{m}_preference_wrong_null": f"{m}: p(c) / (p(c) + p(r)) after a random word r"
                      for m in _MODELS},
                   "preference_prior": "naive prior of equal probability (0.5)"},
         "panels": [{"keys": [f"{m}_preference_wrong{s}" for m in _MODELS for s in ("", "_null")]
                     + ["preference_prior"], "yaxis": "preference after the wrong answer", "yrange": [-0.02, 1.02]},
                    {"keys": [f"{m}_preference_{k}" for m in _MODELS for k in ("query", "correct")],
                     "yaxis": "preference after the query / correct answer", "yrange": [-0.02, 1.02]}]},
        {"title": "Post − base (paired over the same prompts)", "reading": "differences",
         "series": {"angle_post_minus_base": "angle (degrees)",
                    "rotation_share_post_minus_base": "rotation share",
                    "norm_ratio_post_minus_base": "norm ratio |b| / |a|",
                    "preference_wrong_post_minus_base": "preference after the wrong answer"},
         "panels": [{"keys": ["angle_post_minus_base"], "yaxis": "Δ angle (degrees)", "yrange": None},
                    {"keys": ["rotation_share_post_minus_base"], "yaxis": "Δ rotation share", "yrange": None},
                    {"keys": ["norm_ratio_post_minus_base"], "yaxis": "Δ norm ratio", "yrange": None},
                    {"keys": ["preference_wrong_post_minus_base"], "yaxis": "Δ preference", "yrange": None}]},
    ]


_READINGS = {
    "angle": "Angle between a = h_correct − h_query and b = h_wrong − h_query at the forced token, per layer, mean "
             "over prompts with a 95% bootstrap band over facts. Marín 2026 reports the angle growing through "
             "mid-depth. Grey: the same angle with a random word in place of the wrong answer (the null): below it, "
             "the wrong answer moves the state in a direction closer to the correct answer's than any word does.",
    "lengths": "Top: the two displacements' norms (grey: a random word's). Middle: |b| / |a| (1: equal lengths). "
               "Bottom: the share of |a − b|² due to the change of direction (1: pure rotation, 0: pure "
               "rescaling; interp.geometry.path_geometry). Marín 2026 reports rotation, not rescaling.",
    "preference": "Logit lens (final norm and unembedding on resid_post; at the last layer the model's own output) "
                  "of the next token: p(c) / (p(c) + p(w)) for the correct answer c and a wrong one w. Top: after the "
                  "wrong answer was forced (the paper's incorrect run), with the naive prior 0.5 and the null "
                  "p(c) / (p(c) + p(r)) after a random word r: at early layers the lens of the state at a forced "
                  "token reads mostly that token, so the preference against it is near 0 after any forced word; "
                  "only a fall below the null is about the wrong answer. Bottom: after the query alone (which of the "
                  "two the model expects as the answer) and after the correct answer.",
    "next_token": "The model's own next-token probability of the correct answer's token (full vocabulary) after "
                  "the query alone, after the correct answer, after a wrong answer and after a random word (the "
                  "null), mean over prompts with 95% bootstrap intervals over facts. Active suppression of the "
                  "correct answer (Marín 2026) puts 'after a wrong answer' below 'after a random word'.",
    "differences": "Post minus base of each measure, per prompt then averaged, with a paired 95% bootstrap band over "
                   "facts; where the band excludes 0 the two models differ. An identical pair gives exactly 0.",
}


def _tables(plan: _Plan, stats: dict, per: dict, tok, n_layers: int) -> dict:
    mid, last = n_layers // 2, n_layers - 1
    geo_rows = []
    for m in _MODELS:
        for layer in range(n_layers):
            row = [m, layer]
            for key in ("angle", "norm_ratio", "rotation_share", "preference_wrong"):
                row += [_fig(stats, f"{m}_{key}", layer), _fig(stats, f"{m}_{key}_null", layer)]
            geo_rows.append(row)
    final_rows = []
    for m in _MODELS:
        for key, label in FINAL.items():
            mean, low, high = _at(stats, f"{m}_final_{key}")
            final_rows.append([m, label, mean, *((low, high) if low is not None else
                                                 [f"undefined: fewer than {MIN_FACTS} facts"] * 2)])
    diff_rows = []
    for layer in range(n_layers):
        row = [layer]
        for key in ("angle", "norm_ratio", "rotation_share", "preference_wrong", "preference_query"):
            mean, low, high = _at(stats, f"{key}_post_minus_base", layer)
            row += [mean, _interval(low, high), "undefined" if low is None else
                    "yes" if low > 0 or high < 0 else "no"]
        diff_rows.append(row)
    words = [[tok.decode([t]) for t in ts] for ts in plan.wrong]
    randoms = [[tok.decode([t]) for t in ts] for ts in plan.random]
    examples = [[text, tok.decode([c]), " | ".join(w), " | ".join(r),
                 *(float(per[m][k][i, last]) for m in _MODELS for k in ("preference_query", "preference_wrong")),
                 *(float(per[m]["angle"][i, mid]) for m in _MODELS)]
                for i, (text, c, w, r) in enumerate(zip(plan.prompts.texts, plan.correct, words, randoms))]
    return {
        "prompts": {"title": "Prompts and continuations: what was given, kept and read",
                    "columns": ["count", "value"], "rows": [[k, v] for k, v in plan.counts.items()]},
        "next_token": {"title": "The model's own next-token probability of the correct answer's token (last layer, "
                                "full vocabulary; mean over prompts, 95% bootstrap over facts)",
                       "columns": ["model", "continuation", "p(correct answer next)", "interval low",
                                   "interval high"],
                       "rows": final_rows, "x": "continuation", "y": "p(correct answer next)", "color": "model",
                       "low": "interval low", "high": "interval high"},
        "geometry": {"title": "Per layer, mean [95% interval over facts]; null: a random word r in place of the "
                              "wrong answer (for the preference: p(c) / (p(c) + p(r)))",
                     "columns": ["model", "layer", "angle (degrees)", "angle, null", "|b| / |a|", "|b| / |a|, null",
                                 "rotation share", "rotation share, null", "preference after the wrong answer",
                                 "preference, null"],
                     "rows": geo_rows},
        "post_minus_base": {"title": "Post − base per layer (paired 95% bootstrap over facts)",
                            "columns": ["layer", *[c for key in ("angle", "norm ratio", "rotation share",
                                                                 "preference after the wrong answer",
                                                                 "preference after the query")
                                                   for c in (f"Δ {key}", f"Δ {key} 95% CI", "excludes 0")]],
                            "rows": diff_rows},
        "continuations": {"title": f"Each prompt read: its continuations, the last layer's preference and the angle "
                                   f"at mid-depth (layer {mid})",
                          "columns": ["prompt", "correct", "wrong", "random words (null)",
                                      "base: preference after the query", "base: preference after the wrong answer",
                                      "post: preference after the query", "post: preference after the wrong answer",
                                      "base: angle (degrees)", "post: angle (degrees)"],
                          "rows": examples},
    }


def _setup(plan: _Plan, facts: PromptSet, n_layers: int, seed: int, batch_size: int, undefined: dict) -> dict:
    return {
        "facts": f"{facts.name} ({facts.source or 'given'}): {len(plan.correct)} prompts read of "
                 f"{plan.counts['prompts with a usable pair']} with a usable pair ({len(facts)} given), drawn with "
                 "the seed; every split read (nothing is selected on the prompts)",
        "formatting": "raw text, the same token ids for both models (no chat template: the base model has none); "
                      "each prompt's ids (BOS by the toolkit's policy) followed by one continuation token id",
        "continuations": "correct: the answer where it is one token; wrong: each alternative that is one token; "
                         "a pair is dropped where either token holds no letter or digit or is an article",
        "null": "a random word token per wrong alternative (the single-token encoding of a space and a word of 2+ "
                "letters, as the answers are; not the first token of any answer or alternative of the facts; "
                f"uniform, seeded; {plan.counts['word tokens the null draws from']} candidates), the same tokens for "
                "both models; not frequency-matched (the toolkit has no token counts); the preference's null is "
                "p(c)/(p(c)+p(r)) after the random word r, the answer against the token forced",
        "states": "resid_post (output of each block) at the prompt's last token (query-only state, read in the "
                  "correct run: causal attention makes it the same in every run) and at the forced token",
        "geometry": "interp.geometry.path_geometry(h_correct, h_wrong, origin=h_query): norms, |b|/|a|, angle "
                    "(degrees), rotation share of |a − b|²; per prompt the mean over its alternatives",
        "preference": "logit lens: the final norm and the unembedding (with its bias and any soft-cap) on resid_post; "
                      "sigmoid(logit_c − logit_w) = p(c)/(p(c)+p(w)) of the next token; the last layer is the model's "
                      "own output",
        "measures": {key: f"{label} ({unit})" for key, label, unit in MEASURES},
        "layers": f"0..{n_layers - 1}; mid-depth = n_layers // 2 = {n_layers // 2}",
        "verdicts": f"rotation rather than rescaling: the rotation share's interval above {ROTATION_MAJORITY:g}; "
                    "active suppression: p(correct answer next) after the wrong answer minus after a random word, "
                    "paired interval below 0",
        "intervals": "95% percentile bootstrap over facts (all phrasings of a fact drawn together; 1,000 resamples, "
                     f"seeded; probes.stats.cluster_bootstrap_ci), none with fewer than {MIN_FACTS} facts; paired "
                     "for differences (the same prompts in both models, or the same prompt's wrong and random runs)",
        "undefined entries": undefined,
        "paper": "Marín 2026, arXiv:2603.13259; only its abstract (v1 and v2) could be read: the five geometric "
                 "measurements it names are not listed there, so the measures here are those the abstract describes",
        "seed": seed, "batch_size": batch_size,
    }


# ----------------------------------------------------------------------------------------------- section


def rotation_section(pair: ModelPair, facts: PromptSet, *, max_prompts: int = 100, seed: int = 0,
                     batch_size: int = 32, progress: bool = True) -> ConceptResult:
    """Forced-completion probing of base and post (module docstring; Marín 2026, arXiv:2603.13259).

    Args:
        pair: the booted :class:`~interp.ModelPair`.
        facts: fact prompts ending right before the answer; ``meta[i]`` holds ``"answer"`` (with its leading
            space, e.g. ``" France"``), ``"alternatives"`` (wrong answers written the same way) and optionally
            ``"group"`` (the phrasings of one fact, resampled together).
        max_prompts: most prompts read, drawn with ``seed`` among those with a single-token answer and at least
            one single-token wrong alternative.
        seed: of the prompt draw, the null's random words and the bootstraps.
        batch_size: forced completions per forward pass (completions of equal length share a batch).
        progress: a progress bar over the batches.

    Returns:
        A :class:`~interp.report.ConceptResult` ``"rotation"`` over every layer. Per layer, for ``m`` in base and
        post: ``{m}_angle`` (degrees), ``{m}_norm_correct`` and ``{m}_norm_wrong`` (``|a|``, ``|b|``, residual
        units), ``{m}_norm_ratio`` (``|b| / |a|``), ``{m}_rotation_share`` (in [0, 1]), ``{m}_preference_wrong``,
        ``_correct``, ``_query`` (``p(c) / (p(c) + p(w))`` of the next token after the wrong answer, the correct one,
        the query alone); random-word nulls ``{m}_{angle,norm_wrong,norm_ratio,rotation_share,preference_wrong}_null``
        and their paired differences ``..._minus_null``; ``{measure}_post_minus_base`` of every measure; each with
        ``_ci_low``/``_ci_high`` (None: fewer than :data:`MIN_FACTS` facts); ``preference_prior`` (0.5). Tables
        ``prompts``, ``next_token`` (the model's own ``p(correct answer next)`` after the query, the correct answer,
        a wrong one and a random word), ``geometry``, ``post_minus_base``, ``continuations``; ``readings`` with
        ``summary`` and ``headline``, each written from the figures.

    Raises:
        ValueError: fewer than 2 prompts with a usable pair; a row without an answer and alternatives (named);
            too few word tokens for the null; ``max_prompts`` below 2, ``batch_size`` below 1, ``seed`` below 0.
        TypeError: a non-integer count or seed; ``facts`` not a PromptSet.
    """
    from .._checks import check_int

    if not isinstance(facts, PromptSet):
        raise TypeError(f"facts must be a PromptSet whose meta holds 'answer' and 'alternatives', got "
                        f"{type(facts).__name__}")
    max_prompts = check_int("max_prompts", max_prompts, low=2)
    batch_size = check_int("batch_size", batch_size)
    seed = check_int("seed", seed, low=0)
    plan = _plan(pair, facts, max_prompts, seed)
    toks = tokens_for(pair, plan.prompts.texts)
    per = {}
    for m, model in pair:
        per[m] = _measures(plan, _read(model, toks[m], plan, batch_size, progress))
        log.info("rotation: %s done (%d prompts)", m, len(plan.correct))
    undefined = {f"{m}: {k}": int(np.isnan(v).sum()) for m in _MODELS for k, v in per[m].items()
                 if np.isnan(v).any()}
    n_layers = pair.n_layers
    stats = _statistics(_columns(per), plan.groups, seed)
    per_layer = _per_layer(stats, n_layers)
    summary, headline = _summary(plan, stats, n_layers)
    readings = {"summary": summary, "headline": headline, **_READINGS}
    tables = _tables(plan, stats, per, tokenizer_of(pair.base), n_layers)
    return ConceptResult("rotation", list(range(n_layers)), per_layer, long_rows(per_layer), readings=readings,
                         setup=_setup(plan, facts, n_layers, seed, batch_size, undefined), plots=_plots(),
                         tables=tables)


def _run(ctx, *, data: str | None = None, **options) -> ConceptResult:
    return rotation_section(ctx.pair, _facts(ctx, data), progress=ctx.progress, **options)


SECTION = Section("rotation", _run, help="forced-completion probing: a fact's correct vs wrong single-token "
                                         "continuation, the angle and norms of their displacements from the query "
                                         "state, and suppression of the correct answer (Marín 2026)", params=(
    Param("max_prompts", int, 100, "most fact prompts read (a seeded draw from every split among those with a "
                                   "single-token answer and alternative: nothing is selected on the facts); cost "
                                   "grows linearly", low=2),
    seed_param("seed of the prompt draw, the null's random words and the bootstraps"),
    Param("batch_size", int, 32, "forced completions per forward pass", low=1),
    Param("data", str, None, "your facts: one JSONL/CSV file whose rows have the fields prompt (ending right before "
                             "the answer), subject (written exactly once in the prompt) and answer; optional: "
                             "alternatives (wrong answers: a JSON list, or |-separated in CSV; when absent, up to 3 "
                             "other answers of the row's relation are drawn), relation and group. Only answers and "
                             "alternatives that are one token are forced. Every row is read (no train/test split), at "
                             "most max_prompts drawn with the seed; checked before any model boots",
          validate=_check_facts_file),
))
