"""Data-parallel collection under torchrun (2 CPU processes, gloo) equals a single-process run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp
from interp.distributed import blocks

WORKER = Path(__file__).with_name("_torchrun_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(model_dir, out):
    # run a copy outside tests/, whose datasets/ package would shadow Hugging Face's on sys.path[0]
    worker = Path(out).parent / WORKER.name
    worker.write_text(WORKER.read_text())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(worker), str(model_dir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_ranks_write_one_store_equal_to_a_single_process_run(tiny_dirs, tmp_path):
    model_dir = tiny_dirs["llama"][1]
    out = tmp_path / "store"
    _torchrun(model_dir, out)
    merged = interp.Activations.load(out)
    manifest = merged.manifest
    assert manifest["distributed"]["world_size"] == 2 and manifest["distributed"]["blocks"] == [[0, 12], [12, 23]]
    rows = [i for s in manifest["shards"] for i in range(s["start"], s["stop"])]
    assert rows == list(range(23))  # every row exactly once, in prompt order
    assert {s["file"].split("/")[0] for s in manifest["shards"]} == {"rank-0", "rank-1"}
    model = interp.load_model(model_dir, device="cpu")
    prompts = [f"prompt {i}: " + "word " * (i % 7) for i in range(23)]
    single = interp.collect(model, prompts, ["resid_post", "mlp_out"], batch_size=3, progress=False)
    for site in ("resid_post", "mlp_out"):
        # each rank groups its own rows by length: other batches than one process's, equal to float32 rounding
        torch.testing.assert_close(merged[site], single[site], rtol=1e-5, atol=1e-5)
    assert merged.token_ids == single.token_ids and merged.texts == single.texts
    torch.testing.assert_close(merged.token_index, single.token_index)
    # launching again finds the finished store and changes nothing
    before = (out / "manifest.json").read_text()
    _torchrun(model_dir, out)
    assert (out / "manifest.json").read_text() == before


def test_blocks_split_rows_evenly():
    assert blocks(23, 2) == [(0, 12), (12, 23)]
    assert blocks(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]
    with pytest.raises(ValueError, match="distributed=True needs"):
        interp.collect(interp.load_pair().base, ["a"], distributed=True, progress=False)
