"""Loading user prompt files in the common public formats.

=====================  ====================================================  ==================
``format``             shape                                                 example
=====================  ====================================================  ==================
``got_csv``            CSV with ``statement,label`` (+ extra columns)         Geometry of Truth
``instruction_json``   JSON list of ``{"instruction": ..., ...}``             AdvBench, Alpaca
``prompt_label_json``  JSON list of ``{"prompt", "label"}``, or an object     SNMF concept sets
                       mapping ``label -> [sentences]``
``jsonl``              records with a text and optionally a label field:      any
                       one JSON object per line (or a JSON list of them)
``csv``                CSV with a text and optionally a label column          any
``facts``              JSONL or CSV of facts: ``prompt``, ``subject``,        CounterFact-style
                       ``answer`` (+ ``relation``, ``alternatives``)          knowledge prompts
=====================  ====================================================  ==================

The text field is the first of ``text, statement, prompt, instruction,
sentence`` present (or ``text_column=``), the label field the first of
``label, labels, class`` (or ``label_column=``). Every other field goes to the
row's ``meta``; CSV cells that are numbers become numbers. String labels
become integers in the case-insensitive sorted order of their names; integer
labels are kept (named ``false``/``true`` in Geometry-of-Truth files and for
JSON booleans). The words ``true``/``false`` and ``yes``/``no`` are read in any
case (``TRUE``, ``No``) as ``false``/``no`` = 0, ``true``/``yes`` = 1; other
labels that differ only in case are refused.
A file with no usual label field but a field that looks like one (``is_true``,
``target``, values ``true``/``false``) is refused with the field named: pass
``label_column=`` to use it or ``label_column=False`` to load without labels.

A JSON, JSONL or CSV file whose rows have ``prompt``, ``subject`` and ``answer``
fields is read as ``facts`` (unless ``text_column``, ``label_column`` or
``label`` is given), in the layout of the built-in ``facts`` set
(:mod:`._facts`): an unlabelled set whose texts are the prompts, ending right
before the answer, and whose ``meta`` holds ``subject`` (it must occur exactly
once in the prompt), ``answer`` and ``alternatives`` (wrong answers, a tuple),
``relation`` (default ``"fact"``) and ``group`` (a ``group`` field, else
``f"{relation}:{subject}"``). A leading space is added to the answer and to each
alternative that lacks one, so ``Paris`` reads as `` Paris``, the word after the
prompt (the answer token of a model is the first token of that). Alternatives
are a JSON list or, in a CSV cell, separated by ``|`` (``Berlin|Madrid|Rome``);
a row without them gets up to three other answers of its relation, drawn as the
built-in set draws its own (:func:`._facts.pick_alternatives`). Other fields go
to ``meta``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._facts import fact_meta, pick_alternatives
from ._promptset import PromptSet
from ._readers import FORMATS as _READER_FORMATS
from ._readers import detect, json_records, read_csv, read_json, read_records
from ._record import record

__all__ = ["load_file", "FORMATS", "TEXT_COLUMNS", "LABEL_COLUMNS", "FACT_COLUMNS"]

#: Formats :func:`load_file` understands (``format=``).
FORMATS = (*_READER_FORMATS, "facts")
#: The fields every row of a ``facts`` file needs.
FACT_COLUMNS = ("prompt", "subject", "answer")

#: Text fields looked for, in this order, when ``text_column`` is not given.
TEXT_COLUMNS = ("text", "statement", "prompt", "instruction", "sentence")
#: Label fields looked for, in this order, when ``label_column`` is not given.
LABEL_COLUMNS = ("label", "labels", "class")
# The field each format names its text with, tried before TEXT_COLUMNS.
_FORMAT_TEXT = {"got_csv": "statement", "instruction_json": "instruction", "prompt_label_json": "prompt"}
_BOOL_NAMES = ("false", "true")
_YES_NO = ("no", "yes")
# Field names that hold a class under another name than LABEL_COLUMNS (checked when none of those is present).
_LABEL_LIKE = re.compile(r"^(is|has)_|label|truth|^(true|y|y_true|gold|correct|polarity|sentiment|outcome)$",
                         re.IGNORECASE)
_BOOL_WORDS = {"true", "false", "yes", "no"}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def load_file(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None | bool = None,
    label: str | None = None,
    name: str | None = None,
) -> PromptSet:
    """Load prompts from a CSV, JSON or JSON-lines file (formats in the module table).

    Args:
        path: the file.
        format: one of :data:`FORMATS` to skip detection (by extension, then content).
        text_column: the field holding the prompt, when it is not a usual one.
        label_column: the field holding the class, when it is not a usual one; ``False``: load
            without labels even when a field looks like one (every field then goes to meta).
        label: give every row this one class (``label_names == (label,)``), e.g.
            ``"harmful"`` for an AdvBench file; a label field then stays in meta.
        name: the set's name (default: the file name without extension).

    ``text_column``, ``label_column`` and ``label`` do not apply to ``format="facts"``.

    Returns:
        A :class:`PromptSet` with ``source`` the file's path.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown format, an empty file or no rows, no text field
            (the fields seen are listed), an empty text (its row is named),
            missing labels, labels of mixed types, labels that differ only in
            case (``Harmful``/``harmful``), or no usual label field while another
            field looks like one (``is_true``; the fields found are listed).
            A facts file: a missing ``prompt``/``subject``/``answer`` column, an
            empty prompt, subject or answer, a prompt that ends in whitespace, a
            subject that does not occur exactly once in its prompt, an answer
            among its own alternatives, an empty alternative, or a row without
            alternatives where no other answer of its relation can be drawn
            (each error names the file and the row).

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cities.csv"
    >>> _ = p.write_text("statement,label,city\\nThe city of Lyon is in France.,1,Lyon\\n")
    >>> ps = load_file(p)
    >>> ps.texts, ps.labels, ps.label_names, ps.meta
    (('The city of Lyon is in France.',), (1,), ('false', 'true'), ({'city': 'Lyon'},))
    >>> q = p.with_name("facts.jsonl")
    >>> _ = q.write_text('{"prompt": "The capital city of France is called", "subject": "France", '
    ...                  '"answer": "Paris", "alternatives": ["Rome", "Oslo", "Madrid"]}\\n')
    >>> m = load_file(q).meta[0]
    >>> m["answer"], m["alternatives"], m["relation"], m["group"]
    (' Paris', (' Rome', ' Oslo', ' Madrid'), 'fact', 'fact:France')
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is a directory, not a prompt file; pass one of the files inside it")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}, or None to detect it")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError(f"label must be a non-empty class name such as 'harmful', got {label!r}")
    if label is not None and label_column not in (None, False):
        raise ValueError("pass either label= (one class for every row) or label_column=, not both")
    if label_column is True or not (label_column is None or label_column is False or isinstance(label_column, str)):
        raise ValueError(f"label_column must be a field name, None (look for label, labels, class) or False "
                         f"(no labels), got {label_column!r}")
    if not path.read_bytes().strip():
        raise ValueError(f"{path}: the file is empty")
    plain = text_column is None and label_column is None and label is None
    if format == "facts" and not plain:
        raise ValueError("format='facts' reads the fields prompt, subject and answer; drop text_column=, "
                         "label_column= and label=")

    records: list[dict] | None = None
    fmt = format
    if fmt is None or fmt == "facts":
        detected, records = detect(path)
        fmt = fmt or detected
    elif fmt in ("instruction_json", "prompt_label_json"):
        records = json_records(read_json(path), path)
    elif fmt == "jsonl":
        records = json_records(read_records(path), path)
    lines = None
    if records is None:
        records, lines = read_csv(path)
    if fmt == "facts" or (format is None and plain and set(FACT_COLUMNS) <= {k for r in records for k in r}):
        return record(_fact_set(records, path, lines=lines, name=name))
    return record(_promptset(
        records, path, fmt=fmt, lines=lines, text_column=text_column, label_column=label_column,
        label=label, name=name,
    ))


def _promptset(
    records: list[dict], path: Path, *, fmt: str, lines: list[int] | None, text_column: str | None,
    label_column: str | None, label: str | None, name: str | None,
) -> PromptSet:
    """Records to a PromptSet; ``lines`` (CSV only) are the file lines rows start on."""
    from_csv = lines is not None
    if not records:
        raise ValueError(f"{path}: the file has no rows")
    columns = list(dict.fromkeys(k for r in records for k in r))
    preferred = _FORMAT_TEXT.get(fmt)
    tcol = _column(columns, text_column, (preferred, *TEXT_COLUMNS) if preferred else TEXT_COLUMNS, "text", path)
    lcol = None
    if label is None and label_column is not False:
        lcol = _column(columns, label_column, LABEL_COLUMNS, "label", path, required=False)
        if lcol is None:
            _refuse_label_like(records, columns, tcol, path)
    where = (lambda i: f"row {i} (line {lines[i]})") if from_csv else (lambda i: f"row {i}")  # noqa: E731

    texts = []
    for i, r in enumerate(records):
        t = r.get(tcol)
        if t is not None and not isinstance(t, str):
            raise ValueError(f"{path}: {where(i)} has a {type(t).__name__} in {tcol!r}, not a text: {t!r}")
        if not t or not t.strip():
            raise ValueError(f"{path}: {where(i)} has an empty {tcol!r}; remove the row or fill it in")
        texts.append(t)
    cell = _number if from_csv else (lambda v: v)
    meta = tuple({k: cell(v) for k, v in r.items() if k not in (tcol, lcol)} for r in records)

    if label is not None:
        labels, label_names = (0,) * len(texts), (label,)
    elif lcol is not None:
        raw = [cell(r.get(lcol)) for r in records]
        labels, label_names = _encode_labels(raw, lcol, fmt, path, where)
    else:
        labels = label_names = None
    return PromptSet(
        name=name if name is not None else path.stem, texts=tuple(texts), labels=labels,
        label_names=label_names, meta=meta, source=str(path),
    )


def _column(
    columns: list[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path, required: bool = True
) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no {what} column {wanted!r}; the columns are {columns}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise ValueError(
            f"{path}: no {what} column found among {columns}; expected one of {list(dict.fromkeys(candidates))} "
            f"(or pass {what}_column=)"
        )
    return None


def _refuse_label_like(records: list[dict], columns: list[str], text: str, path: Path) -> None:
    """Raise when no usual label field is present but another field looks like one (by its name, or by holding
    only true/false/yes/no values): loading the file unlabelled would lose the labels without a word."""
    def boolean(col: str) -> bool:
        values = [r.get(col) for r in records]
        return all(isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _BOOL_WORDS) for v in values)

    like = [c for c in columns if c != text and (_LABEL_LIKE.search(c) or boolean(c))]
    if like:
        raise ValueError(
            f"{path}: no label column ({', '.join(LABEL_COLUMNS)}) among the columns {columns}, but {like[0]!r} looks "
            f"like one: pass label_column={like[0]!r} (or rename the column to 'label'), or label_column=False to "
            "load the rows without labels"
        )


def _number(value: Any) -> Any:
    """A CSV cell as an int or a float when it is written as one, else unchanged."""
    if not isinstance(value, str):
        return value
    s = value.strip()
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    return value


def _encode_labels(
    raw: list, column: str, fmt: str, path: Path, where
) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
    """Integer labels and their names from raw label values (ints, integral floats, bools or strings)."""
    values = []
    for i, y in enumerate(raw):
        if y is None or (isinstance(y, str) and not y.strip()):
            raise ValueError(f"{path}: {where(i)} has no label in {column!r}; label every row or pass label=")
        if isinstance(y, float) and y.is_integer():
            y = int(y)
        if not isinstance(y, (str, int)):
            raise ValueError(
                f"{path}: {where(i)} has the label {y!r} in {column!r}; labels must be integers or strings"
            )
        values.append(y)
    kinds = {bool if isinstance(y, bool) else int if isinstance(y, int) else str for y in values}
    if len(kinds) > 1:
        first = {k: next(i for i, y in enumerate(values) if type(y) is k) for k in kinds}
        seen = ", ".join(f"{k.__name__} ({where(i)}: {values[i]!r})"
                         for k, i in sorted(first.items(), key=lambda x: x[1]))
        raise ValueError(f"{path}: labels in {column!r} mix types: {seen}; use one type for every row")
    kind = kinds.pop()
    for polar in (_BOOL_NAMES, _YES_NO):  # words with a known polarity, in any case: the negative one is 0
        if kind is str and {y.strip().lower() for y in values} <= set(polar):
            return tuple(polar.index(y.strip().lower()) for y in values), polar
    if kind is str:
        folded: dict[str, str] = {}
        for y in values:
            other = folded.setdefault(y.strip().lower(), y)
            if other != y:
                raise ValueError(f"{path}: the labels {other!r} and {y!r} in {column!r} differ only in case or "
                                 "spaces, so they would be two classes; write each class one way")
        names = tuple(sorted(set(values), key=lambda v: (v.casefold(), v)))  # 'negative' before 'Positive'
        index = {n: k for k, n in enumerate(names)}
        return tuple(index[y] for y in values), names
    labels = tuple(int(y) for y in values)
    if kind is bool:
        return labels, _BOOL_NAMES
    negative = [i for i, y in enumerate(labels) if y < 0]
    if negative:
        raise ValueError(f"{path}: {where(negative[0])} has the negative label {labels[negative[0]]} in {column!r}")
    if fmt == "got_csv":
        if not set(labels) <= {0, 1}:
            raise ValueError(f"{path}: Geometry-of-Truth labels are 0 (false) or 1 (true); found {sorted(set(labels))}")
        return labels, _BOOL_NAMES
    return labels, None


# ---------------------------------------------------------------------- facts


def _fact_set(records: list[dict], path: Path, *, lines: list[int] | None, name: str | None) -> PromptSet:
    """Fact records (``prompt``, ``subject``, ``answer`` [, ``relation``, ``alternatives``, ...]) to an unlabelled
    PromptSet in the layout of the built-in ``facts`` set; ``lines`` (CSV only) are the lines rows start on."""
    if not records:
        raise ValueError(f"{path}: the file has no rows")
    columns = list(dict.fromkeys(k for r in records for k in r))
    missing = [c for c in FACT_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path}: a facts file needs the columns prompt, subject and answer, but {missing} "
                         f"{'is' if len(missing) == 1 else 'are'} missing (the columns are {columns}); rename or "
                         "add the column(s)")
    from_csv = lines is not None
    where = (lambda i: f"row {i} (line {lines[i]})") if from_csv else (lambda i: f"row {i}")  # noqa: E731
    facts = []
    for i, r in enumerate(records):
        prompt, subject, answer = (_fact_text(r, c, path, where(i)) for c in FACT_COLUMNS)
        if prompt != prompt.rstrip():
            raise ValueError(f"{path}: {where(i)}: the prompt {prompt!r} ends in whitespace; end it right before "
                             "the answer and let the answer carry the space (' Paris')")
        n = prompt.count(subject)
        if n != 1:
            problem = "does not occur in" if n == 0 else f"occurs {n} times in"
            raise ValueError(f"{path}: {where(i)}: the subject {subject!r} {problem} the prompt {prompt!r}; the "
                             "subject must be written exactly as it appears, once, in its prompt (rephrase the "
                             "prompt or lengthen the subject)")
        relation = r.get("relation")
        relation = str(relation).strip() if relation is not None and str(relation).strip() else "fact"
        facts.append((prompt, subject, _spaced(answer), relation, _alternatives(r, path, where(i), from_csv)))
    pools: dict[str, list[str]] = {}
    for _, _, answer, relation, _ in facts:
        pools.setdefault(relation, []).append(answer)
    meta = []
    for i, ((prompt, subject, answer, relation, alternatives), r) in enumerate(zip(facts, records)):
        if alternatives is None:
            alternatives = pick_alternatives(answer, pools[relation], ("file", relation, subject))
            if not alternatives:
                raise ValueError(f"{path}: {where(i)} has no alternatives, and no other answer of the relation "
                                 f"{relation!r} starts with another letter than {answer!r} to draw them from; add an "
                                 "'alternatives' column (a JSON list, or in a CSV cell separated by |)")
        elif answer.strip() in {a.strip() for a in alternatives}:
            raise ValueError(f"{path}: {where(i)}: the answer {answer!r} is also among its alternatives "
                             f"{alternatives}; alternatives are wrong answers: remove it from them")
        group = r.get("group")
        extra = {k: (_number(v) if from_csv else v) for k, v in r.items()
                 if k not in (*FACT_COLUMNS, "relation", "alternatives", "group")}
        m = fact_meta(subject, answer, alternatives, relation, **extra)
        if group is not None and str(group).strip():
            m["group"] = group
        meta.append(m)
    return PromptSet(name=name if name is not None else path.stem, texts=tuple(f[0] for f in facts),
                     meta=tuple(meta), source=str(path))


def _fact_text(r: dict, column: str, path: Path, where: str) -> str:
    value = r.get(column)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{path}: {where} has a {type(value).__name__} in {column!r}, not a text: {value!r}; "
                         "write it as a string")
    if not value or not value.strip():
        raise ValueError(f"{path}: {where} has an empty {column!r}; fill it in or remove the row")
    return value


def _spaced(text: str) -> str:
    """``text`` with a leading space, unless it starts with whitespace already."""
    return text if text[:1].isspace() else f" {text}"


def _alternatives(r: dict, path: Path, where: str, from_csv: bool) -> tuple[str, ...] | None:
    """The row's alternatives with leading spaces, or ``None`` when it gives none."""
    value = r.get("alternatives")
    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
        return None
    if isinstance(value, str):
        items = [a.strip() for a in value.split("|")]
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        items = list(value)
    else:
        raise ValueError(f"{path}: {where} has {value!r} in 'alternatives'; give a list of strings (JSON) or "
                         "strings separated by | (CSV)")
    if any(not a.strip() for a in items):
        stray = " (a stray |)" if isinstance(value, str) else ""
        raise ValueError(f"{path}: {where} has an empty alternative in {value!r}; remove the empty entry{stray}")
    return tuple(_spaced(a) for a in items)
