"""The structural pre-walk: what multiplies decode work is bounded before any decoder runs.

Issue 20, finding 1: a progressive JPEG declaring 4000x4000, its last scan repeated a few
thousand times, took about a minute to decode. Here the bomb is rebuilt and refused by the
walk (which reads headers only); every other multiplier found per format (markers, EXIF
segments, compressed PNG metadata, one-byte IDATs, surplus TIFF strip tables, directory
floods, WebP canvases and frame floods, RLE bitmaps, AVIF extents) is refused by its limit,
and real encoders' output passes under the defaults. Timings are measured in
``benchmarks/bench_decode_worst.py``, never asserted here.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from safeclip_guardrail import ImageInputError, ImageOptions, SafeCLIPGuard
from safeclip_guardrail.images._container import check_container
from safeclip_guardrail.images.decode import decode_image
from tests import _structures as S

DEFAULT = ImageOptions()


def refused(data: bytes, match: str, opts: ImageOptions = DEFAULT) -> None:
    """Refused by the walk itself, before any Pillow parser (and so by ``decode_image``)."""
    with pytest.raises(ImageInputError, match=match):
        check_container(data, opts, "<test>")
    with pytest.raises(ImageInputError, match=match):
        decode_image(data, opts)


# ----------------------------------------------------------------------------- JPEG scans
def test_the_scan_bomb_is_refused_before_any_decoder_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = S.scan_bomb_base(4000)
    bomb = S.scan_bomb(base, 3000)
    assert len(bomb) < 250_000 and Image.open(io.BytesIO(bomb)).size == (4000, 4000)

    def no_decoder(*_a: object, **_k: object) -> None:
        raise AssertionError("a decoder ran")

    with monkeypatch.context() as m:
        m.setattr(Image, "open", no_decoder)
        refused(bomb, r"has over 32 scans \(limit: max_jpeg_scans=32\).*raise "
                      r"ImageOptions.max_jpeg_scans")


def test_the_scan_bomb_gets_an_unreadable_verdict_through_the_guard(
        tiny_guard: SafeCLIPGuard) -> None:
    bomb = S.scan_bomb(S.scan_bomb_base(4000), 3000)
    verdict = tiny_guard.check(bomb)
    assert verdict.flagged and verdict.category == "unreadable"
    assert verdict.error is not None and "max_jpeg_scans" in verdict.error
    clean = tiny_guard.check(S.scan_bomb(S.scan_bomb_base(400), 22))  # 32 scans: judged
    assert clean.error is None and clean.category != "unreadable"


def test_scans_are_counted_exactly() -> None:
    base = S.encode(S.photo(96, 64), "JPEG", progressive=True)
    assert len(S.scans(S.jpeg_segments(base))) == 10  # libjpeg's default script
    assert decode_image(S.scan_bomb(base, 22)).image.size == (96, 64)  # 32 scans
    refused(S.scan_bomb(base, 23), "over 32 scans")
    raised = ImageOptions(max_jpeg_scans=40)
    assert decode_image(S.scan_bomb(base, 30), raised).image.size == (96, 64)
    refused(S.scan_bomb(base, 31), "over 40 scans", raised)
    refused(S.scan_bomb(base, 100, which=0), "over 32 scans")  # the DC scan too


def test_real_encoders_jpegs_pass() -> None:
    img = S.photo(320, 240)
    for data in (S.encode(img, "JPEG"), S.encode(img, "JPEG", progressive=True),
                 S.encode(img.convert("L"), "JPEG", progressive=True),
                 S.encode(img.convert("CMYK"), "JPEG", progressive=True),
                 S.encode(img, "JPEG", progressive=True, restart_marker_blocks=1),
                 S.camera_jpeg()):
        check_container(data, DEFAULT, "<real>")
        assert decode_image(data).image.size[0] > 0


def test_a_scan_bomb_in_a_later_mpo_picture_is_walked_when_it_will_be_decoded() -> None:
    bomb = S.scan_bomb(S.encode(S.photo(64, 48), "JPEG", progressive=True), 200)
    first = S.encode(S.photo(64, 48), "JPEG")
    mpo = S.encode(Image.open(io.BytesIO(first)), "MPO", save_all=True,
                   append_images=[Image.open(io.BytesIO(first))])
    at = mpo.rindex(first[:2] + first[2:40])  # the second picture starts here
    hostile = mpo[:at] + bomb
    assert decode_image(mpo, ImageOptions(frames=2)).frames  # the real one passes
    assert decode_image(hostile).image.size == (64, 48)  # picture 2 is never decoded
    refused(hostile, r"\(picture 2\) has over 32 scans", ImageOptions(frames=2))


# ------------------------------------------------------------------------ JPEG markers
def test_jpeg_header_floods_are_records() -> None:
    cam = S.camera_jpeg(320, 240)
    assert decode_image(S.jpeg_insert(cam, S.marker(0xFE, b"x"), 200)).image.size == (320, 240)
    refused(S.jpeg_insert(cam, S.marker(0xFE), 20_000), r"JPEG with over \d+ records")
    # junk and fill bytes before the first scan: Pillow steps over each in Python
    refused(S.jpeg_insert(cam, b"\x00" * 500_000, 1), r"JPEG with over \d+ records")
    refused(S.jpeg_insert(cam, b"\xff" * 500_000, 1), r"JPEG with over \d+ records")


def test_exif_split_over_many_segments_counts_the_copies_pillow_makes() -> None:
    cam = S.camera_jpeg(320, 240)
    assert decode_image(S.jpeg_exif_split(cam, 4)).image.size == (320, 240)
    # 300 x 65 KB = 19.5 MB held, but joined by repeated concatenation: ~600 MB copied
    refused(S.jpeg_exif_split(cam, 300), r"over 16777216 bytes of metadata \(EXIF, as joined")
    refused(S.jpeg_exif_split(cam, 40), "max_metadata_bytes")  # 2.6 MB held, 54 MB copied
    opts = ImageOptions(max_metadata_bytes=100_000_000)
    assert decode_image(S.jpeg_exif_split(cam, 40), opts).image.size == (320, 240)


def test_exif_directory_floods_are_records() -> None:
    img = S.photo(64, 48)
    flood = S.encode(img, "JPEG", exif=b"Exif\x00\x00" + S.exif_blob(5000, 0))
    assert decode_image(flood).image.size == (64, 48)  # one APP1 holds at most ~5,400
    refused(flood, r"JPEG with over \d+ records", ImageOptions(max_chunks=1000))
    png = S.png_insert(S.encode(img, "PNG"), (b"eXIf", S.exif_blob(20_000, 0)), 1)
    refused(png, r"PNG with over \d+ records")


def test_restart_interval_one_without_markers_stays_a_typed_outcome() -> None:
    data = S.jpeg_restart_interval_1(S.camera_jpeg(320, 240))
    try:
        assert decode_image(data).image.size == (320, 240)
    except ImageInputError as exc:
        assert "JPEG" in str(exc)


# ------------------------------------------------------------------------------- PNG
def test_png_one_byte_idat_chunks_are_refused() -> None:
    png = S.encode(S.photo(400, 300), "PNG", optimize=True)
    assert decode_image(S.png_split_idat(png, 1024)).image.size == (400, 300)
    refused(S.png_split_idat(png, 1), r"PNG with over \d+ records \(limit: max_chunks=10000")


def test_png_compressed_metadata_is_counted_inflated() -> None:
    png = S.encode(S.photo(64, 48), "PNG")
    assert decode_image(S.png_insert(png, S.iccp_bomb(500_000), 1)).image.size == (64, 48)
    refused(S.png_insert(png, S.ztxt_bomb(), 20), r"zTXt b'Comment' inflated; limit: "
                                                 r"max_metadata_bytes")
    refused(S.png_insert(png, S.ztxt_bomb(), 3), "max_metadata_bytes",
            ImageOptions(max_metadata_bytes=2_000_000))


# ------------------------------------------------------------------------------ TIFF
def test_tiff_strip_tables_may_not_list_more_than_the_picture_needs() -> None:
    assert decode_image(S.tiff_tables(400, 400, 4, rows=100)).image.size == (400, 400)
    refused(S.tiff_tables(400, 400, 5_000, rows=200), "lists 5000 strips where its 400x400 "
                                                      "picture needs 2")
    assert decode_image(S.tiff_tiled(100, 100, 16)).image.size == (100, 100)
    refused(S.tiff_tiled(100, 100, 16, 500), "lists 500 tiles where its 100x100 picture "
                                             "needs 49")


def test_tiff_directory_floods_are_records_and_pages_are_walked_as_decoded() -> None:
    tiff = S.encode(S.photo(64, 48), "TIFF")
    refused(S.tiff_entry_flood(tiff, 60_000), r"TIFF with over \d+ records")
    # Pillow also reads a TIFF whose magic number is in the other byte order
    assert decode_image(b"II\x00*" + tiff[4:]).image.size == (64, 48)
    refused(b"II\x00*" + S.tiff_entry_flood(tiff, 60_000)[4:], r"TIFF with over \d+ records")
    chain = S.tiff_ifd_chain(tiff, 20_000)
    assert decode_image(chain, ImageOptions(frames=3)).frames  # only 4 directories walked
    big = S.encode(S.photo(64, 48), "TIFF", big_tiff=True)
    assert big[:4] == b"II+\x00" and decode_image(big).image.size == (64, 48)


def test_jpeg_compressed_tiff_strips_are_scan_counted() -> None:
    tiff = S.encode(S.photo(64, 48), "TIFF", compression="jpeg")
    assert decode_image(tiff).image.size == (64, 48)
    at, size = S.tiff_strip(tiff)
    strip = tiff[at:at + size]
    assert strip[:2] == b"\xff\xd8"  # each strip is a JPEG stream
    bomb = S.scan_bomb(strip, 40)  # its only scan, repeated
    assert decode_image(S.tiff_replace_strip(tiff, S.scan_bomb(strip, 5))).frames
    refused(S.tiff_replace_strip(tiff, bomb), r"\(strip 1\) has over 32 scans")


# --------------------------------------------------------------------- GIF, WebP, BMP
def test_gif_and_webp_frame_floods_are_records() -> None:
    gif = S.gif_frames(3)
    assert decode_image(S.gif_split_subblocks(gif)).image.size == (8, 8)
    anim = S.encode(S.photo(64, 48), "WEBP", save_all=True,
                    append_images=[S.photo(64, 48, seed=1)])
    assert decode_image(S.webp_repeat(anim, b"ANMF", 50), ImageOptions(frames=3)).frames
    refused(S.webp_repeat(anim, b"ANMF", 50_000), r"WebP with over \d+ records")


def test_webp_sizes_are_checked_before_libwebp_allocates() -> None:
    anim = S.encode(S.photo(64, 48), "WEBP", save_all=True,
                    append_images=[S.photo(64, 48, seed=1)])
    refused(S.webp_canvas(anim, 60_000, 60_000), "declares a 60000x60000 canvas")


def test_rle_bitmaps_are_bounded_in_pixels() -> None:
    assert decode_image(S.bmp_rle8(300, 200)).image.size == (300, 200)
    refused(S.bmp_rle8(3000, 3000), r"3000x3000 RLE8 bitmap.*max_bmp_rle_pixels")
    assert decode_image(S.bmp_rle8(300, 200), ImageOptions(max_bmp_rle_pixels=60_000)).frames
    refused(S.bmp_rle8(300, 201), "RLE8", ImageOptions(max_bmp_rle_pixels=60_000))


def test_icons_embedded_pictures_are_walked() -> None:
    opts = ImageOptions(formats=("ICO", "PNG"))
    png = S.png_split_idat(S.encode(S.photo(200, 200), "PNG"), 1)
    icon = bytearray(S.encode(S.photo(32, 32), "ICO", sizes=[(32, 32)]))
    at = int.from_bytes(icon[18:22], "little")
    hostile = bytes(icon[:at]) + png
    hostile = hostile[:14] + len(png).to_bytes(4, "little") + hostile[18:]
    refused(hostile, r"PNG with over \d+ records", opts)


def test_avif_extents_are_checked() -> None:
    avif = S.encode(S.photo(64, 48), "AVIF")
    assert decode_image(avif).image.size == (64, 48)
    at = avif.index(b"ispe") + 8
    hostile = avif[:at] + (60_000).to_bytes(4, "big") * 2 + avif[at + 8:]
    refused(hostile, "declares a 60000x60000 image item")


def test_documents_are_left_to_their_own_reader() -> None:
    check_container(b"%PDF-1.7\n" + b"1 0 obj\n" * 100_000, DEFAULT, "<pdf>")


# ---------------------------------------------------------------------- libtiff stderr
def _corrupt_tiff() -> bytes:
    """A deflate TIFF whose strip's zlib stream is zeroed in the middle: libtiff complains."""
    data = bytearray(S.encode(S.photo(64, 48), "TIFF", compression="tiff_adobe_deflate"))
    at = data.index(b"\x78")  # the zlib stream of the strip
    data[at + 10:at + 30] = b"\x00" * 20
    return bytes(data)


def test_libtiff_errors_reach_stderr_without_the_library() -> None:
    """The control: Pillow alone, in a process that never imports safeclip_guardrail, lets
    libtiff print (so the test below, which expects silence, can fail)."""
    body = textwrap.dedent("""
        import io, sys
        from PIL import Image
        try:
            Image.open(io.BytesIO(sys.stdin.buffer.read())).load()
        except Exception:
            pass
        assert not any(m.startswith("safeclip_guardrail") for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", body], input=_corrupt_tiff(),
                          capture_output=True, timeout=120)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "Decoding error" in err or "ZIPDecode" in err, err


def test_a_corrupt_tiff_prints_nothing_to_fd_2(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImageInputError, match="TIFF"):
        decode_image(_corrupt_tiff())
    assert capfd.readouterr().err == ""
