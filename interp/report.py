"""Writing a comparison's results: JSON, CSV, directions (safetensors) and a self-contained HTML page.

``DIR/report.json``         every concept's per-layer entries, matrices, tables, plots and readings;
                            ``manifest``: what reproduces the run (:mod:`interp.manifest`);
                            ``wall_time_s``: seconds spent booting the pair and in each section
``DIR/layers.csv``          one row per concept x layer x model x measure
``DIR/directions.safetensors``  every direction ``[layer, d]`` with its metadata
``DIR/report.html``         the figures (plotly, inlined: the page opens offline)
``DIR/vectors/*.safetensors``  steering vectors a section selected (e.g. ``refusal-post``),
                            loadable with ``steering.load_vector`` / ``interp steer --vector``; each
                            records the model it belongs to (:func:`interp.compare.bind_vectors`),
                            and another model is refused

All files are written atomically. :meth:`Comparison.load` reads a report folder back into an equal
:class:`Comparison` (``interp report DIR`` re-renders its HTML from it). Undefined values (NaN) are
written, and read back, as ``null``.
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

__all__ = ["ConceptResult", "Comparison", "diff", "figures", "long_rows", "render_html", "vector_file", "write_report",
           "REPORT_FORMAT"]

#: ``report.json``'s ``format`` (what :meth:`Comparison.load` reads).
REPORT_FORMAT = "interp-report/2"


def jsonable(x):
    """``x`` as plain JSON values: tuples as lists, keys as strings, numpy and 0-d torch numbers as Python
    numbers, NaN and infinities as ``None`` (undefined)."""
    import math

    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0 and not isinstance(x, (str, bytes)):
        x = x.item()
        if isinstance(x, bool):
            return x
        if isinstance(x, int):
            return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, os.PathLike):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not a JSON value: {x!r}")


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
        plots, tables: what the HTML report draws (see the fields).
    """

    concept: str
    layers: list[int]
    per_layer: list[dict]
    long_rows: list[tuple[int, str, str, float]] = field(default_factory=list)
    matrices: dict[str, dict] = field(default_factory=dict)
    directions: dict[str, torch.Tensor] = field(default_factory=dict)
    readings: dict[str, str] = field(default_factory=dict)
    setup: dict = field(default_factory=dict)
    plots: list[dict] = field(default_factory=list)
    """line plots over layers: ``{"title", "series": {per_layer key: label}, "yaxis", "yrange", "reading"}``; or, with
    ``"kind": "xy"``, a plot over an x axis of its own (:func:`_xy`: series of values, e.g. a reliability diagram)"""
    tables: dict[str, dict] = field(default_factory=dict)
    """named tables ``{"title", "columns", "rows"}``, shown as a table (and bars when ``x``/``y``/``color`` name
    columns: one figure per ``facet`` value where it names one, error bars where ``low``/``high`` name the columns of
    an interval's ends); ``"print"``: the columns ``interp compare`` prints in the terminal when the section
    finishes; ``"empty"``: why a table has no rows (shown instead of a table of headers only)"""
    vectors: dict = field(default_factory=dict)
    """name -> ``steering.SteeringVector`` to write as ``DIR/vectors/{concept}-{name}.safetensors``"""

    def __post_init__(self) -> None:
        # plain JSON values from the start, so what is written is what a reload gives (NaN: None, undefined)
        self.layers = [int(x) for x in self.layers]
        for name in ("per_layer", "long_rows", "matrices", "readings", "setup", "plots", "tables"):
            setattr(self, name, jsonable(getattr(self, name)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, ConceptResult):
            return NotImplemented
        plain = ("concept", "layers", "per_layer", "long_rows", "matrices", "readings", "setup", "plots", "tables")
        if any(getattr(self, k) != getattr(other, k) for k in plain):
            return False
        if self.directions.keys() != other.directions.keys() or self.vectors.keys() != other.vectors.keys():
            return False
        same = all(torch.equal(self.directions[k].float(), other.directions[k].float()) for k in self.directions)
        return same and all(_vector_state(self.vectors[k]) == _vector_state(other.vectors[k]) for k in self.vectors)

    def to_json(self) -> dict:
        return {"layers": self.layers, "per_layer": self.per_layer, "matrices": self.matrices, "tables": self.tables,
                "readings": self.readings, "setup": self.setup, "plots": self.plots, "long_rows": self.long_rows,
                "directions": sorted(self.directions), "vectors": sorted(self.vectors)}


def _vector_state(vec) -> tuple:
    """What a saved steering vector keeps: its directions (float32), layers, site, scale and metadata."""
    return (vec.vectors.float().tolist(), tuple(vec.layers), vec.site, float(vec.scale), jsonable(vec.meta))


@dataclass
class Comparison:
    """The results of :func:`interp.compare.compare`: the pair and one entry per concept."""

    pair: dict
    concepts: dict[str, ConceptResult]
    manifest: dict = field(default_factory=dict)
    #: wall time in seconds of booting the pair (``load``) and of each section, in run order
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pair, self.manifest = jsonable(self.pair), jsonable(self.manifest)
        self.timings = {k: float(v) for k, v in self.timings.items()}

    def to_json(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "pair": self.pair,
            "manifest": self.manifest,
            "wall_time_s": self.timings,
            "concepts": {name: c.to_json() for name, c in self.concepts.items()},
        }

    @classmethod
    def load(cls, folder: str | os.PathLike, *, tensors: bool = True) -> "Comparison":
        """Read a report folder written by :func:`write_report` (``report.json``, ``directions.safetensors``,
        ``vectors/``) back into an equal :class:`Comparison`.

        ``tensors=False`` reads the figures only (``report.json``): directions and steering vectors are left
        empty, so a folder holding only its ``report.json`` can still be re-rendered (:func:`render_html`) or
        compared (:func:`diff`). Such a comparison is not written back with :func:`write_report`, which would
        drop them.

        Raises:
            FileNotFoundError: no ``report.json`` in ``folder``, or (with ``tensors``) a direction or vector file
                it lists is missing.
            ValueError: a ``report.json`` of another format (an older toolkit's: re-run the comparison).
        """
        from safetensors import safe_open

        from steering import load_vector

        folder = Path(folder)
        if folder.name == "report.json" and folder.is_file():  # the file itself was named
            folder = folder.parent
        path = folder / "report.json"
        if not path.is_file():
            if (folder / "series.json").is_file():
                reports = sorted(p.parent.name for p in folder.glob("*/report.json"))
                raise FileNotFoundError(f"{folder} is a checkpoint series: each comparison's report is in its own "
                                        f"folder ({', '.join(reports[:4]) or 'none written yet'})")
            raise FileNotFoundError(f"{folder} holds no report.json (is it a report folder of interp compare?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); the report folder is damaged: run the comparison "
                             "again") from None
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            data = data if isinstance(data, dict) else {}
            raise ValueError(f"{path} is of format {data.get('format')!r}, not {REPORT_FORMAT!r}: written by another "
                             "version of the toolkit; run the comparison again")
        read = tensors
        tensors = {}
        wanted = [f"{name}/{key}" for name, c in data["concepts"].items() for key in c["directions"]] if read else []
        if wanted:
            st = folder / "directions.safetensors"
            if not st.is_file():
                raise FileNotFoundError(f"{st} is missing; report.json lists directions {wanted[:3]}...")
            with safe_open(st, framework="pt") as f:
                missing = sorted(set(wanted) - set(f.keys()))
                if missing:
                    raise FileNotFoundError(f"{st} lacks directions {missing}")
                tensors = {k: f.get_tensor(k) for k in wanted}
        concepts = {}
        for name, c in data["concepts"].items():
            vectors = {key: load_vector(folder / "vectors" / vector_file(name, key))
                       for key in (c["vectors"] if read else [])}
            concepts[name] = ConceptResult(
                name, c["layers"], c["per_layer"], c["long_rows"], c["matrices"],
                {key: tensors[f"{name}/{key}"] for key in (c["directions"] if read else [])}, c["readings"],
                c["setup"], c["plots"], c["tables"], vectors=vectors)
        return cls(pair=data["pair"], concepts=concepts, manifest=data["manifest"], timings=data["wall_time_s"])


def long_rows(per_layer: list[dict]) -> list[tuple[int, str, str, float]]:
    """``(layer, model, measure, value)`` rows of per-layer entries: ``base_x``/``post_x`` keys become
    model ``base``/``post`` and measure ``x``; other numeric keys are model ``both``."""
    out = []
    for entry in per_layer:
        for key, value in entry.items():
            if key == "layer" or not isinstance(value, (int, float)):
                continue
            if key.startswith(("base_", "post_")):
                out.append((entry["layer"], key[:4], key[5:], value))
            else:
                out.append((entry["layer"], "both", key, value))
    return out


def _csv(comparison: Comparison) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["concept", "layer", "model", "measure", "value"])
    for name, c in comparison.concepts.items():
        for layer, model, measure, value in c.long_rows:
            w.writerow([name, layer, model, measure, "" if value is None else f"{value:.6g}"])
    return buf.getvalue().encode()


def _line(c: ConceptResult, plot: dict):
    """One line per ``plot["series"]`` key, with a shaded band where the rows carry ``{key}_ci_low`` and
    ``{key}_ci_high`` (a bootstrap interval), and each ``plot["nulls"]`` key as a grey dashed line (the value
    chance gives). A ``*_true_to_false`` series is dotted.

    ``plot["panels"]`` (optional) splits the figure into panels over the same layers, one quantity each: a list of
    ``{"keys": [series or null keys], "yaxis": title with unit, "yrange": [lo, hi] or None, "title": the panel's
    own title (optional)}``; a key in no panel goes to the first. The panels are stacked, or laid out row by row
    in ``plot["columns"]`` columns (small multiples). ``plot["shared_yaxis"]``: every panel on one y scale (the
    same quantity in each; its title on the first column only). ``plot["panel_colors"]``: the n-th series of every
    panel drawn in the same colour (small multiples of the same measures), else each series its own.
    ``plot["differences"]`` (optional): ``{key: [a, b]}`` adds a series ``key`` of ``a - b`` per layer (blank where
    either is), e.g. post − base, for ``series`` and ``panels`` to name."""
    import plotly.colors
    import plotly.graph_objects as go

    rows = c.per_layer
    if plot.get("differences"):
        def minus(row, a, b):
            return None if row.get(a) is None or row.get(b) is None else row[a] - row[b]

        rows = [{**row, **{k: minus(row, a, b) for k, (a, b) in plot["differences"].items()}} for row in rows]
    panels = plot.get("panels") or [{"keys": [*plot["series"], *plot.get("nulls", {})],
                                     "yaxis": plot.get("yaxis", "value"), "yrange": plot.get("yrange")}]
    n_cols = max(1, min(int(plot.get("columns", 1)), len(panels)))
    n_rows = -(-len(panels) // n_cols)
    place = {i: (i // n_cols + 1, i % n_cols + 1) for i in range(len(panels))}  # panel -> (row, col)
    panel_of = {k: i for i, panel in enumerate(panels) for k in panel["keys"]}
    if len(panels) > 1:
        from plotly.subplots import make_subplots

        titles = [panel.get("title", "") for panel in panels] if any("title" in p for p in panels) else None
        specs = [[{} if r * n_cols + k < len(panels) else None for k in range(n_cols)] for r in range(n_rows)]
        grid = n_cols > 1
        fig = make_subplots(rows=n_rows, cols=n_cols, shared_xaxes=not grid, specs=specs, subplot_titles=titles,
                            vertical_spacing=(0.3 if titles else 0.18) / n_rows if grid else
                            (0.1 if titles else 0.06), horizontal_spacing=0.08)
        height = 260 + (260 if grid else 220) * n_rows
        fig.update_layout(height=height)
        if grid:  # the legend under the grid (75 px below the plot area, past the x titles): panels keep the width
            fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -75 / (height - 180),
                                      "xanchor": "left", "x": 0})
    else:
        fig = go.Figure()

    def add(trace, key):
        if len(panels) > 1:
            row, col = place[panel_of.get(key, 0)]
            fig.add_trace(trace, row=row, col=col)
        else:
            fig.add_trace(trace)

    palette = plotly.colors.qualitative.Plotly
    x = c.layers
    for i, (key, label) in enumerate(plot["series"].items()):
        if key not in rows[0]:
            continue
        if plot.get("panel_colors"):
            i = [k for k in panels[panel_of.get(key, 0)]["keys"] if k in plot["series"]].index(key)
        color = palette[i % len(palette)]
        lo, hi = f"{key}_ci_low", f"{key}_ci_high"
        if lo in rows[0] and hi in rows[0]:
            upper, lower = [row.get(hi) for row in rows], [row.get(lo) for row in rows]
            add(go.Scatter(x=list(x) + list(x)[::-1], y=upper + lower[::-1], fill="toself", fillcolor=color,
                           opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False,
                           name=f"{label} 95% CI"), key)
        add(go.Scatter(x=x, y=[row.get(key) for row in rows], mode="lines+markers", name=label,
                       line={"color": color, "dash": "dot" if key.endswith("_true_to_false") else "solid"}), key)
    for key, label in plot.get("nulls", {}).items():
        if key in rows[0]:
            add(go.Scatter(x=x, y=[row.get(key) for row in rows], mode="lines", name=f"null: {label}",
                           line={"color": "rgba(128,128,128,0.7)", "dash": "dash"}), key)
    xtitle = plot.get("xaxis", "layer (output of block)")
    # the layers and no more (plotly would pad a 0..17 axis to -1..18); a tick per layer up to 24 of them
    xaxis = {"range": [min(x) - 0.3, max(x) + 0.3], "dtick": max(1, -(-len(x) // 24))} if len(x) else {}
    if len(panels) > 1:
        shared = plot.get("shared_yaxis")
        for i, panel in enumerate(panels):
            row, col = place[i]
            title = panel.get("yaxis", "value") if not shared or col == 1 else None
            fig.update_yaxes(title_text=title, range=panel.get("yrange"), row=row, col=col)
            if shared and i:
                fig.update_yaxes(matches="y", row=row, col=col)
            fig.update_xaxes(**xaxis, row=row, col=col)
            if i + n_cols >= len(panels):  # the lowest panel of its column
                fig.update_xaxes(title_text=xtitle, row=row, col=col)
        return fig
    fig.update_xaxes(**xaxis, title_text=xtitle)
    fig.update_layout(yaxis_title=plot.get("yaxis", "value"))
    if plot.get("yrange"):
        fig.update_layout(yaxis_range=plot["yrange"])
    return fig


def _xy_trace(spec, shared_x) -> dict:
    """``{"x", "y", "low", "high", "text"}`` of one series of an ``"xy"`` plot: a list of y values over the plot's
    ``"x"``, or a dict with its own ``"x"`` and ``"y"`` (and optional ``"low"``/``"high"``, ``"text"``)."""
    return {"x": list(shared_x or []), "y": list(spec)} if isinstance(spec, list) else dict(spec)


def _xy(plot: dict):
    """A plot whose x axis is its own (``plot["kind"] == "xy"``), not the layers: ``plot["series"]`` maps a label to
    y values over ``plot["x"]`` or to ``{"x", "y"}`` of its own, with an error bar where ``"low"``/``"high"`` are
    given (a 95% interval) and hover text where ``"text"`` is; ``plot["nulls"]`` (the same forms) are grey dashed
    lines, e.g. the diagonal of a reliability diagram. ``plot["mode"]``: plotly's mode of the series
    (``"lines+markers"`` by default, ``"markers"`` for a scatter). ``None`` values are gaps."""
    import plotly.colors
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for i, (label, spec) in enumerate(plot["series"].items()):
        s = _xy_trace(spec, plot.get("x"))
        error = None
        if s.get("low") is not None and s.get("high") is not None:
            plus = [None if h is None or y is None else h - y for y, h in zip(s["y"], s["high"])]
            minus = [None if lo is None or y is None else y - lo for y, lo in zip(s["y"], s["low"])]
            error = {"type": "data", "array": plus, "arrayminus": minus, "visible": True}
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode=plot.get("mode", "lines+markers"), name=label,
                                 error_y=error, hovertext=s.get("text"), marker={"color": palette[i % len(palette)]}))
    for label, spec in plot.get("nulls", {}).items():
        s = _xy_trace(spec, plot.get("x"))
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="lines", name=f"null: {label}",
                                 line={"color": "rgba(128,128,128,0.7)", "dash": "dash"}))
    fig.update_layout(xaxis_title=plot.get("xaxis", "x"), yaxis_title=plot.get("yaxis", "value"))
    if plot.get("xrange"):
        fig.update_layout(xaxis_range=plot["xrange"])
    if plot.get("yrange"):
        fig.update_layout(yaxis_range=plot["yrange"])
    return fig


def _heatmap(m: dict):
    """A matrix as a heatmap: ``rows`` x ``cols`` of ``values`` (None: blank, ``notes`` say why), coloured on
    ``colorscale`` from ``zmin`` to ``zmax`` (None: the data's range) with ``zlabel`` on the colour bar; ``marks``
    (``[[row, col, label], ...]``) outlined and named in the legend (e.g. the selected candidate)."""
    import plotly.graph_objects as go

    heat = go.Figure(go.Heatmap(z=m["values"], x=m["cols"], y=m["rows"], zmin=m.get("zmin", 0), zmax=m.get("zmax", 1),
                                colorscale=m.get("colorscale", "Viridis"),
                                text=[["" if v is None else f"{v:.2f}" for v in row] for row in m["values"]],
                                texttemplate="%{text}", hovertext=m.get("notes")))  # None: not measured (notes: why)
    heat.update_layout(xaxis_title=m.get("xaxis", "tested on"), yaxis_title=m.get("yaxis", "trained on"))
    if all(isinstance(v, (int, float)) for v in m["cols"]):
        heat.update_layout(xaxis_dtick=1)
    if list(m["rows"]) == list(m["cols"]):  # square (trained on x tested on): the diagonal from the top-left
        heat.update_yaxes(autorange="reversed")
    if m.get("zlabel"):
        heat.update_traces(colorbar={"title": {"text": m["zlabel"]}})
    for row, col, label in m.get("marks", []):  # a cell to point out (the selected candidate): its outline, which
        (x0, x1), (y0, y1) = _edges(m["cols"], col), _edges(m["rows"], row)  # leaves its value readable
        heat.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, name=label, showlegend=True,
                       line={"color": "black", "width": 3}, fillcolor="rgba(0,0,0,0)")
    if m.get("marks"):
        heat.update_layout(legend={"orientation": "h", "y": -0.25})
    return heat


def _edges(axis, value) -> tuple[float, float]:
    """Where a heatmap cell of ``value`` begins and ends along ``axis`` (the heatmap's x or y values): halfway to
    its neighbours on a numeric axis, index ± 0.5 on a categorical one (as plotly draws the cells)."""
    if not all(_number(v) for v in axis):
        i = list(axis).index(value)
        return i - 0.5, i + 0.5
    at = sorted(axis)
    gaps = [b - a for a, b in zip(at, at[1:])] or [1]
    i = at.index(value)
    return value - (gaps[i - 1] if i else gaps[0]) / 2, value + (gaps[i] if i < len(gaps) else gaps[-1]) / 2


def _number(v) -> bool:
    """A table cell that is a number (not a bool, not text such as "undefined: ...")."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bars(t: dict):
    """Grouped bars: one group per ``t["x"]`` value, one bar colour per ``t["color"]`` value. Where ``t["low"]`` and
    ``t["high"]`` name two columns (an interval's ends, numbers), each bar gets an error bar from low to high; a row
    whose y, low or high is not a number (None, or text saying why it is undefined) gets none."""
    import plotly.graph_objects as go

    cols = t["columns"]
    x, y, color = (cols.index(t[k]) for k in ("x", "y", "color"))
    low, high = (cols.index(t[k]) if k in t else None for k in ("low", "high"))
    fig = go.Figure()
    for value in dict.fromkeys(r[color] for r in t["rows"]):
        rows = [r for r in t["rows"] if r[color] == value]
        error = None
        if low is not None and high is not None:
            ok = [all(_number(r[i]) for i in (y, low, high)) for r in rows]
            error = {"type": "data", "visible": True,
                     "array": [r[high] - r[y] if k else None for r, k in zip(rows, ok)],
                     "arrayminus": [r[y] - r[low] if k else None for r, k in zip(rows, ok)]}
        fig.add_trace(go.Bar(x=[r[x] for r in rows], y=[r[y] for r in rows], name=str(value), error_y=error,
                             text=[f"{r[y]:.2f}" if _number(r[y]) else "" for r in rows], textposition="outside"))
    fig.update_layout(barmode="group", yaxis_title=t["y"], yaxis_range=t.get("yrange"))
    return fig


def figures(c: ConceptResult) -> list[tuple[str, str, object]]:
    """(title, reading, plotly figure) for one concept: its line plots, matrices and tables, in that order."""
    figs = [(p["title"], c.readings.get(p.get("reading", ""), ""), _xy(p) if p.get("kind") == "xy" else _line(c, p))
            for p in c.plots]
    figs += [(m.get("title", key), c.readings.get(key, ""), _heatmap(m)) for key, m in c.matrices.items()]
    for key, t in c.tables.items():
        if "x" in t:
            for facet in dict.fromkeys(r[t["columns"].index(t["facet"])] for r in t["rows"]) if "facet" in t else [None]:
                sub = t if facet is None else {**t, "rows": [r for r in t["rows"] if r[t["columns"].index(t["facet"])] == facet]}
                title = t.get("title", key) + ("" if facet is None else f" ({t['facet']}: {facet})")
                figs.append((title, c.readings.get(key, ""), _bars(sub)))
    return figs


def _cell(v) -> str:
    """One table cell: numbers right-aligned (3 decimals for floats; undefined, None, as "–"), an interval or other
    list of numbers as ``[0.412, 0.655]``, text left-aligned."""
    if v is None:
        return "<td>–</td>"
    if _is_text(v):
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return f"<td class='t'>{html.escape(text)}</td>"
    if isinstance(v, (list, tuple)):
        return f"<td>[{', '.join('–' if x is None else _shown(x) for x in v)}]</td>"
    return f"<td>{html.escape(_shown(v))}</td>"


def _shown(v) -> str:
    """An int as it is; a float to 3 decimals, or 3 significant digits below 0.001 (a p-value of 2e-5 is not 0)."""
    if not isinstance(v, float):
        return str(v)
    return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"


def _is_text(v) -> bool:
    """Whether a cell is text (left-aligned): anything but a number, None or a list of numbers (an interval)."""
    if isinstance(v, (list, tuple)):
        return not v or not all(x is None or _number(x) for x in v)
    return v is not None and not _number(v)


def _table_html(t: dict) -> str:
    """A table in a box that scrolls sideways when wider than the page; each header aligned as its column (text
    left, numbers right)."""
    def th(k, col):
        cells = [row[k] for row in t["rows"] if k < len(row) and row[k] is not None]
        text = bool(cells) and all(_is_text(v) for v in cells)
        cls = " class='t'" if text else ""
        return f"<th{cls}>{html.escape(str(col))}</th>"

    head = "".join(th(k, col) for k, col in enumerate(t["columns"]))
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in t["rows"])
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _setup_html(setup: dict) -> str:
    """How a section measured, as a two-column table: every entry whole (lists and tables as JSON)."""
    rows = "".join(f"<tr><th class='t'>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in setup.items())
    return f"<details><summary>setup</summary><table class='setup'><tbody>{rows}</tbody></table></details>"


def _anchor(name: str) -> str:
    return "section-" + "".join(ch if ch.isalnum() else "-" for ch in name)


def _headline(c: ConceptResult) -> str:
    """A section's line in the contents: its ``readings["headline"]``, else the first sentence of its summary."""
    text = c.readings.get("headline") or c.readings.get("summary") or ""
    if not c.readings.get("headline"):
        cut = text.find(". ")
        text = text if cut < 0 else text[:cut + 1]
    return text


def page_head(title: str) -> str:
    """The head of a self-contained report page: the style, plotly's script inlined (opens offline)."""
    from plotly.offline import get_plotlyjs

    return "\n".join([
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "h2{border-bottom:1px solid #ccc}.reading{color:#444;font-style:italic}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        ".t{text-align:left}table.setup td{max-width:760px;overflow-wrap:anywhere}"
        "nav li{margin:.3em 0}.wide{overflow-x:auto;max-width:100%}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
    ])


def _html(comparison: Comparison) -> bytes:
    pair = {k: comparison.pair.get(k, {}) for k in ("base", "post")}
    keys = [k for k in ("name", "n_layers", "d_model", "d_mlp", "vocab_size") if any(k in v for v in pair.values())]
    parts = [
        page_head("base vs post: layer-wise report"),
        "<h1>Base vs. post-trained, layer by layer</h1>",
        _table_html({"columns": ["model", *keys], "rows": [[m, *(v.get(k) for k in keys)] for m, v in pair.items()]}),
        "<nav><h2>Contents</h2><ol>",
    ]
    for name, c in comparison.concepts.items():
        when = f" ({comparison.timings[name]:.0f} s)" if name in comparison.timings else ""
        parts.append(f"<li><a href='#{_anchor(name)}'><b>{html.escape(name)}</b></a>{when}: "
                     f"{html.escape(_headline(c))}</li>")
    parts.append("</ol></nav>")
    for name, c in comparison.concepts.items():
        parts.append(f"<h2 id='{_anchor(name)}'>{html.escape(name)}</h2>")
        if name in comparison.timings:
            parts.append(f"<p class='reading'>wall time: {comparison.timings[name]:.0f} s</p>")
        parts.append(_setup_html(c.setup))
        if c.readings.get("summary"):
            parts.append(f"<p><b>{html.escape(c.readings['summary'])}</b></p>")
        for title, reading, fig in figures(c):
            parts.append(f"<h3>{html.escape(title)}</h3><p class='reading'>{html.escape(reading)}</p>")
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
        for key, t in c.tables.items():
            if "x" in t:  # drawn as bars above: its numbers once more only on request
                parts.append(f"<details><summary>{html.escape(t.get('title', key))}: the numbers behind the bars"
                             f"</summary>{_table_html(t)}</details>")
            else:
                why = f": {t['empty']}" if t.get("empty") else ""
                body = _table_html(t) if t["rows"] else f"<p>No rows{html.escape(why)}.</p>"
                parts.append(f"<h3>{html.escape(t.get('title', key))}</h3>{body}")
    parts.append("</body></html>")
    return "\n".join(parts).encode()


def render_html(comparison: Comparison, out: str | os.PathLike) -> Path:
    """Write only ``report.html`` (and ``layers.csv``) of ``comparison`` into ``out``; the JSON, directions and
    vectors there are left as they are. Returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "layers.csv", _csv(comparison))
    atomic_write_bytes(out / "report.html", _html(comparison))
    return out / "report.html"


def vector_file(concept: str, key: str) -> str:
    """The file name in a report folder's ``vectors/`` of section ``concept``'s steering vector ``key``."""
    return f"{concept}-{key}.safetensors"


def _listed_vectors(out: Path) -> set[str]:
    """The file names in ``vectors/`` that the report in ``out`` lists (none when it has no readable one)."""
    try:
        concepts = json.loads((out / "report.json").read_text(encoding="utf-8"))["concepts"]
        return {vector_file(name, key) for name, c in concepts.items() for key in c.get("vectors", ())}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def write_report(comparison: Comparison, out: str | os.PathLike) -> Path:
    """Write ``directions.safetensors``, ``vectors/``, ``layers.csv``, ``report.html`` and, last (it indexes the
    rest), ``report.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "layers.csv", _csv(comparison))
    # a folder holds one report: the vectors an earlier report there listed and this one does not are removed
    # (files of the user's own in vectors/ are left alone)
    written = {vector_file(name, key) for name, c in comparison.concepts.items() for key in c.vectors}
    for stale in sorted(_listed_vectors(out) - written):
        (out / "vectors" / stale).unlink(missing_ok=True)
    tensors, meta = {}, {}
    for name, c in comparison.concepts.items():
        for key, t in c.directions.items():
            tensors[f"{name}/{key}"] = t.float()
            meta[f"{name}/{key}"] = json.dumps({"concept": name, "layers": c.layers, **c.setup})
    if tensors:
        save_safetensors(out / "directions.safetensors", tensors, metadata=meta)
    elif (out / "directions.safetensors").exists():
        (out / "directions.safetensors").unlink()
    for name, c in comparison.concepts.items():
        for key, vec in c.vectors.items():
            vec.save(out / "vectors" / vector_file(name, key))
    atomic_write_bytes(out / "report.html", _html(comparison))
    write_json(out / "report.json", comparison.to_json())
    return out


def _flat(x, prefix: str = "") -> dict:
    """Leaves of nested dicts as ``{"a.b.c": value}``."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: x}


def _numeric(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _worst(pairs, atol: float):
    """``(rank, where, a, b, gap)`` of the largest difference among ``(where, a, b)`` and every ``where`` that
    differs by more than ``atol`` (or is defined on one side only); None, [] when nothing differs."""
    worst, differing = None, []
    for where, va, vb in pairs:
        if va == vb or not (_numeric(va) and _numeric(vb)):
            continue
        gap = None if va is None or vb is None else abs(float(va) - float(vb))
        if gap is not None and gap <= atol:
            continue
        differing.append(where)
        rank = float("inf") if gap is None else gap
        if worst is None or rank > worst[0]:
            worst = (rank, where, va, vb, gap)
    return worst, differing


def _table_cells(name: str, table: str, ta: dict, tb: dict, atol: float) -> list[dict]:
    """Per column of a table both runs hold: the numeric cells (and each end of an interval) that differ.
    Rows are matched by their leading text cells (model, condition, ...) where those name every row once,
    else by position."""
    def keyed(t):
        keys = []
        for i, row in enumerate(t.get("rows", [])):
            lead = []
            for c in row:
                if not isinstance(c, str):
                    break
                lead.append(c)
            keys.append((" / ".join(lead) or f"row {i}", row))
        if len({k for k, _ in keys}) != len(keys):
            keys = [(f"row {i}", row) for i, (_, row) in enumerate(keys)]
        return dict(keys)

    ra, rb = keyed(ta), keyed(tb)
    out = []
    for j, column in enumerate(ta.get("columns", [])):
        pairs = []
        for key in [k for k in ra if k in rb]:
            va, vb = (r[j] if j < len(r) else None for r in (ra[key], rb[key]))
            if isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
                pairs += [(f"{key} [{i}]", x, y) for i, (x, y) in enumerate(zip(va, vb))]
            else:
                pairs.append((key, va, vb))
        worst, differing = _worst(pairs, atol)
        if worst is not None:
            out.append({"concept": name, "figure": f"{table}: {column}", "max_abs_diff": worst[4], "where": worst[1],
                        "a": worst[2], "b": worst[3], "n_differing": len(differing)})
    return out


def _matrix_cells(name: str, matrix: str, ma: dict, mb: dict, atol: float) -> list[dict]:
    """The entries of a matrix both runs hold that differ (matched by row and column labels)."""
    def cells(m):
        return {(str(r), str(c)): v for r, row in zip(m.get("rows", []), m.get("values", []))
                for c, v in zip(m.get("cols", []), row)}

    ca, cb = cells(ma), cells(mb)
    worst, differing = _worst([(f"{r}, {c}", ca[r, c], cb[r, c]) for r, c in ca if (r, c) in cb], atol)
    if worst is None:
        return []
    return [{"concept": name, "figure": f"{matrix} (matrix)", "max_abs_diff": worst[4], "where": worst[1],
             "a": worst[2], "b": worst[3], "n_differing": len(differing)}]


def diff(a: Comparison, b: Comparison, *, atol: float = 1e-6) -> dict:
    """What differs between two runs: their configurations and models, every per-layer figure, and every
    numeric table cell and matrix entry.

    Returns:
        ``{"config": [(key, a, b)], "models": [(model, file, sha_a, sha_b)], "concepts": {"only_a": [...],
        "only_b": [...]}, "figures": [row], "cells": [cell]}``: a row per ``(concept, figure)`` whose values
        differ by more than ``atol`` at some layer (or are defined in one run only): ``{"concept", "figure",
        "max_abs_diff", "layer", "a", "b", "layers_differing"}`` at the layer of the largest difference
        (``max_abs_diff`` None where one value is undefined there), largest first; a cell per table column or
        matrix that differs: ``{"concept", "figure" ("table: column" or "matrix (matrix)"), "max_abs_diff",
        "where" (row, or "row, column"), "a", "b", "n_differing"}``, largest first.
    """
    ca = _flat(a.manifest.get("config", {}))
    cb = _flat(b.manifest.get("config", {}))
    config = [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)
              and k != "out"]
    models = []
    for m in ("base", "post"):
        fa = a.manifest.get("models", {}).get(m, {}).get("files", {})
        fb = b.manifest.get("models", {}).get(m, {}).get("files", {})
        models += [(m, f, fa.get(f, {}).get("sha256"), fb.get(f, {}).get("sha256")) for f in sorted(set(fa) | set(fb))
                   if fa.get(f, {}).get("sha256") != fb.get(f, {}).get("sha256")]
    rows, cells = [], []
    for name in [n for n in a.concepts if n in b.concepts]:
        pa = {e["layer"]: e for e in a.concepts[name].per_layer}
        pb = {e["layer"]: e for e in b.concepts[name].per_layer}
        keys = dict.fromkeys(k for e in [*pa.values(), *pb.values()] for k in e if k != "layer")
        for key in keys:
            worst, differing = _worst([(layer, pa[layer].get(key), pb[layer].get(key))
                                       for layer in sorted(set(pa) & set(pb))], atol)
            if worst is not None:
                rows.append({"concept": name, "figure": key, "max_abs_diff": worst[4], "layer": worst[1],
                             "a": worst[2], "b": worst[3], "layers_differing": differing})
        ca, cb = a.concepts[name], b.concepts[name]
        cells += [c for t in ca.tables if t in cb.tables
                  for c in _table_cells(name, t, ca.tables[t], cb.tables[t], atol)]
        cells += [c for m in ca.matrices if m in cb.matrices
                  for c in _matrix_cells(name, m, ca.matrices[m], cb.matrices[m], atol)]
    largest = lambda r: -float("inf") if r["max_abs_diff"] is None else -r["max_abs_diff"]  # noqa: E731
    rows.sort(key=largest)
    cells.sort(key=largest)
    return {"config": config, "models": models,
            "concepts": {"only_a": [n for n in a.concepts if n not in b.concepts],
                         "only_b": [n for n in b.concepts if n not in a.concepts]},
            "figures": rows, "cells": cells}
