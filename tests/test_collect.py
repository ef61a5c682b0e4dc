"""interp.collect: parity with run_with_cache, padding, positions, store, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import interp
from interp import collection as collect_mod
from interp.datasets import PromptSet
from interp.positions import FINAL_PERIOD
from interp.tokens import encode

PROMPTS = [
    "The city of Paris is in France.",
    "Seventy is larger than twelve.",
    "Hi.",
    "Le chat est sur la table. Il dort bien.",
    "Write a short poem about the sea, please.",
    "Berlin is in Germany.",
    "Madrid is the capital of Spain.",
]
ALL_SITES = list(interp.SITES)


def reference(model, texts, sites, position):
    """Per-prompt run_with_cache with no padding: ``site -> [n, layer, d]``."""
    encs = encode(model.interp_tokenizer, texts)
    index = interp.positions.resolve(position, texts, encs)
    n_layers = model.cfg.n_layers
    out = {s: [] for s in sites}
    for enc, idx in zip(encs, index.tolist()):
        names = [interp.hook_name(s, L) for s in sites for L in range(n_layers)]
        _, cache = model.run_with_cache(torch.tensor([enc.ids]), names_filter=names)
        for s in sites:
            acts = torch.stack([cache[interp.hook_name(s, L)][0] for L in range(n_layers)])  # [layer, pos, d]
            if idx < 0:  # mean over tokens, BOS excluded
                acts = acts[:, int(enc.has_bos) :]
                out[s].append(acts.mean(1))
            else:
                out[s].append(acts[:, idx])
    return {s: torch.stack(v) for s, v in out.items()}


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_parity_with_run_with_cache(tiny_pairs, family, padding_side):
    model = tiny_pairs[family].post
    ref = reference(model, PROMPTS, ALL_SITES, "last")
    for batch_size in (1, 3, len(PROMPTS)):
        acts = interp.collect(
            model, PROMPTS, ALL_SITES, batch_size=batch_size, padding_side=padding_side, progress=False
        )
        for s in ALL_SITES:
            assert acts[s].shape == ref[s].shape
            torch.testing.assert_close(acts[s], ref[s], atol=2e-5, rtol=1e-4, msg=f"{family} {s} bs={batch_size}")


@pytest.mark.parametrize("position", [-2, 0, FINAL_PERIOD, "mean"])
def test_positions_match_reference(tiny_pairs, position):
    model = tiny_pairs["llama"].base
    texts = [p for p in PROMPTS if "." in p]
    ref = reference(model, texts, ["resid_post", "mlp_post"], position)
    acts = interp.collect(model, texts, ["resid_post", "mlp_post"], positions=position, batch_size=4, progress=False)
    for s in ref:
        torch.testing.assert_close(acts[s], ref[s], atol=2e-5, rtol=1e-4)


def test_final_period_reads_the_period_token(tiny_pairs):
    model = tiny_pairs["qwen2"].base
    texts = ["Le chat est sur la table. Il dort bien", "A. B. C. end"]
    acts = interp.collect(model, texts, "resid_post", positions="period", progress=False)
    for text, ids, idx in zip(texts, acts.token_ids, acts.token_index.tolist()):
        assert model.interp_tokenizer.decode([ids[idx]]).endswith(".")
        assert model.interp_tokenizer.decode(ids[idx + 1 :]).lstrip().startswith(text[text.rindex(".") + 1 :].strip()[:2])


def test_layers_subset_and_metadata(tiny_pairs):
    model = tiny_pairs["gpt2"].base
    ps = PromptSet(name="t", texts=tuple(PROMPTS[:4]), labels=(0, 1, 0, 1), label_names=("a", "b"))
    acts = interp.collect(model, ps, ["resid_pre", "attn_out"], layers=[-1, 0], progress=False)
    full = interp.collect(model, ps, ["resid_pre", "attn_out"], progress=False)
    assert acts.layers == (0, 2)
    assert acts["attn_out"].shape == (4, 2, model.cfg.d_model)
    torch.testing.assert_close(acts.layer("attn_out", 2), full.layer("attn_out", 2))
    assert acts.labels.tolist() == [0, 1, 0, 1]
    assert acts.texts == ps.texts
    # BOS policy: GPT-2 gets its <|endoftext|> prepended exactly once.
    assert all(ids[0] == model.interp_tokenizer.bos_token_id for ids in acts.token_ids)
    assert acts.manifest["model"]["n_layers"] == 3


def test_resid_pre_next_equals_resid_post(tiny_pairs):
    acts = interp.collect(tiny_pairs["gemma2"].base, PROMPTS, ["resid_pre", "resid_post"], progress=False)
    torch.testing.assert_close(acts["resid_pre"][:, 1:], acts["resid_post"][:, :-1])


def test_collection_stops_after_the_last_block_read(tiny_pairs, family):
    """Reading the last block runs no final norm and no unembedding; values still equal the reference."""
    model = tiny_pairs[family].post
    n = model.cfg.n_layers
    seen = []

    def count(act, hook):
        seen.append(hook.name)

    watch = [("ln_final.hook_out", count), ("unembed.hook_in", count), (f"blocks.{n - 1}.hook_out", count)]
    with interp.attached(model, watch):
        acts = interp.collect(model, PROMPTS, "resid_post", layers=[n - 1], progress=False)
        assert set(seen) == {f"blocks.{n - 1}.hook_out"}  # the block ran, nothing above it did
        seen.clear()
        interp.collect(model, PROMPTS, "resid_post", layers=[0], progress=False)
        assert seen == []
    assert interp.active_hooks(model) == {}
    torch.testing.assert_close(acts["resid_post"][:, 0], reference(model, PROMPTS, ["resid_post"], "last")["resid_post"][:, -1])
    # the model still runs its full forward afterwards
    logits = model(torch.tensor([encode(model.interp_tokenizer, PROMPTS[:1])[0].ids]))
    assert logits.shape[-1] == model.cfg.d_vocab


def test_forward_blocks_rejects_out_of_range(tiny_pairs):
    model = tiny_pairs["gpt2"].post
    ids = torch.tensor([[1, 2, 3]])
    for bad in (0, model.cfg.n_layers + 1):
        with pytest.raises(ValueError, match=rf"stop_at_layer must be in 1\.\.{model.cfg.n_layers} \(n_layers\), got {bad}"):
            interp.hooks.forward_blocks(model, ids, None, bad)


# ---------------------------------------------------------------- the store
def test_store_roundtrip_and_layer_reads(tiny_pairs, tmp_path):
    model = tiny_pairs["llama"].post
    # the same shard_size in memory: prompts are grouped by length within the same rows, so the same bits
    mem = interp.collect(model, PROMPTS, ["resid_post", "mlp_post"], batch_size=2, shard_size=3, progress=False)
    disk = interp.collect(model, PROMPTS, ["resid_post", "mlp_post"], batch_size=2, shard_size=3,
                          out=tmp_path / "store", progress=False)
    # shard_size 3 is rounded up to whole batches of 2: rows [0, 4) and [4, 7)
    assert disk.disk_backed and [(s["start"], s["stop"]) for s in disk.manifest["shards"]] == [(0, 4), (4, 7)]
    for s in ("resid_post", "mlp_post"):
        assert torch.equal(disk[s], mem[s])
        for L in range(3):
            assert torch.equal(disk.layer(s, L), mem.layer(s, L))
    assert disk.token_ids == mem.token_ids
    assert torch.equal(disk.token_index, mem.token_index)
    saved = mem.save(tmp_path / "saved")
    again = interp.Activations.load(saved)
    assert torch.equal(again["mlp_post"], mem["mlp_post"]) and again.prompts == mem.prompts
    # Re-running on a finished store returns it without recomputation.
    assert torch.equal(interp.collect(model, PROMPTS, ["resid_post", "mlp_post"], batch_size=2, shard_size=3,
                                      out=tmp_path / "store", progress=False)["resid_post"], mem["resid_post"])


def test_interrupted_collection_resumes_without_loss_or_duplicates(tiny_pairs, tmp_path, monkeypatch):
    model = tiny_pairs["qwen2"].post
    texts = PROMPTS * 3
    full = interp.collect(model, texts, "resid_post", batch_size=2, shard_size=2, progress=False)  # the same call
    calls = {"n": 0}
    real = collect_mod._run_batch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "_run_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        interp.collect(model, texts, "resid_post", batch_size=2, shard_size=2, out=tmp_path / "s", progress=False)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["shards"][-1]["stop"] == 8
    with pytest.raises(ValueError, match="incomplete"):
        interp.Activations.load(tmp_path / "s")
    monkeypatch.setattr(collect_mod, "_run_batch", real)
    resumed = interp.collect(model, texts, "resid_post", batch_size=2, shard_size=2, out=tmp_path / "s", progress=False)
    assert resumed.n_samples == len(texts)
    assert torch.equal(resumed["resid_post"], full["resid_post"])
    assert resumed.token_ids == full.token_ids


def test_killed_process_resumes(tiny_dirs, tiny_pairs, tmp_path):
    """SIGKILL a collecting process mid-run; the resumed store equals an uninterrupted run."""
    base_dir = tiny_dirs["llama"][0]
    store = tmp_path / "killed"
    texts = [f"Statement number {i} is here." for i in range(400)]
    script = textwrap.dedent(f"""
        import interp
        model = interp.load_model({str(base_dir)!r}, device="cpu")
        texts = [f"Statement number {{i}} is here." for i in range(400)]
        interp.collect(model, texts, ["resid_post", "mlp_post"], batch_size=1, shard_size=1,
                       out={str(store)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            m = store / "manifest.json"
            if m.exists() and len(json.loads(m.read_text())["shards"]) >= 5:
                break
            if proc.poll() is not None:
                pytest.fail("collection process ended before it could be killed")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = json.loads((store / "manifest.json").read_text())
    assert not partial["complete"] and 5 <= len(partial["shards"]) < 400
    model = tiny_pairs["llama"].base
    resumed = interp.collect(model, texts, ["resid_post", "mlp_post"], batch_size=1, shard_size=1, out=store,
                             progress=False)
    full = interp.collect(model, texts, ["resid_post", "mlp_post"], batch_size=16, progress=False)
    assert resumed.n_samples == 400
    for s in ("resid_post", "mlp_post"):
        torch.testing.assert_close(resumed[s], full[s], atol=2e-5, rtol=1e-4)
    starts = [sh["start"] for sh in resumed.manifest["shards"]]
    assert starts == list(range(400))  # every row exactly once, in order


def test_store_refuses_other_collection(tiny_pairs, tmp_path):
    model = tiny_pairs["gpt2"].base
    interp.collect(model, PROMPTS, "resid_post", out=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="different collection.*sites"):
        interp.collect(model, PROMPTS, "mlp_out", out=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="different collection.*prompts_sha256"):
        interp.collect(model, PROMPTS[:3], "resid_post", out=tmp_path / "s", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        interp.collect(model, PROMPTS, "resid_post", out=tmp_path / "other", progress=False)


# ---------------------------------------------------------------- bad input
def test_bad_inputs(tiny_pairs):
    model = tiny_pairs["llama"].base
    with pytest.raises(ValueError, match="prompts is empty"):
        interp.collect(model, [], progress=False)
    with pytest.raises(ValueError, match="unknown site 'resid'"):
        interp.collect(model, PROMPTS, "resid", progress=False)
    with pytest.raises(ValueError, match="layer 3 is out of range for a model with 3 layers"):
        interp.collect(model, PROMPTS, layers=[0, 3], progress=False)
    with pytest.raises(ValueError, match="prompt 1 is .* tokens long, more than the model's context of 64"):
        interp.collect(model, ["ok", "word " * 100], progress=False)
    with pytest.raises(ValueError, match="row 0 has an empty or non-string text"):
        interp.collect(model, [""], progress=False)
    with pytest.raises(ValueError, match="not found in prompt 0"):
        interp.collect(model, ["no period here"], positions="period", progress=False)
    with pytest.raises(ValueError, match="position -50 does not exist in prompt 0"):
        interp.collect(model, ["short"], positions=-50, progress=False)
    with pytest.raises(ValueError, match="invalid position"):
        interp.collect(model, ["short"], positions="middle", progress=False)
    with pytest.raises(TypeError, match="single string"):
        interp.collect(model, "one prompt", progress=False)
    assert interp.active_hooks(model) == {}


def test_non_finite_activations_are_refused(tiny_pairs):
    model = tiny_pairs["llama"].base

    def poison(x, hook):
        return x * float("nan")

    with interp.attached(model, [("blocks.0.hook_resid_post", poison)]):
        with pytest.raises(FloatingPointError, match="non-finite activation .* layer 1"):
            interp.collect(model, PROMPTS[:2], layers=[1], progress=False)
    assert interp.active_hooks(model) == {}


def test_hooks_removed_when_forward_raises(tiny_pairs, monkeypatch):
    model = tiny_pairs["gpt2"].post

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(model), "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        interp.collect(model, PROMPTS, ALL_SITES, progress=False)
    monkeypatch.undo()
    assert interp.active_hooks(model) == {}
    with pytest.raises(KeyError, match="do not exist on this model"):
        with interp.attached(model, [("blocks.9.hook_resid_post", lambda x, h: None)]):
            pass
    assert interp.active_hooks(model) == {}


# ---------------------------------------------------------------- memory
def _torch_peak_bytes(fn, trace_path) -> int:
    """Peak of the bytes torch's CPU allocator holds while ``fn`` runs, above what it held before.

    Read from the profiler's memory events ("Total Allocated" after each allocation and free).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    prof.export_chrome_trace(str(trace_path))
    events = [e["args"] for e in json.loads(trace_path.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    assert events, "the profiler recorded no memory events"
    before = events[0]["Total Allocated"] - events[0]["Bytes"]
    return max(e["Total Allocated"] for e in events) - before


def test_in_memory_collection_holds_the_result_once(tiny_pairs, tmp_path):
    """Rows go straight into the preallocated result: the peak above the result is one batch's
    forward pass, whatever the number of batches (a list of batches plus their concatenation
    would hold the rows twice)."""
    model = tiny_pairs["llama"].base
    texts = [f"Statement number {i} is here." for i in range(256)]
    excess = {}
    for n in (16, 256):
        got = {}

        def run():
            got["acts"] = interp.collect(model, texts[:n], ALL_SITES, batch_size=16, progress=False)

        peak = _torch_peak_bytes(run, tmp_path / f"trace-{n}.json")
        acts = got.pop("acts")
        result = sum(acts[s].numel() * acts[s].element_size() for s in ALL_SITES)
        excess[n] = peak - result
    # 256 prompts: the result is ~1.2 MB, a batch's forward pass a few hundred kB.
    assert excess[256] <= 1.25 * excess[16] + 64 * 1024, (excess, result)


def test_streamed_collection_keeps_one_batch_of_encodings(tiny_pairs, tmp_path, monkeypatch):
    """Prompts are tokenised batch by batch: while a batch runs, only its encodings are alive."""
    import weakref

    model = tiny_pairs["llama"].base
    texts = [f"Statement number {i} is here." for i in range(200)]
    alive, sizes, seen = weakref.WeakSet(), [], []
    real_encode, real_run = collect_mod.encode, collect_mod._run_batch

    def spy_encode(tok, batch_texts, **kw):
        encs = real_encode(tok, batch_texts, **kw)
        sizes.append(len(encs))
        alive.update(encs)
        return encs

    def spy_run(*args, **kwargs):
        seen.append(len(alive))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "encode", spy_encode)
    monkeypatch.setattr(collect_mod, "_run_batch", spy_run)
    monkeypatch.setattr(collect_mod, "_CHECK_CHUNK", 64)
    acts = interp.collect(model, texts, "resid_post", batch_size=8, shard_size=32, out=tmp_path / "s", progress=False)
    assert max(seen) <= 8 and len(seen) == 25
    assert sizes == [64, 64, 64, 8] + [8] * 25  # the up-front check in chunks, then one call per batch
    ref = interp.collect(model, texts, "resid_post", batch_size=8, shard_size=32, progress=False)
    assert acts.token_ids == ref.token_ids and torch.equal(acts["resid_post"], ref["resid_post"])


def test_streamed_collection_memory_does_not_grow_with_prompts(tiny_pairs, tmp_path, monkeypatch):
    """Python-side peak of a streamed collection grows by a few hundred bytes a prompt at most: the
    returned store's prompt texts, the shard list, and CPython's tuple free lists (up to 2000 tuples
    of each size stay allocated after use). Holding every prompt's encoding (token ids, character
    spans, the tokenizer's own batch) costs ~2 kB a prompt. Tensors are bounded by the shard buffer."""
    import gc
    import tracemalloc

    model = tiny_pairs["llama"].base
    monkeypatch.setattr(collect_mod, "_CHECK_CHUNK", 100)  # both runs check full chunks
    peaks = {}
    for n in (200, 2000):
        texts = [f"Statement number {i} is here." for i in range(n)]
        gc.collect()
        tracemalloc.start()
        try:
            interp.collect(model, texts, "resid_post", batch_size=32, shard_size=256, out=tmp_path / str(n),
                           progress=False)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[2000] - peaks[200] <= 512 * 1800, peaks  # measured: ~210 B a prompt; all encodings: ~2.1 kB


def test_prompts_of_similar_length_share_a_batch_and_rows_stay_in_prompt_order(tiny_pairs, monkeypatch):
    """Short and long prompts interleaved: each forward pass gets prompts of about one length (fewer padded
    slots than batches in prompt order), and every row is the prompt's own (equal to one-prompt batches)."""
    model = tiny_pairs["llama"].post
    texts = [("word " * (12 if i % 2 else 1)) + f"number {i}." for i in range(12)]
    seen = []
    real = collect_mod._run_batch

    def spy(model_, encs, *args, **kwargs):
        seen.append([len(e) for e in encs])
        return real(model_, encs, *args, **kwargs)

    monkeypatch.setattr(collect_mod, "_run_batch", spy)
    acts = interp.collect(model, texts, ["resid_post", "mlp_post"], positions=-2, batch_size=3, progress=False)
    lengths = [len(e) for e in encode(model.interp_tokenizer, texts)]
    in_order = sum(max(lengths[b : b + 3]) * len(lengths[b : b + 3]) for b in range(0, 12, 3))
    assert sum(max(b) * len(b) for b in seen) < in_order
    assert all(max(b) - min(b) <= 1 for b in seen)  # two lengths, never mixed in a batch
    monkeypatch.setattr(collect_mod, "_run_batch", real)
    one = interp.collect(model, texts, ["resid_post", "mlp_post"], positions=-2, batch_size=1, progress=False)
    for site in ("resid_post", "mlp_post"):
        torch.testing.assert_close(acts[site], one[site], rtol=1e-5, atol=1e-5)
    assert acts.token_ids == one.token_ids == [tuple(e.ids) for e in encode(model.interp_tokenizer, texts)]
    assert torch.equal(acts.token_index, one.token_index)
