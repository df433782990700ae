"""Encoded bytes to judged RGB frames: a total decoder with bounded time and memory.

Total: every exception raised by Pillow or one of its plugins while opening, seeking or
loading becomes an :class:`ImageInputError` naming the format, so one hostile image costs a
verdict, never a batch.

Bounded: only formats on ``ImageOptions.formats`` are opened (Pillow is told which parsers it
may try, so EPS never reaches Ghostscript); container records are counted before Pillow
walks them (:mod:`._container`); every frame's size is checked after its header is read and
before its pixels are decoded, per frame and summed over frames; frames are never counted
up front (a GIF of two million one-pixel frames costs nothing when one frame is judged).

Faithful: the judged pixels are the ones a plain RGB loader sees. Where loaders disagree,
all readings are judged (an image with transparency: composited over white *and* with the
alpha dropped, which is how a picture hidden behind alpha = 0 shows), or the fixed reading
loaders share is used (16-bit: the high byte, never a rescale by the image's maximum), and
``faithful`` says so, so callers forward the judged pixels rather than the original bytes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from safeclip_guardrail._sniff import DOCUMENT_HEAD, describe_document, sniff_document, sniff_format
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images._container import check_container
from safeclip_guardrail.images._document import decode_pdf
from safeclip_guardrail.images._reconstruct import JpegTables, jpeg_tables, lossy_webp

__all__ = ["Decoded", "decode_bytes", "decode_pil", "to_rgb"]

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image is an error, never half judged
_FAMILY = {"MPO": "JPEG"}  # Pillow's JPEG opener returns MPO for multi-picture JPEGs
_DETAIL = 160


@dataclass(frozen=True)
class Decoded:
    """Judged frames of one image and what a caller needs to know about them."""

    frames: tuple[Image.Image, ...]
    """RGB views in judging order (one per frame, two for a frame with transparency)."""
    format: str | None
    """Pillow's name of the encoded format (None for a caller's PIL image without one)."""
    faithful: bool
    """True when a plain RGB decoder of the encoded bytes sees exactly these frames."""
    pixels: int
    """Pixels decoded (summed over frames; views are not counted twice)."""
    primary: tuple[Image.Image, ...] | None = None
    """The first reading of each frame, when ``frames`` holds more than one per frame."""
    jpeg: JpegTables | None = None
    """A JPEG source's quantisation, reused when its judged pixels are re-encoded."""
    webp_lossy: bool = False
    """The source was a lossy WebP (rebuilt as one, not as a 16x larger PNG)."""
    labels: tuple[str, ...] | None = None
    """What each frame is, where frames are not plain frames (``page 2``, ``page 2, picture 1``)."""


def _allowed(opts: ImageOptions) -> tuple[str, ...]:
    """Openers of the allowed formats that this Pillow knows, in Pillow's probing order."""
    Image.init()
    wanted = set(opts.formats)
    return tuple(f for f in Image.ID
                 if f in wanted or any(_FAMILY.get(w) == f for w in wanted))


def _format_allowed(fmt: str, opts: ImageOptions) -> bool:
    """An opened format is allowed when listed, or when its family is (JPEG allows MPO)."""
    return fmt in opts.formats or _FAMILY.get(fmt) in opts.formats


def decode_bytes(data: bytes, opts: ImageOptions, desc: str, *,
                 draft_size: int | None = None, budget: int | None = None) -> Decoded:
    """Decode encoded ``data`` (size limits on the bytes are the caller's).

    Bytes that start like no picture but like a document go to the document path: a PDF is
    rendered page by page (:mod:`._document`), any other document is unreadable."""
    if sniff_format(data[:32]) is None:
        kind = sniff_document(data[:DOCUMENT_HEAD])
        if kind == "PDF":
            doc = decode_pdf(data, opts, desc, budget=budget,
                             decode_picture=lambda blob, where: _carved(blob, opts, where))
            return Decoded(frames=doc.frames, format="PDF", faithful=False, pixels=doc.pixels,
                           labels=doc.labels)
        if kind is not None:
            msg = (f"{desc} is {describe_document(kind)}, which the guard cannot judge (only "
                   "pictures and PDF documents are); send its pictures as images or convert it "
                   "to PDF")
            raise ImageInputError(msg, source=desc)
    allowed = _allowed(opts)
    check_container(data, opts, desc)
    opened: list[str] = []

    def label() -> str:
        return opened[0] if opened else sniff_format(data[:32]) or "image"

    return _guarded(label, desc, lambda: _open_and_decode(data, allowed, opts, desc, draft_size,
                                                          budget, opened))


def _carved(blob: bytes, opts: ImageOptions, desc: str) -> tuple[Image.Image, ...]:
    """Every reading of a JPEG or PNG cut out of a document (its first frame)."""
    return decode_bytes(blob, opts.model_copy(update={"frames": 1}), desc).frames


def decode_pil(img: Image.Image, opts: ImageOptions, desc: str, *,
               budget: int | None = None) -> Decoded:
    """Decode a caller's PIL image (trusted as an object, still bounded in pixels)."""
    fmt = getattr(img, "format", None)
    start = img.tell()
    try:
        tables = jpeg_tables(img) if fmt in {"JPEG", "MPO"} else None
        return _guarded(lambda: fmt or img.mode, desc,
                        lambda: _frames(img, opts, desc, fmt, budget, probe=False, jpeg=tables))
    finally:  # the caller's image stays at the frame it was at
        with contextlib.suppress(Exception):
            if img.tell() != start:
                img.seek(start)


def _guarded(label: Callable[[], str], desc: str, work: Callable[[], Decoded]) -> Decoded:
    try:
        with warnings.catch_warnings():
            # our pixel limits replace Pillow's bomb warning, and a hostile file must not
            # flood logs with Pillow's "corrupt data" warnings: failures are errors here
            warnings.simplefilter("ignore")
            return work()
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        msg = f"{label()} image {desc} declares too many pixels"
        raise ImageInputError(msg, source=desc) from None
    except Exception as exc:  # the decode is total: any parser failure is this image's error
        detail = f"{type(exc).__name__}: {exc}"
        if len(detail) > _DETAIL:
            detail = detail[:_DETAIL - 3] + "..."
        msg = (f"{label()} image {desc} is truncated or corrupt ({detail}); re-encode it or send "
               "another copy")
        raise ImageInputError(msg, source=desc) from None


def _open_and_decode(data: bytes, allowed: tuple[str, ...], opts: ImageOptions, desc: str,
                     draft_size: int | None, budget: int | None, opened: list[str]) -> Decoded:
    try:
        img = Image.open(io.BytesIO(data), formats=allowed)  # only allowed parsers are tried
    except UnidentifiedImageError:
        sniffed = sniff_format(data[:32])
        if sniffed is not None and sniffed not in allowed:
            msg = (f"image {desc} is {sniffed}, which is not an allowed image format (allowed: "
                   f"{', '.join(opts.formats)}); convert it to PNG or JPEG, or add {sniffed!r} to "
                   "ImageOptions.formats if you trust Pillow's parser for it")
            raise ImageInputError(msg, source=desc) from None
        msg = f"image {desc} is not in a format Pillow can decode (or it is corrupt)"
        raise ImageInputError(msg, source=desc) from None
    fmt = img.format or "?"
    opened.append(fmt)
    if not _format_allowed(fmt, opts):  # an opener that hands over to another format
        msg = f"image {desc} opened as {fmt}, which is not allowed"
        raise ImageInputError(msg, source=desc)
    tables = jpeg_tables(img) if fmt in {"JPEG", "MPO"} else None
    if draft_size and draft_size > 0 and fmt in {"JPEG", "MPO"} and opts.frames == 1:
        check_pixels(img.size, opts, desc, frame=0)  # the declared size, before draft shrinks it
        img.draft(None, (draft_size, draft_size))  # takes effect in the decode below
    out = _frames(img, opts, desc, fmt, budget, jpeg=tables)
    if fmt == "WEBP" and lossy_webp(data):
        out = replace(out, webp_lossy=True)
    return out


def check_pixels(size: tuple[int, int], opts: ImageOptions, desc: str, *, frame: int) -> int:
    """Raise when one frame of ``size`` breaks ``max_pixels``; returns its pixel count."""
    w, h = size
    where = f" (frame {frame + 1})" if frame else ""
    if w <= 0 or h <= 0:
        msg = f"image {desc}{where} has no pixels ({w}x{h})"
        raise ImageInputError(msg, source=desc)
    if w * h > opts.max_pixels:
        msg = (f"image {desc}{where} is {w}x{h} = {w * h} pixels, over the limit of "
               f"{opts.max_pixels} (possible decompression bomb); raise ImageOptions.max_pixels "
               "if it is genuine")
        raise ImageInputError(msg, source=desc)
    return w * h


def _frames(img: Image.Image, opts: ImageOptions, desc: str, fmt: str | None,
            budget: int | None = None, *, probe: bool = True,
            jpeg: JpegTables | None = None) -> Decoded:
    """Decode frames 0..frames-1 one at a time, each checked before its pixels are read.

    ``budget``: pixels the caller's request may still decode (``max_request_pixels``)."""
    views: list[Image.Image] = []
    primary: list[Image.Image] = []
    total = 0
    faithful = True
    for i in range(opts.frames):
        if i:
            try:
                img.seek(i)
            except EOFError:
                break
            except Exception:  # a broken further frame ends the image; forward what was judged
                faithful = False
                break
        n = check_pixels(img.size, opts, desc, frame=i)
        if total + n > opts.max_total_pixels:
            msg = (f"image {desc} has {total + n} pixels in its first {i + 1} frames, over the "
                   f"limit of {opts.max_total_pixels} across frames; lower ImageOptions.frames or "
                   "raise max_total_pixels")
            raise ImageInputError(msg, source=desc)
        if budget is not None and total + n > budget:
            msg = (f"image {desc} was not decoded: this request has {max(budget, 0)} of its "
                   f"max_request_pixels={opts.max_request_pixels} decoded pixels left and the image "
                   f"needs {total + n}; send it in another request or raise max_request_pixels")
            raise ImageInputError(msg, source=desc)
        total += n
        frame_views, frame_faithful = _views(img, desc)
        views.extend(frame_views)
        primary.append(frame_views[0])
        faithful = faithful and frame_faithful
    # plain decoders of an MPO see its first picture only: later ones are not "more frames"
    if faithful and probe and fmt != "MPO" and _has_more_frames(img, opts.frames):
        faithful = False
    return Decoded(frames=tuple(views), format=fmt, faithful=faithful, pixels=total,
                   primary=tuple(primary) if len(primary) != len(views) else None, jpeg=jpeg)


def _has_more_frames(img: Image.Image, judged: int) -> bool:
    """Probe for one frame past the judged ones, without counting them all."""
    try:
        img.seek(judged)
    except EOFError:
        return False
    except Exception:
        return True  # unreadable trailing data: a lenient loader might find more
    return True


_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def _views(img: Image.Image, desc: str = "image") -> tuple[list[Image.Image], bool]:
    """Load one frame; its RGB readings and whether a plain RGB loader agrees with them.

    The readings are bare (no ``info``): nothing of the file rides along with its pixels."""
    views, faithful = _readings(img, desc)
    for view in views:
        view.info = {}
    return views, faithful


def _readings(img: Image.Image, desc: str) -> tuple[list[Image.Image], bool]:
    wide_samples = any("16" in str(getattr(t, "args", "")) for t in getattr(img, "tile", None) or ())
    img.load()
    faithful = img.mode not in _WIDE_MODES and img.mode != "CMYK"
    if img.info.get("icc_profile") or _colour_managed(img.info):
        faithful = False
    orientation = 1
    with contextlib.suppress(Exception):  # broken EXIF must not make a readable image unreadable
        orientation = int(img.getexif().get(0x0112, 1))
        if 2 <= orientation <= 8:  # (exif_transpose would copy even an upright image)
            img = ImageOps.exif_transpose(img) or img
    if orientation not in (0, 1):
        faithful = False
    if img.mode == "P" and ("transparency" in img.info
                            or (img.palette is not None and img.palette.mode == "RGBA")):
        img = img.convert("RGBA")
    elif "transparency" in img.info and img.mode in _KEYED_MODES:
        img = _keyed(img, img.info["transparency"], wide_samples, desc)
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:
            return [rgba.convert("RGB")], faithful  # opaque: every loader sees the same
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composited = Image.alpha_composite(background, rgba).convert("RGB")
        return [composited, rgba.convert("RGB")], False
    return [_rgb(img)], faithful


_KEYED_MODES = {"RGB", "L", "1", "I;16", "I;16B", "I;16L", "I;16N", "I"}


def _keyed(img: Image.Image, key: object, wide_samples: bool, desc: str) -> Image.Image:
    """RGBA of a frame with a transparency colour key (PNG ``tRNS`` on RGB or grey): pixels
    equal to the key are transparent to decoders that honour it, opaque to those that don't.
    The key of a 16-bit RGB image compares 16-bit samples Pillow does not keep, so which
    pixels it hides cannot be known here: such an image is refused."""
    import numpy as np

    if img.mode == "RGB" and wide_samples:
        msg = (f"image {desc} is 16-bit RGB with a transparency key (tRNS): decoders that honour "
               "the key hide pixels that cannot be told apart at 8 bits; re-encode it without "
               "the key")
        raise ImageInputError(msg, source=desc)
    arr = np.asarray(img)
    try:
        if img.mode == "RGB":
            mask = (arr == np.asarray(key, dtype=np.int64)[:3]).all(axis=-1)
        elif img.mode == "1":
            mask = arr == bool(int(key))  # type: ignore[call-overload]
        else:
            mask = arr == int(key)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return img.convert("RGBA")  # a malformed key: Pillow's own reading
    rgba = _rgb(img).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), "L"))
    return rgba


def _colour_managed(info: Mapping[Any, Any]) -> bool:
    """PNG gAMA/cHRM that a colour-managing decoder (browsers, some providers) would apply,
    changing the pixels: a gamma other than sRGB's 1/2.2, or primaries without sRGB intent."""
    gamma = info.get("gamma")
    if isinstance(gamma, (int, float)) and abs(float(gamma) - 1 / 2.2) > 0.01:
        return True
    return "chromaticity" in info and "srgb" not in info


def _rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        import numpy as np

        arr = np.asarray(img)
        if mode != "I" or (arr.size and int(arr.max()) > 255):
            arr = arr.astype(np.int64) >> 8  # the high byte: what libpng and browsers show
        arr8 = np.clip(arr, 0, 255).astype("uint8")
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "F":
        return img.convert("L").convert("RGB")
    return img.convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Fully decode one frame into 8-bit RGB: EXIF orientation, alpha over white, 16-bit by
    the high byte. (The guard judges every reading; this is the first one.)"""
    return _views(img)[0][0]
