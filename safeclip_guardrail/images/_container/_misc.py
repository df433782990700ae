"""BMP, ICO and ISO-BMFF (AVIF/HEIF): what their decoders do before or beyond the pixels.

- BMP: Pillow decodes RLE4/RLE8 in Python, 0.05-0.3 s per megapixel (an end-of-line code
  pads the row byte by byte), so an RLE picture may have at most ``max_bmp_rle_pixels``.
- ICO: Pillow decodes the largest picture while *opening*, before any limit of ours looks
  at it; each picture's own header is checked against ``max_pixels`` (its directory may say
  16x16) and walked as the PNG or BMP it is.
- AVIF/HEIF: libavif indexes every box, item and sample while opening. Boxes, items and
  samples are records; every declared image extent (``ispe``) is checked against
  ``max_pixels``.
"""

from __future__ import annotations

import struct

from safeclip_guardrail.images._container._budget import Budget
from safeclip_guardrail.images._container._png import PNG_MAGIC, walk_png

__all__ = ["walk_bmff", "walk_bmp", "walk_ico"]

_RLE = {1: "RLE8", 2: "RLE4"}


def walk_bmp(budget: Budget, start: int, *, file_header: bool, kind: str = "BMP") -> None:
    """Refuse a large RLE bitmap (``start``: the file, or a bare DIB inside an icon)."""
    data = budget.data
    dib = start + (14 if file_header else 0)
    if dib + 20 > len(data) or struct.unpack_from("<I", data, dib)[0] < 40:
        return  # an OS/2 core header has no compression field
    w, h, _planes, _bits, compression = struct.unpack_from("<iiHHI", data, dib + 4)
    w, h = abs(w), abs(h) // (1 if file_header else 2)  # an icon's DIB height is doubled
    if compression in _RLE and w * h > budget.opts.max_bmp_rle_pixels:
        raise budget.refuse(kind, (
            f"is a {w}x{h} {_RLE[compression]} bitmap, over the limit of "
            f"{budget.opts.max_bmp_rle_pixels} pixels for RLE bitmaps (limit: "
            "max_bmp_rle_pixels; Pillow decodes them in Python, up to 0.3 s per megapixel). "
            "Convert it to PNG, or raise ImageOptions.max_bmp_rle_pixels if it is genuine"))


def walk_ico(budget: Budget) -> None:
    """Check every embedded picture's own header: Pillow decodes the largest while opening."""
    data = budget.data
    if len(data) < 6:
        return
    (n,) = struct.unpack_from("<H", data, 4)
    for k in range(n):
        at = 6 + 16 * k
        if at + 16 > len(data):
            return
        budget.records_used("ICO")
        (offset,) = struct.unpack_from("<I", data, at + 12)
        head = data[offset:offset + 24]
        if head[:8] == PNG_MAGIC and len(head) >= 24:
            w, h = struct.unpack_from(">II", head, 16)
            _icon_picture(budget, w, h)
            walk_png(budget, offset, len(data))  # Pillow reads on to the end of the file
        elif len(head) >= 12:  # BMP info header: width, then doubled height (XOR + AND masks)
            w, h2 = struct.unpack_from("<ii", head, 4)
            _icon_picture(budget, abs(w), abs(h2) // 2)
            walk_bmp(budget, offset, file_header=False, kind="ICO")


def _icon_picture(budget: Budget, w: int, h: int) -> None:
    if w * h > budget.opts.max_pixels:
        msg = (f"embeds a {w}x{h} picture, over the limit of {budget.opts.max_pixels} pixels (its "
               "directory may say otherwise); raise ImageOptions.max_pixels if it is genuine")
        raise budget.refuse(kind="ICO", message=msg)


_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"dinf": 0, b"moov": 0, b"trak": 0,
               b"mdia": 0, b"minf": 0, b"stbl": 0, b"iref": 4, b"grpl": 0, b"edts": 0,
               b"stsd": 8, b"av01": 78, b"iinf": -1}
"""Boxes holding boxes, and the bytes of their own fields before them (-1: iinf's count)."""
_MAX_DEPTH = 12


def walk_bmff(budget: Budget) -> None:
    _boxes(budget, 0, len(budget.data), 0)


def _boxes(budget: Budget, pos: int, end: int, depth: int) -> None:
    data = budget.data
    while pos + 8 <= end:
        size, box = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return  # a broken box: libavif refuses the file
        budget.records_used("AVIF/HEIF")
        body, box_end = pos + header, min(pos + size, end)
        skip = _CONTAINERS.get(box)
        if skip is not None and depth < _MAX_DEPTH:
            if skip < 0:  # iinf: FullBox, entry count (16 or 32 bits), then infe boxes
                skip = 4 + (4 if data[body:body + 1] not in (b"", b"\x00") else 2)
            _boxes(budget, body + skip, box_end, depth + 1)
        elif box == b"ispe" and box_end - body >= 12:
            w, h = struct.unpack_from(">II", data, body + 4)
            budget.pixels("AVIF/HEIF", w, h, "image item (ispe)")
        elif box in (b"iloc", b"stsz") and box_end - body >= 12:
            budget.records_used("AVIF/HEIF", _declared_count(data, box, body))
        pos += size


def _declared_count(data: bytes, box: bytes, body: int) -> int:
    """Items of an iloc box or samples of an stsz box: each costs libavif an entry."""
    version = data[body]
    if box == b"stsz":  # FullBox, sample_size, sample_count
        return int(struct.unpack_from(">I", data, body + 8)[0])
    # iloc: FullBox, two bytes of field sizes, item_count (16 bits; 32 from version 2)
    if version >= 2:
        return int(struct.unpack_from(">I", data, body + 6)[0])
    return int(struct.unpack_from(">H", data, body + 6)[0])
