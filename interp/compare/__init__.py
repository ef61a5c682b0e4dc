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

from ..models import ModelPair, check_device, load_pair
from ..report import Comparison, write_report
from ._section import BUILTIN, Param, Section, SectionContext, concepts, get_section, register, tokens_for
from ._section import concepts as _available

__all__ = ["compare", "CONCEPTS", "CONFIG_KEYS", "DTYPES", "Param", "Section", "SectionContext", "concepts",
           "get_section", "load_config", "plan", "register", "tokens_for", "write_config"]

log = logging.getLogger(__name__)

#: The built-in sections, in the order a full run takes them (:func:`concepts` adds registered ones).
CONCEPTS = tuple(BUILTIN)


def check_concept_names(names) -> None:
    """Refuse user concept names that are taken by a section, or whose ``--<name>-<option>`` flags could be read
    as another section's (``refusal-generation`` and ``--refusal-generation-batch-size``).

    Raises:
        ValueError: naming the clash.
    """
    sections = _available()
    taken = sorted(set(names) & set(sections))
    if taken:
        raise ValueError(f"user concept name(s) {taken} are taken by sections; choose other names")
    for name in names:
        clash = [s for s in sections if name.startswith(f"{s}-") or s.startswith(f"{name}-")]
        if clash:
            raise ValueError(f"user concept name {name!r} would mix its --{name}-... options with those of section "
                             f"{clash[0]!r}; choose a name that does not start with '{clash[0]}-'")


#: The keys of a run configuration (``interp compare --config run.toml``; :func:`load_config`).
CONFIG_KEYS = ("base", "post", "models", "concepts", "out", "data", "device", "dtype", "device_map", "options",
               "user_concepts")
DTYPES = ("float32", "bfloat16", "float16")


def load_config(path: str | Path) -> dict:
    """Read a run configuration (TOML) into :func:`compare`'s keywords.

    Paths in a configuration written by a run are absolute; its ``out`` is left out (a rerun writes where
    ``--out`` says, ``report/`` by default). The file holds any of :data:`CONFIG_KEYS` at the top (``concepts``
    a list or a comma-separated string), one ``[options.<section>]`` table per section and a ``[user_concepts]``
    table (``name = ["pos.jsonl", "neg.jsonl"]``); a report folder's ``config.toml`` is such a file, so ``interp
    compare --config report/config.toml`` runs the same comparison again (a series folder's too).

    Raises:
        FileNotFoundError: no such file. ValueError: not TOML, or a key that is not a configuration key.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no configuration file {path}")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; a configuration holds {', '.join(CONFIG_KEYS)}")
    for key in ("concepts", "models"):  # a list, or a comma-separated string
        if isinstance(config.get(key), str):
            config[key] = [c.strip() for c in config[key].split(",") if c.strip()]
    kinds = {"base": str, "post": str, "models": list, "concepts": list, "out": str, "data": str, "device": str,
             "dtype": str, "device_map": str, "options": dict, "user_concepts": dict}
    wrong = [f"{k} ({type(v).__name__})" for k, v in config.items() if not isinstance(v, kinds[k])]
    if wrong:
        raise ValueError(f"{path}: wrong type for {', '.join(wrong)}; base, post, out, data, device, dtype and "
                         "device_map are strings, models and concepts lists (or comma-separated strings), options "
                         "and user_concepts tables")
    if "user_concepts" in config and not all(isinstance(v, list) and len(v) == 2 for v in
                                              config["user_concepts"].values()):
        raise ValueError(f"{path}: [user_concepts] maps each name to [positive file, negative file]")
    if "options" in config and not all(isinstance(v, dict) for v in config["options"].values()):
        raise ValueError(f"{path}: [options] must hold one table per section, e.g. [options.truth]")
    for table in config.get("options", {}).values():  # layers = [1, 3], TOML's own list, as the flags' "1,3"
        for key, value in table.items():
            if isinstance(value, list) and value and all(isinstance(x, int) and not isinstance(x, bool)
                                                         for x in value):
                table[key] = ",".join(str(x) for x in value)
    return config


def write_config(config: dict, path: str | Path) -> None:
    """Write a run configuration as TOML (undefined values, ``None``, are left out: they mean the default)."""
    import tomli_w

    from .._io import atomic_write_bytes

    def drop_none(x):
        return {k: drop_none(v) for k, v in x.items() if v is not None} if isinstance(x, dict) else x

    atomic_write_bytes(path, tomli_w.dumps(drop_none(config)).encode())


def plan(concepts: Sequence[str], *, options: dict[str, dict] | None = None, user_concepts: dict | None = None,
         dtype: str = "float32", device: str | None = None, out: str | Path | None = None, data=None
         ) -> tuple[dict, dict, object]:
    """Check a run before any model boots: the sections and their options, user concepts and their files, the
    dtype, device, output folder and public data folder (:func:`compare` calls it; a checkpoint series calls it
    once for all its comparisons).

    Returns:
        ``(sections, options, data)``: ``{name: Section}`` in run order (user concepts after ``concepts``),
        ``{name: options}`` with every default filled in, and the :class:`~interp.datasets.PublicSets` of ``data``
        (None without one).

    Raises:
        ValueError: no section at all ("no section to run"), an unknown concept, an option a section does not
            take or a bad option value, an unknown dtype, a CUDA device without CUDA, ``out`` naming a file.
            FileNotFoundError: a user concept's file, or ``data`` lacking one of the public files.
    """
    from ..datasets import PublicSets

    concepts = list(concepts)
    if len(set(concepts)) != len(concepts):
        raise ValueError(f"each concept runs once; got {concepts}")
    own = {}
    if user_concepts:
        from .concept import concept

        check_concept_names(user_concepts)
        for name, files in user_concepts.items():
            if isinstance(files, (str, bytes)) or len(files) != 2:
                raise ValueError(f"user concept {name!r} takes two prompt sets, positive and negative; got {files!r}")
            own[name] = concept(name, *files)  # files are checked here, before any model boots
        concepts += [name for name in own if name not in concepts]
    if not concepts:
        raise ValueError(f"no section to run: name at least one of {', '.join(_available())} (concepts=[...], "
                         "--concepts), or a concept of your own (user_concepts=, --concept NAME=POS,NEG)")
    unknown = [c for c in concepts if c not in _available() and c not in own]
    if unknown:
        raise ValueError(f"unknown concept(s) {unknown}; available: {', '.join(_available())}")
    options = dict(options or {})
    stray = sorted(set(options) - set(concepts))
    if stray:
        raise ValueError(f"options given for section(s) {stray} that are not run; running: {', '.join(concepts)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    check_device(device)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; the report needs a folder")
    if out is not None and (Path(out) / "report.json").exists():
        log.warning("%s holds a report; this run replaces it", out)
    sections = {name: own[name] if name in own else get_section(name) for name in concepts}
    chosen = {name: s.options(options.get(name)) for name, s in sections.items()}
    sets = PublicSets(data) if data is not None else None  # checked before any model is booted
    return sections, chosen, sets


def compare(
    base: str | None = None,
    post: str | None = None,
    *,
    pair: ModelPair | None = None,
    concepts: Sequence[str] = ("truth",),
    out: str | Path | None = "report",
    device: str | None = None,
    dtype: str = "float32",
    device_map: str | None = None,
    progress: bool = True,
    data: str | Path | None = None,
    options: dict[str, dict] | None = None,
    user_concepts: dict[str, Sequence] | None = None,
    command: Sequence[str] | None = None,
) -> Comparison:
    """Compare a base model and its post-trained version, concept by concept.

    Args:
        base, post: hub ids or local folders (default: the bundled organism pair);
            ``base="gemma-270m-organism"`` alone for the real-base organism.
        pair: an already booted :class:`~interp.ModelPair` (instead of base/post).
        concepts: sections to run, in this order; see :func:`interp.compare.concepts`.
        out: folder for the report files, or ``None`` to write nothing. It also receives ``config.toml``,
            the run's configuration (:func:`load_config` reads it back).
        device, dtype, device_map: how the pair is booted (:func:`interp.load_pair`); ``dtype`` one of
            :data:`DTYPES` (bfloat16/float16 for GPUs).
        data: a folder of the public datasets (:class:`~interp.datasets.PublicSets`: Geometry of Truth,
            Arditi et al.'s refusal splits, the SNMF concepts) to take the truth, refusal and SNMF prompts
            from instead of the built-in sets; ignored on the bundled organism, which has its own.
        options: per section, its options (``{"truth": {"nie_shots": 4}}``; a section's ``params`` list
            them, as does ``interp compare --help``); the rest keep their defaults.
        user_concepts: your own concepts, ``{name: (positive, negative)}`` (files or
            :class:`~interp.datasets.PromptSet`; :func:`interp.compare.concept.concept`): each runs the generic
            pipeline (probes, base/post directions and transfer, steering) after ``concepts`` unless ``concepts``
            names it; its options go in ``options[name]`` like a built-in section's.
        command: the command line that started the run, for the manifest.

    Returns:
        The :class:`~interp.report.Comparison`; ``timings`` holds each section's wall time in seconds
        (also in ``report.json``); ``manifest`` what reproduces the run (:mod:`interp.manifest`).

    Raises:
        ValueError: no section to run (``concepts=[]`` and no user concept), an unknown concept, an option a
            section does not take or a bad option value, an unknown dtype, ``out`` naming a file (all checked
            before any model is booted). FileNotFoundError: ``data``
            lacks one of the public files.
    """
    import torch

    from .. import organism as _organism
    from ..datasets import recording
    from ..manifest import folder_sha256, file_sha256, now, run_manifest

    started = now()
    sections, chosen, sets = plan(concepts, options=options, user_concepts=user_concepts, dtype=dtype,
                                  device=device, out=out, data=data)
    concepts = list(sections)
    t0 = time.perf_counter()
    if pair is None:
        pair = load_pair(base, post, device=device, dtype=getattr(torch, dtype), device_map=device_map)
    timings = {"load": time.perf_counter() - t0}
    is_organism = _organism.is_bundled(pair)
    if is_organism and sets is not None:
        log.warning("the bundled organism has its own prompt sets; data=%s is not used", data)
        sets = None
    ctx = SectionContext(pair=pair, data=sets, is_organism=is_organism, progress=progress)
    results = {}
    with recording() as used:
        for name, section in sections.items():
            log.info("running the %s section", name)
            used.section = name
            t0 = time.perf_counter()
            results[name] = section.run(ctx, **chosen[name])
            timings[name] = time.perf_counter() - t0
            log.info("%s section: %.1f s", name, timings[name])

    def where(x):  # a local path as an absolute one (the configuration works from any folder); else as given
        return None if x is None else str(Path(x).resolve()) if Path(x).exists() else str(x)

    for opts in chosen.values():
        if opts.get("data"):
            opts["data"] = ",".join(where(f) for f in str(opts["data"]).split(","))
    config = {"base": where(base), "post": where(post), "concepts": concepts, "out": None if out is None else str(out),
              "data": where(data), "device": device, "dtype": dtype, "device_map": device_map, "options": chosen,
              "user_concepts": {name: [where(f) if isinstance(f, (str, Path)) else f"<PromptSet {f.name}>"
                                       for f in files] for name, files in (user_concepts or {}).items()} or None}
    data_files = {f"{data}/{k}": v for k, v in folder_sha256(data).items()} if data is not None else {}
    for entry in used.entries:  # user files
        if entry["source"] and Path(entry["source"]).is_file() and entry["source"] not in data_files:
            data_files[entry["source"]] = file_sha256(entry["source"])
    manifest = run_manifest(pair, config=config, datasets=used.entries, data_files=data_files, started=started,
                            command=None if command is None else list(command))
    info = pair.info()
    comparison = Comparison(pair={k: info[k] for k in ("base", "post")}, concepts=results, manifest=manifest,
                            timings={k: round(v, 2) for k, v in timings.items()})
    if out is not None:
        write_report(comparison, out)
        # the configuration to run again: without its out folder, so a rerun never replaces this report unasked
        write_config({k: v for k, v in config.items() if k != "out"}, Path(out) / "config.toml")
    return comparison
