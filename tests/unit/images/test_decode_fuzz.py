"""Fuzzing the decoder: mutated images in many formats never escape as untyped errors.

Property: for any bytes, ``decode_image`` returns RGB frames or raises ImageInputError,
nothing else, both with the default format allowlist and with every Pillow reader allowed
(except EPS/PS, which can never be allowed).

The seed corpus is generated here (small valid images in ~25 formats, animated and
multi-page ones, and the crash inputs of issue 11, see ``tests/_hostile.py``); nothing binary
is committed. Mutations: bit flips, interesting byte values, truncation, insertion, deletion,
duplication of a slice, splicing two seeds, and huge dimensions written into headers.

A second, structure-aware fuzz (``tests/_mutate.py``) mutates what multiplies decode work
rather than bytes: it repeats and drops JPEG scans and segments, declares restart intervals
of 1, inserts giant APPn and floods of markers, splits PNG data into one-byte IDATs, adds
zTXt/iCCP bombs, floods GIF/APNG/WebP frames, rewrites TIFF strip/tile tables and chains
directories, under the shipped default limits. Worst-case seconds per megapixel from its long
version are in ``benchmarks/bench_decode_worst.py`` and docs/performance.md.

CI runs a few hundred inputs (derandomized, reproducible). The long run::

    SAFECLIP_FUZZ_EXAMPLES=10000 SAFECLIP_FUZZ_REPORT=fuzz.json \\
        python -m pytest tests/unit/images/test_decode_fuzz.py -q -p no:randomly

runs that many random inputs per test and writes a JSON summary (inputs, outcomes, slowest
input in seconds, peak RSS of the process) to ``SAFECLIP_FUZZ_REPORT``. Timing is reported,
never asserted.
"""

from __future__ import annotations

import json
import os
import random
import resource
import struct
import sys
import time
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from safeclip_guardrail import ImageInputError, ImageOptions
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.testing.pictures import encode, noise
from tests import _hostile as H
from tests import _mutate as M

_RSS_AT_IMPORT = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
LONG = int(os.environ.get("SAFECLIP_FUZZ_EXAMPLES", "0"))
EXAMPLES = LONG or 150
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Image.init()
_ALL_READERS = tuple(f for f in sorted({*Image.OPEN, "MPO"}) if f not in {"EPS", "PS"})
OPTIONS = {
    "default": ImageOptions(max_pixels=4_000_000),
    "every-reader": ImageOptions(max_pixels=4_000_000, formats=_ALL_READERS),
}


def _safe_encode(img: Image.Image, fmt: str, **kw: object) -> bytes | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's deprecation of the IM format
            return encode(img, fmt, **kw)
    except Exception:  # a writer this Pillow lacks: the corpus just has one seed fewer
        return None


@lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """Small valid images in every format this Pillow writes, plus the crash inputs."""
    Image.init()
    rgb, rgba = noise(12, 9), noise(12, 9).convert("RGBA")
    frames = [noise(12, 9, seed=k) for k in range(3)]
    out: list[bytes | None] = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "ICO", "TGA",
                "PCX", "PPM", "SGI", "IM", "DDS", "QOI", "SPIDER", "JPEG2000", "ICNS"):
        out.append(_safe_encode(rgb, fmt))
    out += [
        _safe_encode(rgba, "PNG"), _safe_encode(rgba, "WEBP"), _safe_encode(rgb.convert("P"), "PNG"),
        _safe_encode(rgb.convert("L"), "JPEG", progressive=True), _safe_encode(rgb.convert("1"), "TIFF"),
        _safe_encode(rgb.convert("CMYK"), "JPEG"), _safe_encode(rgb.convert("I;16"), "PNG"),
        _safe_encode(rgb.convert("F"), "TIFF"), _safe_encode(rgb.convert("L"), "MSP"),
        _safe_encode(rgb.convert("1"), "XBM"), _safe_encode(rgb.convert("P"), "BLP"),
        _safe_encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _safe_encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        _safe_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        _safe_encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        _safe_encode(frames[0], "MPO", save_all=True, append_images=frames[1:]),
        _safe_encode(rgb, "TIFF", compression="tiff_lzw"),
        _safe_encode(rgb, "TIFF", compression="jpeg"),
        H.gif_broken_trailer(), H.tiff_second_ifd_without_dimensions(), H.tiff_second_page_huge(),
        H.blp_unknown_compression(), H.avif_damaged(), H.mpo_second_picture_cut(3),
        H.mpo_second_picture_cut(4), H.EPS, H.ico_embedding_png(3000, 3000),
        H.gif_of_one_pixel_frames(50), H.png_with_many_chunks(40), H.png_header_only(3000, 3000),
        H.hidden_behind_alpha(rgb),
    ]
    exif = Image.Exif()
    exif[0x0112] = 6
    out.append(_safe_encode(rgb, "JPEG", exif=exif))
    return tuple(b for b in out if b)


_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    corpus = seeds()
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "set", "truncate", "insert", "delete", "dup",
                                   "splice", "huge")))
        n = len(data)
        pos = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[pos] = draw(st.sampled_from(_INTERESTING))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
        elif op == "splice":
            other = draw(st.sampled_from(corpus))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
        elif op == "huge" and n >= pos + 4:  # a 16/32-bit field becomes a big dimension
            size = draw(st.sampled_from((20000, 65535, 0x7FFF_FFFF, 0xFFFF_FFFF)))
            fmt = draw(st.sampled_from((">I", "<I", ">H", "<H")))
            struct.pack_into(fmt, data, pos, size & (0xFFFF if "H" in fmt else 0xFFFF_FFFF))
    return bytes(data)


class _Stats:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
        self.slowest_input = b""
        self.untyped: list[str] = []

    def run(self, data: bytes, opts: ImageOptions) -> None:
        started = time.perf_counter()
        try:
            d = decode_image(data, opts)
        except ImageInputError:
            self.outcomes["ImageInputError"] += 1
        except BaseException as exc:
            self.untyped.append(f"{type(exc).__name__}: {exc}"[:200])
            raise
        else:
            assert d.frames and all(f.mode == "RGB" for f in d.frames)
            self.outcomes["decoded"] += 1
        finally:
            took = time.perf_counter() - started
            if took > self.slowest:
                self.slowest, self.slowest_input = took, data


STATS = {name: _Stats() for name in (*OPTIONS, "structural")}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_seeds_decode_or_fail_typed(name: str) -> None:
    before = STATS[name].outcomes["decoded"]
    for data in seeds():
        STATS[name].run(data, OPTIONS[name])
    assert len(seeds()) >= 40
    # the corpus is mostly valid: the fuzzer mutates real images, not noise
    assert STATS[name].outcomes["decoded"] - before >= (30 if name == "every-reader" else 20)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_mutated_images_decode_or_fail_typed(name: str) -> None:
    opts = OPTIONS[name]

    @FUZZ
    @given(data=mutated(), frames=st.integers(1, 3))
    def check(data: bytes, frames: int) -> None:
        STATS[name].run(data, opts.model_copy(update={"frames": frames}))

    check()
    _report()


STRUCTURAL = settings(
    max_examples=LONG or 250, deadline=None, database=None, derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@lru_cache(maxsize=1)
def structural_seeds() -> tuple[tuple[str, bytes], ...]:
    return tuple(M.seeds().items())


def test_structural_seeds_are_real_images_that_pass_the_default_limits() -> None:
    for name, data in structural_seeds():
        d = decode_image(data, ImageOptions(frames=3))
        assert d.frames, name


def test_structural_mutations_decode_or_fail_typed() -> None:
    """Markers, chunks, frames and tables mutated, decoded under the shipped defaults."""
    families: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    stats = STATS["structural"]
    before = Counter(stats.outcomes)

    @STRUCTURAL
    @given(seed=st.sampled_from(structural_seeds()), rng=st.randoms(use_true_random=False),
           depth=st.integers(1, 2), frames=st.sampled_from((1, 1, 3)))
    def check(seed: tuple[str, bytes], rng: random.Random, depth: int, frames: int) -> None:
        data = seed[1]
        families[M.format_of(data)] += 1
        for _ in range(depth):
            op, data = M.mutate(data, rng)
            ops[op] += 1
        stats.run(data, ImageOptions(frames=frames))

    check()
    _report()
    assert set(families) >= {"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"}
    assert len(ops) >= 30, ops  # the operations themselves ran, not only "none"
    new = stats.outcomes - before
    assert new["decoded"] and new["ImageInputError"], new  # both outcomes are reached


def _report() -> None:
    path = os.environ.get("SAFECLIP_FUZZ_REPORT")
    if not path:
        return
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = {
        name: {"inputs": sum(s.outcomes.values()), "outcomes": dict(s.outcomes),
               "untyped": s.untyped, "slowest_input_s": round(s.slowest, 4)}
        for name, s in STATS.items()
    }
    for name, stats in STATS.items():  # keep the slowest input of each run for a look
        Path(f"{path}.slowest-{name}.bin").write_bytes(stats.slowest_input)
    summary["peak_rss_mb"] = round(rss / 1024 if sys.platform != "darwin" else rss / 2**20, 1)
    summary["rss_before_fuzzing_mb"] = _RSS_AT_IMPORT
    summary["seeds"] = len(seeds())
    Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
