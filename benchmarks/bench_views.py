"""What judging the whole picture costs: views vs the old centre crop, in one run; prints JSON.

    python benchmarks/bench_views.py                      # ViT-B/32, random weights, CPU
    python benchmarks/bench_views.py --n 8 --iters 2      # quicker
    python benchmarks/bench_views.py --model tiny --n 8 --iters 1   # checks the script

For square, 16:9 and 3:1 photo-like JPEGs (all distinct, verdict cache off), three ways of
judging the same bytes with the same guard, timed in alternating rounds:

- ``centre_crop``: the frame itself goes to the encoder, whose preprocessing resizes the
  short side and centre-crops (the guard before views; reproduced here by handing the
  encoder each frame as one view, nothing else changed);
- ``whole``: ``ImageOptions(tiles=False)``: the padded whole-picture view alone;
- ``views``: the default: the whole picture plus tiles where the aspect ratio needs them.

Per shape: images/s of each, ``views_per_image``, and ``<way>_over_centre_crop`` as the
median of per-round time ratios (each round's pair timed back to back, robust to a noisy
machine), plus the load average when the run started and ended.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine, photo_jpegs, timed

SHAPES = {"square": (640, 640), "16:9": (1280, 720), "3:1": (1440, 480)}
"""Picture sizes per shape (decoded at half scale by JPEG draft decoding, as by default)."""


class _Frame:
    """Today's plan before views: the frame itself, one encoder input, no added pixels."""

    def __init__(self) -> None:
        from safeclip_guardrail.images.views import View

        self.views = (View((0, 0, 0, 0), "frame"),)
        self.pixels = 0
        self.identity = True  # the frame itself: nothing to make

    def __len__(self) -> int:
        return 1

    def render(self, frame: Any) -> list[Any]:
        return [frame]

    def render_view(self, frame: Any, index: int) -> Any:
        return frame


@contextmanager
def centre_crop() -> Iterator[None]:
    """The guard as it was: every frame straight to the encoder's resize + centre crop."""
    import safeclip_guardrail.guard as guard_module
    from safeclip_guardrail._viewed import ViewedImage

    real = guard_module.viewed

    def frames_only(image: Any, options: Any, *, input_size: int | None) -> Any:
        return ViewedImage(image, tuple(_Frame() for _ in image.frames))

    guard_module.viewed = frames_only  # type: ignore[assignment]
    try:
        yield
    finally:
        guard_module.viewed = real


def _centre(guard: Any, jpegs: list[bytes]) -> Any:
    with centre_crop():
        return guard.check_batch(jpegs)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from safeclip_guardrail import ImageOptions, SafeCLIPGuard

    torch.manual_seed(0)
    workdir = Path(args.workdir)
    model_dir = build_model(args.model, workdir)
    guard = SafeCLIPGuard.from_pretrained(str(model_dir), device="cpu", dtype=args.dtype,
                                          batch_size=args.batch, cache_size=0,
                                          cache_dir=workdir / "cache")
    whole = guard.with_options(images=ImageOptions(tiles=False))
    out: dict[str, Any] = {"machine": machine(), "model": args.model, "dtype": args.dtype,
                           "batch_size": args.batch, "images_per_round": args.n,
                           "rounds": args.iters, "load_at_start": _load(), "shapes": {}}
    for s, (name, (w, h)) in enumerate(SHAPES.items()):
        jpegs = photo_jpegs(args.n, width=w, height=h, seed=100 + s)
        verdicts = guard.check_batch(jpegs)  # warm up, and count the views
        views_per_image = float(np.mean([v.views_checked for v in verdicts]))
        ways = {"centre_crop": lambda: _centre(guard, jpegs),  # noqa: B023
                "whole": lambda: whole.check_batch(jpegs),  # noqa: B023
                "views": lambda: guard.check_batch(jpegs)}  # noqa: B023
        for way in ways.values():
            way()
        times: dict[str, list[float]] = {k: [] for k in ways}
        for r in range(args.iters):  # alternate the order: a burst of load hits every way
            for k in (list(ways) if r % 2 == 0 else list(reversed(ways))):
                times[k].append(timed(ways[k]))
        base = times["centre_crop"]
        out["shapes"][name] = {
            "size": [w, h],
            "views_per_image": views_per_image,
            "decided_by_example": max(verdicts, key=lambda v: v.toxic_score).decided_by,
            **{f"{k}_images_per_s": round(args.n * len(t) / sum(t), 2) for k, t in times.items()},
            **{f"{k}_over_centre_crop": round(float(np.median(
                [a / b for a, b in zip(t, base)])), 3) for k, t in times.items() if k != "centre_crop"},
        }
    out["load_at_end"] = _load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n", type=int, default=16, help="distinct pictures per shape and round")
    parser.add_argument("--iters", type=int, default=6, help="timed rounds per shape")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "safeclip_bench"))
    emit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
