"""Benchmark: steered vs unsteered generation with ``steering.generate``.

Both runs use the same KV-cached, left-padded greedy loop on the same prompts;
the steered one adds a vector at every position of half the layers and
ablates a direction from every layer (three hooks per layer), which is more
than a typical intervention. Prints the median wall time of each over
alternating repeats and their ratio (target: steered / unsteered <= 1.10).

Usage: python bench/steer_generate.py [--device cpu|cuda] [--repeats 5] [--shape small|large]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

TARGET = 1.10
SHAPES = {  # "large" is a 1B-class Llama for GPUs, where a small model's step is all launch overhead
    "small": dict(n_layers=8, d_model=512, d_mlp=2048, n_heads=8, n_ctx=256),
    "large": dict(n_layers=16, d_model=2048, d_mlp=5632, n_heads=16, n_ctx=256),
}
BATCH, NEW_TOKENS = 16, 32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", choices=list(SHAPES), default="small")
    args = ap.parse_args()
    shape = SHAPES[args.shape]
    torch.manual_seed(0)

    import interp
    import steering
    from interp.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model("llama", Path(tmp) / "model", **shape)
        model = interp.load_model(path, device=args.device)
    words = "the city of paris is in france and berlin is in germany while madrid is in spain".split()
    prompts = [" ".join(words[(i + j) % len(words)] for j in range(12 + i % 9)) for i in range(BATCH)]
    d, n_layers = shape["d_model"], shape["n_layers"]
    add = steering.SteeringVector(torch.randn(n_layers // 2, d), tuple(range(0, n_layers, 2)), scale=2.0)
    abl = steering.SteeringVector(torch.randn(1, d), (n_layers // 2,))
    ivs = [steering.Add(add), steering.Ablate(abl)]
    # no stopping: every row generates NEW_TOKENS tokens in both runs
    kw = dict(max_new_tokens=NEW_TOKENS, batch_size=BATCH, stop_at_eos=False)

    def plain():
        return steering.generate(model, prompts, None, **kw)

    def steered():
        return steering.generate(model, prompts, ivs, **kw)

    plain(), steered()
    t_plain, t_steer = [], []
    for _ in range(args.repeats):
        for fn, out in ((plain, t_plain), (steered, t_steer)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            out.append(time.perf_counter() - t)
    a, b = statistics.median(t_plain), statistics.median(t_steer)
    ratio = b / a
    hooks = n_layers // 2 + 3 * n_layers
    print(f"steered vs unsteered generation (llama {n_layers}x{d}, batch {BATCH}, {NEW_TOKENS} new tokens, "
          f"{args.device}, {hooks} hooks)")
    print(f"  unsteered {a * 1e3:8.1f} ms   steered {b * 1e3:8.1f} ms   "
          f"({a / (BATCH * NEW_TOKENS) * 1e3:.2f} ms per token unsteered)")
    print(f"  ratio steered/unsteered = {ratio:.3f}  (target <= {TARGET}: {'holds' if ratio <= TARGET else 'MISSED'})")
    print(f"RESULT steered_vs_unsteered_generation ratio={ratio:.3f} target<={TARGET} {'PASS' if ratio <= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
