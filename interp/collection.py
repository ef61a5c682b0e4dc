"""Batched activation collection with hooks, in memory or streamed to disk.

:func:`collect` runs the prompts through a ``TransformerBridge`` in batches,
reads each requested ``(site, layer)`` at one token per prompt (or the mean over
its tokens) inside a forward hook, and returns an
:class:`~interp.activations.Activations`. Only the selected rows ever leave the
hook, so memory is ``batch x layers x d`` per site, not the full
``batch x pos x d`` cache of every hook point that ``run_with_cache`` keeps.
The forward pass stops after the last block that is read
(:func:`interp.hooks.forward_blocks`), so nothing above it, the unembedding included, is computed.

With ``out=DIR`` the rows are streamed to a store folder shard by shard (see
:mod:`interp.activations`); running the same call again after an interruption
resumes after the last complete shard.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from ._progress import tqdm

from . import positions as _positions
from ._io import save_safetensors, write_json
from .activations import (
    FORMAT,
    MANIFEST,
    PROMPTS,
    Activations,
    _prompts_to_json,
    prompts_digest,
    read_manifest,
    shard_tensors,
)
from .datasets import PromptSet
from .hooks import attached, forward_blocks
from .models import float_dtype, tokenizer_of
from .sites import check_layers, check_site, hook_name, site_width
from .tokens import (BosPolicy, Encoding, Tokenized, as_tokenized, check_batch_size, encode, from_a_word,
                     length_batches, pad_batch, pad_id)

__all__ = ["collect", "collect_tokens", "collect_tokens_by_layer", "collect_tokens_by_site", "memory_estimate",
           "parse_bytes", "token_means", "TokenActivations"]

log = logging.getLogger(__name__)

# Fields of the manifest that must match for a store to be resumed.
_IDENTITY = ("model", "sites", "layers", "position", "tokenization", "dtype", "n_samples", "prompts_sha256")


def _as_prompt_set(prompts) -> PromptSet:
    if isinstance(prompts, PromptSet):
        if not len(prompts):
            raise ValueError(f"prompts is empty: nothing to collect (prompt set {prompts.name!r} has no rows)")
        return prompts
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings or a PromptSet, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: nothing to collect")
    return PromptSet(name="prompts", texts=tuple(prompts))


def _check_extra(extra) -> dict | None:
    """``extra`` checked to be a JSON-serialisable dict (or ``None``), before anything is written.

    Raises:
        TypeError: not a dict.
        ValueError: a value JSON cannot hold (a set, a tensor, ...).
    """
    if extra is None:
        return None
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of JSON-ready metadata, got {type(extra).__name__}")
    import json

    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra must be JSON-serialisable ({e}); convert it to dicts, lists, strings and numbers "
                         "before collecting") from None
    return extra


def _versions() -> dict[str, str]:
    import transformer_lens
    import transformers

    from . import __version__

    return {
        "interp": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
        "python": platform.python_version(),
    }


def model_info(model) -> dict:
    """Identity of a booted model, as recorded in manifests."""
    cfg = model.cfg
    tok = tokenizer_of(model)
    source = getattr(model, "interp_source", {}) or {}
    return {
        "name": source.get("name", getattr(cfg, "model_name", "unknown")),
        "path": source.get("path"),
        "revision": source.get("revision"),
        "n_layers": int(cfg.n_layers),
        "d_model": int(cfg.d_model),
        "d_mlp": int(getattr(cfg, "d_mlp", 0) or 0),
        "n_ctx": int(cfg.n_ctx),
        "vocab_size": len(tok) if tok is not None else None,
    }


def _make_hook(buf: torch.Tensor, slot: int, rows: torch.Tensor, index: torch.Tensor, weights):
    """Hook that writes the selected rows of one layer into ``buf[:, slot]``.

    ``index`` holds padded-coordinate token indices; ``weights`` (``[batch, pos]``,
    rows summing to 1) replaces it for a mean over tokens.
    """

    def hook(act: torch.Tensor, hook) -> None:
        # a model split over devices (device_map) hands each layer's activation over on that layer's device:
        # the index tensors follow the activation (a no-op where they are already there)
        dev = act.device
        if weights is None:
            picked = act[rows.to(dev), index.to(dev)]
        else:
            picked = torch.einsum("bpd,bp->bd", act.float(), weights.to(dev))
        buf[:, slot] = picked.to(buf.device, buf.dtype)
        return None

    return hook


def _run_batch(
    model,
    encs: Sequence[Encoding],
    token_index: torch.Tensor,
    sites: Sequence[str],
    layers: Sequence[int],
    widths: dict[str, int],
    *,
    pad_id: int,
    padding_side: str,
    dtype: torch.dtype,
    out: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Run one batch and return its rows, ``site -> [batch, layer, d]`` on the CPU.

    ``out`` (``site -> [batch, layer, d]`` CPU tensors, usually views into the
    final result or a shard buffer) receives the rows: on a CPU model the hooks
    write straight into it, so no per-batch copy is made.
    """
    device = torch.device(model.cfg.device or "cpu")
    batch = pad_batch(encs, pad_id=pad_id, padding_side=padding_side, device=device)
    n = len(encs)
    rows = torch.arange(n, device=device)
    mean = bool((token_index < 0).all())  # "mean": every row is marked -1 (checked on the host: no GPU sync)
    token_index = token_index.to(device)
    if mean:
        weights = batch.attention_mask.float()
        no_bos = torch.tensor([not e.has_bos for e in encs], dtype=weights.dtype).to(device)
        weights[rows, batch.start] *= no_bos  # leave BOS out of the mean
        weights = weights / weights.sum(1, keepdim=True)
        index = None
    else:
        weights, index = None, batch.start + token_index
    if out is None:
        out = {s: torch.empty((n, len(layers), widths[s]), dtype=dtype) for s in sites}
    direct = device.type == "cpu"
    bufs = out if direct else {
        s: torch.empty((n, len(layers), widths[s]), dtype=dtype, device=device) for s in sites
    }
    hooks = [
        (hook_name(s, layer), _make_hook(bufs[s], slot, rows, index, weights))
        for s in sites
        for slot, layer in enumerate(layers)
    ]
    with torch.inference_mode(), attached(model, hooks):
        forward_blocks(model, batch.input_ids, batch.attention_mask, max(layers) + 1)
    if not direct:
        for s in sites:
            out[s].copy_(bufs[s])
    for s in sites:
        t = out[s]
        bad = ~torch.isfinite(t)
        if bad.any():
            r, slot, _ = bad.nonzero()[0].tolist()
            raise FloatingPointError(
                f"non-finite activation (NaN or inf) at site {s!r}, layer {layers[slot]}, in a batch row "
                f"{r}; check the model's dtype (float16 overflows are common) and its inputs"
            )
    return out


# Prompts tokenised at once when checking them all before the first forward pass
# (an encoding with its character spans is ~1-2 kB of Python objects).
_CHECK_CHUNK = 256


def _check_and_resolve(tok, texts: Sequence[str], positions, *, bos: BosPolicy,
                       max_length: int, tokens: Tokenized | None = None) -> tuple[torch.Tensor, list[int]]:
    """Token index and token count of every prompt, checked before any forward pass (too long, position
    missing).

    Tokenises ``_CHECK_CHUNK`` prompts at a time and keeps two ints per prompt;
    :func:`collect` tokenises each batch again when it runs it, so no more than
    a chunk of encodings (token ids and character spans) is ever alive. Given ``tokens``
    (the texts already tokenised), reads those instead.
    """
    parts, lengths = [], []
    for c0 in range(0, len(texts), _CHECK_CHUNK):
        chunk = texts[c0 : c0 + _CHECK_CHUNK]
        encs = (list(tokens.encodings[c0 : c0 + _CHECK_CHUNK]) if tokens is not None
                else encode(tok, chunk, bos=bos, max_length=max_length, first=c0))
        parts.append(_positions.resolve(positions, chunk, encs, first=c0))
        lengths += [len(e) for e in encs]
    return torch.cat(parts), lengths


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(size: int | float | str) -> int:
    """``"8GB"``, ``"512 MiB"``, ``2e9`` -> bytes.

    >>> parse_bytes("1.5 GiB"), parse_bytes("200MB"), parse_bytes(1024)
    (1610612736, 200000000, 1024)

    Raises:
        ValueError: a size that is not positive, not finite (``inf``, ``nan``: pass ``memory_budget=None`` for
            no budget), or a string that is not a size.
    """
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        if size != size or size in (float("inf"), float("-inf")):
            raise ValueError(f"a memory size must be a finite number of bytes, got {size}; pass memory_budget=None "
                             "for no budget")
        if size <= 0:
            raise ValueError(f"a memory size must be positive, got {size}")
        return int(size)
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(size))
    unit = (m.group(2) or "b").lower() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"cannot read memory size {size!r}: use bytes or e.g. '8GB', '512MiB'")
    return int(float(m.group(1)) * _UNITS[unit])


def memory_estimate(model, n_prompts: int, sites: Sequence[str] | str = ("resid_post",), *,
                    layers: Sequence[int] | int | None = None, dtype: torch.dtype = torch.float32,
                    batch_size: int = 16, shard_size: int = 1024) -> dict[str, int]:
    """Bytes a collection holds: ``in_memory`` (rows x layers x width x dtype, every site), ``per_row``,
    and ``streaming`` (what streaming to disk keeps at once: one shard of rows).

    These are the peaks of the collected rows: :func:`collect` writes each batch's rows straight
    into the result (or the one shard buffer), so beyond them only one batch's forward pass and
    one int per prompt (its read position) are held.
    """
    sites = [sites] if isinstance(sites, str) else list(sites)
    layers = check_layers(layers, int(model.cfg.n_layers))
    item = torch.empty((), dtype=float_dtype(dtype)).element_size()
    per_row = sum(len(layers) * site_width(model, s) * item for s in sites)
    rows_per_shard = -(-shard_size // batch_size) * batch_size
    return {"per_row": per_row, "in_memory": per_row * n_prompts,
            "streaming": per_row * min(rows_per_shard, n_prompts)}


def forward_estimate(model, batch_size: int, seq_len: int) -> int:
    """Bytes one forward pass of ``batch_size`` prompts of ``seq_len`` tokens holds at its peak (an estimate,
    within a small factor): the residual stream and a block's transients, ``batch x seq x (4 d_model + 3 d_mlp
    + 2 n_heads seq)`` values in the model's dtype (attention scores grow with ``seq**2``). The pass stops at
    the last block read, so no ``[batch, seq, d_vocab]`` logits are made."""
    cfg = model.cfg
    item = torch.empty((), dtype=getattr(cfg, "dtype", None) or torch.float32).element_size()
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * int(cfg.d_model))
    per_token = 4 * int(cfg.d_model) + 3 * d_mlp + 2 * int(cfg.n_heads) * int(seq_len)
    return int(batch_size) * int(seq_len) * per_token * item


def available_memory(device) -> int | None:
    """Bytes free for new tensors on ``device``: ``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` of
    ``/proc/meminfo`` on the host; ``None`` where neither can be read (the check is then skipped)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):  # pragma: no cover - no CUDA runtime
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _check_forward_memory(model, batch_size: int, lengths: Sequence[int]) -> None:
    """Refuse a batch whose forward pass cannot fit the device's free memory; warn above half of it.

    Raises:
        MemoryError: the estimate of one batch's forward pass exceeds the free memory (named, with a
            ``batch_size`` that fits).
    """
    seq = max(lengths) if len(lengths) else 0
    batch = min(int(batch_size), len(lengths))
    need = forward_estimate(model, batch, seq)
    free = available_memory(model.cfg.device or "cpu")
    if free is None or batch == 0 or need <= free // 2:
        return
    fits = max(1, int(batch * (free // 2) / need))
    if need > free:
        raise MemoryError(f"one forward pass of batch_size={batch} prompts of up to {seq} tokens needs about "
                          f"{_fmt_bytes(need)}, more than the {_fmt_bytes(free)} free on {model.cfg.device or 'cpu'}; "
                          f"use batch_size={fits} or less")
    warnings.warn(f"one forward pass of batch_size={batch} prompts of up to {seq} tokens needs about "
                  f"{_fmt_bytes(need)}, over half of the {_fmt_bytes(free)} free on {model.cfg.device or 'cpu'}; "
                  f"batch_size={fits} would leave room", stacklevel=3)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def collect(
    model,
    prompts: PromptSet | Sequence[str],
    sites: Sequence[str] | str = ("resid_post",),
    *,
    layers: Sequence[int] | int | None = None,
    positions: _positions.Position = "last",
    batch_size: int = 16,
    bos: BosPolicy = "auto",
    padding_side: Literal["left", "right"] = "left",
    dtype: torch.dtype = torch.float32,
    out: str | os.PathLike | None = None,
    shard_size: int = 1024,
    progress: bool = True,
    extra: dict | None = None,
    memory_budget: int | str | None = None,
    over_budget: Literal["raise", "stream"] = "raise",
    distributed: bool | None = None,
    tokens: Tokenized | None = None,
) -> Activations:
    """Collect activations of ``model`` on ``prompts``.

    Args:
        model: a ``TransformerBridge`` (e.g. ``pair.base``).
        prompts: a :class:`~interp.datasets.PromptSet` or a list of strings,
            already formatted (see :meth:`interp.ModelPair.format`).
        sites: site name(s) from :data:`interp.sites.SITES`.
        layers: block indices to read (default: all). Layer ``L`` of
            ``resid_post`` is the output of block ``L``.
        positions: which token to read, see :mod:`interp.positions`:
            ``"last"``, a negative offset, a :class:`~interp.positions.Match`
            (``"period"`` for the final period) or ``"mean"``.
        batch_size: most prompts per forward pass; prompts of similar length
            share a batch (:func:`interp.tokens.length_batches`), and rows come
            back in prompt order.
        bos: BOS policy, see :mod:`interp.tokens`.
        padding_side: where padding goes; padded tokens are masked out of
            attention and never read, and positions are derived from the mask,
            so either side gives the unpadded result.
        dtype: dtype of the stored activations (they are cast in the hook): a floating torch dtype or its
            name (``"float32"``, ``"bfloat16"``, ``"float16"``).
        out: store folder to stream shards to; ``None`` keeps everything in
            memory. Re-running with the same folder resumes an interrupted run
            and returns the finished store; a folder holding a different
            collection is refused.
        shard_size: rows per shard file (rounded up to whole batches); in memory
            too, the rows among which prompts are grouped by length, so a store
            and an in-memory collection with the same ``shard_size`` hold the
            same bits (other groupings agree to float rounding).
        progress: show a progress bar.
        extra: JSON-ready metadata to record in the manifest (e.g. the chat
            template applied); a dict, checked before anything is written.
        memory_budget: memory the collected activations may take (bytes, or
            ``"8GB"``, ``"512MiB"``), checked before any forward pass against
            :func:`memory_estimate`. In memory and over budget: ``over_budget=
            "raise"`` refuses with the estimate (a ``MemoryError``), ``"stream"``
            streams to a new temporary store instead (its path is logged and
            returned as the store's ``root``). Streaming to ``out``: shards are
            made small enough to fit, or the call is refused if one batch does not.
        distributed: split the prompts over the ranks of the current
            ``torch.distributed`` process group (``torchrun``), see
            :mod:`interp.distributed`; ``None`` does so when a group of more than
            one process is initialised and ``out`` is given.
        tokens: ``prompts``' texts already tokenised under ``bos``
            (:func:`interp.tokens.tokenize`), read instead of tokenising them
            again; a section that runs several passes over one prompt set
            tokenises it once.

    Returns:
        :class:`~interp.activations.Activations` with a ``[n_samples, layer, d]``
        tensor per site.

    Raises:
        ValueError: empty prompts (a list or a PromptSet: "prompts is empty: nothing to collect"), unknown
            site, layer out of range, a prompt longer than the model's context, a position missing from a
            prompt, an ``out`` folder holding another collection, ``out`` naming a file, or ``tokens`` of other
            texts (or another tokenizer or BOS policy); a ``dtype`` that is not floating point or an unknown
            dtype name; an ``extra`` that is not JSON-serialisable; a ``memory_budget`` that is not a positive
            finite size.
        TypeError: a single string as ``prompts``; ``dtype`` neither a torch dtype nor a name; ``extra`` not
            a dict.
        MemoryError: over ``memory_budget`` (see there), or one batch's forward
            pass estimated (:func:`forward_estimate`) above the device's free
            memory (:func:`available_memory`); above half of it, a warning names a
            ``batch_size`` that leaves room.
    """
    prompts = _as_prompt_set(prompts)
    dtype = float_dtype(dtype)
    extra = _check_extra(extra)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out {out} is a file; collect streams to a store folder: give a new or empty folder")
    if tokens is not None:
        tokens = as_tokenized(model, tokens, bos=bos)
        if tokens.texts != tuple(prompts.texts):
            raise ValueError(f"tokens holds {len(tokens)} other texts than the {len(prompts)} prompts; tokenise "
                             "these prompts (interp.tokens.tokenize(model, prompts.texts))")
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError("sites is empty: name at least one site")
    if over_budget not in ("raise", "stream"):
        raise ValueError(f"over_budget must be 'raise' or 'stream', got {over_budget!r}")
    if distributed is not False:
        from .distributed import active_world, collect_distributed

        if active_world() is not None and out is not None:
            return collect_distributed(
                model, prompts, sites, out=out, layers=layers, positions=positions, batch_size=batch_size, bos=bos,
                padding_side=padding_side, dtype=dtype, shard_size=shard_size, progress=progress, extra=extra,
                memory_budget=memory_budget, over_budget=over_budget,
            )
        if distributed:
            raise ValueError("distributed=True needs an initialised torch.distributed group of >1 process and out=DIR")
    for s in sites:
        check_site(s)
    if len(set(sites)) != len(sites):
        raise ValueError(f"sites has duplicates: {sites}")
    check_batch_size(batch_size)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    layers = check_layers(layers, int(model.cfg.n_layers))
    widths = {s: site_width(model, s) for s in sites}
    if memory_budget is not None:
        budget = parse_bytes(memory_budget)
        est = memory_estimate(model, len(prompts), sites, layers=layers, dtype=dtype, batch_size=batch_size,
                              shard_size=shard_size)
        if out is None and est["in_memory"] > budget:
            if over_budget == "raise":
                raise MemoryError(
                    f"collecting {len(prompts)} prompts x {len(layers)} layers of {', '.join(sites)} would hold "
                    f"{_fmt_bytes(est['in_memory'])} in memory, over the budget of {_fmt_bytes(budget)}; pass "
                    f"out=DIR to stream shards to disk, or over_budget='stream'"
                )
            import tempfile

            out = tempfile.mkdtemp(prefix="interp-collect-")
            log.warning("over the memory budget (%s > %s): streaming to %s", _fmt_bytes(est["in_memory"]),
                        _fmt_bytes(budget), out)
        if out is not None and est["streaming"] > budget:
            if est["per_row"] * batch_size > budget:
                raise MemoryError(
                    f"one batch of {batch_size} prompts holds {_fmt_bytes(est['per_row'] * batch_size)}, over the "
                    f"budget of {_fmt_bytes(budget)}; lower batch_size or read fewer layers or sites"
                )
            shard_size = max(batch_size, (budget // est["per_row"]) // batch_size * batch_size)
            log.info("shard size lowered to %d rows to stay within %s", shard_size, _fmt_bytes(budget))
    tok = tokenizer_of(model)
    n_ctx = int(model.cfg.n_ctx)
    token_index, lengths = _check_and_resolve(tok, prompts.texts, positions, bos=bos, max_length=n_ctx,
                                              tokens=tokens)
    _check_forward_memory(model, batch_size, lengths)
    pad = pad_id(tok)

    manifest = {
        "format": FORMAT,
        "model": model_info(model),
        "sites": {s: {"hook": hook_name(s, 0).replace(".0.", ".{layer}.", 1), "width": widths[s]} for s in sites},
        "layers": layers,
        "position": _positions.describe(positions),
        "tokenization": {
            "bos": bos,
            "bos_token_id": tok.bos_token_id,
            "padding_side": padding_side,
            "pad_id": pad,
        },
        "dtype": str(dtype).removeprefix("torch."),
        "n_samples": len(prompts),
        "prompts_sha256": prompts_digest(prompts),
        "prompts_name": prompts.name,
        "versions": _versions(),
        "seed": None,  # collection is deterministic; nothing random is drawn
        "extra": extra or {},
        "shards": [],
        "complete": False,
    }
    rows_per_shard = -(-shard_size // batch_size) * batch_size
    root = None if out is None else Path(out)
    start = 0
    if root is not None:
        start, manifest = _open_store(root, manifest, prompts)
        if manifest["complete"]:
            log.info("store %s is already complete; loading it", root)
            return Activations.load(root)

    n = len(prompts)
    # Rows are written where they end up: in memory, into the final tensors
    # (allocated once, so the peak is the result plus one batch, not a list of
    # batches and their concatenation); streamed, into one shard buffer reused
    # for every shard. Within each shard's rows (in memory too, so that a store
    # and an in-memory collection hold the same bits) prompts of similar length
    # share a batch (interp.tokens.length_batches), so little is spent on
    # padding; each row goes back to its prompt's place. Prompts are tokenised
    # batch by batch.
    held = rows_per_shard if root is not None else n
    rows = {s: torch.empty((min(held, n - start), len(layers), widths[s]), dtype=dtype) for s in sites}
    token_ids: list[tuple[int, ...]] = []  # in memory: every prompt's; streamed: the current shard's
    bar = tqdm(
        total=n, initial=start, disable=not progress, unit="prompt",
        desc=f"collect {manifest['model']['name']}",
    )
    t0 = time.perf_counter()
    with bar:
        for w0 in range(start, n, rows_per_shard):
            w1 = min(w0 + rows_per_shard, n)
            r0 = w0 - start if root is None else 0  # where the shard's rows go in the buffer
            ids_w: list[tuple[int, ...]] = [()] * (w1 - w0)
            for batch in length_batches(lengths[w0:w1], batch_size):
                idx = [w0 + i for i in batch]
                encs = ([tokens.encodings[i] for i in idx] if tokens is not None else
                        encode(tok, [prompts.texts[i] for i in idx], bos=bos, max_length=n_ctx))
                got = _run_batch(model, encs, token_index[idx], sites, layers, widths, pad_id=pad,
                                 padding_side=padding_side, dtype=dtype)
                where = torch.tensor(batch) + r0
                for s in sites:
                    rows[s][where] = got[s]
                for i, ids in zip(batch, [e.ids for e in encs]):  # no loop variable keeps an encoding alive
                    ids_w[i] = ids
                del encs, got
                bar.update(len(batch))
            token_ids.extend(ids_w)
            if root is not None:
                _write_shard(root, manifest, {s: rows[s][: w1 - w0] for s in sites}, w0, w1, token_ids,
                             token_index)
                token_ids = []
    log.info("collected %d prompts in %.1fs", n - start, time.perf_counter() - t0)

    if root is not None:
        manifest["complete"] = True
        write_json(root / MANIFEST, manifest)
        # What Activations.load(root) returns, but with the caller's prompts (the same texts and
        # labels: the digest was checked) instead of a second copy of every text read back.
        return Activations(manifest=manifest, prompts=prompts, root=root)
    return Activations(
        manifest={**manifest, "complete": True},
        prompts=prompts,
        tensors=rows,
        token_ids=token_ids,
        token_index=token_index,
    )


def _open_store(root: Path, manifest: dict, prompts: PromptSet) -> tuple[int, dict]:
    """Start or resume the store in ``root``; return the first row still to collect."""
    old = read_manifest(root)
    if old is None:
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"out folder {root} is not empty and holds no activation store; choose an empty folder")
        write_json(root / PROMPTS, _prompts_to_json(prompts))
        write_json(root / MANIFEST, manifest)
        return 0, manifest
    differ = [k for k in _IDENTITY if old.get(k) != manifest.get(k)]
    if differ:
        raise ValueError(
            f"out folder {root} holds a different collection (differs in: {', '.join(differ)}); "
            "use a new folder, or delete this one to start over"
        )
    if old.get("complete"):
        return old["n_samples"], old
    # Keep the longest run of complete shards from row 0; anything after a gap
    # or a missing file is collected again.
    kept, stop = [], 0
    for shard in old["shards"]:
        path = root / shard["file"]
        if shard["start"] != stop or not path.exists():
            break
        kept.append(shard)
        stop = shard["stop"]
    manifest["shards"] = kept
    if not (root / PROMPTS).exists():
        write_json(root / PROMPTS, _prompts_to_json(prompts))
    write_json(root / MANIFEST, manifest)
    log.info("resuming %s at row %d of %d", root, stop, manifest["n_samples"])
    return stop, manifest


def _write_shard(root, manifest, rows, start, stop, token_ids, token_index) -> None:
    """Write rows ``[start, stop)`` (``rows``: ``site -> [stop - start, layer, d]``, their token ids
    ``token_ids``) as one shard, then list it in the manifest."""
    name = f"shard-{len(manifest['shards']):05d}.safetensors"
    save_safetensors(root / name, shard_tensors(rows, token_ids, token_index[start:stop]))
    manifest["shards"].append({"file": name, "start": start, "stop": stop})
    write_json(root / MANIFEST, manifest)


@dataclass(frozen=True)
class TokenActivations:
    """Activations of every token of a prompt set at one site and layer (for SNMF and the like).

    Attributes:
        X: ``[n_tokens, width]`` float32, tokens of all prompts in order (padding
            and a leading BOS excluded).
        token_ids: ``[n_tokens]`` the token at each row.
        prompt: ``[n_tokens]`` index of the row's prompt.
        position: ``[n_tokens]`` index of the token in its (unpadded) prompt.
        texts: the prompts.
    """

    X: torch.Tensor
    token_ids: torch.Tensor
    prompt: torch.Tensor
    position: torch.Tensor
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def context(self, row: int, tokenizer, before: int = 8, *, whole_words: bool = False) -> tuple[str, str]:
        """``(preceding text, the token)`` of row ``row``, ``before`` tokens of context.

        Text is decoded in whole characters: a token that holds only part of a character's bytes (byte-level
        BPE, or SentencePiece byte fallback, for accented or non-Latin text) is shown with the tokens around it
        that complete the character (up to 3 after it), and context that starts inside a character drops its
        first bytes, so no replacement character (U+FFFD) stands in for a byte sequence cut in two.

        ``whole_words``: context that does not reach back to the text's start begins with ``…``, and drops the
        rest of a word it would start inside (``"…Kind ist im G"``, not ``"as Kind ist im G"``; a context without
        whitespace, e.g. CJK, keeps its characters)."""
        p, pos = int(self.prompt[row]), int(self.position[row])
        mine = self.prompt == p
        ids = dict(zip(self.position[mine].tolist(), self.token_ids[mine].tolist()))
        start, last = min(ids), max(ids)

        def text(a, b):
            return tokenizer.decode([ids[q] for q in range(a, b)])

        def char_start(k):  # token k begins a character: the text before it decodes whole
            return k == start or not text(start, k).endswith("\ufffd")

        lo, end = pos, pos + 1
        while lo > start and not char_start(lo):  # the token continues a character begun before it
            lo -= 1
        while end <= last and end <= pos + 3 and not char_start(end):  # ... or one finished after it
            end += 1
        first = max(start, pos - before)
        while first < lo and not char_start(first):  # context that would start inside a character
            first += 1
        shown = text(first, lo)
        if whole_words and first > start:
            earlier = text(start, first)
            if earlier and not earlier[-1].isspace() and shown and not shown[0].isspace():  # cut inside a word
                shown = from_a_word(shown).lstrip()
            shown = "…" + shown
        return shown, text(lo, end)


@torch.inference_mode()
def collect_tokens_by_site(model, prompts, sites: Sequence[str], layers=None, *, batch_size: int = 16,
                           bos: BosPolicy = "auto", progress: bool = True) -> dict[str, dict[int, TokenActivations]]:
    """Every real token's activations (BOS excluded) at several sites and layers, one forward pass per batch.

    ``prompts``: a :class:`~interp.datasets.PromptSet`, a list of texts, or texts already tokenised under
    ``bos`` (:class:`~interp.tokens.Tokenized`, read as they are).

    Returns ``{site: {layer: TokenActivations}}``; each ``X`` is ``[n_tokens, width]`` float32, rows in
    prompt order whatever the batches (prompts of similar length share one:
    :func:`interp.tokens.length_batches`; right-padded, padded slots dropped).

    Raises:
        ValueError: no sites, an unknown site or layer, empty prompts (a list or a PromptSet: "prompts is empty:
            nothing to collect"), or prompts with no tokens besides BOS.
        TypeError: a single string as ``prompts``, or a layer that is not an integer.
        FloatingPointError: a NaN or inf among the activations.
    """
    toks = prompts if isinstance(prompts, Tokenized) else None
    prompts = _as_prompt_set(prompts.texts if toks is not None else prompts)
    sites = list(sites)
    if not sites or len(set(sites)) != len(sites):
        raise ValueError(f"sites must name at least one site, each once; got {sites}")
    for site in sites:
        check_site(site)
    layers = check_layers(layers, int(model.cfg.n_layers))
    tok = tokenizer_of(model)
    encs = as_tokenized(model, toks if toks is not None else prompts.texts, bos=bos).encodings
    device = model.cfg.device or "cpu"
    grabbed: dict[tuple[str, int], torch.Tensor] = {}

    def grab(key):
        def fn(act, hook):
            grabbed[key] = act.float().cpu()
        return fn

    keys = [(site, layer) for site in sites for layer in layers]
    # prompts of similar length share a batch (little padding); each prompt's rows are put back in prompt order
    per_prompt: list[dict[tuple[str, int], torch.Tensor] | None] = [None] * len(encs)
    batches = length_batches([len(e) for e in encs], batch_size)
    with attached(model, [(hook_name(site, layer), grab((site, layer))) for site, layer in keys]):
        for batch in tqdm(batches, desc=f"tokens {', '.join(sites)}", disable=not progress):
            chunk = [encs[i] for i in batch]
            padded = pad_batch(chunk, pad_id=pad_id(tok), padding_side="right", device=device)
            forward_blocks(model, padded.input_ids, padded.attention_mask, max(layers) + 1)
            for row, (i, enc) in enumerate(zip(batch, chunk)):
                first, n = (1 if enc.has_bos else 0), len(enc)
                if n > first:
                    per_prompt[i] = {key: grabbed[key][row, first:n] for key in keys}
            grabbed.clear()
    kept = [i for i, r in enumerate(per_prompt) if r is not None]
    if not kept:
        raise ValueError("the prompts have no tokens besides BOS")
    ids = [torch.tensor(encs[i].ids[(1 if encs[i].has_bos else 0):]) for i in kept]
    which = torch.cat([torch.full((len(t),), i) for i, t in zip(kept, ids)])
    where = torch.cat([torch.arange(len(encs[i]) - len(t), len(encs[i])) for i, t in zip(kept, ids)])
    ids = torch.cat(ids)
    out: dict[str, dict[int, TokenActivations]] = {site: {} for site in sites}
    for site, layer in keys:
        X = torch.cat([per_prompt[i][site, layer] for i in kept])
        if not torch.isfinite(X).all():
            raise FloatingPointError(f"non-finite activations at {site} layer {layer}")
        out[site][layer] = TokenActivations(X, ids, which, where, tuple(prompts.texts))
    return out


def token_means(by_layer: dict[int, TokenActivations], n_prompts: int) -> torch.Tensor:
    """``[n_prompts, layer, width]`` float32: each prompt's mean over its tokens' rows, layers in key order.

    The same quantity as :func:`collect` with ``positions="mean"`` (BOS left out), from the rows of
    :func:`collect_tokens_by_site` or :func:`collect_tokens_by_layer`; summed in float64.

    Raises:
        ValueError: a prompt in ``range(n_prompts)`` has no token rows.
    """
    layers = sorted(by_layer)
    first = by_layer[layers[0]]
    counts = torch.bincount(first.prompt, minlength=n_prompts)
    if len(counts) > n_prompts or (counts[:n_prompts] == 0).any():
        missing = (counts[:n_prompts] == 0).nonzero().flatten().tolist()
        raise ValueError(f"prompts {missing[:8]} have no token rows (only BOS?), or rows name prompts "
                         f"beyond {n_prompts}")
    out = torch.zeros(n_prompts, len(layers), first.X.shape[1], dtype=torch.float64)
    for slot, layer in enumerate(layers):
        out[:, slot].index_add_(0, by_layer[layer].prompt, by_layer[layer].X.double())
    return (out / counts[:, None, None]).float()


def collect_tokens_by_layer(model, prompts, site: str = "mlp_post", layers=None, *, batch_size: int = 16,
                            bos: BosPolicy = "auto", progress: bool = True) -> dict[int, TokenActivations]:
    """:func:`collect_tokens` for several layers (default all) in one forward pass per batch.

    Returns ``{layer: TokenActivations}``, rows in prompt order whatever the batches
    (:func:`collect_tokens_by_site` with one site).
    """
    return collect_tokens_by_site(model, prompts, [site], layers, batch_size=batch_size, bos=bos,
                                  progress=progress)[site]


def collect_tokens(model, prompts, site: str = "mlp_post", layer: int = 0, *, batch_size: int = 16,
                   bos: BosPolicy = "auto", progress: bool = True) -> TokenActivations:
    """Read ``site`` at ``layer`` for every real token of every prompt, BOS excluded.

    Batches are right-padded; padded slots are dropped, so rows do not depend
    on the batch.
    """
    (layer,) = check_layers([layer], int(model.cfg.n_layers))
    return collect_tokens_by_layer(model, prompts, site, [layer], batch_size=batch_size, bos=bos,
                                   progress=progress)[layer]
