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
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._promptset import PromptSet
from ._record import record
from ._readers import FORMATS, detect, json_records, read_csv, read_json, read_records

__all__ = ["load_file", "FORMATS", "TEXT_COLUMNS", "LABEL_COLUMNS"]

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

    Returns:
        A :class:`PromptSet` with ``source`` the file's path.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown format, an empty file or no rows, no text field
            (the fields seen are listed), an empty text (its row is named),
            missing labels, labels of mixed types, labels that differ only in
            case (``Harmful``/``harmful``), or no usual label field while another
            field looks like one (``is_true``; the fields found are listed).

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cities.csv"
    >>> _ = p.write_text("statement,label,city\\nThe city of Lyon is in France.,1,Lyon\\n")
    >>> ps = load_file(p)
    >>> ps.texts, ps.labels, ps.label_names, ps.meta
    (('The city of Lyon is in France.',), (1,), ('false', 'true'), ({'city': 'Lyon'},))
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

    records: list[dict] | None = None
    fmt = format
    if fmt is None:
        fmt, records = detect(path)
    elif fmt in ("instruction_json", "prompt_label_json"):
        records = json_records(read_json(path), path)
    elif fmt == "jsonl":
        records = json_records(read_records(path), path)
    lines = None
    if records is None:
        records, lines = read_csv(path)
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
