"""Structural pre-walk of image containers: decode work bounded before any decoder runs.

Pixel limits alone do not bound decode time. What multiplies work beyond the pixels lives in
the container: libjpeg passes over every coefficient once per scan (a progressive JPEG with
its last scan repeated thousands of times costs a minute at 16 Mpx); Pillow parses PNG
chunks, GIF sub-blocks, JPEG header markers and TIFF directory entries one at a time in
Python; Pillow's raw TIFF reader decodes the picture again for every surplus strip; ICO
decodes a picture while opening; zTXt/iCCP inflate up to a megabyte each; RLE BMPs decode in
Python. These walks read only headers (and inflate compressed metadata up to its budget),
stop as soon as a budget is exceeded, and raise :class:`ImageInputError` naming the limit
and the option that raises it. What they leave to the decoders is work proportional to the
pixels and the bytes, measured per format in docs/performance.md.

Budgets (``ImageOptions``): ``max_chunks`` records plus one per 256 bytes of data (records:
PNG chunks, GIF sub-blocks, JPEG markers, TIFF strips/tiles and directory entries,
WebP/AVIF boxes); ``max_jpeg_scans`` per JPEG picture (also per JPEG-compressed TIFF
strip); ``max_metadata_bytes``; ``max_bmp_rle_pixels``; ``max_pixels`` for sizes declared
where Pillow allocates before our per-frame check (ICO pictures, WebP canvases, AVIF items).

Documents (``%PDF``) are not walked here: the documents module bounds them.
"""

from __future__ import annotations

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.images._container import _libtiff
from safeclip_guardrail.images._container._budget import Budget
from safeclip_guardrail.images._container._jpeg import walk_jpeg
from safeclip_guardrail.images._container._misc import walk_bmff, walk_bmp, walk_ico
from safeclip_guardrail.images._container._png import PNG_MAGIC, walk_gif, walk_png
from safeclip_guardrail.images._container._riff import walk_webp
from safeclip_guardrail.images._container._tiff import walk_tiff

__all__ = ["check_container"]

_TIFF = frozenset({b"II*\x00", b"MM\x00*", b"II\x00*", b"MM*\x00", b"II+\x00", b"MM\x00+"})
"""What Pillow's TIFF reader accepts (also with the magic number in the other byte order)."""

_libtiff.silence()  # libtiff's C diagnostics would reach fd 2 of a multithreaded server


def check_container(data: bytes, opts: ImageOptions, desc: str) -> None:
    """Raise :class:`ImageInputError` when ``data`` would cost more than its budgets allow.

    Dispatches on the signature, not on a sniffed name, so a file that a looser signature
    check claims for another format is still walked; a format that is not allowed is left
    to the decoder's refusal."""
    budget = Budget(data, opts, desc)
    head = data[:16]
    if head[:8] == PNG_MAGIC:
        walk_png(budget, 0, len(data))
    elif head[:3] == b"\xff\xd8\xff":
        walk_jpeg(budget, 0, picture=1)
    elif head[:4] == b"GIF8":
        walk_gif(budget)
    elif head[:4] in _TIFF:
        walk_tiff(budget)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        walk_webp(budget)
    elif head[:2] == b"BM":
        walk_bmp(budget, 0, file_header=True)
    elif head[4:8] == b"ftyp":
        walk_bmff(budget)
    elif head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and (
            {"ICO", "CUR"} & set(opts.formats)):
        walk_ico(budget)
