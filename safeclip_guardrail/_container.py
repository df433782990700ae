"""Structural pre-checks of image containers, before any Pillow parser touches them.

Pillow parses container records (PNG chunks, GIF blocks, TIFF tags) in Python, one record at
a time, and some plugins decode pixels while *opening* (ICO decodes its largest picture).
A hostile file made of millions of tiny records, or an icon whose directory says 16x16 but
embeds a 9000x9000 PNG, therefore costs seconds and gigabytes before any limit of ours has a
chance to look at it. These walks read only record headers, stop as soon as a budget is
exceeded, and raise :class:`ImageInputError` naming the limit.

Budget: ``max_chunks`` records plus one per 256 bytes walked. Real encoders write PNG
chunks of kilobytes and GIF sub-blocks of 255 bytes, so real files stay far below it; a file
of empty records exceeds it after a few hundred kilobytes of walking.
"""

from __future__ import annotations

import struct

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["check_container"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_container(data: bytes, opts: ImageOptions, desc: str) -> None:
    """Raise :class:`ImageInputError` when ``data`` is a record bomb or hides pictures larger
    than the pixel limit. Dispatches on the signature, not on a sniffed name, so a file that
    a looser signature check claims for another format is still walked."""
    head = data[:4]
    if data[:8] == _PNG_MAGIC:
        _png(data, opts, desc)
    elif head in (b"GIF8",):
        _gif(data, opts, desc)
    elif head in (b"II*\x00", b"MM\x00*"):
        _tiff(data, opts, desc)
    elif head in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and (
            {"ICO", "CUR"} & set(opts.formats)):
        _ico(data, opts, desc)


def _too_many(kind: str, count: int, desc: str, opts: ImageOptions) -> ImageInputError:
    return ImageInputError(
        f"image {desc} is a {kind} with over {count} records (limit: max_chunks="
        f"{opts.max_chunks} plus one per 256 bytes); files made of many tiny records are "
        "refused because parsing them costs seconds. Re-encode the image, or raise "
        "ImageOptions.max_chunks if it is genuine",
        source=desc,
    )


def _png(data: bytes, opts: ImageOptions, desc: str) -> None:
    pos, count, end = 8, 0, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        count += 1
        if count > opts.max_chunks + pos // 256:
            raise _too_many("PNG", count - 1, desc, opts)
        if kind == b"IEND":
            return
        pos += 12 + length


def _gif(data: bytes, opts: ImageOptions, desc: str) -> None:
    """Walk blocks up to the image descriptor after the last frame that will be decoded."""
    end = len(data)
    if end < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    count = images = 0
    while pos < end:
        introducer = data[pos]
        pos += 1
        if introducer == 0x2C:  # image descriptor
            images += 1  # walk through the data of the last decoded frame: the probe for
            if images > opts.frames or pos + 9 > end:  # a further frame skips it in Python
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
            count += 1
            if count > opts.max_chunks + pos // 256:
                raise _too_many("GIF", count - 1, desc, opts)
            if size == 0:
                break


def _ico(data: bytes, opts: ImageOptions, desc: str) -> None:
    """Check every embedded picture's own header: Pillow decodes the largest while opening."""
    if len(data) < 6:
        return
    (n,) = struct.unpack_from("<H", data, 4)
    for k in range(n):
        at = 6 + 16 * k
        if at + 16 > len(data):
            return
        offset = struct.unpack_from("<I", data, at + 12)[0]
        head = data[offset:offset + 24]
        if head[:8] == _PNG_MAGIC and len(head) >= 24:
            w, h = struct.unpack_from(">II", head, 16)
        elif len(head) >= 12:  # BMP info header: width, then doubled height (XOR + AND masks)
            w, h2 = struct.unpack_from("<ii", head, 4)
            w, h = abs(w), abs(h2) // 2
        else:
            continue
        if w * h > opts.max_pixels:
            raise ImageInputError(
                f"icon {desc} embeds a {w}x{h} picture, over the limit of {opts.max_pixels} "
                "pixels (its directory may say otherwise); raise ImageOptions.max_pixels if "
                "it is genuine",
                source=desc,
            )


_TIFF_OFFSET_TAGS = {273, 279, 324, 325}  # StripOffsets, StripByteCounts, TileOffsets, ...


def _tiff(data: bytes, opts: ImageOptions, desc: str) -> None:
    """Bound the strip/tile tables of the IFDs that will be read (Pillow builds a Python
    tuple per entry: 10 M strips are gigabytes before a pixel is decoded)."""
    if len(data) < 8 or data[2:4] not in (b"*\x00", b"\x00*"):
        return  # BigTIFF and oddities: Pillow's own parser and the outer guard handle them
    bo = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(bo + "I", data, 4)
    limit = opts.max_chunks + len(data) // 256
    for _ in range(opts.frames + 1):
        if ifd == 0 or ifd + 2 > len(data):
            return
        (n,) = struct.unpack_from(bo + "H", data, ifd)
        for k in range(n):
            at = ifd + 2 + 12 * k
            if at + 12 > len(data):
                return
            tag, _type, count = struct.unpack_from(bo + "HHI", data, at)
            if tag in _TIFF_OFFSET_TAGS and count > limit:
                raise _too_many("TIFF", limit, desc, opts)
        nxt = ifd + 2 + 12 * n
        if nxt + 4 > len(data):
            return
        (ifd,) = struct.unpack_from(bo + "I", data, nxt)
