"""Which files are images: decided by their first bytes, never by the file name alone.

Used wherever the library walks folders (``safeclip scan``, ``safeclip eval`` and
``calibrate`` class folders): an upload saved without an extension, or an AVIF next to
JPEGs, is an image; a ``notes.txt`` is not. Files that are not images are returned as
:class:`SkippedFile` records so that every caller can report them: nothing found in a
folder is dropped silently.

The magic-byte table covers the formats vision-language-model providers accept and common
camera formats (PNG/APNG, JPEG, GIF, WEBP, BMP, TIFF/BigTIFF, AVIF/HEIF, JPEG 2000, ICO).
A file with an image extension whose bytes match none of them is still returned as an
image: the guard then reports it as unreadable (fail closed), which says more than
"skipped". Sniffing reads 32 bytes; nothing is decoded here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from safeclip_guardrail.sources import sniff_format

__all__ = [
    "IMAGE_EXTENSIONS",
    "Discovery",
    "SkippedFile",
    "discover_images",
    "sniff_image_format",
]

IMAGE_EXTENSIONS = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".webp", ".bmp", ".dib",
    ".tif", ".tiff", ".avif", ".avifs", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".ico",
})
"""Names that claim to be an image; only used to route a file whose bytes do not match."""

_HEAD = 32

sniff_image_format = sniff_format
"""The one magic-byte sniffer (:func:`safeclip_guardrail.sources.sniff_format`)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file found in a folder that was not checked, and why."""

    path: Path
    reason: str


@dataclass
class Discovery:
    """The image files to check, in a stable order, and everything else that was found."""

    images: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def _classify(path: Path) -> str | None:
    """None when ``path`` should be checked as an image, else why it is skipped."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror or exc})"
    if sniff_image_format(head) is not None or path.suffix.lower() in IMAGE_EXTENSIONS:
        return None
    return "empty file" if not head else "not an image"


def discover_images(paths: Iterable[Path], *, named_files_are_images: bool = True,
                    skip_hidden: bool = False) -> Discovery:
    """Sort ``paths`` (files and folders, searched recursively) into images and the rest.

    A file named directly is an image when ``named_files_are_images`` (the caller asked for
    it: the guard then says if it cannot be read); files found in folders are sniffed.
    ``skip_hidden`` leaves out dot-files and dot-folders below each folder without
    recording them (dataset folders: ``.DS_Store``, ``.git``). Each file is listed once
    even when reached twice.
    """
    out = Discovery()
    seen: set[Path] = set()

    def add(f: Path, reason: str | None) -> None:
        key = f.absolute()
        if key in seen:
            return
        seen.add(key)
        if reason is None:
            out.images.append(f)
        else:
            out.skipped.append(SkippedFile(f, reason))

    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if skip_hidden and any(part.startswith(".") for part in f.relative_to(p).parts):
                    continue
                if f.is_file():
                    add(f, _classify(f))
                elif not f.is_dir():
                    add(f, "not a regular file")
        else:
            add(p, None if named_files_are_images else _classify(p))
    return out
