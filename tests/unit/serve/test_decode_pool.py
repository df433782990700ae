"""The service's decode processes: same pixels as the guard, killed at their budget, replaced."""

from __future__ import annotations

import asyncio
import os

import pytest
from PIL import Image

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.serve import DecodePool
from safeclip_guardrail.serve._decode_worker import DecodeJob
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import encode, noise
from tests._slow_decode import CRASH, SLEEP, misbehaving


def _job(data: bytes, *, budget: int | None = None, options: ImageOptions | None = None,
         ) -> DecodeJob:
    return DecodeJob(data, f"<{len(data)} bytes>", None, options or ImageOptions(), None, budget)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(coro_fn):
    async def main():
        pool = DecodePool(workers=2, decode=misbehaving)
        try:
            return await coro_fn(pool)
        finally:
            await pool.stop()
    return asyncio.run(main())


def test_the_pool_decodes_what_the_guard_decodes_and_forwards_the_same_bytes():
    guard = SafeCLIPGuard(PlantedEncoder(ConceptBank.default()))
    rgba = Image.new("RGBA", (40, 30), (200, 10, 10, 0))  # transparency: two readings, re-encoded
    inputs = [encode(noise(64, 48, seed=1), "JPEG"), encode(noise(33, 21, seed=2), "PNG"),
              encode(rgba, "PNG"), b"not an image"]

    async def go(pool):
        return [await pool.decode(_job(d), timeout=30) for d in inputs]

    replies = _run(go)
    for data, reply in zip(inputs, replies, strict=True):
        job = _job(data)
        if data == b"not an image":
            assert reply.image is None and "not" in (reply.error or "")
            with pytest.raises(Exception, match="image"):
                reply.restore(job)
            continue
        decoded, forward = reply.restore(job)
        mine = guard.decode(EncodedImage(data, job.source))
        assert decoded.sha256 == mine.sha256 and decoded.data == data
        assert [f.tobytes() for f in decoded.frames] == [f.tobytes() for f in mine.frames]
        assert forward is not None
        from safeclip_guardrail.images.decode import forward_image
        assert forward.data == forward_image(mine).data


def test_a_decode_past_its_budget_is_killed_and_its_worker_replaced():
    async def go(pool):
        await pool.start()
        before = set(pool.worker_pids)
        reply = await pool.decode(_job(SLEEP), timeout=0.5)
        after = set(pool.worker_pids)
        ok = await pool.decode(_job(encode(noise(8, 8, seed=3))), timeout=30)
        return reply, before, after, ok, pool.stats

    reply, before, after, ok, stats = _run(go)
    assert reply.image is None and "longer than 0.5 s" in (reply.error or "")
    assert stats.killed_timeout == 1 and len(after) == 2
    killed = before - after
    assert len(killed) == 1 and not any(_alive(p) for p in killed)
    assert ok.image is not None


def test_cancelling_the_caller_kills_its_decode():
    async def go(pool):
        await pool.start()
        before = set(pool.worker_pids)
        task = asyncio.create_task(pool.decode(_job(SLEEP), timeout=60))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # the worker is killed within a poll interval, then replaced
            if pool.stats.killed_cancelled and len(pool.worker_pids) == 2:
                break
            await asyncio.sleep(0.02)
        return before, set(pool.worker_pids), pool.stats

    before, after, stats = _run(go)
    assert stats.killed_cancelled == 1
    assert not any(_alive(p) for p in before - after) and len(before - after) == 1


def test_a_crashing_decoder_costs_only_its_image():
    async def go(pool):
        crash = pool.decode(_job(CRASH), timeout=30)
        fine = pool.decode(_job(encode(noise(16, 16, seed=4))), timeout=30)
        return await asyncio.gather(crash, fine), pool.stats

    (crash, fine), stats = _run(go)
    assert crash.image is None and "died" in (crash.error or "")
    assert fine.image is not None and stats.crashed == 1


def test_the_pixel_budget_travels_with_the_job():
    data = encode(noise(100, 100, seed=5))

    async def go(pool):
        return (await pool.decode(_job(data, budget=5_000), timeout=30),
                await pool.decode(_job(data, budget=20_000), timeout=30))

    refused, fits = _run(go)
    assert refused.image is None and "10000" in (refused.error or "")
    assert fits.image is not None


def test_threads_mode_decodes_too_and_bad_settings_are_refused():
    async def go():
        pool = DecodePool(workers=0)
        try:
            return await pool.decode(_job(encode(noise(8, 8, seed=6))), timeout=30)
        finally:
            await pool.stop()

    assert asyncio.run(go()).image is not None
    with pytest.raises(Exception, match="workers"):
        DecodePool(workers=-1)


def test_low_priority_jobs_run_niced_and_normal_jobs_never_do(tmp_path):
    from tests._slow_decode import HOLD

    def held(name: str) -> bytes:
        return encode(noise(8, 8, seed=7)) + HOLD + str(tmp_path / name).encode()

    async def nice_while_held(pool, name: str, low: bool) -> int:
        task = asyncio.create_task(pool.decode(_job(held(name)), timeout=60, low_priority=low))
        started = tmp_path / f"{name}.started"
        while not started.exists():
            await asyncio.sleep(0.01)
        (pid,) = pool.worker_pids
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        (tmp_path / name).touch()
        assert (await task).image is not None
        return nice

    async def go():
        pool = DecodePool(workers=1, decode=misbehaving)  # one process: it must be converted
        try:
            return ([await nice_while_held(pool, "low", True),
                     await nice_while_held(pool, "normal", False)], pool.stats)
        finally:
            await pool.stop()

    (low, normal), stats = asyncio.run(go())
    assert low == 19 and normal == os.getpriority(os.PRIO_PROCESS, 0)  # as this process
    assert stats.reniced == 1 and stats.started == 2  # a fresh process for the normal job
