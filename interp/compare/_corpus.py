"""The neutral text corpus of the ``divergence`` and ``geometry`` sections, every token's residual state in both
models, and the bootstrap over texts their intervals come from.

* **Corpus** (:func:`load_corpus`): a built-in set's texts (``corpus``, the bundled organism's own set of that name
  on the organism, the public data folder's where ``compare(data=...)`` provides it: the ``languages`` set is then
  Django's human-translated message catalogues) or the user's file (``data``: JSON, JSONL or CSV with a text
  field, :func:`~interp.datasets.load_file`, labels ignored); every split is read (nothing is fitted on the
  corpus), at most ``n_texts`` texts drawn with the seed and kept in their order.
* **States** (:func:`token_states`): ``resid_post`` of every block at every token of every text, the first
  ``max_tokens`` tokens after BOS; the BOS position is excluded: an attention sink, its norm is 2 to 28 times the
  other tokens' mean over gemma-3-270m's layers (3 to 7 on the bundled organism), so it would weigh up to hundreds
  of tokens in every second moment. Both models read the same token ids, row for row.
* **Intervals**: of a mean over tokens, the percentile bootstrap over texts (:func:`group_intervals`,
  :func:`probes.stats.cluster_bootstrap_ci`, 1,000 resamples): a text's tokens are drawn together, and the texts
  of one ``meta["group"]`` (the translations of one sentence in ``languages``) too. Of a statistic of the whole
  token matrix (CKA, RankMe, alpha-ReQ), the delete-a-group jackknife over the same groups
  (:func:`jackknife_intervals`): resampling with replacement repeats texts, and repeated rows bias such a
  statistic (the bootstrap distribution need not even hold the estimate). Both are undefined with fewer than
  :data:`MIN_GROUPS` groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Corpus", "MIN_GROUPS", "States", "as_corpus", "check_corpus_file", "check_corpus_name", "corpus_params",
           "draw_texts", "group_intervals", "jackknife_blocks", "jackknife_intervals", "load_corpus", "token_states"]

_MODELS = ("base", "post")
#: Fewest groups of texts an interval is drawn from: a bootstrap over 2-4 groups gives a range, not an interval.
MIN_GROUPS = 5


@dataclass(frozen=True)
class Corpus:
    """Texts to read, each with the group its bootstrap draws it in, and where they come from."""

    texts: tuple[str, ...]
    groups: tuple[str, ...]
    source: str


def _corpus_file(path: str):
    """The user's corpus file as a PromptSet (labels ignored).

    Raises:
        FileNotFoundError: no such file. ValueError: a file that does not read as texts, fewer than 2 texts.
    """
    from pathlib import Path

    from ..datasets import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no corpus file {p}")
    texts = load_file(p, label_column=False)
    if len(texts) < 2:
        raise ValueError(f"{p}: {len(texts)} text(s); the corpus needs at least 2")
    return texts


def check_corpus_file(path: str) -> None:
    """The ``data`` option's check before any model boots (:func:`_corpus_file`)."""
    _corpus_file(path)


def check_corpus_name(value: str) -> None:
    """A ``corpus`` option names a built-in set (the organism's own of that name is read on the organism)."""
    from ..datasets import available

    if value not in available() or value.startswith("organism/"):
        raise ValueError(f"corpus must name a built-in set ({', '.join(n for n in available() if '/' not in n)}); "
                         f"got {value!r}")


def corpus_params(what: str, n_texts: int) -> tuple:
    """The options every corpus-reading section takes: ``corpus``, ``data``, ``n_texts`` (default ``n_texts``),
    ``max_tokens``."""
    from ._section import Param

    return (
        Param("corpus", str, "languages", f"built-in set whose texts (every split) {what} (the organism's own set of "
                                          "that name on the bundled organism; with --data, the public folder's: "
                                          "languages is then Django's translated message catalogues)",
              validate=check_corpus_name),
        Param("data", str, None, "your corpus instead: one JSON/JSONL/CSV file with a text field (text, statement, "
                                 "prompt, instruction or sentence; labels ignored, a group column draws its rows "
                                 "together in the bootstrap); every row is read, at most n_texts drawn with the seed; "
                                 "checked before any model boots", validate=check_corpus_file),
        Param("n_texts", int, n_texts, "most corpus texts read (a seeded draw, kept in corpus order); cost grows "
                                       "linearly", low=2),
        Param("max_tokens", int, 32, "most tokens read per text after BOS (the first ones; the BOS position itself "
                                     "is never read)", low=1),
    )


def check_corpus_choice(section: str, options: dict, given: frozenset) -> None:
    """Refuse a corpus name and a corpus file given together (the file would win, the name silently ignored).

    Raises:
        ValueError: both ``corpus`` and ``data`` given explicitly.
    """
    if {"corpus", "data"} <= given and options["data"] is not None:
        flag = section.replace("_", "-")
        raise ValueError(f"{section}: give either a built-in corpus (--{flag}-corpus {options['corpus']}) or your "
                         f"file (--{flag}-data {options['data']}), not both")


def load_corpus(ctx, corpus: str, data: str | None, n_texts: int, seed: int) -> Corpus:
    """The texts a section reads (module docstring): the user's file when ``data`` names one, else the set
    ``corpus`` (the organism's own on the bundled organism, ``ctx.data``'s where it provides it)."""
    from ..datasets import available, load

    if data is not None:
        ps, where = _corpus_file(data), f"{data}"
    else:
        name = f"organism/{corpus}" if ctx.is_organism and f"organism/{corpus}" in available() else corpus
        loader = ctx.data.load if ctx.data is not None and not ctx.is_organism else load
        ps = loader(name, "all")
        where = f"{name} ({ps.source})" if ps.source and ps.source != name else name
    return draw_texts(ps.texts, ps.meta, n_texts, seed, where)


def as_corpus(texts: Sequence[str], meta, source: str) -> Corpus:
    """Every one of ``texts``, each with its group (``meta["group"]``, else a group of its own).

    Raises:
        ValueError: fewer than 2 texts.
    """
    texts = tuple(texts)
    if len(texts) < 2:
        raise ValueError(f"the corpus {source!r} has {len(texts)} text(s); at least 2 are needed")
    return Corpus(texts, _groups(texts, meta, range(len(texts))), source)


def _groups(texts: Sequence[str], meta, rows) -> tuple[str, ...]:
    """The group of each of ``rows``: ``meta["group"]``, else a group of its own; a text repeated (the same
    string) joins the group of its first occurrence, so repeats are resampled as one text, never as independent
    evidence (six copies of one text are one group: no interval)."""
    meta = list(meta) if meta else [{}] * len(texts)
    first: dict[str, str] = {}
    out = []
    for i in rows:
        own = str((meta[i] or {}).get("group", f"text:{i}"))
        out.append(first.setdefault(texts[i], own))
    return tuple(out)


def draw_texts(texts: Sequence[str], meta, n_texts: int, seed: int, where: str) -> Corpus:
    """At most ``n_texts`` of ``texts`` drawn with ``seed`` (kept in their order), each with its group
    (``meta["group"]``, else a group of its own).

    Raises:
        ValueError: fewer than 2 texts.
    """
    texts = list(texts)
    if len(texts) < 2:
        raise ValueError(f"the corpus {where!r} has {len(texts)} text(s); at least 2 are needed")
    rows = np.arange(len(texts))
    if len(texts) > n_texts:
        rows = np.sort(np.random.default_rng(seed).choice(len(texts), n_texts, replace=False))
    groups = _groups(texts, meta, rows)
    drawn = (f"all {len(texts)} texts" if len(rows) == len(texts) else
             f"{len(rows)} texts drawn with the seed from {len(texts)}")
    return Corpus(tuple(texts[i] for i in rows), groups, f"{where}: {drawn}, every split")


# ------------------------------------------------------------------------------------------------ states


@dataclass(frozen=True)
class States:
    """``resid_post`` of every block at every kept token, in both models, row for row.

    Attributes:
        X: ``{"base": [layer, n, d], "post": [layer, n, d]}`` float32 on the CPU.
        text: ``[n]`` the index (into the texts) of each row's text.
        position: ``[n]`` each row's token index in its tokenised text (BOS, where there is one, is 0).
        token_ids: ``[n]`` the token at each row.
        next_ids: ``[n]`` the token that follows it in the whole (untruncated) text, -1 at the text's end.
        groups: ``[n]`` the bootstrap group of each row's text.
        rows: the :class:`~interp.collection.TokenActivations` of the last layer of base (for decoding context).
        encodings: the texts' :class:`~interp.tokens.Encoding` as read (truncated; BOS included where there is one).
    """

    X: dict
    text: np.ndarray
    position: np.ndarray
    token_ids: np.ndarray
    next_ids: np.ndarray
    groups: np.ndarray
    rows: object
    encodings: tuple

    @property
    def n(self) -> int:
        return int(len(self.text))

    @property
    def n_texts(self) -> int:
        return int(len(np.unique(self.text)))

    @property
    def n_groups(self) -> int:
        return int(len(np.unique(self.groups)))


def _truncated(toks, max_tokens: int):
    """``toks`` with each encoding cut after ``max_tokens`` tokens past BOS (nothing re-tokenised)."""
    from ..tokens import Encoding, Tokenized

    encs = []
    for e in toks.encodings:
        keep = (1 if e.has_bos else 0) + max_tokens
        encs.append(Encoding(e.ids[:keep], e.spans[:keep], e.bos_added, e.has_bos))
    return Tokenized(toks.texts, tuple(encs), toks.bos, toks.key)


def token_states(pair, corpus: Corpus, *, max_tokens: int, batch_size: int, progress: bool = True) -> States:
    """Both models' ``resid_post`` at every block over the corpus (module docstring), one forward pass per batch
    per model (:func:`interp.collection.collect_tokens_by_layer`).

    Raises:
        ValueError: no text has a token besides BOS, or the two models read different tokens (their tokenizers
            split a text differently: the rows could not be paired).
    """
    from ..collection import collect_tokens_by_layer
    from ._section import tokens_for

    full = tokens_for(pair, list(corpus.texts))
    X, first, read = {}, {}, {}
    for m, model in pair:
        read[m] = _truncated(full[m], max_tokens)
        by_layer = collect_tokens_by_layer(model, read[m], "resid_post", None, batch_size=batch_size,
                                           progress=progress)
        layers = sorted(by_layer)
        X[m] = torch.stack([by_layer[layer].X for layer in layers])
        first[m] = by_layer[layers[-1]]
    a, b = first["base"], first["post"]
    if not (torch.equal(a.token_ids, b.token_ids) and torch.equal(a.prompt, b.prompt)):
        raise ValueError("base and post tokenise the corpus differently (other token ids or BOS handling): their "
                         "token rows cannot be paired; compare models that share a tokenizer")
    text, position = a.prompt.numpy(), a.position.numpy()
    encs = full["base"].encodings
    next_ids = np.array([encs[t].ids[p + 1] if p + 1 < len(encs[t].ids) else -1 for t, p in zip(text, position)])
    groups = np.array([corpus.groups[t] for t in text])
    return States(X, text, position, a.token_ids.numpy(), next_ids, groups, a, read["base"].encodings)


# ------------------------------------------------------------------------------------------------ intervals


def group_intervals(statistic: Callable[[np.ndarray], np.ndarray], groups: np.ndarray, *, seed: int,
                    n_resamples: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile bootstrap interval of each entry of ``statistic(rows)`` (an array), resampling whole groups of
    rows (:func:`probes.stats.cluster_bootstrap_ci`, seeded): ``(low, high)``; an entry is NaN (undefined) where a
    resample's statistic is. ``None`` with fewer than :data:`MIN_GROUPS` groups."""
    from probes.stats import cluster_bootstrap_ci

    if len(np.unique(groups)) < MIN_GROUPS:
        return None
    undefined: list[np.ndarray] = []

    def stat(rows):
        value = np.asarray(statistic(rows), dtype=np.float64)
        undefined.append(~np.isfinite(value))
        return np.where(np.isfinite(value), value, 0.0)  # marked undefined below

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined resample: recorded in ``undefined``
        low, high = cluster_bootstrap_ci(stat, groups, seed=seed, n_resamples=n_resamples)
    bad = np.any(undefined, axis=0)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def jackknife_blocks(groups: np.ndarray, n_blocks: int, seed: int) -> np.ndarray:
    """``[n]`` the jackknife block of each row: the distinct groups, in a seeded order, dealt to
    ``min(n_blocks, groups)`` blocks in turn (a group's rows share its block)."""
    names, index = np.unique(groups, return_inverse=True)
    k = min(n_blocks, len(names))
    block_of_group = np.empty(len(names), dtype=int)
    block_of_group[np.random.default_rng(seed).permutation(len(names))] = np.arange(len(names)) % k
    return block_of_group[index]


def jackknife_intervals(statistic: Callable[[np.ndarray], np.ndarray], groups: np.ndarray, estimate: np.ndarray, *,
                        seed: int, n_blocks: int) -> tuple[np.ndarray, np.ndarray] | None:
    """95% delete-a-group jackknife interval of each entry of ``statistic(rows)`` (an array; ``estimate`` its value
    on every row): the groups are dealt to ``K = min(n_blocks, groups)`` blocks (:func:`jackknife_blocks`), the
    statistic is recomputed with each block left out, ``SE^2 = (K - 1)/K * sum_k (theta_k - mean theta)^2``
    (Efron & Tibshirani 1993, eq. 11.5, with blocks of groups in place of single rows: Kott 2001's delete-a-group
    jackknife), and the interval is ``estimate -+ t_{0.975, K-1} SE``. An entry is NaN (undefined) where the
    estimate or a replicate is not finite. ``None`` with fewer than :data:`MIN_GROUPS` blocks.

    Used for statistics of a whole token matrix (CKA, RankMe, alpha-ReQ), whose percentile bootstrap is biased by
    the texts a resample repeats: a repeated text adds no new direction, so a resample's spectrum decays faster
    than the sample's (at gemma-3-270m's last layer all of 100 bootstrap RankMe values lay below the estimate and all
    alpha-ReQ values above it; :mod:`interp.compare.geometry`)."""
    from scipy.stats import t as student

    block = jackknife_blocks(groups, n_blocks, seed)
    k = int(block.max()) + 1
    if k < MIN_GROUPS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined replicate: NaN, marked below
        reps = np.stack([np.asarray(statistic(np.flatnonzero(block != b)), dtype=np.float64) for b in range(k)])
    estimate = np.asarray(estimate, dtype=np.float64)
    se = np.sqrt((k - 1) / k * ((reps - reps.mean(0)) ** 2).sum(0))
    half = float(student.ppf(0.975, k - 1)) * se
    bad = ~np.isfinite(reps).all(0) | ~np.isfinite(estimate)
    return np.where(bad, np.nan, estimate - half), np.where(bad, np.nan, estimate + half)
