"""The one folder walk: which files under a folder are checked, and what is said about the rest.

``safeclip scan``, ``scan_corpus`` / ``safeclip scan-corpus`` and the evaluation datasets
(``safeclip eval`` and ``calibrate``) all walk folders here, so the same folder gives the
same files, the same skipped files and the same unreadable ones on every surface. Every
entry below a folder ends up in exactly one of three places:

- **a file to check** (:attr:`Found.error` empty): a regular file whose first 32 bytes are
  an image signature, or whose name ends in an image extension, so a broken ``.heic`` or an
  empty ``.jpg`` is checked and reported unreadable by the guard instead of vanishing; an
  upload saved without an extension, or an AVIF next to JPEGs, is found by its content;
- **unreadable** (:attr:`Found.error` set; nothing is read): a symlink whose real path
  leaves the root (the folder named, unless a wider ``root`` is given), with one message
  whether its target exists or not; a file that cannot be opened; a folder that cannot be
  listed. The surfaces report these as unreadable (an error verdict, an error row, an
  entry of the evaluation's ``unreadable`` list);
- **skipped** (:class:`SkippedFile`, with its reason): not an image (by content and name),
  an empty file without an image name, a hidden entry (a name starting with ``.``: a
  hidden folder is one entry, not entered), a symlink to a folder (never followed, so a
  walk cannot loop or wander), and anything that is not a regular file (a FIFO, a socket, a
  device, a dangling symlink; never opened).

Symlinks to files inside the root are followed. A file named directly (``safeclip scan
x.jpg``) is checked whatever its name or content: the caller asked for it. Nothing is decoded
here; sniffing reads 32 bytes, without blocking, from regular files only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from safeclip_guardrail._sniff import sniff_format
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images._paths import confine, inside, real_root, utf8_text

__all__ = [
    "HIDDEN",
    "IMAGE_EXTENSIONS",
    "LINKED_FOLDER",
    "NOT_REGULAR",
    "Discovery",
    "Found",
    "SkippedFile",
    "discover_images",
    "sniff_image_format",
]

IMAGE_EXTENSIONS = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".webp", ".bmp", ".dib",
    ".tif", ".tiff", ".avif", ".avifs", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".ico",
})
"""Names that claim to be an image; only used to route a file whose bytes do not match."""

HIDDEN = "hidden"
LINKED_FOLDER = "symbolic link to a folder (not followed)"
NOT_REGULAR = "not a regular file"
_OUTSIDE_HINT = "name the file itself to check it"
_HEAD = 32

sniff_image_format = sniff_format
"""The one magic-byte sniffer (:func:`safeclip_guardrail._sniff.sniff_format`)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file found in a folder that was not checked, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Found:
    """A file to report a verdict for: read and checked, or unreadable without being read."""

    path: Path
    """As found (under the folder named), not resolved."""
    error: str = ""
    """Non-empty: why it is not read (outside the root, cannot be opened)."""


@dataclass
class Discovery:
    """What a walk found, in a stable order: the files to report on, and the skipped ones."""

    files: list[Found] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def images(self) -> list[Path]:
        """The files to read and check."""
        return [f.path for f in self.files if not f.error]

    @property
    def unreadable(self) -> list[Found]:
        """The files found that are not read (each with its error)."""
        return [f for f in self.files if f.error]


def discover_images(paths: Iterable[Path], *, root: str | Path | None = None,
                    outside_hint: str = _OUTSIDE_HINT,
                    named_files_are_images: bool = True) -> Discovery:
    """Walk ``paths`` (folders, recursively, and files named directly) by the rules above.

    ``root``: the folder no symlink may lead out of (None: each folder named is its own
    root); a folder named outside it is a :class:`ConfigurationError`. ``outside_hint``
    ends the message of a symlink that leads out. ``named_files_are_images=False`` sorts a
    file named directly like one found in a folder (``--allow-non-images``: a named text
    file is skipped, not an unreadable image). Each file is listed once, even when reached
    twice.
    """
    fixed = real_root(root) if root is not None else None
    out = Discovery()
    seen: set[Path] = set()
    for p in paths:
        entries: Iterable[Found | SkippedFile]
        if p.is_dir():
            top = os.path.realpath(p)
            if fixed is not None and not inside(top, fixed):
                msg = f"folder {p} is outside the scan root {fixed}"
                raise ConfigurationError(msg)
            entries = _walk(p, fixed or top, outside_hint)
        elif named_files_are_images:
            entries = [Found(p)]
        else:
            entries = [_classify(p, str(p))]
        for entry in entries:
            key = entry.path.absolute()
            if key in seen:
                continue
            seen.add(key)
            if isinstance(entry, Found):
                out.files.append(entry)
            else:
                out.skipped.append(entry)
    return out


def _walk(folder: Path, root: str, hint: str) -> Iterator[Found | SkippedFile]:
    """Depth first, names sorted at each level (the order of sorted paths)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield Found(folder, f"cannot list the folder {utf8_text(str(folder))} "
                            f"({exc.strerror or exc}); not read")
        return
    for entry in entries:
        path = folder / entry.name
        if entry.name.startswith("."):
            yield SkippedFile(path, HIDDEN)
        elif entry.is_symlink():
            checked = confine(str(path), root, hint=hint)
            if checked.error:
                yield Found(path, checked.error)  # nothing behind it is looked at
            elif os.path.isdir(checked.path):
                yield SkippedFile(path, LINKED_FOLDER)
            else:
                yield _classify(path, checked.path)
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(path, root, hint)
        elif entry.is_file(follow_symlinks=False):
            yield _classify(path, str(path))
        else:
            yield SkippedFile(path, NOT_REGULAR)


def _classify(path: Path, real: str) -> Found | SkippedFile:
    """A regular file's first bytes (or its name) decide; ``real`` is what is opened."""
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return SkippedFile(path, NOT_REGULAR)  # a dangling symlink inside the root
    except OSError as exc:
        return Found(path, f"cannot open {utf8_text(str(path))} ({exc.strerror or exc})")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return SkippedFile(path, NOT_REGULAR)  # a symlink to a FIFO or a device
        head = os.read(fd, _HEAD)
    except OSError as exc:
        return Found(path, f"cannot read {utf8_text(str(path))} ({exc.strerror or exc})")
    finally:
        os.close(fd)
    if sniff_format(head) is not None or path.suffix.lower() in IMAGE_EXTENSIONS:
        return Found(path)
    return SkippedFile(path, "empty file" if not head else "not an image")
