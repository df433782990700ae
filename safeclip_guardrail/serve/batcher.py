"""Micro-batching: images of concurrent requests share encoder forwards.

Each request submits its images and awaits one future per image. A worker takes the first
waiting image, keeps collecting for at most ``max_wait_ms`` (or until ``max_batch``
images), and judges them with ONE ``guard.judge_batch`` call in a worker thread, so the
event loop keeps accepting requests while the encoder runs, and the next batch fills up
during the current forward (under load, batches grow by themselves; when idle, a lone
request waits only ``max_wait_ms``).

Isolation: ``judge_batch`` returns an error per unreadable image instead of raising, so a
bad image fails only its own future. Should the batch call itself raise (an encoder bug,
out of memory), every image is retried alone, so the culprit fails alone. A request that
gave up (timeout, client gone) has its futures cancelled and its images are skipped. The
queue is bounded: when it is full, new requests are refused at once (503) instead of
waiting without end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from safeclip_guardrail.errors import ConfigurationError, GuardRuntimeError
from safeclip_guardrail.guard import Judgement
from safeclip_guardrail.sources import EncodedImage

__all__ = ["BatcherOverloaded", "BatcherStopped", "MicroBatcher"]

JudgeFn = Callable[[list[EncodedImage]], list[Judgement]]


class BatcherOverloaded(GuardRuntimeError):
    """The queue of images waiting for the encoder is full; retry later (HTTP 503)."""


class BatcherStopped(GuardRuntimeError):
    """The batcher is not running (the app is starting or shutting down)."""


@dataclass
class _Item:
    image: EncodedImage
    future: asyncio.Future[Judgement]


class MicroBatcher:
    """Coalesce images of concurrent callers into shared ``judge`` calls.

    ``judge`` is ``guard.judge_batch`` (or any function with its contract: one Judgement per
    image, in order). ``on_batch(n)`` is told the size of every batch run (metrics).
    """

    def __init__(self, judge: JudgeFn, *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 4096, workers: int = 1,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1 or workers < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ConfigurationError(
                f"MicroBatcher needs max_batch >= 1, workers >= 1, max_queue >= 1 and "
                f"max_wait_ms >= 0; got {max_batch}, {workers}, {max_queue}, {max_wait_ms}")
        self._judge = judge
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    @property
    def pending(self) -> int:
        """Images waiting for a batch (not counting the batch being judged)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the workers on the running event loop (the app's lifespan)."""
        if self._tasks:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
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
        queue, self._queue = self._queue, None
        while queue is not None and not queue.empty():
            item = queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(BatcherStopped("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def judge(self, images: Sequence[EncodedImage]) -> list[Judgement]:
        """Judgements for ``images`` in order; cancelling the caller drops its images."""
        queue = self._queue
        if queue is None or not self._tasks:
            raise BatcherStopped("the guard is not running yet (or is shutting down)")
        if queue.qsize() + len(images) > self.max_queue:
            raise BatcherOverloaded(
                f"{queue.qsize()} images are waiting for the encoder (limit {self.max_queue}); "
                "retry later or add replicas")
        loop = asyncio.get_running_loop()
        items = [_Item(img, loop.create_future()) for img in images]
        for item in items:
            queue.put_nowait(item)
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        finally:
            for item in items:  # on cancellation: the worker skips what nobody waits for
                if not item.future.done():
                    item.future.cancel()

    # ------------------------------------------------------------------ internals
    async def _collect(self, queue: asyncio.Queue[_Item]) -> list[_Item]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [item for item in batch if not item.future.done()]

    async def _worker(self) -> None:
        queue = self._queue
        if queue is None:  # start() creates the queue before the worker task
            raise RuntimeError("MicroBatcher worker started before its queue")
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            images = [item.image for item in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._judge, images)
                if len(results) != len(batch):
                    raise GuardRuntimeError(f"judge returned {len(results)} results for "
                                        f"{len(batch)} images")
            except asyncio.CancelledError:
                raise
            except Exception:  # one culprit must not fail the others: judge each alone
                await self._one_by_one(batch)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    async def _one_by_one(self, batch: list[_Item]) -> None:
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
