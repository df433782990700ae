"""From request content to verdicts: the extraction layer, the limits, the batcher, on_error.

Every image a route receives goes through :func:`~safeclip_guardrail.extraction.find_image_parts`
(the one parser), is judged by the shared :class:`MicroBatcher`, and gets its verdict from
:mod:`safeclip_guardrail.policy` (``on_error`` applied exactly once).
"""

from __future__ import annotations

import asyncio
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from safeclip_guardrail import policy
from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import EncoderOutputError, ImageInputError
from safeclip_guardrail.extraction import ImagePart, MessageView, find_image_parts
from safeclip_guardrail.guard import Judgement
from safeclip_guardrail.result import ImageVerdict
from safeclip_guardrail.serve._errors import ServiceError
from safeclip_guardrail.serve.batcher import BatcherOverloaded, BatcherStopped, MicroBatcher
from safeclip_guardrail.serve.metrics import ServiceMetrics
from safeclip_guardrail.sources import EncodedImage, ImageFetcher

__all__ = ["Judged", "Limits", "judge_groups", "judge_images"]

log = logging.getLogger("safeclip_guardrail.serve")

_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_pixels: int
    request_timeout_s: float


@dataclass(frozen=True)
class Judged:
    """One image of a request: its verdict (``on_error`` applied) and what was judged."""

    verdict: ImageVerdict
    judgement: Judgement | None


async def judge_groups(groups: Sequence[Sequence[MessageView]], *, config: GuardConfig,
                       batcher: MicroBatcher, limits: Limits, metrics: ServiceMetrics,
                       fetcher: ImageFetcher | None = None) -> list[list[Judged]]:
    """Verdicts for every image of every group (a group: the messages of one result).
    Allowed image URLs are fetched with ``fetcher`` (the served guard's)."""
    found = await asyncio.to_thread(_find, groups, config, limits, fetcher)
    flat: list[ImagePart] = [p for parts in found for p in parts]
    judged = await _judge_parts(flat, config=config, batcher=batcher, limits=limits,
                                metrics=metrics)
    out: list[list[Judged]] = []
    k = 0
    for parts in found:
        out.append(judged[k:k + len(parts)])
        k += len(parts)
    return out


async def judge_images(images: Sequence[EncodedImage], *, config: GuardConfig,
                       batcher: MicroBatcher, limits: Limits, metrics: ServiceMetrics,
                       ) -> list[Judged]:
    """Verdicts for uploaded image bytes (multipart): no message content to parse."""
    _check_count(len(images), limits)
    await asyncio.to_thread(_check_pixels, list(images), limits)
    parts = [ImagePart(0, ("upload", i), "raw", img) for i, img in enumerate(images)]
    return await _judge_parts(parts, config=config, batcher=batcher, limits=limits,
                              metrics=metrics)


# ---------------------------------------------------------------------- internals
def _find(groups: Sequence[Sequence[MessageView]], config: GuardConfig,
          limits: Limits, fetcher: ImageFetcher | None) -> list[list[ImagePart]]:
    found = [find_image_parts(list(g), options=config.images, fetcher=fetcher) for g in groups]
    _check_count(sum(len(p) for p in found), limits)
    _check_pixels([p.image for parts in found for p in parts if p.image is not None], limits)
    return found


def _check_count(n: int, limits: Limits) -> None:
    if n > limits.max_images:
        raise ServiceError(400, f"the request holds {n} images, over the limit of "
                           f"{limits.max_images} per request; split it into several requests",
                           code="too_many_images")


def _check_pixels(images: Sequence[EncodedImage], limits: Limits) -> None:
    """Refuse (400) an image whose header declares more pixels than allowed; nothing decoded."""
    for i, img in enumerate(images):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(img.data), formats=_PIL_FORMATS) as opened:
                    w, h = opened.size
        except Exception:  # not an image we can size: the guard reads it (and fails closed)
            continue
        if w * h > limits.max_pixels:
            raise ServiceError(400, f"image {i} is {w}x{h} = {w * h} pixels, over the limit of "
                               f"{limits.max_pixels} pixels per image; send a smaller image",
                               code="image_too_large")


async def _judge_parts(parts: Sequence[ImagePart], *, config: GuardConfig,
                       batcher: MicroBatcher, limits: Limits, metrics: ServiceMetrics,
                       ) -> list[Judged]:
    readable = [p.image for p in parts if p.image is not None]
    judgements: list[Judgement] = []
    if readable:
        try:
            judgements = await asyncio.wait_for(batcher.judge(readable), limits.request_timeout_s)
        except TimeoutError:
            raise ServiceError(504, f"the images were not judged within "
                               f"{limits.request_timeout_s:g} s; the service is overloaded, "
                               "retry later", type="timeout", code="timeout") from None
        except (BatcherOverloaded, BatcherStopped, ServiceError):
            raise
        except Exception as exc:  # the encoder failed on this request's images alone
            log.error("judging failed: %s: %s", type(exc).__name__, exc)
            raise ServiceError(500, "the guard failed on an image of this request; see the "
                               "server log", type="server_error", code="guard_error") from None
    it = iter(judgements)
    out: list[Judged] = []
    for part in parts:
        judgement = next(it) if part.image is not None else None
        out.append(Judged(_verdict(part, judgement, config), judgement))
    metrics.images.inc(len(out))
    for j in out:
        if j.verdict.error is not None:
            metrics.unreadable.inc()
        if j.verdict.flagged:
            metrics.flagged.labels(j.verdict.category or "unreadable").inc()
    return out


def _verdict(part: ImagePart, judgement: Judgement | None, config: GuardConfig) -> ImageVerdict:
    error: ImageInputError | EncoderOutputError | None = part.error
    if error is None and judgement is not None:
        if judgement.verdict is not None:
            return judgement.verdict
        error = judgement.error
    if error is None:
        error = EncoderOutputError("the image was not judged", source=part.image.source
                                   if part.image is not None else None)
    try:
        return policy.error_verdict(error, config, source=error.source)
    except (ImageInputError, EncoderOutputError) as exc:  # on_error="raise"
        raise ServiceError(400, f"an image could not be judged: {exc}",
                           code="unreadable_image") from None
