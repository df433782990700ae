"""What this phase added per picture, on the device: views, rebuilt forwards, PDF pages.

- ``views``: images/s and views per image on square, 16:9 and 3:1 JPEGs, the default views
  (padded whole picture plus tiles) and the padded whole picture alone vs the old centre
  crop, in alternating rounds (``bench_views.py`` on the CPU measures the same);
- ``forwarding``: ``judge_batch(forward=True)`` (every pixel decoded, the judged pixels
  rebuilt as the bytes to send) vs ``forward=False`` on the same guard, per kind of input,
  with the rebuild's own milliseconds per image and the forwarded size ratio;
- ``pdf_pages``: a synthetic A4 document judged page by page (pypdfium2 renders each page and
  lifts its embedded pictures as frames; the guard judges every frame's views): milliseconds
  per page to decode (render + pictures) and for the whole path with forwarding.

Every guard here uses the library's default dtype on the device (float16 on a GPU) and a
batch of 32 encoder inputs (views), the verdict cache off.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
from _clip_fixtures import photo_jpegs, synthetic_pdf
from bench_views import SHAPES, centre_crop

from gpu._ctx import Ctx, alternate, paired_ratio
from gpu._runner import SectionSkipped


def views(ctx: Ctx, out: dict[str, Any]) -> None:
    from safeclip_guardrail import ImageOptions

    n, rounds = ctx.pick(32, 4), ctx.pick(4, 2)
    guard = ctx.guard(None, batch=32)
    whole = guard.with_options(images=ImageOptions(tiles=False))
    out.update(dtype=str(guard.encoder.dtype).removeprefix("torch."), batch_size=32,
               images_per_round=n, rounds=rounds, shapes={})

    def centre(jpegs: list[bytes]) -> Any:
        with centre_crop():
            return guard.check_batch(jpegs)

    for s, (name, size) in enumerate(SHAPES.items()):
        w, h = ctx.size(*size)
        jpegs = photo_jpegs(n, width=w, height=h, seed=100 + s)
        verdicts = guard.check_batch(jpegs)  # warm-up, and the views it judged
        per_image = float(np.mean([v.views_checked for v in verdicts]))
        ways = {"centre_crop": lambda j=jpegs: centre(j),
                "whole": lambda j=jpegs: whole.check_batch(j),
                "views": lambda j=jpegs: guard.check_batch(j)}
        for way in ways.values():
            way()
        times = alternate(ways, rounds, ctx.timed)
        base = times["centre_crop"]
        out["shapes"][name] = {
            "size": [w, h], "views_per_image": per_image,
            "decided_by_example": max(verdicts, key=lambda v: v.toxic_score).decided_by,
            **{f"{k}_images_per_s": round(n * len(t) / sum(t), 2) for k, t in times.items()},
            "views_encoder_inputs_per_s": round(n * per_image * len(times["views"])
                                                / sum(times["views"]), 1),
            **{f"{k}_over_centre_crop": paired_ratio(t, base)
               for k, t in times.items() if k != "centre_crop"},
        }


def _recode(jpegs: list[bytes], fmt: str) -> list[bytes]:
    from PIL import Image

    out = []
    for j in jpegs:
        buf = io.BytesIO()
        Image.open(io.BytesIO(j)).save(buf, fmt)
        out.append(buf.getvalue())
    return out


def forwarding(ctx: Ctx, out: dict[str, Any]) -> None:
    """PNG photos are few: zlib on photo noise makes their rebuild ~0.1 s per 640x480 (the
    slowest common kind: kept exact for plain PNGs, see docs/performance.md)."""
    from safeclip_guardrail.images.decode import decode_image, forward_image

    n, rounds = ctx.pick(32, 4), ctx.pick(4, 2)
    guard = ctx.guard(None, batch=32)
    out.update(dtype=str(guard.encoder.dtype).removeprefix("torch."), rounds=rounds, inputs={})
    small, wide = ctx.size(640, 480), ctx.size(1280, 720)
    kinds = {f"jpeg_{small[0]}x{small[1]}": photo_jpegs(n, width=small[0], height=small[1],
                                                       seed=20),
             f"jpeg_{wide[0]}x{wide[1]}": photo_jpegs(n, width=wide[0], height=wide[1], seed=21),
             f"png_{small[0]}x{small[1]}": _recode(photo_jpegs(max(2, n // 4), width=small[0],
                                                               height=small[1], seed=22), "PNG")}
    for kind, data in kinds.items():
        ways = {"judge": lambda d=data: guard.judge_batch(d),
                "forward": lambda d=data: guard.judge_batch(d, forward=True)}
        forwarded = guard.judge_batch(data, forward=True)  # warm-up, and what is sent
        ways["judge"]()
        times = alternate(ways, rounds, ctx.timed)
        decoded = [decode_image(d) for d in data]
        t0 = time.perf_counter()
        for d in decoded:
            forward_image(d)
        rebuild_ms = (time.perf_counter() - t0) * 1000 / len(decoded)
        sent = [j.forward for j in forwarded if j.forward is not None]
        out["inputs"][kind] = {
            "images": len(data),
            **{f"{k}_images_per_s": round(len(data) * len(t) / sum(t), 2)
               for k, t in times.items()},
            "forward_over_judge": paired_ratio(times["forward"], times["judge"]),
            "rebuild_ms_per_image": round(rebuild_ms, 2),
            "forwarded": len(sent),
            "forwarded_mime": sent[0].mime_type if sent else None,
            "forwarded_size_ratio_median": round(float(np.median(
                [len(f.data) / len(d) for f, d in zip(sent, data)])), 4) if sent else None,
        }




def pdf_pages(ctx: Ctx, out: dict[str, Any]) -> None:
    try:
        import pypdfium2  # noqa: F401 - only whether it is there
    except ImportError:
        raise SectionSkipped("pypdfium2 is not installed: carry its wheel (see the header of "
                             "benchmarks/device_run.sh)") from None
    from safeclip_guardrail.images.decode import decode_image

    pages = ctx.pick(10, 2)
    data = synthetic_pdf(pages)
    guard = ctx.guard(None, batch=32)
    guard.judge_batch([data], forward=True)  # warm-up
    repeats = ctx.pick(3, 1)
    frames: list[int] = []
    decode_ms = ctx.median_ms(
        lambda: frames.append(len(decode_image(data, guard.config.images).frames)), repeats)
    judged: list[Any] = []
    whole_ms = ctx.median_ms(lambda: judged.append(guard.judge_batch([data], forward=True)[0]),
                             repeats)
    j = judged[-1]
    out.update(
        document=f"synthetic A4, {pages} pages, one 400x300 picture per page",
        pages=pages, bytes=len(data), frames=frames[-1],
        views_checked=j.verdict.views_checked if j.verdict is not None else None,
        judgement_error=None if j.error is None else str(j.error),
        decode_ms_per_page=round(decode_ms / pages, 2),
        whole_path_ms_per_page=round(whole_ms / pages, 2),
        forwarded_mime=j.forward.mime_type if j.forward is not None else None,
    )
