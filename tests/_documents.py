"""Payloads that are not plain pictures, generated in the tests (nothing binary in git).

A PDF holding a picture (Pillow writes one-image PDFs), office documents (a ZIP with the
picture under ``word/media/``), SVG and HTML pages embedding it as a data URL, an OLE and
an RTF header, real audio (a WAV written by the ``wave`` module) and video headers (MP4,
WebM). Used by the extraction unit tests, the placement matrix and the fuzzer.
"""

from __future__ import annotations

import base64
import io
import wave
import zipfile

from PIL import Image


def png_of(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def pdf_of(picture: bytes) -> bytes:
    """A one-page PDF whose page is ``picture`` (Pillow's PDF writer)."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(picture)).convert("RGB").save(buf, format="PDF")
    return buf.getvalue()


def docx_of(picture: bytes) -> bytes:
    """A ZIP shaped like a .docx, with ``picture`` as its embedded media."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<?xml version='1.0'?><Types/>")
        z.writestr("word/document.xml", "<w:document/>")
        z.writestr("word/media/image1.png", picture)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def svg_of(picture: bytes) -> bytes:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><image '
            f'href="{data_url(picture)}" width="8" height="8"/></svg>').encode()


def html_of(picture: bytes) -> bytes:
    return f'<!DOCTYPE html><html><body><img src="{data_url(picture)}"></body></html>'.encode()


OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
"""The header of an OLE compound file (.doc, .xls, .ppt)."""
RTF = b"{\\rtf1\\ansi {\\pict\\pngblip 89504e47}}"
TEXT_FILE = b"A plain text file.\nIt has two lines, and nothing else.\n"


def wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    return buf.getvalue()


MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64)
"""The start of an MP4 file (an ``ftyp`` box of brand isom)."""
WEBM = b"\x1aE\xdf\xa3\x9fB\x86\x81\x01" + bytes(64)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
