"""PNG/APNG chunks and GIF blocks: records Pillow parses one at a time in Python.

PNG: every chunk is a record (Pillow reads each IDAT/fdAT in Python, so an image split into
one-byte IDATs costs a Python call per byte); text and ICC chunks count as metadata, the
compressed ones (zTXt, compressed iTXt, iCCP) inflated here up to what is left of
``max_metadata_bytes`` (Pillow would inflate each to a megabyte and keep up to 64 MB of
text); the eXIf directory is walked like a TIFF one.

GIF: every sub-block up to the image descriptor of the frame after the last judged one is
a record (Pillow skips a frame's data sub-block by sub-block in Python when it seeks on).
"""

from __future__ import annotations

import struct
import zlib

from safeclip_guardrail.images._container._budget import Budget
from safeclip_guardrail.images._container._tiff import walk_exif

__all__ = ["PNG_MAGIC", "walk_gif", "walk_png"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PLAIN = frozenset({b"tEXt", b"eXIf"})
_COMPRESSED = frozenset({b"zTXt", b"iCCP", b"iTXt"})


def walk_png(budget: Budget, start: int, end: int) -> None:
    """Walk the chunks of the PNG in ``data[start:end]`` up to IEND."""
    data = budget.data
    pos = start + 8
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        budget.records_used("PNG")
        if kind == b"IEND":
            return
        body, body_end = pos + 8, min(pos + 8 + length, end)
        if kind in _PLAIN:
            budget.metadata_used("PNG", kind.decode("latin-1"), body_end - body)
            if kind == b"eXIf":
                walk_exif(budget, "PNG", data, body, body_end)
        elif kind in _COMPRESSED:
            _compressed(budget, kind, data[body:body_end])
        pos += 12 + length


def _compressed(budget: Budget, kind: bytes, chunk: bytes) -> None:
    """Inflate a zTXt/iTXt/iCCP payload up to the metadata left, as Pillow would."""
    name = kind.decode("latin-1")
    keyword, sep, rest = chunk.partition(b"\x00")
    if not sep:
        return
    if kind == b"iTXt":  # flag, method, language\0, translated keyword\0, text
        if len(rest) < 2:
            return
        flag, rest = rest[0], rest[2:]
        text = rest.split(b"\x00", 2)[-1]
        if not flag:
            budget.metadata_used("PNG", name, len(text))
            return
        stream = text
    else:  # method byte, then the zlib stream
        stream = rest[1:]
    left = max(0, budget.opts.max_metadata_bytes - budget.metadata)
    try:
        inflated = zlib.decompressobj().decompress(stream, left + 1)
    except zlib.error:
        return  # Pillow drops a corrupt stream
    budget.metadata_used("PNG", f"{name} {keyword[:40]!r} inflated", len(inflated))


def walk_gif(budget: Budget) -> None:
    """Walk blocks up to the image descriptor after the last frame that will be decoded."""
    data = budget.data
    end = len(data)
    if end < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    images = 0
    while pos < end:
        introducer = data[pos]
        pos += 1
        if introducer == 0x2C:  # image descriptor
            images += 1  # walk through the data of the last decoded frame: the probe for
            if images > budget.opts.frames or pos + 9 > end:  # a further frame skips it
                return
            local = data[pos + 8]
            pos += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1  # + LZW code size
        elif introducer == 0x21:  # extension: label, then sub-blocks
            pos += 1
        else:  # trailer or garbage: Pillow stops here too
            return
        while pos < end:  # sub-blocks until the zero-length terminator
            size = data[pos]
            pos += 1 + size
            budget.records_used("GIF")
            if size == 0:
                break
