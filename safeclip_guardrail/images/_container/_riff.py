"""WebP: RIFF chunks and animation frames, and the sizes libwebp allocates for.

Pillow opens every WebP through libwebp's animation decoder, whose demuxer indexes every
chunk and frame of the file and allocates two canvases of the size the VP8X header
declares, all before Pillow knows the size. So every chunk (also inside ANMF frames) is a
record, the canvas and every frame and bitstream size is checked against ``max_pixels``
here, and EXIF/XMP/ICC chunks count as metadata (the EXIF directory is walked too).
"""

from __future__ import annotations

import struct

from safeclip_guardrail.images._container._budget import Budget
from safeclip_guardrail.images._container._tiff import walk_exif

__all__ = ["walk_webp"]

_METADATA = frozenset({b"EXIF", b"XMP ", b"ICCP"})
_KIND = "WebP"


def walk_webp(budget: Budget) -> None:
    data = budget.data
    (riff_size,) = struct.unpack_from("<I", data, 4)
    _chunks(budget, 12, min(len(data), 8 + riff_size), nested=False)


def _u24(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 3], "little")


def _chunks(budget: Budget, pos: int, end: int, *, nested: bool) -> None:
    data = budget.data
    while pos + 8 <= end:
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body, body_end = pos + 8, min(pos + 8 + size, end)
        budget.records_used(_KIND)
        if fourcc == b"VP8X" and body_end - body >= 10:
            budget.pixels(_KIND, _u24(data, body + 4) + 1, _u24(data, body + 7) + 1, "canvas")
        elif fourcc == b"ANMF" and not nested and body_end - body >= 16:
            budget.pixels(_KIND, _u24(data, body + 6) + 1, _u24(data, body + 9) + 1,
                          "animation frame")
            _chunks(budget, body + 16, body_end, nested=True)
        elif fourcc == b"VP8 " and body_end - body >= 10 and data[body + 3:body + 6] == (
                b"\x9d\x01\x2a"):
            w, h = struct.unpack_from("<HH", data, body + 6)
            budget.pixels(_KIND, w & 0x3FFF, h & 0x3FFF, "VP8 picture")
        elif fourcc == b"VP8L" and body_end - body >= 5 and data[body] == 0x2F:
            (bits,) = struct.unpack_from("<I", data, body + 1)
            budget.pixels(_KIND, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1,
                          "lossless picture")
        elif fourcc in _METADATA and not nested:
            budget.metadata_used(_KIND, fourcc.decode("latin-1").strip(), body_end - body)
            if fourcc == b"EXIF":
                walk_exif(budget, _KIND, data, body, body_end)
        pos = body + size + (size & 1)
