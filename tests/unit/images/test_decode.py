"""Image input: every accepted form, every conversion, every failure mode."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import ImageInputError, ImageOptions
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.testing.pictures import encode, noise


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but carries no image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_all_source_forms_decode_to_the_same_pixels(tmp_path: Path) -> None:
    img = noise()
    data = encode(img)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [img, data, bytearray(data), path, str(path), b64,
             f"data:image/png;base64,{b64}"]
    decoded = [decode_image(f) for f in forms]
    for d in decoded:
        assert d.image.mode == "RGB" and d.image.size == (40, 30)
        assert np.array_equal(np.asarray(d.image), np.asarray(img))
    # encoded forms share one hash (the bytes'); the cache keys on it
    assert len({d.sha256 for d in decoded[1:]}) == 1


def test_exif_orientation_is_applied() -> None:
    img = noise(20, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    d = decode_image(encode(img, "JPEG", exif=exif))
    assert d.image.size == (10, 20)


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "CMYK", "L", "1", "I;16", "I", "F"])
def test_modes_are_converted_to_rgb(mode: str) -> None:
    if mode == "I;16":
        arr = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
    else:
        img = noise().convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in {"F", "I"} else "PNG"
    for src in (img, encode(img, fmt)):
        d = decode_image(src)
        assert d.image.mode == "RGB" and d.image.size == (40, 30)
    if mode == "I;16":  # 16-bit data is scaled into 8 bits, not clipped to white
        px = np.asarray(decode_image(img).image)
        assert 0 < px.mean() < 255


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(encode(img)).image.getpixel((0, 0)) == (255, 255, 255)


def test_animated_images_give_first_n_frames() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ["red", "blue", "green"]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert len(decode_image(data).frames) == 1
    assert len(decode_image(data, ImageOptions(frames=2)).frames) == 2
    assert len(decode_image(data, ImageOptions(frames=10)).frames) == 3


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (b"", "empty"),
        (b"not an image at all", "not in a format Pillow can decode"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG document, which the guard cannot judge"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png,rawdata", "not base64"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("https://example.com/cat.png", "URL fetching is off"),
        ("ftp://example.com/cat.png", "unsupported URL scheme"),
        ("no/such/file.png", "not found"),
        ("definitely not base64!", "not an existing file"),
        (12345, "unsupported image input of type int"),
    ],
)
def test_bad_inputs_raise_clear_errors(source: object, needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        decode_image(source)  # type: ignore[arg-type]


def test_truncated_image() -> None:
    data = encode(noise(200, 200), "PNG")
    with pytest.raises(ImageInputError, match=r"truncated or corrupt|cannot open"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_rejected_from_the_header() -> None:
    # 8000 x 8000 = 64 M pixels > the default 50 M: rejected without decoding (no data present)
    with pytest.raises(ImageInputError, match="over the limit of 50000000"):
        decode_image(_png_header_only(8000, 8000))
    # far beyond Pillow's own bomb limit
    with pytest.raises(ImageInputError, match=r"too many pixels|over the limit"):
        decode_image(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageInputError, match="over the limit of 100"):
        decode_image(noise(20, 20), ImageOptions(max_pixels=100))


def test_byte_limit(tmp_path: Path) -> None:
    data = encode(noise())
    with pytest.raises(ImageInputError, match="over the limit"):
        decode_image(data, ImageOptions(max_bytes=10))
    p = tmp_path / "x.png"
    p.write_bytes(data)
    with pytest.raises(ImageInputError, match="over the limit"):
        decode_image(p, ImageOptions(max_bytes=10))
    with pytest.raises(ImageInputError, match="not a regular file"):
        decode_image(tmp_path)


def test_error_messages_never_contain_the_payload() -> None:
    payload = "A" * 5000
    with pytest.raises(ImageInputError) as info:
        decode_image(payload)
    assert payload not in str(info.value) and len(str(info.value)) < 300


def _png(width: int, height: int, depth: int, colour: int, rows: bytes, *extra: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "I;16"])
def test_a_trns_colour_key_is_judged_honoured_and_ignored(mode: str) -> None:
    if mode == "I;16":
        arr = np.full((6, 8), 300, np.uint16)
        arr[:, :4] = 4000
        img, key = Image.fromarray(arr), 4000
    else:
        img = noise(8, 6).convert(mode)
        key = img.getpixel((0, 0))
    d = decode_image(encode(img, "PNG", transparency=key))
    assert len(d.frames) == 2 and not d.faithful
    assert d.primary is not None and d.primary[0] is d.frames[0]
    assert d.frames[0].getpixel((0, 0)) == (255, 255, 255)  # honoured: the key shows white
    assert d.frames[1].getpixel((0, 0)) != (255, 255, 255) or mode == "1"  # ignored: its colour


def test_a_trns_key_that_matches_no_pixel_changes_nothing() -> None:
    d = decode_image(encode(Image.new("RGB", (4, 4), (9, 9, 9)), "PNG", transparency=(1, 2, 3)))
    assert len(d.frames) == 1 and d.faithful


def test_a_16_bit_rgb_png_with_a_colour_key_is_refused() -> None:
    rows = b"".join(b"\x00" + b"\x12\x34" * 3 * 4 for _ in range(4))
    trns = struct.pack(">I", 6) + b"tRNS" + b"\x12\x34" * 3
    trns += struct.pack(">I", zlib.crc32(b"tRNS" + b"\x12\x34" * 3))
    data = _png(4, 4, 16, 2, rows, trns)
    with pytest.raises(ImageInputError, match="16-bit RGB with a transparency key"):
        decode_image(data)
    assert decode_image(_png(4, 4, 16, 2, rows)).image.size == (4, 4)  # without the key: fine
