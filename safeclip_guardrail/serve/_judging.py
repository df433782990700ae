"""From request content to verdicts, each request within its own budgets.

Every route goes through :func:`~safeclip_guardrail.messages.conversation.aguard_conversations`, the
path every other surface takes (find every image part, judge, ``on_error`` exactly once);
what the service adds is the judging step, per request:

1. **Decode** each image in the :class:`~.decode_pool.DecodePool` (a process the service
   can kill), one image at a time, with the request's own pixel budget
   (``max_request_pixels``) and a deadline of ``decode_timeout_s`` (never past the
   request's own); an image that overruns is unreadable, and ``on_error`` decides. The
   seconds each decode took are charged to the request
   (:meth:`~.batcher.MicroBatcher.charge`); once the request is *bulk* (more than four
   frames, or more than 0.25 s of decoding), its images wait behind interactive ones in the
   batcher and its further decodes run at the lowest CPU priority.
2. **Encode** the decoded frames in the shared :class:`~.batcher.MicroBatcher`, in the
   request's own lane (weighted fair sharing with the other requests), with
   ``guard.judge_decoded``.
3. **Give up cleanly**: at ``request_timeout_s`` (or when the client goes), the decode in
   flight is killed, the request's images leave the batcher's queue, and URL fetches still
   to come are refused (:class:`DeadlineFetcher`), so nothing it started keeps running.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safeclip_guardrail.errors import (
    BatcherOverloaded,
    BatcherStopped,
    ImageInputError,
    SafeCLIPError,
    ServiceError,
)
from safeclip_guardrail.guard import Judgement, SafeCLIPGuard
from safeclip_guardrail.images.decode import DecodedImage
from safeclip_guardrail.images.sources import EncodedImage, ImageFetcher
from safeclip_guardrail.messages.conversation import GuardedConversation, aguard_conversations
from safeclip_guardrail.messages.extraction import MessageView
from safeclip_guardrail.result import ImageVerdict
from safeclip_guardrail.serve._decode_worker import DecodeJob
from safeclip_guardrail.serve.batcher import MicroBatcher
from safeclip_guardrail.serve.decode_pool import DecodePool
from safeclip_guardrail.serve.metrics import ServiceMetrics

__all__ = ["DeadlineFetcher", "Decoded", "Judging", "Limits", "forwarded_urls", "judge_decoded"]

log = logging.getLogger("safeclip_guardrail.serve")


@dataclass(frozen=True)
class Limits:
    max_images: int
    request_timeout_s: float
    decode_timeout_s: float


@dataclass(frozen=True)
class Decoded:
    """One decoded image waiting for the encoder, and the bytes to forward after it."""

    image: DecodedImage
    forward: EncodedImage | None


@dataclass
class _Budget:
    deadline: float
    """``time.monotonic()`` by which the request must have its verdicts."""
    cancelled: threading.Event


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "safeclip_request_budget", default=None)


class DeadlineFetcher:
    """The served guard's fetcher: a URL is fetched only within its request's time budget.

    The request's deadline travels in a context variable (``asyncio.to_thread`` copies it
    into the thread that finds and fetches), so a request that timed out stops fetching,
    and each fetch gets at most the time its request has left.
    """

    def __init__(self, inner: ImageFetcher) -> None:
        self.inner = inner

    def fetch(self, url: str, options: Any) -> bytes:
        budget = _budget.get()
        if budget is None:
            return self.inner.fetch(url, options)
        left = budget.deadline - time.monotonic()
        if budget.cancelled.is_set() or left <= 0:
            msg = ("the request's time budget ran out before this image URL "
                   "was fetched")
            raise ImageInputError(msg, source="<url>")
        return self.inner.fetch(url, options.model_copy(
            update={"url_timeout": min(options.url_timeout, left)}))


class Judging:
    """The service's judging step (one per app), shared by every route."""

    def __init__(self, guard: SafeCLIPGuard, *, pool: DecodePool,
                 batcher: MicroBatcher[Decoded], limits: Limits,
                 metrics: ServiceMetrics) -> None:
        self.guard = guard
        self.pool = pool
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics
        # the service reports verdicts and forwards every judged image (the caller's policy
        # decides); unreadable images are never forwarded, whatever the mode
        self._report = guard.config.replace(mode="annotate", policy={"unreadable": "annotate"})

    async def start(self) -> None:
        await self.pool.start()
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        await self.pool.stop()

    async def conversations(self, groups: Sequence[Sequence[MessageView]], *,
                            forward: bool = True) -> list[GuardedConversation]:
        """One outcome per group (the messages of one result), within ``request_timeout_s``.

        ``forward=False`` for a route that answers with verdicts only (``/v1/moderations``,
        ``/v1/guard`` without ``forward``): the images are judged as ``check_batch`` judges
        them (JPEG draft decoding where it applies) and nothing is rebuilt to be sent on, so
        the outcome's messages hold placeholders where pictures would be forwarded.
        """
        if not self.batcher.running or not self.pool.running:  # hosts without the lifespan
            await self.start()
        budget = _Budget(time.monotonic() + self.limits.request_timeout_s, threading.Event())
        token = _budget.set(budget)
        try:
            outcomes = await asyncio.wait_for(self._guard(groups, budget, forward),
                                              self.limits.request_timeout_s)
        except TimeoutError:
            raise ServiceError(504, f"the images were not judged within "
                               f"{self.limits.request_timeout_s:g} s; send fewer or smaller "
                               "images, or retry later", type="timeout",
                               code="timeout") from None
        except (ServiceError, BatcherOverloaded, BatcherStopped):
            raise
        except Exception as exc:  # the encoder failed on this request's images alone
            log.error("judging failed: %s: %s", type(exc).__name__, exc)
            raise ServiceError(500, "the guard failed on an image of this request; see the "
                               "server log", type="server_error", code="guard_error") from None
        finally:
            budget.cancelled.set()
            _budget.reset(token)
        out: list[GuardedConversation] = []
        for outcome in outcomes:
            if isinstance(outcome, SafeCLIPError):  # on_error="raise"
                raise ServiceError(400, f"an image could not be judged: {outcome}",
                                   code="unreadable_image")
            out.append(outcome)
        self._count([v for o in out for v in o.result.verdicts])
        return out

    async def _guard(self, groups: Sequence[Sequence[MessageView]], budget: _Budget,
                     forward: bool) -> list[GuardedConversation | SafeCLIPError]:
        async def judge(images: list[EncodedImage]) -> list[Judgement]:
            return await self.judge(images, deadline=budget.deadline, forward=forward)

        return await aguard_conversations(self.guard, groups, config=self._report, judge=judge)

    async def judge(self, images: Sequence[EncodedImage], *, deadline: float,
                    forward: bool = True) -> list[Judgement]:
        """One request's images: decoded one by one in the pool, encoded in its own lane."""
        if len(images) > self.limits.max_images:
            raise ServiceError(400, f"the request holds {len(images)} images, over the limit "
                               f"of {self.limits.max_images} per request; split it into "
                               "several requests", code="too_many_images")
        self.batcher.admit(len(images))
        opts = self.guard.config.images
        owner = object()
        budget = opts.max_request_pixels  # this request's own, whoever shares its batch
        out: list[Judgement] = [Judgement(None, None, None, img.source) for img in images]
        queued: list[tuple[int, asyncio.Task[list[Judgement]], int]] = []
        try:
            for i, img in enumerate(images):
                job = DecodeJob(img.data, img.source, img.mime_type, opts,
                                self.guard.draft_for(forward=forward), budget, forward=forward)
                left = deadline - time.monotonic()
                reply = await self.pool.decode(
                    job, timeout=max(0.001, min(self.limits.decode_timeout_s, left)),
                    low_priority=self.batcher.is_bulk(owner))
                self.batcher.charge(owner, reply.seconds)
                self.metrics.decode_seconds.observe(reply.seconds)
                try:
                    decoded, to_send = reply.restore(job)
                except ImageInputError as exc:
                    out[i] = Judgement(None, exc, None, img.source)
                    continue
                budget -= decoded.pixels
                held = sum(f.width * f.height for f in decoded.frames)
                task = asyncio.create_task(
                    self.batcher.judge([Decoded(decoded, to_send)], owner=owner))
                queued.append((i, task, held))
                await _drain(queued, out, opts.chunk_pixels)  # decoded pixels held: bounded
            await _drain(queued, out, 0)
        finally:
            for _, task, _ in queued:
                task.cancel()
            self.batcher.release(owner)
        return out

    def _count(self, verdicts: list[ImageVerdict]) -> None:
        self.metrics.images.inc(len(verdicts))
        for v in verdicts:
            if v.error is not None:
                self.metrics.unreadable.inc()
            if v.flagged:
                self.metrics.flagged.labels(v.category or "unreadable").inc()


async def _drain(queued: list[tuple[int, asyncio.Task[list[Judgement]], int]],
                 out: list[Judgement], limit: int) -> None:
    """Collect the oldest results until at most ``limit`` decoded pixels wait."""
    while queued and (limit <= 0 or sum(h for _, _, h in queued) > limit):
        i, task, _ = queued.pop(0)
        (out[i],) = await task


def judge_decoded(guard: SafeCLIPGuard) -> Callable[[list[Decoded]], list[Judgement]]:
    """The batcher's judge: ``guard.judge_decoded`` over a batch of :class:`Decoded`."""
    def run(batch: list[Decoded]) -> list[Judgement]:
        return guard.judge_decoded([d.image for d in batch],
                                   forwards=[d.forward for d in batch])
    return run


def forwarded_urls(outcome: GuardedConversation, count: int) -> list[str | None]:
    """Per image of a one-message ``/v1/guard`` request: the judged bytes as a data URL (the
    canonical block the guard forwards), or None for an image that was not forwarded."""
    content = outcome.messages[0].content if outcome.messages else []
    blocks = list(content) if isinstance(content, list) else []
    out: list[str | None] = []
    for k in range(count):
        block = blocks[k] if k < len(blocks) else None
        out.append(next(_data_urls(block), None))
    return out


def _data_urls(value: Any) -> Iterator[str]:
    """Data URLs in a forwarded block, whatever its dialect (a base64 field with its media
    type counts as one)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str) and v[:5].lower() == "data:":
            yield v
        elif isinstance(v, Mapping):
            b64, mime = v.get("base64", v.get("data")), v.get("mime_type", v.get("media_type"))
            if isinstance(b64, str) and isinstance(mime, str):
                yield f"data:{mime};base64,{b64}"
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(reversed(v))

