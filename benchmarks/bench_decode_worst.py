"""Worst-case decode time per format under the default limits; prints JSON.

    python benchmarks/bench_decode_worst.py                 # targeted cases + 300 fuzzed inputs
    python benchmarks/bench_decode_worst.py --fuzz 2000 --max-pixels

Two sources of inputs, all generated here (``tests/_structures.py``, ``tests/_mutate.py``):

- **targeted**: for each format, what multiplies decode work pushed to just under each
  default limit (or far past it, to time the refusal): the issue-20 scan bomb (4000x4000,
  last scan x3000) and the same file at the 32-scan limit; restart interval 1; marker
  floods; EXIF split over segments; one-byte and 256-byte IDATs; zTXt bombs; text floods;
  APNG/GIF/WebP frame floods; TIFF strips of one row, 16x16 tiles, directory floods; RLE
  bitmaps; plus each format's plain decode of a 16 Mpx picture (noise: the most data);
- **fuzzed**: the structure-aware mutations of the CI fuzz on larger real-encoder seeds.

Each input is decoded with ``decode_image(data, ImageOptions())`` (the shipped defaults)
in this process; the figure is CPU seconds (``time.process_time``: every thread of the
process, so multithreaded decoders are not flattered). ``s_per_mp`` divides by the pixels
decoded; it is reported for inputs of at least 1 Mpx (below that, fixed costs dominate and
the absolute seconds are the figure to read). Refused inputs report the seconds it took to
refuse them and which limit did. Timings on a shared machine are noisy: the load average
before and after is printed; rerun on a quiet machine for tight figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import PIL  # noqa: E402
from _clip_fixtures import cpu_model  # noqa: E402
from PIL import Image, features  # noqa: E402

from safeclip_guardrail import ImageInputError, ImageOptions  # noqa: E402
from safeclip_guardrail.images.decode import decode_image  # noqa: E402
from tests import _mutate as M  # noqa: E402
from tests import _structures as S  # noqa: E402

_LIMIT = re.compile(r"(max_\w+|records|over the limit of \d+ pixels|truncated or corrupt|"
                    r"lists \d+ \w+ where|tag values adding up)")


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "pillow": PIL.__version__,
            "libs": {k: features.version(k) for k in ("jpg", "zlib", "libtiff", "webp", "avif")}}


def run(data: bytes, opts: ImageOptions, repeats: int) -> dict[str, Any]:
    times, outcome, pixels = [], "", 0
    for _ in range(repeats):
        gc.collect()
        t0 = time.process_time()
        try:
            d = decode_image(data, opts)
        except ImageInputError as exc:
            seconds = time.process_time() - t0
            m = _LIMIT.search(str(exc))
            outcome, pixels = f"refused ({m.group(1) if m else str(exc)[:60]})", 0
        else:
            seconds = time.process_time() - t0
            outcome, pixels = "decoded", d.pixels
            del d
        times.append(seconds)
    seconds = sorted(times)[len(times) // 2]
    mp = pixels / 1e6
    return {"seconds": round(seconds, 4), "megapixels": round(mp, 3), "bytes": len(data),
            "s_per_mp": round(seconds / mp, 4) if mp >= 1 else None, "outcome": outcome}


Case = tuple[str, str, Callable[[], bytes], ImageOptions]


def targeted(max_pixels: bool) -> Iterator[Case]:
    d = ImageOptions()
    flat = S.scan_bomb_base(4000)
    noisy = S.photo(4000, 4000, grain=40)
    yield "JPEG", "scan bomb: 4000x4000 flat progressive, last scan x3000 (issue 20)", \
        lambda: S.scan_bomb(flat, 3000), d
    yield "JPEG", "same, at the limit: 32 scans", lambda: S.scan_bomb(flat, 22), d
    yield "JPEG", "same, DC scan repeated to 32", lambda: S.scan_bomb(flat, 22, which=0), d
    yield "JPEG", "4000x4000 grainy progressive, last scan (1.4 MB) repeated to 32 scans", \
        lambda: S.scan_bomb(S.encode(S.photo(4000, 4000, grain=20), "JPEG", progressive=True),
                            22), d
    yield "JPEG", "4000x4000 noisy baseline q95", lambda: S.encode(noisy, "JPEG", quality=95), d
    yield "JPEG", "camera 4000x3000, DRI=1 without restart markers", \
        lambda: S.jpeg_restart_interval_1(S.camera_jpeg(4000, 3000)), d
    yield "JPEG", "camera 4000x3000, 9,000 empty COM markers before the scan", \
        lambda: S.jpeg_insert(S.camera_jpeg(4000, 3000), S.marker(0xFE), 9_000), d
    yield "JPEG", "camera 4000x3000, EXIF split in 22 more segments (~18 MB copied)", \
        lambda: S.jpeg_exif_split(S.camera_jpeg(4000, 3000), 22), d
    png = S.encode(noisy, "PNG")
    yield "PNG", "4000x4000 noise", lambda: png, d
    yield "PNG", "same, IDAT split in 256-byte chunks", lambda: S.png_split_idat(png, 256), d
    yield "PNG", "1000x1000, IDAT split in 1-byte chunks", \
        lambda: S.png_split_idat(S.encode(S.photo(1000, 1000), "PNG"), 1), d
    yield "PNG", "1000x1000 with 15 zTXt of 1 MB inflated", \
        lambda: S.png_insert(S.encode(S.photo(1000, 1000), "PNG"), S.ztxt_bomb(), 15), d
    yield "PNG", "1000x1000 with 10,000 tEXt chunks", \
        lambda: S.png_insert(S.encode(S.photo(1000, 1000), "PNG"), (b"tEXt", b"k\x00v"),
                             10_000), d
    frames = [S.photo(1000, 1000, seed=k) for k in range(2)]
    apng = S.encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    yield "PNG", "APNG 1000x1000, 2 frames, frames=1", lambda: apng, d
    gif = S.encode(noisy.convert("P"), "GIF")
    yield "GIF", "4000x4000 noise", lambda: gif, d
    yield "GIF", "same, one-byte sub-blocks", lambda: S.gif_split_subblocks(gif), d
    yield "GIF", "8x8, 12,000 frames (frames=1)", lambda: S.gif_frames(12_000), d
    anim = S.encode(S.photo(16, 16), "WEBP", save_all=True,
                    append_images=[S.photo(16, 16, seed=1)])
    yield "WEBP", "4000x4000 noise, lossy", lambda: S.encode(noisy, "WEBP"), d
    yield "WEBP", "4000x4000 noise, lossless", \
        lambda: S.encode(noisy, "WEBP", lossless=True, method=0), d
    yield "WEBP", "animated 16x16, ANMF x9,000 (frames=1)", \
        lambda: S.webp_repeat(anim, b"ANMF", 9_000), d
    yield "WEBP", "animated 16x16, ANMF x40,000", lambda: S.webp_repeat(anim, b"ANMF", 40_000), d
    yield "TIFF", "4000x4000 raw, one row per strip", \
        lambda: S.tiff_tables(4000, 4000, 4000, rows=1), d
    yield "TIFF", "4000x4000 raw, 16x16 tiles (file padded to 16 MB)", \
        lambda: S.tiff_tiled(4000, 4000, 16, pad=16_000_000), d
    yield "TIFF", "3000x3000 LZW noise", \
        lambda: S.encode(S.photo(3000, 3000, grain=40), "TIFF", compression="tiff_lzw"), d
    yield "TIFF", "4000x4000 JPEG-compressed", lambda: S.encode(noisy, "TIFF", compression="jpeg"), d
    yield "TIFF", "400x300, 20,000 chained pages (frames=3)", \
        lambda: S.tiff_ifd_chain(S.encode(S.photo(400, 300), "TIFF"), 20_000), \
        ImageOptions(frames=3)
    yield "TIFF", "strip tables x5,000 surplus", lambda: S.tiff_tables(1000, 1000, 10_000, rows=500), d
    yield "BMP", "4000x4000 24-bit", lambda: S.encode(noisy, "BMP"), d
    yield "BMP", "RLE8 1414x1414 (at max_bmp_rle_pixels), end of line after 1 pixel per row", \
        lambda: S.bmp_rle8(1414, 1414), d
    yield "BMP", "RLE8 1414x1414, runs of one pixel", \
        lambda: S.bmp_rle8(1414, 1414, b"\x01\x07" * 1414 + b"\x00\x00"), d
    yield "BMP", "RLE8 7000x7000 (over max_bmp_rle_pixels)", lambda: S.bmp_rle8(7000, 7000), d
    if features.check("avif"):
        yield "AVIF", "2000x2000 noise", \
            lambda: S.encode(S.photo(2000, 2000, grain=40), "AVIF", speed=10), d
    if max_pixels:
        big = Image.new("RGB", (7000, 7000), (120, 130, 140))
        yield "JPEG", "7000x7000 (49 Mpx) flat progressive at 32 scans", \
            lambda: S.scan_bomb(S.encode(big, "JPEG", progressive=True), 22), d
        yield "PNG", "7000x7000 (49 Mpx) flat", lambda: S.encode(big, "PNG"), d


def fuzzed(n: int, w: int, h: int, seed: int) -> Iterator[Case]:
    seeds = M.seeds(w, h)
    rng = random.Random(seed)
    names = sorted(seeds)
    for _ in range(n):
        name = rng.choice(names)
        data, ops = seeds[name], []
        for _ in range(rng.choice((1, 1, 2))):
            op, data = M.mutate(data, rng)
            ops.append(op)
        frames = rng.choice((1, 1, 3))
        yield M.format_of(data), f"fuzz {name} {'+'.join(ops)} frames={frames}", \
            (lambda data=data: data), ImageOptions(frames=frames)


def scan_bomb_verdict() -> dict[str, Any]:
    """The issue-20 bomb through the public path: ``guard.check`` on a tiny real CLIP."""
    import tempfile

    from safeclip_guardrail import SafeCLIPGuard
    from safeclip_guardrail.testing import build_tiny_clip

    with tempfile.TemporaryDirectory() as tmp:
        guard = SafeCLIPGuard.from_pretrained(str(build_tiny_clip(Path(tmp))), device="cpu")
        bomb = S.scan_bomb(S.scan_bomb_base(4000), 3000)
        guard.check(S.encode(S.photo(64, 48), "PNG"))  # warm up the model
        t0 = time.process_time()
        verdict = guard.check(bomb)
        seconds = time.process_time() - t0
    return {"input": "4000x4000 progressive, last scan x3000", "bytes": len(bomb),
            "cpu_seconds": round(seconds, 4), "flagged": verdict.flagged,
            "category": verdict.category, "error": verdict.error}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fuzz", type=int, default=300, help="fuzzed inputs (default 300)")
    ap.add_argument("--fuzz-size", type=int, nargs=2, default=(1200, 900), metavar=("W", "H"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="runs per targeted input (median)")
    ap.add_argument("--max-pixels", action="store_true", help="add 49 Mpx cases (~1 GB RSS)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    load_before = os.getloadavg()
    rows = []
    cases = [(c, args.repeats) for c in targeted(args.max_pixels)]
    cases += [(c, 1) for c in fuzzed(args.fuzz, *args.fuzz_size, args.seed)]
    for (fmt, name, build, opts), repeats in cases:
        data = build()
        rows.append({"format": fmt, "input": name, **run(data, opts, repeats)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    table: dict[str, Any] = {}
    for fmt in sorted({r["format"] for r in rows}):
        mine = [r for r in rows if r["format"] == fmt]
        per_mp = [r for r in mine if r["s_per_mp"] is not None]
        worst_mp = max(per_mp, key=lambda r: r["s_per_mp"], default=None)
        worst_s = max(mine, key=lambda r: r["seconds"])
        table[fmt] = {"inputs": len(mine), "worst_s_per_mp": worst_mp,
                      "worst_seconds": worst_s}
    out = {"benchmark": "bench_decode_worst", "machine": machine(),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "defaults": {k: v for k, v in ImageOptions().model_dump().items()
                        if k.startswith("max_") or k == "frames"},
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "scan_bomb_verdict": scan_bomb_verdict(), "table": table, "rows": rows}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
