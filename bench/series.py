"""Benchmark: memory of a checkpoint series (interp compare --models) as checkpoints are added.

A series compares each checkpoint against the reference with one pair in memory at a time, so memory should
not grow with the number of checkpoints. Built here: a tiny Llama-family reference (random weights, d_model
and layers below) and four perturbed checkpoints of it, taken in turn to make a series of 8 models, run in
a fresh process with the truth section on the built-in statements. Measured (RSS sampled every
millisecond): the peak of each comparison and the resident set between comparisons; the growth per extra
checkpoint is the least-squares slope of the per-comparison peak against the checkpoint's index (single
peaks move by tens of MiB either way with the allocator, so the peak of a whole run, the largest of those
draws, creeps up with their number without anything being kept). The baseline is the size of one model's
activations that the section collects (train and test statements, every layer, float32): the growth per
extra checkpoint must stay below it (target: ratio < 1).

Usage: python bench/series.py [--d-model 768] [--layers 8] [--models 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys
sys.path.insert(0, {here!r})
import interp, interp.compare as C, interp.compare.series as S
from _memory import RssPeak
models = json.loads({models!r})
peaks, between, original = [], [], C.compare
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
def measured(*a, **k):
    between.append(rss())
    with RssPeak() as p:
        out = original(*a, **k)
    peaks.append(p.peak)
    return out
C.compare = measured
S.compare_series(models, concepts=["truth"], out={out!r}, progress=False)
print(json.dumps({{"peaks": peaks, "between": between}}))
"""


def _run(models: list[str], out: Path) -> dict:
    code = CHILD.format(here=str(HERE), models=json.dumps(models), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--models", type=int, default=8, help="models in the series, the reference included")
    args = ap.parse_args()

    from interp.datasets import load
    from interp.testing import build_tiny_pair

    tmp = Path(tempfile.mkdtemp(prefix="bench-series-"))
    models = []
    for k in range(4):  # a reference and four checkpoints of it, perturbed more and more
        base, post = build_tiny_pair("llama", tmp / f"m{k}", seed=0, noise=0.05 * (k + 1), d_model=args.d_model,
                                     n_layers=args.layers)
        models += [str(base)] if k == 0 else []
        models.append(str(post))
    models = [models[0]] + [models[1 + k % 4] for k in range(args.models - 1)]  # the checkpoints in turn
    n_rows = len(load("truth", "train")) + len(load("truth", "test"))
    acts = n_rows * args.layers * args.d_model * 4
    run = _run(models, tmp / "out")
    import numpy as np

    mib = 2**20
    for k, (peak, before) in enumerate(zip(run["peaks"], run["between"]), 1):
        print(f"comparison {k} (reference vs checkpoint {k}): resident before {before / mib:7.1f} MiB, "
              f"peak {peak / mib:7.1f} MiB")
    per_extra = float(np.polyfit(np.arange(len(run["peaks"])), run["peaks"], 1)[0])
    print(f"one model's activations (truth section, {n_rows} statements x {args.layers} layers x d {args.d_model}, "
          f"float32): {acts / mib:.1f} MiB")
    print(f"RESULT series_memory: growth per extra checkpoint {per_extra / mib:.1f} MiB = "
          f"{per_extra / acts:.2f} x one model's activations (target < 1: {'holds' if per_extra < acts else 'MISSED'})")


if __name__ == "__main__":
    main()
