"""Benchmark: the per-layer probe sweep vs a loop of scikit-learn LogisticRegression.

For a stack of activations ``[n_samples, layer, d]`` with a planted, noisy
truth direction per layer, times

- baseline: ``sklearn.linear_model.LogisticRegression`` fitted layer by layer;
- ours: ``probes.fit_layers(..., "logistic")`` (all layers in one batched
  solve) and ``"mass_mean"``;

and prints the speed-up and the held-out accuracy of each against the
baseline. The target (>= 10x faster, accuracy within 1 point) is for the
logistic sweep; the mass-mean line is for reference (a different estimator,
which on anisotropic noise classifies worse and is meant for causal directions).

Usage: python bench/probe_sweep.py [--layers 24] [--n 2000] [--d 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes import fit_layers, score_layers

TARGET_SPEEDUP, TARGET_POINTS = 10.0, 1.0


def data(n: int, layers: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(layers, d, generator=g), dim=-1)
    scale = torch.linspace(0.3, 1.5, layers)[None, :, None]
    # anisotropic noise: a few high-variance directions, as residual streams have
    X = torch.randn(n, layers, d, generator=g) * torch.linspace(0.5, 4.0, d)
    X += (2 * y - 1)[:, None, None].float() * dirs[None] * scale
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    X, y = data(2 * args.n, args.layers, args.d, seed=0)
    Xtr, ytr, Xte, yte = X[: args.n], y[: args.n], X[args.n :], y[args.n :]

    t = time.perf_counter()
    sk_acc = []
    for layer in range(args.layers):
        clf = LogisticRegression(max_iter=1000).fit(Xtr[:, layer].numpy(), ytr.numpy())
        sk_acc.append(clf.score(Xte[:, layer].numpy(), yte.numpy()))
    t_sk = time.perf_counter() - t
    sk_acc = np.array(sk_acc)

    print(f"probe sweep vs sklearn loop ({args.layers} layers, {args.n} train rows, d={args.d}, {args.device})")
    print(f"  sklearn LogisticRegression loop: {t_sk:7.3f} s   mean held-out accuracy {sk_acc.mean():.4f}")
    results = []
    for method in ("logistic", "mass_mean"):
        Xd, yd = Xtr.to(args.device), ytr.to(args.device)
        fit_layers(Xd[:50], yd[:50], method)  # warm-up
        t = time.perf_counter()
        fit = fit_layers(Xd, yd, method)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_ours = time.perf_counter() - t
        acc, _ = score_layers(fit, Xte.to(args.device), yte.to(args.device))
        acc = acc.cpu().numpy()
        speedup = t_sk / t_ours
        gap = 100 * np.abs(acc - sk_acc).max()
        ok = speedup >= TARGET_SPEEDUP and gap <= TARGET_POINTS
        print(f"  fit_layers({method!r}): {t_ours:7.3f} s   mean held-out accuracy {acc.mean():.4f}   "
              f"speed-up {speedup:6.1f}x   worst per-layer accuracy gap {gap:.2f} points")
        if method == "logistic":  # the target compares like with like: logistic against logistic
            results.append(f"RESULT probe_sweep_logistic_vs_sklearn speedup={speedup:.1f} target>={TARGET_SPEEDUP} "
                           f"max_acc_gap_points={gap:.2f} target<={TARGET_POINTS} {'PASS' if ok else 'FAIL'}")
    print("\n".join(results))


if __name__ == "__main__":
    main()
