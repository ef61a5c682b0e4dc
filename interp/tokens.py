"""The toolkit's own tokenisation, with an explicit BOS policy.

``TransformerBridge.to_tokens`` prepends a BOS token by default. That is wrong
in two common cases, so the toolkit tokenises itself and hands the bridge token
ids:

* a chat template usually writes the BOS token into the text already, so a
  second one would be prepended (a double BOS);
* a tokenizer without a BOS token (Qwen2.5) makes TransformerLens substitute the
  EOS token, which can differ between a base and an instruct model.

Policy ``"auto"`` (the default) therefore makes every prompt start with exactly
one BOS token when the tokenizer has one, and adds nothing when it has none.
``"never"`` adds nothing. Special-token strings written in the text (such as a
chat template's ``<|im_start|>``) are parsed as special tokens.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Int

from ._checks import check_int

__all__ = ["BosPolicy", "Encoding", "Batch", "Tokenized", "encode", "tokenize", "as_tokenized", "pad_batch", "pad_id",
           "end_of_turn_tokens", "length_batches", "stop_token_ids", "display_token", "shown_whitespace"]

BosPolicy = Literal["auto", "never"]


@dataclass(frozen=True)
class Encoding:
    """One tokenised prompt (no padding).

    Attributes:
        ids: token ids, BOS included when the policy added or kept one.
        spans: ``(start, end)`` character span in the text of each token; the
            BOS added by the policy has the empty span ``(0, 0)``.
        bos_added: whether the policy prepended a BOS token.
        has_bos: whether the first token is the BOS token (added by the
            policy or written in the text by a chat template).
    """

    ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    bos_added: bool
    has_bos: bool

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Batch:
    """A padded batch.

    Attributes:
        input_ids: ``[batch, pos]`` token ids; padded slots hold ``pad_id``.
        attention_mask: ``[batch, pos]``, 1 on real tokens, 0 on padding.
        start: ``[batch]`` index of each row's first real token (non-zero only
            with left padding).
        length: ``[batch]`` number of real tokens per row.
    """

    input_ids: Int[torch.Tensor, "batch pos"]
    attention_mask: Int[torch.Tensor, "batch pos"]
    start: Int[torch.Tensor, " batch"]
    length: Int[torch.Tensor, " batch"]


def encode(
    tokenizer,
    texts: Sequence[str],
    *,
    bos: BosPolicy = "auto",
    max_length: int | None = None,
    first: int = 0,
) -> list[Encoding]:
    """Tokenise ``texts`` under the BOS policy ``bos``.

    ``first`` is the number of ``texts[0]`` in a longer list, for error messages
    when a caller tokenises a long list a slice at a time.

    Raises:
        ValueError: on an empty text, an unknown policy, or a prompt longer
            than ``max_length`` tokens (the model's context).
    """
    if bos not in ("auto", "never"):
        raise ValueError(f"bos must be 'auto' or 'never', got {bos!r}")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t:
            raise ValueError(f"prompt {first + i} is empty or not a string: {t!r}")
    if not texts:
        return []
    bos_id = tokenizer.bos_token_id
    enc = tokenizer(
        list(texts), add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
    )
    out = []
    for i, (ids, spans) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
        ids, spans = list(ids), [tuple(s) for s in spans]
        added = bos == "auto" and bos_id is not None and (not ids or ids[0] != bos_id)
        if added:
            ids, spans = [bos_id, *ids], [(0, 0), *spans]
        if max_length is not None and len(ids) > max_length:
            raise ValueError(
                f"prompt {first + i} is {len(ids)} tokens long, more than the model's context of "
                f"{max_length} tokens: shorten it or drop it ({texts[i][:60]!r}...)"
            )
        has_bos = bos_id is not None and bool(ids) and ids[0] == bos_id
        out.append(Encoding(tuple(ids), tuple(spans), added, has_bos))
    return out


def pad_id(tokenizer) -> int:
    """Id used for padded slots: the pad token, else EOS, else 0 (padding is masked out either way)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def pad_batch(
    encodings: Sequence[Encoding],
    *,
    pad_id: int,
    padding_side: Literal["left", "right"] = "left",
    device: torch.device | str | None = None,
) -> Batch:
    """Pad encodings into one batch. Padded slots are masked out (mask 0)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not encodings:
        raise ValueError("cannot pad an empty batch")
    lengths = torch.tensor([len(e) for e in encodings])
    width = int(lengths.max())
    ids = torch.full((len(encodings), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    start = width - lengths if padding_side == "left" else torch.zeros_like(lengths)
    for row, e in enumerate(encodings):
        s = int(start[row])
        ids[row, s : s + len(e)] = torch.tensor(e.ids)
        mask[row, s : s + len(e)] = 1
    return Batch(ids.to(device), mask.to(device), start.to(device), lengths.to(device))


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped into as few batches as ``batch_size`` allows, rows of similar length together.

    The rows are sorted by length (ties keep their order) and cut into ``ceil(n / batch_size)`` batches of
    near-equal size, so a padded batch spends little on padding: Arditi et al.'s 260 harmless training
    requests under Gemma-3's chat template (5,465 tokens) fill 8,644 token slots in batches of 32 taken in
    prompt order and 5,925 in these. For passes whose result per row does not depend on which rows share
    its batch (up to floating-point summation order); callers put the rows back in prompt order.

    Args:
        lengths: ``[n]`` token counts.
        batch_size: most rows per batch, ``>= 1``.

    Returns:
        Batches of indices into ``lengths``, shortest rows first; every index appears once.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    batch_size = check_batch_size(batch_size)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if not order:
        return []
    n_batches = -(-len(order) // batch_size)
    cuts = [round(k * len(order) / n_batches) for k in range(n_batches + 1)]
    return [order[a:b] for a, b in zip(cuts, cuts[1:])]


def end_of_turn_tokens(tokenizer) -> tuple[str, ...]:
    """The special token(s) the tokenizer's chat template writes right after an assistant's reply: the
    chat's end-of-turn marker (``<end_of_turn>`` for Gemma, ``<|im_end|>`` for ChatML/Qwen, ``<|eot_id|>``
    for Llama-3, ``<|end|>`` for the bundled organism; ``</s>`` for Mistral, the EOS itself). A chat model
    writes it when its reply is done; what it generates after it is not part of the reply.

    Found by rendering a two-turn conversation with the template and reading which special tokens follow the
    reply's text. ``()`` for a tokenizer without a chat template, or one whose template writes no special token
    there (or refuses an assistant turn).
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return ()
    cached = getattr(tokenizer, "_interp_end_of_turn", None)
    if cached is not None and cached[0] == template:
        return cached[1]
    reply = "Qz7 reply text"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"},
                                              {"role": "assistant", "content": reply}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that raises on this conversation (jinja's own errors)
        text = ""
    found: list[str] = []
    if isinstance(text, str) and reply in text:
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}  # Gemma's <end_of_turn> is listed only here
        specials = set(getattr(tokenizer, "all_special_tokens", []) or []) | {
            t.content for t in added.values() if getattr(t, "special", False)}
        specials = sorted(specials, key=len, reverse=True)
        rest = text[text.rindex(reply) + len(reply):]
        while True:
            rest = rest.lstrip(" \n")
            hit = next((t for t in specials if t and rest.startswith(t)), None)
            if hit is None:
                break
            found.append(hit)
            rest = rest[len(hit):]
    out = tuple(dict.fromkeys(found))
    try:
        tokenizer._interp_end_of_turn = (template, out)
    except AttributeError:
        pass
    return out


def stop_token_ids(tokenizer, stop_tokens=(), *, eos: bool = True, end_of_turn: bool | None = None) -> set[int]:
    """Ids that end a generated row: the tokenizer's EOS (when ``eos``), the chat's end-of-turn token(s)
    (:func:`end_of_turn_tokens`; when ``end_of_turn``, which defaults to ``eos``) and each of ``stop_tokens``.

    Each stop token must be one vocabulary entry (e.g. ``"<|im_end|>"``, or a byte-level spelling such
    as ``"Ċ"`` for a newline); a string the vocabulary does not hold would otherwise map to the UNK id
    and never match.

    Raises:
        TypeError: ``stop_tokens`` given as one string (it would be read character by character).
        ValueError: a stop token that is not a single vocabulary entry.
    """
    if isinstance(stop_tokens, (str, bytes)):
        raise TypeError(f"stop_tokens takes a list of vocabulary entries, e.g. [{stop_tokens!r}], not a single "
                        "string (a string would be read as one stop token per character)")
    stops = {int(tokenizer.eos_token_id)} if eos and tokenizer.eos_token_id is not None else set()
    if eos if end_of_turn is None else end_of_turn:
        stops |= {int(tokenizer.convert_tokens_to_ids(t)) for t in end_of_turn_tokens(tokenizer)}
    # one lookup per stop token (a vocabulary dict of 262k entries costs more than a decoding step to build)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in stop_tokens}
    missing = [t for t, i in ids.items() if i is None or tokenizer.convert_ids_to_tokens(int(i)) != t]
    if missing:
        raise ValueError(
            f"stop token(s) {missing} are not single tokens of this tokenizer; give vocabulary entries "
            f"(e.g. {tokenizer.convert_ids_to_tokens(tokenizer.encode(missing[0], add_special_tokens=False))})"
        )
    return stops | {int(i) for i in ids.values()}


@functools.lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """The byte each character of a byte-level BPE vocabulary stands for (GPT-2's ``bytes_to_unicode``, as
    transformers ships it, inverted)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def display_token(tokenizer, token_id: int) -> str:
    """One token's text for display, with the bytes of a partial UTF-8 character written ``<0xE2>``.

    ``tokenizer.decode([token_id])`` of a token that holds only some of a multi-byte character's bytes
    (byte-level BPE splits accented, CJK and emoji characters into such tokens) gives U+FFFD, and every such
    token then reads the same. Here:

    * a token whose decoded text has no U+FFFD is shown as decoded;
    * a byte-level BPE token (GPT-2, Llama 3, Qwen, the bundled organism): the vocabulary entry's characters
      are mapped back to the bytes they stand for; bytes that form whole characters are shown as those
      characters and the others as ``<0xNN>`` (the entry ``"ĠâĢ"``, bytes ``20 E2 80``, reads
      ``" <0xE2><0x80>"``);
    * a SentencePiece byte-fallback token (Gemma, Llama 2: the entry is ``<0xE2>`` itself) is shown as its
      entry;
    * anything else as decoded.

    A vocabulary entry whose own text is ``<0xNN>`` would read the same as a byte; no tokenizer of the toolkit's
    families holds one. Newlines, tabs and carriage returns are written ``\\n``, ``\\t``, ``\\r`` (a newline token
    would otherwise show as a blank in a table).
    """
    return shown_whitespace(_bytes_shown(tokenizer, int(token_id)))


def from_a_word(text: str) -> str:
    """``text`` from the whitespace before its second word, for text cut inside its first; ``text`` itself when
    it has no whitespace (a CJK run has no words to cut at)."""
    space = next((i for i, c in enumerate(text) if c.isspace()), None)
    return text if space is None else text[space:]


def shown_whitespace(text: str) -> str:
    """``text`` with newlines, tabs and carriage returns written ``\\n``, ``\\t``, ``\\r``: a token (or a
    short span of text) as a table cell shows it, where whitespace would read as a blank."""
    return text.translate(_CONTROLS_SHOWN)


#: Whitespace a table would show as a blank, written as its escape.
_CONTROLS_SHOWN = str.maketrans({"\n": "\\n", "\t": "\\t", "\r": "\\r"})


def _bytes_shown(tokenizer, token_id: int) -> str:
    """:func:`display_token` before its whitespace escapes."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if not isinstance(piece, str):
        return text
    if _BYTE_FALLBACK.fullmatch(piece):
        return piece.upper().replace("0X", "0x")
    byte_of = _byte_of_char()
    if piece and all(ch in byte_of for ch in piece):
        raw = bytes(byte_of[ch] for ch in piece)
        if raw.decode("utf-8", errors="replace") == text:  # the entry's bytes are what decode read
            shown = raw.decode("utf-8", errors="surrogateescape")  # invalid bytes as U+DC80..U+DCFF
            return "".join(f"<0x{ord(ch) - 0xDC00:02X}>" if "\udc80" <= ch <= "\udcff" else ch for ch in shown)
    return text


def _tokenizer_key(tokenizer) -> tuple[int, int | None, str]:
    """What :func:`encode`'s ids depend on beyond the texts: vocabulary size, BOS id and the vocabulary's
    sha256 (:func:`interp.models.vocab_digest`, computed once per tokenizer and size: a 262k vocabulary takes
    a fraction of a second)."""
    from .models import vocab_digest

    cached = getattr(tokenizer, "_interp_vocab_digest", None)
    if cached is None or cached[0] != len(tokenizer):
        cached = (len(tokenizer), vocab_digest(tokenizer))
        try:
            tokenizer._interp_vocab_digest = cached
        except AttributeError:  # a tokenizer that takes no attributes: digest every time
            pass
    return len(tokenizer), tokenizer.bos_token_id, cached[1]


@dataclass(frozen=True, eq=False)
class Tokenized:
    """A prompt set tokenised once, for every pass that reads it.

    A section reads one prompt set many times (a refusal score, mean activations, steered generations
    under a dozen interventions, ...). Each pass that takes ``Sequence[str] | Tokenized`` reuses these
    encodings instead of tokenising the texts again; :func:`tokenize` makes one, :func:`as_tokenized`
    checks one against the model a pass runs on.

    Attributes:
        texts: the prompts, ``[n]``.
        encodings: their :class:`Encoding`, ``[n]``, under ``bos``.
        bos: the BOS policy they were tokenised under.
        key: the tokenizer's vocabulary size, BOS id and vocabulary hash, checked against the model that
            reads them.
    """

    texts: tuple[str, ...]
    encodings: tuple[Encoding, ...]
    bos: BosPolicy
    key: tuple[int, int | None, str]
    lengths: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self):
        if len(self.texts) != len(self.encodings):
            raise ValueError(f"{len(self.texts)} texts but {len(self.encodings)} encodings")
        object.__setattr__(self, "lengths", tuple(len(e) for e in self.encodings))

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"Tokenized({len(self)} prompts, {sum(self.lengths)} tokens, bos={self.bos!r})"

    def select(self, rows: Sequence[int] | Sequence[bool] | torch.Tensor) -> Tokenized:
        """The prompts at ``rows`` (indices, or a ``[n]`` bool mask), in that order; nothing is re-tokenised.

        Raises:
            ValueError: a mask whose length is not ``len(self)``.
        """
        if isinstance(rows, torch.Tensor):
            rows = rows.tolist()
        rows = list(rows)
        if rows and all(isinstance(r, bool) for r in rows):
            if len(rows) != len(self):
                raise ValueError(f"a mask of {len(rows)} rows for {len(self)} prompts")
            rows = [i for i, keep in enumerate(rows) if keep]
        return Tokenized(tuple(self.texts[i] for i in rows), tuple(self.encodings[i] for i in rows), self.bos,
                         self.key)

    def __add__(self, other: Tokenized) -> Tokenized:
        """The prompts of ``self`` then those of ``other`` (same tokenizer and BOS policy)."""
        if not isinstance(other, Tokenized):
            return NotImplemented
        if (other.bos, other.key) != (self.bos, self.key):
            raise ValueError("cannot join prompts tokenised by different tokenizers or BOS policies")
        return Tokenized(self.texts + other.texts, self.encodings + other.encodings, self.bos, self.key)

    def batches(self, batch_size: int, *, pad_id: int, padding_side: Literal["left", "right"] = "left",
                device: torch.device | str | None = None, by_length: bool = False
                ) -> Iterator[tuple[list[int], Batch]]:
        """``(rows, batch)`` for consecutive batches of at most ``batch_size`` prompts, or with ``by_length``
        prompts of similar length together (:func:`length_batches`; callers put rows back in order).

        Raises:
            ValueError: ``batch_size < 1``.
        """
        batch_size = check_batch_size(batch_size)
        groups = (length_batches(self.lengths, batch_size) if by_length else
                  [list(range(b0, min(b0 + batch_size, len(self)))) for b0 in range(0, len(self), batch_size)])
        for rows in groups:
            yield rows, pad_batch([self.encodings[i] for i in rows], pad_id=pad_id, padding_side=padding_side,
                                  device=device)


def tokenize(tokenizer, texts: Sequence[str], *, bos: BosPolicy = "auto", max_length: int | None = None
             ) -> Tokenized:
    """Tokenise ``texts`` once (:func:`encode`) into a :class:`Tokenized` that every pass can read.

    ``tokenizer`` may also be a model (a ``TransformerBridge``): its own tokenizer is used and its context
    (``cfg.n_ctx``) is the default ``max_length``.

    Raises:
        ValueError: as :func:`encode`.
    """
    if hasattr(tokenizer, "cfg"):
        from .models import tokenizer_of

        max_length = int(tokenizer.cfg.n_ctx) if max_length is None else max_length
        tokenizer = tokenizer_of(tokenizer)
    if isinstance(texts, str):
        texts = [texts]
    texts = tuple(texts)
    return Tokenized(texts, tuple(encode(tokenizer, texts, bos=bos, max_length=max_length)), bos,
                     _tokenizer_key(tokenizer))


def as_tokenized(model, prompts: Sequence[str] | Tokenized, *, bos: BosPolicy = "auto") -> Tokenized:
    """``prompts`` tokenised for ``model``: texts are tokenised (:func:`tokenize`); a :class:`Tokenized` is
    checked against the model and returned as it is.

    Raises:
        ValueError: a :class:`Tokenized` made under another BOS policy or by a tokenizer with another
            vocabulary or BOS id, or holding a prompt longer than the model's context; and as
            :func:`encode` for texts.
    """
    from .models import tokenizer_of

    if not isinstance(prompts, Tokenized):
        return tokenize(model, prompts, bos=bos)
    if prompts.bos != bos:
        raise ValueError(f"these prompts were tokenised under bos={prompts.bos!r}, this pass runs bos={bos!r}: "
                         f"tokenise them again with interp.tokens.tokenize(model, texts, bos={bos!r})")
    key = _tokenizer_key(tokenizer_of(model))
    if prompts.key != key:
        raise ValueError(f"these prompts were tokenised by a tokenizer of {prompts.key[0]} tokens with BOS id "
                         f"{prompts.key[1]} (vocabulary {prompts.key[2][:12]}), this model's has {key[0]} tokens and "
                         f"BOS id {key[1]} (vocabulary {key[2][:12]}): tokenise them with this model's tokenizer")
    n_ctx = int(model.cfg.n_ctx)
    too_long = next((i for i, n in enumerate(prompts.lengths) if n > n_ctx), None)
    if too_long is not None:
        raise ValueError(f"prompt {too_long} is {prompts.lengths[too_long]} tokens long, more than the model's "
                         f"context of {n_ctx} tokens: shorten it or drop it ({prompts.texts[too_long][:60]!r}...)")
    return prompts


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int >= 1.

    Raises:
        ValueError: below 1. TypeError: not an integer (``None``, ``1.5``).
    """
    return check_int("batch_size", batch_size)
