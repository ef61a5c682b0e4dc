"""The layer-by-layer comparison of a base model and its post-trained version.

:func:`compare` boots the pair, runs each requested concept section and returns a
:class:`~interp.report.Comparison`; with ``out=`` it also writes the report files
(see :mod:`interp.report`). This package sits on top of the toolkit and is not
imported by ``interp/__init__.py``; importing it imports no section.

Sections (one module each, see :mod:`interp.compare._section` for the protocol):
``truth`` (:mod:`interp.compare.truth`), ``refusal`` (:mod:`interp.compare.refusal`),
``language`` (:mod:`interp.compare.language`), ``snmf`` (:mod:`interp.compare.snmf`),
``knowledge`` (:mod:`interp.compare.knowledge`) and ``confidence`` (:mod:`interp.compare.confidence`).
A section of one's own is a :class:`Section` passed to :func:`register`; it then runs
in ``compare(concepts=[...])`` and ``interp compare --concepts``, with its options.

Nothing finished is lost: with ``out=`` the report folder is rewritten after every section (a valid report of
the sections done so far) together with ``resume.json``, one key per finished section. A rerun into the same
folder takes every section whose key matches from there instead of running it again (:func:`section_key`:
the same toolkit code, model weights, data, options, dtype and device), so an interrupted run resumes where it
stopped; ``fresh=True`` (``interp compare --fresh``) runs every section again. A rerun naming fewer sections keeps
the others the folder holds, when they too match this run's configuration (their options are read from
``resume.json``), so a report grows section by section; ``fresh=True`` replaces the report with this run's sections.
While the folder is being written, Ctrl-C waits until it is whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from .._checks import output_folder_problem
from ..models import ModelPair, check_device, load_pair, read_shape
from ..report import Comparison, write_report
from ._section import (BUILTIN, Param, Section, SectionContext, concepts, get_section, layer_param, layers_param,
                       register, site_param, tokens_for, window_param)
from ._section import concepts as _available

__all__ = ["compare", "CONCEPTS", "CONFIG_KEYS", "DTYPES", "Interrupted", "Param", "Section", "SectionContext",
           "concepts", "get_section", "layer_param", "layers_param", "load_config", "plan", "register", "section_key",
           "site_param", "tokens_for", "window_param", "write_config"]

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
    problem = None if out is None else output_folder_problem(out)
    if problem:
        raise ValueError(f"--out {str(out)!r} {problem}; the report needs a folder")
    sections = {name: own[name] if name in own else get_section(name) for name in concepts}
    chosen = {name: s.options(options.get(name)) for name, s in sections.items()}
    sets = PublicSets(data) if data is not None else None  # checked before any model is booted
    if out is not None and _holds_a_report(Path(out)):  # said once nothing above refused the run
        log.warning("%s holds a report; this run rewrites it (keeping the sections it holds from a run of the "
                    "same configuration, those this run does not name too, unless fresh)", out)
    elif out is not None and Path(out).is_dir() and any(Path(out).iterdir()):
        taken = sorted(p.name for p in Path(out).iterdir() if p.name in REPORT_FILES)
        vectors = Path(out) / "vectors"
        if vectors.is_dir() and any(vectors.iterdir()):  # the report writes its vectors there, under its own names
            taken.append("vectors/ (not empty)")
        if taken:
            raise ValueError(f"--out {str(out)!r} holds {', '.join(taken)} but no report of interp compare; the "
                             "report would overwrite them: choose another folder, or move those files away")
        log.warning("%s holds other files and no report; the report's files (%s, vectors/) are written beside "
                    "them", out, ", ".join(REPORT_FILES))
    return sections, chosen, sets


def _holds_a_report(out: Path) -> bool:
    """Whether ``out/report.json`` is a report of :func:`compare` (of any format version: an older one is
    rewritten too), not a file of the same name of the user's."""
    try:
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("interp-report/")


#: The file of a report folder that says which of its sections a rerun may take over (:func:`section_key`).
RESUME_FILE = "resume.json"
#: What :func:`compare` writes into its folder (besides ``vectors/``'s own files).
REPORT_FILES = ("report.json", "report.html", "layers.csv", "directions.safetensors", RESUME_FILE, "config.toml")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`compare`: what was kept. A ``KeyboardInterrupt``, so code that stops on one still does.

    Attributes:
        section: the section that was running (or about to run; ``None``: the last write of the report).
        kept: the sections of this run, in run order, whose results are in ``out`` (finished or resumed).
        out: the report folder (``None``: nothing was written, ``out=None``).
        earlier: sections ``out`` still holds from an earlier run: those this run does not name and keeps, and
            those whose rerun with other options had not finished (their earlier result stays until it has).
        written: whether this run wrote ``out`` (if not, the folder is as it was).
    """

    def __init__(self, section: str | None, kept: list[str], out: Path | None, earlier: Sequence[str] = (),
                 written: bool = True):
        super().__init__(section)
        self.section, self.kept, self.out = section, list(kept), out
        self.earlier, self.written = list(earlier), written

    def __str__(self) -> str:
        if self.section is None:  # while the finished report was being written (it was written whole)
            return (f"interrupted as the run ended; the report in {self.out} is whole "
                    f"({', '.join(self.kept + self.earlier)})")
        where = f"interrupted during the {self.section} section"
        if self.out is None:
            return f"{where}; nothing was written (no report folder)"
        if not self.written:
            held = f" (it holds {', '.join(self.earlier)})" if self.earlier else ""
            return f"{where}, before this run wrote anything; {self.out} is as it was{held}"
        what = ", ".join(self.kept)
        if self.earlier:
            what += f"{', and ' if self.kept else ''}{', '.join(self.earlier)} from an earlier run,"
        shown = "it" if len(self.kept) + len(self.earlier) == 1 else "them"
        return (f"{where}; kept {what} in {self.out} (report.html shows {shown}); run the same command again to "
                f"resume from there")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of the toolkit's code (every ``.py`` file of ``interp``, ``probes`` and ``steering``, by relative
    path): a change of code makes earlier results not resumable."""
    import interp
    import probes
    import steering

    h = hashlib.sha256()
    for pkg in (interp, probes, steering):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(f"{pkg.__name__}/{f.relative_to(root)}".encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _file_digests(value) -> dict:
    """sha256 of each existing file a value names (an option's ``a.jsonl`` or ``pos.jsonl,neg.jsonl``; a folder's
    files), or of a PromptSet's rows."""
    from ..datasets import PromptSet, describe_set
    from ..manifest import file_sha256, folder_sha256

    if isinstance(value, PromptSet):
        return {f"<PromptSet {value.name}>": describe_set(value)["sha256"]}
    out = {}
    for part in ([str(value)] + (str(value).split(",") if isinstance(value, str) and "," in value else [])
                 if isinstance(value, (str, Path)) else []):
        path = Path(part)
        if path.is_file():
            out[part] = file_sha256(path)
        elif path.is_dir():
            out.update({f"{part}/{k}": v for k, v in folder_sha256(path).items()})
    return out


def section_key(models: dict, name: str, options: dict, *, vocab: str, template: str | None, data=None,
                user_files=(), dtype: str = "float32", device=None, device_map=None) -> str | None:
    """What a section's result depends on, hashed: the toolkit's code (:func:`source_digest`), torch's and the
    model libraries' versions, each model's weight files (sha256, from :func:`interp.manifest.model_files`), the
    vocabulary and chat template, the section's name and every option (with the content of any file an option
    names), the public data folder's files, the dtype and device. ``None`` (never resumed) when a model's weights
    were not hashed (a model booted without a local folder)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    if any(not m.get("files") for m in models.values()):
        return None
    versions = {}
    for dist in ("transformers", "transformer-lens", "scikit-learn", "numpy"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    from ..report import jsonable

    material = {
        "format": 1, "code": source_digest(), "torch": torch.__version__, "versions": versions,
        "models": {k: {f: v["sha256"] for f, v in m["files"].items()} for k, m in models.items()},
        "vocab": vocab, "template": template, "section": name, "options": jsonable(options),
        "files": {k: v for x in [*options.values(), *user_files] for k, v in _file_digests(x).items()},
        "data": _file_digests(data) if data is not None else None,
        "dtype": dtype, "device": None if device is None else str(device), "device_map": device_map,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _stored(out: Path, names) -> dict:
    """``{name: (ConceptResult, seconds, dataset entries, key, options)}`` of the sections among ``names`` that
    ``out`` holds, finished in an earlier run, in the folder's order: the resume file's key and options of each,
    and its prompt sets in the stored manifest (row ids and hashes), so a report that keeps it still lists them.
    ``{}`` for a folder without a readable report."""
    from ..report import Comparison

    try:
        stored = json.loads((out / RESUME_FILE).read_text(encoding="utf-8"))["sections"]
        wanted = [n for n, entry in stored.items() if n in names and isinstance(entry, dict) and entry.get("key")]
        if not wanted:
            return {}
        previous = Comparison.load(out)
        entries = previous.manifest.get("datasets", []) if isinstance(previous.manifest, dict) else []
        return {n: (previous.concepts[n], float(stored[n]["seconds"]), [e for e in entries if e.get("section") == n],
                    stored[n]["key"], dict(stored[n].get("options", {})))
                for n in wanted if n in previous.concepts}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # no file, another format, damaged
        if (out / RESUME_FILE).exists():
            log.warning("%s cannot be resumed (%s); every section runs", out, e)
        return {}


def bind_vectors(result, pair: ModelPair) -> None:
    """Record in each steering vector of a section's result the identity of the model it belongs to
    (:meth:`steering.SteeringVector.with_model`), so that ``load_vector(path, model=other)`` and ``interp steer``
    refuse it on another model.

    The model is the one ``meta["model"]`` names (``"base"`` or ``"post"``, as the built-in sections set it), else
    the one the vector's key starts with (``post-...``); a vector naming neither is left without an identity,
    with a warning. Each model's weights are hashed once (:func:`steering.vector.weights_sha256` memoises it).
    """
    for key, vec in list(result.vectors.items()):
        which = vec.meta.get("model")
        if which not in ("base", "post"):
            which = next((m for m in ("base", "post") if str(key).startswith(f"{m}-") or key == m), None)
        if which is None:
            log.warning("%s vector %r names no model of the pair (meta['model'] 'base' or 'post'): it is written "
                        "without a model identity, so nothing refuses it on another model", result.concept, key)
            continue
        result.vectors[key] = vec.with_model(getattr(pair, which))


def _write_resume(out: Path, keys: dict, results: dict, timings: dict, options: dict) -> None:
    """``resume.json``: per finished section its key, wall time and options (what a later run naming other
    sections needs to recompute the key and keep it, :func:`_carried_options`)."""
    from .._io import write_json
    from ..report import jsonable

    write_json(out / RESUME_FILE, {"format": 1, "sections": {
        n: {"key": keys[n], "seconds": round(timings[n], 2), "options": jsonable(options.get(n, {}))}
        for n in results if keys.get(n) is not None}})


def _carried_options(out: Path, running) -> dict[str, dict]:
    """``{name: options}`` of the finished sections ``out``'s resume file holds that this run does not name: the
    candidates to keep in the rewritten report (kept only if their key still matches once the pair is booted).
    A section no longer registered, or whose stored options this version refuses, is not carried."""
    try:
        stored = json.loads((out / RESUME_FILE).read_text(encoding="utf-8"))["sections"]
        items = list(stored.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    carried = {}
    for name, entry in items:
        if name in running or name not in _available() or not isinstance(entry, dict) or "options" not in entry:
            continue
        try:
            carried[name] = get_section(name).options(entry["options"])
        except (ValueError, TypeError):
            log.warning("%s section in %s is not kept: its options %s are not valid now", name, out,
                        entry["options"])
    return carried


@contextmanager
def _stopped_while(what: str, out):
    """Ctrl-C before any section ran, as a ``KeyboardInterrupt`` saying so and that ``out`` is untouched."""
    try:
        yield
    except KeyboardInterrupt:
        untouched = "nothing was written" if out is None or not Path(out).exists() else f"{out} is as it was"
        raise KeyboardInterrupt(f"interrupted while {what}, before any section ran; {untouched}") from None


@contextmanager
def _uninterrupted():
    """Ctrl-C (SIGINT) held back until the block ends, then raised as ``KeyboardInterrupt``: a report folder is
    written whole. Outside the main thread, or where SIGINT has no Python handler, the block runs as it is."""
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if handler is None or getattr(handler, "_holds_sigint", False):  # no Python handler, or held already
        yield
        return
    caught = []

    def hold(signum, frame):
        caught.append(signum)

    hold._holds_sigint = True
    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


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
    fresh: bool = False,
    on_section: Callable[[str, object, float, bool], None] | None = None,
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
        fresh: run every section, even one whose result ``out`` already holds from a run of the same
            configuration (by default such a section is taken from there: :func:`section_key`).
        on_section: called as ``on_section(name, result, seconds, resumed)`` when each section finishes (the CLI
            prints its table then).

    Returns:
        The :class:`~interp.report.Comparison`; ``timings`` holds each section's wall time in seconds
        (also in ``report.json``); ``manifest`` what reproduces the run (:mod:`interp.manifest`).

    Raises:
        ValueError: no section to run (``concepts=[]`` and no user concept), an unknown concept, an option a
            section does not take or a bad option value, an unknown dtype, ``out`` naming a file (all checked
            before any model is booted), an option the model cannot take (a block it lacks: checked before the boot
            when the models' configs tell their shape, :func:`~interp.models.read_shape`, else before any section
            runs). FileNotFoundError: ``data``
            lacks one of the public files. :class:`Interrupted` (a ``KeyboardInterrupt``): Ctrl-C; it names the
            sections kept in ``out``.
    """
    import torch

    from .. import organism as _organism
    from ..datasets import recording
    from ..manifest import file_sha256, folder_sha256, model_files, now, run_manifest

    started = now()
    sections, chosen, sets = plan(concepts, options=options, user_concepts=user_concepts, dtype=dtype,
                                  device=device, out=out, data=data)
    concepts = list(sections)
    t0 = time.perf_counter()
    # Options that depend on the model (its blocks, its width): before the boot when the configs tell the shape,
    # so that a block the model lacks is refused in a second; else (and if the boot disagrees) right after it.
    shape = pair.shape if pair is not None else read_shape(base, post)
    for name, section in sections.items():
        if shape is not None:
            section.check_model(chosen[name], shape)
    if pair is None:
        with _stopped_while("the pair was loading", out):
            pair = load_pair(base, post, device=device, dtype=getattr(torch, dtype), device_map=device_map)
    timings = {"load": time.perf_counter() - t0}
    if pair.shape != shape:
        for name, section in sections.items():
            section.check_model(chosen[name], pair.shape)
    is_organism = _organism.is_bundled(pair)
    if is_organism and sets is not None:
        log.warning("the bundled organism has its own prompt sets; data=%s is not used", data)
        sets = None
    ctx = SectionContext(pair=pair, data=sets, is_organism=is_organism, progress=progress)
    with _stopped_while("the model files were hashed", out):  # seconds per GB
        models = {"base": model_files(pair.base), "post": model_files(pair.post)}  # hashed once: key and manifest
    info = pair.info()
    out = None if out is None else Path(out)
    carried = {} if out is None or fresh else _carried_options(out, sections)

    def key(name: str, opts: dict) -> str | None:
        return section_key(models, name, opts, vocab=info["vocab_sha256"], template=info["chat_template"],
                           data=None if sets is None else data, user_files=(user_concepts or {}).get(name, ()),
                           dtype=dtype, device=device, device_map=device_map)

    keys = {name: key(name, chosen[name]) for name in concepts} | {n: key(n, o) for n, o in carried.items()}
    stored = {} if out is None or fresh else _stored(out, keys)
    previous = {n: s[:3] for n, s in stored.items() if keys[n] is not None and s[3] == keys[n]}
    kept = {n: previous[n] for n in carried if n in previous}  # finished sections this run does not name
    # Sections this run reruns with other options (or code, weights...): the earlier result stays in the folder,
    # under its own key and options, until its replacement has finished, so that Ctrl-C meanwhile loses nothing.
    replacing = {n: stored[n] for n in concepts if n in stored and n not in previous}
    if any(n in previous for n in concepts):
        log.warning("resuming from %s: %s finished there in a run of the same configuration (pass fresh=True, "
                    "or --fresh, to run them again)", out, ", ".join(n for n in concepts if n in previous))
    if kept:
        log.warning("keeping %s in %s: finished there in a run of the same configuration, not named by this run "
                    "(fresh=True, or --fresh, replaces the report with this run's sections)", ", ".join(kept), out)
    if set(carried) - set(kept):
        log.warning("%s in %s ran with other code, weights, data or settings: not kept",
                    ", ".join(n for n in carried if n not in kept), out)
    options_used = {**chosen, **{n: carried[n] for n in kept}}
    order = concepts + list(kept)  # the report's sections; with kept ones, in the folder's order, new ones after
    if kept:
        order = [n for n in stored if n in order] + [n for n in order if n not in stored]

    def where(x):  # a local path as an absolute one (the configuration works from any folder); else as given
        return None if x is None else str(Path(x).resolve()) if Path(x).exists() else str(x)

    config = {"base": where(base), "post": where(post), "concepts": order,
              "out": None if out is None else str(out),
              "data": where(data), "device": device, "dtype": dtype, "device_map": device_map,
              "options": {name: {k: ",".join(where(f) for f in str(v).split(",")) if k == "data" and v else v
                                 for k, v in opts.items()} for name, opts in options_used.items()},
              "user_concepts": {name: [where(f) if isinstance(f, (str, Path)) else f"<PromptSet {f.name}>"
                                       for f in files] for name, files in (user_concepts or {}).items()} or None}
    data_files = {f"{data}/{k}": v for k, v in folder_sha256(data).items()} if data is not None else {}

    def comparison(results: dict, entries: list, pending: list[str], run_config: dict, seconds: dict) -> Comparison:
        for entry in entries:  # user files
            if entry["source"] and Path(entry["source"]).is_file() and entry["source"] not in data_files:
                data_files[entry["source"]] = file_sha256(entry["source"])
        manifest = run_manifest(pair, config=run_config, datasets=entries, data_files=data_files, started=started,
                                command=None if command is None else list(command), models=models)
        if pending:
            manifest["incomplete"] = pending  # a report written while these sections were still to run
        if previous:
            manifest["resumed"] = [n for n in results if n in previous]
        return Comparison(pair={k: info[k] for k in ("base", "post")}, concepts=dict(results), manifest=manifest,
                          timings={k: round(seconds[k], 2) for k in ("load", *results)})

    def write(results: dict, used, pending: list[str], section: str | None) -> Comparison:
        """The report of ``results`` (this run's finished sections), the kept ones and the earlier results of
        pending ones it replaces, written whole: Ctrl-C meanwhile waits, then stops the run (Interrupted)."""
        old = {n: replacing[n] for n in pending if n in replacing}
        shown = {n: results[n] if n in results else old[n][0] if n in old else kept[n][0] for n in order
                 if n in results or n in old or n in kept}
        entries = used.entries + [e for n in old for e in old[n][2]]
        run_config = {**config, "options": {**config["options"], **{n: old[n][4] for n in old}}}
        seconds = timings | {n: old[n][1] for n in old}
        try:
            with _uninterrupted():
                report = comparison(shown, entries, pending, run_config, seconds)
                _keep(out, report, keys | {n: old[n][3] for n in old}, shown, seconds, run_config,
                      options_used | {n: old[n][4] for n in old})
        except KeyboardInterrupt:
            raise Interrupted(section, [n for n in shown if n in results and n not in kept], out,
                              earlier=[n for n in shown if n in kept or n in old]) from None
        return report

    def stopped_after(i: int) -> Interrupted:  # Ctrl-C once section i's result is written
        following = concepts[i + 1] if i + 1 < len(concepts) else None
        return Interrupted(following, list(results), out, earlier=[
            *kept, *(n for n in concepts[i + 1:] if n in replacing)])

    results, written, final = {}, False, None
    for name, (_, seconds, _) in kept.items():
        timings[name] = seconds
    with recording() as used:
        for name in kept:
            used.entries.extend(kept[name][2])
        for i, (name, section) in enumerate(sections.items()):
            if name in previous:
                results[name], timings[name], entries = previous[name]
                used.entries.extend(entries)
                log.info("%s section: taken from %s (%.1f s when it ran)", name, out, timings[name])
            else:
                log.info("running the %s section", name)
                used.section = name
                t0 = time.perf_counter()
                try:
                    results[name] = section.run(ctx, **chosen[name])
                except KeyboardInterrupt:
                    earlier = [*kept, *(n for n in concepts[i:] if n in replacing)] if written else list(stored)
                    raise Interrupted(name, list(results), out, earlier=earlier, written=written) from None
                following = concepts[i + 1] if i + 1 < len(sections) else None
                try:
                    with _uninterrupted():  # from the section's end until its result is written, Ctrl-C waits
                        timings[name] = time.perf_counter() - t0
                        log.info("%s section: %.1f s", name, timings[name])
                        bind_vectors(results[name], pair)  # each vector records its model: another one refuses it
                        if out is not None:  # what is finished is kept, whatever comes next
                            report = write(results, used, concepts[i + 1:], following)
                            written, final = True, report if following is None else None
                except KeyboardInterrupt as e:  # held until the result was written
                    if isinstance(e, Interrupted) or out is None:
                        raise
                    raise stopped_after(i) from None
            if on_section is not None:
                try:
                    on_section(name, results[name], timings[name], name in previous)
                except KeyboardInterrupt:  # while a finished section's table printed: it is written already
                    if out is None or not written:
                        raise
                    raise stopped_after(i) from None
        for name in kept:
            results[name] = kept[name][0]
            if on_section is not None:
                on_section(name, results[name], timings[name], True)
        results = {n: results[n] for n in order}

    if out is None:
        return comparison(results, used.entries, [], config, timings)
    return final if final is not None else write(results, used, [], None)


def _keep(out: Path, comparison: Comparison, keys: dict, results: dict, timings: dict, config: dict,
          options: dict) -> None:
    """Write what is finished: the report, the resume file, and ``config.toml`` (the configuration to run again:
    without its out folder, so a rerun never replaces this report unasked)."""
    write_report(comparison, out)
    _write_resume(out, keys, results, timings, options)
    write_config({k: v for k, v in config.items() if k != "out"}, out / "config.toml")
