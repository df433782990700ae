"""PDF documents: pages rendered and pictures extracted as frames, within budgets; other
documents unreadable; no renderer installed means unreadable with the install command."""

from __future__ import annotations

import builtins
import io
import threading
from typing import Any

import pytest

from safeclip_guardrail import ImageInputError, ImageOptions, SafeCLIPGuard
from safeclip_guardrail.images.decode import decode_image
from tests import _containers as C
from tests._referee import RefereeEncoder

TWO_PAGES = C.pdf([[(C.calm((48, 64)), (20, 20, 120, 160))],
                   [(C.calm((64, 64), seed=2), (500, 500, 50, 50))]])


def _opts(**documents: Any) -> ImageOptions:
    return ImageOptions(documents=documents)


def test_pages_and_pictures_become_labelled_frames() -> None:
    d = decode_image(TWO_PAGES)
    assert d.format == "PDF" and d.labels == ("page 1", "page 1, picture 1", "page 2",
                                               "page 2, picture 2")
    assert d.frames[0].size == (1568, 1568) and d.frames[1].size == (48, 64)
    assert decode_image(TWO_PAGES, _opts(render_long_side=300)).frames[0].size == (300, 300)
    assert d.pixels == 2 * 1568 * 1568 + 48 * 64 + 64 * 64


def test_the_same_picture_on_every_page_is_judged_once() -> None:
    logo = C.calm((32, 32), seed=9)
    data = C.pdf([[(logo, (10 * k, 0, 32, 32))] for k in range(3)], size=(100, 100))
    assert decode_image(data).labels == ("page 1", "page 1, picture 1", "page 2", "page 3")
    same = C.pdf([[(logo, (0, 0, 32, 32))]] * 3, size=(100, 100))
    assert decode_image(same).labels == ("page 1", "page 1, picture 1")  # identical pages too


def test_a_judged_pdf_is_forwarded_as_its_original_bytes() -> None:
    judgement = SafeCLIPGuard(RefereeEncoder()).judge_batch([TWO_PAGES], forward=True)[0]
    assert judgement.verdict is not None and not judgement.verdict.flagged
    assert judgement.forward is not None and judgement.forward.data == TWO_PAGES
    assert judgement.forward.mime_type == "application/pdf"


def _stacked(depth: int) -> bytes:
    """A hidden picture inside ``depth`` nested form XObjects (each page drawn as a form)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument(C.pdf([[(C.marked(), (500, 500, 64, 64))]]))
    for level in range(depth):
        xobj = raw.FPDF_NewXObjectFromPage(doc, doc, level)
        page = doc.new_page(200, 200)
        raw.FPDFPage_InsertObject(page, raw.FPDF_NewFormObjectFromXObject(xobj))
        page.gen_content()
        raw.FPDF_CloseXObject(xobj)
    for _ in range(depth):
        doc.del_page(0)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def test_pictures_inside_nested_forms_are_found_and_deep_nesting_is_refused() -> None:
    d = decode_image(_stacked(3))
    assert d.labels == ("page 1", "page 1, picture 1")
    with pytest.raises(ImageInputError, match="nests forms deeper than 32"):
        decode_image(_stacked(34))


@pytest.mark.parametrize(("data", "opts", "needle"), [
    (C.pdf([[]] * 3), _opts(max_pages=2), "has 3 pages, over the limit of 2"),
    (C.pdf([[]], size=(20_000, 100)), ImageOptions(), "over the limit of 14400"),
    (C.pdf([[]], fills=[(0, (k, k, 5, 5)) for k in range(20)]), _opts(max_page_objects=10),
     "over 10 content objects on page 1"),
    (C.pdf([[(C.calm(seed=k), (k, k, 9, 9)) for k in range(3)]]), _opts(max_pictures=2),
     "embeds over 2 pictures"),
    (TWO_PAGES, _opts(max_total_pixels=3_000_000), "needs over 3000000 decoded pixels"),
    (TWO_PAGES, ImageOptions(max_pixels=1_000_000), "over the limit of 1000000"),
    (TWO_PAGES, _opts(timeout=1e-9), "took over"),
    (TWO_PAGES, _opts(enabled=False), "documents are refused"),
    (b"%PDF-1.7\nnot really a pdf", ImageOptions(), "cannot be read"),
])
def test_documents_beyond_their_budgets_are_unreadable(data: bytes, opts: ImageOptions,
                                                       needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle) as info:
        decode_image(data, opts)
    assert info.value.source


def test_a_request_budget_covers_documents() -> None:
    guard = SafeCLIPGuard(RefereeEncoder()).with_options(images={"max_request_pixels": 3_000_000})
    judgement = guard.judge_batch([TWO_PAGES])[0]
    assert judgement.error is not None and "max_request_pixels" in str(judgement.error)


def test_attachments_are_refused_unless_allowed() -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(TWO_PAGES)
    doc.new_attachment("invoice.xml").set_data(b"<invoice/>")
    buf = io.BytesIO()
    doc.save(buf)
    with pytest.raises(ImageInputError, match="carries 1 attached file"):
        decode_image(buf.getvalue())
    assert decode_image(buf.getvalue(), _opts(allow_attachments=True)).format == "PDF"


def test_without_the_renderer_a_pdf_is_unreadable_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def blocked(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "pypdfium2":
            raise ImportError("No module named 'pypdfium2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(ImageInputError, match=r'pip install "safeclip-guardrail\[documents\]"'):
        decode_image(TWO_PAGES)
    verdict = SafeCLIPGuard(RefereeEncoder()).check(TWO_PAGES)
    assert verdict.flagged and verdict.category == "unreadable" and "documents" in (verdict.error or "")


@pytest.mark.parametrize(("data", "kind"), [
    (b"PK\x03\x04" + b"\x00" * 40, "ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40, "OLE compound document"),
    (b"{\\rtf1\\ansi hello}", "RTF document"),
    (b"<!DOCTYPE html><html><body><img src=x></body></html>", "HTML document"),
    (b"\xef\xbb\xbf<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "SVG document"),
])
def test_other_documents_are_unreadable_with_a_reason(data: bytes, kind: str) -> None:
    with pytest.raises(ImageInputError, match="which the guard cannot judge") as info:
        decode_image(data)
    assert kind in str(info.value)


def test_pdfs_decode_safely_from_many_threads() -> None:
    errors: list[BaseException] = []
    sizes: list[int] = []

    def work() -> None:
        try:
            for _ in range(3):
                sizes.append(len(decode_image(TWO_PAGES, _opts(render_long_side=200)).frames))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sizes == [4] * 12


def test_pictures_carved_from_the_bytes_are_judged_too() -> None:
    one = C.encode(C.calm((40, 30)), "PDF")  # Pillow stores the picture as a raw JPEG stream
    d = decode_image(one)
    assert d.labels is not None and d.labels[:2] == ("page 1", "page 1, picture 1")
    assert all(label.startswith("page") for label in d.labels)  # the carved JPEG is the same
    trailer = C.encode(C.marked((20, 20)), "JPEG")
    d = decode_image(one + trailer)
    assert d.labels is not None and d.labels[-1] == f"bytes {len(one)}-{len(one) + len(trailer)}"


def test_a_carved_picture_over_the_pixel_limit_fails_the_document() -> None:
    jpeg = bytearray(C.encode(C.calm((40, 30)), "JPEG"))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = (20_000).to_bytes(2, "big") * 2  # declares 20000x20000
    with pytest.raises(ImageInputError, match="20000x20000 pixels, over the limit"):
        decode_image(TWO_PAGES + bytes(jpeg))


def test_a_rotated_page_is_rendered_as_shown() -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(C.pdf([[(C.calm((40, 20)), (0, 0, 100, 100))]], size=(200, 100)))
    doc[0].set_rotation(90)
    buf = io.BytesIO()
    doc.save(buf)
    assert decode_image(buf.getvalue()).frames[0].size == (784, 1568)
