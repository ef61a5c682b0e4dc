"""A series of checkpoints compared against the first: ``interp compare --models A,B,C,...``.

The first model is the reference (a base model, or the first checkpoint of a post-training run: SFT → DPO →
RL, or training steps). It is booted once; each later checkpoint is booted in turn, paired with it
(:func:`interp.models.pair_of`) and compared by :func:`interp.compare.compare` with the same sections and
options, writing a full report into ``OUT/<k>-<name>/``; then it is released before the next one boots, so
memory holds one pair at a time whatever the number of checkpoints. The series report (``OUT/series.json``,
``OUT/series.html``) draws each section's headline per-layer figures as layer × checkpoint heatmaps
(:data:`SERIES_FIGURES`): a checkpoint's own value (``post_*`` keys; the reference's own row is its
``base_*`` value from the first comparison) or its relation to the reference (cosine of its direction with
the reference's, the refusal score under ablation of its own direction, ...).
"""

from __future__ import annotations

import gc
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SERIES_FIGURES", "Series", "check_series", "compare_series", "load_series"]

#: Per section, the per-layer figures drawn across checkpoints: key -> (title, zmin, zmax) (None: fit to the data).
SERIES_FIGURES: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "truth": {"post_accuracy": ("truth probe accuracy (held out)", 0.0, 1.0),
              "cosine_base_post": ("cosine of the truth direction with the reference's", -1.0, 1.0)},
    "refusal": {"post_ablation_score": ("refusal score (log-odds) of harmful requests with the checkpoint's "
                                        "candidate at each layer ablated (blank: not scored, Arditi et al.'s "
                                        "filters discarded it first)", None, None),
                "post_accuracy": ("harmful/harmless probe accuracy (held out)", 0.0, 1.0),
                "cosine_base_post": ("cosine of the refusal direction with the reference's", -1.0, 1.0)},
    "language": {"post_accuracy": ("language identity probe accuracy (held out)", 0.0, 1.0),
                 "cosine_base_post": ("cosine of the language directions with the reference's (mean)", -1.0, 1.0)},
    "snmf": {"matched_cosine_mean": ("SNMF features matched to the reference's: mean cosine", 0.0, 1.0)},
}
#: For sections not listed above (user concepts): these keys where the section reports them.
DEFAULT_FIGURES = {"post_accuracy": ("probe accuracy (held out)", 0.0, 1.0),
                   "cosine_base_post": ("cosine of the direction with the reference's", -1.0, 1.0)}


@dataclass
class Series:
    """A checkpoint series' results.

    Attributes:
        models: the model sources, the reference first.
        reports: the report folder of each comparison (reference vs ``models[k]``, k >= 1).
        figures: ``{section: {key: matrix}}``, each matrix ``{"title", "rows": checkpoint labels, "cols":
            layers, "values": [[value or None]]}`` (rows: checkpoints, the reference first where the figure is
            the checkpoint's own).
        timings: seconds per comparison.
        manifest: toolkit, environment, configuration, command, start and end of the series.
    """

    models: list[str]
    reports: list[str] = field(default_factory=list)
    figures: dict[str, dict[str, dict]] = field(default_factory=dict)
    timings: list[float] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"models": self.models, "reports": self.reports, "figures": self.figures, "wall_time_s": self.timings,
                "manifest": self.manifest}


def _slug(source: str) -> str:
    name = Path(str(source).rstrip("/")).name or str(source)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]


def _labels(models: Sequence[str]) -> list[str]:
    return [f"{k}: {_slug(m)}" for k, m in enumerate(models)]


def _collect_figures(series: Series, name: str, per_layer: list[dict], k: int, labels: list[str]) -> None:
    """Add comparison ``k``'s (reference vs ``models[k]``) per-layer figures of section ``name``."""
    wanted = SERIES_FIGURES.get(name, DEFAULT_FIGURES)
    layers = [e["layer"] for e in per_layer]
    for key, (title, zmin, zmax) in wanted.items():
        if key not in per_layer[0]:
            continue
        own = key.startswith("post_")
        m = series.figures.setdefault(name, {}).setdefault(key, {
            "title": f"{name}: {title}", "rows": [], "cols": layers, "values": [], "zmin": zmin, "zmax": zmax,
            "xaxis": "layer", "yaxis": "checkpoint", "colorscale": "RdBu" if zmin == -1.0 else "Viridis"})
        if own and k == 1:  # the reference's own value, measured in the first comparison
            m["rows"].append(labels[0])
            m["values"].append([e.get("base_" + key[5:]) for e in per_layer])
        m["rows"].append(labels[k])
        m["values"].append([e.get(key) for e in per_layer])


#: The refusal rates drawn per checkpoint: column label -> (steering-table row of the checkpoint, of the reference
#: in the first comparison). The checkpoint's own direction and the reference's, ablated.
REFUSAL_RATES = {"no intervention": ("baseline", "baseline"),
                 "own direction ablated": ("ablate post direction", "ablate base direction"),
                 "reference direction ablated": ("ablate base direction", "ablate base direction")}


def _collect_rates(series: Series, steering: dict, k: int, labels: list[str]) -> None:
    """Add comparison ``k``'s refusal rates on held-out harmful requests (:data:`REFUSAL_RATES`) from the refusal
    section's steering table; the reference's own row comes from the first comparison."""
    col = steering["columns"].index("harmful refusal rate")
    rates = {(r[0], r[1]): r[col] for r in steering["rows"]}
    m = series.figures.setdefault("refusal", {}).setdefault("refusal_rate", {
        "title": "refusal: refusal rate on held-out harmful requests (the checkpoint's selected direction, or the "
                 "reference's, ablated at every layer)", "rows": [], "cols": list(REFUSAL_RATES), "values": [],
        "zmin": 0.0, "zmax": 1.0, "xaxis": "condition", "yaxis": "checkpoint", "colorscale": "Viridis"})
    if k == 1:
        m["rows"].append(labels[0])
        m["values"].append([rates.get(("base", ref)) for _, ref in REFUSAL_RATES.values()])
    m["rows"].append(labels[k])
    m["values"].append([rates.get(("post", own)) for own, _ in REFUSAL_RATES.values()])


def compare_series(
    models: Sequence[str],
    *,
    concepts: Sequence[str] = ("truth",),
    out: str | Path = "report",
    device: str | None = None,
    dtype: str = "float32",
    progress: bool = True,
    data: str | Path | None = None,
    options: dict[str, dict] | None = None,
    user_concepts: dict[str, Sequence] | None = None,
    command: Sequence[str] | None = None,
) -> Series:
    """Compare every checkpoint of ``models`` against the first, one pair in memory at a time (module docstring).

    Args:
        models: two or more hub ids or local folders of one architecture and tokenizer; the first is the
            reference.
        out: the series folder: ``series.json``, ``series.html``, ``config.toml`` of each comparison inside
            its own ``<k>-<name>/`` report folder.
        concepts, device, dtype, data, options, user_concepts, command: as in :func:`interp.compare.compare`,
            the same for every comparison.

    Everything that can be checked before the first comparison is: the sections and their options (once, for
    every comparison: :func:`interp.compare.plan`), and every checkpoint's folder, architecture, size and
    vocabulary against the reference's (:func:`check_series`), so a mistake in the last checkpoint does not
    surface after hours of comparisons. ``OUT/config.toml`` holds the series' configuration (``interp compare
    --config OUT/config.toml`` runs it again) and ``series.json`` its manifest (toolkit, environment, command,
    start and end; each comparison's own manifest, with its models' weight hashes, is in its report folder).

    Returns:
        The :class:`Series`.

    Raises:
        ValueError: fewer than two models, ``out`` naming a file, a checkpoint of another architecture, depth,
            width or vocabulary than the reference, and every check of :func:`interp.compare.plan`, all before
            any model boots. FileNotFoundError: a model folder or file that does not exist.
    """
    import time

    import torch

    from ..manifest import environment, now, toolkit
    from ..models import load_model, pair_of
    from ..report import _heatmap, page_head
    from . import compare, plan, write_config

    started = now()
    models = [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"a series needs at least two models, the reference first; got {models}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the series needs a folder")
    plan(concepts, options=options, user_concepts=user_concepts, dtype=dtype, device=device, data=data)
    check_series(models)
    labels = _labels(models)
    series = Series(models=models)
    boot = dict(device=device, dtype=getattr(torch, dtype))
    reference = load_model(models[0], **boot)
    for k, source in enumerate(models[1:], 1):
        t0 = time.perf_counter()
        checkpoint = load_model(source, **boot)
        folder = out / f"{k:02d}-{_slug(source)}"
        result = compare(models[0], source, pair=pair_of(reference, checkpoint), concepts=concepts, out=folder,
                         dtype=dtype, progress=progress, data=data, options=options, user_concepts=user_concepts,
                         command=command)
        for name, section in result.concepts.items():
            _collect_figures(series, name, section.per_layer, k, labels)
            if name == "refusal" and "steering" in section.tables:
                _collect_rates(series, section.tables["steering"], k, labels)
        series.reports.append(str(folder))
        series.timings.append(round(time.perf_counter() - t0, 2))
        del checkpoint, result  # one pair in memory at a time
        gc.collect()
    out.mkdir(parents=True, exist_ok=True)
    from .._io import atomic_write_bytes, write_json

    config = {"models": [_absolute(m) for m in models], "concepts": list(concepts), "data": _absolute(data),
              "device": device, "dtype": dtype, "options": options or None,
              "user_concepts": {name: [_absolute(f) for f in files] for name, files in (user_concepts or {}).items()
                                if all(isinstance(f, (str, Path)) for f in files)} or None}
    write_config(config, out / "config.toml")
    series.manifest = {"toolkit": toolkit(), "environment": environment(), "config": config,
                       "command": None if command is None else list(command), "started": started, "finished": now()}
    write_json(out / "series.json", series.to_json())
    parts = [page_head("checkpoint series"), "<h1>Checkpoints against the reference, layer by layer</h1>",
             "<p>" + "<br>".join(f"{html.escape(lab)} ({html.escape(src)})" for lab, src in zip(labels, models))
             + "</p>"]
    for name, figs in series.figures.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        for m in figs.values():
            parts.append(f"<h3>{html.escape(m['title'])}</h3>"
                         + _heatmap(m).to_html(full_html=False, include_plotlyjs=False))
    parts.append("</body></html>")
    atomic_write_bytes(out / "series.html", "\n".join(parts).encode())
    return series


def _absolute(x):
    """A local path as an absolute one (the configuration works from any folder); anything else as given."""
    return None if x is None else str(Path(x).resolve()) if Path(x).exists() else str(x)


def check_series(models: Sequence[str]) -> None:
    """Check every checkpoint against the reference (``models[0]``) without booting any: each resolves to a
    local folder (:func:`interp.models.resolve_model`; a GGUF file is converted once, as booting would), and
    has the reference's architecture, depth, width and vocabulary (read from its ``config.json`` and
    tokenizer files).

    Raises:
        FileNotFoundError: a folder or file that does not exist. ValueError: a checkpoint that differs from the
            reference, naming it and how.
    """
    from transformers import AutoConfig, AutoTokenizer

    from ..models import check_same_tokenizer, resolve_model

    def shape(cfg) -> dict:
        return {"model_type": cfg.model_type, "layers": getattr(cfg, "num_hidden_layers", None),
                "width": getattr(cfg, "hidden_size", None), "vocabulary size": getattr(cfg, "vocab_size", None)}

    folders = [resolve_model(m) for m in models]
    ref = shape(AutoConfig.from_pretrained(folders[0]))
    ref_tok = AutoTokenizer.from_pretrained(folders[0])
    for k, (source, folder) in enumerate(zip(models[1:], folders[1:]), 1):
        got = shape(AutoConfig.from_pretrained(folder))
        differ = [f"{key} {got[key]} (reference {ref[key]})" for key in ref if got[key] != ref[key]]
        if differ:
            raise ValueError(f"checkpoint {k} ({source}) is not comparable with the reference {models[0]}: "
                             + ", ".join(differ))
        try:
            check_same_tokenizer(ref_tok, AutoTokenizer.from_pretrained(folder), names=("reference", f"checkpoint {k}"))
        except ValueError as e:
            raise ValueError(f"checkpoint {k} ({source}): {e}") from None


def load_series(folder: str | Path) -> Series:
    """Read ``series.json`` of a series folder back.

    Raises:
        FileNotFoundError: no ``series.json`` there.
    """
    path = Path(folder) / "series.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no series.json (written by interp compare --models)")
    data = json.loads(path.read_text())
    return Series(models=data["models"], reports=data["reports"], figures=data["figures"], timings=data["wall_time_s"],
                  manifest=data.get("manifest", {}))
