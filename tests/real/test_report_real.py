"""Real tier: the real pair's report (google/gemma-3-270m and its post-trained organism) as a person sees it.

``interp compare`` on the real pair, truth and refusal on small slices of the public datasets (160 Geometry-of-Truth
statements, 48 harmful and 48 harmless requests, refusal candidates at three layers: the sections' code paths at
real scale, not their published figures), opened in headless Chromium: every figure drawn, nothing on the console,
no request; the summary at the top, the selected refusal candidate marked, replies stopped at the chat's end of
turn. Saves ``artifacts/report-real.png``.
"""

from __future__ import annotations

import csv
import json

import pytest

from ..conftest import SHARED_DATASETS
from ..test_report_browser import CHROMIUM, assert_renders, screenshot
from .conftest import gguf_path, real_cache_root

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it with apt)"),
    pytest.mark.skipif(not (SHARED_DATASETS / "refusal").is_dir(),
                       reason=f"the shared datasets folder is not at {SHARED_DATASETS}"),
]


def _slices(tmp_path):
    """(statements CSV, harmful JSON, harmless JSON): the first rows of the public files."""
    with open(SHARED_DATASETS / "geometry_of_truth" / "cities.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:160]
    truth = tmp_path / "cities160.csv"
    with open(truth, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["statement", "label", "city"])
        w.writeheader()
        w.writerows({"statement": r["statement"], "label": r["label"], "city": r["city"]} for r in rows)
    files = []
    for name in ("harmful_val", "harmless_val"):
        requests = json.loads((SHARED_DATASETS / "refusal" / f"{name}.json").read_text())[:48]
        (tmp_path / f"{name}48.json").write_text(json.dumps(requests))
        files.append(tmp_path / f"{name}48.json")
    return truth, *files


def test_real_pair_report_shows_its_summary_marks_and_stopped_replies(tmp_path, monkeypatch):
    from interp.cli import main

    gguf_path("gemma3")  # skips, saying which package is missing
    monkeypatch.setenv("INTERP_CACHE", str(real_cache_root()))  # the converted checkpoints the tier already made
    truth, harmful, harmless = _slices(tmp_path)
    out = tmp_path / "report-real"
    assert main(["compare", "--base", "gemma-270m-organism", "--concepts", "truth,refusal", "--truth-data", str(truth),
                 "--refusal-data", f"{harmful},{harmless}", "--refusal-candidate-layers", "6,9,12",
                 "--out", str(out)]) == 0

    dom = assert_renders(out / "report.html", tmp_path, 6)
    assert "Contents" in dom  # the summary: one linked line per section
    report = json.loads((out / "report.json").read_text())
    refusal = report["concepts"]["refusal"]
    marks = [m["marks"] for m in refusal["matrices"].values() if m.get("marks")]
    # the candidate the steering rows use, marked on both heatmaps (on 48 requests none may pass Arditi's filters:
    # the mark then says so)
    assert len(marks) == 2 and all(label in ("selected", "steered with (no candidate qualifies)")
                                   for ms in marks for _, _, label in ms)
    # replies stop at Gemma's end of turn: the marker itself never reaches the examples
    examples = [x for row in refusal["tables"]["steering"]["rows"] for x in row[6:8] if isinstance(x, str)]
    assert examples and not any("<end_of_turn>" in x or "<start_of_turn>" in x for x in examples)
    # one quantity per axis: every panel of a split figure names its own y axis
    panels = [p for c in report["concepts"].values() for plot in c["plots"] for p in plot.get("panels", [])]
    assert panels and all(p.get("yaxis") for p in panels)
    screenshot(out / "report.html", "report-real.png", tmp_path)
