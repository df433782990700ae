"""Was a path opened? An audit hook that records ``open`` and ``os.*`` events naming one.

Python's audit hooks cannot be removed, so one hook is installed on first use and records
only while a :func:`watch_paths` block is open; every ``open``, ``os.*``, ``shutil.*`` and
``pathlib.*`` event whose arguments mention a watched string is kept.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["watch_paths"]

_OPENED: list[tuple[str, str]] = []
_WATCH: set[str] = set()
_INSTALLED: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH and (event == "open" or event.startswith(("os.", "shutil.", "pathlib."))):
        text = " ".join(str(a) for a in args)
        if any(w in text for w in _WATCH):
            _OPENED.append((event, text[:200]))


@contextmanager
def watch_paths(needles: Iterable[str]) -> Iterator[list[tuple[str, str]]]:
    """Record ``(event, arguments)`` of every file-system event naming one of ``needles``
    while the block runs; the list yielded is filled when the block ends."""
    if not _INSTALLED:
        sys.addaudithook(_audit)  # cannot be removed; records only while watching
        _INSTALLED.append(True)
    seen: list[tuple[str, str]] = []
    _OPENED.clear()
    _WATCH.update(needles)
    try:
        yield seen
    finally:
        _WATCH.clear()
        seen.extend(_OPENED)
        _OPENED.clear()
