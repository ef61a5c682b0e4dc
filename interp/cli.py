"""The ``interp`` command line.

``interp collect`` boots a base/post pair, collects activations of a prompt
set from both models into ``OUT/base`` and ``OUT/post`` (resumable stores) and
prints a short per-layer summary. ``interp compare`` runs the layer-by-layer
comparison and writes the report; ``interp steer`` prints generations with and
without a steering vector side by side; ``interp export`` writes one as a llama.cpp
control vector (GGUF). ``--tiny FAMILY`` builds a random-weight tiny
pair of a real family into ``OUT/models`` first and uses it: a check of the
plumbing on a machine with no model weights, not a finding.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


def _positive_int(value: str) -> int:
    """An argparse type: an int >= 1 (a batch size, a number of tokens or steps), refused as the command line is
    read."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer; got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1; got {number}")
    return number


def _int_list(value: str, flag: str = "--layers") -> list[int]:
    """A flag's comma-separated block indices, ``"0,2-4,-1"``, as ``[0, 2, 3, 4, -1]``; checked before any model
    boots.

    Raises:
        ValueError: an empty value, or anything but comma-separated integers (naming ``flag``).
    """
    parts = [x.strip() for x in value.split(",")]
    if not value.strip():
        raise ValueError(f"{flag} is empty: give comma-separated block indices such as 0,2,-1, or leave {flag} out "
                         "for all layers")
    from interp._checks import int_list

    try:
        return int_list(value)
    except ValueError as e:
        why = f" ({e})" if str(e).startswith("range ") else ""
        raise ValueError(f"{flag} takes comma-separated block indices such as 0,2,-1 (negative ones count from the "
                         f"end) or ranges such as 2-5 or -3--1; got {value!r}{why}") from None


# Flags whose value may start with "-" (block indices and token offsets counted from the end, "-1,-2"): argparse
# takes "-1,-2" for an option, so "--layers -1,-2" is passed on as "--layers=-1,-2".
_NEGATIVE_VALUE_FLAGS = re.compile(r"--(layers|positions?|[\w-]+-(layers?|position))")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``argv`` with ``--layers -1,-2`` written ``--layers=-1,-2`` (likewise ``--position``, ``--positions`` and a
    section's ``--<section>-layers``, ``-layer``, ``-position``), so that argparse reads a value starting with a
    minus sign (``-1,-2``, ``-1,generated``) as the flag's value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        # a plain negative number ("-2") argparse already reads as a value: left as it is
        if _NEGATIVE_VALUE_FLAGS.fullmatch(arg) and re.match(r"-\d", value) and not re.fullmatch(r"-\d+", value):
            out.append(f"{arg}={value}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _user_concepts(values: list[str] | None) -> dict[str, list[str]]:
    """``--concept NAME=POS,NEG`` values as ``{name: [pos, neg]}``.

    Raises:
        ValueError: a value not of that form, or a name given twice.
    """
    out: dict[str, list[str]] = {}
    for value in values or []:
        name, _, files = value.partition("=")
        parts = [f for f in files.split(",") if f]
        if not name or len(parts) != 2:
            raise ValueError(f"--concept takes NAME=POSITIVE_FILE,NEGATIVE_FILE; got {value!r}")
        if name in out:
            raise ValueError(f"--concept {name} is given twice")
        out[name] = parts
    if out:
        from interp.compare import check_concept_names

        check_concept_names(out)
    return out


def _section_options(cmp: argparse.ArgumentParser, user: dict[str, list[str]] | None = None) -> None:
    """One argument group per comparison section, generated from its declared options
    (:class:`interp.compare.Param`): ``--<section>-<option>``, underscores written as hyphens in both
    (``--truth-spectrum-seed``; the spelling with the section's own underscore is accepted too); ``user`` concepts
    (``--concept``) too."""
    from interp.compare import concepts, get_section

    sections = {name: get_section(name) for name in concepts()}
    if user:
        from interp.compare.concept import concept

        sections.update({name: concept(name, *files) for name, files in user.items() if name not in sections})
    for name, section in sections.items():
        if not section.params:
            continue
        group = cmp.add_argument_group(f"{name} section options", section.help or None)
        for p in section.params:
            kw = dict(dest=f"option:{name}:{p.name}", default=argparse.SUPPRESS,
                      help=p.help if p.default is None else f"{p.help} (default: {p.default})")
            if p.type is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw.update(type=p.type, choices=p.choices, metavar=p.type.__name__.upper() if p.choices is None else None)
            flag = p.name.replace("_", "-")
            group.add_argument(f"--{name.replace('_', '-')}-{flag}", **kw)
            if "_" in name:  # the section's own spelling works too, unlisted
                group.add_argument(f"--{name}-{flag}", **{**kw, "help": argparse.SUPPRESS})


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose error shows a usage of many lines (``interp compare`` has a hundred options) as
    one line pointing to ``--help``, so that the error itself is what the terminal shows."""

    def error(self, message: str):
        usage = self.format_usage()
        if usage.count("\n") > 3:
            usage = f"usage: {self.prog} [options] ({self.prog} --help lists them)\n"
        self.exit(2, f"{usage}{self.prog}: error: {message}\n")


def _parser(section_options: bool = False, user: dict[str, list[str]] | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``section_options`` adds every section's options to ``compare`` (which imports
    the section modules, so only done when the command is ``compare``), and those of the ``user`` concepts."""
    from interp.sites import SITES

    p = _Parser(prog="interp", description=__doc__.split("\n\n")[0].replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="boot a pair and cache activations of a prompt set")
    src = c.add_mutually_exclusive_group()
    src.add_argument("--tiny", metavar="FAMILY", help="build and use a random-weight tiny pair (gpt2, llama, qwen2, "
                                                      "gemma2; default: none, --base/--post)")
    c.add_argument("--base", help="base model: hub id or local folder (default: the bundled organism)")
    c.add_argument("--post", help="post-trained model: hub id or local folder (default: the bundled organism)")
    c.add_argument("--dataset", default="truth", help="built-in set name or a file (CSV/JSON/JSONL); default: truth")
    c.add_argument("--split", default="test", choices=["train", "test", "all"],
                   help="split of a built-in set (default test)")
    c.add_argument("--format", dest="style", default="raw", choices=["raw", "chat"],
                   help="prompt format: raw text, or the model's chat template (default raw)")
    c.add_argument("--site", action="append", dest="sites", choices=list(SITES),
                   help="site to read (repeatable; default resid_post)")
    c.add_argument("--position", default="last", help="token position(s) read: last | mean | -K | period | match:REGEX "
                                                    "(default last)")
    c.add_argument("--layers", help="comma-separated block indices or ranges, negative ones counting from the end "
                                    "(e.g. 0,2 or 2-5 or -3--1; default all)")
    c.add_argument("--batch-size", type=_positive_int, default=16, help="prompts per forward pass (default 16)")
    c.add_argument("--device", default=None, help="where the models run: cpu, cuda, cuda:1, ... (default: TransformerLens' choice, a GPU when one is available)")
    c.add_argument("--out", default="runs/collect", help="output folder (default runs/collect)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    cmp = sub.add_parser("compare", help="compare base and post layer by layer and write the report")
    cmp.add_argument("--base", help="base model: hub id or local folder (default: the bundled organism)")
    cmp.add_argument("--post", help="post-trained model (default: the bundled organism)")
    cmp.add_argument("--models", help="a checkpoint series, comma-separated, the reference first: every later one is "
                                      "compared against it, one pair in memory at a time; writes one report per "
                                      "checkpoint and series.html (layer x checkpoint heatmaps)")
    cmp.add_argument("--config", help="run configuration (TOML; a report folder's config.toml reproduces its run); "
                                      "options given here override it")
    cmp.add_argument("--concepts", help="comma-separated sections, run in this order (default truth; "
                                        "available: {})".format(", ".join(_concepts())))
    cmp.add_argument("--out", help="report folder (default report/)")
    cmp.add_argument("--data", help="folder of the public datasets (geometry_of_truth/, refusal/, snmf_concepts/) "
                                    "to take the truth, refusal and SNMF prompts from (default: built-in sets)")
    cmp.add_argument("--device", default=None, help="where the models run: cpu, cuda, cuda:1, ... (default: TransformerLens' choice, a GPU when one is available)")
    cmp.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights and activations "
                                                                                 "(default float32)")
    cmp.add_argument("--device-map", help="shard each model over devices (e.g. auto; default: none, each model whole "
                                          "on --device)")
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cmp.add_argument("--fresh", action="store_true", help="run every section again, even those the --out folder "
                                                          "holds from a run of the same configuration, and keep "
                                                          "only this run's sections in the report (by default "
                                                          "finished sections are taken from there: an interrupted "
                                                          "run resumes, and sections this run does not name stay)")
    cmp.add_argument("--concept", action="append", metavar="NAME=POS,NEG",
                     help="your own concept from two prompt files, positive and negative (repeatable): probes, "
                          "base/post directions and transfer, steering; its options are --NAME-<option>")
    if section_options:
        _section_options(cmp, user)

    rep = sub.add_parser("report", help="re-render a report folder's report.html from its report.json")
    rep.add_argument("folder", help="a report folder written by interp compare")
    rep.add_argument("--out", help="write the re-rendered report into this folder instead (default: in place)")

    dif = sub.add_parser("diff", help="compare the figures of two report folders (exit 1 when they differ)")
    dif.add_argument("a", help="report folder")
    dif.add_argument("b", help="report folder")
    dif.add_argument("--atol", type=float, default=1e-6, help="differences up to this are equal (default 1e-6)")
    dif.add_argument("--json", help="also write the differences to this JSON file (default: none)")

    st = sub.add_parser("steer", help="print steered and unsteered generations side by side")
    st.add_argument("prompts", nargs="+", metavar="PROMPT")
    st.add_argument("--model", help="hub id or local folder (default: the bundled organism's post model)")
    st.add_argument("--vector", required=True,
                    help="steering vector file (.safetensors), or a folder of them (with --name)")
    st.add_argument("--name", help="vector in a folder, e.g. refusal-post for report/vectors/refusal-post.safetensors")
    how = st.add_mutually_exclusive_group()
    how.add_argument("--scale", type=float, help="add scale * vector at its layers (default: the vector's own scale)")
    how.add_argument("--ablate", action="store_true", help="project the direction out of every layer instead")
    st.add_argument("--positions", help="all | prompt | generated | last | -K (comma-separated, e.g. -1,generated); "
                                        "default all; not with --ablate")
    st.add_argument("--format", dest="style", default="auto", choices=["auto", "raw", "chat"],
                    help="chat-format the prompts (default auto: when the model has a chat template)")
    st.add_argument("--max-new-tokens", type=_positive_int, default=24, help="tokens generated at most per prompt; a reply "
                                                                   "also stops at the chat's end-of-turn token "
                                                                   "(default 24)")
    st.add_argument("--device", default=None, help="where the models run: cpu, cuda, cuda:1, ... (default: TransformerLens' choice, a GPU when one is available)")

    ex = sub.add_parser("export", help="write a steering vector as a llama.cpp control vector (GGUF)")
    ex.add_argument("--vector", required=True, help="steering vector file (.safetensors), as written by "
                                                    "SteeringVector.save or interp compare (report/vectors/)")
    ex.add_argument("--to", default="gguf", choices=["gguf"],
                    help="output format: gguf, a llama.cpp control vector with the vector's scale baked in "
                         "(default gguf)")
    ex.add_argument("--out", help="output file (default: the vector's path with the suffix .gguf)")
    ex.add_argument("--model", help="the model the vector will steer: its .gguf file (its header is read and the "
                                    "file hashed) or a hub id or local folder (booted on the CPU; a vector at "
                                    "mlp_post boots a .gguf file too, to read its W_out); the vector "
                                    "must fit it and, where it records the model it was made for, be that model; "
                                    "its identity is recorded in the file (default: the recorded model)")
    ex.add_argument("--model-hint", help="llama.cpp architecture name written as controlvector.model_hint, one of "
                                         "the gguf package's MODEL_ARCH_NAMES, e.g. llama or gemma3 (default: the "
                                         "model's)")
    ex.add_argument("--layers", help="export only these of the vector's blocks, e.g. 2-5 or 2,4,6 (the block "
                                     "indices it was saved with; default all): llama.cpp cannot steer the output of "
                                     "block 0, so a vector built at every layer needs its first block(s) dropped")

    o = sub.add_parser("organism", help="train or evaluate the bundled model organism pair")
    osub = o.add_subparsers(dest="action", required=True)
    t = osub.add_parser("train", help="train the base and post models from scratch (a few minutes on CPU)")
    t.add_argument("--out", required=True, help="folder for base/, post/ and training.json")
    t.add_argument("--seed", type=int, default=0, help="seed of the corpus and the training (default 0)")
    t.add_argument("--base-steps", type=_positive_int, default=None, help="optimiser steps of the base stage (default: the "
                                                                "recipe's)")
    t.add_argument("--post-steps", type=_positive_int, default=None, help="optimiser steps of the post-training stage "
                                                                "(default: the recipe's)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e = osub.add_parser("eval", help="measure refusal, truth and language behaviour on held-out prompts")
    e.add_argument("--base", help="base model folder (default: the bundled one)")
    e.add_argument("--post", help="post model folder (default: the bundled one)")
    e.add_argument("--split", default="test", choices=["train", "test"], help="evaluation split (default test)")
    e.add_argument("--json", help="also write the table to this JSON file")
    tr = osub.add_parser("train-real", help="post-train google/gemma-3-270m with the LoRA recipe (real extra; "
                                            "see docs/organism.md)")
    tr.add_argument("--out", required=True, help="empty or new folder for the adapter, manifest.json, training.json")
    tr.add_argument("--shared", required=True, help="the shared datasets folder (refusal/, geometry_of_truth/, ...)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the data order and the adapter (default 0)")
    tr.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    er = osub.add_parser("eval-real", help="behaviour table of gemma-3-270m and its LoRA post-trained version")
    er.add_argument("--shared", required=True, help="the shared datasets folder")
    er.add_argument("--adapter", help="adapter folder (default: the shipped one)")
    er.add_argument("--json", help="also write the table to this JSON file")
    return p


def _cell(value, width: int, digits: int) -> str:
    """``value`` right-aligned in ``width`` with ``digits`` decimals; ``-`` where it is undefined (None)."""
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _print_table(table: dict, width: int = 28) -> None:
    """The columns ``table["print"]`` names, every row: numbers to 3 decimals, an interval as ``[lo, hi]``,
    undefined as ``-``, text cut to ``width`` characters."""
    cols = [table["columns"].index(c) for c in table["print"]]

    def shown(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) or x is None for x in v):
            return "[" + ", ".join(shown(x) for x in v) + "]"
        text = str(v).replace("\n", "\\n")
        return text if len(text) <= width else text[:width - 1] + "…"

    def text(v) -> bool:
        return isinstance(v, (str, bool)) or (isinstance(v, (list, tuple)) and not shown(v).startswith("["))

    import textwrap

    cells = [[shown(row[k]) for k in cols] for row in table["rows"]]
    names = [str(table["columns"][k]) for k in cols]
    # a column is as wide as its cells or its name, up to 16 characters of the name: a longer one is wrapped over
    # several header lines
    sizes = [max([min(len(names[i]), 16), *(len(row[i]) for row in cells), *(len(w) for w in names[i].split())])
             for i in range(len(cols))]
    heads = [textwrap.wrap(name, n) for name, n in zip(names, sizes)]
    depth = max(len(h) for h in heads)
    header = [[(h + [""] * (depth - len(h)))[j] for h in heads] for j in range(depth)]
    left = [all(text(row[k]) for row in table["rows"] if row[k] is not None) for k in cols]
    print(f"  {table.get('title', '')}")
    for row in header + cells:
        print(("  " + "  ".join(c.ljust(n) if lft else c.rjust(n) for c, n, lft in zip(row, sizes, left))).rstrip())


def print_concept(name: str, concept, seconds: float, *, resumed: bool = False) -> None:
    """Print one section of a comparison: its summary, the refusal steering table, and the per-layer probe
    table where the section has one. Undefined values (None) print as ``-``. ``resumed``: taken from an earlier
    run of the same configuration (``seconds`` is that run's)."""
    when = f"{seconds:.0f} s" + (", from the earlier run in this folder" if resumed else "")
    print(f"{name} ({when}): {concept.readings.get('summary', '')}")
    if name == "refusal":
        print(f"  {'model':<5} {'intervention':<32} {'harmful':>8} {'harmless':>9} {'KL':>7}")
        for row in concept.tables["steering"]["rows"]:
            print(f"  {row[0]:<5} {row[1]:<32} {_cell(row[3], 8, 2)} {_cell(row[4], 9, 2)} {_cell(row[5], 7, 3)}")
    for table in concept.tables.values():
        if table.get("print"):
            _print_table(table)
    keys = ("base_accuracy", "post_accuracy", "cosine_base_post", "transfer_base_to_post", "transfer_post_to_base")
    if concept.per_layer and all(k in concept.per_layer[0] for k in keys):
        print(f"  Per layer, the {name} probes: held-out accuracy of each model's, the cosine of their directions, "
              "and each model's probe on the other's activations")
        print(f"  {'layer':>5} {'base acc':>9} {'post acc':>9} {'cosine':>7} {'base->post':>11} {'post->base':>11}")
        for e in concept.per_layer:
            print(f"  {e['layer']:>5} {_cell(e['base_accuracy'], 9, 3)} {_cell(e['post_accuracy'], 9, 3)} "
                  f"{_cell(e['cosine_base_post'], 7, 3)} {_cell(e['transfer_base_to_post'], 11, 3)} "
                  f"{_cell(e['transfer_post_to_base'], 11, 3)}")


def _compare(args) -> int:
    from interp.compare import compare

    from interp.compare import load_config

    config = load_config(args.config) if args.config else {}
    from_config = config.pop("options", {})
    flags: dict[str, dict] = {}
    for key, value in vars(args).items():  # the generated --<section>-<option> flags that were given
        if key.startswith("option:"):
            _, section, name = key.split(":")
            flags.setdefault(section, {})[name] = value
    given = {k: getattr(args, k) for k in ("base", "post", "out", "data", "device", "dtype", "device_map")
             if getattr(args, k) is not None}
    if args.concepts is not None:
        given["concepts"] = [c.strip() for c in args.concepts.split(",") if c.strip()]
    user = {**config.get("user_concepts", {}), **_user_concepts(args.concept)}
    # with only --concept, only the user's concepts run
    run = {"concepts": [] if user and "concepts" not in config else ["truth"], "out": "report", **config, **given}
    concepts = list(run["concepts"]) + [name for name in user if name not in run["concepts"]]
    # the configuration's options of sections that --concepts leaves out are not used (said on stderr); a
    # table of a section that does not exist, or of one the configuration itself does not run, is an error, as a
    # flag for a section not run is
    from interp.compare import concepts as _sections

    unknown = sorted(set(from_config) - set(_sections()) - set(user))
    if unknown:
        raise ValueError(f"{args.config}: [options.{unknown[0]}] names no section; sections: "
                         f"{', '.join([*_sections(), *user])}")
    unused = sorted(set(from_config) - set(concepts))
    if unused and "concepts" not in given:
        raise ValueError(f"{args.config}: options given for section(s) {unused} that are not run; running: "
                         f"{', '.join(concepts)}")
    if unused:
        print(f"note: --concepts leaves out {', '.join(unused)}; their options in {args.config} are not used",
              file=sys.stderr)
    options = {k: dict(v) for k, v in from_config.items() if k in concepts}
    for section, values in flags.items():
        options.setdefault(section, {}).update(values)
    args.out = run["out"]
    if args.models is not None or "models" in run:
        return _series(args, run, concepts, options, user)
    def finished(name, concept, seconds, resumed):  # each section's table as soon as it is done
        print_concept(name, concept, seconds, resumed=resumed)
        sys.stdout.flush()

    from interp.compare import Interrupted

    try:
        result = compare(run.get("base"), run.get("post"), concepts=concepts, out=run["out"],
                         device=run.get("device"), dtype=run.get("dtype", "float32"),
                         device_map=run.get("device_map"), progress=not args.quiet, data=run.get("data"),
                         options=options, user_concepts=user or None, command=["interp", *args.argv],
                         fresh=args.fresh, on_section=finished)
    except Interrupted as e:
        print(f"\ninterp compare: {e}", file=sys.stderr)
        return 130
    try:
        _print_run(result, Path(args.out))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted after the report was written to {args.out}") from None
    return 0


def _print_run(result, out: Path) -> None:
    """The closing lines of ``interp compare``: wall times, the report's files and its steering vectors."""
    resumed = result.manifest.get("resumed", [])
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" + (" (taken from the earlier run)" if k in resumed else "")
                                    for k, v in result.timings.items())
          + f"; total {sum(v for k, v in result.timings.items() if k not in resumed):.0f} s"
          + (" this run" if resumed else ""))
    written = [name for name in ("report.json", "layers.csv", "directions.safetensors", "vectors")
               if (out / name).exists()]
    print(f"report: {out / 'report.html'}" + (f" (also {', '.join(written)})" if written else ""))
    from interp.report import vector_file

    vectors = [out / "vectors" / vector_file(name, key) for name, c in result.concepts.items()
               for key in c.vectors]  # the report's own, not other files a user keeps in vectors/
    if vectors:
        print(f"steering vectors: {', '.join(str(v) for v in vectors)}")


def _series(args, run: dict, concepts: list[str], options: dict, user: dict) -> int:
    from interp.compare.series import compare_series

    if run.get("base") or run.get("post"):
        raise ValueError("give either --models (a series) or --base/--post (a pair), not both")
    given = args.models is not None
    models = [m.strip() for m in args.models.split(",") if m.strip()] if given else list(run["models"])
    if not models:
        raise ValueError(f"--models is empty ({args.models!r}); give at least two checkpoints, comma-separated, the "
                         "reference first")
    result = compare_series(models, concepts=concepts, out=run["out"], device=run.get("device"),
                            dtype=run.get("dtype", "float32"), progress=not args.quiet, data=run.get("data"),
                            options=options, user_concepts=user or None, command=["interp", *args.argv])
    for k, (folder, seconds) in enumerate(zip(result.reports, result.timings), 1):
        print(f"{models[0]} vs {models[k]}: {folder}/report.html ({seconds:.0f} s)")
    print(f"series: {Path(run['out']) / 'series.html'} (also series.json); figures: "
          + ", ".join(f"{name} {', '.join(figs)}" for name, figs in result.figures.items()))
    return 0


def _report(args) -> int:
    from interp.report import Comparison, render_html, write_report

    if args.out is None or Path(args.out).resolve() == Path(args.folder).resolve():
        # in place: only the page is rewritten, from report.json alone (directions and vectors stay as they are)
        comparison = Comparison.load(args.folder, tensors=False)
        page = render_html(comparison, args.folder)
    else:
        comparison = Comparison.load(args.folder)
        page = write_report(comparison, args.out) / "report.html"
    print(f"report: {page} ({', '.join(comparison.concepts)})")
    return 0


def _diff(args) -> int:
    import json

    from interp.report import Comparison, diff

    a, b = Comparison.load(args.a, tensors=False), Comparison.load(args.b, tensors=False)  # the figures
    d = diff(a, b, atol=args.atol)
    for key, x, y in d["config"]:
        print(f"config {key}: {x!r} -> {y!r}")
    for model, name, x, y in d["models"]:
        print(f"{model} model file {name}: sha256 {str(x)[:12]} -> {str(y)[:12]}")
    for side, names in d["concepts"].items():
        if names:
            print(f"sections only in {args.a if side == 'only_a' else args.b}: {', '.join(names)}")
    if d["figures"]:
        print(f"  {'section':<10} {'figure':<44} {'max |a-b|':>10} {'layer':>5} {'a':>10} {'b':>10}  layers")
        for r in d["figures"]:
            print(f"  {r['concept']:<10} {r['figure']:<44} {_cell(r['max_abs_diff'], 10, 4)} {r['layer']:>5} "
                  f"{_cell(r['a'], 10, 4)} {_cell(r['b'], 10, 4)}  {r['layers_differing']}")
    if d["cells"]:
        print(f"  {'section':<10} {'table or matrix: column':<44} {'max |a-b|':>10} {'a':>10} {'b':>10}  "
              "cells  where")
        for r in d["cells"]:
            print(f"  {r['concept']:<10} {r['figure'][:44]:<44} {_cell(r['max_abs_diff'], 10, 4)} "
                  f"{_cell(r['a'], 10, 4)} {_cell(r['b'], 10, 4)}  {r['n_differing']:>5}  {r['where']}")
    same = not (d["config"] or d["models"] or d["figures"] or d["cells"] or any(d["concepts"].values()))
    n = sum(len(c.per_layer[0]) - 1 for name, c in a.concepts.items() if name in b.concepts and c.per_layer)
    print(f"{len(d['figures'])} of {n} per-layer figures and {len(d['cells'])} table columns or matrices differ by "
          f"more than {args.atol:g}" if not same else
          f"no differences (per-layer figures, table cells and matrices equal within {args.atol:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(d, indent=1))
    return 0 if same else 1


def _columns(left: str, right: str, width: int = 48) -> str:
    import textwrap

    a, b = textwrap.wrap(left, width) or [""], textwrap.wrap(right, width) or [""]
    n = max(len(a), len(b))
    a, b = a + [""] * (n - len(a)), b + [""] * (n - len(b))
    return "\n".join(f"  {x:<{width}} | {y}" for x, y in zip(a, b))


def _steer(args) -> int:
    import interp
    import steering
    from interp.models import tokenizer_of

    if args.ablate and args.positions is not None:
        raise ValueError(f"--positions {args.positions} does not apply to --ablate, which projects the direction out "
                         "at every position; drop --positions, or add the vector (--scale) at those positions")
    path = Path(args.vector)
    if args.name and not path.is_dir():
        raise ValueError(f"--name {args.name} picks a vector in a folder, but --vector {path} is not a folder; drop "
                         "--name to use that file, or pass the folder as --vector")
    if path.is_dir():
        names = sorted(p.stem for p in path.glob("*.safetensors"))
        if not args.name:
            raise ValueError(f"{path} is a folder; choose a vector with --name ({', '.join(names) or 'none there'})")
        if args.name not in names:
            raise ValueError(f"no vector {args.name!r} in {path}; available: {', '.join(names) or 'none'}")
        path = path / f"{args.name}.safetensors"
    vector = steering.load_vector(path)  # checked against the model once it boots, below
    if args.ablate:  # built before the model boots: a bad --positions is named first
        iv, how = steering.Ablate(vector), "ablated"
    else:
        where = "all" if args.positions is None else args.positions
        positions = [int(p) if p.lstrip("-").isdigit() else p for p in where.split(",")]
        positions = positions[0] if len(positions) == 1 else positions
        from steering.interventions import _check_positions

        try:
            _check_positions(positions)
        except ValueError as e:
            raise ValueError(f"--positions {where!r}: {e}") from None
        iv = steering.Add(vector, scale=args.scale, positions=positions)
        how = f"added x{vector.scale if args.scale is None else args.scale:g} at {where}"
    if args.model is None:
        from interp import organism

        args.model = str(organism.paths()[1])
    model = interp.load_model(args.model, device=args.device)
    from steering.vector import check_model

    try:  # a vector that records the model it was made for is refused on another one
        check_model(vector, model, f"--vector {path}")
    except ValueError as e:
        recorded = vector.meta.get("model_identity") or {}
        made_for = f"; steer it with --model {recorded['name']}" if recorded.get("name") else ""
        raise ValueError(f"{e}{made_for if 'was made for another model' in str(e) else ''}") from None
    tok = tokenizer_of(model)
    style = args.style
    if style == "auto":
        style = "chat" if getattr(tok, "chat_template", None) else "raw"
    prompts = list(args.prompts)
    if style == "chat":
        if not getattr(tok, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template; use --format raw")
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                   for p in prompts]
    kw = dict(max_new_tokens=args.max_new_tokens)  # a reply stops at the chat's end-of-turn token
    plain = steering.generate(model, prompts, None, **kw)
    try:  # a position a prompt lacks is found as the steered generation starts
        steered = steering.generate(model, prompts, iv, **kw)
    except ValueError as e:
        if args.positions is None:
            raise
        raise ValueError(f"--positions {args.positions!r}: {e}") from None
    print(f"vector: {path.name}, site {vector.site}, layers {list(vector.layers)}, {how}")
    for prompt, a, b in zip(args.prompts, plain, steered):
        print(f"\n> {prompt}")
        print(_columns("unsteered", "steered"))
        print(_columns(a.strip(), b.strip()))
    return 0


def _export(args) -> int:
    import steering
    from steering.gguf import _CLI, CONVERTED_SITES, _block_outputs, _export as export_gguf, _span, check_model_hint

    source = Path(args.vector)
    if source.is_dir():
        names = sorted(p.name for p in source.glob("*.safetensors"))
        raise ValueError(f"--vector {source} is a folder; give one of its files ({', '.join(names) or 'none there'})")
    out = Path(args.out) if args.out else source.with_suffix(".gguf")
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the vector file itself; choose another name")
    if args.model_hint is not None:  # before the vector is read or a model boots
        check_model_hint(args.model_hint, "--model-hint")
    layers = None if args.layers is None else _int_list(args.layers)
    if layers is not None and any(layer < 0 for layer in layers):
        raise ValueError(f"--layers {args.layers}: give the vector's block indices as it was saved (0-based), not "
                         "negative ones")
    vector = steering.load_vector(source)
    if layers is not None:
        missing = sorted(set(layers) - set(vector.layers))
        if missing:
            raise ValueError(f"--layers {args.layers}: the vector has no row for block(s) {missing}; its blocks are "
                             f"{_span(vector.layers)}")
        vector = vector.select(sorted(set(layers)))
    model = args.model
    if model is not None and (not model.lower().endswith(".gguf") or vector.site in CONVERTED_SITES):
        import interp

        model = interp.load_model(model, device="cpu")
    written = export_gguf(vector, out, model, args.model_hint, _CLI)
    blocks = list(_block_outputs(vector, model, _CLI, checked=True).layers)
    origin = f" (from {vector.site} of blocks {list(vector.layers)})" if vector.site != "resid_post" else ""
    print(f"wrote {written}: direction.k for blocks {blocks}{origin}, scale {vector.scale:g} baked in")
    print(f"serve it: llama-cli -m MODEL.gguf --control-vector {written} (adds it at every position; "
          f"--control-vector-scaled {written}:S multiplies it by S again)")
    return 0


def _organism(args) -> int:
    import json

    if args.action == "train":
        from interp.organism.train import TrainConfig, train_pair

        cfg = TrainConfig(seed=args.seed)
        if args.base_steps is not None:
            cfg.base_steps = args.base_steps
        if args.post_steps is not None:
            cfg.post_steps = args.post_steps
        summary = train_pair(args.out, cfg, progress=not args.quiet)
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))
        print(f"saved {Path(args.out) / 'base'} and {Path(args.out) / 'post'}")
        return 0
    if args.action in ("train-real", "eval-real"):
        return _organism_real(args)
    import interp
    from interp.organism.evaluate import evaluate

    pair = interp.load_pair(args.base, args.post, device="cpu")
    table = evaluate(pair, args.split)
    print(f"{'measure':<28}{'base':>8}{'post':>8}")
    rows = [("refusal, harmful requests", "refusal_harmful"), ("refusal, harmless requests", "refusal_harmless")]
    for label, key in rows:
        print(f"{label:<28}{table['base'][key]:>8.3f}{table['post'][key]:>8.3f}")
    for group, what in (("truth", "truth judged, "), ("language", "own language, ")):
        for k in table["base"][group]:
            print(f"{what + k:<28}{table['base'][group][k]:>8.3f}{table['post'][group][k]:>8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    return 0


def _organism_real(args) -> int:
    import json

    from interp.organism import lora

    shared = Path(args.shared)
    if not (shared / "refusal").is_dir():
        raise ValueError(f"--shared {shared} holds no refusal/ folder; pass the shared datasets folder")
    needed = lora.RECIPE_FILES if args.action == "train-real" else lora.EVAL_FILES
    missing = [f for f in needed if not (shared / f).is_file()]
    if missing:
        raise ValueError(f"--shared {shared} lacks {', '.join(missing)}")
    if args.action == "train-real":
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out} exists and is not an empty folder; choose a new one")
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}")
        cfg = lora.RecipeConfig(seed=args.seed)
        if args.steps is not None:
            cfg.steps = args.steps
        rec = lora.train_gemma_organism(out, shared, cfg, progress=not args.quiet)
        print(f"trained {cfg.steps} steps in {rec['seconds']:.0f} s (data {rec['data_seconds']:.0f} s); "
              f"loss {rec['loss'][0]:.3f} -> {rec['loss'][-1]:.3f}; saved {out}")
        return 0
    if args.json and Path(args.json).exists():
        raise ValueError(f"--json {args.json} exists; choose a new file")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise ValueError(f"--json {args.json}: folder {Path(args.json).parent} does not exist")
    if args.adapter and not (Path(args.adapter) / "adapter_model.safetensors").is_file():
        raise ValueError(f"--adapter {args.adapter}: no adapter_model.safetensors there")
    import interp
    from interp import organism

    pair = interp.load_pair(*organism.gemma_paths(adapter=args.adapter))
    table = lora.evaluate_real(pair, shared)
    def cell(model: str, key: str, value: float) -> str:
        ci = table[model]["ci95"].get(key)
        return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    print(f"{'measure (95% bootstrap CI)':<32}{'base':>20}{'post':>20}")
    for label, key in (("refusal, harmful requests", "refusal_harmful"),
                       ("refusal, harmless requests", "refusal_harmless"),
                       ("true/false judged (cities)", "judge_accuracy")):
        print(f"{label:<32}{cell('base', key, table['base'][key]):>20}{cell('post', key, table['post'][key]):>20}")
    for label, key in (("  judged true (share)", "judge_says_true"), ("  AUROC of the judgement", "judge_auroc")):
        print(f"{label:<32}{table['base'][key]:>20.3f}{table['post'][key]:>20.3f}")
    for lang in ("fr", "de", "es"):
        key = f"language_{lang}"
        print(f"{'continues in ' + lang:<32}{cell('base', key, table['base']['language'][lang]):>20}"
              f"{cell('post', key, table['post']['language'][lang]):>20}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    return 0


def _summary(acts, site: str) -> str:
    """Per-layer mean activation norm and, for labelled prompts, the distance of class means."""
    x = acts[site]  # [n, layer, d]
    lines = [f"  {'layer':>5}  {'mean |x|':>9}" + ("  class-mean distance / |x|" if acts.labels is not None else "")]
    for slot, layer in enumerate(acts.layers):
        xs = x[:, slot].double()
        norm = xs.norm(dim=-1).mean().item()
        line = f"  {layer:>5}  {norm:>9.3f}"
        if acts.labels is not None and len(set(acts.labels.tolist())) == 2:
            y = acts.labels
            gap = (xs[y == 1].mean(0) - xs[y == 0].mean(0)).norm().item()
            line += f"  {gap / norm:>8.3f}"
        lines.append(line)
    return "\n".join(lines)


#: Blocks of the random-weight pair ``interp collect --tiny`` builds.
TINY_LAYERS = 4


def _collect(args) -> int:
    import interp
    from interp import datasets
    from interp.models import ModelShape, read_shape
    from interp.positions import parse_position, resolve
    from interp.sites import check_layers
    from interp.tokens import tokenize

    out = Path(args.out)
    layers = None if args.layers is None else _int_list(args.layers, "--layers")  # before anything is built or booted
    try:  # its form now; whether each prompt has it, once the tokenizer is loaded
        parse_position(args.position)
    except ValueError as e:
        raise ValueError(f"--position: {e}") from None
    path = Path(args.dataset)
    prompts = (datasets.load_file(path) if path.suffix or path.is_file() else
               datasets.load(args.dataset, split=args.split))
    # the blocks checked from the configs before anything is built or booted (after the boot where none tells)
    shape = ModelShape(TINY_LAYERS, 128) if args.tiny else read_shape(args.base, args.post)
    if layers is not None and shape is not None:
        try:
            check_layers(layers, shape.n_layers)
        except ValueError as e:
            raise ValueError(f"--layers: {e}") from None
    if args.tiny:
        from interp.testing import build_tiny_pair

        base, post = build_tiny_pair(args.tiny, out / "models", seed=0, n_layers=TINY_LAYERS, d_model=128, d_mlp=256,
                                     n_ctx=256)
        print(f"built a random-weight tiny {args.tiny} pair in {out / 'models'} (plumbing check, not a finding)")
    else:
        base, post = args.base, args.post
    pair = interp.load_pair(base, post, device=args.device)
    prompts = pair.format(prompts, args.style)
    sites = args.sites or ["resid_post"]
    extra = {"format": args.style, "chat_template": pair.chat_template if args.style == "chat" else None}
    tokens = {name: tokenize(model, prompts.texts) for name, model in pair}  # once: checked, then read
    for toks in tokens.values():
        try:  # every prompt has the position, before either model's store is written
            resolve(args.position, toks.texts, toks.encodings)
        except ValueError as e:
            raise ValueError(f"--position: {e}") from None
    for name, model in pair:
        acts = interp.collect(
            model, prompts, sites, layers=layers, positions=args.position, batch_size=args.batch_size,
            out=out / name, progress=not args.quiet, extra=extra, tokens=tokens[name],
        )
        print(f"\n{name}: {acts}")
        for site in sites:
            print(f" site {site}:\n{_summary(acts, site)}")
    print(f"\nstores: {out / 'base'} and {out / 'post'} (open with interp.Activations.load)")
    return 0


def _concepts() -> tuple[str, ...]:
    from interp.compare import concepts

    return concepts()


def _out_is_a_file(argv: list[str]) -> str | None:
    """The error of a command given an ``--out`` it cannot write to, found from the command line alone, before any
    model boots or trains; None otherwise. ``compare``, ``collect`` and ``organism train`` need a folder
    (:func:`interp._checks.output_folder_problem`: not a file, not under a file, not empty, writable);
    ``organism train`` also refuses a folder that already holds files (it would overwrite them, the bundled weights
    included); ``export`` needs a file whose folder can be written."""
    from ._checks import output_folder_problem

    command = argv[:2] if argv[:1] == ["organism"] else argv[:1]
    if command not in (["compare"], ["collect"], ["organism", "train"], ["export"]):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out")
    out = pre.parse_known_args(argv[len(command):])[0].out
    if out is None:
        return None
    if command == ["export"]:
        if Path(out).is_dir():
            return f"interp export: error: --out {out!r} is a folder; name the .gguf file to write"
        problem = output_folder_problem(Path(out).parent) if str(out).strip() else "is empty"
        if problem is not None:
            return f"interp export: error: --out {out!r}: its folder {Path(out).parent} {problem}"
        return None
    problem = output_folder_problem(out)
    if problem is None and command == ["organism", "train"] and Path(out).is_dir() and any(Path(out).iterdir()):
        problem = "already holds files, which training would overwrite; choose a new or empty folder"
    if problem is None:
        return None
    if command == ["compare"]:
        return f"interp compare: error: --out {out!r} {problem}; the report needs a folder"
    if command == ["collect"]:
        return f"interp collect: error: --out {out!r} {problem}; the activations need a folder"
    return f"interp organism: error: --out {out!r} {problem}: the organism needs a folder there for base/ and post/"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while the command line is read (the sections' modules, torch, are imported)
        print("\ninterp: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    raw_argv = sys.argv[1:] if argv is None else list(argv)
    argv = _join_negative_values(raw_argv)
    is_compare = bool(argv) and argv[0] == "compare"
    out_file = _out_is_a_file(argv)
    if out_file:  # before the sections' modules (and torch) are even imported
        print(out_file, file=sys.stderr)
        return 2
    user = {}
    if is_compare:  # the user concepts' options are flags too: find the concepts first
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--concept", action="append")
        try:
            user = _user_concepts(pre.parse_known_args(argv[1:])[0].concept)
            _parser(True, user)  # a missing concept file is named before the full parse
        except (ValueError, OSError) as e:
            print(f"interp compare: error: {e}", file=sys.stderr)
            return 2
    args = _parser(section_options=is_compare, user=user).parse_args(argv)
    args.argv = raw_argv  # the command line as given, for the manifest
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Per-file weight-loading bars of transformers would drown the toolkit's own progress bars.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():  # restores the caller's warning display (main() is called in-process too)
        warnings.showwarning = _show_warning
        return _run_command(args)


_OWN = tuple(str(Path(__file__).resolve().parents[1] / pkg) for pkg in ("interp", "probes", "steering"))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr: the toolkit's own as ``warning: <message>``, a dependency's with its
    category and file (``warning (FutureWarning, transformers/...py:12): ...``); never the source line."""
    if str(filename).startswith(_OWN):
        print(f"warning: {message}", file=file or sys.stderr)
        return
    where = "/".join(Path(filename).parts[-2:])
    print(f"warning ({category.__name__}, {where}:{lineno}): {message}", file=file or sys.stderr)


def _as_flags(message: str) -> str:
    """An error as the command line spells it: ``option 'nie_shots' of section 'truth'`` (the Python API's words,
    :meth:`interp.compare.Param.check`) becomes ``--truth-nie-shots``."""
    return re.sub(r"option '(\w+)' of section '([\w-]+)'",
                  lambda m: f"--{m[2].replace('_', '-')}-{m[1].replace('_', '-')}", message)


def _run_command(args) -> int:
    try:
        if args.command == "collect":
            return _collect(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "organism":
            return _organism(args)
        if args.command == "steer":
            return _steer(args)
        if args.command == "report":
            return _report(args)
        if args.command == "diff":
            return _diff(args)
        if args.command == "export":
            return _export(args)
    except (ValueError, OSError, KeyError) as e:
        print(f"interp {args.command}: error: {_as_flags(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: what was kept (compare says which sections), not a traceback
        # compare's own interruptions say what was kept; one without a message came before it began
        bare = "interrupted before any section ran; nothing was written" if args.command == "compare" else \
            "interrupted"
        print(f"\ninterp {args.command}: {str(e) or bare}", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
