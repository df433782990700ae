"""A corpus row and the ids that name rows.

A scan never fails on a row: a row that cannot be read (an empty manifest cell, a line
that is not JSON, a path outside the root) is still a row, with ``error`` set, so the
output shows it and ``--resume`` skips it like any other. Paths that data names (manifest
cells, Parquet path columns, files and symlinks in a scanned folder) are read only inside
the scan's root (:mod:`safeclip_guardrail.images._paths`).
"""

from __future__ import annotations

from dataclasses import dataclass

from safeclip_guardrail.images._paths import utf8_text as display

__all__ = ["Row", "UniqueIds"]


@dataclass(frozen=True, slots=True)
class Row:
    """One row handed to the scorer: a path to read, bytes, or why there is nothing to read."""

    id: str
    path: str = ""
    data: bytes = b""
    error: str = ""
    """Non-empty: an error row with this message; the scorer reads nothing for it."""


class UniqueIds:
    """Hands out ids, each once: a repeat of ``x`` becomes ``x#2``, ``x#3``... in order of
    appearance, so the same corpus always gets the same ids (``--resume`` relies on it)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def take(self, ident: str) -> str:
        ident = display(ident)
        candidate, n = ident, 1
        while candidate in self._seen:
            n += 1
            candidate = f"{ident}#{n}"
        self._seen.add(candidate)
        return candidate
