"""Training a byte-level BPE tokenizer (shared by the tiny test models and the model organism)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["train_byte_bpe"]


def train_byte_bpe(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    *,
    pre_tokenizers_before: Sequence = (),
    byte_level_regex: bool = True,
    normalizer=None,
    bos: str | None = None,
):
    """A ``tokenizers.Tokenizer``: byte-level BPE over the full byte alphabet (no unknown tokens).

    Args:
        pre_tokenizers_before: pre-tokenizers applied before the byte-level one
            (e.g. one digit per token).
        byte_level_regex: let the byte-level pre-tokenizer split on its GPT-2 regex.
        bos: a token the tokenizer prepends to every text (its post-processor);
            ``None`` adds nothing.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=byte_level_regex)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([*pre_tokenizers_before, byte_level]) if pre_tokenizers_before else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok
