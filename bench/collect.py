"""Benchmark: activation collection vs a plain forward pass, and memory vs run_with_cache.

Prints, for one tiny model and one batch:
- time of ``interp.collect`` for all layers of one site / time of a plain
  forward pass on the same batch (target <= 1.15);
- peak memory of ``collect`` vs ``run_with_cache`` with no names filter (every
  hook point cached), each measured in a fresh process: on CUDA the allocator's
  peak, on CPU the peak rise of the process' resident set during the call
  (sampled every millisecond).

Usage: python bench/collect.py [--device cpu|cuda] [--repeats 20] [--shape tiny|large]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _memory import RssPeak

TARGET = 1.15
SHAPES = {  # "large" is a 1B-class Llama for GPUs, where a tiny model's forward is all launch overhead
    "tiny": dict(n_layers=4, d_model=256, d_mlp=1024, n_heads=8, n_ctx=256),
    "large": dict(n_layers=16, d_model=2048, d_mlp=5632, n_heads=16, n_ctx=256),
}
BATCH, WORDS = 32, 60


def _setup(root: Path, device: str, shape: str):
    import interp
    from interp.testing import build_tiny_model
    from interp.tokens import encode, pad_batch, pad_id

    path = build_tiny_model("llama", root / "model", **SHAPES[shape])
    model = interp.load_model(path, device=device)
    words = "the city of paris is in france and berlin is in germany while madrid is in spain".split()
    prompts = [" ".join(words[(i + j) % len(words)] for j in range(WORDS - i % 7)) + "." for i in range(BATCH)]
    encs = encode(model.interp_tokenizer, prompts)
    batch = pad_batch(encs, pad_id=pad_id(model.interp_tokenizer), device=device)
    return model, prompts, batch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_pair(a, b, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately so drift hits both alike."""
    a(), b()
    _sync(device)
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def _memory_child(which: str, device: str, root: str, shape: str) -> None:
    """Run one call in this (fresh) process and print its peak memory in bytes."""
    import interp

    model, prompts, batch = _setup(Path(root), device, shape)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with RssPeak() as rss, torch.inference_mode():
        if which == "run_with_cache":
            _, cache = model.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask)
            kept = sum(t.numel() * t.element_size() for t in cache.values())
        else:
            acts = interp.collect(model, prompts, "resid_post", batch_size=BATCH, progress=False)
            kept = acts["resid_post"].numel() * 4
    peak = torch.cuda.max_memory_allocated() - before if cuda else rss.rise
    print(json.dumps({"peak": peak, "kept": kept}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--memory-child", choices=["run_with_cache", "collect"])
    ap.add_argument("--root")
    ap.add_argument("--shape", choices=list(SHAPES), default="tiny")
    args = ap.parse_args()
    if args.memory_child:
        return _memory_child(args.memory_child, args.device, args.root, args.shape)

    import interp

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as root:
        model, prompts, batch = _setup(Path(root), args.device, args.shape)
        n_tok = int(batch.attention_mask.sum())

        def forward():
            with torch.inference_mode():
                model(batch.input_ids, attention_mask=batch.attention_mask)

        def collect():
            interp.collect(model, prompts, "resid_post", batch_size=BATCH, progress=False)

        t_fwd, t_col = _time_pair(forward, collect, args.device, args.repeats)
        mem = {}
        for which in ("run_with_cache", "collect"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", which, "--device", args.device, "--root", root + "/" + which,
                 "--shape", args.shape],
                capture_output=True, text=True, check=True,
            )
            mem[which] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = t_col / t_fwd
    shape = SHAPES[args.shape]
    print(f"collect vs forward  (llama {shape['n_layers']}x{shape['d_model']}, batch {BATCH}, {n_tok} tokens, {args.device})")
    print(f"  forward {t_fwd * 1e3:8.2f} ms   collect(resid_post, all layers) {t_col * 1e3:8.2f} ms")
    print(f"  ratio collect/forward = {ratio:.3f}  (target <= {TARGET}: {'holds' if ratio <= TARGET else 'MISSED'})")
    rwc, col = mem["run_with_cache"], mem["collect"]
    print(f"  peak memory: run_with_cache (no filter) {rwc['peak'] / 2**20:8.1f} MiB, collect {col['peak'] / 2**20:8.1f} MiB"
          f"  ratio {col['peak'] / max(rwc['peak'], 1):.3f}")
    print(f"  memory kept:  run_with_cache {rwc['kept'] / 2**20:8.1f} MiB, collect {col['kept'] / 2**20:8.3f} MiB")
    print(f"RESULT collect_vs_forward ratio={ratio:.3f} target<={TARGET} {'PASS' if ratio <= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
