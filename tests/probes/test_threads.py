"""Probe fits after ``torch.set_num_threads``: torch 2.13's batched CPU LU then breaks (MKL errors, hangs).

pytorch/pytorch issues 141358 / 142815: once ``set_num_threads`` has been called, a batched
``torch.linalg.solve`` of matrices larger than about 150 x 150 (measured here: 128 works, 200 fails) prints ``Intel oneMKL ERROR: Parameter 6
was incorrect on entry to SLASWP`` and hangs or returns garbage. Users call ``set_num_threads`` in
notebooks all the time; the probes must neither hang nor change their answer. Run in subprocesses, so
this test process's thread settings stay untouched.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys, torch, probes
if sys.argv[1] == "set":
    torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
X = torch.randn(400, 4, 200, generator=g, dtype=torch.float64)  # [n_samples, layer, d]: d > 128 breaks MKL
y = (X[:, 0, 0] + X[:, 3, 1] + 0.5 * torch.randn(400, generator=g, dtype=torch.float64) > 0).double()
for method in ("logistic", "mass_mean_cov", "lda"):
    fit = probes.fit_layers(X.float(), y, method)
    print(method, fit.coef.double().sum().item(), fit.intercept.double().sum().item())
"""


def _run(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MKL ERROR" not in done.stdout + done.stderr
    return done.stdout


def test_probe_fits_after_set_num_threads_neither_hang_nor_change():
    plain, after = _run("plain"), _run("set")
    assert plain.count("\n") == 3
    assert after == plain


def test_organism_training_touches_the_thread_count_only_when_it_differs(monkeypatch):
    import torch

    from interp.organism.train import torch_threads

    n, calls = torch.get_num_threads(), []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    with torch_threads(n):
        pass
    assert calls == []
    with torch_threads(n + 1):
        pass
    assert calls == [n + 1, n]
