"""Benchmark: probes.SNMF against a plain NumPy implementation of the same update rule.

Both start from the same coefficients (the SVD initialisation) and run the same
number of iterations of the same steps (least squares for F with the same
ridge, top-1% sparsification, unit coefficient rows, Ding-Li-Jordan update of
G, best iterate by reconstruction error). The NumPy version is written as one
would by hand: dense products throughout and the error as ``‖A - FG‖``. It
runs in float32 like the estimator (a float64 run is timed too, since that is
NumPy's default dtype). Prints the error each reached (they must agree), the
time per iteration, the ratio (target: SNMF >= 5x faster on CPU) and the peak
memory above the data of each (tracemalloc for NumPy, RSS sampling for both).

Usage: python bench/snmf.py [--device cpu|cuda] [--neurons 2048] [--tokens 40000] [--k 64] [--iters 10]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from _memory import RssPeak

TARGET = 5.0


def numpy_snmf(A: np.ndarray, G0: np.ndarray, sparsity: float, iters: int, ridge: float = 1e-6):
    """The reference: the update rule in plain NumPy (``A``: neurons x tokens)."""
    n, k = A.shape[0], G0.shape[0]
    keep = max(1, math.ceil(sparsity * n))
    G = G0.copy()
    best = (np.inf, None, None)
    for _ in range(iters):
        GGt = G @ G.T
        lam = ridge * np.trace(GGt) / k + 1e-12
        F = np.linalg.solve(GGt + lam * np.eye(k, dtype=A.dtype), (A @ G.T).T).T
        drop = np.argsort(-np.abs(F), axis=0)[keep:]
        np.put_along_axis(F, drop, 0, axis=0)
        s = np.sqrt(np.clip(np.diag(GGt), 0, None))
        s = np.where(s > 1e-12, s, 1.0)
        G = G / s[:, None]
        F = F * s
        FtA, FtF = F.T @ A, F.T @ F
        pos = lambda x: (np.abs(x) + x) / 2  # noqa: E731
        neg = lambda x: (np.abs(x) - x) / 2  # noqa: E731
        G = G * np.sqrt((pos(FtA) + neg(FtF) @ G) / (neg(FtA) + pos(FtF) @ G + 1e-12))
        err = np.linalg.norm(A - F @ G)
        if err < best[0]:
            best = (err, F.copy(), G.copy())
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--neurons", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=40000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    from probes import SNMF

    g = torch.Generator().manual_seed(0)
    n, T, k = args.neurons, args.tokens, args.k
    # activations with planted sparse features: a nonnegative mixture plus noise
    F_true = torch.randn(n, 4 * k, generator=g) * (torch.rand(n, 4 * k, generator=g) < 0.02)
    X = (F_true @ torch.rand(4 * k, T, generator=g).pow(4) + 0.1 * torch.randn(n, T, generator=g)).T.contiguous()
    sparsity = 0.01

    # shared initial coefficients: the estimator's own SVD initialisation
    G0 = SNMF(k, sparsity=sparsity, device=args.device).initial_coefficients(X).T.astype(np.float32)

    def run_torch(iters):
        return SNMF(k, sparsity=sparsity, max_iter=iters, patience=iters + 1, tol=0, device=args.device,
                    random_state=0).fit(X, coefficients=G0.T)

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    run_torch(2)  # warm-up
    # per iteration: the difference between 1 + N and 1 iterations, so one-time set-up (one transposed
    # copy of the data, its norm, the first accumulators) is not counted; the fit total is printed too
    _, t_one = timed(lambda: run_torch(1))
    with RssPeak() as mem_t:
        model, t_total = timed(lambda: run_torch(1 + args.iters))
    t_torch = (t_total - t_one) / args.iters
    A32 = X.T.contiguous().numpy()
    with RssPeak() as mem_n:
        t = time.perf_counter()
        err_np, _, _ = numpy_snmf(A32, G0, sparsity, 1 + args.iters)
        t_np = (time.perf_counter() - t) / (1 + args.iters)
    A64 = A32.astype(np.float64)
    t = time.perf_counter()
    err_np64, _, _ = numpy_snmf(A64, G0.astype(np.float64), sparsity, 1 + args.iters)
    t_np64 = (time.perf_counter() - t) / (1 + args.iters)

    err_t = model.history_[-1]
    rel = abs(err_t - err_np) / err_np
    ratio, ratio64 = t_np / t_torch, t_np64 / t_torch
    print(f"SNMF vs NumPy ({n} neurons x {T} tokens, k={k}, sparsity {sparsity}, {args.iters} iterations, "
          f"{args.device}, {torch.get_num_threads()} threads)")
    print(f"  error after {1 + args.iters} iterations: SNMF {err_t:.4f}  NumPy float32 {err_np:.4f}  "
          f"NumPy float64 {err_np64:.4f}  (relative gap {rel:.2e})")
    print(f"  per iteration: SNMF {t_torch * 1e3:8.1f} ms  NumPy float32 {t_np * 1e3:8.1f} ms  "
          f"NumPy float64 {t_np64 * 1e3:8.1f} ms   (SNMF fit total {t_total:.2f} s)")
    print(f"  peak memory rise: SNMF {mem_t.rise / 2**20:7.1f} MiB  NumPy float32 {mem_n.rise / 2**20:7.1f} MiB "
          f"(data {A32.nbytes / 2**20:.0f} MiB)")
    print(f"  speed-up vs NumPy float32 = {ratio:.2f}x, vs float64 = {ratio64:.2f}x  "
          f"(target >= {TARGET}x vs float32: {'holds' if ratio >= TARGET else 'MISSED'})")
    same = rel < 1e-3
    print(f"RESULT snmf_vs_numpy speedup={ratio:.2f} target>={TARGET} same_objective={same} "
          f"{'PASS' if ratio >= TARGET and same else 'FAIL'}")


if __name__ == "__main__":
    main()
