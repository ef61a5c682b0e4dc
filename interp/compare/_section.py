"""The section protocol of :func:`interp.compare.compare` and the registry of sections.

A section is one concept's comparison of a base model and its post-trained version. It is declared by a
:class:`Section`: a name, the options it takes (:class:`Param`, from which ``compare(options=...)`` is
checked and ``interp compare --<section>-<option>`` is generated) and a ``run(ctx, **options)`` function
that returns a :class:`~interp.report.ConceptResult`. Each built-in section lives in one module of this
package and follows the same order inside ``run``: the inputs it needs (prompt sets, from
``ctx.data`` or the built-in sets), each tokenised once (:func:`tokens_for`) and read by every pass
over it, the activations it collects from both models, then the analysis (probes, directions,
interventions) that fills the result.

Adding a section means writing one module that defines ``SECTION = Section(...)`` and one line, either
in :data:`BUILTIN` (in this package) or a call to :func:`register` (anywhere, e.g. a notebook or a test),
or an entry point in the ``interp.sections`` group of an installed package (``name = "module:SECTION"``).
Sections are imported only when they run (or when the CLI lists their options).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN", "Param", "Section", "SectionContext", "concepts", "get_section", "layer_param", "layers_param",
           "parse_layers", "register", "site_param", "split_rows", "tokens_for", "user_data", "window_param"]

#: Built-in sections: name -> module defining ``SECTION``, in the order a full run takes them.
BUILTIN: dict[str, str] = {
    "truth": "interp.compare.truth",
    "refusal": "interp.compare.refusal",
    "language": "interp.compare.language",
    "snmf": "interp.compare.snmf",
    "knowledge": "interp.compare.knowledge",
    "confidence": "interp.compare.confidence",
    "rotation": "interp.compare.rotation",
    "truth_spectrum": "interp.compare.truth_spectrum",
    "divergence": "interp.compare.divergence",
    "geometry": "interp.compare.geometry",
}
#: The entry-point group an installed package declares its sections in.
ENTRY_POINT_GROUP = "interp.sections"

_REGISTERED: dict[str, "Section"] = {}


@dataclass(frozen=True)
class Param:
    """One option of a section.

    Attributes:
        name: the keyword ``run`` takes (``compare(options={section: {name: value}})``); on the command line
            ``--<section>-<name>`` with ``_`` written ``-``.
        type: ``int``, ``float``, ``str`` or ``bool`` (a bool option is ``--x`` / ``--no-x`` on the command line).
        default: the value when the option is not given (``None`` allowed: the section's own default).
        help: what it does, with its unit and the paper it follows where it has one.
        choices: the values allowed, or ``None`` for any value of ``type``.
        validate: called with a given value before any model boots (e.g. that a data file exists); raises
            ``ValueError`` (or ``OSError``) to refuse it; the error is prefixed with the option's name.
        low, high: inclusive bounds of a number option (``None``: unbounded).
        above: an exclusive lower bound (``above=0``: positive), for a number that may come as close to it as
            wanted but not reach it.
        model_check: called as ``model_check(value, shape)`` with a given value and the pair's
            :class:`~interp.models.ModelShape` (blocks, width), before the pair boots when its configs tell the
            shape (:func:`~interp.models.read_shape`), else right after; raises ``ValueError`` to refuse a value the
            model cannot take (a block it does not have); the error is prefixed with the option's name.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    validate: Callable[[Any], Any] | None = None
    low: float | None = None
    high: float | None = None
    above: float | None = None
    model_check: Callable[[Any, Any], Any] | None = None

    def check(self, section: str, value: Any) -> Any:
        """``value`` converted to :attr:`type` (ints accepted for a float option).

        Raises:
            ValueError: a value of another type, one outside :attr:`choices` or the bounds, a float that is NaN or
                infinite.
        """
        if value is None:
            return None
        ok = (isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))) or (
            self.type is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            kind = self.type.__name__
            raise ValueError(f"option {self.name!r} of section {section!r} takes {'an' if kind[0] in 'aeiou' else 'a'} "
                             f"{kind}, got {value!r}")
        if self.type is float and not math.isfinite(value):
            raise ValueError(f"option {self.name!r} of section {section!r} must be a finite number; got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"option {self.name!r} of section {section!r} must be one of "
                             f"{', '.join(map(repr, self.choices))}; got {value!r}")
        if (self.low is not None and value < self.low or self.high is not None and value > self.high
                or self.above is not None and value <= self.above):
            def shown(x):
                return str(x) if isinstance(x, int) else f"{x:g}"

            bounds = " and ".join(x for x in (None if self.low is None else f">= {shown(self.low)}",
                                              None if self.above is None else f"> {shown(self.above)}",
                                              None if self.high is None else f"<= {shown(self.high)}") if x)
            raise ValueError(f"option {self.name!r} of section {section!r} must be {bounds}; got {value!r}")
        if self.validate is not None:
            with self._named(section):
                self.validate(value)
        return self.type(value)

    def check_model(self, section: str, value: Any, shape) -> None:
        """``value`` checked against the pair's :class:`~interp.models.ModelShape` (:attr:`model_check`).

        Raises:
            ValueError: a value the model cannot take, the message starting with the option's name.
        """
        if value is not None and self.model_check is not None:
            with self._named(section):
                self.model_check(value, shape)

    @contextmanager
    def _named(self, section: str):
        """Errors raised inside re-raised with the option's name in front (``interp compare`` writes it as the
        flag, ``--truth-data``), of the same type."""
        named = f"option {self.name!r} of section {section!r}"
        try:
            yield
        except (ValueError, OSError) as e:
            if str(e).startswith(named):
                raise
            raise type(e)(f"{named}: {e}") from None


@dataclass
class SectionContext:
    """What every section's ``run`` receives besides its options.

    Attributes:
        pair: the booted :class:`~interp.models.ModelPair`.
        data: a :class:`~interp.datasets.PublicSets` to take prompts from, or ``None`` for the built-in sets
            (always ``None`` on the bundled organism, which has its own).
        is_organism: whether the pair is the bundled organism (its own prompt sets and read positions).
        progress: show progress bars.
    """

    pair: Any
    data: Any = None
    is_organism: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Section:
    """A concept section: ``run(ctx: SectionContext, **options) -> ConceptResult``.

    Attributes:
        name: the concept's name in ``--concepts`` and in the report (the result's ``concept``).
        run: the function; it receives every declared option (defaults filled in).
        params: the options it takes.
        help: one line for ``interp compare --help``.
        check: called as ``check(shape, **options)`` with the pair's :class:`~interp.models.ModelShape` (blocks,
            width), after every option's :attr:`Param.model_check` and, like them, before the pair boots when its
            configs tell the shape, else right after it boots, and before any section runs: refuses combinations
            of options that depend on the model (a layer filter that leaves no layer); raises ``ValueError``.
        validate: called as ``validate(options, given)`` by :meth:`options`, before any model boots: every option
            (defaults filled in) and the names of those given explicitly, to refuse combinations of options
            (``fit_first`` after ``fit_last``, a corpus name and a corpus file); raises ``ValueError``.
    """

    name: str
    run: Callable[..., Any]
    params: tuple[Param, ...] = field(default_factory=tuple)
    help: str = ""
    check: Callable[..., None] | None = None
    validate: Callable[[dict, frozenset], None] | None = None

    def options(self, given: dict | None = None) -> dict[str, Any]:
        """Every option of the section: ``given`` checked (:meth:`Param.check`), defaults for the rest.

        Raises:
            ValueError: an option the section does not take (the error lists those it does), a bad value, or a
                combination :attr:`validate` refuses.
        """
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"section {self.name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                             f"{', '.join(known) or 'none'}")
        out = {name: p.check(self.name, given[name]) if name in given else p.default for name, p in known.items()}
        if self.validate is not None:
            self.validate(out, frozenset(given))
        return out

    def check_model(self, options: dict[str, Any], shape) -> None:
        """``options`` (as :meth:`options` returns them) checked against the pair's
        :class:`~interp.models.ModelShape`: each option's :attr:`Param.model_check`, then :attr:`check`.

        Raises:
            ValueError: an option the model cannot take.
        """
        for p in self.params:
            p.check_model(self.name, options.get(p.name), shape)
        if self.check is not None:
            self.check(shape, **options)


def register(section: Section, *, replace: bool = False) -> Section:
    """Make ``section`` available to :func:`interp.compare.compare` and ``interp compare`` in this process.

    Raises:
        ValueError: a name already taken (a built-in or registered section), unless ``replace``.
    """
    if not isinstance(section, Section):
        raise TypeError(f"register takes a Section, got {type(section).__name__}")
    if not replace and (section.name in BUILTIN or section.name in _REGISTERED):
        raise ValueError(f"a section named {section.name!r} exists; pass replace=True to replace it")
    _REGISTERED[section.name] = section
    return section


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def concepts() -> tuple[str, ...]:
    """The names of every section that can run: built-in, registered, then from installed entry points.
    Nothing is imported."""
    names = list(BUILTIN) + [n for n in _REGISTERED if n not in BUILTIN]
    return tuple(names + [n for n in _entry_points() if n not in names])


def get_section(name: str) -> Section:
    """The :class:`Section` called ``name``, importing its module on first use.

    Raises:
        ValueError: an unknown name (the error lists the known ones).
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        section = importlib.import_module(BUILTIN[name]).SECTION
    else:
        eps = _entry_points()
        if name not in eps:
            raise ValueError(f"unknown concept {name!r}; available: {', '.join(concepts())}")
        section = eps[name].load()
    if not isinstance(section, Section) or section.name != name:
        raise TypeError(f"the section registered as {name!r} is not a Section named {name!r}")
    return section


def layer_runs(layers) -> str:
    """Ascending layers written as runs, ``[0, 1, 2, 5]`` -> ``"0-2, 5"`` (``""`` for none), for summaries."""
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def user_data(ctx: SectionContext, name: str, files, seed: int = 0):
    """The sets a section reads: ``ctx.data`` (or the built-in sets), with ``files`` (a section's ``data``
    option: a path, or ``harmful,harmless`` for refusal) standing in for ``name``
    (:class:`~interp.datasets.UserSets`, split with ``seed``). ``None`` files: ``ctx.data`` unchanged."""
    if files is None:
        return ctx.data
    from ..datasets import UserSets

    return UserSets({name: files}, fallback=ctx.data, seed=seed)


#: The largest seed a section takes: every seed a section derives from it (``seed + k`` for a few k) stays a valid
#: numpy and scikit-learn seed (below 2**32).
MAX_SEED = 2**31 - 1


def seed_param(help: str) -> Param:
    """A section's ``seed`` option: an int in ``[0, MAX_SEED]`` (default 0), so that a negative or huge seed is
    refused before any model boots instead of failing in numpy once the section runs."""
    return Param("seed", int, 0, help, low=0, high=MAX_SEED)


def data_param(name: str, help: str, check: Callable[[Any], None] | None = None) -> Param:
    """A section's ``data`` option: user files standing in for the set ``name``
    (:class:`~interp.datasets.UserSets`), checked before any model boots: they exist, parse, carry what the
    set needs (labels, both classes, ...) and split; then ``check(sets)`` (the :class:`~interp.datasets.UserSets`)
    for what the section itself needs, raising ``ValueError``."""
    def validate(files):
        from ..datasets import UserSets

        sets = UserSets({name: files})
        sets._read(name)  # the content's errors now, not after minutes of booting a model
        if check is not None:
            check(sets)

    return Param("data", str, None, f"{help} (default: the built-in set, or --data's)", validate=validate)


def provides(data, name: str) -> bool:
    """Whether ``data`` holds a user file for ``name`` (used on the bundled organism, whose own sets stand in
    for everything else)."""
    return data is not None and getattr(data, "provides", lambda _: False)(name)


def tokens_for(pair, texts, *, bos: str = "auto") -> dict:
    """``texts`` tokenised for each model of ``pair`` (``{"base": Tokenized, "post": Tokenized}``), for every
    pass of a section to read: once when both tokenizers give the same ids (the same vocabulary and BOS id),
    else once per model (a base and a chat model may name different BOS tokens).
    """
    from ..models import tokenizer_of
    from ..tokens import _tokenizer_key, tokenize

    out, by_key = {}, {}
    for name, model in pair:
        key = _tokenizer_key(tokenizer_of(model))
        if key not in by_key:
            by_key[key] = tokenize(model, texts, bos=bos)
        out[name] = by_key[key]
    return out


def parse_layers(value: str) -> list[int]:
    """A ``layers`` option, ``"0,2,4"`` or ``"0,2-4"``, as ``[0, 2, 4]`` / ``[0, 2, 3, 4]`` (checked against the
    model when the section runs).

    Raises:
        ValueError: anything but comma-separated block indices.
    """
    from .._checks import int_list

    parts = [x for x in value.split(",") if x.strip()]
    try:
        out = int_list(",".join(parts)) if parts else []
    except ValueError as e:
        why = f" ({e})" if str(e).startswith("range ") else ""
        raise ValueError(f"layers must be comma-separated block indices such as 0,2,4, or ranges such as 2-5 or "
                         f"-3--1; got {value!r}{why}") from None
    if not out:
        raise ValueError(f"layers must name at least one block; got {value!r}")
    return out


def layers_param(name: str, help: str) -> Param:
    """A section's option naming blocks, ``"0,2-4"`` or ``"-3--1"`` (:func:`parse_layers`; default ``None``): its
    form checked before anything boots, its blocks against the model's (a negative one counts from the end)."""
    from ..sites import check_layers

    return Param(name, str, None, f"{help}; ranges such as 2-5, or -3--1 counted from the end",
                 validate=parse_layers,
                 model_check=lambda value, shape: check_layers(parse_layers(value), shape.n_layers))


def layer_param(name: str, help: str) -> Param:
    """A section's option naming one block (an int; negative counts from the end; default ``None``), checked
    against the model's blocks."""
    from ..sites import check_layers

    return Param(name, int, None, help, model_check=lambda value, shape: check_layers([value], shape.n_layers))


def window_param(name: str, default: int | None, help: str) -> Param:
    """A section's option counting consecutive layers (at least 1; at most the model's blocks)."""
    def fits(value, shape):
        if value > shape.n_layers:
            raise ValueError(f"must be at most the model's {shape.n_layers} blocks; got {value}")

    return Param(name, int, default, help, low=1, model_check=fits)


def site_param(help: str) -> Param:
    """A section's ``site`` option: one of :data:`interp.sites.SITES` (default ``resid_post``)."""
    from ..sites import SITES

    return Param("site", str, "resid_post", help, tuple(SITES))


def split_rows(prompts, test_size: float, seed: int) -> tuple:
    """``(train, test)`` row indices (ascending ``int`` arrays) of :meth:`~interp.datasets.PromptSet.split`
    (stratified; by ``meta["group"]`` when any row carries one, a row without one being a group of its own), found
    on a copy whose meta records each row's index."""
    from dataclasses import replace

    import numpy as np

    meta = prompts.meta or ({},) * len(prompts)
    grouped = any("group" in m for m in meta)  # then a row without a group is a group of its own
    tagged = replace(prompts, meta=tuple({**m, "_row": i, **({"group": m.get("group", f"row:{i}")} if grouped else {})}
                                         for i, m in enumerate(meta)))
    parts = tagged.split(test_size, random_state=seed)
    return tuple(np.array([m["_row"] for m in p.meta], dtype=int) for p in parts)
