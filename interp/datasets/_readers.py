"""Reading prompt files into records (one dict per row) and telling their format.

Standard library only: :mod:`csv` and :mod:`json`. CSV cells stay strings here;
:mod:`._files` turns numbers into numbers after it has chosen the text column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "read_csv", "read_json", "read_jsonl", "read_records", "json_records", "detect"]

#: Formats :func:`interp.datasets.load_file` understands (``format=``).
FORMATS = ("got_csv", "instruction_json", "prompt_label_json", "jsonl", "csv")

_ENCODING = "utf-8-sig"  # UTF-8, tolerating the byte-order mark some editors write


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding=_ENCODING)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); re-save the file as UTF-8") from None


def read_csv(path: Path) -> tuple[list[dict[str, str | None]], list[int]]:
    """Rows of a CSV file with a header line, as dicts of strings (``None`` for missing cells),
    and the line each row starts on."""
    try:
        with open(path, newline="", encoding=_ENCODING) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise ValueError(f"{path}: the file is empty; a CSV needs a header line and rows")
            dup = sorted({c for c in header if header.count(c) > 1})
            if dup:
                raise ValueError(f"{path}: column {dup[0]!r} appears more than once in the header {header}")
            rows, lines = [], []
            start = 2  # the line after the header (cells with line breaks make rows span lines)
            for i, row in enumerate(reader):
                if None in row:
                    raise ValueError(
                        f"{path}: row {i} (line {reader.line_num}) has more fields than the {len(header)} "
                        f"columns of the header {header}; quote cells that contain commas"
                    )
                rows.append(row)
                lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); re-save the file as UTF-8") from None
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    return rows, lines


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file."""
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path: Path) -> list[Any]:
    """One parsed value per non-blank line of a JSON-lines file."""
    out = []
    for n, line in enumerate(_text(path).splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not valid JSON ({e})") from None
    return out


def json_records(data: Any, path: Path) -> list[dict]:
    """Records from parsed JSON: a list of objects, a list of strings, or ``label -> [sentences]``.

    A list of strings gives unlabelled ``{"text": ...}`` rows; a mapping gives
    ``{"prompt": sentence, "label": key}`` rows, in the mapping's order.
    """
    if isinstance(data, dict):
        records = []
        for concept, sentences in data.items():
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                raise ValueError(
                    f"{path}: the value of {concept!r} is not a list of sentences; a JSON object must map "
                    "each label to a list of strings"
                )
            records += [{"prompt": s, "label": concept} for s in sentences]
        return records
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: expected a JSON list of objects (or strings), or an object mapping label -> sentences; "
            f"got a {type(data).__name__}"
        )
    if data and all(isinstance(x, str) for x in data):
        return [{"text": x} for x in data]
    for i, x in enumerate(data):
        if not isinstance(x, dict):
            raise ValueError(f"{path}: row {i} is a {type(x).__name__}, not an object like the other rows")
    return data


def _csv_format(header: list[str]) -> str:
    return "got_csv" if {"statement", "label"} <= set(header) else "csv"


def _json_format(data: Any) -> str:
    if isinstance(data, dict):
        return "prompt_label_json"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "instruction" in data[0]:
            return "instruction_json"
        if "prompt" in data[0]:
            return "prompt_label_json"
    return "jsonl"  # other records with a text field, or a list of strings


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding=_ENCODING) as f:
            return next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error):
        return []


def read_records(path: Path) -> list[Any]:
    """Values of a JSON-lines file, or of a JSON file holding one list (for ``format="jsonl"``)."""
    try:
        values = read_jsonl(path)
    except ValueError as not_lines:
        try:
            data = read_json(path)
        except ValueError:
            raise not_lines from None
        return data if isinstance(data, list) else [data]
    return values[0] if len(values) == 1 and isinstance(values[0], list) else values


def detect(path: Path) -> tuple[str, list[dict] | None]:
    """The format of a file and, for JSON, its records (``None`` for CSV).

    By extension first (``.csv``, ``.json``, ``.jsonl``/``.ndjson``), then by
    content: a ``.json`` file that holds JSON lines is read as JSON lines, and a
    file with another extension is tried as JSON, JSON lines, then CSV.
    """
    ext = path.suffix.lower()
    if ext == ".csv":
        return _csv_format(_csv_header(path)), None
    if ext in (".jsonl", ".ndjson"):
        return "jsonl", json_records(read_records(path), path)
    if ext == ".json":
        try:
            data = read_json(path)
        except ValueError as not_json:
            try:
                return "jsonl", json_records(read_jsonl(path), path)
            except ValueError:
                raise not_json from None
        return _json_format(data), json_records(data, path)
    if _text(path).lstrip()[:1] in ("[", "{"):
        try:
            data = read_json(path)
        except ValueError:
            data = None
        if isinstance(data, dict) and not all(isinstance(v, list) for v in data.values()):
            data = [data]  # one JSON-lines record
        if data is not None:
            return _json_format(data), json_records(data, path)
        try:
            return "jsonl", json_records(read_jsonl(path), path)
        except ValueError:
            pass
    header = _csv_header(path)
    if len(header) >= 2:
        return _csv_format(header), None
    raise ValueError(
        f"{path}: cannot tell the format from the extension {ext or '(none)'!r} or the content (JSON, JSON lines, "
        f"or CSV with a header row of at least two columns); name the file .csv, .json or .jsonl, or in Python "
        f"pass format= (one of {', '.join(FORMATS)})"
    )
