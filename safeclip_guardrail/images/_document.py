"""PDF documents judged as pictures: every page rendered as providers render it, plus every
picture embedded in it.

GPT-4o, Claude and Gemini read a PDF as an image of each page (with its text), so a PDF is
judged like a multi-frame image: one frame per page, rendered with PDFium (the ``documents``
extra, pypdfium2) so that its longer side is ``DocumentOptions.render_long_side`` pixels, and
one frame per distinct embedded picture, decoded at its own size with its mask dropped (a
picture drawn off the page, behind a white box, in a hidden layer or under a soft mask is
judged too). The guard judges them all and the worst decides; a clean PDF is forwarded as
its original bytes (docs/security.md says what that covers).

Bounded before work is done: the page count before any page is loaded; each page's size in
points and its count of content objects (rendering time follows objects, not pixels) before
it is rasterised; each picture's pixel size before it is decoded; pixels summed over the
document and the caller's request budget. Time: a deadline per document, checked between
pages and pictures and, while a page renders, by PDFium's progressive renderer (it asks
whether to pause every few objects). What no in-process check can interrupt is one PDFium
call (parsing one page's content stream, decoding one picture): the service runs decodes in
a killable worker pool for that. PDFium is not thread-safe, so one lock serialises its use.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from safeclip_guardrail.config import DocumentOptions, ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images._carve import carve

__all__ = ["INSTALL_HINT", "PictureDecoder", "RenderedDocument", "decode_pdf"]

INSTALL_HINT = 'pip install "safeclip-guardrail[documents]"'
"""How to install the PDF renderer (pypdfium2)."""

_LOCK = threading.Lock()
_MAX_FORM_DEPTH = 32
_DETAIL = 160


@dataclass(frozen=True)
class RenderedDocument:
    """The frames of one PDF: rendered pages and embedded pictures, in reading order."""

    frames: tuple[Image.Image, ...]
    labels: tuple[str, ...]
    """``page 1`` for a rendered page, ``page 1, picture 2`` for an embedded picture."""
    pixels: int


PictureDecoder = Callable[[bytes, str], tuple[Image.Image, ...]]
"""Decodes one carved JPEG/PNG into its judged readings (the image decoder, passed in)."""


def decode_pdf(data: bytes, opts: ImageOptions, desc: str, *, budget: int | None = None,
               decode_picture: PictureDecoder | None = None) -> RenderedDocument:
    """Render and extract every page and picture of the PDF ``data`` within the budgets of
    ``opts.documents``; every failure is an :class:`ImageInputError` naming the document.

    ``decode_picture``: how JPEGs and PNGs carved out of the file's bytes are decoded (every
    one that walks to its end, drawn or not: a PDF is forwarded as is, so whatever an
    extractor could cut out of it is judged too); None skips carving."""
    dopts = opts.documents
    if not dopts.enabled:
        msg = (f"{desc} is a PDF document, and documents are refused here "
               "(ImageOptions.documents.enabled=False); send its pages as images")
        raise ImageInputError(msg, source=desc)
    try:
        import pypdfium2
        import pypdfium2.raw
    except ImportError:
        msg = (f"{desc} is a PDF document, which cannot be judged without the PDF renderer; "
               f"install it with {INSTALL_HINT}, or send the pages as images")
        raise ImageInputError(msg, source=desc) from None
    if not _LOCK.acquire(timeout=dopts.timeout):
        msg = (f"PDF document {desc} was not judged: the PDF renderer stayed busy for "
               f"{dopts.timeout:g} s (DocumentOptions.timeout); send it again")
        raise ImageInputError(msg, source=desc)
    try:
        return _Renderer(pypdfium2, pypdfium2.raw, opts, desc, budget).run(data, decode_picture)
    except ImageInputError:
        raise
    except Exception as exc:  # PDFium errors, broken objects: this document's error only
        detail = f"{type(exc).__name__}: {exc}"
        detail = detail if len(detail) <= _DETAIL else detail[:_DETAIL - 3] + "..."
        msg = (f"PDF document {desc} cannot be read ({detail}); it may be encrypted with a "
               "password or corrupt")
        raise ImageInputError(msg, source=desc) from None
    finally:
        _LOCK.release()


class _Renderer:
    """One document's walk: pages in order, each rendered, then its pictures."""

    def __init__(self, pdfium: Any, raw: Any, opts: ImageOptions, desc: str,
                 budget: int | None) -> None:
        self.pdfium, self.raw, self.opts, self.desc = pdfium, raw, opts, desc
        self.dopts: DocumentOptions = opts.documents
        self.budget = budget
        self.deadline = time.monotonic() + self.dopts.timeout
        self.frames: list[Image.Image] = []
        self.labels: list[str] = []
        self.pixels = 0
        self.pictures = 0
        self.objects_seen = 0
        self.seen: set[str] = set()

    def fail(self, what: str, fix: str) -> ImageInputError:
        return ImageInputError(f"PDF document {self.desc} {what}; {fix}", source=self.desc)

    def run(self, data: bytes, decode_picture: PictureDecoder | None) -> RenderedDocument:
        pdf = self.pdfium.PdfDocument(data)
        try:
            count = len(pdf)
            if count < 1:
                msg = "has no pages"
                raise self.fail(msg, "send a PDF with at least one page")
            if count > self.dopts.max_pages:
                msg = f"has {count} pages, over the limit of {self.dopts.max_pages}"
                raise self.fail(msg, "split it, or raise DocumentOptions.max_pages")
            attached = self.raw.FPDFDoc_GetAttachmentCount(pdf)
            if attached > 0 and not self.dopts.allow_attachments:
                msg = (f"carries {attached} attached file(s), which are not judged but would be "
                       "forwarded with it")
                raise self.fail(msg, "remove the attachments, or set DocumentOptions."
                                "allow_attachments=True if they may reach the model unjudged")
            for index in range(count):
                self.check_time(f"page {index + 1}")
                self.page(pdf, index)
        finally:
            pdf.close()
        if decode_picture is not None:
            self.carved(data, decode_picture)
        return RenderedDocument(tuple(self.frames), tuple(self.labels), self.pixels)

    def carved(self, data: bytes, decode_picture: PictureDecoder) -> None:
        """Every JPEG and PNG that walks from its signature to its end in the file's bytes,
        size-checked from its header, then decoded; one that does not decode fails closed."""
        for item in carve(data, limit=self.dopts.max_pictures):
            where = f"bytes {item.offset}-{item.end}"
            self.pictures += 1
            if self.pictures > self.dopts.max_pictures:
                msg = f"embeds over {self.dopts.max_pictures} pictures"
                raise self.fail(msg, "raise DocumentOptions.max_pictures if it is genuine")
            self.check_time(where)
            self.spend(item.width, item.height, f"a {item.kind} in {where}")
            try:
                readings = decode_picture(data[item.offset:item.end], f"{self.desc} ({where})")
            except ImageInputError as exc:
                msg = f"carries a {item.kind} in {where} that cannot be judged ({exc})"
                raise self.fail(msg, "re-export the PDF") from None
            for reading in readings:
                self.add(reading, where)

    # ---------------------------------------------------------------- budgets
    def check_time(self, where: str) -> None:
        if time.monotonic() > self.deadline:
            msg = f"took over {self.dopts.timeout:g} s to judge (stopped at {where})"
            raise self.fail(msg, "raise DocumentOptions.timeout if it is genuine")

    def spend(self, width: int, height: int, where: str) -> None:
        n = width * height
        if n > self.opts.max_pixels:
            msg = (f"has {where} of {width}x{height} pixels, over the limit of "
                   f"{self.opts.max_pixels}")
            raise self.fail(msg, "raise ImageOptions.max_pixels")
        if self.pixels + n > self.dopts.max_total_pixels:
            msg = (f"needs over {self.dopts.max_total_pixels} decoded pixels (at "
                   f"{where})")
            raise self.fail(msg, "raise DocumentOptions.max_total_pixels, or lower render_long_side")
        if self.budget is not None and self.pixels + n > self.budget:
            msg = (f"was not judged: this request has {max(self.budget, 0)} of its "
                   f"max_request_pixels={self.opts.max_request_pixels} decoded pixels left and "
                   f"the document needs more (at {where})")
            raise self.fail(msg, "send it in another request")
        self.pixels += n

    def add(self, image: Image.Image, label: str) -> None:
        rgb = image.convert("RGB")  # a picture's own alpha is dropped: the masked-off reading
        rgb.info = {}
        key = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
        if key not in self.seen:  # the same picture on every page is judged once
            self.seen.add(key)
            self.frames.append(rgb)
            self.labels.append(label)

    # ---------------------------------------------------------------- one page
    def page(self, pdf: Any, index: int) -> None:
        where = f"page {index + 1}"
        self.objects_seen = 0
        page = pdf[index]
        try:
            width, height = page.get_size()
            longest = max(width, height)
            if not (math.isfinite(longest) and min(width, height) > 0):
                msg = f"has a {where} without a valid size"
                raise self.fail(msg, "repair the PDF")
            if longest > self.dopts.max_page_points:
                msg = (f"has a {where} of {width:.0f}x{height:.0f} points, over the limit of "
                       f"{self.dopts.max_page_points:g}")
                raise self.fail(msg, "raise DocumentOptions.max_page_points")
            pictures = self.objects(page, None, where)
            scale = self.dopts.render_long_side / longest
            w, h = max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))
            self.spend(w, h, where)
            self.add(self.render(page, w, h, where), where)
            for obj in pictures:
                self.picture(obj, where)
            self.annotation_pictures(page, where)
        finally:
            page.close()

    def objects(self, page: Any, annot: Any, where: str) -> list[Any]:
        """Image objects of the page's content (or of one annotation's appearance), through
        nested forms, every object counted against ``max_page_objects`` before any is drawn."""
        raw = self.raw
        found: list[Any] = []
        stack: list[tuple[Any, int]] = [(None, 0)]
        while stack:
            form, depth = stack.pop()
            if depth > _MAX_FORM_DEPTH:
                msg = f"nests forms deeper than {_MAX_FORM_DEPTH} on {where}"
                raise self.fail(msg, "flatten the PDF")
            if form is not None:
                n, get = raw.FPDFFormObj_CountObjects(form), raw.FPDFFormObj_GetObject
                parent = form
            elif annot is not None:
                n, get, parent = raw.FPDFAnnot_GetObjectCount(annot), raw.FPDFAnnot_GetObject, annot
            else:
                n, get, parent = raw.FPDFPage_CountObjects(page), raw.FPDFPage_GetObject, page
            for i in range(max(n, 0)):
                self.objects_seen += 1
                if self.objects_seen > self.dopts.max_page_objects:
                    msg = f"has over {self.dopts.max_page_objects} content objects on {where}"
                    raise self.fail(msg, "raise DocumentOptions.max_page_objects if it is genuine")
                if self.objects_seen % 1000 == 0:
                    self.check_time(where)
                obj = get(parent, i)
                kind = raw.FPDFPageObj_GetType(obj) if obj else None
                if kind == raw.FPDF_PAGEOBJ_IMAGE:
                    found.append(obj)
                elif kind == raw.FPDF_PAGEOBJ_FORM:
                    stack.append((obj, depth + 1))
        return found

    def annotation_pictures(self, page: Any, where: str) -> None:
        """Pictures in annotations' appearances (stamps...), decoded while the annotation is
        open (its objects live only as long as its handle)."""
        raw = self.raw
        for a in range(max(raw.FPDFPage_GetAnnotCount(page), 0)):
            annot = raw.FPDFPage_GetAnnot(page, a)
            if not annot:
                continue
            try:
                for obj in self.objects(page, annot, f"{where}, annotation {a + 1}"):
                    self.picture(obj, f"{where}, annotation {a + 1}")
            finally:
                raw.FPDFPage_CloseAnnot(annot)

    def render(self, page: Any, width: int, height: int, where: str) -> Image.Image:
        raw = self.raw
        bitmap = self.pdfium.PdfBitmap.new_native(width, height, raw.FPDFBitmap_BGR,
                                                  rev_byteorder=True)
        try:
            bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
            pause = raw.IFSDK_PAUSE(version=1)
            callback = type(pause.NeedToPauseNow)(lambda _p: time.monotonic() > self.deadline)
            pause.NeedToPauseNow = callback
            flags = raw.FPDF_ANNOT | raw.FPDF_REVERSE_BYTE_ORDER
            status = raw.FPDF_RenderPageBitmap_Start(bitmap, page, 0, 0, width, height, 0,
                                                     flags, ctypes.byref(pause))
            while status == raw.FPDF_RENDER_TOBECONTINUED and time.monotonic() <= self.deadline:
                status = raw.FPDF_RenderPage_Continue(page, ctypes.byref(pause))
            raw.FPDF_RenderPage_Close(page)
            if status == raw.FPDF_RENDER_TOBECONTINUED:
                self.check_time(f"rendering {where}")
            if status != raw.FPDF_RENDER_DONE:
                msg = f"could not render {where}"
                raise self.fail(msg, "repair or re-export the PDF")
            rendered: Image.Image = bitmap.to_pil().convert("RGB")  # a copy: freed below
            return rendered
        finally:
            bitmap.close()

    def picture(self, obj: Any, page_where: str) -> None:
        raw = self.raw
        self.pictures += 1
        self.check_time(page_where)
        where = f"{page_where}, picture {self.pictures}"
        if self.pictures > self.dopts.max_pictures:
            msg = f"embeds over {self.dopts.max_pictures} pictures"
            raise self.fail(msg, "raise DocumentOptions.max_pictures if it is genuine")
        w, h = ctypes.c_uint(0), ctypes.c_uint(0)
        if not raw.FPDFImageObj_GetImagePixelSize(obj, ctypes.byref(w), ctypes.byref(h)) \
                or not w.value or not h.value:
            msg = f"has a picture without a size ({where})"
            raise self.fail(msg, "repair the PDF")
        self.spend(w.value, h.value, where)
        handle = raw.FPDFImageObj_GetBitmap(obj)
        if not handle:
            msg = f"has a picture that cannot be decoded ({where})"
            raise self.fail(msg, "repair or re-export the PDF")
        bitmap = self.pdfium.PdfBitmap.from_raw(handle)
        bitmap.warn_on_close = False  # add() copies the pixels before the buffer is freed
        try:
            self.add(bitmap.to_pil(), where)
        finally:
            bitmap.close()
