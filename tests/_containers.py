"""Containers that carry more than one picture, generated for the referee tests (nothing
binary is committed). Each builder takes PIL pictures and returns the encoded bytes.

A picture can hide in a file where one decoder sees it and another does not: the second
picture of an MPO, an EXIF thumbnail, a JPEG after a PNG's IEND or after a JPEG's EOI, the
pixels a PNG ``tRNS`` colour key makes transparent, a later animation frame, a picture drawn
off a PDF page (or on it).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import numpy as np
from PIL import Image

from safeclip_guardrail.testing.pictures import encode
from safeclip_guardrail.testing.pictures import noise as seeded_noise

MARKER = (255, 0, 0)
"""The colour of a "flagged" picture for :class:`tests._referee.RefereeEncoder`."""


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """A benign picture (seeded noise, no marker colour to speak of)."""
    arr = np.array(seeded_noise(size[0], size[1], seed))
    arr[..., 0] //= 2  # keep it far from the marker red
    return Image.fromarray(arr, "RGB")


def calm(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """A benign, smooth picture (a gradient): it survives rendering at any resolution."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    t = (xx / max(size[0] - 1, 1) + yy / max(size[1] - 1, 1)) / 2
    c0, c1 = rng.uniform(0, 120, 3), rng.uniform(40, 200, 3)
    arr = c0 * (1 - t[..., None]) + c1 * t[..., None]
    arr[..., 0] = np.minimum(arr[..., 0], 120)  # far from the marker red
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def marked(size: tuple[int, int] = (64, 64), seed: int = 1) -> Image.Image:
    """A "flagged" picture: the marker colour with a little noise."""
    rng = np.random.default_rng(seed)
    arr = np.empty((size[1], size[0], 3), np.int16)
    arr[...] = MARKER
    arr += rng.integers(-8, 9, size=arr.shape, dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# ------------------------------------------------------------------ JPEG family
def mpo(first: Image.Image, *more: Image.Image) -> bytes:
    """A multi-picture JPEG (cameras' MPO): plain JPEG decoders show the first picture."""
    return encode(first, "MPO", save_all=True, append_images=list(more), quality=90)


def jpeg_with_exif_thumbnail(main: Image.Image, thumbnail: Image.Image) -> bytes:
    """A JPEG whose EXIF IFD1 carries a JPEG thumbnail (what galleries show as a preview)."""
    thumb = encode(thumbnail, "JPEG", quality=90)
    # big-endian TIFF: header, IFD0 (orientation), IFD1 (JPEG thumbnail offset and length)
    ifd0_at, ifd1_at = 8, 8 + 2 + 12 + 4
    thumb_at = ifd1_at + 2 + 3 * 12 + 4
    tiff = b"MM\x00*" + struct.pack(">I", ifd0_at)
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 1, 0) + struct.pack(">I", ifd1_at)
    tiff += struct.pack(">H", 3)
    tiff += struct.pack(">HHIHH", 0x0103, 3, 1, 6, 0)  # Compression: JPEG
    tiff += struct.pack(">HHII", 0x0201, 4, 1, thumb_at)  # JPEGInterchangeFormat
    tiff += struct.pack(">HHII", 0x0202, 4, 1, len(thumb))  # ...Length
    tiff += struct.pack(">I", 0) + thumb
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    body = encode(main, "JPEG", quality=90)
    return body[:2] + segment + body[2:]


def appended(first: bytes, second: bytes) -> bytes:
    """``second`` after the end of ``first`` (a JPEG after a PNG's IEND, or after an EOI)."""
    return first + second


# ------------------------------------------------------------------ transparency keys
def trns_png(img: Image.Image, key: tuple[int, int, int] | int) -> bytes:
    """A PNG (RGB, or grey when ``img`` is L) with a ``tRNS`` colour key."""
    return encode(img, "PNG", transparency=key)


# ------------------------------------------------------------------ animations
def animated(frames: Sequence[Image.Image], fmt: str) -> bytes:
    """An animated PNG, GIF or WebP of ``frames`` (lossless where the format allows)."""
    first, *rest = frames
    extra: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    return encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0, **extra)


# ------------------------------------------------------------------ PDF
def pdf(pages: Sequence[Sequence[tuple[Image.Image, tuple[float, float, float, float]]]], *,
        size: tuple[float, float] = (200.0, 200.0),
        fills: Sequence[tuple[int, tuple[float, float, float, float]]] = ()) -> bytes:
    """A PDF with pictures placed at ``(x, y, w, h)`` in points on each page (off the page
    is allowed: that is how a picture hides), and filled marker-red rectangles
    ``(page index, box)``: a page that shows a flagged drawing without any picture."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument.new()
    for index, pictures in enumerate(pages):
        page = doc.new_page(*size)
        for picture, (x, y, w, h) in pictures:
            obj = pdfium.PdfImage.new(doc)
            obj.set_bitmap(pdfium.PdfBitmap.from_pil(picture))
            obj.set_matrix(pdfium.PdfMatrix().scale(w, h).translate(x, y))
            page.insert_obj(obj)
        for where, (x, y, w, h) in fills:
            if where == index:
                rect = raw.FPDFPageObj_CreateNewRect(x, y, w, h)
                raw.FPDFPageObj_SetFillColor(rect, *MARKER, 255)
                raw.FPDFPath_SetDrawMode(rect, raw.FPDF_FILLMODE_ALTERNATE, 0)
                raw.FPDFPage_InsertObject(page, rect)
        page.gen_content()
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
