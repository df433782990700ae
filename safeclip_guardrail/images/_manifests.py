"""The one manifest reader: CSV and JSONL files that list image paths, one record per image.

Read for corpus scans (``scan_corpus``, ``safeclip scan-corpus``: a record is a row) and for
evaluation datasets (``safeclip eval``/``calibrate``: a record is a labelled sample). A
manifest that cannot be a manifest (unreadable, no header, a header without the path
column or another required column, no records) is a usage error; a record that is wrong (an
empty or non-string path, a line that is not JSON or not an object, undecodable bytes, a
malformed CSV record) is a :class:`Listed` whose ``error`` says which line or record and
what was wrong: one bad line must not throw away the other million. Relative paths resolve
against the manifest's folder; whether a path may be read (inside a scan root) is the
caller's decision, taken when the path is read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images._paths import utf8_text as display

__all__ = ["Listed", "manifest_rows"]


@dataclass(frozen=True)
class Listed:
    """One manifest record: the path it names (resolved), its id, or why it is unusable."""

    path: str
    ident: str
    """The id column's value ("" when absent: the path, or ``<manifest>#<n>``, stands in)."""
    error: str = ""
    where: str = ""
    """``<manifest>#<n>``: the record's position, the id of a bad record without an id."""
    at: str = ""
    """``record <n>`` (CSV) or ``line <n>`` (JSONL), for messages about this record."""
    record: Mapping[str, Any] = field(default_factory=dict)
    """The record's fields as parsed (JSON values, CSV strings); empty when unparseable."""


def manifest_rows(path: Path, path_column: str, id_column: str | None, *,
                  columns: Sequence[str] = (),
                  hint: str = "name another one with --path-column") -> list[Listed]:
    """The records of a ``.csv`` (header row) or ``.jsonl``/``.ndjson`` manifest.

    ``columns``: other columns a CSV header must have (JSONL records are checked by the
    caller); ``hint`` ends the message of a header that lacks one.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read manifest {path}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from None
    needed = (path_column, *columns)
    records = (_csv(path, raw, needed, hint) if path.suffix.lower() == ".csv"
               else _jsonl(raw))
    rows = [_listed(path, n, rec, path_column, id_column) for n, rec in records]
    if not rows:
        msg = f"manifest {path} has no rows"
        raise ConfigurationError(msg)
    return rows


def _csv(path: Path, raw: bytes, needed: Sequence[str],
         hint: str) -> Iterator[tuple[int, Any]]:
    """(record number, record dict or an error message) for every CSV record."""
    text = raw.decode("utf-8-sig", "surrogateescape")  # bad bytes stay visible, per row
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        msg = f"manifest {path}: unreadable header row ({exc})"
        raise ConfigurationError(msg) from None
    if header is None or not set(needed) <= set(header):
        names = " and ".join(repr(c) for c in needed)
        msg = (f"manifest {path} needs a header row with {names} column{'s' if len(needed) > 1 else ''} "
               f"(got {header}); {hint}")
        raise ConfigurationError(msg)
    n = 0
    while True:
        n += 1
        before = reader.reader.line_num
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield n, f"record {n} is not valid CSV ({exc})"
            if reader.reader.line_num == before:  # nothing consumed: give up on the rest
                return
            continue
        yield n, rec


def _jsonl(raw: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or an error message) for every non-blank line."""
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield n, f"line {n} is not UTF-8"
        except json.JSONDecodeError as exc:
            yield n, f"line {n} is not valid JSON ({exc.msg})"
        except RecursionError:
            yield n, f"line {n} is nested too deeply to parse"


def _listed(manifest: Path, n: int, rec: Any, path_column: str,
            id_column: str | None) -> Listed:
    where = f"{manifest}#{n}"
    at = f"{'record' if manifest.suffix.lower() == '.csv' else 'line'} {n}"
    if isinstance(rec, str):  # the parser's message
        return Listed("", "", f"{manifest}, {rec}", where, at)
    if not isinstance(rec, dict):
        return Listed("", "", f"{manifest}, {at}: expected a JSON object with a "
                              f"{path_column!r} field, got {type(rec).__name__}", where, at)
    fields = {k: v for k, v in rec.items() if isinstance(k, str)}  # CSV: extra cells sit under None
    ident = _ident(fields.get(id_column or "id"))
    value = fields.get(path_column)
    problem = ""
    if value is None or (isinstance(value, str) and not value.strip()):
        problem = f"empty {path_column!r}"
    elif not isinstance(value, str):
        problem = f"{path_column!r} is {type(value).__name__}, not a path string"
    elif display(value) != value:
        problem = f"{path_column!r} is not UTF-8 ({display(value)})"
    elif "\x00" in value:
        problem = f"{path_column!r} holds a NUL character"
    if problem:
        return Listed("", ident, f"{manifest}, {at}: {problem}", where, at, fields)
    image = Path(str(value).strip())
    return Listed(str(image if image.is_absolute() else manifest.parent / image), ident, "",
                  where, at, fields)


def _ident(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()
