"""Issue 11 regressions: every decoding finding of the red-team pass, through the public API.

Each hostile input must cost exactly one typed verdict: ``decode_image`` raises
ImageInputError (never anything else), ``guard.check`` returns a fail-closed verdict, and the
other images of the same ``check_batch`` keep their own verdicts.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import EpsImagePlugin, GifImagePlugin, Image

from safeclip_guardrail import ConfigurationError, ImageInputError, ImageOptions, SafeCLIPGuard
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import encode, noise
from tests import _hostile as H

TWO = ImageOptions(frames=2)
WITH = ImageOptions(formats=("PNG", "JPEG", "MPO", "GIF", "TIFF", "WEBP", "BMP", "AVIF", "BLP", "ICO"))


# ----------------------------------------------------------------------------- finding 1
CORRUPT: list[tuple[str, Any, ImageOptions]] = [
    ("gif-broken-trailer-frames2", H.gif_broken_trailer, TWO),
    ("tiff-ifd2-no-dimensions", H.tiff_second_ifd_without_dimensions, TWO),
    ("blp-unknown-compression", H.blp_unknown_compression, WITH),
    ("avif-damaged-av1", H.avif_damaged, ImageOptions()),
    ("mpo-second-cut-3", lambda: H.mpo_second_picture_cut(3), TWO),
    ("mpo-second-cut-4", lambda: H.mpo_second_picture_cut(4), TWO),
    ("tiff-page2-20000x20000", H.tiff_second_page_huge, TWO),
]


@pytest.mark.parametrize(("name", "build", "opts"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_images_never_raise_untyped(name: str, build: Any, opts: ImageOptions) -> None:
    data = build()
    try:
        d = decode_image(data, opts)
    except ImageInputError as exc:
        assert str(exc) and exc.source
    else:  # readable first frame(s): what was judged is flagged as not the whole file
        assert d.frames and not d.faithful


def test_blp_is_not_even_parsed_by_default() -> None:
    with pytest.raises(ImageInputError, match="BLP, which is not an allowed image format"):
        decode_image(H.blp_unknown_compression())
    with pytest.raises(ImageInputError, match=r"BLP image .* truncated or corrupt"):
        decode_image(H.blp_unknown_compression(), WITH)


def test_page_over_the_pixel_limit_is_refused_before_decoding() -> None:
    data = H.tiff_second_page_huge()
    assert decode_image(data).image.size == (8, 8)  # frames=1: page 2 is never read
    with pytest.raises(ImageInputError, match=r"frame 2\) is 20000x20000"):
        decode_image(data, TWO)


def test_one_hostile_image_costs_one_verdict_not_the_batch(planted: PlantedEncoder) -> None:
    guard = SafeCLIPGuard(planted, config=None).with_options(images=TWO)
    good = planted.plant_bytes("gun")
    sources = [build() for _, build, _ in CORRUPT] + [good, H.EPS, H.png_with_many_chunks(50_000)]
    for src in sources[:len(CORRUPT)]:  # first frames that decode are judged like any image
        try:
            frames = decode_image(src, TWO).frames
        except ImageInputError:
            continue
        for f in frames:
            planted.register(f, planted.embedding_for("neutral"))
    verdicts = guard.check_batch(sources)
    assert len(verdicts) == len(sources)
    assert verdicts[len(CORRUPT)].category == "gun" and verdicts[len(CORRUPT)].error is None
    assert verdicts[-1].error and verdicts[-2].error
    assert all(v.flagged for v in verdicts if v.error)  # errors fail closed (on_error="block")


# ----------------------------------------------------------------------------- finding 2
def test_eps_never_reaches_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "gs-was-run"
    gs = tmp_path / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(gs.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{gs.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # re-detect on the new PATH

    # the stand-in works: Pillow itself would run it on this "image"
    with pytest.raises(Exception):  # noqa: B017 - Pillow's own failure, any type
        Image.open(io.BytesIO(H.EPS)).load()
    assert marker.exists()
    marker.unlink()

    with pytest.raises(ImageInputError, match="EPS, which is not an allowed image format"):
        decode_image(H.EPS)
    with pytest.raises(ImageInputError, match="not an allowed"):
        decode_image(H.EPS, WITH)
    assert not marker.exists()
    with pytest.raises(ConfigurationError, match="Ghostscript"):
        SafeCLIPGuard(PlantedEncoder()).with_options(images={"formats": ("PNG", "eps")})


def test_format_allowlist_is_configurable() -> None:
    bmp = encode(noise(), "BMP")
    assert decode_image(bmp).format == "BMP"
    with pytest.raises(ImageInputError, match="BMP, which is not an allowed"):
        decode_image(bmp, ImageOptions(formats=("PNG",)))
    tga = encode(noise(), "TGA")
    with pytest.raises(ImageInputError, match=r"not in a format|not an allowed"):
        decode_image(tga)


# ----------------------------------------------------------------------------- finding 4
def test_ico_with_a_huge_embedded_png_is_checked_before_decoding() -> None:
    data = H.ico_embedding_png(9000, 9000)
    with pytest.raises(ImageInputError, match="ICO, which is not an allowed"):
        decode_image(data)
    with pytest.raises(ImageInputError, match="embeds a 9000x9000 picture"):
        decode_image(data, WITH.model_copy(update={"max_pixels": 1_000_000}))


def test_aggregate_pixel_budget_across_frames() -> None:
    frames = [Image.new("RGB", (100, 100), c) for c in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert len(decode_image(data, ImageOptions(frames=3, max_total_pixels=30_000)).frames) == 3
    with pytest.raises(ImageInputError, match="first 3 frames, over the limit of 25000"):
        decode_image(data, ImageOptions(frames=3, max_total_pixels=25_000))


# ----------------------------------------------------------------------------- finding 5
def test_frames_are_never_counted_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    data = H.gif_of_one_pixel_frames(20_000)
    with pytest.raises(IndexError):  # what counting them all does to this file
        _ = Image.open(io.BytesIO(data)).n_frames
    seeks: list[int] = []
    real = GifImagePlugin.GifImageFile._seek

    def spy(self: Any, frame: int, update_image: bool = True) -> None:
        seeks.append(frame)
        real(self, frame, update_image)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", spy)
    d = decode_image(data)
    assert d.image.size == (1, 1) and not d.faithful  # more frames than judged
    assert max(seeks) <= 1  # frame 0, plus one probe for a further frame
    seeks.clear()
    assert len(decode_image(data, ImageOptions(frames=3)).frames) == 3
    assert max(seeks) <= 3


def test_png_made_of_many_chunks_is_refused_before_pillow_walks_it() -> None:
    assert decode_image(H.png_with_many_chunks(500)).image.size == (1, 1)  # real-world-ish
    with pytest.raises(ImageInputError, match=r"PNG with over .* records"):
        decode_image(H.png_with_many_chunks(200_000))
    # the bound is configurable
    assert decode_image(H.png_with_many_chunks(20_000),
                        ImageOptions(max_chunks=30_000)).image.size == (1, 1)


def test_gif_made_of_many_extension_blocks_is_refused() -> None:
    head = b"GIF89a" + bytes([1, 0, 1, 0, 0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
    comment = b"!\xfe" + b"\x01x" * 100_000 + b"\x00"
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;"
    with pytest.raises(ImageInputError, match=r"GIF with over .* records"):
        decode_image(head + comment + frame)
    assert decode_image(head + b"!\xfe\x05hello\x00" + frame).image.size == (1, 1)


def test_truncated_images_are_errors_not_half_judged() -> None:
    data = encode(noise(64, 64), "JPEG")
    with pytest.raises(ImageInputError, match=r"JPEG image .* truncated or corrupt"):
        decode_image(data[: len(data) - 200])


# ----------------------------------------------------------------------------- finding 7
def test_path_errors_are_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "ok.png"
    good.write_bytes(encode(noise()))

    class BytesPath:
        def __init__(self, p: bytes) -> None:
            self.p = p

        def __fspath__(self) -> bytes:
            return self.p

    assert decode_image(BytesPath(os.fsencode(good))).image.size == (40, 30)  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match="not found"):
        decode_image(BytesPath(b"/no/such/file.png"))  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match=r"cannot open image file .*name too long"):
        decode_image(tmp_path / ("x" * 5000 + ".png"))
    with pytest.raises(ImageInputError, match=r"cannot open image file .*Not a directory"):
        decode_image(good / "inner.png")
    with pytest.raises(ImageInputError, match="not a regular file"):
        decode_image(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # nobody writes: a blocking open would hang the guard
    with pytest.raises(ImageInputError, match="not a regular file"):
        decode_image(fifo)
    with pytest.raises(ImageInputError, match=r"cannot open image file bad\\x00name: .*null"):
        decode_image(BytesPath(b"bad\x00name"))  # type: ignore[arg-type]

    locked = tmp_path / "locked.png"
    locked.write_bytes(good.read_bytes())
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads anything: the OS boundary answers as it would for another user
        real_open = os.open

        def deny(path: Any, flags: int, *a: Any, **k: Any) -> int:
            if os.fsdecode(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(locked))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ImageInputError, match=r"cannot open image file .*Permission denied"):
        decode_image(locked)


def test_path_errors_reach_a_batch_as_verdicts(planted: PlantedEncoder, tmp_path: Path) -> None:
    guard = SafeCLIPGuard(planted)
    verdicts = guard.check_batch([tmp_path / ("y" * 4000), tmp_path, planted.plant_bytes("gun")])
    assert [bool(v.error) for v in verdicts] == [True, True, False]


# ----------------------------------------------------------------------------- finding 8
def test_picture_hidden_behind_alpha_zero_is_judged(planted: PlantedEncoder) -> None:
    guard = SafeCLIPGuard(planted)
    picture = planted.plant("gun")
    planted.register(Image.new("RGB", picture.size, "white"), planted.embedding_for("neutral"))
    data = H.hidden_behind_alpha(picture)
    d = decode_image(data)
    assert d.image.getpixel((0, 0)) == (255, 255, 255)  # what a compositing viewer shows
    assert np.array_equal(np.asarray(d.frames[1]), np.asarray(picture))  # what RGB loaders show
    assert not d.faithful
    v = guard.check(data)
    assert v.flagged and v.category == "gun" and v.frames_checked == 2


def test_opaque_alpha_is_one_view_and_faithful() -> None:
    d = decode_image(encode(noise().convert("RGBA")))
    assert len(d.frames) == 1 and d.faithful


def test_16_bit_is_read_by_its_high_byte_not_rescaled_by_its_maximum() -> None:
    arr = np.full((30, 40), 100 << 8, dtype=np.uint16)
    arr[0, 0] = 65535  # one bright pixel used to black out the rest
    data = encode(Image.fromarray(arr), "PNG")
    d = decode_image(data)
    px = np.asarray(d.image)
    assert px[5, 5, 0] == 100 and px[0, 0, 0] == 255
    assert not d.faithful


def test_plain_images_are_faithful() -> None:
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF"):
        d = decode_image(encode(noise(), fmt))
        assert d.faithful and d.format == fmt and d.data is not None, fmt


def test_multi_picture_jpegs_from_cameras_decode() -> None:
    data = encode(noise(), "MPO", save_all=True, append_images=[noise(seed=1)])
    d = decode_image(data)
    assert d.format == "MPO" and len(d.frames) == 1
    assert d.faithful  # a plain JPEG decoder sees the first picture only, the judged one
    assert len(decode_image(data, TWO).frames) == 2
    assert decode_image(data, ImageOptions(formats=("JPEG",))).format == "MPO"
    with pytest.raises(ImageInputError, match="JPEG, which is not an allowed image format"):
        decode_image(data, ImageOptions(formats=("PNG",)))
    with pytest.raises(ImageInputError, match="opened as JPEG, which is not allowed"):
        decode_image(encode(noise(), "JPEG"), ImageOptions(formats=("MPO",)))


@pytest.mark.parametrize(("gamma", "faithful"), [(45455, True), (5000, False), (100000, False)])
def test_png_gamma_other_than_srgb_is_not_faithful(gamma: int, faithful: bool) -> None:
    import struct

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", gamma))
    data = encode(noise(), "PNG", pnginfo=info)
    assert decode_image(data).faithful is faithful
