"""Decoded images as the views they are judged as, and the worst view as the verdict.

The guard (``judge_batch``) and the batch scorer share this: plan the views of every frame
(:mod:`safeclip_guardrail.images.views`) as soon as an image is decoded, so a chunk counts views
and their pixels against ``batch_size`` and the pixel budgets; make the views in the encoder
worker, where the resizing used to happen (the images of a chunk in parallel, one thread per
core: Pillow releases the GIL while resampling, as the encoders' own resizing did); after
one encoder call over every view of a chunk, report per image the verdict of its worst view,
naming that view.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.errors import EncoderOutputError
from safeclip_guardrail.images.decode import DecodedImage
from safeclip_guardrail.images.views import ViewPlan, plan_views
from safeclip_guardrail.result import ImageVerdict

__all__ = ["ScoredViews", "ViewBatch", "ViewedImage", "render_views", "viewed", "worst_views"]


@dataclass(frozen=True)
class ViewedImage:
    """A decoded image and the view plan of each of its frames: what one verdict costs."""

    image: DecodedImage
    plans: tuple[ViewPlan, ...]

    @property
    def sha256(self) -> str:
        return self.image.sha256

    @property
    def views(self) -> int:
        """Encoder inputs this image needs (every view of every frame)."""
        return sum(len(p) for p in self.plans)

    @property
    def view_pixels(self) -> int:
        """Pixels the views add beyond the decoded frames (0 for a square picture)."""
        return sum(p.pixels for p in self.plans)

    @property
    def pixels(self) -> int:
        """Decoded pixels plus those of the views: what the image holds in a chunk."""
        return self.image.pixels + self.view_pixels


def viewed(image: DecodedImage, options: ImageOptions, *,
           input_size: int | None) -> ViewedImage:
    """``image`` with its views planned (sizes only: nothing is resized here)."""
    plans = tuple(plan_views(f.size[0], f.size[1], options, input_size=input_size)
                  for f in image.frames)
    return ViewedImage(image, plans)


@dataclass(frozen=True)
class ViewBatch:
    """Every view of a chunk of images, in order, and whose view each one is."""

    pictures: list[Image.Image]
    owners: list[int]
    """Index (in the chunk) of the image each view belongs to."""
    labels: list[str]
    """What each view is, for ``decided_by`` (``"frame 2, tile 1 of 3"``)."""


def render_views(items: Sequence[ViewedImage]) -> ViewBatch:
    """Make every view of every frame (the whole picture of frame 1 first, per image); the
    images of a chunk that need new pictures are made in parallel."""
    busy = sum(not all(p.identity for p in item.plans) for item in items)
    cores = _cores()
    made = (list(_pool(cores).map(_render_one, items)) if busy > 1 and cores > 1
            else [_render_one(item) for item in items])
    pictures: list[Image.Image] = []
    owners: list[int] = []
    labels: list[str] = []
    for k, (views, names) in enumerate(made):
        pictures.extend(views)
        owners.extend([k] * len(views))
        labels.extend(names)
    return ViewBatch(pictures, owners, labels)


def _render_one(item: ViewedImage) -> tuple[list[Image.Image], list[str]]:
    frames = item.image.frames
    views: list[Image.Image] = []
    names: list[str] = []
    for f, (frame, plan) in enumerate(zip(frames, item.plans), start=1):
        prefix = f"frame {f}, " if len(frames) > 1 else ""
        views.extend(plan.render(frame))
        names.extend(prefix + v.label for v in plan.views)
    return views, names


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _pool(cores: int) -> ThreadPoolExecutor:
    """One process-wide pool for making views (threads start on first use, then idle)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="safeclip-views")
        return _POOL


@dataclass(frozen=True)
class ScoredViews:
    """One encoder call over the views of a chunk: a result per image and the embeddings."""

    results: dict[str, ImageVerdict | EncoderOutputError]
    """By SHA-256: the worst view's verdict, or why there is none."""
    embeddings: ImageEmbeddings
    """Every view's embeddings, in :class:`ViewBatch` order."""
    whole_rows: dict[str, int]
    """By SHA-256: the row of the image's first view (the whole picture of its first frame)."""


def worst_views(items: Sequence[ViewedImage], batch: ViewBatch,
                rows: Sequence[ImageVerdict | EncoderOutputError],
                embeddings: ImageEmbeddings) -> ScoredViews:
    """Per image, the verdict of its worst view (flagged first, then the highest toxic
    score; the earlier view on a tie), with ``frames_checked``, ``views_checked`` and
    ``decided_by``; a non-finite embedding in any view makes the image an error."""
    scored: dict[int, list[tuple[ImageVerdict, str]]] = {}
    broken: dict[int, EncoderOutputError] = {}
    first: dict[int, int] = {}
    for r, (owner, row) in enumerate(zip(batch.owners, rows)):
        first.setdefault(owner, r)
        if isinstance(row, EncoderOutputError):
            broken.setdefault(owner, row)
        else:
            scored.setdefault(owner, []).append((row, batch.labels[r]))
    results: dict[str, ImageVerdict | EncoderOutputError] = {}
    for k, item in enumerate(items):
        if k in broken:
            results[item.sha256] = broken[k]
            continue
        views = scored[k]
        worst, label = max(views, key=lambda vl: (vl[0].flagged, vl[0].toxic_score))
        results[item.sha256] = worst.model_copy(update={
            "image_sha256": item.sha256, "frames_checked": len(item.image.frames),
            "views_checked": len(views), "decided_by": label,
        })
    whole = {item.sha256: first[k] for k, item in enumerate(items)}
    return ScoredViews(results, embeddings, whole)
