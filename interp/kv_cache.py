"""The KV cache between Hugging Face models and TransformerLens' bridge, made explicit and checked.

Why this module exists. Cached decoding hands Hugging Face's cache object back
into the bridge (``model(ids, past_key_values=cache, return_type=
"logits_and_cache")``). The bridge replaces each HF attention module by an
attention bridge that extends the cache itself, reading it from the keyword
``past_key_values`` (or ``layer_past``). Since transformers 5.24 the decoder
layers of the Llama, Qwen2, Gemma, Mistral, ... families pass the cache to their
attention module as ``cache=`` (``past_key_values`` is a deprecated alias, kept
until 5.40, at the *model* level only). TransformerLens 4.3's attention bridge
never sees it: the cache comes back empty after the prompt, and every cached
decoding step attends to its own token alone — wrong text, and no error.

:func:`kv_cache_compat` fixes that at the hand-over: for the duration of a
``with`` block it attaches forward pre-hooks to the bridge's attention modules
that pass the layer's cache on under the name the bridge reads (the hooks are
removed on exit, also when the body raises). :func:`check_cache_grew` turns any
remaining mismatch (a future rename, an architecture whose attention bridge
keeps no cache) into a :class:`KVCacheError` instead of silently wrong decoding.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["KVCacheError", "kv_cache_compat", "cache_length", "check_cache_grew"]


class KVCacheError(RuntimeError):
    """The KV cache handed back by the model does not hold the tokens it was given."""


def _attention_modules(model) -> list[torch.nn.Module]:
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return [m for m in model.modules() if isinstance(m, AttentionBridge)]


def _alias_cache(module, args, kwargs):
    # transformers >= 5.24 passes the layer's cache as ``cache``; the bridge reads ``past_key_values``.
    cache = kwargs.get("cache")
    if cache is not None and kwargs.get("past_key_values") is None:
        kwargs = dict(kwargs)
        kwargs["past_key_values"] = cache
        return args, kwargs
    return None


@contextmanager
def kv_cache_compat(model) -> Iterator[object]:
    """Make the bridge's attention modules extend the KV cache whatever transformers calls it.

    Args:
        model: a ``TransformerBridge``.

    Within the block, every attention bridge that is called with ``cache=``
    (transformers >= 5.24) also gets it as ``past_key_values=`` (what
    TransformerLens 4.x reads); a call that already passes ``past_key_values``
    is left as it is. On older transformers nothing is passed as ``cache`` and
    the hooks do nothing. They are removed on exit, also when the body raises.
    transformers' deprecation warning for ``past_key_values`` (the rename these
    hooks cover) is silenced inside the block.
    """
    handles = [m.register_forward_pre_hook(_alias_cache, with_kwargs=True) for m in _attention_modules(model)]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)
            yield model
    finally:
        for h in handles:
            h.remove()


def cache_length(cache) -> int | None:
    """Number of positions a Hugging Face cache holds (``get_seq_length()``), ``None`` if it cannot say."""
    if cache is None:
        return None
    try:
        return int(cache.get_seq_length())
    except (AttributeError, TypeError):
        return None


def check_cache_grew(cache, expected: int) -> None:
    """Raise :class:`KVCacheError` unless ``cache`` holds exactly ``expected`` positions.

    Args:
        cache: the cache a forward pass returned.
        expected: positions fed so far (prompt, padding included, plus decoded tokens).

    Raises:
        KVCacheError: the cache is missing, cannot report its length, or holds
            another number of positions (e.g. 0 after the prompt: the model's
            attention did not extend it, so cached decoding would ignore the
            prompt).
    """
    have = cache_length(cache)
    if have != expected:
        got = "no cache" if cache is None else ("a cache of unknown length" if have is None else f"{have} positions")
        raise KVCacheError(
            f"the KV cache did not grow: after {expected} tokens the model returned {got}. Cached decoding "
            "would ignore earlier tokens and give wrong text. This transformers/TransformerLens combination "
            "does not pass the cache through the bridge's attention; install the locked versions "
            "(see README) or pass use_cache=False."
        )
