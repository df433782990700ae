"""Micro-batching: images of concurrent requests share encoder forwards, fairly.

Each request submits its (decoded) images into its own *lane* and awaits one future per
image. A worker waits for the first image, keeps collecting for at most ``max_wait_ms``,
then assembles a batch by **weighted fair sharing** over the lanes and judges it with ONE
call in a worker thread, so the event loop keeps accepting requests while the encoder runs.

Why lanes, shares and slices: a batch cannot be interrupted once it runs, so what a request
waits for is the batch in flight plus its own.

- *Shares* (weighted fair queuing): each lane has a virtual time that grows by an image's
  frames divided by the lane's weight; the batch takes, image by image, the image that
  would finish first in virtual time (its lane's virtual time plus its frames over the
  lane's weight). A request has weight 1 until it is *bulk*: past ``bulk_after`` frames
  (4), or past ``bulk_after_s`` seconds of decoding (0.25 s, told by
  :meth:`MicroBatcher.charge`); then its weight is ``bulk_weight`` (1/16). So a one-photo
  request stays interactive, while a request of 32 photos, or of four big PNGs that take
  half a second each to decode, becomes bulk after its first images: while interactive
  requests wait, it gets one frame for every 16 of each of theirs, and alone it gets the
  whole encoder. A new lane starts at the current virtual time (no credit for the time
  before it came), and the virtual time advances with every frame served (by the frame
  over the total weight waiting), so however many new requests keep arriving, a lane that
  is ahead comes first in its turn: nobody starves.
- *Slices*: a batch takes images of interactive requests up to ``max_batch`` (batching is
  what makes the encoder fast), but a bulk image only while the batch stays within
  ``slice_ms`` of encoder time (measured: the median seconds per frame of the last
  batches), or as the first image of a batch, where it keeps its turn. So whatever a large
  request puts in flight, a neighbour waits about one slice (or one image) for the encoder.
  With no interactive request seen for two seconds, bulk images fill whole batches again.
  On a GPU a slice holds a full ``max_batch``; on a CPU, a few frames.
- *Holding*: when a batch of interactive images has just finished and only bulk images
  wait, the next batch waits up to ``hold_ms`` for interactive images first. The clients
  that just got their verdicts usually send their next image within that time (measured on
  one host: 8-15 ms from a batch's end to the next request's image); without the hold,
  every such gap would start a bulk-only batch that the returning clients then wait for
  (measured: a hostile client's bulk requests took 30% of the encoder from four busy
  one-photo clients, far more than their share). The hold costs the encoder at most
  ``hold_ms`` of idling per interactive batch, and bulk images still come in their turn
  (above), so they never starve.

Isolation: the judge returns an error per unreadable image instead of raising, so a bad
image fails only its own future. Should the batch call itself raise (an encoder bug, out of
memory), every image is retried alone, so the culprit fails alone. A request that gave up
(timeout, client gone) takes its images out of its lane at once (its queue slots are free
again). The queue is bounded: when it is full, new requests are refused at once (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from safeclip_guardrail.errors import (
    BatcherOverloaded,
    BatcherStopped,
    ConfigurationError,
    GuardRuntimeError,
)
from safeclip_guardrail.guard import Judgement

__all__ = ["BatcherOverloaded", "BatcherStopped", "MicroBatcher"]

T = TypeVar("T")

_RECENT_S = 2.0
"""Interactive requests seen this recently keep bulk images within the time slice."""


@dataclass(eq=False)
class _Item(Generic[T]):
    image: T
    cost: int
    future: asyncio.Future[Judgement]
    bulk: bool = False
    """Taken into a batch as a bulk image."""


@dataclass(eq=False)
class _Lane(Generic[T]):
    """One request's images waiting for the encoder, and its share so far."""

    order: int
    vtime: float
    items: deque[_Item[T]]
    frames: int = 0
    """Frames of this lane encoded so far."""
    decode_s: float = 0.0
    """Seconds its request spent decoding (:meth:`MicroBatcher.charge`)."""
    kept: bool = False
    """Kept until :meth:`MicroBatcher.release` (an ``owner`` was given)."""


class MicroBatcher(Generic[T]):
    """Coalesce images of concurrent callers into shared, fair ``judge`` calls.

    ``judge`` has ``judge_batch``'s contract (one Judgement per image, in order); in the
    service it is ``guard.judge_decoded``. ``cost(image)`` is the frames an image sends
    through the encoder (default 1). ``on_batch(n)`` is told the size of every batch run.
    ``slice_ms``: the encoder time a batch may take with bulk images in it while
    interactive requests are around (None: only ``max_batch`` bounds it).
    """

    def __init__(self, judge: Callable[[list[T]], list[Judgement]], *, max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 4096, workers: int = 1,
                 on_batch: Callable[[int], None] | None = None,
                 cost: Callable[[T], int] | None = None,
                 slice_ms: float | None = 100.0, bulk_after: int = 4,
                 bulk_after_s: float = 0.25, bulk_weight: float = 1 / 16,
                 hold_ms: float = 20.0) -> None:
        if (max_batch < 1 or workers < 1 or max_queue < 1 or max_wait_ms < 0
                or (slice_ms is not None and slice_ms <= 0) or bulk_after < 0
                or bulk_after_s < 0 or not 0 < bulk_weight <= 1 or hold_ms < 0):
            msg = (f"MicroBatcher needs max_batch >= 1, workers >= 1, max_queue >= 1, "
                   f"max_wait_ms >= 0, slice_ms > 0 (or None), bulk_after >= 0, "
                   f"bulk_after_s >= 0, 0 < bulk_weight <= 1 and hold_ms >= 0; got "
                   f"{max_batch}, {workers}, {max_queue}, {max_wait_ms}, {slice_ms}, "
                   f"{bulk_after}, {bulk_after_s}, {bulk_weight}, {hold_ms}")
            raise ConfigurationError(msg)
        self._judge = judge
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self.slice_s = slice_ms / 1000.0 if slice_ms is not None else None
        self._cost = cost or (lambda _: 1)
        self._on_batch = on_batch
        self.bulk_after = bulk_after
        self.bulk_after_s = bulk_after_s
        self.bulk_weight = bulk_weight
        self.hold_s = hold_ms / 1000.0
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._vtime = 0.0
        self._order = 0
        self._last_interactive = float("-inf")
        self._interactive_done = float("-inf")
        """When the last batch with interactive images finished (``time.monotonic()``)."""
        self._pending = 0
        self._pending_cost = 0
        self._arrived: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._recent: deque[float] = deque(maxlen=8)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    @property
    def pending(self) -> int:
        """Images waiting for a batch (not counting the batch being judged)."""
        return self._pending

    @property
    def seconds_per_frame(self) -> float | None:
        """Encoder seconds per frame: the median of the last batches (one stalled batch does
        not shrink the next ones); None until a batch ran."""
        return statistics.median(self._recent) if self._recent else None

    def charge(self, owner: Hashable, seconds: float) -> None:
        """Count ``seconds`` of decoding for ``owner``'s request: past ``bulk_after_s`` it
        is bulk (its images wait behind interactive ones, and the service decodes the rest
        of them at low priority)."""
        self._lane(owner, kept=True).decode_s += max(0.0, seconds)

    def is_bulk(self, owner: Hashable) -> bool:
        """Whether ``owner``'s request is bulk (module doc)."""
        lane = self._lanes.get(owner)
        return lane is not None and self._bulk(lane)

    def bulk_room(self, frames: int) -> bool:
        """Whether a batch of ``frames`` frames may take a bulk image (see the module doc):
        always when no interactive request was seen for ``_RECENT_S``, else only while the
        batch stays within the time slice."""
        per = self.seconds_per_frame
        if self.slice_s is None or per is None:
            return True
        if time.monotonic() - self._last_interactive > _RECENT_S:
            return True
        return frames * per <= self.slice_s

    async def start(self) -> None:
        """Start the workers on the running event loop (the app's lifespan)."""
        if self._tasks:
            return
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.workers,
                                            thread_name_prefix="safeclip-batch")
        self._tasks = [asyncio.create_task(self._worker(), name=f"safeclip-batcher-{i}")
                       for i in range(self.workers)]

    async def stop(self) -> None:
        """Stop the workers; images still waiting fail with :class:`BatcherStopped`."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        lanes, self._lanes = self._lanes, {}
        self._pending = self._pending_cost = 0
        for lane in lanes.values():
            for item in lane.items:
                if not item.future.done():
                    item.future.set_exception(BatcherStopped("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def judge(self, images: Sequence[T], *, owner: Hashable | None = None,
                    ) -> list[Judgement]:
        """Judgements for ``images`` in order; cancelling the caller drops its images.

        ``owner``: the lane (one per request): calls with the same owner share one lane and
        its share so far, so a request that submits image by image is still one request;
        call :meth:`release` when the request is done. Without an owner the call has a lane
        of its own.
        """
        self.admit(len(images))
        if self._arrived is None:  # admit() checked that the workers run
            msg = "the guard is not running yet (or is shutting down)"
            raise BatcherStopped(msg)
        loop = asyncio.get_running_loop()
        key: Hashable = owner if owner is not None else object()
        lane = self._lane(key, kept=owner is not None)
        items = [_Item(img, max(1, self._cost(img)), loop.create_future()) for img in images]
        if not self._bulk(lane):
            self._last_interactive = time.monotonic()
        lane.items.extend(items)
        self._pending += len(items)
        self._pending_cost += sum(i.cost for i in items)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        finally:
            self._withdraw(key, items)

    def release(self, owner: Hashable) -> None:
        """Forget a request's lane (its images are judged or withdrawn)."""
        lane = self._lanes.pop(owner, None)
        if lane is not None:
            for item in lane.items:
                item.future.cancel()
                self._pending -= 1
                self._pending_cost -= item.cost

    def admit(self, count: int) -> None:
        """Raise :class:`BatcherOverloaded` now if ``count`` more images would not fit (a
        request checks before it decodes anything), :class:`BatcherStopped` if not running."""
        if not self._tasks:
            msg = "the guard is not running yet (or is shutting down)"
            raise BatcherStopped(msg)
        if self._pending + count > self.max_queue:
            msg = (f"{self._pending} images are waiting for the encoder (limit {self.max_queue}); "
                   "retry later or add replicas")
            raise BatcherOverloaded(msg)

    # ------------------------------------------------------------------ internals
    def _lane(self, key: Hashable, *, kept: bool) -> _Lane[T]:
        """``key``'s lane; a new one, or one back after a pause, starts at the current
        virtual time (no credit for the time it was idle)."""
        lane = self._lanes.get(key)
        if lane is None:
            self._order += 1
            lane = self._lanes[key] = _Lane(self._order, self._vtime, deque(), kept=kept)
        elif not lane.items:
            lane.vtime = max(lane.vtime, self._vtime)
        return lane

    def _bulk(self, lane: _Lane[T]) -> bool:
        return lane.frames >= self.bulk_after or lane.decode_s > self.bulk_after_s

    def _weight(self, lane: _Lane[T]) -> float:
        return self.bulk_weight if self._bulk(lane) else 1.0

    def _interactive_waiting(self) -> bool:
        return any(ln.items and not self._bulk(ln) for ln in self._lanes.values())

    def _withdraw(self, key: Hashable, items: list[_Item[T]]) -> None:
        """Take a caller's unjudged images out of its lane (it gave up): slots free now."""
        lane = self._lanes.get(key)
        for item in items:
            item.future.cancel()  # no-op for the judged ones
            if lane is not None and item in lane.items:
                lane.items.remove(item)
                self._pending -= 1
                self._pending_cost -= item.cost
        if lane is not None and not lane.kept and not lane.items:
            del self._lanes[key]

    def _assemble(self) -> list[_Item[T]]:
        """Image by image from the lane furthest behind (weighted), up to ``max_batch``
        frames; a bulk image only while :meth:`bulk_room` allows (else it opens the next
        batch: it keeps its turn)."""
        batch: list[_Item[T]] = []
        frames = 0
        waiting = [lane for lane in self._lanes.values() if lane.items]
        weights = sum(self._weight(ln) for ln in waiting)  # the lanes this batch serves
        while waiting:
            lane = min(waiting, key=lambda ln: (ln.vtime + ln.items[0].cost / self._weight(ln),
                                                ln.order))
            item = lane.items[0]
            bulk = self._bulk(lane)
            if batch and (frames + item.cost > self.max_batch
                          or (bulk and not self.bulk_room(frames + item.cost))):
                break
            lane.items.popleft()
            self._pending -= 1
            self._pending_cost -= item.cost
            # virtual time: at least the served lane's start, and it advances with every
            # frame served (over the weight waiting), so a lane ahead is reached in its turn
            self._vtime = max(self._vtime, lane.vtime) + item.cost / weights
            lane.vtime += item.cost / self._weight(lane)
            lane.frames += item.cost
            item.bulk = bulk
            if not bulk:
                self._last_interactive = time.monotonic()
            if not lane.items:
                waiting.remove(lane)
            batch.append(item)
            frames += item.cost
        for key in [k for k, ln in self._lanes.items() if not ln.items and not ln.kept]:
            del self._lanes[key]
        return batch

    async def _next_batch(self) -> list[_Item[T]]:
        arrived = self._arrived
        if arrived is None:  # start() creates it before the workers
            msg = "the MicroBatcher is not running: await its start() first"
            raise BatcherStopped(msg)
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                arrived.clear()
                await arrived.wait()
            deadline = loop.time() + self.max_wait_s
            while self._pending_cost < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), remaining)
                except TimeoutError:
                    break
            await self._hold(arrived)
            batch = self._assemble()
            if batch:
                return batch

    async def _hold(self, arrived: asyncio.Event) -> None:
        """Only bulk images wait, and interactive ones were judged just now: wait until
        ``hold_ms`` after that batch for the interactive clients to come back (module doc)."""
        until = self._interactive_done + self.hold_s
        while not self._interactive_waiting():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if self._on_batch is not None:
                self._on_batch(len(batch))
            images = [item.image for item in batch]
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._judge, images)
                if len(results) != len(batch):
                    msg = (f"judge returned {len(results)} results for "
                           f"{len(batch)} images")
                    raise GuardRuntimeError(msg)
            except asyncio.CancelledError:
                raise
            except Exception:  # one culprit must not fail the others: judge each alone
                await self._one_by_one(batch)
                continue
            self._observe(time.perf_counter() - start, sum(i.cost for i in batch))
            if not all(item.bulk for item in batch):
                self._interactive_done = time.monotonic()
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    def _observe(self, seconds: float, frames: int) -> None:
        self._recent.append(seconds / max(frames, 1))

    async def _one_by_one(self, batch: list[_Item[T]]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():
                continue
            try:
                (result,) = await loop.run_in_executor(self._executor, self._judge, [item.image])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            if not item.future.done():
                item.future.set_result(result)
