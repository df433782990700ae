"""What one value found in a message is: a picture, a PDF, text, or a payload nobody can check.

The extraction layer walks everything a provider converter could send and asks this module
about each value. The answer is deny-by-default: bytes, a base64 string or a data URL whose
content is not a picture, a PDF or plain text is **unreadable** (the default policy blocks
it), with a reason that says what it is — an audio clip, a video, a ZIP-based office
document, binary data of an unknown format. Only magic bytes are read here; nothing is
decoded beyond base64.

Three kinds of field, because the same string means different things in each:

- **payload fields** (sources, unknown fields, extra message fields): a data URL, a URL, a
  long base64 string of binary data, or bytes is a payload and must be accounted for;
- **text fields** (a text block's ``text``, tool-call arguments, names, ids): text stays
  text, except a whole string that is a picture or a PDF (data URL or base64), which is
  judged, and one that is a document or media file of a known format (a ZIP, an SVG, a
  WAV...), which is unreadable — a model never renders base64 prose, but a converter may;
- **opaque fields** (provider signatures, encrypted reasoning, which only their provider
  reads): only a whole picture or PDF counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from safeclip_guardrail._sniff import describe_document, sniff_document, sniff_format
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.images.sources import EncodedImage, inline_bytes

__all__ = [
    "PDF_MIME",
    "TEXT",
    "Mode",
    "Payload",
    "classify_bytes",
    "classify_inline",
    "classify_string",
    "is_plain_text",
    "sniff_media",
]

Kind = Literal["picture", "pdf", "text", "unreadable"]
Mode = Literal["payload", "text", "opaque"]
"""The kind of field a value sits in: a payload field, a text field, an opaque provider token."""

PDF_MIME = "application/pdf"

_B64 = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://")
_MIN_B64 = 16
"""Shorter strings are never read as base64 (words, short ids)."""
_MIN_BINARY_B64 = 64
"""In payload fields, base64 of unknown binary data shorter than this is taken for an id."""
_HEX = re.compile(r"[0-9A-Fa-f]+")
_PATH = re.compile(r"(?:/|~/|\./|\.\./|\\\\|[A-Za-z]:[\\/])\S*")
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}


@dataclass(frozen=True)
class Payload:
    """What a value is. ``image`` holds the bytes to judge (a picture, or a PDF whose
    ``mime_type`` is ``application/pdf``); ``reason`` says why an unreadable one cannot be."""

    kind: Kind
    image: EncodedImage | None = None
    reason: str = ""
    recognized: bool = False
    """An unreadable payload of a known format (a document, audio, video), not unknown bytes."""


TEXT = Payload("text")



def sniff_media(head: bytes) -> str | None:
    """``WAV audio``, ``MP4 video``... for audio and video files, else None (magic bytes)."""
    head = bytes(head[:64])
    if head[:4] == b"RIFF":
        return {b"WAVE": "WAV audio", b"AVI ": "AVI video"}.get(head[8:12])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF audio"
    if head.startswith((b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9")):
        return "MP3/AAC audio"
    if head.startswith(b"OggS"):
        return "Ogg audio/video"
    if head.startswith(b"fLaC"):
        return "FLAC audio"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "WebM/Matroska video"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "M4A audio" if brand in (b"M4A ", b"M4B ") else "MP4/QuickTime video"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "MPEG video"
    return None


def _text_picture(data: bytes) -> str | None:
    """Pictures written as text (Pillow reads them; a provider never should)."""
    head = data[:16].lstrip()
    if head[:2] in (b"P1", b"P2", b"P3") and head[2:3].isspace():
        return "a netpbm picture (ASCII)"
    if head.startswith(b"#define") and b"_width" in data[:256]:
        return "an XBM picture"
    if head.startswith(b"/* XPM */"):
        return "an XPM picture"
    return None


def is_plain_text(data: bytes) -> bool:
    """UTF-8 text without NUL or other control bytes (tabs and line breaks allowed)."""
    if any(b in _CONTROL for b in data[:4096]) or b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def classify_bytes(data: bytes, *, source: str) -> Payload:
    """A picture, a PDF, plain text, or unreadable (with the reason)."""
    if sniff_format(data) is not None:
        return Payload("picture", EncodedImage(data, source))
    document = sniff_document(data)
    if document == "PDF":
        return Payload("pdf", EncodedImage(data, source, PDF_MIME))
    if document is not None:
        return Payload("unreadable", recognized=True, reason=(
            f"{describe_document(document)} cannot be checked for "
            "pictures (only PDF documents are rendered and judged); convert it to PDF, or send "
            "its pictures as image blocks"))
    media = sniff_media(data)
    if media is not None:
        return Payload("unreadable", recognized=True, reason=_media_reason(media))
    picture = _text_picture(data)
    if picture is not None:
        return Payload("unreadable", recognized=True,
                       reason=f"{picture} cannot be checked; send it as PNG or JPEG")
    if is_plain_text(data):
        return TEXT
    return Payload("unreadable", reason=(
        f"binary data of an unknown format ({len(data)} bytes) cannot be checked for pictures; "
        "send pictures as PNG/JPEG/WebP/GIF and documents as PDF"))


def _media_reason(label: str) -> str:
    if "video" in label and "audio" not in label:
        return (f"the payload is {label}, which is not judged: judging video frames is a later "
                "feature; send the frames you want the model to see as images")
    return (f"the payload is {label}, which is not judged: this guard judges pictures, and "
            "audio cannot be checked for them")


def classify_string(value: str, *, mode: Mode, options: ImageOptions) -> Payload:
    """What a string is, by the kind of field it sits in (see the module docstring).

    ``payload``: a URL, a data URL, a file path and long base64 of anything but text are
    payloads. ``text``: only a whole string that is a picture or a PDF is judged, and one
    that is a document or media file of a known format is unreadable. ``opaque`` (provider
    signatures, encrypted reasoning): only a whole picture or PDF counts."""
    text_field = mode != "payload"
    s = value.strip()
    if len(s) < 5:
        return TEXT
    if s[:5].lower() == "data:":
        return _data_url(s, mode=mode, options=options)
    if _SCHEME.match(s) or s[:5].lower() == "file:":
        if text_field:
            return TEXT
        scheme = s.split(":", 1)[0].lower()
        return Payload("unreadable", reason=(
            f"a {scheme} URL outside an image source is not fetched and cannot be checked; "
            "send the content inline (an image block with base64 data)"))
    found = _base64(s, mode=mode, options=options)
    if found.kind != "text":
        return found
    if not text_field and _PATH.fullmatch(s):
        return Payload("unreadable", reason=(
            "a file path is never read from a message, and a converter that reads it would send "
            "a file nobody checked; load the file in your application and send its bytes"))
    return TEXT


def _base64(s: str, *, mode: Mode, options: ImageOptions) -> Payload:
    text_field = mode != "payload"
    if len(s) < _MIN_B64 or not _B64.fullmatch("".join(s[:96].split())[:64]):
        return TEXT
    compact = "".join(s.split())
    if not _B64.fullmatch(compact):
        return TEXT
    if len(compact) > options.max_bytes * 4 // 3 + 4:
        return Payload("unreadable", reason=(
            f"a base64 value of {len(compact)} characters is over the limit of "
            f"{options.max_bytes} bytes; raise ImageOptions.max_bytes if this is expected"))
    if text_field and not _may_be_a_file(compact):
        return TEXT
    data = inline_bytes(compact)
    if not data:
        return TEXT
    found = classify_bytes(data, source=f"<base64, {len(compact)} chars>")
    if found.kind in ("picture", "pdf") or (mode == "text" and found.recognized):
        return found
    if (text_field or found.kind == "text" or " " in s or len(compact) < _MIN_BINARY_B64
            or _HEX.fullmatch(compact)):
        return TEXT  # prose, an id, a hex digest, or base64 of text: nothing a model renders
    return found


def _may_be_a_file(compact: str) -> bool:
    """Cheap pre-check on the first 1368 characters (1 KiB decoded) before decoding it all."""
    head = inline_bytes(compact[:1368])
    return head is not None and (sniff_format(head) is not None or sniff_document(head) is not None
                                 or sniff_media(head) is not None or _text_picture(head) is not None)


def _data_url(s: str, *, mode: Mode, options: ImageOptions) -> Payload:
    text_field = mode != "payload"
    header, sep, body = s.partition(",")
    mime = header[5:].split(";", 1)[0].strip().lower()
    image_mime = mime.startswith("image/")
    if not sep or ";base64" not in header.lower():
        if text_field and not image_mime:
            return TEXT
        return Payload("unreadable", reason=(
            f"a data URL that is not base64-encoded (media type {mime or 'none'!r}) cannot be "
            "checked; send 'data:<mime>;base64,<data>'"))
    if len(body) > options.max_bytes * 4 // 3 + 4:
        return Payload("unreadable", reason=(
            f"a data URL of {len(s)} characters is over the limit of {options.max_bytes} bytes; "
            "raise ImageOptions.max_bytes if this is expected"))
    data = inline_bytes(body)
    desc = f"<data URL, {len(s)} chars>"
    if data is None:
        if text_field and not image_mime:
            return TEXT
        return Payload("unreadable", reason="a data URL whose payload is not valid base64")
    found = classify_bytes(data, source=desc)
    if found.kind in ("picture", "pdf") or (mode != "opaque" and found.recognized):
        return found
    if image_mime:  # declared a picture: judged as one (and fails closed if it is not)
        return Payload("picture", EncodedImage(data, desc))
    if found.kind == "text" or (text_field and not (mode == "text" and found.recognized)):
        return TEXT
    return found


def classify_inline(value: object, *, options: ImageOptions) -> Payload:
    """The payload of a file or media block's inline source: bytes, base64 or a data URL.

    Unlike :func:`classify_string` nothing here is taken for an id: the field is a source.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        desc = f"<{len(data)} bytes>"
    elif isinstance(value, str):
        s = value.strip()
        body = s
        if s[:5].lower() == "data:":
            header, sep, body = s.partition(",")
            if not sep or ";base64" not in header.lower():
                return Payload("unreadable", reason=(
                    "a data URL that is not base64-encoded cannot be checked; send "
                    "'data:<mime>;base64,<data>'"))
        if len(body) > options.max_bytes * 4 // 3 + 4:
            return Payload("unreadable", reason=(
                f"an inline payload of {len(s)} characters is over the limit of "
                f"{options.max_bytes} bytes; raise ImageOptions.max_bytes if this is expected"))
        decoded = inline_bytes(body)
        if decoded is None:
            return Payload("unreadable", reason="the inline payload is not valid base64")
        data, desc = decoded, f"<inline data, {len(s)} chars>"
    else:
        return Payload("unreadable", reason=f"an inline payload of type {type(value).__name__} "
                       "cannot be read; send base64 or a data URL")
    if not data:
        return Payload("unreadable", reason="the inline payload is empty")
    if len(data) > options.max_bytes:
        return Payload("unreadable", reason=(
            f"an inline payload of {len(data)} bytes is over the limit of {options.max_bytes} "
            "bytes; raise ImageOptions.max_bytes if this is expected"))
    return classify_bytes(data, source=desc)
