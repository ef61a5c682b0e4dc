"""Writing a comparison's results: JSON, CSV, directions (safetensors) and a self-contained HTML page.

``DIR/report.json``         every concept's per-layer entries, matrices and readings
``DIR/layers.csv``          one row per concept x layer x model x measure
``DIR/directions.safetensors``  every direction ``[layer, d]`` with its metadata
``DIR/report.html``         the figures (plotly, inlined: the page opens offline)

All files are written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._io import atomic_write_bytes, save_safetensors, write_json

__all__ = ["ConceptResult", "Comparison", "figures", "write_report"]


@dataclass
class ConceptResult:
    """One concept's comparison.

    Attributes:
        concept: e.g. ``"truth"``.
        layers: the block indices compared.
        per_layer: one dict per layer with at least ``layer``, ``base_accuracy``,
            ``post_accuracy``, ``cosine_base_post``, ``transfer_base_to_post``,
            ``transfer_post_to_base``.
        long_rows: ``(layer, model, measure, value)`` rows for the CSV.
        matrices: named matrices ``{"rows": [...], "cols": [...], "values": [[...]], "title": str}``.
        directions: ``name -> [layer, d]`` tensors, saved to safetensors.
        readings: one-line readings of what each figure shows.
        setup: how the concept was measured (dataset, position, methods).
    """

    concept: str
    layers: list[int]
    per_layer: list[dict]
    long_rows: list[tuple[int, str, str, float]] = field(default_factory=list)
    matrices: dict[str, dict] = field(default_factory=dict)
    directions: dict[str, torch.Tensor] = field(default_factory=dict)
    readings: dict[str, str] = field(default_factory=dict)
    setup: dict = field(default_factory=dict)


@dataclass
class Comparison:
    """The results of :func:`interp.compare.compare`: the pair and one entry per concept."""

    pair: dict
    concepts: dict[str, ConceptResult]
    manifest: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "pair": self.pair,
            "manifest": self.manifest,
            "concepts": {
                name: {"layers": c.layers, "per_layer": c.per_layer, "matrices": c.matrices,
                       "readings": c.readings, "setup": c.setup}
                for name, c in self.concepts.items()
            },
        }


def _csv(comparison: Comparison) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["concept", "layer", "model", "measure", "value"])
    for name, c in comparison.concepts.items():
        for layer, model, measure, value in c.long_rows:
            w.writerow([name, layer, model, measure, f"{value:.6g}"])
    return buf.getvalue().encode()


def figures(c: ConceptResult) -> list[tuple[str, str, object]]:
    """(title, reading, plotly figure) for one concept."""
    import plotly.graph_objects as go

    layers = c.layers
    col = lambda key: [row.get(key) for row in c.per_layer]  # noqa: E731
    figs = []
    acc = go.Figure()
    for key, name in (("base_accuracy", "base"), ("post_accuracy", "post")):
        acc.add_trace(go.Scatter(x=layers, y=col(key), mode="lines+markers", name=name))
    acc.update_layout(xaxis_dtick=1, xaxis_title="layer (output of block)", yaxis_title="held-out accuracy", yaxis_range=[0, 1.02])
    figs.append(("Probe accuracy by layer", c.readings.get("accuracy", ""), acc))
    sim = go.Figure()
    for key, name in (("cosine_base_post", "cosine(base, post)"), ("transfer_base_to_post", "transfer base→post"),
                      ("transfer_post_to_base", "transfer post→base"),
                      ("mahalanobis_cosine_base_post", "Mahalanobis cosine")):
        if key in c.per_layer[0]:
            sim.add_trace(go.Scatter(x=layers, y=col(key), mode="lines+markers", name=name))
    sim.update_layout(xaxis_dtick=1, xaxis_title="layer (output of block)", yaxis_title="value", yaxis_range=[-0.05, 1.05])
    figs.append(("Same direction in both models?", c.readings.get("similarity", ""), sim))
    nie_keys = [k for k in c.per_layer[0] if k.startswith("nie_")]
    if nie_keys:
        nie = go.Figure()
        for key in nie_keys:
            src, tgt = key.removeprefix("nie_").split("_to_")
            nie.add_trace(go.Scatter(x=layers, y=col(key), mode="lines+markers", name=f"{src} direction → {tgt} model"))
        nie.update_layout(xaxis_dtick=1, xaxis_title="layer the direction is added after", yaxis_title="normalized indirect effect")
        figs.append(("Causal effect of the truth directions", c.readings.get("causal", ""), nie))
    for key, m in c.matrices.items():
        heat = go.Figure(go.Heatmap(z=m["values"], x=m["cols"], y=m["rows"], zmin=0, zmax=1, colorscale="Viridis",
                                    text=[[f"{v:.2f}" for v in row] for row in m["values"]], texttemplate="%{text}"))
        heat.update_layout(xaxis_title="tested on", yaxis_title="trained on")
        figs.append((m.get("title", key), c.readings.get(key, ""), heat))
    return figs


def _html(comparison: Comparison) -> bytes:
    from plotly.offline import get_plotlyjs

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>base vs post: layer-wise report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "h2{border-bottom:1px solid #ccc}.reading{color:#444;font-style:italic}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        "<h1>Base vs. post-trained, layer by layer</h1>",
        f"<p>base: <code>{html.escape(str(comparison.pair.get('base', {}).get('name')))}</code> &nbsp; "
        f"post: <code>{html.escape(str(comparison.pair.get('post', {}).get('name')))}</code></p>",
    ]
    for name, c in comparison.concepts.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        setup = ", ".join(f"{k}: {v}" for k, v in c.setup.items())
        parts.append(f"<p>{html.escape(setup)}</p>")
        if c.readings.get("summary"):
            parts.append(f"<p><b>{html.escape(c.readings['summary'])}</b></p>")
        for title, reading, fig in figures(c):
            parts.append(f"<h3>{html.escape(title)}</h3><p class='reading'>{html.escape(reading)}</p>")
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    parts.append("</body></html>")
    return "\n".join(parts).encode()


def write_report(comparison: Comparison, out: str | os.PathLike) -> Path:
    """Write ``report.json``, ``layers.csv``, ``directions.safetensors`` and ``report.html`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", comparison.to_json())
    atomic_write_bytes(out / "layers.csv", _csv(comparison))
    tensors, meta = {}, {}
    for name, c in comparison.concepts.items():
        for key, t in c.directions.items():
            tensors[f"{name}/{key}"] = t.float()
            meta[f"{name}/{key}"] = json.dumps({"concept": name, "layers": c.layers, **c.setup})
    if tensors:
        save_safetensors(out / "directions.safetensors", tensors, metadata=meta)
    atomic_write_bytes(out / "report.html", _html(comparison))
    return out
