"""Turn whatever a user hands us into decoded RGB images, safely.

Accepted sources: a ``PIL.Image``, a path, raw bytes, a base64 string, a ``data:`` URL, and
(only when allowed) an ``http(s)`` URL. Every failure is an :class:`ImageInputError` whose
message says what was wrong and how to fix it; the guard turns it into a fail-closed verdict
unless ``on_error`` says otherwise.

Safety measures: the pixel count is read from the header and checked *before* decoding
(decompression bombs), encoded size is capped, EXIF orientation is applied, palette / alpha
/ CMYK / 16-bit images are converted to 8-bit RGB, animated images yield their first
``frames`` frames.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from PIL import Image, ImageOps, UnidentifiedImageError

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.sources import EncodedImage

__all__ = [
    "DecodedImage",
    "ImageSource",
    "decode_image",
    "describe_source",
    "forward_image",
    "read_image_bytes",
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
    """True when any plain decoder of ``data`` sees exactly the judged frames: one frame,
    8-bit RGB or grey, no alpha, no EXIF rotation, no CMYK/ICC conversion. When False the
    judged pixels, not ``data``, are what may be forwarded (:func:`forward_image`)."""

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
    first, *rest = decoded.frames
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
        return str(source)
    if isinstance(source, str):
        if source.startswith("data:"):
            return f"<data URL, {len(source)} chars>"
        if len(source) > 200:
            return f"<string, {len(source)} chars>"
        return source
    return f"<{type(source).__name__}>"


def decode_image(source: ImageSource, options: ImageOptions | None = None, *,
                 draft_size: int | None = None) -> DecodedImage:
    """Decode ``source`` into RGB frames, enforcing the limits in ``options``.

    ``draft_size``: a still JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, by libjpeg's
    DCT scaling) as long as both sides stay >= ``draft_size``. Decoding a photo at half
    scale costs a fraction of the full decode, and an encoder that resizes to
    ``draft_size`` anyway sees nearly the same pixels. None (default) decodes at full size.
    The pixel limits are checked on the declared size first, as always; the SHA-256 of
    encoded input is that of its bytes, so verdict caching is unaffected.
    """
    opts = options or _DEFAULT_OPTIONS
    desc = describe_source(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, opts, desc)
    data = read_image_bytes(source, opts)
    return _from_bytes(data, opts, desc, draft_size=draft_size)


def read_image_bytes(source: ImageSource, options: ImageOptions | None = None) -> bytes:
    """The encoded bytes of a path / bytes / base64 / data URL / URL source."""
    opts = options or _DEFAULT_OPTIONS
    desc = describe_source(source)
    if isinstance(source, EncodedImage):
        data = source.data
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, os.PathLike):
        data = _read_path(Path(source), opts)
    elif isinstance(source, str):
        data = _read_string(source, opts)
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


def _read_string(source: str, opts: ImageOptions) -> bytes:
    s = source.strip()
    if s.startswith("data:"):
        return _decode_data_url(s)
    lower = s[:16].lower()
    if lower.startswith(("http://", "https://")):
        from safeclip_guardrail._fetch import fetch_url

        return fetch_url(s, opts)
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


def _read_path(path: Path, opts: ImageOptions) -> bytes:
    if not path.exists():
        raise ImageInputError(f"image file not found: {path}", source=str(path))
    if not path.is_file():
        raise ImageInputError(f"not a regular file: {path}", source=str(path))
    size = path.stat().st_size
    if size > opts.max_bytes:
        raise ImageInputError(
            f"image file {path} is {size} bytes, over the limit of {opts.max_bytes}",
            source=str(path),
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"cannot read {path}: {exc.strerror or exc}", source=str(path)) from None


def _from_bytes(data: bytes, opts: ImageOptions, desc: str, *,
                draft_size: int | None = None) -> DecodedImage:
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            # our own max_pixels check below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageInputError(
            f"image {desc} is not in a format Pillow can decode (or it is corrupt)", source=desc
        ) from None
    except Image.DecompressionBombError:
        raise ImageInputError(f"image {desc} declares too many pixels", source=desc) from None
    except Exception as exc:
        raise ImageInputError(f"cannot open image {desc}: {exc}", source=desc) from None
    _check_pixels(img, opts, desc)
    fmt = img.format
    faithful = _unambiguous(img)
    if draft_size and draft_size > 0 and fmt in {"JPEG", "MPO"}:
        img.draft(None, (draft_size, draft_size))  # takes effect in the decode below
    frames = _frames(img, opts, desc)
    return DecodedImage(frames=frames, sha256=digest, source=desc, data=data, format=fmt,
                        faithful=faithful and len(frames) == 1)


def _unambiguous(img: Image.Image) -> bool:
    """Whether every decoder sees the same 8-bit pixels we judge (see DecodedImage.faithful)."""
    if img.mode not in {"RGB", "L"} or getattr(img, "is_animated", False):
        return False
    if "icc_profile" in img.info or "transparency" in img.info:
        return False
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        return False
    return orientation in (1, None)


def _from_pil(img: Image.Image, opts: ImageOptions, desc: str) -> DecodedImage:
    _check_pixels(img, opts, desc)
    frames = _frames(img, opts, desc)
    h = hashlib.sha256()
    for f in frames:
        h.update(f"{f.size[0]}x{f.size[1]}".encode())
        h.update(f.tobytes())
    return DecodedImage(frames=frames, sha256=h.hexdigest(), source=desc)


def _check_pixels(img: Image.Image, opts: ImageOptions, desc: str) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageInputError(f"image {desc} has no pixels ({w}x{h})", source=desc)
    if w * h > opts.max_pixels:
        raise ImageInputError(
            f"image {desc} is {w}x{h} = {w * h} pixels, over the limit of {opts.max_pixels} "
            "(possible decompression bomb); raise ImageOptions.max_pixels if it is genuine",
            source=desc,
        )


def _frames(img: Image.Image, opts: ImageOptions, desc: str) -> tuple[Image.Image, ...]:
    n = min(opts.frames, getattr(img, "n_frames", 1) or 1)
    out: list[Image.Image] = []
    try:
        for i in range(n):
            if i:
                img.seek(i)
            out.append(to_rgb(img))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if not out:
            raise ImageInputError(
                f"image {desc} is truncated or corrupt: {exc}", source=desc
            ) from None
    return tuple(out)


def to_rgb(img: Image.Image) -> Image.Image:
    """Fully decode one frame into 8-bit RGB: EXIF orientation, alpha over white, 16-bit scaled."""
    img.load()
    # broken EXIF must not make an otherwise readable image unreadable
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        arr8 = np.clip(arr * scale, 0, 255).astype("uint8")
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "F":
        return img.convert("L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "PA", "La", "RGBa"}:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
