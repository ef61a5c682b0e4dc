"""Next-token logits and greedy generation with the toolkit's tokenisation.

Both take plain text prompts, tokenise them with the model's own tokenizer
under the BOS policy of :mod:`interp.tokens` (or read them already tokenised, a
:class:`~interp.tokens.Tokenized`), and run left-padded batches
(padding is masked and positions follow the mask, so a prompt's result does not
depend on its batch).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from jaxtyping import Float

from .models import tokenizer_of
from .tokens import BosPolicy, Tokenized, as_tokenized, pad_id, stop_token_ids

__all__ = ["next_token_logits", "greedy_generate", "last_position_only"]


def last_position_only(model) -> dict:
    """Forward kwargs that make the model unembed only the last position: ``{"logits_to_keep": 1}``.

    Where the Hugging Face model behind the bridge takes ``logits_to_keep`` (Llama, Gemma, Qwen, ...
    in transformers 5), the returned logits are ``[batch, 1, d_vocab]`` and the unembedding of every
    other position, never read when only the next token matters, is skipped: about a fifth of
    SmolLM2-135M's FLOPs per token and more than half of Gemma-3-270M's (262k vocabulary). Empty
    (full ``[batch, pos, d_vocab]`` logits) for models without it (GPT-2 in transformers 5).
    """
    hf = getattr(model, "original_model", None)
    try:
        ok = hf is not None and "logits_to_keep" in inspect.signature(hf.forward).parameters
    except (TypeError, ValueError):
        ok = False
    return {"logits_to_keep": 1} if ok else {}


@torch.inference_mode()
def next_token_logits(
    model, prompts: Sequence[str] | Tokenized, *, batch_size: int = 32, bos: BosPolicy = "auto"
) -> Float[torch.Tensor, "n_samples d_vocab"]:
    """Logits of the token after each prompt, float32 on the CPU.

    Raises:
        ValueError: empty ``prompts``; as :func:`interp.tokens.as_tokenized`.
    """
    toks = as_tokenized(model, prompts, bos=bos)
    if not len(toks):
        raise ValueError("prompts is empty")
    device = model.cfg.device or "cpu"
    keep = last_position_only(model)
    out = []
    for _, batch in toks.batches(batch_size, pad_id=pad_id(tokenizer_of(model)), device=device):
        logits = model(batch.input_ids, attention_mask=batch.attention_mask, **keep)
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out)


@torch.inference_mode()
def greedy_generate(
    model,
    prompts: Sequence[str] | Tokenized,
    *,
    max_new_tokens: int = 16,
    batch_size: int = 32,
    bos: BosPolicy = "auto",
    stop_tokens: Sequence[str] = (),
) -> list[str]:
    """Greedy continuations (text after the prompt, special tokens dropped).

    Generation of a row stops at EOS, at the chat's end-of-turn token(s)
    (:func:`interp.tokens.end_of_turn_tokens`) or at any token in ``stop_tokens``; the
    whole batch stops when every row has. No KV cache: meant for short
    continuations of small models (evaluation, tests).
    """
    tok = tokenizer_of(model)
    stops = stop_token_ids(tok, stop_tokens)
    toks = as_tokenized(model, prompts, bos=bos)
    device = model.cfg.device or "cpu"
    keep = last_position_only(model)
    texts = []
    for _, batch in toks.batches(batch_size, pad_id=pad_id(tok), device=device):
        ids, mask = batch.input_ids, batch.attention_mask
        new = torch.empty((ids.shape[0], 0), dtype=torch.long, device=device)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            if ids.shape[1] >= model.cfg.n_ctx:
                break
            nxt = model(ids, attention_mask=mask, **keep)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id(tok)), nxt)
            new = torch.cat([new, nxt[:, None]], 1)
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            done |= torch.isin(nxt, torch.tensor(sorted(stops), device=device))
            if done.all():
                break
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            texts.append(tok.decode(row[:cut], skip_special_tokens=True))
    return texts
