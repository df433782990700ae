"""Each request within its own budgets: a hostile or slow request costs its neighbours nothing.

A real uvicorn server on 127.0.0.1, decode processes running ``tests._slow_decode``'s
misbehaving decoder (a deliberately slow decode, whatever the prewalk makes of scan bombs).
Stuck decodes are held by a file the test creates, so no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.serve import BackgroundServer, DecodePool, create_app
from safeclip_guardrail.testing.pictures import data_url, encode, noise
from tests._serve_helpers import LOOPBACK, planted_guard
from tests._slow_decode import HOLD, SLEEP, SLOW, misbehaving

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)]


def _guard_body(*images: bytes) -> dict:
    return {"images": [data_url(i) for i in images]}


def _categories(r: httpx.Response) -> list[str | None]:
    assert r.status_code == 200, r.text
    return [v["category"] for v in r.json()["result"]["verdicts"]]


async def _wait_for(path: Path) -> None:
    for _ in range(6000):
        if path.exists():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def test_a_stuck_decode_does_not_delay_or_fail_its_neighbours(tmp_path):
    """One request's decode hangs; twelve others, sent meanwhile, are all judged correctly
    before it ends; then it ends with its own verdicts."""
    enc, guard = planted_guard()
    app = create_app(guard, decode_pool=DecodePool(workers=3, decode=misbehaving),
                     decode_timeout_s=120, request_timeout_s=120)
    gate = tmp_path / "release"
    stuck = enc.plant_bytes("neutral") + HOLD + str(gate).encode()
    kinds = ["gun", "neutral", "blood", "knife"]

    async def run(url: str) -> tuple[list[httpx.Response], bool, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            hostile = asyncio.create_task(c.post("/v1/guard", json=_guard_body(
                enc.plant_bytes("porn"), stuck)))
            await _wait_for(Path(f"{gate}.started"))  # the hostile decode is in its worker
            benign = await asyncio.gather(*(c.post("/v1/guard", json=_guard_body(
                enc.plant_bytes(kinds[i % 4]), enc.plant_bytes(kinds[(i + 1) % 4])))
                for i in range(12)))
            hostile_pending = not hostile.done()
            gate.touch()
            return benign, hostile_pending, await hostile

    with BackgroundServer(app) as srv:
        benign, hostile_pending, hostile = asyncio.run(run(srv.url))
    assert hostile_pending
    for i, r in enumerate(benign):
        assert _categories(r) == [kinds[i % 4] if kinds[i % 4] != "neutral" else None,
                                  kinds[(i + 1) % 4] if kinds[(i + 1) % 4] != "neutral" else None]
    assert _categories(hostile) == ["porn", None]


def test_a_decode_over_its_budget_is_killed_and_only_its_image_is_unreadable():
    enc, guard = planted_guard()
    pool = DecodePool(workers=2, decode=misbehaving)
    app = create_app(guard, decode_pool=pool, decode_timeout_s=3, request_timeout_s=60)
    with BackgroundServer(app) as srv:
        r = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(
            encode(noise(16, 16, seed=2)) + SLEEP, enc.plant_bytes("gun")), timeout=60)
        slow, gun = r.json()["result"]["verdicts"]
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert r.status_code == 200
    assert slow["category"] == "unreadable" and "longer than 3 s" in slow["error"]
    assert gun["category"] == "gun"
    assert pool.stats.killed_timeout == 1
    assert 'safeclip_decode_workers_killed{reason="timeout"} 1.0' in metrics


def test_a_request_that_times_out_releases_its_decode_and_its_queue_slots():
    enc, guard = planted_guard()
    pool = DecodePool(workers=2, decode=misbehaving)
    app = create_app(guard, decode_pool=pool, decode_timeout_s=120, request_timeout_s=1.0)
    with BackgroundServer(app) as srv:
        before = set(pool.worker_pids)
        r = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(
            enc.plant_bytes("gun"), encode(noise(16, 16, seed=3)) + SLEEP,
            enc.plant_bytes("knife")), timeout=60)
        def killed() -> int:  # at the request's deadline: its decode's own deadline, or
            return pool.stats.killed_cancelled + pool.stats.killed_timeout  # the cancellation

        for _ in range(500):  # the kill happens within a poll interval of the timeout
            if killed() and len(pool.worker_pids) == 2:
                break
            time.sleep(0.01)
        gone = before - set(pool.worker_pids)
        pending = app.state.batcher.pending
        after = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(enc.plant_bytes("blood")),
                           timeout=60)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert pool.stats.killed_cancelled + pool.stats.killed_timeout == 1 and len(gone) == 1
    for pid in gone:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert pending == 0
    assert _categories(after) == ["blood"]


def test_each_request_has_its_own_pixel_budget_in_a_shared_batch():
    """Two requests of 2 x 64x64 pixels each, under a budget of 10,000 pixels per request,
    are judged in ONE encoder batch; neither fails closed for the other's pixels."""
    enc, guard = planted_guard()
    guard = guard.with_options(images={"max_request_pixels": 10_000})
    app = create_app(guard, max_batch=4, max_wait_ms=20_000, decode_workers=2)  # one batch
    big = encode(noise(120, 100, seed=4))  # 12,000 pixels: over one request's budget

    def img(kind: str) -> bytes:
        return enc.plant_bytes(kind, size=(64, 64))  # 4,096 pixels

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return list(await asyncio.gather(
                c.post("/v1/guard", json=_guard_body(img("gun"), img("knife"))),
                c.post("/v1/guard", json=_guard_body(img("blood"), img("neutral")))))

    with BackgroundServer(app) as srv:
        a, b = asyncio.run(run(srv.url))
        m = app.state.metrics
        batches = m.value("safeclip_batch_size_count"), m.value("safeclip_batch_size_sum")
        over = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(big), timeout=60)
    assert batches == (1.0, 4.0)
    assert _categories(a) == ["gun", "knife"] and _categories(b) == ["blood", None]
    (v,) = over.json()["result"]["verdicts"]
    assert v["category"] == "unreadable" and "10000" in v["error"]


def test_a_request_slow_to_decode_becomes_bulk_and_decodes_at_low_priority():
    """Decoding counts in a request's share: after an image that took 0.3 s to decode (over
    ``slow_after_s``, 0.25 s) the request is bulk in the batcher, and its next decodes run
    at the lowest priority; a request of quick images never is."""
    enc, guard = planted_guard(cache_size=0)

    class Recording(DecodePool):
        def __init__(self) -> None:
            super().__init__(workers=2, decode=misbehaving)
            self.asked: list[tuple[bytes, bool]] = []

        async def decode(self, job, *, timeout, low_priority=False):
            self.asked.append((job.data[-10:], low_priority))
            return await super().decode(job, timeout=timeout, low_priority=low_priority)

    pool = Recording()
    app = create_app(guard, decode_pool=pool, request_timeout_s=60)
    slow = [enc.plant_bytes(kind) + SLOW + b"0.3" for kind in ("gun", "neutral", "knife")]
    quick = [enc.plant_bytes(kind) for kind in ("blood", "neutral", "gun")]
    with BackgroundServer(app) as srv:
        warm = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(quick[0]), timeout=60)
        pool.asked.clear()
        quick_r = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(*quick), timeout=60)
        quick_asked = [low for _, low in pool.asked]
        pool.asked.clear()
        slow_r = httpx.post(f"{srv.url}/v1/guard", json=_guard_body(*slow), timeout=60)
        slow_asked = [low for _, low in pool.asked]
    assert _categories(warm) == ["blood"]
    assert _categories(quick_r) == ["blood", None, "gun"]
    assert _categories(slow_r) == ["gun", None, "knife"]
    assert quick_asked == [False, False, False]
    assert slow_asked == [False, True, True]
    assert pool.stats.reniced >= 1  # a lowered worker serves the later low jobs


class _HeldFetcher:
    """Serves one image per URL; the first fetch waits for ``release`` (a slow server)."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.calls: list[tuple[str, float]] = []
        self.release = threading.Event()

    def fetch(self, url: str, options) -> bytes:
        self.calls.append((url, options.url_timeout))
        if len(self.calls) == 1:
            self.release.wait(30)
        return self.image


def test_a_timed_out_request_stops_fetching_and_each_fetch_gets_only_the_time_left():
    enc, _ = planted_guard()
    fetcher = _HeldFetcher(enc.plant_bytes("gun"))
    guard = SafeCLIPGuard(enc, fetcher=fetcher).with_options(
        images={"allow_urls": True, "allowed_hosts": ("img.example",), "url_timeout": 60.0})
    app = create_app(guard, request_timeout_s=1.0)
    body = {"images": [f"https://img.example/{i}.png" for i in range(5)]}
    with BackgroundServer(app) as srv:
        r = httpx.post(f"{srv.url}/v1/guard", json=body, timeout=60)
        fetcher.release.set()  # the slow server answers at last, after the request gave up
        for _ in range(300):
            time.sleep(0.01)
    assert r.status_code == 504
    assert len(fetcher.calls) == 1  # the four other URLs were never fetched
    assert fetcher.calls[0][1] <= 1.0


def test_the_deadline_fetcher_refuses_once_the_budget_is_spent():
    from safeclip_guardrail.serve._judging import DeadlineFetcher, _Budget, _budget

    enc, _ = planted_guard()
    inner = _HeldFetcher(enc.plant_bytes("gun"))
    inner.release.set()
    fetcher = DeadlineFetcher(inner)
    from safeclip_guardrail.config import ImageOptions

    opts = ImageOptions(allow_urls=True, allowed_hosts=("x",))
    assert fetcher.fetch("https://x/a", opts)  # outside a request: the inner fetcher's rules
    token = _budget.set(_Budget(time.monotonic() - 1, threading.Event()))
    try:
        with pytest.raises(ImageInputError, match="time budget"):
            fetcher.fetch("https://x/b", opts)
    finally:
        _budget.reset(token)
    assert [u for u, _ in inner.calls] == ["https://x/a"]
