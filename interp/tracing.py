"""Where a model recalls a fact: causal tracing (Meng et al. 2022) and cross-model activation patching.

A fact is a prompt that ends right before its answer (``"The city of Lyon is in"`` -> ``" France"``), given
as an unlabelled :class:`~interp.datasets.PromptSet` whose ``meta[i]`` holds ``"subject"`` (a substring
occurring once in the prompt) and ``"answer"`` (with its leading space). A model's *answer token* is the
first token of ``answer`` under its tokenizer; every probability here is the next-token softmax
probability of that token after the prompt.

**Causal tracing** (:func:`causal_trace`; ROME, Meng et al. 2022, sec. 2.1, and the reference code's
``trace_with_patch`` / ``calculate_hidden_flow``). Three runs per prompt:

* clean: the prompt as it is, ``p_clean``;
* corrupted: Gaussian noise added to the embedding output at the subject's token positions, ``p_corrupted``;
  noise std = ``noise`` (ROME's 3) x the standard deviation of the embedding-layer outputs over the subject
  tokens (ROME's ``collect_embedding_std``: one std over every value). The noise goes into what block 0
  reads, ``blocks.0.hook_resid_pre`` (TransformerLens v4's ``TransformerBridge`` gives the same tensor at
  ``hook_embed``); for Gemma that includes the embedding's ``sqrt(d_model)`` scale, and the std is measured
  at the same hook, so the scale cancels out of the noise-to-signal ratio;
* restored: the corrupted run with one clean state put back at ``(layer, token position)``: ``resid`` = the
  block's output (``resid_post``), ``mlp`` / ``attn`` = the block's MLP / attention output (``mlp_out`` /
  ``attn_out``). As in ROME, ``mlp`` and ``attn`` are restored over a *window* of layers around the layer
  named: layers ``max(0, l - window // 2) .. min(n_layers, l + ceil(window / 2)) - 1`` (ROME's
  ``trace_important_window``; window 10 in the paper, 1 restores layer ``l`` only); ``resid`` is always one
  layer (ROME's ``trace_important_states``).

Each probability is the mean over ``samples`` noise draws (ROME averages the softmax over its noised batch
rows); one prompt's draws are the same for all of its restorations, and are seeded by ``seed`` and the
prompt's text and subject alone, so a prompt gets the same noise whatever is traced beside it. The
*indirect effect* of a state is ``p_restored - p_corrupted`` (ROME's definition);
:meth:`CausalTrace.normalised_effect` divides it by ``p_clean - p_corrupted``.

Positions before the subject are not run: with causal attention the noise never reaches them, so their
states in the corrupted run equal the clean ones and restoring them gives ``p_corrupted`` exactly; they are
filled with it. Each prompt's token positions get ROME's six roles (:data:`ROLES`), from the tokenizer's
character offsets.

**Cross-model patching** (:func:`cross_model_patch`): the target model runs each prompt with its
``resid_post`` at layer ``l`` (every position) replaced by the source model's on the same prompt; what
survives of the target's answer probability is ``p_patched / p_target_clean``. The null moves the target's own
state at each position by as much as the source's differs from it, in a random direction (a random direction of
equal norm).

Cost: causal tracing runs ``samples x (kinds x layers x (length - first subject token) + kinds x layers + 1)``
rows per prompt (restorations, the different-subject null, the corrupted run) of its own length, plus one
clean row; cross-model patching ``2 + 2 x layers`` rows per prompt (clean runs of both models, one patched and
one null run per layer), rows of all layers sharing forward passes.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from ._checks import as_int, check_int
from .datasets import PromptSet
from .generation import last_position_only
from .hooks import attached, forward_blocks, recorded_blocks, replayed_blocks
from .models import check_same_tokenizer, tokenizer_of
from .sites import check_layers, hook_name
from .tokens import Tokenized, as_tokenized

__all__ = ["KINDS", "PEAK_ROLES", "ROLES", "ROME_NOISE", "ROME_SAMPLES", "ROME_WINDOW", "CausalTrace", "CrossPatch", "FactTokens",
           "causal_trace", "cross_model_patch", "default_window", "fact_predictions", "fact_tokens",
           "subject_embedding_std", "window_layers"]

log = logging.getLogger(__name__)

#: Traced state -> the site restored (:data:`interp.sites.SITES`): the block output, the MLP output, the
#: attention output.
KINDS: dict[str, str] = {"resid": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}
#: ROME's six token roles (Meng et al. 2022, Fig. 2 and its averages over 1,000 facts). A token can hold
#: two roles (a one-token subject is its first and last subject token; the token after the subject can be
#: the last token); tokens before the subject hold none.
ROLES: tuple[str, ...] = ("first subject token", "middle subject tokens", "last subject token",
                          "first subsequent token", "further tokens", "last token")
#: Where each kind's effect is read (Meng et al. 2022, sec. 2.2 and Fig. 1): the MLP's at the last subject token
#: (ROME's "early site", where it locates storage), attention's at the last token (the "late site"), the residual
#: stream's at the last subject token (its early site; at the last token every layer's state carries the whole
#: answer, so it locates nothing). The null of each kind (:attr:`CausalTrace.p_null`) is at its role.
PEAK_ROLES: dict[str, str] = {"resid": ROLES[2], "mlp": ROLES[2], "attn": ROLES[5]}
#: ROME's noise multiplier: noise std = 3 x the std of the subject tokens' embeddings.
ROME_NOISE = 3.0
#: ROME's noise samples per restoration.
ROME_SAMPLES = 10
#: ROME's window of restored MLP / attention layers, in GPT-2 XL's 48 layers.
ROME_WINDOW = 10
_ROME_DEPTH = 48
#: The site the corruption noise is added to: what block 0 reads (the scaled embedding for Gemma).
_EMBED_SITE = ("resid_pre", 0)


# ------------------------------------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class FactTokens:
    """One fact prompt, tokenised.

    Attributes:
        ids: the prompt's token ids (BOS included under the policy it was tokenised with).
        answer: the answer token id (first token of ``meta["answer"]``).
        subject: ``(first, stop)``: the subject's tokens are ``ids[first:stop]`` (every token whose character
            span overlaps the subject's).
    """

    ids: tuple[int, ...]
    answer: int
    subject: tuple[int, int]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def last_subject(self) -> int:
        """Position of the subject's last token."""
        return self.subject[1] - 1

    def position(self, role: str) -> int:
        """The position of a one-token role: ``"last subject token"`` or ``"last token"``.

        Raises:
            ValueError: a role that can hold several tokens or none.
        """
        if role not in (ROLES[2], ROLES[5]):
            raise ValueError(f"position() takes {ROLES[2]!r} or {ROLES[5]!r}, the roles of exactly one token; got "
                             f"{role!r}")
        return self.last_subject if role == ROLES[2] else len(self.ids) - 1

    def roles(self) -> dict[str, tuple[int, ...]]:
        """Positions of each of :data:`ROLES` (empty where the prompt has none, e.g. no middle subject token)."""
        first, stop, n = self.subject[0], self.subject[1], len(self.ids)
        return {ROLES[0]: (first,), ROLES[1]: tuple(range(first + 1, stop - 1)), ROLES[2]: (stop - 1,),
                ROLES[3]: (stop,) if stop < n else (), ROLES[4]: tuple(range(stop + 1, n - 1)), ROLES[5]: (n - 1,)}


def _subject_span(text: str, subject: str, spans, row: int) -> tuple[int, int]:
    """``(first, stop)`` token range whose character spans overlap the one occurrence of ``subject``, whitespace
    at either end of ``subject`` left out (``"Lyon "`` covers the tokens of ``"Lyon"``, not the next word's).

    Raises:
        ValueError: the subject is empty or only whitespace, missing from the text, occurs more than once, or no
            token covers it.
    """
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"fact {row}: meta['subject'] must be a non-empty string, got {subject!r}")
    if not subject.strip():
        raise ValueError(f"fact {row}: meta['subject'] {subject!r} is only whitespace")
    at = text.find(subject)
    if at < 0:
        raise ValueError(f"fact {row}: subject {subject!r} not found in the prompt {text!r}; the subject must be "
                         "a substring of the prompt as written")
    if text.find(subject, at + 1) >= 0:
        raise ValueError(f"fact {row}: subject {subject!r} occurs more than once in {text!r}; the noise must cover "
                         "one occurrence: rephrase the prompt or give a longer subject")
    end = at + len(subject)
    # whitespace at the subject's ends is not the subject: "Lyon " would otherwise reach the next word's token
    at, end = at + len(subject) - len(subject.lstrip()), end - (len(subject) - len(subject.rstrip()))
    covering = [i for i, (s, e) in enumerate(spans) if e > s and s < end and e > at]
    if not covering:
        raise ValueError(f"fact {row}: subject {subject!r} not found in the tokens of {text!r} (no token's "
                         "character span covers it)")
    return covering[0], covering[-1] + 1


#: First answer tokens that many facts' answers share, so that their probability says nothing of the fact.
_ARTICLES = frozenset({"the", "a", "an"})


def _check_answer_token(row: int, answer: str, first: str, text: str | None = None) -> None:
    """Refuse an answer whose first token (``first``, decoded) has no letter or digit (a bare space, a
    quotation mark) or is an English article that is the answer's whole first word (``" the Netherlands"``, not
    the ``" A"`` a small vocabulary splits off ``" Athens"``): every probability here is of that token, which would
    then measure the format or the article rather than the fact.

    Raises:
        ValueError: as above, naming the fact's row and what to give instead.
    """
    word, row = first.strip(), f"{row}" if text is None else f"{row} (prompt {text!r})"
    if not any(c.isalnum() for c in word):
        raise ValueError(f"fact {row}: meta['answer'] {answer!r} begins with the token {first!r}, which holds no "
                         "letter or digit, so p(answer) would be the probability of that token alone; give the "
                         "answer with one leading space and no punctuation before it, e.g. ' Paris'")
    if word.lower() in _ARTICLES and answer.split()[:1] == [word]:
        raise ValueError(f"fact {row}: meta['answer'] {answer!r} begins with the article {first!r}, a token many "
                         "answers share, so p(answer) would be the article's probability; end the prompt with the "
                         "article and give the answer without it (prompt '... is in the', answer ' Netherlands')")


def fact_tokens(model, facts: PromptSet, *, tokens: Tokenized | None = None) -> list[FactTokens]:
    """Each fact's tokens, subject range and answer token for ``model``.

    Args:
        model: a ``TransformerBridge``.
        facts: an unlabelled :class:`~interp.datasets.PromptSet`; ``meta[i]`` holds ``"subject"`` and
            ``"answer"`` (module docstring).
        tokens: ``facts.texts`` already tokenised (:func:`interp.tokens.tokenize`; checked against ``model``).

    Raises:
        TypeError: ``facts`` not a PromptSet.
        ValueError: no facts; a row without ``subject`` or ``answer``; a subject not found in the prompt or
            its tokens, or found twice; an answer that tokenises to nothing; an answer token id outside the
            model's vocabulary (``cfg.d_vocab``, the width of its logits); an answer whose first token holds no
            letter or digit or is an article (``" the"``), which many answers share.
    """
    if not isinstance(facts, PromptSet):
        raise TypeError(f"facts must be a PromptSet whose meta holds 'subject' and 'answer', got "
                        f"{type(facts).__name__}")
    if len(facts) == 0:
        raise ValueError("facts is empty")
    meta = facts.meta or ({},) * len(facts)
    for i, m in enumerate(meta):
        missing = [k for k in ("subject", "answer") if k not in m]
        if missing:
            raise ValueError(f"fact {i} ({facts.texts[i][:60]!r}) has no meta {missing}: every fact needs "
                             "meta['subject'] (a substring of the prompt) and meta['answer'] (e.g. ' Paris')")
    toks = as_tokenized(model, tokens if tokens is not None else facts.texts)
    if toks.texts != facts.texts:
        raise ValueError("tokens were made from other texts than facts.texts")
    tok = tokenizer_of(model)
    d_vocab = int(model.cfg.d_vocab)
    out = []
    for i, (text, m, enc) in enumerate(zip(facts.texts, meta, toks.encodings)):
        answer = m["answer"]
        ids = tok(answer, add_special_tokens=False)["input_ids"] if isinstance(answer, str) and answer else []
        if not ids:
            raise ValueError(f"fact {i}: meta['answer'] {answer!r} gives no token; give the answer text with its "
                             "leading space, e.g. ' Paris'")
        if not 0 <= ids[0] < d_vocab:
            raise ValueError(f"fact {i}: answer token id {ids[0]} ({answer!r}) is out of the model's vocabulary "
                             f"of {d_vocab} logits; the tokenizer and the model do not match")
        _check_answer_token(i, answer, tok.decode([ids[0]]), text)
        out.append(FactTokens(tuple(enc.ids), int(ids[0]), _subject_span(text, m["subject"], enc.spans, i)))
    return out


def _length_groups(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal length, cut into chunks of at most ``batch_size``: batches with no padding."""
    by_len: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(n, []).append(i)
    return [rows[c:c + batch_size] for n in sorted(by_len) for rows in [by_len[n]]
            for c in range(0, len(rows), batch_size)]


def _answer_logprobs(logits: torch.Tensor, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p(answer), answer is the argmax)`` from ``[batch, pos, vocab]`` logits, read at the last position."""
    last = logits[:, -1].float()
    if not bool(torch.isfinite(last).all()):
        raise FloatingPointError("non-finite logits; check the model's dtype (float16 overflows are common)")
    logp = last.log_softmax(-1)
    p = logp.gather(-1, answers[:, None]).squeeze(-1).exp()
    return p.cpu(), (last.argmax(-1) == answers).cpu()


def _device(model):
    return model.cfg.device or "cpu"


@torch.inference_mode()
def fact_predictions(model, facts: PromptSet, *, tokens: Tokenized | None = None, batch_size: int = 32
                     ) -> tuple[Float[torch.Tensor, " n_prompts"], Bool[torch.Tensor, " n_prompts"]]:
    """Clean-run ``p(answer token)`` of each fact and whether the answer token is the model's top-1 prediction
    (the fact is *known*, as ROME keeps only facts the model predicts).

    Prompts of equal token length share a batch (no padding); only the last position is unembedded
    (:func:`interp.generation.last_position_only`).

    Raises:
        ValueError, TypeError: as :func:`fact_tokens`; ``batch_size`` below 1 or not an int.
    """
    batch_size = check_int("batch_size", batch_size)
    facts_t = fact_tokens(model, facts, tokens=tokens)
    p, top = torch.empty(len(facts_t)), torch.empty(len(facts_t), dtype=torch.bool)
    device, keep = _device(model), last_position_only(model)
    for rows in _length_groups([len(f) for f in facts_t], batch_size):
        ids = torch.tensor([facts_t[i].ids for i in rows], device=device)
        answers = torch.tensor([facts_t[i].answer for i in rows], device=device)
        p[rows], top[rows] = _answer_logprobs(model(ids, **keep), answers)
    return p, top


# ------------------------------------------------------------------------------------------------ checks


def _check_kinds(kinds) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown kind(s) {unknown or kinds}; kinds are {', '.join(KINDS)} (block output, MLP "
                         "output, attention output)")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct, got {kinds}")
    return kinds


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """The layers restored around ``layer`` with a window of ``window`` layers, as ROME's
    ``trace_important_window``: ``max(0, layer - window // 2)`` to ``min(n_layers, layer + ceil(window / 2))``
    (exclusive), so a window is clipped at the first and last block.

    >>> list(window_layers(5, 10, 48)), list(window_layers(1, 3, 4)), list(window_layers(2, 1, 4))
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2], [2])
    """
    return range(max(0, layer - window // 2), min(n_layers, layer + -(-window // 2)))


def default_window(n_layers: int) -> int:
    """ROME's window of 10 layers of GPT-2 XL's 48 scaled to ``n_layers``: ``max(1, round(10 n_layers / 48))``
    (1 for a 6-layer model, 4 for 18 layers, 7 for 32).

    >>> default_window(6), default_window(18), default_window(48)
    (1, 4, 10)
    """
    return max(1, min(n_layers, round(ROME_WINDOW * n_layers / _ROME_DEPTH)))


def _check_window(window, n_layers: int) -> int:
    if window is None:
        return default_window(n_layers)
    w = as_int(window)
    if w is None:
        raise TypeError(f"window must be an int >= 1 (layers restored around each layer), got {window!r}")
    if not 1 <= w <= n_layers:
        raise ValueError(f"window must be in 1..{n_layers} (the model's layers), got {w}; 1 restores one layer, "
                         "ROME restores 10 of GPT-2 XL's 48")
    return w


# ------------------------------------------------------------------------------------------------ tracing


@dataclass(frozen=True)
class CausalTrace:
    """What :func:`causal_trace` measured. Probabilities are of each prompt's answer token after the prompt.

    Attributes:
        kinds: the traced states, in the order of the ``kind`` axis (:data:`KINDS`).
        n_layers: layers of the model (the ``layer`` axis).
        facts: each prompt's tokens, subject range and answer token (:class:`FactTokens`).
        p_clean: ``[n_prompts]`` clean run.
        top1: ``[n_prompts]`` the answer token is the clean run's argmax.
        p_corrupted: ``[n_prompts]`` corrupted run (mean over samples).
        p_restored: ``[n_prompts, kind, layer, pos]`` corrupted run with the state at ``(layer, pos)`` restored
            (over the window for ``mlp``/``attn``); NaN beyond each prompt's length.
        p_null: ``[n_prompts, kind, layer]`` the null: at each kind's role (:attr:`null_roles`, from
            :data:`PEAK_ROLES`), the clean state of the *donor* prompt's token of that role (another subject,
            another answer token) put in instead of the prompt's own (same layers, same window); NaN where no donor
            exists.
        donor: ``[n_prompts]`` index of each prompt's donor, -1 for none.
        noise: the multiplier; ``embedding_std``: the std it multiplies; ``noise_std``: their product, the std
            of the noise added.
        samples, window, seed: as given.
        null_roles: per kind, the role of :attr:`p_null` (:data:`PEAK_ROLES`).
    """

    kinds: tuple[str, ...]
    n_layers: int
    facts: tuple[FactTokens, ...]
    p_clean: Float[torch.Tensor, " n_prompts"]
    top1: Bool[torch.Tensor, " n_prompts"]
    p_corrupted: Float[torch.Tensor, " n_prompts"]
    p_restored: Float[torch.Tensor, "n_prompts kind layer pos"]
    p_null: Float[torch.Tensor, "n_prompts kind layer"]
    donor: Int[torch.Tensor, " n_prompts"]
    noise: float
    embedding_std: float
    noise_std: float
    samples: int
    window: int
    seed: int
    null_roles: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.facts)

    def indirect_effect(self) -> Float[torch.Tensor, "n_prompts kind layer pos"]:
        """``p_restored - p_corrupted`` (ROME's indirect effect), NaN beyond each prompt's length."""
        return self.p_restored - self.p_corrupted[:, None, None, None]

    def normalised_effect(self) -> Float[torch.Tensor, "n_prompts kind layer pos"]:
        """``(p_restored - p_corrupted) / (p_clean - p_corrupted)``: the share of the corruption's damage a
        restoration undoes (1: all of it). NaN for a prompt whose corruption did not lower ``p``
        (``p_clean <= p_corrupted``: nothing to undo, the ratio is undefined)."""
        gap = self.p_clean - self.p_corrupted
        gap = torch.where(gap > 0, gap, torch.full_like(gap, float("nan")))
        return self.indirect_effect() / gap[:, None, None, None]

    def null_effect(self) -> Float[torch.Tensor, "n_prompts kind layer"]:
        """``p_null - p_corrupted``: the indirect effect of a different subject's state at each kind's role
        (:attr:`null_roles`; the null of :meth:`at_role` with that role)."""
        return self.p_null - self.p_corrupted[:, None, None]

    def roles(self) -> list[dict[str, tuple[int, ...]]]:
        """Each prompt's positions of :data:`ROLES`."""
        return [f.roles() for f in self.facts]

    def by_role(self, values: Float[torch.Tensor, "n_prompts kind layer pos"] | None = None
                ) -> Float[torch.Tensor, "n_prompts kind layer role"]:
        """``values`` (default :meth:`indirect_effect`) averaged over each prompt's tokens of each of
        :data:`ROLES` (ROME's categories; the middle subject tokens and further tokens are averaged within the
        prompt, so every prompt weighs the same); NaN where a prompt has no token of a role."""
        values = self.indirect_effect() if values is None else values
        out = torch.full((*values.shape[:3], len(ROLES)), float("nan"), dtype=values.dtype)
        for i, roles in enumerate(self.roles()):
            for r, name in enumerate(ROLES):
                if roles[name]:
                    out[i, :, :, r] = values[i][..., list(roles[name])].mean(-1)
        return out

    def at_role(self, role: str, values: Float[torch.Tensor, "n_prompts kind layer pos"] | None = None
                ) -> Float[torch.Tensor, "n_prompts kind layer"]:
        """:meth:`by_role` for one role (``"last subject token"``, ...).

        Raises:
            ValueError: an unknown role.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        return self.by_role(values)[..., ROLES.index(role)]


@torch.inference_mode()
def subject_embedding_std(model, facts: PromptSet, *, tokens: Tokenized | None = None, batch_size: int = 32) -> float:
    """Standard deviation of what block 0 reads (``blocks.0.hook_resid_pre``: the embedding output, with Gemma's
    ``sqrt(d_model)`` scale) over every value at the facts' subject tokens: the unit of ROME's noise
    (``collect_embedding_std``, which takes the std of the subjects' embeddings over all their values).

    Raises:
        ValueError, TypeError: as :func:`fact_tokens`.
    """
    batch_size = check_int("batch_size", batch_size)
    facts_t = fact_tokens(model, facts, tokens=tokens)
    values, device = [], _device(model)
    for rows in _length_groups([len(f) for f in facts_t], batch_size):
        ids = torch.tensor([facts_t[i].ids for i in rows], device=device)

        def read(act, hook, rows=rows):
            for r, i in enumerate(rows):
                values.append(act[r, slice(*facts_t[i].subject)].detach().double().cpu().flatten())

        with attached(model, [(hook_name(*_EMBED_SITE), read)]):
            forward_blocks(model, ids, None, 1)
    return float(torch.cat(values).std())


def _noise_draws(fact: FactTokens, text: str, subject: str, samples: int, d_model: int, seed: int) -> torch.Tensor:
    """``[samples, n_subject_tokens, d_model]`` standard normal draws of one prompt, seeded by ``seed``, its text
    and its subject (the same prompt gets the same noise in any set)."""
    digest = hashlib.sha256(f"{seed}\0{text}\0{subject}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    n_subject = fact.subject[1] - fact.subject[0]
    return torch.randn((samples, n_subject, d_model), generator=gen)


def _donors(facts_t: Sequence[FactTokens], subjects: Sequence[str], groups: Sequence, seed: int) -> list[int]:
    """For each prompt, a seeded random other prompt of another fact (another ``meta["group"]``, where given:
    not the same fact in another phrasing or language) with another subject and another answer token; -1 where
    none exists."""
    rng = np.random.default_rng(seed)
    out = []
    for i, f in enumerate(facts_t):
        cand = [j for j, g in enumerate(facts_t) if j != i and g.answer != f.answer and subjects[j] != subjects[i]
                and (groups[i] is None or groups[j] != groups[i])]
        out.append(int(rng.choice(cand)) if cand else -1)
    return out


class _Restore:
    """The hook edits of one batch: noise added at block 0's input, and per restored ``(site, layer)`` the rows,
    positions and vectors written there."""

    def __init__(self, noise: torch.Tensor):
        self.noise = noise  # [rows, pos, d_model]
        self.edits: dict[str, tuple[list[int], list[int], list[torch.Tensor]]] = {}

    def put(self, site: str, layer: int, row: int, pos: int, vector: torch.Tensor) -> None:
        rows, poss, vecs = self.edits.setdefault(hook_name(site, layer), ([], [], []))
        rows.append(row)
        poss.append(pos)
        vecs.append(vector)

    def hooks(self) -> list[tuple]:
        def corrupt(act, hook):
            return act + self.noise.to(device=act.device, dtype=act.dtype)

        def restore(rows, poss, vecs):
            def fn(act, hook):  # on the layer's own device (a model sharded over devices)
                out = act.clone()
                out[torch.tensor(rows, device=act.device), torch.tensor(poss, device=act.device)] = vecs.to(
                    device=act.device, dtype=act.dtype)
                return out
            return fn

        out = [(hook_name(*_EMBED_SITE), corrupt)]
        out += [(name, restore(rows, poss, torch.stack(vecs))) for name, (rows, poss, vecs) in self.edits.items()]
        return out


def _clean_states(model, fact: FactTokens, sites: Sequence[str], n_layers: int) -> torch.Tensor:
    """``[site, layer, pos, d_model]`` clean states of one prompt (one forward pass, stopped after the last block)."""
    device = _device(model)
    states = torch.empty((len(sites), n_layers, len(fact), int(model.cfg.d_model)), device=device)

    def read(s, layer):
        def fn(act, hook):
            states[s, layer] = act[0].detach()
        return fn

    hooks = [(hook_name(site, layer), read(s, layer)) for s, site in enumerate(sites) for layer in range(n_layers)]
    with attached(model, hooks):
        forward_blocks(model, torch.tensor([fact.ids], device=device), None, n_layers)
    return states


def _rows_of(record, rows: torch.Tensor):
    """A recorded block output (a tensor, or a tuple whose first element is one) for the batch rows ``rows``."""
    if isinstance(record, tuple):
        return (record[0][rows.to(record[0].device)], *record[1:])
    return record[rows.to(record.device)]


def _trace_one(model, fact: FactTokens, clean: torch.Tensor, donor: torch.Tensor | None, noise: torch.Tensor,
               kinds: Sequence[str], window: int, batch_size: int, positions: Sequence[int]
               ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``(p_corrupted, p_restored [kind, layer, pos], p_null [kind, layer])`` of one prompt, from its clean states
    ``clean`` ``[kind, layer, pos, d]``, the donor's at each kind's role of :data:`PEAK_ROLES` ``donor``
    ``[kind, layer, d]`` (or None) and its noise ``[samples, n_subject, d]`` (already scaled); restorations at
    ``positions`` only (the others NaN, but those before the subject, which are ``p_corrupted``); the null at each
    kind's role.

    The corrupted run goes first and what each of its blocks returns is recorded
    (:func:`interp.hooks.recorded_blocks`); a restored run differs from it only from the lowest restored layer
    up, so the blocks below that layer are replayed from the record instead of run
    (:func:`interp.hooks.replayed_blocks`; their input would be the same noised embedding, bit for bit). Rows
    are ordered by that layer so a batch skips as many blocks as its lowest row allows.
    """
    n_layers, n_pos, samples = clean.shape[1], len(fact), noise.shape[0]
    first, stop = fact.subject[0], fact.subject[1]

    def restored_layers(k: int, layer: int) -> range:
        return range(layer, layer + 1) if kinds[k] == "resid" else window_layers(layer, window, n_layers)

    rows = [("restore", k, layer, t, s) for k in range(len(kinds)) for layer in range(n_layers)
            for t in positions for s in range(samples)]
    if donor is not None:
        rows += [("null", k, layer, fact.position(PEAK_ROLES[kinds[k]]), s) for k in range(len(kinds))
                 for layer in range(n_layers) for s in range(samples)]
    rows.sort(key=lambda r: restored_layers(r[1], r[2]).start)  # stable: the order within a layer is kept
    device = clean.device
    keep = last_position_only(model)
    ids = torch.tensor([fact.ids], device=device)
    answer = torch.tensor([fact.answer], device=device)

    def run(batch, replay=None) -> torch.Tensor:
        full = torch.zeros((len(batch), n_pos, clean.shape[-1]), device=device)
        full[:, first:stop] = noise[torch.tensor([r[4] for r in batch])].to(device)
        edit = _Restore(full)
        for r, (what, k, layer, t, _) in enumerate(batch):
            for at in restored_layers(k, layer) if what != "corrupted" else ():
                edit.put(KINDS[kinds[k]], at, r, t, clean[k, at, t] if what == "restore" else donor[k, at])
        with attached(model, edit.hooks()), replay or nullcontext():
            logits = model(ids.expand(len(batch), -1), **keep)
        return _answer_logprobs(logits, answer.expand(len(batch)))[0]

    with recorded_blocks(model) as calls:
        p_corr = float(run([("corrupted", -1, -1, -1, s) for s in range(samples)]).mean())
    record = calls[-1]
    restored_sum = torch.zeros((len(kinds), n_layers, n_pos))
    null_sum = torch.zeros((len(kinds), n_layers))
    for b0 in range(0, len(rows), batch_size):
        batch = rows[b0:b0 + batch_size]
        below = min(restored_layers(r[1], r[2]).start for r in batch)
        samples_of = torch.tensor([r[4] for r in batch])
        replay = replayed_blocks(model, {layer: _rows_of(record[layer], samples_of) for layer in range(below)}, below)
        for (what, k, layer, t, _), p in zip(batch, run(batch, replay).tolist()):
            if what == "restore":
                restored_sum[k, layer, t] += p
            else:
                null_sum[k, layer] += p
    restored = torch.full((len(kinds), n_layers, n_pos), float("nan"))
    restored[:, :, list(positions)] = restored_sum[:, :, list(positions)] / samples
    restored[:, :, :first] = p_corr  # before the subject: the corrupted run, exactly (causal attention)
    null = null_sum / samples if donor is not None else torch.full((len(kinds), n_layers), float("nan"))
    return p_corr, restored, null


@torch.inference_mode()
def causal_trace(model, facts: PromptSet, *, kinds: Sequence[str] = ("resid", "mlp", "attn"),
                 noise: float | None = None, samples: int = ROME_SAMPLES, window: int | None = None, seed: int = 0,
                 batch_size: int = 128, embedding_std: float | None = None, null: bool = True,
                 roles: Sequence[str] | None = None, tokens: Tokenized | None = None, progress: bool = False
                 ) -> CausalTrace:
    """Causal tracing of each fact's answer (ROME, Meng et al. 2022, sec. 2.1; module docstring).

    Args:
        model: a ``TransformerBridge``.
        facts: an unlabelled :class:`~interp.datasets.PromptSet` whose ``meta[i]`` holds ``"subject"`` and
            ``"answer"``; each prompt ends right before its answer.
        kinds: states traced (:data:`KINDS`): ``resid`` (block output), ``mlp``, ``attn``.
        noise: noise std in units of the subject tokens' embedding std; ``None``: ROME's 3.
        samples: noise draws per prompt (ROME: 10); every probability is the mean over them.
        window: layers of MLP / attention outputs restored around each layer (:func:`window_layers`; 1: that
            layer alone); ``None``: ROME's 10 of 48 layers scaled to the model (:func:`default_window`).
            ``resid`` restores one layer whatever the window.
        seed: of the noise (with each prompt's text and subject) and of the null's donor prompts.
        batch_size: restored runs of one prompt per forward pass (a prompt's rows all have its length: no
            padding); also prompts per clean pass (prompts of equal length together).
        embedding_std: the std ``noise`` multiplies; ``None``: measured over these facts' subject tokens
            (:func:`subject_embedding_std`). Pass one value to trace several sets (a validation and a test split) with
            the same noise.
        null: also run :attr:`CausalTrace.p_null` (a different subject's state restored at each kind's role of
            :data:`PEAK_ROLES`).
        roles: restore only at the positions holding one of these :data:`ROLES` (e.g. ``["last subject
            token"]`` for a per-layer curve at a fraction of the cost); the other positions from the subject on
            are NaN. ``None``: every position from the first subject token on.
        tokens: ``facts.texts`` already tokenised for ``model``.
        progress: show a progress bar over prompts.

    Returns:
        A :class:`CausalTrace`: ``p_clean``, ``p_corrupted`` ``[n_prompts]``, ``p_restored``
        ``[n_prompts, kind, layer, pos]`` (NaN beyond each prompt's length), ``p_null`` ``[n_prompts, kind,
        layer]``; :meth:`~CausalTrace.indirect_effect`, :meth:`~CausalTrace.by_role`.

    Raises:
        ValueError: an unknown kind or role; ``window`` outside 1..n_layers; ``noise`` or ``embedding_std`` not a finite
            number > 0; ``samples`` or ``batch_size`` below 1; and as :func:`fact_tokens` (a subject not found in
            a prompt or its tokens, an answer token id out of the vocabulary, ...).
        TypeError: ``window``, ``samples``, ``batch_size`` not integers; ``facts`` not a PromptSet.
    """
    kinds = _check_kinds(kinds)
    n_layers, d_model = int(model.cfg.n_layers), int(model.cfg.d_model)
    window = _check_window(window, n_layers)
    noise = ROME_NOISE if noise is None else _check_positive("noise", noise)
    samples, batch_size = check_int("samples", samples), check_int("batch_size", batch_size)
    if as_int(seed) is None:
        raise TypeError(f"seed must be an int, got {seed!r}")
    if roles is not None:
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise ValueError(f"unknown role(s) {unknown or roles}; roles: {', '.join(ROLES)}")
    facts_t = fact_tokens(model, facts, tokens=tokens)
    if embedding_std is None:
        embedding_std = subject_embedding_std(model, facts, tokens=tokens, batch_size=batch_size)
    std = _check_positive("embedding_std", embedding_std)
    p_clean, top1 = fact_predictions(model, facts, tokens=tokens, batch_size=batch_size)
    subjects = [m["subject"] for m in facts.meta]
    groups = [m.get("group") for m in facts.meta]
    donors = _donors(facts_t, subjects, groups, seed) if null else [-1] * len(facts_t)
    sites = [KINDS[k] for k in kinds]
    donor_states = {}  # the donors' clean states at each kind's role, [kind, layer, d]
    for j in sorted({d for d in donors if d >= 0}):
        states = _clean_states(model, facts_t[j], sites, n_layers)
        donor_states[j] = torch.stack([states[k, :, facts_t[j].position(PEAK_ROLES[kind])]
                                       for k, kind in enumerate(kinds)])
    n, width = len(facts_t), max(len(f) for f in facts_t)
    p_corr = torch.empty(n)
    p_rest = torch.full((n, len(kinds), n_layers, width), float("nan"))
    p_null = torch.full((n, len(kinds), n_layers), float("nan"))
    from ._progress import tqdm

    for i in tqdm(range(n), desc="causal trace", disable=not progress):
        f = facts_t[i]
        clean = _clean_states(model, f, sites, n_layers)
        draws = _noise_draws(f, facts.texts[i], subjects[i], samples, d_model, seed) * (noise * std)
        positions = (range(f.subject[0], len(f)) if roles is None else
                     sorted({t for name, ts in f.roles().items() if name in roles for t in ts}))
        p_corr[i], p_rest[i, :, :, :len(f)], p_null[i] = _trace_one(
            model, f, clean, donor_states.get(donors[i]), draws, kinds, window, batch_size, positions)
    return CausalTrace(kinds, n_layers, tuple(facts_t), p_clean, top1, p_corr, p_rest, p_null,
                       torch.tensor(donors), noise, std, noise * std, samples, window, int(seed),
                       tuple(PEAK_ROLES[k] for k in kinds))


# ------------------------------------------------------------------------------------------ cross-model


@dataclass(frozen=True)
class CrossPatch:
    """What :func:`cross_model_patch` measured. Probabilities are of each prompt's answer token, in the target.

    Attributes:
        layers: the patched layers (the ``layer`` axis).
        p_target: ``[n_prompts]`` the target's clean run.
        p_source: ``[n_prompts]`` the source's clean run.
        p_patched: ``[n_prompts, layer]`` the target with its ``resid_post`` at that layer (every position)
            replaced by the source's on the same prompt.
        p_null: ``[n_prompts, layer]`` the null: the target with its own ``resid_post`` at that layer moved, at
            every position, by a random direction as long as the source's difference there
            (``h_target + |h_source - h_target| u``, ``u`` uniform on the unit sphere, seeded per prompt): a
            change of the same size in no particular direction.
        distance: ``[n_prompts, layer]`` mean over positions of ``|h_source - h_target|`` relative to
            ``|h_target|``: how far apart the two models' states are.
    """

    layers: list[int]
    p_target: Float[torch.Tensor, " n_prompts"]
    p_source: Float[torch.Tensor, " n_prompts"]
    p_patched: Float[torch.Tensor, "n_prompts layer"]
    p_null: Float[torch.Tensor, "n_prompts layer"]
    distance: Float[torch.Tensor, "n_prompts layer"]

    def _ratio(self, p: torch.Tensor) -> torch.Tensor:
        base = torch.where(self.p_target > 0, self.p_target, torch.full_like(self.p_target, float("nan")))
        return p / base[:, None]

    def survival(self) -> Float[torch.Tensor, "n_prompts layer"]:
        """``p_patched / p_target``: how much of the target's answer probability survives the source's
        activations (1: all of it; above 1: the source's state raises it). NaN where ``p_target`` is 0."""
        return self._ratio(self.p_patched)

    def null_survival(self) -> Float[torch.Tensor, "n_prompts layer"]:
        """``p_null / p_target``: the same with a random change of the source's size (what survives a difference
        as large that is not the other model's)."""
        return self._ratio(self.p_null)


def _clean_p(model, facts_t: Sequence[FactTokens], batch_size: int, into: torch.Tensor, rows: Sequence[int],
             hooks=()) -> None:
    """``p(answer)`` of equal-length prompts ``facts_t`` in clean runs, written to ``into[rows]``; ``hooks``
    (``[(name, fn)]`` made per batch by a callable ``hooks(b0, b1)``, or none) are attached around each pass."""
    device, keep = _device(model), last_position_only(model)
    for b0 in range(0, len(facts_t), batch_size):
        part = facts_t[b0:b0 + batch_size]
        ids = torch.tensor([f.ids for f in part], device=device)
        answers = torch.tensor([f.answer for f in part], device=device)
        with attached(model, hooks(b0, b0 + len(part)) if callable(hooks) else hooks):
            into[list(rows[b0:b0 + len(part)])] = _answer_logprobs(model(ids, **keep), answers)[0]


def _states(model, facts_t: Sequence[FactTokens], layers: Sequence[int], batch_size: int, p: torch.Tensor,
            rows: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{layer: [prompt, pos, d_model]}`` resid_post of equal-length prompts in ``model``'s clean runs (their
    ``p(answer)`` written to ``p[rows]``)."""
    got: dict[int, list] = {layer: [] for layer in layers}

    def hooks(b0, b1):
        def read(layer):
            def fn(act, hook):
                got[layer].append(act.detach().clone())
            return fn
        return [(hook_name("resid_post", layer), read(layer)) for layer in layers]

    _clean_p(model, facts_t, batch_size, p, rows, hooks)
    return {layer: torch.cat(parts) for layer, parts in got.items()}


def _random_moves(source: torch.Tensor, target: torch.Tensor, texts: Sequence[str], layer: int, seed: int
                  ) -> torch.Tensor:
    """``target + |source - target| u`` per prompt and position (``[prompt, pos, d_model]``), ``u`` a uniform
    random unit vector seeded by ``seed``, the prompt's text and the layer (the same prompt gets the same draw in
    any batch)."""
    out = torch.empty_like(target)
    for r, text in enumerate(texts):
        digest = hashlib.sha256(f"{seed}\0{text}\0{layer}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        u = torch.randn(target.shape[1:], generator=gen, dtype=torch.float64)
        u = (u / u.norm(dim=-1, keepdim=True)).to(device=target.device, dtype=target.dtype)
        out[r] = target[r] + (source[r] - target[r]).norm(dim=-1, keepdim=True) * u
    return out


def _patched_p(model, facts_t: Sequence[FactTokens], batch: Sequence[tuple], layers: Sequence[int],
               acts: dict[int, torch.Tensor]) -> torch.Tensor:
    """``p(answer)`` of each row ``(prompt, layer slot, row of acts, _)`` of ``batch`` (prompts of one length)
    with ``resid_post`` of that layer replaced, at every position, by ``acts[layer][row of acts]``."""
    device, keep = _device(model), last_position_only(model)
    ids = torch.tensor([facts_t[i].ids for i, *_ in batch], device=device)
    answers = torch.tensor([facts_t[i].answer for i, *_ in batch], device=device)

    def put(rows, values):
        def fn(act, hook):
            out = act.clone()
            out[rows] = values.to(device=act.device, dtype=act.dtype)
            return out
        return fn

    hooks = []
    for slot, layer in enumerate(layers):
        rows = [r for r, (_, s, _, _) in enumerate(batch) if s == slot]
        if rows:
            hooks.append((hook_name("resid_post", layer), put(rows, acts[layer][[batch[r][2] for r in rows]])))
    with attached(model, hooks):
        return _answer_logprobs(model(ids, **keep), answers)[0]


@torch.inference_mode()
def cross_model_patch(source, target, facts: PromptSet, *, layers: Sequence[int] | int | None = None,
                      batch_size: int = 32, seed: int = 0, tokens: Tokenized | None = None) -> CrossPatch:
    """Patch the source model's residual stream into the target model, one layer at a time.

    For each prompt and layer ``l`` the target runs the prompt with ``blocks.l.hook_resid_post`` (the output of
    block ``l``) at every position replaced by the source's on the same prompt; the blocks above ``l`` are the
    target's. Survival (:meth:`CrossPatch.survival`) is ``p_patched / p_target``: the share of the target's own
    answer probability left with the source's state. The null (a random direction of equal norm) moves the
    target's own state at each position by as much as the source's differs from it, in a random direction:
    survival well above the null's says the source's state differs from the target's in directions the target
    reads as the same fact, not merely by little. Prompts of equal length share a batch (no padding), so a
    prompt's result does not depend on its batch.

    Args:
        source, target: ``TransformerBridge`` models with the same vocabulary, depth and width (a base model and
            its post-trained version).
        facts: as :func:`causal_trace`.
        layers: layers patched (default all; negative count from the end).
        batch_size: runs per forward pass (a patched run is one prompt at one layer; prompts of one length only).
        seed: of the null's random directions.
        tokens: ``facts.texts`` already tokenised (for the target; the vocabularies are the same).

    Returns:
        A :class:`CrossPatch`; :meth:`~CrossPatch.survival` is ``p_patched / p_target``.

    Raises:
        ValueError: the two models' tokenizers differ, or their depth or width; bad ``layers``; and as
            :func:`fact_tokens`.
    """
    check_same_tokenizer(tokenizer_of(source), tokenizer_of(target), ("source", "target"))
    for key in ("n_layers", "d_model"):
        a, b = getattr(source.cfg, key), getattr(target.cfg, key)
        if a != b:
            raise ValueError(f"source and target differ in {key} ({a} vs {b}); patching needs a base model and its "
                             "post-trained version")
    layers = check_layers(layers, int(target.cfg.n_layers))
    batch_size = check_int("batch_size", batch_size)
    facts_t = fact_tokens(target, facts, tokens=tokens)
    n = len(facts_t)
    p_target, p_source = torch.empty(n), torch.empty(n)
    p_patched = torch.full((n, len(layers)), float("nan"))
    p_null = torch.full((n, len(layers)), float("nan"))
    distance = torch.full((n, len(layers)), float("nan"))
    for group in _length_groups([len(f) for f in facts_t], batch_size):
        part = [facts_t[i] for i in group]
        src = _states(source, part, layers, batch_size, p_source, group)
        own = _states(target, part, layers, batch_size, p_target, group)
        texts = [facts.texts[i] for i in group]
        # rows 0..len(group)-1 of acts[layer]: the source's states; the next len(group): the null's
        acts = {layer: torch.cat([src[layer], _random_moves(src[layer], own[layer], texts, layer, seed)])
                for layer in layers}
        for slot, layer in enumerate(layers):
            diff = (src[layer] - own[layer]).double().norm(dim=-1) / own[layer].double().norm(dim=-1)
            distance[group, slot] = diff.mean(-1).float().cpu()
        rows = [(i, slot, g + (len(group) if which == "null" else 0), which) for g, i in enumerate(group)
                for slot in range(len(layers)) for which in ("own", "null")]
        for b0 in range(0, len(rows), batch_size):  # rows of any layers share a forward pass
            batch = rows[b0:b0 + batch_size]
            p = _patched_p(target, facts_t, batch, layers, acts)
            for (i, slot, _, which), value in zip(batch, p.tolist()):
                (p_patched if which == "own" else p_null)[i, slot] = value
    return CrossPatch(layers, p_target, p_source, p_patched, p_null, distance)
