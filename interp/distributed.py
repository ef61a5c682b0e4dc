"""Data-parallel activation collection with ``torchrun`` (``torch.distributed``).

Under ``torchrun --nproc_per_node=N script.py``, every rank calls
:func:`collect_distributed` (or :func:`interp.collect` with ``out=``, which
detects the process group) with the same arguments. Rank ``r`` collects the
``r``-th contiguous block of the prompts into ``OUT/rank-r`` — a complete,
resumable store of its own, written atomically shard by shard. After a barrier,
rank 0 writes ``OUT/manifest.json`` and ``OUT/prompts.json`` listing every
rank's shards in prompt order, so ``interp.Activations.load(OUT)`` reads one
store whose rows are exactly those of a single-process run. An interrupted run
resumes rank by rank when launched again with the same ``OUT``.

Works with any backend: ``gloo`` on CPU (tests run two CPU processes), ``nccl``
with one GPU per rank (pass ``device=f"cuda:{local_rank}"`` when loading).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._io import write_json
from .activations import MANIFEST, PROMPTS, Activations, _prompts_to_json, prompts_digest, read_manifest
from .datasets import PromptSet

__all__ = ["collect_distributed", "blocks", "active_world"]


def active_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` of an initialised process group with more than one process, else ``None``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def blocks(n: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` row blocks, one per rank, sizes differing by at most one.

    >>> blocks(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(n, world_size)
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (r < extra)
        out.append((start, stop))
        start = stop
    return out


def collect_distributed(model, prompts, sites=("resid_post",), *, out: str | os.PathLike, **kwargs) -> Activations:
    """Collect ``prompts`` across the ranks of the current process group into one store at ``out``.

    Every rank must call it with the same prompts and arguments (``kwargs`` as
    for :func:`interp.collect`). Returns the merged store on every rank.
    """
    import torch.distributed as dist

    from .collection import _as_prompt_set, collect

    world = active_world()
    if world is None:
        return collect(model, prompts, sites, out=out, distributed=False, **kwargs)
    rank, size = world
    prompts = _as_prompt_set(prompts)
    root = Path(out)
    done = read_manifest(root)
    if done is not None and done.get("complete") and done.get("prompts_sha256") == prompts_digest(prompts):
        dist.barrier()
        return Activations.load(root)
    spans = blocks(len(prompts), size)
    start, stop = spans[rank]
    if stop > start:
        collect(model, prompts[start:stop], sites, out=root / f"rank-{rank}", distributed=False, **kwargs)
    dist.barrier()
    if rank == 0:
        _merge(root, prompts, spans)
    dist.barrier()
    return Activations.load(root)


def _merge(root: Path, prompts: PromptSet, spans: list[tuple[int, int]]) -> None:
    """Write the top-level manifest listing every rank's shards with global row numbers."""
    merged, shards = None, []
    for r, (start, stop) in enumerate(spans):
        if stop == start:
            continue
        part = read_manifest(root / f"rank-{r}")
        if part is None or not part.get("complete"):
            raise RuntimeError(f"rank {r} did not finish its block of rows {start}..{stop - 1} in {root}")
        if merged is None:
            merged = {k: v for k, v in part.items() if k not in ("shards", "n_samples", "prompts_sha256")}
        for s in part["shards"]:
            shards.append({"file": f"rank-{r}/{s['file']}", "start": s["start"] + start, "stop": s["stop"] + start})
    rows = [i for s in shards for i in range(s["start"], s["stop"])]
    if rows != list(range(len(prompts))):
        raise RuntimeError(f"merged shards do not cover rows 0..{len(prompts) - 1} exactly once")
    merged.update({
        "n_samples": len(prompts), "prompts_sha256": prompts_digest(prompts), "prompts_name": prompts.name,
        "shards": shards, "complete": True,
        "distributed": {"world_size": len(spans), "blocks": [list(b) for b in spans]},
    })
    write_json(root / PROMPTS, _prompts_to_json(prompts))
    write_json(root / MANIFEST, merged)
