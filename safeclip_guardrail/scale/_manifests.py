"""CSV and JSONL manifests: one corpus row per record, a bad record an error row.

A manifest that cannot be a manifest (no header, no path column, no records) is a usage
error; a record that is wrong (an empty or non-string path, a line that is not JSON or
not an object, undecodable bytes, a malformed CSV record) is a row whose ``error`` says
which line or record and what was wrong: one bad line must not throw away the other
million. Relative paths resolve against the manifest's folder; whether a path may be read
(inside the scan root) is decided when the row is read, not here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeclip_guardrail.batch_scorer import utf8_text as display
from safeclip_guardrail.errors import ConfigurationError

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


def manifest_rows(path: Path, path_column: str, id_column: str | None) -> list[Listed]:
    """The records of a ``.csv`` (header row) or ``.jsonl``/``.ndjson`` manifest."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    records = _csv(path, raw, path_column) if path.suffix.lower() == ".csv" else _jsonl(raw)
    rows = [_listed(path, n, rec, path_column, id_column) for n, rec in records]
    if not rows:
        raise ConfigurationError(f"manifest {path} has no rows")
    return rows


def _csv(path: Path, raw: bytes, path_column: str) -> Iterator[tuple[int, Any]]:
    """(record number, record dict or an error message) for every CSV record."""
    text = raw.decode("utf-8-sig", "surrogateescape")  # bad bytes stay visible, per row
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ConfigurationError(f"manifest {path}: unreadable header row ({exc})") from None
    if header is None or path_column not in header:
        raise ConfigurationError(
            f"manifest {path} needs a header row with a {path_column!r} column "
            f"(got {header}); name another one with --path-column"
        )
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
    if isinstance(rec, str):  # the parser's message
        return Listed("", "", f"{manifest}, {rec}", where)
    what = "record" if manifest.suffix.lower() == ".csv" else "line"
    if not isinstance(rec, dict):
        return Listed("", "", f"{manifest}, {what} {n}: expected a JSON object with a "
                              f"{path_column!r} field, got {type(rec).__name__}", where)
    ident = _ident(rec.get(id_column or "id"))
    value = rec.get(path_column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return Listed("", ident, f"{manifest}, {what} {n}: empty {path_column!r}", where)
    if not isinstance(value, str):
        return Listed("", ident, f"{manifest}, {what} {n}: {path_column!r} is "
                                 f"{type(value).__name__}, not a path string", where)
    if display(value) != value:
        return Listed("", ident, f"{manifest}, {what} {n}: {path_column!r} is not UTF-8 "
                                 f"({display(value)})", where)
    if "\x00" in value:
        return Listed("", ident, f"{manifest}, {what} {n}: {path_column!r} holds a NUL "
                                 "character", where)
    image = Path(value.strip())
    return Listed(str(image if image.is_absolute() else manifest.parent / image), ident, "",
                  where)


def _ident(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()
