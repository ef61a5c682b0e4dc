"""The layer-by-layer comparison of a base model and its post-trained version.

:func:`compare` boots the pair, runs each requested concept section and returns a
:class:`~interp.report.Comparison`; with ``out=`` it also writes the report files
(see :mod:`interp.report`). This package sits on top of the toolkit and is not
imported by ``interp/__init__.py``; importing it imports no section.

Sections (one module each, see :mod:`interp.compare._section` for the protocol):
``truth`` (:mod:`interp.compare.truth`), ``refusal`` (:mod:`interp.compare.refusal`),
``language`` (:mod:`interp.compare.language`) and ``snmf`` (:mod:`interp.compare.snmf`).
A section of one's own is a :class:`Section` passed to :func:`register`; it then runs
in ``compare(concepts=[...])`` and ``interp compare --concepts``, with its options.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..models import ModelPair, load_pair
from ..report import Comparison, write_report
from ._section import BUILTIN, Param, Section, SectionContext, concepts, get_section, register
from ._section import concepts as _available

__all__ = ["compare", "CONCEPTS", "Param", "Section", "SectionContext", "concepts", "get_section", "register"]

log = logging.getLogger(__name__)

#: The built-in sections, in the order a full run takes them (:func:`concepts` adds registered ones).
CONCEPTS = tuple(BUILTIN)


def compare(
    base: str | None = None,
    post: str | None = None,
    *,
    pair: ModelPair | None = None,
    concepts: Sequence[str] = ("truth",),
    out: str | Path | None = "report",
    device: str | None = None,
    progress: bool = True,
    data: str | Path | None = None,
    options: dict[str, dict] | None = None,
) -> Comparison:
    """Compare a base model and its post-trained version, concept by concept.

    Args:
        base, post: hub ids or local folders (default: the bundled organism pair);
            ``base="gemma-270m-organism"`` alone for the real-base organism.
        pair: an already booted :class:`~interp.ModelPair` (instead of base/post).
        concepts: sections to run, in this order; see :func:`interp.compare.concepts`.
        out: folder for the report files, or ``None`` to write nothing.
        data: a folder of the public datasets (:class:`~interp.datasets.PublicSets`: Geometry of Truth,
            Arditi et al.'s refusal splits, the SNMF concepts) to take the truth, refusal and SNMF prompts
            from instead of the built-in sets; ignored on the bundled organism, which has its own.
        options: per section, its options (``{"truth": {"nie_shots": 4}}``; a section's ``params`` list
            them, as does ``interp compare --help``); the rest keep their defaults.

    Returns:
        The :class:`~interp.report.Comparison`; ``timings`` holds each section's wall time in seconds
        (also in ``report.json``).

    Raises:
        ValueError: an unknown concept, an option a section does not take or a bad option value (all
            checked before any model is booted). FileNotFoundError: ``data`` lacks one of the public files.
    """
    from .. import organism as _organism
    from ..datasets import PublicSets

    concepts = list(concepts)
    if len(set(concepts)) != len(concepts):
        raise ValueError(f"each concept runs once; got {concepts}")
    options = dict(options or {})
    unknown = [c for c in concepts if c not in _available()]
    if unknown:
        raise ValueError(f"unknown concept(s) {unknown}; available: {', '.join(_available())}")
    stray = sorted(set(options) - set(concepts))
    if stray:
        raise ValueError(f"options given for section(s) {stray} that are not run; running: {', '.join(concepts)}")
    sections = {name: get_section(name) for name in concepts}
    chosen = {name: s.options(options.get(name)) for name, s in sections.items()}
    sets = PublicSets(data) if data is not None else None  # checked before any model is booted
    t0 = time.perf_counter()
    if pair is None:
        pair = load_pair(base, post, device=device)
    timings = {"load": time.perf_counter() - t0}
    is_organism = _organism.is_bundled(pair)
    if is_organism and sets is not None:
        log.warning("the bundled organism has its own prompt sets; data=%s is not used", data)
        sets = None
    ctx = SectionContext(pair=pair, data=sets, is_organism=is_organism, progress=progress)
    results = {}
    for name, section in sections.items():
        log.info("running the %s section", name)
        t0 = time.perf_counter()
        results[name] = section.run(ctx, **chosen[name])
        timings[name] = time.perf_counter() - t0
        log.info("%s section: %.1f s", name, timings[name])
    info = pair.info()
    comparison = Comparison(pair={k: info[k] for k in ("base", "post")}, concepts=results,
                            manifest={"vocab_sha256": info["vocab_sha256"]},
                            timings={k: round(v, 2) for k, v in timings.items()})
    if out is not None:
        write_report(comparison, out)
    return comparison
