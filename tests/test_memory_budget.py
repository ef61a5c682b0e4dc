"""A memory estimate before collection: refuse, stream, or shrink shards to fit the budget."""

import pytest
import torch

import interp
from interp.collection import memory_estimate, parse_bytes

PROMPTS = [f"prompt number {i} with a few words" for i in range(24)]


def test_estimate_is_rows_times_layers_times_width_times_dtype(tiny_pairs):
    model = tiny_pairs["llama"].post
    d, d_mlp, n_layers = int(model.cfg.d_model), int(model.cfg.d_mlp), int(model.cfg.n_layers)
    est = memory_estimate(model, 24, ["resid_post", "mlp_post"], dtype=torch.float16, batch_size=4, shard_size=10)
    assert est["per_row"] == n_layers * (d + d_mlp) * 2
    assert est["in_memory"] == 24 * est["per_row"] and est["streaming"] == 12 * est["per_row"]  # shards of 3 batches
    acts = interp.collect(model, PROMPTS, ["resid_post", "mlp_post"], dtype=torch.float16, progress=False)
    assert sum(t.numel() * t.element_size() for t in (acts["resid_post"], acts["mlp_post"])) == est["in_memory"]


def test_over_budget_in_memory_is_refused_before_any_work(tiny_pairs):
    model = tiny_pairs["llama"].post
    est = memory_estimate(model, len(PROMPTS), "resid_post")
    with pytest.raises(MemoryError, match=r"would hold .* in memory, over the budget of .*; pass out=DIR"):
        interp.collect(model, PROMPTS, "resid_post", memory_budget=est["in_memory"] - 1, progress=False)
    interp.collect(model, PROMPTS, "resid_post", memory_budget=est["in_memory"], progress=False)  # fits exactly


def test_over_budget_can_switch_to_streaming(tiny_pairs):
    model = tiny_pairs["llama"].post
    est = memory_estimate(model, len(PROMPTS), "resid_post")
    ref = interp.collect(model, PROMPTS, "resid_post", progress=False)
    streamed = interp.collect(model, PROMPTS, "resid_post", memory_budget=est["in_memory"] // 2,
                              over_budget="stream", batch_size=4, progress=False)
    assert streamed.disk_backed and len(streamed._shards()) >= 2  # shards sized to the budget
    torch.testing.assert_close(streamed["resid_post"], ref["resid_post"])


def test_streaming_shards_shrink_to_fit_or_refuse(tiny_pairs, tmp_path):
    model = tiny_pairs["llama"].post
    per_row = memory_estimate(model, 1, "resid_post")["per_row"]
    acts = interp.collect(model, PROMPTS, "resid_post", out=tmp_path / "a", batch_size=4,
                          memory_budget=8 * per_row, progress=False)
    assert [s["stop"] - s["start"] for s in acts._shards()] == [8, 8, 8]
    with pytest.raises(MemoryError, match="one batch of 4 prompts holds"):
        interp.collect(model, PROMPTS, "resid_post", out=tmp_path / "b", batch_size=4,
                       memory_budget=3 * per_row, progress=False)


@pytest.mark.parametrize("bad", ["lots", "-3GB", 0, "5 parsecs"])
def test_bad_budget(bad):
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes(bad)
