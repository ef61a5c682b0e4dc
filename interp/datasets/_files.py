"""Loaders for user prompt files in the common public formats.

=====================  ===================================================  ========================
``format``             shape                                                example
=====================  ===================================================  ========================
``got_csv``            CSV with ``statement,label`` (+ extra columns)        Geometry of Truth
``instruction_json``   JSON list of ``{"instruction": ..., ...}``            AdvBench, Alpaca
``prompt_label_json``  JSON list of ``{"prompt", "label"}``, or a dict        SNMF concept sets
                       ``label -> [sentences]``
``jsonl``              one JSON object per line with a text and a label      any
``csv``                CSV with a text and a label column                    any
=====================  ===================================================  ========================

Columns other than the text and the label go to each row's ``meta``. String
labels become integers in sorted order of their names; 0/1 integer labels are
kept (named ``false``/``true`` for Geometry-of-Truth files).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ._promptset import PromptSet

__all__ = ["load_file", "FORMATS"]

FORMATS = ("got_csv", "instruction_json", "prompt_label_json", "jsonl", "csv")
TEXT_COLUMNS = ("text", "statement", "prompt", "instruction", "sentence")
LABEL_COLUMNS = ("label", "labels", "class")


def _coerce(value: str):
    """CSV cells: ints and floats as numbers, the rest as strings."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _pick(columns, wanted: str | None, candidates, what: str, path: Path, required: bool):
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no {what} column {wanted!r}; columns are {list(columns)}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise ValueError(
            f"{path}: no {what} column found among {list(columns)}; expected one of {list(candidates)} "
            f"(or pass {what}_column=)"
        )
    return None


def _from_records(records: list[dict], path: Path, *, name, text_column, label_column, label, forced_labels=None):
    if not records:
        raise ValueError(f"{path}: the file has no rows")
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise ValueError(f"{path}: row {bad[0]} is not an object/record")
    columns = list(dict.fromkeys(k for r in records for k in r))
    tcol = _pick(columns, text_column, TEXT_COLUMNS, "text", path, required=True)
    lcol = None if label is not None else _pick(columns, label_column, LABEL_COLUMNS, "label", path, required=False)
    texts = []
    for i, r in enumerate(records):
        t = r.get(tcol)
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"{path}: row {i} has an empty {tcol!r}")
        texts.append(t)
    meta = tuple({k: v for k, v in r.items() if k not in (tcol, lcol)} for r in records)
    labels = label_names = None
    if label is not None:
        labels, label_names = (0,) * len(texts), (str(label),)
    elif lcol is not None:
        raw = [r.get(lcol) for r in records]
        missing = [i for i, y in enumerate(raw) if y is None or y == ""]
        if missing:
            raise ValueError(f"{path}: row {missing[0]} has no {lcol!r}")
        kinds = {type(y) for y in raw}
        if kinds <= {int} or (kinds <= {bool}):
            labels = tuple(int(y) for y in raw)
            label_names = forced_labels if forced_labels and set(labels) <= {0, 1} else None
        elif kinds <= {str}:
            label_names = tuple(sorted(set(raw)))
            labels = tuple(label_names.index(y) for y in raw)
        else:
            raise ValueError(f"{path}: labels in {lcol!r} mix types {sorted(k.__name__ for k in kinds)}")
    return PromptSet(
        name=name or path.stem, texts=tuple(texts), labels=labels, label_names=label_names,
        meta=meta, source=str(path),
    )


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _coerce(v) if k not in TEXT_COLUMNS else v for k, v in row.items()} for row in csv.DictReader(f)]


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {n} is not valid JSON ({e})") from None
    return out


def _detect(path: Path, data=None) -> str:
    ext = path.suffix.lower()
    if ext == ".jsonl":
        return "jsonl"
    if ext == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        return "got_csv" if {"statement", "label"} <= set(header) else "csv"
    if ext == ".json":
        if isinstance(data, dict):
            return "prompt_label_json"
        if isinstance(data, list) and data and isinstance(data[0], dict):
            if "instruction" in data[0]:
                return "instruction_json"
            if "prompt" in data[0]:
                return "prompt_label_json"
            return "jsonl"  # a list of records with some text column
        raise ValueError(f"{path}: JSON must be a list of objects or a mapping label -> sentences")
    raise ValueError(f"{path}: cannot tell the format from the extension {ext!r}; pass format= (one of {FORMATS})")


def load_file(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label: str | None = None,
    name: str | None = None,
) -> PromptSet:
    """Load prompts from a CSV, JSON or JSONL file (see the module table for formats).

    Args:
        path: the file.
        format: force one of :data:`FORMATS` instead of detecting it.
        text_column, label_column: column names when they are not the usual ones.
        label: give every row this one class (e.g. ``"harmful"`` for an AdvBench file).
        name: the set's name (default: the file's stem).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown format, no rows, no text column, an empty text,
            or labels of mixed types.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {FORMATS}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    ext = path.suffix.lower()
    data = _read_json(path) if ext == ".json" else None
    fmt = format or _detect(path, data)
    kw = dict(name=name, text_column=text_column, label_column=label_column, label=label)
    if fmt in ("got_csv", "csv"):
        forced = ("false", "true") if fmt == "got_csv" else None
        return _from_records(_read_csv(path), path, forced_labels=forced, **kw)
    if fmt == "jsonl":
        records = _read_jsonl(path) if ext != ".json" else data
        return _from_records(records, path, **kw)
    if data is None:
        data = _read_json(path)
    if fmt == "prompt_label_json" and isinstance(data, dict):
        records = []
        for concept, sentences in data.items():
            if not isinstance(sentences, list):
                raise ValueError(f"{path}: value of {concept!r} is not a list of sentences")
            records += [{"prompt": s, "label": concept} for s in sentences]
        data = records
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of objects for format {fmt!r}")
    return _from_records(data, path, **kw)
