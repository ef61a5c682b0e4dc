"""The HTML report as a person sees it: opened in headless Chromium (Debian's package, never downloaded).

Checks that every plotly figure rendered, that the page printed nothing to the console (no errors, no
warnings), that it made no network request (everything is inlined), and that text taken from prompts
and generations is shown as text, not run as markup. Saves screenshots to ``artifacts/`` (``report.png``: the
bundled pair's main report; ``report-geometry.png``: its divergence, geometry, rotation and truth-spectrum
sections; the real pair's, ``report-real.png``, comes from ``tests/real/test_report_real.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it with apt)")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--no-default-browser-check", "--virtual-time-budget=5000",
]


def _open(page: Path, tmp_path: Path, *extra: str) -> tuple[str, list[str], set[str]]:
    """(DOM after scripts ran, console lines, URLs the page itself requested)."""
    net = tmp_path / "net.json"
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={net}", *extra,
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    log = json.loads(net.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = {e["params"]["url"] for e in log["events"]
                 if e["type"] == start and "file://" in e["params"].get("network_isolation_key", "")
                 and not e["params"]["url"].startswith("file:")}
    return proc.stdout, console, requested


def assert_renders(page: Path, tmp_path: Path, min_figures: int) -> str:
    """Every plotly figure of ``page`` drawn, nothing on the console, no request: the DOM after scripts ran."""
    n_figures = page.read_text().count('class="plotly-graph-div"')
    assert n_figures >= min_figures
    dom, console, requested = _open(page, tmp_path)
    # plotly marks each graph div it has drawn into with js-plotly-plot and fills it with SVG
    rendered = re.findall(r'<div id="([^"]+)" class="plotly-graph-div js-plotly-plot"', dom)
    assert len(rendered) == n_figures, f"{len(rendered)} of {n_figures} figures rendered"
    assert dom.count('class="main-svg"') >= 2 * n_figures
    assert console == [], console
    assert requested == set(), requested
    return dom


def screenshot(page: Path, name: str, tmp_path: Path, height: int = 6000) -> Path:
    """``artifacts/<name>``: the top ``height`` pixels of ``page`` at 1280 px wide."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--window-size=1280,{height}",
                    f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    return shot


def test_report_renders_every_figure_offline_without_console_output(organism_report, tmp_path):
    _, out = organism_report
    dom = assert_renders(out / "report.html", tmp_path, 15)
    assert "Contents" in dom  # the summary at the top: one line per section, linked
    screenshot(out / "report.html", "report.png", tmp_path)


def test_divergence_geometry_rotation_and_truth_spectrum_figures_render(tmp_path):
    """Issue 18's sections on the bundled pair: CKA / norm change / logit-lens KL and JS, RankMe and alpha-ReQ
    curves, the rotation angles and norms, the truth-spectrum R² scatter, drawn with nothing on the console."""
    from interp.compare import compare

    out = tmp_path / "geo"
    result = compare(concepts=["divergence", "geometry", "rotation", "truth_spectrum"], out=out, progress=False)
    assert all(result.concepts[c].plots for c in ("divergence", "geometry", "rotation", "truth_spectrum"))
    assert_renders(out / "report.html", tmp_path, 8)
    screenshot(out / "report.html", "report-geometry.png", tmp_path)


def test_text_from_prompts_is_shown_as_text(tmp_path):
    from interp.report import Comparison, ConceptResult, write_report

    evil = "<script>console.error('injected')</script><img src=x onerror=console.error('img')>"
    entry = {"layer": 0, "base_accuracy": 0.5, "post_accuracy": 0.6, "cosine_base_post": 0.1,
             "transfer_base_to_post": 0.5, "transfer_post_to_base": 0.5}
    concept = ConceptResult(
        "probe", [0], [entry],
        matrices={"m": {"rows": [evil], "cols": ["</script><script>console.error('matrix')</script>"],
                        "values": [[0.5]], "title": evil}},
        readings={"summary": evil, "m": evil}, setup={"dataset": evil},
        plots=[{"title": evil, "series": {"base_accuracy": evil}}],
        tables={"examples": {"title": evil, "columns": ["prompt", "x"], "rows": [[evil, 1.0]]}},
    )
    out = write_report(Comparison(pair={"base": {"name": evil}, "post": {"name": "p"}}, concepts={"probe": concept}),
                       tmp_path / "r")
    dom, console, requested = _open(out / "report.html", tmp_path)
    assert console == [], console  # no injected script or handler ran
    assert requested == set()
    assert "&lt;script&gt;console.error('injected')&lt;/script&gt;" in dom  # shown as text
    assert dom.count('class="plotly-graph-div js-plotly-plot"') == 2  # both figures still rendered


def test_knowledge_and_confidence_figures_render(tmp_path):
    """The knowledge section's layer x token-role heatmaps (base, post, post - base) and the confidence section's
    reliability diagrams, drawn in the browser with nothing on the console."""
    from interp.compare import compare

    out = tmp_path / "kc"
    result = compare(concepts=["knowledge", "confidence"], out=out, progress=False)
    knowledge = result.concepts["knowledge"]
    assert any("post - base" in m.get("title", "") or "post − base" in m.get("title", "")
               for m in knowledge.matrices.values()), list(knowledge.matrices)
    assert any(p.get("kind") == "xy" for p in result.concepts["confidence"].plots)
    assert_renders(out / "report.html", tmp_path, 6)
