"""TIFF directories: the pages of a TIFF file, and the EXIF/MPF blobs of other formats.

Pillow parses every directory entry in Python and unpacks strip/tile tables into Python
tuples; its raw (uncompressed/packbits) reader makes one tile per table entry and, past the
entries the picture needs, starts over on a new "layer": a 2-strip picture whose tables
list 10,000 strips is decoded 5,000 times. So: every entry of every directory Pillow will
read is a record, tag values may not add up to more than the file (Pillow < 13 reads each
one, overlapping or not), tables may not list more strips or tiles than the declared
picture needs, and each JPEG-compressed strip may hold at most ``max_jpeg_scans`` scans.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from safeclip_guardrail.images._container._budget import Budget

__all__ = ["Ifd", "read_ifd", "walk_exif", "walk_tiff"]

_UNIT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
         16: 8, 17: 8, 18: 8}
"""Bytes per value of each TIFF field type Pillow reads (others are skipped by Pillow)."""
_INTS = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
_SOS = re.compile(rb"\xff\xda")
_WIDTH, _LENGTH, _COMPRESSION, _STRIP_OFFSETS, _SAMPLES = 256, 257, 259, 273, 277
_ROWS_PER_STRIP, _STRIP_BYTES, _PLANAR, _TILE_WIDTH, _TILE_LENGTH = 278, 279, 284, 322, 323
_TILE_OFFSETS, _TILE_BYTES = 324, 325


@dataclass(frozen=True)
class _Entry:
    typ: int
    count: int
    at: int
    """Absolute offset of the value in the data (inline or out of line)."""


@dataclass
class Ifd:
    """One directory: its entries (first of each tag wins, as in Pillow) and the next one."""

    entries: dict[int, _Entry]
    next: int
    bo: str

    def ints(self, data: bytes, tag: int) -> tuple[int, ...]:
        """The integer values of ``tag`` (empty when absent, of another type or cut off)."""
        e = self.entries.get(tag)
        if e is None or e.typ not in _INTS or e.at + e.count * _UNIT[e.typ] > len(data):
            return ()
        return struct.unpack_from(f"{self.bo}{e.count}{_INTS[e.typ]}", data, e.at)

    def first(self, data: bytes, tag: int, default: int) -> int:
        values = self.ints(data, tag)
        return values[0] if values else default


def read_ifd(budget: Budget, kind: str, data: bytes, base: int, end: int, at: int, bo: str,
             *, big: bool = False, tag_bytes: list[int] | None = None) -> Ifd | None:
    """Read the directory at ``base + at`` of a TIFF structure spanning ``data[base:end]``.

    Every entry counts as a record; out-of-line values count against ``tag_bytes`` (one
    list shared by the directories of one structure), which may not exceed its size."""
    start = base + at
    head, size, inline = ("Q", 20, 8) if big else ("H", 12, 4)
    if at <= 0 or start + struct.calcsize(head) > end:
        return None
    (n,) = struct.unpack_from(bo + head, data, start)
    pos = start + struct.calcsize(head)
    n = min(n, (end - pos) // size)  # Pillow stops at a short read too
    budget.records_used(kind, n)
    used = tag_bytes if tag_bytes is not None else [0]
    entries: dict[int, _Entry] = {}
    fmt = bo + ("HHQ" if big else "HHI")
    for k in range(n):
        tag, typ, count = struct.unpack_from(fmt, data, pos + size * k)
        unit = _UNIT.get(typ)
        if unit is None or tag in entries:
            continue
        value_at = pos + size * k + (12 if big else 8)
        nbytes = count * unit
        if nbytes > inline:
            offset = struct.unpack_from(bo + ("Q" if big else "I"), data, value_at)[0]
            used[0] += nbytes
            if used[0] > end - base:
                raise budget.refuse(kind, (
                    f"has tag values adding up to {used[0]} bytes, more than the {end - base} "
                    f"bytes that hold them (tag {tag} reads {nbytes}); "
                    "overlapping values make parsers copy the same bytes again and again. "
                    "Re-encode the image"))
            value_at = base + offset
        entries[tag] = _Entry(typ, count, value_at)
    after = pos + size * n
    nxt = struct.unpack_from(bo + ("Q" if big else "I"), data, after)[0] if (
        after + (8 if big else 4) <= end) else 0
    return Ifd(entries, nxt, bo)


def walk_exif(budget: Budget, kind: str, data: bytes, start: int, end: int) -> Ifd | None:
    """The first directory of an EXIF or MPF blob in ``data[start:end]`` (``Exif\\0\\0``
    optional), as Pillow's ``getexif`` and MPO reader read it."""
    if data[start:start + 6] == b"Exif\x00\x00":
        start += 6
    if end - start < 8 or data[start:start + 4] not in (b"II*\x00", b"MM\x00*"):
        return None
    bo = "<" if data[start] == 0x49 else ">"
    (first,) = struct.unpack_from(bo + "I", data, start + 4)
    return read_ifd(budget, kind, data, start, end, first, bo)


def walk_tiff(budget: Budget) -> None:
    """Walk the directories Pillow reads: pages 1..frames and the probe for one more."""
    data = budget.data
    bo = "<" if data[:2] == b"II" else ">"  # Pillow: the byte order is the first two bytes
    big = b"+" in data[2:4]
    if big:
        if len(data) < 16:
            return
        (at,) = struct.unpack_from(bo + "Q", data, 8)
    else:
        (at,) = struct.unpack_from(bo + "I", data, 4)
    seen: set[int] = set()
    tag_bytes = [0]
    for _ in range(budget.opts.frames + 1):
        if at in seen:
            return
        seen.add(at)
        ifd = read_ifd(budget, "TIFF", data, 0, len(data), at, bo, big=big,
                       tag_bytes=tag_bytes)
        if ifd is None:
            return
        _page(budget, ifd)
        at = ifd.next


def _page(budget: Budget, ifd: Ifd) -> None:
    """Strip/tile tables of one page: no more entries than the picture needs."""
    data = budget.data
    w = ifd.first(data, _WIDTH, 0)
    h = ifd.first(data, _LENGTH, 0)
    tiled = _TILE_OFFSETS in ifd.entries
    if tiled:
        tw = ifd.first(data, _TILE_WIDTH, 0)
        th = ifd.first(data, _TILE_LENGTH, 0)
        need = -(-w // tw) * -(-h // th) if tw > 0 and th > 0 else 1
    else:
        rows = ifd.first(data, _ROWS_PER_STRIP, h)
        need = -(-h // rows) if rows > 0 else 1
    if ifd.first(data, _PLANAR, 1) == 2:
        need *= max(1, ifd.first(data, _SAMPLES, 1))
    offsets_tag, counts_tag = ((_TILE_OFFSETS, _TILE_BYTES) if tiled
                               else (_STRIP_OFFSETS, _STRIP_BYTES))
    entry = ifd.entries.get(offsets_tag)
    if entry is None:
        return
    budget.records_used("TIFF", entry.count)
    what = "tiles" if tiled else "strips"
    if entry.count > max(need, 1):
        msg = (f"lists {entry.count} {what} where its {w}x{h} picture needs {need}; readers "
               f"decode the picture again for each surplus set of {what}. Re-encode the image")
        raise budget.refuse(kind="TIFF", message=msg)
    if ifd.first(data, _COMPRESSION, 1) == 7:  # JPEG: each strip/tile is a JPEG stream
        for k, (offset, size) in enumerate(zip(ifd.ints(data, offsets_tag),
                                               ifd.ints(data, counts_tag), strict=False)):
            for scans, _ in enumerate(_SOS.finditer(data, offset, offset + size), 1):
                if scans > budget.opts.max_jpeg_scans:
                    budget.scans("TIFF", scans, where=f" ({what[:-1]} {k + 1})")
