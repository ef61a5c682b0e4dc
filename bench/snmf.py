"""Benchmark: probes.SNMF against a plain NumPy implementation of the same update rule.

Both start from the same coefficients (the SVD initialisation) and run the same
number of iterations of the same steps (least squares for F with the same
ridge, top-1% sparsification, unit coefficient rows, Ding-Li-Jordan update of
G, best iterate by reconstruction error). The NumPy version is written as one
would by hand: dense products throughout and the error as ``‖A - FG‖``. It
runs in float32 like the estimator (a float64 run is timed too, since that is
NumPy's default dtype, and serves as the exact reference for the error).

SNMF is timed with the data held in float32 and in bfloat16 (``dtype=``;
products accumulate in float32). Prints the error each reached and its gap to
the float64 reference (must be < 1e-3; NumPy's own float32 run is printed for
scale), the time per iteration, the ratio to NumPy float32 (target: >= 5x on
CPU) and the peak memory rise of each (RSS sampling; on CUDA, the allocator's
peak for SNMF).

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

    def run_torch(iters, dtype="float32"):
        return SNMF(k, sparsity=sparsity, max_iter=iters, patience=iters + 1, tol=0, device=args.device,
                    dtype=dtype, random_state=0).fit(X, coefficients=G0.T)

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    def per_iteration(dtype):
        run_torch(2, dtype)  # warm-up
        # the difference between 1 + N and 1 iterations, so one-time set-up (one transposed copy of the
        # data, its norm, the first accumulators) is not counted; the fit total is printed too
        _, t_one = timed(lambda: run_torch(1, dtype))
        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        with RssPeak() as mem:
            model, t_total = timed(lambda: run_torch(1 + args.iters, dtype))
        if t_total <= t_one:
            raise SystemExit(f"{dtype}: {1 + args.iters} iterations took no longer than 1 ({t_total:.3f} s vs "
                             f"{t_one:.3f} s): set-up noise exceeds the iterations' time; use more --iters")
        # on a GPU the fit's memory is the device allocator's peak, not the host's resident set
        rise = torch.cuda.max_memory_allocated() - before if cuda else mem.rise
        return model, (t_total - t_one) / args.iters, t_total, rise

    model, t_torch, t_total, mem_t = per_iteration("float32")
    model_b, t_bf16, t_total_b, mem_b = per_iteration("bfloat16")
    A32 = X.T.contiguous().numpy()
    with RssPeak() as mem_n:
        t = time.perf_counter()
        err_np, _, _ = numpy_snmf(A32, G0, sparsity, 1 + args.iters)
        t_np = (time.perf_counter() - t) / (1 + args.iters)
    A64 = A32.astype(np.float64)
    t = time.perf_counter()
    err_np64, _, _ = numpy_snmf(A64, G0.astype(np.float64), sparsity, 1 + args.iters)
    t_np64 = (time.perf_counter() - t) / (1 + args.iters)

    err_t, err_b = model.history_[-1], model_b.history_[-1]
    rel, rel_b, rel_np = (abs(e - err_np64) / err_np64 for e in (err_t, err_b, err_np))
    print(f"SNMF vs NumPy ({n} neurons x {T} tokens, k={k}, sparsity {sparsity}, {args.iters} iterations, "
          f"{args.device}, {torch.get_num_threads()} threads)")
    print(f"  error after {1 + args.iters} iterations: SNMF float32 {err_t:.4f}  SNMF bfloat16 {err_b:.4f}  "
          f"NumPy float32 {err_np:.4f}  NumPy float64 {err_np64:.4f}")
    print(f"  relative gap to NumPy float64: SNMF float32 {rel:.1e}, SNMF bfloat16 {rel_b:.1e}, "
          f"NumPy float32 {rel_np:.1e}")
    print(f"  per iteration: SNMF float32 {t_torch * 1e3:6.1f} ms  SNMF bfloat16 {t_bf16 * 1e3:6.1f} ms  "
          f"NumPy float32 {t_np * 1e3:6.1f} ms  NumPy float64 {t_np64 * 1e3:6.1f} ms")
    print(f"  fit totals ({1 + args.iters} iterations): SNMF float32 {t_total:.2f} s, bfloat16 {t_total_b:.2f} s")
    where = "GPU" if args.device.startswith("cuda") else "host"
    print(f"  peak memory rise: SNMF float32 {mem_t / 2**20:6.1f} MiB  bfloat16 {mem_b / 2**20:6.1f} MiB ({where})  "
          f"NumPy float32 {mem_n.rise / 2**20:6.1f} MiB (host; data {A32.nbytes / 2**20:.0f} MiB as float32)")
    print(f"  speed-up vs NumPy float32: SNMF float32 {t_np / t_torch:.2f}x, SNMF bfloat16 {t_np / t_bf16:.2f}x "
          f"(vs NumPy float64: {t_np64 / t_torch:.2f}x / {t_np64 / t_bf16:.2f}x)")
    for name, r, gap in (("float32", t_np / t_torch, rel), ("bfloat16", t_np / t_bf16, rel_b)):
        same = gap < 1e-3
        print(f"RESULT snmf_{name}_vs_numpy speedup={r:.2f} target>={TARGET} same_objective={same} "
              f"{'PASS' if r >= TARGET and same else 'FAIL'}")


if __name__ == "__main__":
    main()
