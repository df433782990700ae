"""JPEG and PNG structure walks: where a picture's records are, where it ends, and every
picture that can be carved out of some bytes.

One home for the two walks that forwarding needs: :mod:`._reconstruct` reads them to decide
whether original bytes hold one picture only (metadata segments, bytes after the end), and
:mod:`._document` carves every JPEG and PNG out of a PDF that is forwarded as is (a raw
``DCTDecode`` stream nobody draws, a picture appended after ``%%EOF``), so that what any
extractor could find in it was judged. Headers only; nothing is decoded here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["JPEG_SOI", "PNG_MAGIC", "Broken", "Carved", "Record", "carve", "jpeg_records",
           "png_records"]

JPEG_SOI = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_STUFFED = frozenset({0x00, *range(0xD0, 0xD8)})
_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})


@dataclass(frozen=True)
class Record:
    """One JPEG segment (``kind`` is its marker as ``"ffe1"``) or PNG chunk (``"IHDR"``)."""

    kind: str
    start: int
    """Offset of its payload."""
    end: int
    """Offset just past its payload (and past the entropy-coded data after a JPEG SOS)."""


class Broken(Exception):
    """The structure does not walk: ``str(self)`` says where."""


def jpeg_records(data: bytes, start: int = 0) -> Iterator[Record]:
    """The segments of the JPEG at ``start`` up to its EOI (yielded as ``"ffd9"``, whose
    ``end`` is the end of the picture); raises :class:`Broken` when they do not walk."""
    pos, n = start + 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            msg = "its marker structure is broken"
            raise Broken(msg)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            yield Record("ffd9", pos + 2, pos + 2)
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > n:
            msg = "a segment runs past the end of the data"
            raise Broken(msg)
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            end = _next_marker(data, end)
        yield Record(f"ff{marker:02x}", pos + 4, end)
        pos = end
    msg = "it has no end-of-image marker"
    raise Broken(msg)


def _next_marker(data: bytes, pos: int) -> int:
    """Offset of the first marker after entropy-coded data (FF 00 and restarts are data)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        if data[pos + 1] not in _STUFFED:
            return pos
        pos += 2


def png_records(data: bytes, start: int = 0) -> Iterator[Record]:
    """The chunks of the PNG at ``start`` up to IEND (whose ``end`` includes its CRC, the end
    of the picture); raises :class:`Broken` when they do not walk."""
    pos, n = start + 8, len(data)
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > n:
            break
        name = kind.decode("latin-1")
        yield Record(name, pos + 8, end + 4 if kind == b"IEND" else end)
        if kind == b"IEND":
            return
        pos = end + 4
    msg = "it has no IEND chunk"
    raise Broken(msg)


@dataclass(frozen=True)
class Carved:
    """A picture that walks from its signature to its end inside larger bytes."""

    offset: int
    end: int
    kind: str
    width: int
    height: int


def carve(data: bytes, *, limit: int) -> list[Carved]:
    """Every JPEG and PNG in ``data`` whose structure walks to its end, with its declared
    size; at most ``limit + 1`` (the caller refuses more than ``limit``)."""
    found: list[Carved] = []
    for magic, walk in ((JPEG_SOI, _jpeg_size), (PNG_MAGIC, _png_size)):
        at = data.find(magic)
        while at >= 0 and len(found) <= limit:
            shape = walk(data, at)
            if shape is not None:
                found.append(Carved(at, *shape))
            at = data.find(magic, at + 1)
    return sorted(found, key=lambda c: c.offset)


def _jpeg_size(data: bytes, at: int) -> tuple[int, str, int, int] | None:
    size = None
    try:
        for rec in jpeg_records(data, at):
            if int(rec.kind[2:], 16) in _SOF and size is None and rec.start + 5 <= len(data):
                height, width = struct.unpack_from(">HH", data, rec.start + 1)
                size = (width, height)
            if rec.kind == "ffd9":
                return (rec.end, "JPEG", *size) if size else None
    except Broken:
        return None
    return None


def _png_size(data: bytes, at: int) -> tuple[int, str, int, int] | None:
    size = None
    try:
        for rec in png_records(data, at):
            if rec.kind == "IHDR" and rec.start + 8 <= len(data):
                size = struct.unpack_from(">II", data, rec.start)
            if rec.kind == "IEND":
                return (rec.end, "PNG", *size) if size else None
    except Broken:
        return None
    return None
