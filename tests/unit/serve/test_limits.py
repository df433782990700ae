"""Bad inputs get their documented status, and the server keeps serving after each."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.serve import BackgroundServer, create_app
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import data_url
from tests._serve_helpers import LOOPBACK, planted_guard

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)]

KEY = "limits-key"
HDR = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served():
    enc, guard = planted_guard()
    app = create_app(guard, api_keys=[KEY], max_body_bytes=64 * 1024, max_images=3,
                     max_pixels=200 * 200, body_timeout_s=1.0)
    with BackgroundServer(app) as srv:
        yield enc, srv


@pytest.fixture(autouse=True)
def still_serving(served):
    """After every bad input, a good request is still answered correctly."""
    yield
    enc, srv = served
    body = {"input": [{"type": "image_url", "image_url": {"url": data_url(enc.plant_bytes("gun"))}}]}
    r = httpx.post(f"{srv.url}/v1/moderations", json=body, headers=HDR, timeout=30)
    assert r.status_code == 200 and r.json()["results"][0]["categories"]["violence"] is True


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text and 'File "' not in r.text
    return err


def test_oversized_body_413(served):
    _, srv = served
    big = {"input": "x" * (70 * 1024)}
    err = _error(httpx.post(f"{srv.url}/v1/moderations", json=big, headers=HDR), 413)
    assert "64" in err["message"] or "65536" in err["message"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b"x" * 8192

    r = httpx.post(f"{srv.url}/v1/moderations", content=chunks(),
                   headers={**HDR, "content-type": "application/json"})
    _error(r, 413)


def test_too_many_images_400(served):
    enc, srv = served
    parts = [{"type": "image_url", "image_url": {"url": data_url(enc.plant_bytes("neutral"))}}
             for _ in range(4)]
    err = _error(httpx.post(f"{srv.url}/v1/moderations", json={"input": parts}, headers=HDR), 400)
    assert err["code"] == "too_many_images" and "4" in err["message"]


def test_too_many_pixels_is_an_unreadable_verdict_checked_once_by_the_decoder(served):
    """max_pixels is the decoder's limit (one check, on every surface): the image is
    unreadable and on_error decides (fail closed), the other image is judged."""
    enc, srv = served
    buf = io.BytesIO()
    Image.new("RGB", (300, 300)).save(buf, "PNG")
    body = {"images": [data_url(buf.getvalue()), data_url(enc.plant_bytes("gun"))]}
    r = httpx.post(f"{srv.url}/v1/guard", json=body, headers=HDR)
    assert r.status_code == 200, r.text
    big, gun = r.json()["result"]["verdicts"]
    assert big["flagged"] and big["category"] == "unreadable"
    assert "300x300" in big["error"] and "40000" in big["error"]
    assert gun["category"] == "gun" and gun["error"] is None


def test_garbage_image_flagged_unreadable(served):
    _, srv = served
    for junk in (data_url(b"GIF89a garbage"), "bm90IGFuIGltYWdl", "/etc/passwd", "file:///etc/passwd"):
        r = httpx.post(f"{srv.url}/v1/guard", json={"images": [junk]}, headers=HDR)
        assert r.status_code == 200, r.text
        (v,) = r.json()["result"]["verdicts"]
        assert v["flagged"] is True and v["category"] == "unreadable" and v["error"]
        assert "root:" not in r.text


def test_bad_json_and_bad_schema_400(served):
    _, srv = served
    r = httpx.post(f"{srv.url}/v1/moderations", content=b'{"input": [', headers={
        **HDR, "content-type": "application/json"})
    assert _error(r, 400)["code"] == "invalid_json"
    _error(httpx.post(f"{srv.url}/v1/moderations", json={"inputs": "x"}, headers=HDR), 400)
    _error(httpx.post(f"{srv.url}/v1/moderations", json={"input": [{"type": "audio"}]},
                      headers=HDR), 400)
    _error(httpx.post(f"{srv.url}/v1/guard", json={"images": []}, headers=HDR), 400)


def test_wrong_content_type_415(served):
    _, srv = served
    r = httpx.post(f"{srv.url}/v1/moderations", content=b'{"input": "x"}',
                   headers={**HDR, "content-type": "text/plain"})
    assert _error(r, 415)["code"] == "unsupported_media_type"


def test_missing_and_wrong_key_401(served):
    _, srv = served
    assert _error(httpx.post(f"{srv.url}/v1/guard", json={"images": ["x"]}), 401)
    r = httpx.post(f"{srv.url}/v1/guard", json={"images": ["x"]},
                   headers={"authorization": "Bearer limits-kez"})
    assert _error(r, 401)["code"] == "invalid_api_key"


def test_slow_client_gets_408_and_does_not_stall_others(served):
    enc, srv = served
    host, port = srv.url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)), timeout=30)
    try:
        slow.sendall(b"POST /v1/moderations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 5000\r\n\r\n"
                     b'{"input": ')
        # while the slow body is pending, others are served
        body = {"input": [{"type": "image_url",
                           "image_url": {"url": data_url(enc.plant_bytes("blood"))}}]}
        r = httpx.post(f"{srv.url}/v1/moderations", json=body, headers=HDR, timeout=30)
        assert r.json()["results"][0]["categories"]["violence/graphic"] is True
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    finally:
        slow.close()


def test_on_error_raise_answers_400_and_a_crashing_image_fails_alone():
    """In-process (ASGI transport): on_error=raise, and an encoder bug on one image."""

    class Crashy(PlantedEncoder):
        poisoned: ClassVar[set[int]] = set()

        def encode_images(self, images):
            if any(int(np.asarray(im).sum()) in self.poisoned for im in images):
                raise RuntimeError("CUDA error: device-side assert (secret internals)")
            return super().encode_images(images)

    enc = Crashy(ConceptBank.default())
    guard = SafeCLIPGuard(enc, config=SafeCLIPGuard(enc).config.replace(on_error="raise"))
    poison = enc.plant("neutral")
    Crashy.poisoned.add(int(np.asarray(poison).sum()))
    buf = io.BytesIO()
    poison.save(buf, "PNG")
    app = create_app(guard, max_wait_ms=50)

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                good = [c.post("/v1/guard", json={"images": [data_url(enc.plant_bytes("gun"))]})
                        for _ in range(3)]
                bad = c.post("/v1/guard", json={"images": [data_url(buf.getvalue())]})
                garbage = c.post("/v1/guard", json={"images": [data_url(b"junk")]})
                return list(await asyncio.gather(*good, bad, garbage))

    *good, bad, garbage = asyncio.run(run())
    assert all(r.status_code == 200 and r.json()["result"]["categories"] == ["gun"] for r in good)
    err = _error(bad, 500)
    assert "secret" not in bad.text and err["type"] == "server_error"
    assert _error(garbage, 400)["code"] == "unreadable_image"


def test_request_timeout_504_and_full_queue_503():
    """In-process: the encoder is held (gate) so the outcome does not depend on timing."""
    enc, guard = planted_guard()
    app = create_app(guard, request_timeout_s=0.2, max_queue=1, max_wait_ms=0)

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                enc.gate.clear()
                try:
                    slow = asyncio.create_task(
                        c.post("/v1/guard", json={"images": [data_url(enc.plant_bytes("gun"))]}))
                    while app.state.metrics.value("safeclip_batch_size_count") < 1:
                        await asyncio.sleep(0.005)  # the first image is in the held forward
                    full = await c.post("/v1/guard", json={"images": [
                        data_url(enc.plant_bytes("gun")), data_url(enc.plant_bytes("gun"))]})
                    timed_out = await slow
                finally:
                    enc.gate.set()
                after = await c.post("/v1/guard", json={"images": [data_url(enc.plant_bytes("knife"))]})
                return full, timed_out, after

    full, timed_out, after = asyncio.run(run())
    assert _error(full, 503)["code"] == "overloaded" and full.headers["retry-after"] == "1"
    assert _error(timed_out, 504)["code"] == "timeout"
    assert after.status_code == 200 and after.json()["result"]["categories"] == ["knife"]
