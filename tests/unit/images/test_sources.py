"""One reader per source, one set of rules, one sniffer (sources.py, _sniff.py)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from safeclip_guardrail import ImageInputError, ImageOptions, SafeCLIPGuard
from safeclip_guardrail._sniff import describe_binary, sniff_document, sniff_format
from safeclip_guardrail.images import decode as images_module
from safeclip_guardrail.images.sources import (
    EncodedImage,
    fetch_remote,
    from_application_string,
    from_base64,
    from_bytes,
    from_data_url,
    from_path,
    from_untrusted_string,
    from_url,
    inline_bytes,
    to_base64,
    to_data_url,
)
from safeclip_guardrail.testing import FakeFetcher
from tests import _containers as C
from tests._referee import RefereeEncoder

PNG = C.encode(C.noise())


def test_images_has_no_reader_of_its_own() -> None:
    for name in ("_read_string", "_looks_like_path", "_read_path", "_decode_data_url"):
        assert not hasattr(images_module, name), name


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("mime", ["image/png", "application/octet-stream", "", "application/pdf"])
def test_data_urls_and_both_base64_alphabets_are_read_the_same_way_everywhere(
        encode: object, mime: str) -> None:
    payload = encode(PNG).decode()  # type: ignore[operator]
    url = f"data:{mime};base64,{payload}"
    for read in (from_untrusted_string, from_application_string):
        assert read(url).data == PNG
        assert read(payload).data == PNG


def test_a_data_url_that_says_it_is_not_a_picture_is_refused() -> None:
    url = "data:text/plain;base64," + base64.b64encode(PNG).decode()
    for read in (from_untrusted_string, from_application_string, from_data_url):
        with pytest.raises(ImageInputError, match="'text/plain', not an image"):
            read(url)


def test_an_application_string_may_be_a_path_a_message_string_never(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(PNG)
    assert from_application_string(str(path)).data == PNG
    assert SafeCLIPGuard(RefereeEncoder()).check(str(path)).error is None  # guard.check("x.jpg")
    with pytest.raises(ImageInputError, match="never read from messages"):
        from_untrusted_string(str(path))
    with pytest.raises(ImageInputError, match=r"not found.*not an existing file"):
        from_application_string(str(tmp_path / "missing.png"))


def test_paths_are_read_without_blocking_and_only_when_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for read in (lambda p: from_path(p), lambda p: from_application_string(str(p))):
        with pytest.raises(ImageInputError, match="not a regular file"):
            read(fifo)
        with pytest.raises(ImageInputError, match="not a regular file"):
            read(tmp_path)
    big = tmp_path / "y.png"
    big.write_bytes(PNG)
    with pytest.raises(ImageInputError, match="over the limit of 10"):
        from_path(big, options=ImageOptions(max_bytes=10))


def test_long_strings_are_data_never_paths() -> None:
    assert from_application_string("A" * 5000).source == "<base64, 5000 chars>"
    with pytest.raises(ImageInputError, match="not in a format") as info:
        images_module.decode_image("A" * 5000)
    assert "A" * 200 not in str(info.value)
    with pytest.raises(ImageInputError, match="unsupported URL scheme 'ftp'"):
        from_application_string("ftp://example.com/x.png")


@pytest.mark.parametrize(("head", "kind"), [
    (b"%PDF-1.7\n", "PDF"), (b"\x00" * 500 + b"%PDF-1.4", "PDF"), (b"PK\x03\x04rest", "ZIP"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"), (b"{\\rtf1", "RTF"), (b"AT&TFORMxxxxDJVU", "DJVU"),
    (b"  <svg xmlns='http://www.w3.org/2000/svg'>", "SVG"),
    (b"<?xml version='1.0'?>\n<svg>", "SVG"), (b"<!DOCTYPE html><p>", "HTML"),
    (b"\xff\xfe" + "<html>".encode("utf-16-le"), "HTML"), (b"<?xml version='1.0'?><a/>", "XML"),
    (b"just text", None), (PNG[:64], None),
])
def test_sniff_document(head: bytes, kind: str | None) -> None:
    assert sniff_document(head) == kind


def test_one_sniffer_for_pictures() -> None:
    import safeclip_guardrail.images._pixels as decode_module
    import safeclip_guardrail.images.sources as sources_module

    assert getattr(decode_module, "sniff_format", sniff_format) is sniff_format  # one function
    assert sources_module.sniff_format is sniff_format
    assert sniff_format(PNG) == "PNG" and sniff_format(b"%PDF-1.4") is None
    assert sniff_format(b"BLP2....") == "BLP" and sniff_format(b"%!PS-Adobe") == "EPS"
    assert describe_binary(b"%PDF-1.4") == "a PDF document"
    assert describe_binary(b"<svg>") is None  # markup is text to a text reader


# ---------------------------------------------------------------- the other constructors
def test_bytes_and_base64_are_read_with_the_size_limit() -> None:
    small = ImageOptions(max_bytes=len(PNG))
    assert from_bytes(bytearray(PNG), options=small).data == PNG
    assert from_bytes(memoryview(PNG), source="upload 1").source == "upload 1"
    assert from_base64(base64.b64encode(PNG).decode()).data == PNG
    with pytest.raises(ImageInputError, match="limit"):
        from_bytes(PNG + b"\0", options=small)
    with pytest.raises(ImageInputError, match="limit"):
        from_base64(base64.b64encode(PNG + b"\0").decode(), options=small)
    with pytest.raises(ImageInputError) as err:
        from_base64("not base64 at all!")
    assert "not base64 at all" not in (err.value.source or "")  # a description, not the payload


def test_urls_go_through_the_policy_before_any_fetcher() -> None:
    url = "https://images.example.com/a.png"
    fetcher = FakeFetcher({url: PNG})
    with pytest.raises(ImageInputError):
        from_url(url, fetcher=fetcher)  # URLs are off by default
    assert fetcher.calls == []  # refused before anything was asked for
    allowed = ImageOptions(allow_urls=True, allowed_hosts=("images.example.com",))
    got = from_url(url, options=allowed, fetcher=fetcher)
    assert got.data == PNG and "images.example.com" in got.source and fetcher.calls == [url]
    with pytest.raises(ImageInputError):
        fetch_remote("https://elsewhere.example.com/a.png", options=allowed, fetcher=fetcher)
    assert fetcher.calls == [url]


def test_a_fetcher_that_returns_something_else_is_an_input_error() -> None:
    class Wrong:
        def fetch(self, url: str, options: ImageOptions) -> bytes:
            return "text"  # type: ignore[return-value]

    allowed = ImageOptions(allow_urls=True, allowed_hosts=("images.example.com",))
    with pytest.raises(ImageInputError, match="not bytes"):
        fetch_remote("https://images.example.com/a.png", options=allowed, fetcher=Wrong())


def test_encoded_images_come_back_as_base64_and_data_urls() -> None:
    image = EncodedImage(PNG, "<x>", "image/png")
    assert base64.b64decode(to_base64(image)) == PNG
    assert to_data_url(image) == "data:image/png;base64," + to_base64(image)
    assert to_data_url(EncodedImage(PNG)).startswith("data:application/octet-stream;base64,")
    assert repr(image) == f"EncodedImage({len(PNG)} bytes, source='<x>', mime_type='image/png')"


def test_inline_bytes_reads_data_urls_and_base64_only() -> None:
    b64 = base64.b64encode(PNG).decode()
    assert inline_bytes(f"data:image/png;base64,{b64}") == PNG
    assert inline_bytes(f"  {b64[:40]}\n{b64[40:]}  ") == PNG  # whitespace tolerated
    assert inline_bytes(base64.urlsafe_b64encode(PNG).decode().rstrip("=")) == PNG
    for neither in ("", "data:image/png,raw", "data:image/png;base64", "not base64!",
                    "https://example.com/a.png"):
        assert inline_bytes(neither) is None, neither
