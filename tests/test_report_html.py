"""The report page's layout: the pair and a contents list at the top, each section's setup whole (a table, not a
truncated dict), text cells left-aligned, square heatmaps with their diagonal from top-left to bottom-right."""

from __future__ import annotations

import pytest

from interp.report import Comparison, ConceptResult, _heatmap, _html


def _comparison():
    entry = {"layer": 0, "base_accuracy": 0.5}
    long_setup = {"dataset": "x" * 400, "options": {"a": [1, 2, 3], "additional": "kept whole"}}
    a = ConceptResult("alpha", [0], [entry], setup=long_setup,
                      readings={"summary": "Alpha is at layer 0 [0.1, 0.2]. A second sentence not in the contents."},
                      tables={"t": {"title": "rows", "columns": ["name", "value"], "rows": [["a text", 0.25]]}})
    b = ConceptResult("beta two", [0], [entry], readings={"headline": "Beta's own headline.", "summary": "Long."})
    return Comparison(pair={"base": {"name": "B", "n_layers": 1}, "post": {"name": "P", "n_layers": 1}},
                      concepts={"alpha": a, "beta two": b}, timings={"alpha": 3.0, "beta two": 1.0})


def test_contents_setup_table_and_alignment():
    page = _html(_comparison()).decode()
    top = page[page.index("<h1>"):page.index("<h2 id=")]
    assert "<td class='t'>B</td>" in top and "<td class='t'>P</td>" in top  # the pair, as a table
    assert "<a href='#section-alpha'><b>alpha</b></a> (3 s): Alpha is at layer 0 [0.1, 0.2].</li>" in top
    assert "A second sentence" not in top
    assert "<a href='#section-beta-two'><b>beta two</b></a> (1 s): Beta&#x27;s own headline.</li>" in top
    assert "<h2 id='section-alpha'>alpha</h2>" in page and "<h2 id='section-beta-two'>beta two</h2>" in page
    assert "x" * 400 in page and "&quot;additional&quot;: &quot;kept whole&quot;" in page  # nothing cut short
    assert "<td class='t'>a text</td><td>0.250</td>" in page  # text left, numbers right


def test_square_heatmaps_read_from_the_top_left():
    square = _heatmap({"rows": ["a", "b"], "cols": ["a", "b"], "values": [[1, 0], [0, 1]]})
    assert square.layout.yaxis.autorange == "reversed"
    other = _heatmap({"rows": ["a", "b"], "cols": [0, 1, 2], "values": [[1, 0, 0], [0, 1, 0]]})
    assert other.layout.yaxis.autorange is None


def test_a_plot_with_panels_puts_each_quantity_on_its_own_axis():
    from interp.report import _line

    rows = [{"layer": i, "cos": 0.9, "acc": 0.6 + 0.1 * i, "acc_ci_low": 0.5, "acc_ci_high": 0.9, "n": 3 * i}
            for i in range(3)]
    c = ConceptResult("x", [0, 1, 2], rows)
    plot = {"title": "t", "series": {"cos": "cosine", "acc": "accuracy", "n": "neurons"},
            "panels": [{"keys": ["cos"], "yaxis": "cosine", "yrange": [-1, 1]}, {"keys": ["acc"], "yaxis": "accuracy"},
                       {"keys": ["n"], "yaxis": "neurons"}]}
    fig = _line(c, plot)
    axes = {t.name: t.yaxis for t in fig.data}
    assert axes == {"cosine": "y", "accuracy 95% CI": "y2", "accuracy": "y2", "neurons": "y3"}
    assert [fig.layout[a].title.text for a in ("yaxis", "yaxis2", "yaxis3")] == ["cosine", "accuracy", "neurons"]
    assert tuple(fig.layout.yaxis.range) == (-1, 1)
    single = _line(c, {"title": "t", "series": {"cos": "cosine"}, "yaxis": "cosine"})
    assert len(single.data) == 1 and single.layout.yaxis.title.text == "cosine" and "yaxis2" not in single.layout


def test_a_heatmap_marks_a_cell_and_labels_its_scale():
    m = {"rows": ["-2", "-1"], "cols": [0, 1, 2], "values": [[1.0, -2.0, None], [0.5, 3.0, 0.0]], "zmin": -3,
         "zmax": 3, "colorscale": "RdBu", "zlabel": "refusal score (log-odds)", "marks": [["-1", 1, "selected"]]}
    fig = _heatmap(m)
    assert fig.data[0].colorbar.title.text == "refusal score (log-odds)"
    (mark,) = fig.layout.shapes  # the cell's outline: its value stays readable inside
    assert (mark.x0, mark.x1, mark.y0, mark.y1, mark.name, mark.showlegend) == (0.5, 1.5, 0.5, 1.5, "selected", True)
    assert len(fig.data) == 1
    m["cols"] = [0, 2, 6]  # uneven numeric cells end halfway to their neighbours
    m["marks"] = [["-2", 6, "x"]]
    (mark,) = _heatmap(m).layout.shapes
    assert (mark.x0, mark.x1, mark.y0, mark.y1) == (4, 8, -0.5, 0.5)


def test_bar_tables_are_not_printed_twice():
    c = ConceptResult("r", [0], [{"layer": 0, "x": 1.0}], tables={
        "rates": {"title": "Refusal rate", "columns": ["model", "condition", "rate"], "rows": [["post", "a", 0.5]],
                  "x": "condition", "y": "rate", "color": "model"},
        "steering": {"title": "Steering", "columns": ["model", "rate"], "rows": [["post", 0.5]]}})
    page = _html(Comparison(pair={"base": {"name": "b"}, "post": {"name": "p"}}, concepts={"r": c})).decode()
    assert "<summary>Refusal rate: the numbers behind the bars</summary>" in page
    # the bars' own title
    assert "<h3>Steering</h3><div class='wide'><table>" in page and "<h3>Refusal rate</h3>" in page


def test_bar_tables_draw_error_bars_from_their_interval_columns():
    """``low``/``high`` name a table's interval columns: each bar's error bar spans them; a row whose interval is
    undefined (text) or whose value is missing gets no error bar, the others keep theirs; a table without the keys
    draws none."""
    from interp.report import _bars, figures

    table = {"title": "Effects", "columns": ["model", "ablated", "effect", "dH", "low", "high"],
             "rows": [["base", "a", "total", -0.03, -0.05, -0.01], ["base", "a", "direct", -0.12, -0.2, 0.02],
                      ["base", "b", "total", 0.01, "undefined: fewer than 2 corpus texts",
                       "undefined: fewer than 2 corpus texts"], ["base", "c", "total", None, "", ""]],
             "x": "ablated", "y": "dH", "color": "effect", "low": "low", "high": "high"}
    total, direct = _bars(table).data
    assert list(total.x) == ["a", "b", "c"] and list(total.text) == ["-0.03", "0.01", ""]
    assert total.error_y.array == (pytest.approx(0.02), None, None)
    assert total.error_y.arrayminus == (pytest.approx(0.02), None, None)
    assert direct.error_y.array == (pytest.approx(0.14),) and direct.error_y.arrayminus == (pytest.approx(0.08),)
    plain = _bars({k: v for k, v in table.items() if k not in ("low", "high")})
    assert all(bar.error_y.array is None for bar in plain.data)
    c = ConceptResult("c", [0], [{"layer": 0}], tables={"effects": table})
    (_, _, fig), = figures(c)
    assert fig.data[0].error_y.array is not None
    page = _html(Comparison(pair={"base": {"name": "b"}, "post": {"name": "p"}}, concepts={"c": c})).decode()
    assert "<td class='t'>undefined: fewer than 2 corpus texts</td>" in page and "<td class='t'></td>" in page


def _lines_by_axes(fig) -> dict[tuple[str, str], list[str]]:
    """The names of a figure's lines (not their interval bands) per (x axis, y axis), i.e. per panel."""
    out = {}
    for t in fig.data:
        if t.fill != "toself":
            out.setdefault((t.xaxis or "x", t.yaxis or "y"), []).append(t.name)
    return out


def test_small_multiples_lay_panels_out_in_columns_on_one_scale():
    """``columns``: the panels row by row in a grid, each titled; ``shared_yaxis``: one y scale (its title on the
    first column); ``panel_colors``: the n-th series of each panel alike; ``differences``: a - b per layer."""
    from interp.report import _line

    rows = [{"layer": i, **{f"{k}{s}": 0.1 * i * (j + 1) for j, k in enumerate("abcd") for s in ("", "_t")}}
            for i in range(3)]
    c = ConceptResult("x", [0, 1, 2], rows)
    series = {f"{k}{s}": f"{k}{s}" for k in "abcd" for s in ("", "_t")}
    plot = {"title": "t", "series": {**series, "d_minus_a": "d − a"}, "columns": 2, "shared_yaxis": True,
            "panel_colors": True, "xaxis": "layer", "differences": {"d_minus_a": ["d", "a"]},
            "panels": [{"keys": [k, f"{k}_t"], "yaxis": "effect (unit)", "title": f"panel {k}"} for k in "abcd"]
            + [{"keys": ["d_minus_a"], "yaxis": "effect (unit)", "title": "difference"}]}
    fig = _line(c, plot)
    panels = _lines_by_axes(fig)
    assert list(panels.values()) == [["a", "a_t"], ["b", "b_t"], ["c", "c_t"], ["d", "d_t"], ["d − a"]]
    assert [(x, y) for x, y in panels] == [("x", "y"), ("x2", "y2"), ("x3", "y3"), ("x4", "y4"), ("x5", "y5")]
    assert [a.text for a in fig.layout.annotations] == ["panel a", "panel b", "panel c", "panel d", "difference"]
    # two columns: panels 1 and 2 side by side, 3 under 1; the grid's empty sixth cell has no axis
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]
    assert fig.layout.yaxis.domain == fig.layout.yaxis2.domain
    assert fig.layout.yaxis3.domain[1] < fig.layout.yaxis.domain[0] and "xaxis6" not in fig.layout
    assert [fig.layout[f"yaxis{i}"].title.text for i in ("", 2, 3, 4, 5)] == ["effect (unit)", None, "effect (unit)",
                                                                             None, "effect (unit)"]
    assert all(fig.layout[f"yaxis{i}"].matches == "y" for i in (2, 3, 4, 5))
    # the x title under the lowest panel of each column
    assert [fig.layout[f"xaxis{i}"].title.text for i in ("", 2, 3, 4, 5)] == [None, None, None, "layer", "layer"]
    colors = {t.name: t.line.color for t in fig.data}
    assert colors["a"] == colors["b"] == colors["d − a"] and colors["a_t"] == colors["d_t"] != colors["a"]
    diff = next(t for t in fig.data if t.name == "d − a")
    assert list(diff.y) == pytest.approx([r["d"] - r["a"] for r in rows])
    assert fig.layout.legend.orientation == "h"  # under the grid, not beside it
    # without panel_colors each series keeps its own colour
    own = {t.name: t.line.color for t in _line(c, {**plot, "panel_colors": False}).data}
    assert len({own[k] for k in ("a", "b", "c", "d")}) == 4


def test_a_rewrite_removes_the_vectors_it_no_longer_lists_and_leaves_the_users_files(tmp_path):
    import torch

    from interp.report import write_report
    from steering import SteeringVector

    def report(*keys):
        vectors = {k: SteeringVector(torch.ones(1, 4), (0,), "resid_post", 1.0, {"concept": "c"}) for k in keys}
        c = ConceptResult("c", [0], [{"layer": 0, "value": 1.0}], vectors=vectors)
        return Comparison(pair={"base": {"name": "b"}, "post": {"name": "p"}}, concepts={"c": c})

    write_report(report("post", "base"), tmp_path)
    (tmp_path / "vectors" / "mine.safetensors").write_bytes(b"a file of the user's own")
    write_report(report("post"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "vectors").iterdir()) == ["c-post.safetensors", "mine.safetensors"]


def test_interval_cells_are_rounded_and_right_aligned():
    from interp.report import _cell, _table_html

    assert _cell([0.41234567, 0.6551234]) == "<td>[0.412, 0.655]</td>"
    assert _cell([None, 1]) == "<td>[–, 1]</td>"
    assert _cell(2.5e-05) == "<td>2.50e-05</td>" and _cell(0.0) == "<td>0.000</td>"
    assert _cell(["a", 1]) == "<td class='t'>[&quot;a&quot;, 1]</td>"  # not numbers: text, as JSON
    head = _table_html({"columns": ["ci"], "rows": [[[0.1, 0.2]]]})
    assert "<th>ci</th>" in head  # aligned as numbers


def test_a_layer_axis_spans_the_layers_and_no_more():
    from interp.report import _line

    def axis(n, panels=None):
        c = ConceptResult("c", list(range(n)), [{"layer": i, "a": 0.5, "b": 1.0} for i in range(n)])
        fig = _line(c, {"series": {"a": "A", "b": "B"}, **({"panels": panels} if panels else {})})
        return fig.layout.xaxis.range, fig.layout.xaxis.dtick

    assert axis(18) == ((-0.3, 17.3), 1)
    assert axis(64) == ((-0.3, 63.3), 3)  # a tick every 3 layers, not 64 crowded ones
    assert axis(6, [{"keys": ["a"], "yaxis": "A"}, {"keys": ["b"], "yaxis": "B"}]) == ((-0.3, 5.3), 1)


def test_an_empty_table_says_why_instead_of_showing_headers():
    empty = {"title": "Steering", "columns": ["feature", "share"], "rows": [], "empty": "no feature was steered"}
    page = _html(Comparison(pair={"base": {"name": "b"}, "post": {"name": "p"}},
                            concepts={"c": ConceptResult("c", [0], [{"layer": 0}], tables={"s": empty})})).decode()
    assert "<h3>Steering</h3><p>No rows: no feature was steered.</p>" in page and "<th>feature</th>" not in page
