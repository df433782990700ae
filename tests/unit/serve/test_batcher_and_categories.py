"""The service's pure parts: the category map and the micro-batcher (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from safeclip_guardrail import ConceptBank, ImageVerdict
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.guard import Judgement
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.serve import (
    STANDARD_CATEGORIES,
    UNREADABLE_KEY,
    BatcherOverloaded,
    BatcherStopped,
    CategoryMap,
    MicroBatcher,
)


def _verdict(category: str | None, scores: dict[str, float]) -> ImageVerdict:
    return ImageVerdict(flagged=category is not None, category=category,
                        top_category=max(scores, key=scores.__getitem__), scores=scores)


def test_default_map_sums_classes_sharing_a_key_and_keeps_every_key():
    cmap = CategoryMap(ConceptBank.default())
    assert len(STANDARD_CATEGORIES) == 13
    assert cmap.keys[:13] == STANDARD_CATEGORIES
    assert {"safeclip/gesture", "safeclip/alcohol", "safeclip/cigarette", UNREADABLE_KEY} <= set(cmap.keys)
    s = cmap.scores([_verdict("gun", {"gun": 0.5, "knife": 0.3, "neutral": 0.2}),
                     _verdict(None, {"neutral": 0.9, "blood": 0.1})])
    assert s.flagged and s.categories["violence"] and not s.categories["violence/graphic"]
    assert s.category_scores["violence"] == pytest.approx(0.8)
    assert s.category_scores["violence/graphic"] == pytest.approx(0.1)
    assert s.category_applied_input_types["violence"] == ["image"]
    assert s.category_applied_input_types["hate"] == []
    text_only = cmap.scores([])
    assert not text_only.flagged and all(v == [] for v in text_only.category_applied_input_types.values())


def test_custom_map_and_unreadable():
    cmap = CategoryMap(ConceptBank.default(), {"cigarette": "illicit", "porn": "sexual"})
    s = cmap.scores([_verdict("cigarette", {"cigarette": 0.9, "neutral": 0.1})])
    assert s.categories["illicit"] and "safeclip/cigarette" not in s.categories
    assert "safeclip/gun" in s.categories  # unmapped toxic classes keep an extra key
    broken = ImageVerdict(flagged=True, category="unreadable", error="corrupt")
    assert cmap.scores([broken]).categories[UNREADABLE_KEY] is True
    with pytest.raises(ConfigurationError, match="standard keys"):
        CategoryMap(ConceptBank.default(), {"gun": "weapons"})


def _ok(img: EncodedImage) -> Judgement:
    return Judgement(_verdict(None, {"neutral": 1.0}), source=img.source)


def test_batcher_coalesces_and_isolates_a_crashing_image():
    calls: list[int] = []

    def judge(images: list[EncodedImage]) -> list[Judgement]:
        calls.append(len(images))
        if any(i.data == b"boom" for i in images):
            raise RuntimeError("encoder crashed")
        return [_ok(i) if i.data != b"bad" else
                Judgement(None, ImageInputError("corrupt", source=i.source)) for i in images]

    async def run() -> list[object]:
        b = MicroBatcher(judge, max_batch=8, max_wait_ms=50)
        with pytest.raises(BatcherStopped):
            await b.judge([EncodedImage(b"x")])
        await b.start()
        try:
            jobs = [b.judge([EncodedImage(d)]) for d in (b"a", b"bad", b"boom", b"c")]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await b.stop()

    ok, bad, boom, ok2 = asyncio.run(run())
    assert ok[0].verdict is not None and ok2[0].verdict is not None
    assert isinstance(bad[0].error, ImageInputError)
    assert isinstance(boom, RuntimeError)
    assert calls[0] == 4  # one shared call, then each image alone after the crash
    assert sorted(calls[1:]) == [1, 1, 1, 1]


def test_batcher_rejects_bad_settings():
    with pytest.raises(Exception, match="max_batch"):
        MicroBatcher(lambda images: [], max_batch=0)
    for bad in ({"hold_ms": -1}, {"bulk_after_s": -1}, {"bulk_weight": 0}):
        with pytest.raises(ConfigurationError, match="hold_ms >= 0"):
            MicroBatcher(lambda images: [], **bad)


def _gated_batcher(max_batch: int, **kw: object):
    """A batcher whose judge records each batch and waits for ``gate`` (set = run)."""
    import threading

    batches: list[list[bytes]] = []
    gate = threading.Event()

    def judge(images: list[EncodedImage]) -> list[Judgement]:
        batches.append([i.data for i in images])
        gate.wait(30)
        return [_ok(i) for i in images]

    return MicroBatcher(judge, max_batch=max_batch, max_wait_ms=0, **kw), batches, gate


async def _until(cond, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition never held"
        await asyncio.sleep(0.005)


def test_batches_share_the_encoder_fairly_between_requests():
    """A request with many images adds one per turn: a later one-image request is in the
    very next batch, not behind the big one."""
    async def run() -> list[list[bytes]]:
        b, batches, gate = _gated_batcher(4, slice_ms=None)
        await b.start()
        try:
            first = asyncio.create_task(b.judge([EncodedImage(b"first")]))
            await _until(lambda: len(batches) == 1)  # held in the encoder
            big = asyncio.create_task(b.judge([EncodedImage(b"big%d" % i) for i in range(10)],
                                              owner="big"))
            await _until(lambda: b.pending == 10)
            small = asyncio.create_task(b.judge([EncodedImage(b"small")], owner="small"))
            await _until(lambda: b.pending == 11)
            gate.set()
            await asyncio.gather(first, big, small)
            return batches
        finally:
            await b.stop()

    batches = asyncio.run(run())
    assert batches[1] == [b"big0", b"small", b"big1", b"big2"]
    assert [len(x) for x in batches] == [1, 4, 4, 3]


def test_a_bulk_request_waits_behind_interactive_ones_and_never_starves():
    """After its first four frames a request is bulk (weight 1/16): with one-image requests
    arriving all the time, it gets about one frame for their sixteen, and still advances."""
    import threading

    batches: list[list[bytes]] = []
    permits = threading.Semaphore(0)

    def judge(images: list[EncodedImage]) -> list[Judgement]:
        batches.append([i.data for i in images])
        permits.acquire(timeout=30)
        return [_ok(i) for i in images]

    async def run() -> int:
        b = MicroBatcher(judge, max_batch=1, max_wait_ms=0, slice_ms=None)
        await b.start()
        try:
            big = asyncio.create_task(b.judge([EncodedImage(b"big%d" % i) for i in range(40)],
                                              owner="big"))
            for n in range(4):  # alone, it has the encoder: big0..big3, then bulk big4
                await _until(lambda n=n: len(batches) == n + 1)
                permits.release()
            await _until(lambda: len(batches) == 5)
            small: list[asyncio.Task[list[Judgement]]] = []
            for k in range(160):  # a one-image request always waiting when a batch starts
                big_left = 40 - sum(x.startswith(b"big") for batch in batches for x in batch)
                if b.pending == big_left:
                    small.append(asyncio.create_task(
                        b.judge([EncodedImage(b"s%d" % len(small))])))
                    await asyncio.sleep(0)  # the new task runs first: its image is queued
                permits.release()
                await _until(lambda k=k: len(batches) == k + 6)
            for _ in range(200):
                permits.release()
            await asyncio.gather(big, *small)
            b.release("big")
            return len(small)
        finally:
            await b.stop()

    smalls = asyncio.run(run())
    flat = [x for batch in batches for x in batch]
    assert flat[:5] == [b"big%d" % i for i in range(5)]
    stream = flat[5:165]
    bulk = [x for x in stream if x.startswith(b"big")]
    assert 6 <= len(bulk) <= 12  # about one for sixteen, and never none
    assert len(flat) == 40 + smalls and flat.count(b"big39") == 1


def test_a_request_slow_to_decode_is_bulk_and_waits_behind_a_newcomer():
    """Decoding counts: a request that spent more than ``bulk_after_s`` decoding is bulk
    from its first image on, and a one-image request that arrives after it goes first."""
    async def run() -> tuple[list[list[bytes]], bool, bool, bool]:
        b, batches, gate = _gated_batcher(1, slice_ms=None)
        await b.start()
        try:
            first = asyncio.create_task(b.judge([EncodedImage(b"first")]))
            await _until(lambda: len(batches) == 1)
            b.charge("png", 0.6)  # half a second decoding a big PNG
            b.charge("photo", 0.004)
            flags = b.is_bulk("png"), b.is_bulk("photo"), b.is_bulk("nobody")
            png = asyncio.create_task(b.judge([EncodedImage(b"png0")], owner="png"))
            await _until(lambda: b.pending == 1)
            photo = asyncio.create_task(b.judge([EncodedImage(b"photo0")], owner="photo"))
            await _until(lambda: b.pending == 2)
            gate.set()
            await asyncio.gather(first, png, photo)
            return batches, *flags
        finally:
            await b.stop()

    batches, png_bulk, photo_bulk, nobody = asyncio.run(run())
    assert (png_bulk, photo_bulk, nobody) == (True, False, False)
    assert batches == [[b"first"], [b"photo0"], [b"png0"]]


@pytest.mark.parametrize("hold_ms", [5_000.0, 0.0])
def test_a_bulk_only_batch_waits_briefly_for_returning_interactive_clients(hold_ms):
    """Right after a batch with interactive images, a batch of bulk images alone waits up
    to ``hold_ms`` for the interactive clients to come back (they usually do within a few
    milliseconds); without the hold, the bulk image takes the encoder first."""
    async def run() -> list[list[bytes]]:
        b, batches, gate = _gated_batcher(8, hold_ms=hold_ms)
        gate.set()  # the encoder runs at once
        await b.start()
        try:
            await b.judge([EncodedImage(b"a")])  # an interactive batch just finished
            b.charge("bulk", 10.0)
            bulk = asyncio.create_task(b.judge([EncodedImage(b"x")], owner="bulk"))
            await asyncio.sleep(0.05)  # the client that got "a" comes back
            await b.judge([EncodedImage(b"b")])
            await bulk
            return batches
        finally:
            await b.stop()

    batches = asyncio.run(run())
    if hold_ms:
        assert batches == [[b"a"], [b"b", b"x"]]  # the bulk image joins the returning one
    else:
        assert batches == [[b"a"], [b"x"], [b"b"]]


def test_the_hold_ends_when_no_interactive_client_comes_back():
    async def run() -> list[list[bytes]]:
        b, batches, gate = _gated_batcher(8, hold_ms=30)
        gate.set()
        await b.start()
        try:
            await b.judge([EncodedImage(b"a")])
            b.charge("bulk", 10.0)
            await asyncio.wait_for(b.judge([EncodedImage(b"x")], owner="bulk"), 30)
            return batches
        finally:
            await b.stop()

    assert asyncio.run(run()) == [[b"a"], [b"x"]]


def test_bulk_images_stay_within_the_time_slice_while_interactive_requests_are_around():
    import time as _time

    b = MicroBatcher(lambda images: [_ok(i) for i in images], max_batch=32, slice_ms=100)
    assert b.bulk_room(32)  # nothing measured yet
    for seconds in (0.05, 0.05, 0.05):  # 50 ms per frame
        b._observe(seconds, 1)
    assert b.bulk_room(32)  # no interactive request seen: bulk images fill whole batches
    b._last_interactive = _time.monotonic()
    assert b.bulk_room(2) and not b.bulk_room(3)  # two frames fit in 100 ms
    b._observe(30.0, 1)  # one stalled batch does not change the estimate (median)
    assert b.bulk_room(2) and not b.bulk_room(3)
    assert MicroBatcher(lambda images: [], slice_ms=None).bulk_room(10_000)


def test_interactive_images_fill_batches_and_bulk_ones_open_their_own():
    """Interactive images (a request's first four frames) batch up to max_batch whatever
    the slice; past its slice, a bulk image only opens a batch, where it keeps its turn."""
    async def run() -> list[list[bytes]]:
        b, batches, gate = _gated_batcher(8, slice_ms=1e-6)  # every frame is over the slice
        await b.start()
        try:
            first = asyncio.create_task(b.judge([EncodedImage(b"first")]))
            await _until(lambda: len(batches) == 1)
            big = asyncio.create_task(b.judge([EncodedImage(b"big%d" % i) for i in range(8)],
                                              owner="big"))
            small = asyncio.create_task(b.judge([EncodedImage(b"s%d" % i) for i in range(4)],
                                                owner="s"))
            await _until(lambda: b.pending == 12)
            gate.set()
            await asyncio.gather(first, big, small)
            return batches
        finally:
            await b.stop()

    batches = asyncio.run(run())
    assert batches[1] == [b"big0", b"s0", b"big1", b"s1", b"big2", b"s2", b"big3", b"s3"]
    assert batches[2:] == [[b"big4"], [b"big5"], [b"big6"], [b"big7"]]


def test_a_request_that_gives_up_frees_its_queue_slots_at_once():
    async def run() -> tuple[int, int, int]:
        b, batches, gate = _gated_batcher(1, max_queue=5, slice_ms=None)
        await b.start()
        try:
            first = asyncio.create_task(b.judge([EncodedImage(b"first")]))
            await _until(lambda: len(batches) == 1)
            doomed = asyncio.create_task(b.judge([EncodedImage(b"d%d" % i) for i in range(4)]))
            await _until(lambda: b.pending == 4)
            full = b.pending
            with pytest.raises(BatcherOverloaded):
                b.admit(2)
            doomed.cancel()
            await _until(lambda: doomed.done())
            freed = b.pending
            b.admit(5)  # all slots free again
            gate.set()
            await first
            return full, freed, len(batches)
        finally:
            await b.stop()

    full, freed, n = asyncio.run(run())
    assert (full, freed) == (4, 0)
    assert n == 1  # the cancelled images never reached the encoder
