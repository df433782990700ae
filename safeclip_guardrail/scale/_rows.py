"""A corpus row, the ids that name rows, and the root that confines what rows may read.

A scan never fails on a row: a row that cannot be read (an empty manifest cell, a line
that is not JSON, a path outside the root) is still a row, with ``error`` set, so the
output shows it and ``--resume`` skips it like any other. Paths that data names (manifest
cells, Parquet path columns, files and symlinks in a scanned folder) are read only inside
the scan's root, judged on the real path (symlinks resolved); a path outside gets the same
message whether or not it exists, so a scan cannot be used to probe the file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from safeclip_guardrail.batch_scorer import utf8_text as display
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["Confined", "Row", "UniqueIds", "confine", "inside", "real_root"]


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


def real_root(root: str | Path) -> str:
    """The real path of a scan root, which must be an existing folder."""
    real = os.path.realpath(root)
    if not os.path.isdir(real):
        raise ConfigurationError(f"scan root {root} is not a folder; pass an existing folder "
                                 "as --root (root=)")
    return real


@dataclass(frozen=True)
class Confined:
    """A path checked against the root: its real path to read, or why it is not read."""

    path: str
    error: str = ""


def inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is ``root`` or lies under it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def confine(path: str, root: str) -> Confined:
    """``path`` resolved (symlinks and ``..``) and checked to lie under ``root``. The check
    reads no file, and a path outside gets one message whether it exists or not."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a NUL byte, a name the OS cannot take
        return Confined("", f"{display(path)!r} is not a usable file path; not read")
    if inside(real, root):
        return Confined(real)
    return Confined("", f"{display(path)} is outside the scan root {display(root)}; not read "
                        "(pass --root, or root=, with a folder that holds it)")
