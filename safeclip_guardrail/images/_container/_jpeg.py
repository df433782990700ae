"""JPEG (and MPO): scans, markers and metadata, walked the way Pillow and libjpeg read them.

- Scans: libjpeg passes over all the coefficients of a scan's components once per scan
  (progressive decoding keeps the whole coefficient image), so decode time is pixels x
  scans. A repeated last scan is accepted with a warning, and a 249 KB file declaring
  4000x4000 with its last scan repeated thousands of times takes a minute. At most
  ``max_jpeg_scans`` per picture.
- Header markers: Pillow parses everything before the first scan in Python, one marker at a
  time and junk or fill bytes one byte at a time: each is a record.
- Metadata: Pillow keeps every APPn/COM payload and joins EXIF segments by repeated
  concatenation (quadratic in their number): ``max_metadata_bytes``. The EXIF directory
  (read by ``getexif``) and the MPF directory (unpacked whole by the MPO reader) are walked
  like TIFF directories.
- MPO: each further picture that will be decoded (``frames`` > 1) is walked in turn.

Restart markers are not counted: each costs libjpeg a few instructions and two bytes of
input, so they are bounded by the bytes.
"""

from __future__ import annotations

import re
import struct

from safeclip_guardrail.images._container._budget import Budget
from safeclip_guardrail.images._container._tiff import walk_exif

__all__ = ["walk_jpeg"]

_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""The end of entropy-coded data: 0xFF followed by neither stuffing, a restart nor fill."""
_FILL = re.compile(rb"\xff+")
_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD9)})
_MPF_ENTRIES = 0xB002
_KIND = "JPEG"


def walk_jpeg(budget: Budget, start: int, *, picture: int) -> None:
    """Walk the JPEG stream at ``start`` (SOI) up to its EOI; ``picture`` counts from 1."""
    data = budget.data
    end = len(data)
    where = f" (picture {picture})" if picture > 1 else ""
    pos = start + 2
    header = True  # before the first scan, Pillow's Python parser reads every byte
    scans = exif_held = 0
    exif: list[tuple[int, int]] = []
    mpf: tuple[int, int] | None = None
    while pos < end:
        if data[pos] != 0xFF:  # junk: Pillow steps over it byte by byte, libjpeg warns
            nxt = data.find(b"\xff", pos)
            stop = end if nxt < 0 else nxt
            budget.records_used(_KIND, stop - pos if header else 1)
            pos = stop
            continue
        fill = _FILL.match(data, pos)
        q = fill.end() if fill else pos + 1
        if header:
            budget.records_used(_KIND, q - pos - 1)
        if q >= end:
            break
        marker, pos = data[q], q + 1
        budget.records_used(_KIND)
        if marker == 0xD9:  # EOI
            break
        if marker in _STANDALONE:
            continue
        if pos + 2 > end:
            break
        seg_end = pos + struct.unpack_from(">H", data, pos)[0]
        body, body_end = pos + 2, min(seg_end, end)
        if header and (0xE0 <= marker <= 0xEF or marker == 0xFE):
            if marker == 0xE1 and data.startswith(b"Exif\x00\x00", body):
                exif.append((body, body_end))
                exif_held += body_end - body - (6 if len(exif) > 1 else 0)
                budget.metadata_used(_KIND, "EXIF, as joined", exif_held)
            else:
                name = "COM" if marker == 0xFE else f"APP{marker - 0xE0}"
                budget.metadata_used(_KIND, name, body_end - body)
            if marker == 0xE2 and data.startswith(b"MPF\x00", body):
                mpf = (body + 4, body_end)
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            scans += 1
            budget.scans(_KIND, scans, where)
            header = False
            nxt_marker = _NEXT_MARKER.search(data, max(seg_end, pos))
            if nxt_marker is None:
                break
            pos = nxt_marker.start()
            continue
        pos = max(seg_end, pos)
    _exif(budget, data, exif)
    if mpf is not None:
        _mpo(budget, mpf, picture)


def _exif(budget: Budget, data: bytes, segments: list[tuple[int, int]]) -> None:
    """The EXIF directory as Pillow's ``getexif`` reads it: the segments joined."""
    if len(segments) == 1:
        walk_exif(budget, _KIND, data, *segments[0])
    elif segments:
        (a, b), *rest = segments
        joined = data[a:b] + b"".join(data[s + 6:e] for s, e in rest)
        walk_exif(budget, _KIND, joined, 0, len(joined))


def _mpo(budget: Budget, mpf: tuple[int, int], picture: int) -> None:
    """The MP index (unpacked whole by Pillow), then the further pictures to be decoded."""
    data = budget.data
    base, end = mpf
    ifd = walk_exif(budget, _KIND, data, base, end)
    if ifd is None or picture != 1 or budget.opts.frames < 2:
        return
    entry = ifd.entries.get(_MPF_ENTRIES)
    if entry is None:
        return
    count = min(entry.count // 16, budget.opts.frames)
    for k in range(1, count):
        at = entry.at + 16 * k
        if at + 16 > len(data):
            return
        offset = struct.unpack_from(ifd.bo + "I", data, at + 8)[0] + base
        if data[offset:offset + 3] == b"\xff\xd8\xff":
            walk_jpeg(budget, offset, picture=k + 1)
