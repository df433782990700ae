"""What reconstructed forwarding costs and weighs, and what a PDF page costs; prints JSON.

    python benchmarks/bench_forward.py [--n 24]

Per kind of input (photo-like JPEGs at quality 75/90/95, the same photos as PNG and as
lossy WebP, screenshot-like PNGs): the median size of the forwarded bytes over the input
bytes, the PSNR of the forwarded picture against the judged pixels, and milliseconds per
image to decode at full size and to rebuild. For JPEG sources the rebuild reuses the
source's quantisation tables; ``jpeg_q95_444`` is the fixed quality-95 4:4:4 encode it was
measured against. ``pdf``: milliseconds per rendered page at the default
``render_long_side`` for synthetic pages and for any PDF named with ``--pdf``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import emit, machine, photo_jpegs, synthetic_pdf


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)


def _measure(inputs: list[bytes]) -> dict[str, Any]:
    from PIL import Image

    from safeclip_guardrail.images.decode import decode_image, forward_image

    ratios, psnrs, decode_ms, rebuild_ms, q95 = [], [], [], [], []
    for data in inputs:
        t0 = time.perf_counter()
        decoded = decode_image(data)
        t1 = time.perf_counter()
        fwd = forward_image(decoded)
        t2 = time.perf_counter()
        decode_ms.append((t1 - t0) * 1000)
        rebuild_ms.append((t2 - t1) * 1000)
        ratios.append(len(fwd.data) / len(data))
        judged = np.asarray(decoded.image)
        psnrs.append(_psnr(np.asarray(Image.open(io.BytesIO(fwd.data)).convert("RGB")), judged))
        if fwd.mime_type == "image/jpeg":
            buf = io.BytesIO()
            decoded.image.save(buf, "JPEG", quality=95, subsampling=0)
            q95.append(len(buf.getvalue()) / len(data))
    out: dict[str, Any] = {
        "images": len(inputs), "size": list(Image.open(io.BytesIO(inputs[0])).size),
        "forwarded_mime": fwd.mime_type,
        "size_ratio_median": round(float(np.median(ratios)), 3),
        "size_ratio_max": round(float(np.max(ratios)), 3),
        "psnr_vs_judged_min_db": round(float(np.min(psnrs)), 2),
        "decode_ms_median": round(float(np.median(decode_ms)), 2),
        "rebuild_ms_median": round(float(np.median(rebuild_ms)), 2),
    }
    if q95:
        out["jpeg_q95_444_size_ratio_median"] = round(float(np.median(q95)), 3)
    return out


def _recode(jpegs: list[bytes], fmt: str, **kw: Any) -> list[bytes]:
    from PIL import Image

    out = []
    for j in jpegs:
        buf = io.BytesIO()
        Image.open(io.BytesIO(j)).save(buf, fmt, **kw)
        out.append(buf.getvalue())
    return out


def _screenshots(n: int) -> list[bytes]:
    from PIL import Image, ImageDraw

    out = []
    for k in range(n):
        im = Image.new("RGB", (1280, 800), (250, 250, 250))
        draw = ImageDraw.Draw(im)
        for y in range(0, 800, 18):
            draw.text((10 + k, y), "The quick brown fox jumps over the lazy dog 0123456789 " * 3,
                      fill=(20, 20, 20))
        draw.rectangle((700, 100 + k, 1200, 500), fill=(30, 120, 200))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _pdf_pages(paths: list[Path]) -> dict[str, Any]:
    from safeclip_guardrail.config import ImageOptions
    from safeclip_guardrail.images.decode import decode_image

    sources = {"synthetic A4, one 400x300 picture per page, 10 pages": synthetic_pdf(10)}
    sources.update({str(p): p.read_bytes() for p in paths if p.is_file()})
    out = {}
    for name, data in sources.items():
        t0 = time.perf_counter()
        d = decode_image(data, ImageOptions())
        seconds = time.perf_counter() - t0
        labels = d.labels or ()
        pages = sum(1 for label in labels if "," not in label)
        out[name] = {"pages": pages, "frames": len(d.frames),
                     "ms_per_page": round(seconds * 1000 / max(pages, 1), 1),
                     "page_size": list(d.frames[0].size)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="images per kind")
    p.add_argument("--pdf", type=Path, nargs="*", default=[], help="real PDFs to render too")
    args = p.parse_args(argv)
    photos90 = photo_jpegs(args.n, seed=1, quality=90)
    report: dict[str, Any] = {
        "benchmark": "bench_forward", "machine": machine(),
        "jpeg_photos_q75": _measure(photo_jpegs(args.n, seed=2, quality=75)),
        "jpeg_photos_q90": _measure(photos90),
        "jpeg_photos_q95": _measure(photo_jpegs(args.n, seed=3, quality=95)),
        "png_photos": _measure(_recode(photos90, "PNG")),
        "webp_photos_lossy": _measure(_recode(photos90, "WEBP", quality=80)),
        "png_screenshots": _measure(_screenshots(max(4, args.n // 4))),
        "pdf": _pdf_pages(args.pdf),
    }
    emit(report)
    return report


if __name__ == "__main__":
    main()
