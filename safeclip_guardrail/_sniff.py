"""Magic bytes: what kind of file some bytes start like (a leaf module, nothing decoded).

Two questions, one function each: :func:`sniff_format` (is this a picture, and in which
format?) and :func:`sniff_document` (is this a document: a PDF, an office file, markup?).
The extraction layer, folder scans, corpus sources and the decoder all ask these two and
nothing else, so "is this an image?" has one answer everywhere.
"""

from __future__ import annotations

__all__ = ["DOCUMENT_HEAD", "describe_binary", "describe_document", "sniff_document", "sniff_format"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"), (b"\xff\x0a", "JXL"), (b"\x00\x00\x00\x0cJXL ", "JXL"),
    (b"8BPS", "PSD"), (b"icns", "ICNS"), (b"qoif", "QOI"), (b"BLP1", "BLP"), (b"BLP2", "BLP"),
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"DDS ", "DDS"),
)
_BMFF_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc",
                          b"hevx", b"mif1", b"msf1"})
"""ISO-BMFF ``ftyp`` brands of still and sequence AVIF / HEIF images."""
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

DOCUMENT_HEAD = 1024
"""Bytes :func:`sniff_document` looks at: PDF readers accept ``%PDF-`` anywhere in them."""

_DOC_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "ZIP"), (b"PK\x05\x06", "ZIP"), (b"PK\x07\x08", "ZIP"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"), (b"{\\rtf", "RTF"), (b"AT&TFORM", "DJVU"),
    (b"%!PS", "PostScript"),
)
_HTML_TAGS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe",
              b"<img", b"<div", b"<meta", b"<style", b"<p>", b"<a ")
_ACTIVE_TAGS = (b"<!doctype html", b"<html", b"<script", b"<iframe", b"<img", b"<object",
                b"<embed", b"<svg")
"""Tags that make text a document a renderer would draw, wherever they stand in it."""
_DOC_NAMES = {"PDF": "a PDF document", "ZIP": "a ZIP archive (docx, xlsx, pptx, odt, epub...)",
              "OLE": "an OLE compound document (doc, xls, ppt...)", "RTF": "an RTF document",
              "SVG": "an SVG document", "HTML": "an HTML document", "XML": "an XML document",
              "DJVU": "a DjVu document",
              "PostScript": "a PostScript document"}


def sniff_format(head: bytes) -> str | None:
    """The image format ``head`` (a file's first 32 bytes or more) starts like, else None.

    Magic bytes only, nothing is decoded. This one function decides "is this an image?"
    for the extraction layer (a file block or an extra field whose bytes are an image is
    judged, whatever MIME type it declares), for folder scans (an extensionless upload is
    scanned), for corpus sources and for the decoder's messages. Names are Pillow's
    (``PNG``, ``JPEG``...). Documents are :func:`sniff_document`'s.
    """
    head = bytes(head[:32])
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp" and (head[8:12] in _BMFF_BRANDS
                                 or any(head[k:k + 4] in _BMFF_BRANDS for k in range(16, 32, 4))):
        return "AVIF" if b"avi" in head[8:32] else "HEIF"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] not in (b"", b"\x00\x00"):
        return "ICO"
    return None


def sniff_document(head: bytes) -> str | None:
    """The document kind ``head`` (a file's first :data:`DOCUMENT_HEAD` bytes) starts like.

    ``"PDF"`` (``%PDF-`` anywhere in the first 1024 bytes, as PDF readers accept it),
    ``"ZIP"`` (docx, xlsx, pptx, odt, epub, xps...), ``"OLE"`` (doc, xls, ppt, msg...),
    ``"RTF"``, ``"DJVU"``, and for text markup (after a byte-order mark and whitespace)
    ``"SVG"``, ``"HTML"`` or ``"XML"``; else None. Only PDF is judged (its pages rendered);
    every other document is unreadable, so what the guard cannot see never passes.
    """
    head = bytes(head[:DOCUMENT_HEAD])
    if b"%PDF-" in head:
        return "PDF"
    for magic, name in _DOC_MAGIC:
        if head.startswith(magic):
            return name
    return _markup(head)


def _markup(head: bytes) -> str | None:
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16: markup read through its BOM
        text = head.decode("utf-16", errors="ignore").encode("ascii", errors="ignore")
    else:
        text = head.removeprefix(b"\xef\xbb\xbf")
    low = text.lstrip().lower()
    if not low.startswith(b"<"):  # prose that embeds active markup is still markup
        found = [tag for tag in _ACTIVE_TAGS if tag in low]
        if not found:
            return None
        return "SVG" if found == [b"<svg"] else "HTML"
    if b"<svg" in low:
        return "SVG"
    if low.startswith(_HTML_TAGS) or b"<html" in low:
        return "HTML"
    if low.startswith((b"<?xml", b"<!--", b"<!doctype")):
        return "XML"
    return None


def describe_binary(head: bytes) -> str | None:
    """``a PNG image``, ``a PDF document``... for a file that should have been text, else None.

    Only binary kinds are named (markup and RTF are text to a text reader)."""
    name = sniff_format(head)
    if name is not None:
        article = "an" if name[0] in "AEIOU" else "a"
        return f"{article} {name} image"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array"
    if head.startswith(b"%PDF"):
        return describe_document("PDF")
    doc = sniff_document(head[:8])
    return describe_document(doc) if doc in ("ZIP", "OLE", "DJVU") else None


def describe_document(kind: str) -> str:
    """``a PDF document``, ``a ZIP archive (docx, ...)``: a sniffed kind, for messages."""
    return _DOC_NAMES.get(kind, f"a {kind} document")
