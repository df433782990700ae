"""Turn whatever a user hands us into decoded RGB images, safely.

Accepted sources: a ``PIL.Image``, a path, raw bytes, a base64 string, a ``data:`` URL, and
(only when allowed) an ``http(s)`` URL. Every failure is an :class:`ImageInputError` whose
message says what was wrong and how to fix it; the guard turns it into a fail-closed verdict
unless ``on_error`` says otherwise.

Reading the bytes is here (paths are opened non-blocking, regular files only, capped at
``max_bytes``); turning them into judged pixels is :mod:`._decode` (a format allowlist,
record budgets, pixel checks before every frame is decoded, every parser error typed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from PIL import Image

from safeclip_guardrail._decode import decode_bytes, decode_pil, to_rgb
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.sources import EncodedImage, ImageFetcher, fetch_remote

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

_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
         "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff", "AVIF": "image/avif",
         "HEIF": "image/heif"}
"""Media type of each Pillow format the guard forwards as is."""

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
    """Pillow's name for the encoded format (``PNG``, ``JPEG``...), None for PIL input."""
    faithful: bool = False
    """True when any plain decoder of ``data`` sees exactly the judged frames: 8-bit RGB,
    grey or palette without transparency, no EXIF rotation, no CMYK/ICC conversion, no
    frames past the judged ones. When False the judged pixels, not ``data``, are what may be
    forwarded (:func:`forward_image`)."""
    pixels: int = 0
    """Pixels decoded, summed over frames (as declared, before any JPEG draft scaling)."""
    primary: tuple[Image.Image, ...] | None = None
    """One reading per frame, the one :func:`forward_image` sends (None: all of ``frames``).
    ``frames`` may hold several readings of one frame where decoders disagree (transparency:
    composited over white, and with the alpha dropped); all are judged, the first is sent."""

    @property
    def image(self) -> Image.Image:
        return self.frames[0]


def forward_image(decoded: DecodedImage) -> EncodedImage:
    """What may be sent on to a model after ``decoded`` was judged.

    The original bytes when the decode was unambiguous (same file, no re-encoding); else the
    judged pixels re-encoded losslessly as PNG (every judged frame, as an animated PNG when
    there are several), so no other decoder can see other pixels than the guard did.
    """
    mime = _MIME.get(decoded.format or "")
    if decoded.faithful and decoded.data is not None and mime is not None:
        return EncodedImage(decoded.data, decoded.source, mime)
    buf = io.BytesIO()
    first, *rest = decoded.primary or decoded.frames
    if rest:
        first.save(buf, format="PNG", save_all=True, append_images=rest)
    else:
        first.save(buf, format="PNG")
    return EncodedImage(buf.getvalue(), decoded.source, "image/png")


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
    """The encoded bytes of a path / bytes / base64 / data URL / URL source (a URL through
    :func:`~safeclip_guardrail.sources.fetch_remote` with ``fetcher``)."""
    opts = options or _DEFAULT_OPTIONS
    desc = describe_source(source)
    if isinstance(source, EncodedImage):
        data = source.data
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, os.PathLike):
        data = _read_path(source, opts)
    elif isinstance(source, str):
        data = _read_string(source, opts, fetcher)
    else:
        raise ImageInputError(
            f"unsupported image input of type {type(source).__name__}; pass a PIL image, a "
            "path, bytes, a base64 string or a data URL",
            source=desc,
        )
    if not data:
        raise ImageInputError(f"image {desc} is empty (0 bytes)", source=desc)
    if len(data) > opts.max_bytes:
        raise ImageInputError(
            f"image {desc} is {len(data)} bytes, over the limit of {opts.max_bytes}; "
            "raise ImageOptions.max_bytes if this is expected",
            source=desc,
        )
    return data


def _read_string(source: str, opts: ImageOptions, fetcher: ImageFetcher | None) -> bytes:
    s = source.strip()
    if s.startswith("data:"):
        return _decode_data_url(s)
    lower = s[:16].lower()
    if lower.startswith(("http://", "https://")):
        return fetch_remote(s, options=opts, fetcher=fetcher)
    if "://" in s[:16]:
        scheme = s.split("://", 1)[0]
        raise ImageInputError(
            f"unsupported URL scheme {scheme!r}; only http(s) URLs (when allowed), data URLs, "
            "paths, bytes and base64 are accepted",
            source=describe_source(s),
        )
    if len(s) < 1024 and ("/" in s or "\\" in s or "." in s[-6:]) and _looks_like_path(s):
        return _read_path(Path(s), opts)
    try:
        data = base64.b64decode(_pad(s), validate=True)
    except (binascii.Error, ValueError):
        if len(s) < 1024:
            raise ImageInputError(
                f"{s!r} is not an existing file, a URL, a data URL, or base64 image data",
                source=describe_source(s),
            ) from None
        raise ImageInputError(
            "string is neither a path nor valid base64 image data", source=describe_source(s)
        ) from None
    return data


def _looks_like_path(s: str) -> bool:
    try:
        p = Path(s)
        return p.exists() or p.suffix.lower() in {
            ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff",
        }
    except (OSError, ValueError):
        return False


def _pad(s: str) -> str:
    s = "".join(s.split())
    return s + "=" * (-len(s) % 4)


def _decode_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise ImageInputError("malformed data URL: no ',' separating header and data",
                              source=describe_source(url))
    mime = header[5:].split(";", 1)[0].strip().lower()
    if mime and not mime.startswith("image/"):
        raise ImageInputError(
            f"data URL has media type {mime!r}, not an image", source=describe_source(url)
        )
    if ";base64" not in header.lower():
        raise ImageInputError("data URL is not base64-encoded (';base64' missing)",
                              source=describe_source(url))
    try:
        return base64.b64decode(_pad(payload), validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("data URL payload is not valid base64",
                              source=describe_source(url)) from None


def _read_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
               opts: ImageOptions) -> bytes:
    """Read a regular file, capped at ``max_bytes``; every OS failure is an ImageInputError.

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so a
    FIFO or device cannot stall the guard and a file swapped after a check is still caught.
    """
    try:
        raw = os.fspath(path)
        name = os.fsdecode(raw)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise ImageInputError(f"invalid image path {path!r}: {exc}", source=repr(path)[:200]) from None
    shown = name if name.isprintable() else repr(name)[1:-1]  # no control chars in messages
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(raw, flags)
    except FileNotFoundError:
        raise ImageInputError(f"image file not found: {shown}", source=shown) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ImageInputError(
            f"cannot open image file {shown}: {reason}; check the path and its permissions",
            source=shown,
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageInputError(f"not a regular file: {shown}", source=shown)
        if st.st_size > opts.max_bytes:
            raise ImageInputError(
                f"image file {shown} is {st.st_size} bytes, over the limit of {opts.max_bytes}",
                source=shown,
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(opts.max_bytes + 1)
    except OSError as exc:
        raise ImageInputError(f"cannot read {shown}: {exc.strerror or exc}", source=shown) from None
    finally:
        os.close(fd)
    if len(data) > opts.max_bytes:
        raise ImageInputError(f"image file {shown} grew over the limit of {opts.max_bytes} bytes",
                              source=shown)
    return data


def _from_bytes(data: bytes, opts: ImageOptions, desc: str, *,
                draft_size: int | None = None, budget: int | None = None) -> DecodedImage:
    digest = hashlib.sha256(data).hexdigest()
    out = decode_bytes(data, opts, desc, draft_size=draft_size, budget=budget)
    return DecodedImage(frames=out.frames, sha256=digest, source=desc, data=data,
                        format=out.format, faithful=out.faithful, pixels=out.pixels,
                        primary=out.primary)


def _from_pil(img: Image.Image, opts: ImageOptions, desc: str, *,
              budget: int | None = None) -> DecodedImage:
    out = decode_pil(img, opts, desc, budget=budget)
    h = hashlib.sha256()
    for f in out.frames:
        h.update(f"{f.size[0]}x{f.size[1]}".encode())
        h.update(f.tobytes())
    return DecodedImage(frames=out.frames, sha256=h.hexdigest(), source=desc, data=None,
                        format=out.format, faithful=False, pixels=out.pixels,
                        primary=out.primary)
