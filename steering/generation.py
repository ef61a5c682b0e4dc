"""Batched generation with interventions active.

:func:`generate` left-pads each batch, runs the prompt once, then decodes one
token at a time from TransformerLens' KV cache (``return_type=
"logits_and_cache"``), with the interventions' hooks attached for the whole
call and told where the prompt ends (so ``positions="generated"`` acts on
exactly the generated tokens). The cache is checked to hold every token fed so
far after each step (:func:`interp.kv_cache.check_cache_grew`): a cache that
does not grow raises :class:`interp.kv_cache.KVCacheError` rather than decoding
wrongly. Greedy by default; ``do_sample=True`` samples
with temperature, top-k and top-p, reproducibly for a ``seed``.
"""

from __future__ import annotations

import math
import warnings

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from interp._progress import tqdm

from interp._checks import as_int
from interp.generation import last_position_only
from interp.kv_cache import check_cache_grew, kv_cache_compat
from interp.models import tokenizer_of
from interp.tokens import BosPolicy, Tokenized, as_tokenized, pad_id, stop_token_ids

from .interventions import apply, prompt_window

__all__ = ["generate", "greedy_with_first_step", "Generation"]


@dataclass(frozen=True)
class Generation:
    """One prompt's continuation: ``text`` (special tokens dropped) and the generated ``token_ids``."""

    prompt: str
    text: str
    token_ids: tuple[int, ...]


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix reaching top_p (the first token always)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.inference_mode()
def generate(
    model,
    prompts: Sequence[str] | str | Tokenized,
    vectors=None,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    batch_size: int = 16,
    bos: BosPolicy = "auto",
    stop_tokens: Sequence[str] = (),
    stop_at_eos: bool = True,
    use_cache: bool = True,
    progress: bool = False,
    return_details: bool = False,
) -> list[str] | list[Generation]:
    """Continue each prompt with the interventions in ``vectors`` active.

    Args:
        model: a ``TransformerBridge`` (see :func:`interp.load_model`).
        prompts: text prompts, already chat-formatted if wanted
            (:meth:`interp.ModelPair.format`), or the same already tokenised
            (:func:`interp.tokens.tokenize`, under the same ``bos``).
        vectors: ``None``, a :class:`SteeringVector` (added with its own scale
            at every position) or a list of vectors and
            :class:`~steering.Add`/:class:`~steering.Ablate`/:class:`~steering.Clamp`.
        max_new_tokens: tokens generated at most per prompt; a row stops at EOS
            and at the chat's end-of-turn token(s) of the model's tokenizer
            (:func:`interp.tokens.end_of_turn_tokens`: ``<end_of_turn>``,
            ``<|im_end|>``, ``<|eot_id|>``, ...), unless ``stop_at_eos=False``,
            or at a token of ``stop_tokens`` (e.g. ``["<|end|>"]``; give the
            pair's end-of-turn token here for a base model whose tokenizer has
            no chat template of its own).
        do_sample, temperature, top_k, top_p, seed: sampling; greedy when
            ``do_sample`` is false (``temperature``, ``top_k`` and ``top_p``
            are then ignored, with a warning when they are not the defaults).
        use_cache: decode from the KV cache (the default); ``False`` re-runs
            the whole sequence each step (a reference for tests).
        return_details: return :class:`Generation` records instead of strings.

    Returns:
        The continuations (text after the prompt), in prompt order.

    Raises:
        ValueError: empty ``prompts``, ``max_new_tokens < 1``, ``temperature``
            not a finite number > 0 when sampling, ``top_k < 1``, ``top_p``
            outside (0, 1], a stop token that is not one vocabulary entry.
        TypeError: ``top_k`` not an int (or None), ``seed`` not an int (or
            None), ``stop_tokens`` given as one string instead of a list.
        interp.kv_cache.KVCacheError: with ``use_cache``, the model's cache did
            not hold every token fed so far after a step.
        FloatingPointError: non-finite next-token logits (an intervention
            overflowed the activations, or the weights hold NaN/inf).

    Warns:
        UserWarning: ``temperature``, ``top_k`` or ``top_p`` other than the
            defaults without ``do_sample=True`` (greedy decoding ignores them);
            prompts that leave fewer than ``max_new_tokens`` tokens of the
            model's context.
    """
    out, _ = _generate(
        model, prompts, vectors, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed, batch_size=batch_size, bos=bos, stop_tokens=stop_tokens,
        stop_at_eos=stop_at_eos, use_cache=use_cache, progress=progress,
    )
    return out if return_details else [g.text for g in out]


def greedy_with_first_step(
    model, prompts: Sequence[str] | Tokenized, interventions=None, *, max_new_tokens: int, batch_size: int = 32,
    stop_tokens: Sequence[str] = (), return_details: bool = False,
) -> tuple[list[str] | list[Generation], Float[torch.Tensor, "n_prompts d_vocab"]]:
    """Greedy continuations of ``prompts`` under ``interventions`` and the next-token log-probabilities
    after each prompt, read from the generation's first step: the same left-padded batches and forward
    pass as :func:`steering.metrics.next_token_logprobs` with this ``batch_size``, so the distribution
    costs no pass of its own.

    Returns:
        ``(texts, logprobs)``: the continuations in prompt order (:class:`Generation` records, with the token ids
        as generated, when ``return_details``) and ``[n_prompts, d_vocab]`` float32 log-probabilities on the CPU.

    Raises:
        ValueError: as :func:`generate`, and ``max_new_tokens < 1`` (no first step to read).
    """
    gens, first = _generate(model, prompts, interventions, max_new_tokens=max_new_tokens, do_sample=False,
                            temperature=1.0, top_k=None, top_p=None, seed=None, batch_size=batch_size, bos="auto",
                            stop_tokens=stop_tokens, stop_at_eos=True, use_cache=True, progress=False,
                            keep_first=True)
    return (gens if return_details else [g.text for g in gens]), first


@torch.inference_mode()
def _generate(
    model, prompts, vectors=None, *, max_new_tokens, do_sample, temperature, top_k, top_p, seed, batch_size,
    bos, stop_tokens, stop_at_eos, use_cache, progress, keep_first: bool = False,
) -> tuple[list[Generation], torch.Tensor | None]:
    """:func:`generate`'s work; with ``keep_first`` also the first step's log-probabilities ``[n, d_vocab]``
    (float32, CPU; the next-token distribution after each prompt under the interventions, from the same
    forward pass that picks the first token), else None."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not len(prompts):
        raise ValueError("prompts is empty")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1 (0 would generate nothing and return empty texts), "
                         f"got {max_new_tokens!r}")
    if do_sample and not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be > 0 and finite when sampling, got {temperature}"
                         + (" (an infinite temperature samples uniformly from the vocabulary)"
                            if temperature == float("inf") else ""))
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None:
        if as_int(top_k) is None:
            raise TypeError(f"top_k must be an int >= 1 or None, got {top_k!r}")
        top_k = as_int(top_k)
        if top_k < 1:
            raise ValueError(f"top_k must be an int >= 1 or None, got {top_k}")
    if seed is not None:
        if as_int(seed) is None:
            raise TypeError(f"seed must be an int (or None for a fresh draw), got {seed!r}")
        seed = as_int(seed)
    if not do_sample:
        ignored = [f"{name}={value!r}" for name, value, default in
                   (("temperature", temperature, 1.0), ("top_k", top_k, None), ("top_p", top_p, None))
                   if value is not default and value != default]
        if ignored:  # stacklevel: _generate, its inference_mode wrapper, generate, its wrapper, the caller
            warnings.warn(f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored without "
                          "do_sample=True: decoding is greedy; pass do_sample=True to sample", stacklevel=5)
    if max_new_tokens == 1:
        from .interventions import _as_interventions

        idle = [type(it).__name__ for it in _as_interventions(vectors)
                if getattr(it, "positions", None) in ("generated", ["generated"], ("generated",))]
        if idle:  # stacklevel: _generate, its inference_mode wrapper, generate, its wrapper, the caller
            warnings.warn(f"{', '.join(idle)} with positions='generated' steers the tokens fed back after the first "
                          "new one; with max_new_tokens=1 none is, so the output is unsteered", stacklevel=5)
    tok = tokenizer_of(model)
    n_ctx = int(model.cfg.n_ctx)
    stops = stop_token_ids(tok, stop_tokens, eos=stop_at_eos)  # EOS stays a stop even where it is also UNK (GPT-2)
    toks = as_tokenized(model, prompts, bos=bos)
    device = model.cfg.device or "cpu"
    stop_ids = torch.tensor(sorted(stops), device=device, dtype=torch.long)  # may be empty
    gen = None
    if do_sample:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
    pad = pad_id(tok)
    out: list[Generation] = []
    first: list[torch.Tensor] = []
    keep = last_position_only(model)
    bar = tqdm(total=len(toks), desc="generate", disable=not progress, unit="prompt")
    with kv_cache_compat(model), apply(model, vectors):
        for rows, batch in toks.batches(batch_size, pad_id=pad, device=device):
            ids, mask = batch.input_ids, batch.attention_mask
            prompt_len = ids.shape[1]
            steps = min(max_new_tokens, n_ctx - prompt_len)
            if keep_first and steps < 1:
                raise ValueError(f"no first step to keep: max_new_tokens={max_new_tokens}, prompt of {prompt_len} "
                                 f"tokens in a context of {n_ctx}")
            if steps < max_new_tokens:
                warnings.warn(f"prompts of {prompt_len} tokens (padded) leave {steps} of the {max_new_tokens} new "
                              f"tokens asked for in the model's context of {n_ctx}; their continuations stop there",
                              stacklevel=3)
            new = torch.empty((ids.shape[0], 0), dtype=torch.long, device=device)
            done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
            cache = None
            for step in range(steps):
                with prompt_window(prompt_len, 0 if (step == 0 or not use_cache) else ids.shape[1] - 1):
                    if not use_cache:
                        logits = model(ids, attention_mask=mask, **keep)
                    elif cache is None:
                        logits, cache = model(ids, attention_mask=mask, return_type="logits_and_cache", **keep)
                    else:
                        logits, cache = model(ids[:, -1:], attention_mask=mask, past_key_values=cache,
                                              return_type="logits_and_cache")
                    if use_cache:
                        check_cache_grew(cache, ids.shape[1])  # never decode silently from a cache that lost tokens
                logits = logits[:, -1].float()
                if not bool(torch.isfinite(logits).all()):
                    raise FloatingPointError(
                        f"non-finite next-token logits at generation step {step}: an intervention overflowed the "
                        f"model's {str(model.cfg.dtype).removeprefix('torch.')} activations (a scale or clamp value "
                        "too large?), or the weights hold NaN/inf; the text would come back empty")
                if keep_first and step == 0:
                    first.append(logits.log_softmax(-1).cpu())
                if do_sample:
                    probs = _filter_logits(logits / temperature, top_k, top_p).softmax(-1)
                    nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]
                else:
                    nxt = logits.argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                new = torch.cat([new, nxt[:, None]], 1)
                done |= torch.isin(nxt, stop_ids)
                if done.all() or step == steps - 1:
                    break
                ids = torch.cat([ids, nxt[:, None]], 1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            for i, row in enumerate(new.tolist()):
                cut = next((j for j, t in enumerate(row) if t in stops), len(row))
                kept = tuple(row[:cut])
                text = tok.decode(list(kept), skip_special_tokens=True)
                out.append(Generation(toks.texts[rows[i]], text, kept))
            bar.update(ids.shape[0])
    bar.close()
    return out, (torch.cat(first) if keep_first else None)
