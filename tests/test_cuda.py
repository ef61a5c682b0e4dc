"""The GPU paths give the CPU's answers: collection, steering hooks, probes and SNMF on CUDA.

Skipped where no CUDA device is present (CI); run them on a GPU machine with
``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp
import steering
from probes import SNMF, match_features
from interp.sites import hook_name
from probes.sweep import fit_layers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PROMPTS = ["The cat sat on the mat.", "Paris is the capital of France.", "one two three four", "Hi"]


@pytest.fixture(scope="module")
def boots(tiny_dirs):
    """The same tiny Llama base model booted on the CPU and on CUDA."""
    base, _ = tiny_dirs["llama"]
    return interp.load_model(base, device="cpu"), interp.load_model(base, device="cuda")


def test_collect_on_cuda_equals_cpu(boots):
    cpu, gpu = boots
    sites = ["resid_post", "mlp_post", "attn_out"]
    a = interp.collect(cpu, PROMPTS, sites, positions="mean", progress=False)
    b = interp.collect(gpu, PROMPTS, sites, positions="mean", progress=False)
    for site in sites:
        torch.testing.assert_close(b[site].cpu(), a[site], atol=1e-4, rtol=1e-4)


def test_steering_on_cuda_equals_cpu_and_ablation_removes_the_direction(boots):
    cpu, gpu = boots
    d = cpu.cfg.d_model
    g = torch.Generator().manual_seed(0)
    vec = steering.SteeringVector.from_directions(torch.randn(2, d, generator=g), layers=[0, 1], scale=4.0)
    logits = []
    for model in (cpu, gpu):
        tokens = model.to_tokens(PROMPTS[:2])
        with steering.apply(model, [steering.Add(vec)]):
            logits.append(model(tokens).float().cpu())
    torch.testing.assert_close(logits[1], logits[0], atol=1e-3, rtol=1e-3)

    unit = vec.directions[1].to("cuda")
    seen = {}
    name = hook_name("resid_post", 1)
    with steering.apply(gpu, [steering.Ablate(vec, layer=1)]):  # out of every layer's writes
        _, cache = gpu.run_with_cache(gpu.to_tokens(PROMPTS[:2]), names_filter=lambda n: n == name)
        seen["resid"] = cache[name]
    proj = (seen["resid"] @ unit).abs().max() / seen["resid"].norm(dim=-1).max()
    assert float(proj) <= 1e-5


def test_probe_fit_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 3, 32, generator=g)
    y = (X[:, :, 0].sum(1) > 0).long()
    for method in ("mass_mean", "logistic"):
        a = fit_layers(X, y, method)
        b = fit_layers(X.cuda(), y.cuda(), method)
        torch.testing.assert_close(b.direction.cpu(), a.direction, atol=1e-4, rtol=1e-3)


def _planted(n=256, k=8, T=4000, per_feature=6, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    F = torch.zeros(n, k)
    for j in range(k):
        F[torch.randperm(n, generator=g)[:per_feature], j] = torch.randn(per_feature, generator=g) * 3
    G = torch.rand(k, T, generator=g) ** 3
    return F, F @ G + noise * torch.randn(n, T, generator=g)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_snmf_on_cuda_recovers_planted_features_and_tracks_the_cpu_fit(dtype):
    F, A = _planted()
    model = SNMF(8, sparsity=6 / 256, random_state=0, dtype=dtype, device="cuda").fit(A.T.cuda())
    _, _, cos = match_features(F.T.numpy(), model.components_)
    assert cos.min() >= 0.95, cos

    kw = dict(sparsity=6 / 256, max_iter=15, patience=16, tol=0, random_state=0, dtype=dtype)
    G0 = SNMF(8, device="cpu", **kw).initial_coefficients(A.T)
    cpu = SNMF(8, device="cpu", **kw).fit(A.T, coefficients=G0)
    gpu = SNMF(8, device="cuda", **kw).fit(A.T.cuda(), coefficients=G0)
    gap = np.abs(np.array(gpu.history_) - cpu.history_) / np.array(cpu.history_)
    assert gap.max() < 1e-3, gap
    np.testing.assert_allclose(gpu.transform(A.T.cuda()), cpu.transform(A.T), atol=1e-2 * float(A.abs().max()))


def test_a_model_split_over_devices_collects_and_steers_like_one_device(tiny_dirs):
    """device_map puts block 0 on CUDA and the rest on the CPU, so activations arrive on two devices while
    ``cfg.device`` names one: collection's index tensors and the truth check's span mask follow each
    activation to its device, and the numbers are the single-device ones."""
    from interp.compare.truth import _judgement_gap

    base, _ = tiny_dirs["llama"]
    one = interp.load_model(base, device="cpu")
    split = interp.load_model(base, device_map={"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
                                                 "model.layers.1": "cpu", "model.layers.2": "cpu",
                                                 "model.norm": "cpu", "lm_head": "cpu"})
    for positions in (-1, "mean"):
        a = interp.collect(one, PROMPTS, ["resid_post", "mlp_pre"], positions=positions, progress=False)
        b = interp.collect(split, PROMPTS, ["resid_post", "mlp_pre"], positions=positions, progress=False)
        for site in ("resid_post", "mlp_pre"):
            torch.testing.assert_close(b[site].cpu(), a[site], atol=1e-4, rtol=1e-4)
    texts = ["The city of Paris is in France. This is", "Two is larger than nine. This is"]
    v = torch.randn(int(one.cfg.d_model)) * 3
    for layer in (0, 1):
        want = _judgement_gap(one, texts, [5, 9], add=v, layer=layer, span="statement_end")
        got = _judgement_gap(split, texts, [5, 9], add=v, layer=layer, span="statement_end")
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
