"""Paths that data names: shown as UTF-8, and read only inside a root.

The files a scan reads are named by the data (entries of a folder, cells of a manifest or a
Parquet path column), not by the person who started it. Wherever such a path is used:

- it is shown with :func:`utf8_text`, so a file name that is not UTF-8 (Python keeps its
  bytes as surrogates) can still be written to Parquet, JSON or a terminal;
- it is read only inside the scan's **root**, judged on the real path (symlinks and ``..``
  resolved) by :func:`confine`; a path outside gets one message whether its target exists or
  not, so a scan cannot be used to probe the file system.

Used by the folder walk (:mod:`safeclip_guardrail.images.discover`), the manifest reader and the
corpus readers of :mod:`safeclip_guardrail.scale`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from safeclip_guardrail.errors import ConfigurationError

__all__ = ["ROOT_HINT", "Confined", "confine", "inside", "real_root", "utf8_text"]

ROOT_HINT = "pass --root, or root=, with a folder that holds it"
"""How to read a path outside the root in a corpus scan (its default hint)."""


def utf8_text(text: str) -> str:
    """``text`` writable as UTF-8 (to Parquet, JSON): the undecodable bytes of a file name
    (Python keeps them as surrogates) shown as ``\\x..`` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def real_root(root: str | Path) -> str:
    """The real path of a scan root, which must be an existing folder."""
    real = os.path.realpath(root)
    if not os.path.isdir(real):
        msg = (f"scan root {root} is not a folder; pass an existing folder "
               "as --root (root=)")
        raise ConfigurationError(msg)
    return real


@dataclass(frozen=True)
class Confined:
    """A path checked against the root: its real path to read, or why it is not read."""

    path: str
    error: str = ""


def inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is ``root`` or lies under it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def confine(path: str, root: str, *, hint: str = ROOT_HINT) -> Confined:
    """``path`` resolved (symlinks and ``..``) and checked to lie under ``root``. The check
    reads no file, and a path outside gets one message whether it exists or not; ``hint``
    ends that message with how to read it after all."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a NUL byte, a name the OS cannot take
        return Confined("", f"{utf8_text(path)!r} is not a usable file path; not read")
    if inside(real, root):
        return Confined(real)
    return Confined("", f"{utf8_text(path)} is outside the scan root {utf8_text(root)}; not "
                        f"read ({hint})")
