"""Structure-aware mutations: markers, chunks, frames, tables and counts, not only bytes.

``mutate(data, rng)`` recognises the container by its signature and applies one operation
that a byte flip would almost never produce: repeat or drop JPEG scans and segments, declare
restart intervals of 1, insert giant APPn or floods of tiny markers, split EXIF; split PNG
image data into one-byte IDATs, flood text chunks, add zTXt/iCCP bombs, repeat APNG frames;
repeat GIF frames and split sub-blocks; repeat WebP ANMF/unknown chunks, inflate canvases;
rewrite TIFF strip tables, chain directories, flood entries; turn bitmaps into RLE. Counts are
drawn from small, just-under-a-limit and far-over-a-limit values. Deterministic given ``rng``.
"""

from __future__ import annotations

import random
import struct
import zlib

from tests import _structures as S

COUNTS = (1, 2, 5, 23, 31, 40, 200, 3000, 12_000, 40_000)
"""Repeat counts: a few, around the scan limit (32 with the 10-scan default script),
around the record limit (10,000 + one per 256 bytes) and far past it."""


_MAX_GROWTH = 8_000_000
"""Bytes a repetition may add: enough to pass every record limit, small enough for CI."""


def _count(rng: random.Random, cap: int = 40_000, unit: int = 1) -> int:
    return max(1, min(rng.choice(COUNTS), cap, _MAX_GROWTH // max(1, unit)))


def _jpeg(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    seg = S.jpeg_segments(data)
    sc = S.scans(seg)
    op = rng.choice(("repeat_scan", "repeat_scan", "dup_segment", "drop_segment", "dri",
                     "giant_app", "tiny_markers", "junk", "exif_split", "drop_rst",
                     "shuffle_scans", "sof_size"))
    if op == "repeat_scan" and sc:
        k = rng.choice(sc)
        n = _count(rng, 5000, len(seg[k]))
        return op, b"".join(seg[:k + 1] + [seg[k]] * n + seg[k + 1:])
    if op == "dup_segment" and len(seg) > 2:
        k = rng.randrange(1, len(seg) - 1)
        n = _count(rng, 2000, len(seg[k]))
        return op, b"".join(seg[:k + 1] + [seg[k]] * n + seg[k + 1:])
    if op == "drop_segment" and len(seg) > 2:
        k = rng.randrange(1, len(seg) - 1)
        return op, b"".join(seg[:k] + seg[k + 1:])
    if op == "dri":
        interval = rng.choice((0, 1, 2, 65535))
        return op, S.jpeg_insert(data, S.marker(0xDD, struct.pack(">H", interval)), 1)
    if op == "giant_app":
        app = S.marker(0xE0 + rng.randrange(16), bytes(65533))
        return op, S.jpeg_insert(data, app, rng.choice((1, 40, 300)))
    if op == "tiny_markers":
        code = rng.choice((0xFE, 0xE3, 0xDB, 0xC4))
        payload = b"" if code in (0xFE, 0xE3) else b"\x00" * 3
        return op, S.jpeg_insert(data, S.marker(code, payload), _count(rng),
                                 before_scan=rng.random() < 0.7)
    if op == "junk":
        filler = rng.choice((b"\x00", b"\xff", b"\x17"))
        return op, S.jpeg_insert(data, filler * _count(rng), 1)
    if op == "exif_split":
        return op, S.jpeg_exif_split(data, rng.choice((2, 40, 300)), rng.choice((100, 65000)))
    if op == "drop_rst":
        out = bytearray()
        for s in seg:
            out += s if s[1:2] != b"\xda" else bytes(_drop_rst(s))
        return op, bytes(out)
    if op == "shuffle_scans" and len(sc) > 1:
        order = [seg[k] for k in sc]
        rng.shuffle(order)
        out = list(seg)
        for k, s in zip(sc, order, strict=True):
            out[k] = s
        return op, b"".join(out)
    sof = next((i for i, s in enumerate(seg) if s[1:2] in (b"\xc0", b"\xc1", b"\xc2")), None)
    if sof is None:
        return "none", data
    raw = bytearray(seg[sof])
    struct.pack_into(">HH", raw, 5, rng.choice((1, 4000, 9000, 65535)),
                     rng.choice((1, 4000, 9000, 65535)))
    return "sof_size", b"".join([*seg[:sof], bytes(raw), *seg[sof + 1:]])


def _drop_rst(scan: bytes) -> bytearray:
    out, pos = bytearray(), 0
    while True:
        at = scan.find(b"\xff", pos)
        if at < 0 or at + 1 >= len(scan):
            return out + scan[pos:]
        if 0xD0 <= scan[at + 1] <= 0xD7:
            out += scan[pos:at]
        else:
            out += scan[pos:at + 2]
        pos = at + 2


def _png(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    chunks = S.png_chunks(data)
    op = rng.choice(("split_idat", "text_flood", "ztxt", "iccp", "dup_chunk", "drop_chunk",
                     "exif_flood", "ihdr_size", "itxt"))
    if op == "split_idat":
        return op, S.png_split_idat(data, rng.choice((1, 7, 256, 8192)))
    if op == "text_flood":
        return op, S.png_insert(data, (b"tEXt", b"k\x00v"), _count(rng))
    if op == "ztxt":
        return op, S.png_insert(data, S.ztxt_bomb(rng.choice((1000, 1_000_000))),
                                rng.choice((1, 17, 80)))
    if op == "iccp":
        return op, S.png_insert(data, S.iccp_bomb(rng.choice((1000, 1_000_000, 2_000_000))), 1)
    if op == "itxt":
        body = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(b" " * 900_000)
        return op, S.png_insert(data, (b"iTXt", body), rng.choice((1, 20)))
    if op == "dup_chunk" and len(chunks) > 2:
        k = rng.randrange(1, len(chunks) - 1)
        n = _count(rng, 5000, len(chunks[k][1]) + 12)
        return op, S.png_build(chunks[:k] + [chunks[k]] * n + chunks[k:])
    if op == "drop_chunk" and len(chunks) > 2:
        k = rng.randrange(0, len(chunks) - 1)
        return op, S.png_build(chunks[:k] + chunks[k + 1:])
    if op == "exif_flood":
        return op, S.png_insert(data, (b"eXIf", S.exif_blob(_count(rng, 20_000), 0)), 1)
    kind, ihdr = chunks[0]
    size = struct.pack(">II", rng.choice((1, 8000, 20000)), rng.choice((1, 8000, 20000)))
    return "ihdr_size", S.png_build([(kind, size + ihdr[8:]), *chunks[1:]])


def _gif(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(("frame_flood", "split_subblocks", "comment_flood", "screen_size"))
    if op == "frame_flood" and data.endswith(b";") and b"\x21\xf9" in data:
        frame = data[data.rindex(b"\x21\xf9"):-1]  # the last frame, with its extension
        return op, data[:-1] + frame * _count(rng, 12_000, len(frame)) + b";"
    if op == "split_subblocks":
        return op, S.gif_split_subblocks(data)
    if op == "comment_flood":
        head = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        comment = b"!\xfe" + b"\x01x" * _count(rng, 40_000) + b"\x00"
        return op, data[:head] + comment + data[head:]
    out = bytearray(data)
    struct.pack_into("<HH", out, 6, rng.choice((1, 9000, 65535)), rng.choice((1, 9000, 65535)))
    return "screen_size", bytes(out)


def _webp(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    chunks = S.riff_chunks(data)
    op = rng.choice(("repeat", "unknown_flood", "canvas", "exif"))
    if op == "repeat":
        fourcc, body = rng.choice(chunks)
        return op, S.webp_repeat(data, fourcc, _count(rng, 40_000, len(body) + 8))
    if op == "unknown_flood":
        return op, S.riff_build(chunks + [(b"ABCD", b"")] * _count(rng))
    if op == "canvas" and any(c == b"VP8X" for c, _ in chunks):
        return op, S.webp_canvas(data, rng.choice((1, 9000, 1 << 24)),
                                 rng.choice((1, 9000, 1 << 24)))
    exif = S.exif_blob(_count(rng, 20_000), 0)
    return "exif", S.riff_build([*chunks, (b"EXIF", exif)])


def _tiff(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(("ifd_chain", "entry_flood", "strip_table", "tile_table"))
    if data[:4] != b"II*\x00":  # big-endian or BigTIFF seeds: tables written afresh
        op = rng.choice(("strip_table", "tile_table"))
    if op == "ifd_chain":
        return op, S.tiff_ifd_chain(data, _count(rng, 20_000))
    if op == "entry_flood":
        return op, S.tiff_entry_flood(data, _count(rng, 60_000))
    if op == "strip_table":
        w, h = rng.choice(((64, 48), (1000, 1000), (3000, 3000)))
        rows = rng.choice((1, 16, h))
        need = -(-h // rows)
        return op, S.tiff_tables(w, h, rng.choice((need, need + 1, 1000, 50_000)), rows=rows)
    w, h = rng.choice(((64, 48), (400, 4000)))
    return "tile_table", S.tiff_tiled(w, h, rng.choice((16, 64)), rng.choice((None, 1, 100_000)))


def _bmp(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(("rle_bomb", "rle_garbage"))
    if op == "rle_bomb":
        w = h = rng.choice((100, 1999, 2001, 3000))
        row = rng.choice((b"\x01\x07\x00\x00", b"\xff\x07\x00\x00", b"\x00\x02\xff\x00"))
        return op, S.bmp_rle8(w, h, row)
    out = bytearray(data)
    struct.pack_into("<HI", out, 28, 8, 1)  # 8 bits per pixel, RLE8, over raw pixel data
    return op, bytes(out)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One structural mutation of ``data`` chosen by its signature: (operation, bytes).

    A structure an earlier mutation broke beyond this one's reach is left as it is."""
    ops = {"JPEG": _jpeg, "PNG": _png, "GIF": _gif, "WEBP": _webp, "TIFF": _tiff, "BMP": _bmp}
    op = ops.get(format_of(data))
    if op is None:
        return "none", data
    try:
        return op(data, rng)
    except (ValueError, IndexError, StopIteration, struct.error):
        return "none", data


def seeds(w: int = 96, h: int = 64) -> dict[str, bytes]:
    """Real encoders' output at ``w`` x ``h``, by name: what the mutations start from."""
    img = S.photo(w, h)
    frames = [S.photo(w, h, seed=k) for k in range(3)]
    anim = {"save_all": True, "append_images": frames[1:]}
    out = {
        "jpeg": S.encode(img, "JPEG", quality=90),
        "jpeg-progressive": S.encode(img, "JPEG", progressive=True),
        "jpeg-grey-progressive": S.encode(img.convert("L"), "JPEG", progressive=True),
        "jpeg-cmyk": S.encode(img.convert("CMYK"), "JPEG"),
        "jpeg-camera": S.camera_jpeg(w, h),
        "png": S.encode(img, "PNG", optimize=True),
        "png-palette": S.encode(img.convert("P"), "PNG", transparency=0),
        "apng": S.encode(frames[0], "PNG", **anim),
        "gif": S.encode(frames[0].convert("P"), "GIF", **anim),
        "webp": S.encode(img, "WEBP"),
        "webp-lossless": S.encode(img, "WEBP", lossless=True),
        "webp-animated": S.encode(frames[0], "WEBP", **anim),
        "tiff": S.encode(img, "TIFF"),
        "tiff-lzw": S.encode(img, "TIFF", compression="tiff_lzw"),
        "tiff-jpeg": S.encode(img, "TIFF", compression="jpeg"),
        "tiff-pages": S.encode(frames[0], "TIFF", **anim),
        "bigtiff": S.encode(img, "TIFF", big_tiff=True),
        "bmp": S.encode(img, "BMP"),
    }
    return {k: v for k, v in out.items() if isinstance(v, bytes)}


def format_of(data: bytes) -> str:
    """The container family a mutation works on (the benchmark's table rows)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == S.PNG_MAGIC:
        return "PNG"
    if data[:4] == b"GIF8":
        return "GIF"
    if data[:4] == b"RIFF":
        return "WEBP"
    if data[:2] in (b"II", b"MM"):
        return "TIFF"
    if data[:2] == b"BM":
        return "BMP"
    return "other"
