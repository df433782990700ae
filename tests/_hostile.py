"""Builders of hostile images, rebuilt from the red-team findings (issue 11) at test scale.

Each builder returns bytes; none is committed. They also seed the fuzz suite.
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image

from safeclip_guardrail.testing.pictures import encode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but carries almost no image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_MAGIC + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def gif_broken_trailer() -> bytes:
    """Finding 1: a two-frame GIF whose trailer byte is replaced by ``!`` then EOF."""
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert data.endswith(b";")
    return data[:-1] + b"!"


def _tiff_ifds(data: bytes) -> list[int]:
    bo = "<" if data[:2] == b"II" else ">"
    out, ifd = [], struct.unpack_from(bo + "I", data, 4)[0]
    while ifd:
        out.append(ifd)
        n = struct.unpack_from(bo + "H", data, ifd)[0]
        ifd = struct.unpack_from(bo + "I", data, ifd + 2 + 12 * n)[0]
    return out


def _patch_tiff_tags(data: bytes, ifd_index: int, patch: dict[int, int | None]) -> bytes:
    """Rewrite inline SHORT/LONG values of tags in one IFD; None renames the tag away."""
    buf = bytearray(data)
    bo = "<" if data[:2] == b"II" else ">"
    ifd = _tiff_ifds(data)[ifd_index]
    n = struct.unpack_from(bo + "H", data, ifd)[0]
    for k in range(n):
        at = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from(bo + "HH", data, at)
        if tag not in patch:
            continue
        value = patch[tag]
        if value is None:
            struct.pack_into(bo + "H", buf, at, 65000)  # an unknown private tag
        elif typ == 3:
            struct.pack_into(bo + "H", buf, at + 8, value)
        else:
            struct.pack_into(bo + "I", buf, at + 8, value)
    return bytes(buf)


def two_page_tiff() -> bytes:
    pages = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def tiff_second_ifd_without_dimensions() -> bytes:
    """Finding 1: page 2 has no width/height (Pillow: ``TypeError: Missing dimensions``)."""
    return _patch_tiff_tags(two_page_tiff(), 1, {256: None, 257: None})


def tiff_second_page_huge() -> bytes:
    """Findings 1 and 4: page 2 declares 20000 x 20000."""
    return _patch_tiff_tags(two_page_tiff(), 1, {256: 20000, 257: 20000})


def blp_unknown_compression() -> bytes:
    """Finding 1: a BLP2 whose compression byte is unknown."""
    data = bytearray(encode(Image.new("P", (8, 8)), "BLP"))
    data[8] = 7
    return bytes(data)


def avif_damaged() -> bytes:
    """Finding 1: an AVIF whose AV1 payload is overwritten (the container stays intact)."""
    data = bytearray(encode(Image.new("RGB", (32, 32), "green"), "AVIF"))
    mdat = data.find(b"mdat")
    for k in range(mdat + 8, len(data)):
        data[k] = 0xFF
    return bytes(data)


def mpo_second_picture_cut(keep: int = 4) -> bytes:
    """Finding 1: an MPO whose second picture is cut after ``keep`` bytes."""
    pics = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    data = encode(pics[0], "MPO", save_all=True, append_images=pics[1:])
    second = data.find(b"\xff\xd8\xff", 4)
    assert second > 0
    return data[:second + keep]


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
       b"newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n")
"""Finding 2: attacker PostScript dressed as an image."""


def ico_embedding_png(width: int, height: int) -> bytes:
    """Finding 4: an ICO whose directory says 16x16 but embeds a ``width x height`` PNG."""
    png = png_header_only(width, height)
    head = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return head + entry + png


def gif_of_one_pixel_frames(n: int, *, broken_tail: bool = True) -> bytes:
    """Finding 5 (scaled): a GIF of ``n`` one-pixel frames; with ``broken_tail`` its end is
    garbage, so a decoder that counts frames up front fails while a lazy one never looks."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    tail = b"!" if broken_tail else b";"
    return head + frame * n + tail


def png_with_many_chunks(n: int) -> bytes:
    """Finding 5 (scaled): a valid 1x1 PNG preceded by ``n`` empty private chunks."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00"))
    return PNG_MAGIC + ihdr + png_chunk(b"prVt", b"") * n + idat + png_chunk(b"IEND", b"")


def hidden_behind_alpha(picture: Image.Image) -> bytes:
    """Finding 8: ``picture`` with alpha 0 everywhere: blank over white, the picture without
    alpha."""
    rgba = picture.convert("RGBA")
    rgba.putalpha(0)
    return encode(rgba, "PNG")
