"""Shared fixtures: seeded RNGs and tiny models of real families built into temp folders."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

FAMILIES = ("gpt2", "llama", "qwen2", "gemma2")
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _every_report_reads_back_equal():
    """Every report folder the suite writes is read back with ``Comparison.load`` right after it is written and
    must equal the comparison that was written (the round trip of ``interp report`` and ``interp diff``)."""
    import interp.compare
    import interp.report as report

    original = report.write_report

    def checked(comparison, out):
        path = original(comparison, out)
        assert report.Comparison.load(path) == comparison, f"Comparison.load({path}) differs from what was written"
        return path

    report.write_report = interp.compare.write_report = checked
    yield
    report.write_report = interp.compare.write_report = original


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``family -> (base_dir, post_dir)``: random-weight tiny pairs saved like hub snapshots."""
    from interp.testing import build_tiny_pair

    root = tmp_path_factory.mktemp("tiny")
    return {f: build_tiny_pair(f, root / f, seed=0, n_layers=3) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_pairs(tiny_dirs):
    """``family -> ModelPair`` booted through the user-facing path."""
    import interp

    return {f: interp.load_pair(b, p, device="cpu") for f, (b, p) in tiny_dirs.items()}


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def organism_report(tmp_path_factory):
    """The full comparison of the bundled organism, written once: ``(Comparison, report folder)``."""
    from interp.compare import compare

    out = tmp_path_factory.mktemp("report")
    return compare(concepts=["truth", "refusal", "language", "snmf"], out=out, progress=False), out
