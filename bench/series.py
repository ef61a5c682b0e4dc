"""Benchmark: memory of a checkpoint series (interp compare --models) as checkpoints are added.

A series compares each checkpoint against the reference with one pair in memory at a time, so its peak
memory should not grow with the number of checkpoints. Built here: a tiny Llama-family reference (random
weights, d_model and layers below) and four perturbed checkpoints of it. For series of 2, 3 and 5 models,
each run in a fresh process, the peak rise of the resident set over the run (after imports) is measured
(RSS sampled every millisecond), with the truth section on the built-in statements. The baseline is the
size of one model's activations that the section collects (train and test statements, every layer,
float32): the growth per extra checkpoint must stay below it (target: ratio < 1).

Usage: python bench/series.py [--d-model 768] [--layers 8]
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
import interp, interp.compare.series as S
from _memory import RssPeak
models = json.loads({models!r})
with RssPeak() as peak:
    S.compare_series(models, concepts=["truth"], out={out!r}, progress=False)
print(json.dumps({{"rise": peak.rise}}))
"""


def _run(models: list[str], out: Path) -> int:
    code = CHILD.format(here=str(HERE), models=json.dumps(models), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["rise"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
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
    models = models[:5]
    n_rows = len(load("truth", "train")) + len(load("truth", "test"))
    acts = n_rows * args.layers * args.d_model * 4
    rises = {}
    for n in (2, 3, 5):
        rises[n] = _run(models[:n], tmp / f"out{n}")
        print(f"series of {n} models: peak RSS rise {rises[n] / 2**20:8.1f} MiB", flush=True)
    per_extra = max((rises[5] - rises[2]) / 3, (rises[3] - rises[2]))
    print(f"one model's activations (truth section, {n_rows} statements x {args.layers} layers x d {args.d_model}, "
          f"float32): {acts / 2**20:.1f} MiB")
    print(f"RESULT series_memory: growth per extra checkpoint {per_extra / 2**20:.1f} MiB = "
          f"{per_extra / acts:.2f} x one model's activations (target < 1: {'holds' if per_extra < acts else 'MISSED'})")


if __name__ == "__main__":
    main()
