"""Turn whatever a user hands us into judged RGB frames, and say what may be forwarded.

Accepted sources: a ``PIL.Image``, a path, raw bytes, a base64 string, a ``data:`` URL, and
(only when allowed) an ``http(s)`` URL. Every failure is an :class:`ImageInputError` whose
message says what was wrong and how to fix it; the guard turns it into a fail-closed verdict
unless ``on_error`` says otherwise.

Where the bytes come from is :mod:`.sources` (one reader per kind of source: a path only
from the application, opened non-blocking and checked with ``fstat``); turning them into
judged pixels is :mod:`._decode` (a format allowlist, record budgets, pixel checks before
every frame is decoded, every parser error typed; PDFs through :mod:`._document`); what is
forwarded is rebuilt from the judged pixels by :mod:`._reconstruct`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Union

from PIL import Image

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images._pixels import decode_bytes, decode_pil, to_rgb
from safeclip_guardrail.images._reconstruct import JpegTables, original_problem, reconstruct
from safeclip_guardrail.images.sources import (
    EncodedImage,
    ImageFetcher,
    from_application_string,
    from_bytes,
    from_path,
)

__all__ = [
    "DecodedImage",
    "ImageSource",
    "decode_image",
    "describe_source",
    "forward_image",
    "read_image_bytes",
    "to_rgb",
]

ImageSource = Union[Image.Image, str, bytes, bytearray, memoryview, "os.PathLike[str]", EncodedImage]
"""Anything :func:`decode_image` accepts (a ``str`` may be a path: trusted callers only)."""

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}
"""Media type of the formats whose original bytes may be forwarded (the opt-in)."""

_DEFAULT_OPTIONS = ImageOptions()


@dataclass(frozen=True)
class DecodedImage:
    """Decoded RGB frames of one image and the hash that keys the verdict cache."""

    frames: tuple[Image.Image, ...]
    sha256: str
    source: str
    data: bytes | None = None
    """The encoded bytes that were judged (None for an in-memory PIL image)."""
    format: str | None = None
    """Pillow's name for the encoded format (``PNG``, ``JPEG``...), ``PDF`` for a document,
    None for PIL input."""
    faithful: bool = False
    """True when any plain decoder of ``data`` sees exactly the judged frames' pixels: 8-bit
    RGB, grey or palette without transparency, no EXIF rotation, no CMYK/ICC conversion, no
    frames past the judged ones. (Other pictures the bytes may carry are not pixels of the
    judged frames: see :attr:`original_ok`.)"""
    pixels: int = 0
    """Pixels decoded, summed over frames (as declared, before any JPEG draft scaling)."""
    primary: tuple[Image.Image, ...] | None = None
    """One reading per frame, the one :func:`forward_image` sends (None: all of ``frames``).
    ``frames`` may hold several readings of one frame where decoders disagree (transparency:
    composited over white, and with the alpha dropped); all are judged, the first is sent."""
    jpeg: JpegTables | None = None
    """A JPEG source's quantisation, reused when its judged pixels are re-encoded."""
    webp_lossy: bool = False
    """The source was a lossy WebP: rebuilt as a WebP (quality 90)."""
    labels: tuple[str, ...] | None = None
    """What each frame is where frames are not plain frames (a PDF: ``page 2``,
    ``page 2, picture 1``); None for pictures."""
    original_ok: bool = False
    """``ImageOptions.forward_original`` was asked for and the original bytes hold only the
    judged picture (:func:`~safeclip_guardrail.images._reconstruct.original_problem`)."""

    @property
    def image(self) -> Image.Image:
        return self.frames[0]


def forward_image(decoded: DecodedImage) -> EncodedImage:
    """What may be sent on to a model after ``decoded`` was judged.

    A picture is rebuilt from its judged pixels (content disarm and reconstruction): one
    picture, the first reading of each judged frame, no metadata, thumbnails, trailing bytes,
    unjudged frames or transparency; a JPEG with its own quantisation, a lossy WebP as a
    WebP, anything else as PNG (an animated PNG when several frames were judged). Its
    original bytes only where ``ImageOptions.forward_original`` asked for them and the
    decode was unambiguous (:attr:`DecodedImage.original_ok`). A judged PDF is forwarded as
    its original bytes, as ``application/pdf`` (docs/security.md says what that covers).
    """
    if decoded.format == "PDF" and decoded.data is not None:
        return EncodedImage(decoded.data, decoded.source, "application/pdf")
    mime = _MIME.get(decoded.format or "")
    if decoded.original_ok and decoded.data is not None and mime is not None:
        return EncodedImage(decoded.data, decoded.source, mime)
    data, mime = reconstruct(decoded.primary or decoded.frames, jpeg=decoded.jpeg,
                             webp=decoded.webp_lossy)
    return EncodedImage(data, decoded.source, mime)


def describe_source(source: object) -> str:
    """A short, safe description of an image source for messages (never a whole payload)."""
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, EncodedImage):
        return source.source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, os.PathLike):
        try:
            text = os.fsdecode(os.fspath(source))
        except (TypeError, ValueError):
            return f"<{type(source).__name__}>"
        return text if len(text) <= 200 else f"<path, {len(text)} chars>"
    if isinstance(source, str):
        if source.startswith("data:"):
            return f"<data URL, {len(source)} chars>"
        if len(source) > 200:
            return f"<string, {len(source)} chars>"
        return source
    return f"<{type(source).__name__}>"


def decode_image(source: ImageSource, options: ImageOptions | None = None, *,
                 draft_size: int | None = None, pixel_budget: int | None = None,
                 fetcher: ImageFetcher | None = None) -> DecodedImage:
    """Decode ``source`` into RGB frames, enforcing the limits in ``options``.

    ``draft_size``: a still JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, by libjpeg's
    DCT scaling) as long as both sides stay >= ``draft_size``. Decoding a photo at half
    scale costs a fraction of the full decode, and an encoder that resizes to
    ``draft_size`` anyway sees nearly the same pixels. None (default) decodes at full size.
    The pixel limits are checked on the declared size first, as always; the SHA-256 of
    encoded input is that of its bytes, so verdict caching is unaffected.

    ``pixel_budget``: decoded pixels the caller may still spend (a request's share of
    ``ImageOptions.max_request_pixels``); an image that needs more is refused before the
    frame that would break it is decoded.
    """
    opts = options or _DEFAULT_OPTIONS
    desc = describe_source(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, opts, desc, budget=pixel_budget)
    data = read_image_bytes(source, opts, fetcher=fetcher)
    return _from_bytes(data, opts, desc, draft_size=draft_size, budget=pixel_budget)


def read_image_bytes(source: ImageSource, options: ImageOptions | None = None, *,
                     fetcher: ImageFetcher | None = None) -> bytes:
    """The encoded bytes of a path / bytes / base64 / data URL / URL source, read by the one
    reader of :mod:`.sources` for that kind of source (a URL through ``fetcher``)."""
    opts = options or _DEFAULT_OPTIONS
    if isinstance(source, EncodedImage):
        return from_bytes(source.data, source=source.source, options=opts).data
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_bytes(source, options=opts).data
    if isinstance(source, os.PathLike):
        return from_path(source, options=opts).data
    if isinstance(source, str):
        return from_application_string(source, options=opts, fetcher=fetcher).data
    msg = (f"unsupported image input of type {type(source).__name__}; pass a PIL image, a path, "
           "bytes, a base64 string or a data URL")
    raise ImageInputError(msg, source=describe_source(source))


def _from_bytes(data: bytes, opts: ImageOptions, desc: str, *,
                draft_size: int | None = None, budget: int | None = None) -> DecodedImage:
    digest = hashlib.sha256(data).hexdigest()
    out = decode_bytes(data, opts, desc, draft_size=draft_size, budget=budget)
    original_ok = (opts.forward_original and out.faithful
                   and original_problem(data, out.format) is None)
    return DecodedImage(frames=out.frames, sha256=digest, source=desc, data=data,
                        format=out.format, faithful=out.faithful, pixels=out.pixels,
                        primary=out.primary, jpeg=out.jpeg, webp_lossy=out.webp_lossy,
                        labels=out.labels, original_ok=original_ok)


def _from_pil(img: Image.Image, opts: ImageOptions, desc: str, *,
              budget: int | None = None) -> DecodedImage:
    out = decode_pil(img, opts, desc, budget=budget)
    h = hashlib.sha256()
    for f in out.frames:
        h.update(f"{f.size[0]}x{f.size[1]}".encode())
        h.update(f.tobytes())
    return DecodedImage(frames=out.frames, sha256=h.hexdigest(), source=desc, data=None,
                        format=out.format, faithful=False, pixels=out.pixels,
                        primary=out.primary, jpeg=out.jpeg)
