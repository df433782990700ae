"""Structure-aware builders and mutations of images: markers, chunks, frames and tables.

Byte flips rarely reach what multiplies a decoder's work; these mutations do it on purpose:
they repeat, insert, delete and split the records of real encoders' output (JPEG segments
and scans, PNG chunks, GIF frames and sub-blocks, WebP RIFF chunks, TIFF strip tables and
directories) and write counts and sizes that real files never hold. Used by the CI fuzz
(``tests/unit/images/test_decode_fuzz.py``), the container tests and ``benchmarks/bench_decode_worst.py``.
Everything is generated; nothing binary is committed.
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from safeclip_guardrail.testing.pictures import encode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def photo(w: int, h: int, seed: int = 0, grain: int = 6) -> Image.Image:
    """A smooth, photo-like RGB picture (compresses like a photo, not like noise); with
    ``grain=0`` a smooth one whose progressive refinement scans are a few bytes each."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    if not grain:
        return img
    grain_ = rng.integers(-grain, grain + 1, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + grain_, 0, 255)
                           .astype(np.uint8), "RGB")


# ------------------------------------------------------------------------------ JPEG
def jpeg_segments(data: bytes) -> list[bytes]:
    """SOI, each marker segment (a scan with its entropy-coded data), EOI, trailing bytes."""
    out, pos = [data[:2]], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append(data[pos:pos + 2])
            pos += 2
            break
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if marker == 0xDA:
            m = _NEXT_MARKER.search(data, end)
            end = m.start() if m else len(data)
        out.append(data[pos:end])
        pos = end
    if pos < len(data):
        out.append(data[pos:])
    return out


def scans(segments: list[bytes]) -> list[int]:
    return [i for i, s in enumerate(segments) if s[1:2] == b"\xda"]


def scan_bomb(data: bytes, repeats: int, which: int = -1) -> bytes:
    """The found attack: one scan (the last by default) repeated ``repeats`` more times."""
    seg = jpeg_segments(data)
    k = scans(seg)[which]
    return b"".join(seg[:k + 1] + [seg[k]] * repeats + seg[k + 1:])


def marker(code: int, payload: bytes = b"") -> bytes:
    return bytes((0xFF, code)) + struct.pack(">H", len(payload) + 2) + payload


def exif_blob(entries: int = 8, value_bytes: int = 16, thumbnail: bytes = b"") -> bytes:
    """A little-endian EXIF/TIFF blob: IFD0 with ``entries`` ASCII tags, and an IFD1
    thumbnail (JPEGInterchangeFormat) as cameras write it when ``thumbnail`` is given."""
    n = entries + 1
    ifd1_at = 8 + 2 + 12 * n + 4
    values_at = ifd1_at + (2 + 12 * 2 + 4 if thumbnail else 0)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", n))
    out += struct.pack("<HHII", 0x0112, 3, 1, 1)  # orientation: upright
    for k in range(entries):
        out += struct.pack("<HHII", 0x9000 + k, 2, value_bytes, values_at + k * value_bytes)
    out += struct.pack("<I", ifd1_at if thumbnail else 0)
    if thumbnail:
        thumb_at = values_at + entries * value_bytes
        out += struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb_at)
        out += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + b"\x00" * 4
    out += b"A" * (entries * value_bytes) + thumbnail
    return bytes(out)


def camera_jpeg(w: int = 1200, h: int = 900, seed: int = 0) -> bytes:
    """What a camera or phone writes: baseline 4:2:2 with restart markers every MCU row,
    an EXIF APP1 with a JPEG thumbnail, an ICC profile over three APP2 segments and XMP."""
    img = photo(w, h, seed)
    thumb = encode(img.resize((160, 120)), "JPEG", quality=80)
    icc = bytes(range(256)) * 600  # 150 KB, split by Pillow into three APP2 segments
    return encode(img, "JPEG", quality=92, subsampling=1, restart_marker_rows=1,
                  exif=b"Exif\x00\x00" + exif_blob(12, 24, thumb), icc_profile=icc,
                  xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")


def jpeg_insert(data: bytes, segment: bytes, count: int, *, before_scan: bool = True) -> bytes:
    """``count`` copies of ``segment`` just before the first scan (or right after SOI)."""
    seg = jpeg_segments(data)
    at = scans(seg)[0] if before_scan else 1
    return b"".join(seg[:at] + [segment] * count + seg[at:])


def jpeg_restart_interval_1(data: bytes) -> bytes:
    """DRI = 1 (a restart marker after every MCU) declared, with the markers absent."""
    return jpeg_insert(data, marker(0xDD, struct.pack(">H", 1)), 1)


def jpeg_exif_split(data: bytes, segments: int, size: int = 65000) -> bytes:
    """EXIF spread over many APP1 segments, which Pillow joins by repeated concatenation."""
    first = b"Exif\x00\x00" + exif_blob(4, 16) + b"\x00" * (size - 200)
    more = b"Exif\x00\x00" + b"\x00" * size
    seg = jpeg_segments(data)
    return b"".join(seg[:1] + [marker(0xE1, first)] + [marker(0xE1, more)] * (segments - 1)
                    + seg[1:])


# ------------------------------------------------------------------------------- PNG
def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def png_build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_MAGIC + b"".join(png_chunk(k, b) for k, b in chunks)


def png_split_idat(data: bytes, size: int) -> bytes:
    """The image data re-split into IDAT chunks of ``size`` bytes."""
    chunks = png_chunks(data)
    idat = b"".join(b for k, b in chunks if k == b"IDAT")
    first = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    rest = [c for c in chunks if c[0] != b"IDAT"]
    parts = [(b"IDAT", idat[i:i + size]) for i in range(0, len(idat), size)]
    return png_build(rest[:first] + parts + rest[first:])


def png_insert(data: bytes, chunk: tuple[bytes, bytes], count: int) -> bytes:
    chunks = png_chunks(data)
    return png_build(chunks[:1] + [chunk] * count + chunks[1:])


def ztxt_bomb(inflated: int = 1_000_000, key: bytes = b"Comment") -> tuple[bytes, bytes]:
    return b"zTXt", key + b"\x00\x00" + zlib.compress(b"\x00" * inflated, 9)


def iccp_bomb(inflated: int = 1_000_000) -> tuple[bytes, bytes]:
    return b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * inflated, 9)


# ------------------------------------------------------------------------------- GIF
def gif_frames(count: int, size: tuple[int, int] = (8, 8)) -> bytes:
    frames = [Image.new("RGB", size, (k % 256, k // 256 % 256, 90)) for k in range(max(2, count))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:count],
                  comment=b"structure test")


def gif_split_subblocks(data: bytes) -> bytes:
    """Every image-data sub-block re-split into one-byte sub-blocks (a legal GIF)."""
    out, pos = bytearray(), 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out += data[:pos]
    while pos < len(data):
        intro = data[pos]
        out.append(intro)
        pos += 1
        if intro == 0x2C:
            local = data[pos + 8]
            head = 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            out += data[pos:pos + head]
            pos += head
            payload = bytearray()
            while pos < len(data) and data[pos]:
                payload += data[pos + 1:pos + 1 + data[pos]]
                pos += 1 + data[pos]
            pos += 1
            out += b"".join(b"\x01" + bytes((b,)) for b in payload) + b"\x00"
        elif intro == 0x21:
            out.append(data[pos])
            pos += 1
            while pos < len(data) and data[pos]:
                out += data[pos:pos + 1 + data[pos]]
                pos += 1 + data[pos]
            out.append(0)
            pos += 1
        else:
            out += data[pos:]
            break
    return bytes(out)


# ------------------------------------------------------------------------------ WebP
def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos + 4)
        out.append((data[pos:pos + 4], data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out


def riff_build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WEBP" + b"".join(k + struct.pack("<I", len(b)) + b + b"\x00" * (len(b) & 1)
                              for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_repeat(data: bytes, fourcc: bytes, count: int) -> bytes:
    """The first ``fourcc`` chunk repeated ``count`` more times (an ANMF flood, say)."""
    chunks = riff_chunks(data)
    k = next(i for i, (c, _) in enumerate(chunks) if c == fourcc)
    return riff_build(chunks[:k + 1] + [chunks[k]] * count + chunks[k + 1:])


def webp_canvas(data: bytes, w: int, h: int) -> bytes:
    """An animated WebP whose VP8X canvas claims ``w`` x ``h``."""
    chunks = riff_chunks(data)
    out = []
    for c, b in chunks:
        if c == b"VP8X":
            b = b[:4] + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        out.append((c, b))
    return riff_build(out)


# ------------------------------------------------------------------------------ TIFF
def tiff_tables(w: int, h: int, strips: int, *, rows: int | None = None) -> bytes:
    """An uncompressed grey TIFF whose strip tables list ``strips`` entries, all pointing at
    one strip of ``rows`` rows (the geometry needs ``ceil(h / rows)``)."""
    rows = rows or h
    strip = bytes(w * rows)
    n_entries = 8
    ifd = 8
    arrays = ifd + 2 + 12 * n_entries + 4
    offsets_at, counts_at = arrays, arrays + 4 * strips
    data_at = counts_at + 4 * strips if strips > 1 else arrays
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, strips, offsets_at if strips > 1 else data_at),
               (278, 4, 1, rows), (279, 4, strips, counts_at if strips > 1 else len(strip))]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd) + struct.pack("<H", n_entries))
    for tag, typ, count, value in entries:
        out += struct.pack("<HHII", tag, typ, count, value)
    out += b"\x00\x00\x00\x00"
    if strips > 1:
        out += struct.pack(f"<{strips}I", *([data_at] * strips))
        out += struct.pack(f"<{strips}I", *([len(strip)] * strips))
    return bytes(out + strip)


def tiff_ifd_chain(data: bytes, pages: int) -> bytes:
    """The first directory copied ``pages`` times, chained (a page flood)."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    body = data[ifd:ifd + 2 + 12 * n]
    out = bytearray(data)
    last_next = ifd + 2 + 12 * n
    for _ in range(pages):
        at = len(out) + (len(out) & 1)
        out += b"\x00" * (at - len(out))
        struct.pack_into("<I", out, last_next, at)
        out += body + b"\x00\x00\x00\x00"
        last_next = at + len(body)
    return bytes(out)


def tiff_entry_flood(data: bytes, extra: int) -> bytes:
    """The first directory rewritten with ``extra`` more (private, inline) entries."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    entries = [data[ifd + 2 + 12 * k: ifd + 14 + 12 * k] for k in range(n)]
    entries += [struct.pack("<HHII", 40000 + k % 20000, 4, 1, k) for k in range(extra)]
    entries.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    at = len(data) + (len(data) & 1)
    new = bytearray(data + b"\x00" * (at - len(data)))
    new += struct.pack("<H", len(entries) & 0xFFFF) + b"".join(entries[:0xFFFF]) + b"\0" * 4
    struct.pack_into("<I", new, 4, at)
    return bytes(new)


# ------------------------------------------------------------------------------- BMP
def bmp_rle8(w: int, h: int, row: bytes = b"\x01\x07\x00\x00") -> bytes:
    """An RLE8 bitmap: by default one pixel then end-of-line per row (Pillow pads each
    row byte by byte in Python)."""
    pixels = row * h + b"\x00\x01"
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    head = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    off = 14 + 40 + len(palette)
    return b"BM" + struct.pack("<IHHI", off + len(pixels), 0, 0, off) + head + palette + pixels


Mutation = Callable[[bytes, random.Random], bytes]


def scan_bomb_base(size: int = 4000) -> bytes:
    """A flat progressive JPEG: its last scan is a few dozen bytes, as in the found file."""
    return encode(Image.new("RGB", (size, size), (120, 130, 140)), "JPEG", progressive=True,
                  quality=90)


def tiff_tiled(w: int, h: int, tile: int, tiles: int | None = None, pad: int = 0) -> bytes:
    """An uncompressed grey tiled TIFF whose tile tables list ``tiles`` entries (by default
    as many as the geometry needs), all pointing at one tile; ``pad`` bytes at the end (a
    bigger file earns a bigger record budget)."""
    need = -(-w // tile) * -(-h // tile)
    tiles = need if tiles is None else tiles
    data = bytes(tile * tile)
    n_entries, ifd = 9, 8
    offsets_at = ifd + 2 + 12 * n_entries + 4
    counts_at = offsets_at + 4 * tiles
    data_at = counts_at + 4 * tiles
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (322, 4, 1, tile), (323, 4, 1, tile), (324, 4, tiles, offsets_at),
               (325, 4, tiles, counts_at)]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd) + struct.pack("<H", n_entries))
    for tag, typ, count, value in entries:
        if count == 1 and tag in (324, 325):
            value = data_at if tag == 324 else len(data)
        out += struct.pack("<HHII", tag, typ, count, value)
    out += b"\x00\x00\x00\x00"
    out += struct.pack(f"<{tiles}I", *([data_at] * tiles))
    out += struct.pack(f"<{tiles}I", *([len(data)] * tiles))
    return bytes(out + data + bytes(pad))


def tiff_strip(data: bytes) -> tuple[int, int]:
    """Offset and size of the only strip of a one-strip little-endian TIFF."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    found = {}
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        tag, _typ, count, value = struct.unpack_from("<HHII", data, ifd + 2 + 12 * k)
        if tag in (273, 279):
            assert count == 1, "one strip expected"
            found[tag] = value
    return found[273], found[279]


def tiff_replace_strip(data: bytes, strip: bytes) -> bytes:
    """The only strip of a one-strip little-endian TIFF replaced by ``strip`` (appended)."""
    out = bytearray(data)
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * k
        tag = struct.unpack_from("<H", data, at)[0]
        if tag == 273:
            struct.pack_into("<I", out, at + 8, len(data))
        elif tag == 279:
            struct.pack_into("<I", out, at + 8, len(strip))
    return bytes(out + strip)
