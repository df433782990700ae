"""The service through the official openai SDK, on a real uvicorn server over loopback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import httpx
import openai
import pytest
from openai.types import ModerationCreateResponse
from PIL import Image

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.serve import STANDARD_CATEGORIES, BackgroundServer, create_app
from safeclip_guardrail.testing import FakeFetcher
from safeclip_guardrail.testing.pictures import data_url
from tests._serve_helpers import LOOPBACK, planted_guard

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)]

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def served():
    # cache off: the concurrent run must encode again what the sequential run encoded
    enc, guard = planted_guard(cache_size=0)
    app = create_app(guard, api_keys=[KEY, "second-key"], max_batch=64, max_images=8)
    with BackgroundServer(app) as srv:
        yield enc, app, srv


@pytest.fixture(scope="module")
def client(served):
    _, _, srv = served
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)


def _parts(*urls: str, text: str = "what is in this picture?") -> list[dict]:
    return [{"type": "text", "text": text},
            *({"type": "image_url", "image_url": {"url": u}} for u in urls)]


def test_flagged_image_under_its_mapped_key(served, client):
    enc, _, _ = served
    resp = client.moderations.create(model="omni-moderation-latest",
                                     input=_parts(data_url(enc.plant_bytes("gun"))))
    assert isinstance(resp, ModerationCreateResponse)
    (result,) = resp.results
    assert result.flagged is True
    assert result.categories.violence is True
    assert result.categories.sexual is False
    assert result.category_scores.violence > 0.9
    assert result.category_applied_input_types.violence == ["image"]
    assert result.category_applied_input_types.harassment == []  # text is not judged
    dumped = result.categories.model_dump(by_alias=True)
    assert set(STANDARD_CATEGORIES) <= set(dumped)
    assert dumped["safeclip/unreadable"] is False


@pytest.mark.parametrize(("cls", "key"), [("porn", "sexual"), ("blood", "violence/graphic"),
                                          ("knife", "violence"), ("gesture", "safeclip/gesture")])
def test_category_map(served, client, cls, key):
    enc, _, _ = served
    (result,) = client.moderations.create(
        model="m", input=_parts(data_url(enc.plant_bytes(cls)))).results
    flags = result.categories.model_dump(by_alias=True)
    assert [k for k, v in flags.items() if v] == [key]
    assert result.category_applied_input_types.model_dump(by_alias=True)[key] == ["image"]


def test_clean_image_and_text_only(served, client):
    enc, _, _ = served
    resp = client.moderations.create(model="m", input=_parts(data_url(enc.plant_bytes("neutral"))))
    assert resp.results[0].flagged is False
    assert resp.results[0].category_applied_input_types.violence == ["image"]
    text_only = client.moderations.create(model="m", input=["hello", "world"])
    assert len(text_only.results) == 2
    for r in text_only.results:
        assert r.flagged is False
        assert all(v == [] for v in r.category_applied_input_types.model_dump().values())
    assert client.moderations.create(model="m", input="just text").results[0].flagged is False


def test_garbage_image_fails_closed(served, client):
    enc, _, _ = served
    (result,) = client.moderations.create(
        model="m", input=_parts(data_url(b"this is not an image"), data_url(enc.plant_bytes("neutral")))
    ).results
    assert result.flagged is True
    assert result.categories.model_dump(by_alias=True)["safeclip/unreadable"] is True
    assert result.categories.violence is False


def test_wrong_key_is_an_authentication_error(served):
    _, _, srv = served
    bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.moderations.create(model="m", input="hello")
    assert err.value.status_code == 401
    second = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="second-key", max_retries=0)
    assert second.moderations.create(model="m", input="hello").results[0].flagged is False
    r = httpx.post(f"{srv.url}/v1/moderations", json={"input": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{srv.url}/v1/moderations", json={"input": "x"}, headers={"x-api-key": KEY})
    assert r.status_code == 200
    assert httpx.get(f"{srv.url}/healthz").status_code == 200  # health stays public
    assert httpx.get(f"{srv.url}/readyz").json()["ready"] is True
    assert httpx.get(f"{srv.url}/metrics").status_code == 401


def test_generic_guardrail_api(served):
    enc, _, srv = served
    url = f"{srv.url}/beta/litellm_basic_guardrail_api"
    hdr = {"x-api-key": KEY}
    clean = {"input_type": "request", "texts": ["hi"], "request_data": {},
             "images": [data_url(enc.plant_bytes("neutral"))]}
    assert httpx.post(url, json=clean, headers=hdr).json() == {"action": "NONE"}
    bad = {**clean, "images": [data_url(enc.plant_bytes("neutral")), data_url(enc.plant_bytes("blood"))]}
    out = httpx.post(url, json=bad, headers=hdr).json()
    assert out["action"] == "BLOCKED" and "blood" in out["blocked_reason"]
    # images inside structured messages are judged too (LiteLLM sends both)
    msgs = {"input_type": "request", "structured_messages": [
        {"role": "user", "content": _parts(data_url(enc.plant_bytes("porn")))}]}
    assert httpx.post(url, json=msgs, headers=hdr).json()["action"] == "BLOCKED"


def test_generic_guardrail_api_hands_back_only_judged_pictures(served):
    """LiteLLM forwards the request as it was unless the guardrail returns rewritten
    ``structured_messages``: a picture whose judged reconstruction differs from what was sent
    (here a JPEG carrying an EXIF thumbnail) comes back rebuilt, or, in a flat image list
    that cannot be written back, is refused."""
    enc, _, srv = served
    url = f"{srv.url}/beta/litellm_basic_guardrail_api"
    hdr = {"x-api-key": KEY}
    photo = Image.new("RGB", (32, 32), (200, 120, 40))
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(thumb, format="JPEG")
    exif = Image.Exif()
    exif[0x0201] = 0  # a thumbnail pointer is enough to carry extra bytes in APP1
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif.tobytes() + thumb.getvalue())
    original = buf.getvalue()
    enc.register(Image.open(io.BytesIO(original)).convert("RGB"), enc.embedding_for("neutral"))
    rows = [{"role": "user", "content": _parts(data_url(original, "image/jpeg"))}]
    out = httpx.post(url, json={"input_type": "request", "structured_messages": rows},
                     headers=hdr).json()
    assert out["action"] == "GUARDRAIL_INTERVENED"
    sent = out["structured_messages"][0]["content"]
    [block] = [b for b in sent if b.get("type") == "image_url"]
    rebuilt = base64.b64decode(block["image_url"]["url"].split(",", 1)[1])
    assert rebuilt != original and thumb.getvalue() not in rebuilt
    flat = httpx.post(url, json={"input_type": "request", "texts": ["hi"],
                                 "images": [data_url(original, "image/jpeg")]}, headers=hdr).json()
    assert flat["action"] == "BLOCKED" and "structured_messages" in flat["blocked_reason"]


def test_guard_route_json_and_multipart(served):
    enc, _, srv = served
    hdr = {"authorization": f"Bearer {KEY}"}
    gun = enc.plant_bytes("gun")
    r = httpx.post(f"{srv.url}/v1/guard", headers=hdr, json={
        "images": [data_url(gun), data_url(enc.plant_bytes("neutral"))], "forward": True})
    body = r.json()
    assert r.status_code == 200
    assert body["result"]["categories"] == ["gun"] and body["result"]["action"] == "rewrite"
    assert body["forward"][0] == data_url(gun)  # the judged bytes, unchanged (faithful PNG)
    r = httpx.post(f"{srv.url}/v1/guard", headers=hdr,
                   files=[("image", ("a.png", enc.plant_bytes("knife"), "image/png")),
                          ("image", ("b.png", b"garbage", "image/png"))])
    verdicts = r.json()["result"]["verdicts"]
    assert [v["category"] for v in verdicts] == ["knife", "unreadable"]
    assert "garbage" not in r.text  # no payloads echoed
    knife = enc.plant_bytes("knife")
    r = httpx.post(f"{srv.url}/v1/guard?forward=true", headers=hdr,
                   files=[("image", ("a.png", knife, "image/png")),
                          ("image", ("b.png", b"garbage", "image/png"))])
    assert r.json()["forward"] == [data_url(knife), None]  # flagged: still its judged bytes


def test_concurrent_requests_share_forwards_and_agree_with_sequential(served):
    enc, app, srv = served
    targets = ["gun", "neutral", "blood", "porn", "neutral", "knife", "cigarette", "neutral"]
    bodies = []
    for i in range(32):
        imgs = [data_url(enc.plant_bytes(targets[i % 8])), data_url(enc.plant_bytes(targets[(i + 3) % 8]))]
        if i % 11 == 5:
            imgs[1] = data_url(b"\x89PNG broken")
        bodies.append({"model": "m", "input": _parts(*imgs)})
    hdr = {"authorization": f"Bearer {KEY}"}

    def essence(resp: dict) -> list:
        return [(r["flagged"], r["categories"]) for r in resp["results"]]

    sequential = [essence(httpx.post(f"{srv.url}/v1/moderations", json=b, headers=hdr).json())
                  for b in bodies]
    metrics = app.state.metrics
    forwards0 = metrics.value("safeclip_encoder_forwards_total")
    images0 = metrics.value("safeclip_images_total")

    async def fire() -> list:
        async with httpx.AsyncClient(base_url=srv.url, headers=hdr, timeout=60) as c:
            tasks = [asyncio.create_task(c.post("/v1/moderations", json=b)) for b in bodies]
            # hold the encoder until every readable image is waiting (the 3 broken ones fail
            # in their decode, before the batcher), so the test does not depend on timing
            deadline = time.monotonic() + 60
            batched = app.state.metrics
            while time.monotonic() < deadline:
                in_flight = batched.value("safeclip_batch_size_sum") - batched_before
                if app.state.batcher.pending + in_flight >= 61:
                    break
                await asyncio.sleep(0.01)
            enc.gate.set()
            return [r.json() for r in await asyncio.gather(*tasks)]

    batched_before = metrics.value("safeclip_batch_size_sum")
    enc.gate.clear()
    try:
        concurrent = asyncio.run(fire())
    finally:
        enc.gate.set()
    assert [essence(c) for c in concurrent] == sequential
    forwards = metrics.value("safeclip_encoder_forwards_total") - forwards0
    images = metrics.value("safeclip_images_total") - images0
    assert images == 64
    assert 0 < forwards < images / 4
    text = httpx.get(f"{srv.url}/metrics", headers=hdr).text
    for name in ("safeclip_images_total", "safeclip_encoder_forwards_total",
                 'safeclip_flagged_total{category="gun"}', "safeclip_request_latency_seconds_bucket"):
        assert name in text


def test_access_log_is_json_without_image_data(served, caplog):
    enc, _, srv = served
    url = data_url(enc.plant_bytes("neutral"))
    with caplog.at_level("INFO", logger="safeclip_guardrail.serve.access"):
        r = httpx.post(f"{srv.url}/v1/guard", json={"images": [url, url]},
                       headers={"authorization": f"Bearer {KEY}"})
    rid = r.headers["x-request-id"]
    (line,) = [json.loads(rec.getMessage()) for rec in caplog.records
               if rec.name == "safeclip_guardrail.serve.access" and rid in rec.getMessage()]
    assert line["path"] == "/v1/guard" and line["status"] == 200 and line["images"] == 2
    assert line["bytes_in"] > len(url)
    assert url[30:60] not in caplog.text and "base64" not in caplog.text


def test_image_urls_are_fetched_through_the_served_guards_fetcher():
    enc, guard = planted_guard(images={"allow_urls": True,
                                       "allowed_hosts": ["images.example.com"]})
    url, other = "https://images.example.com/a.png", "https://elsewhere.example.com/b.png"
    fetcher = FakeFetcher({url: enc.plant_bytes("gun"), other: enc.plant_bytes("gun")})
    guard = SafeCLIPGuard(enc, config=guard.config, fetcher=fetcher)
    with BackgroundServer(create_app(guard, api_keys=[KEY])) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)
        (result,) = client.moderations.create(model="m", input=_parts(url)).results
        assert result.flagged is True and result.categories.violence is True
        assert fetcher.calls == [url]  # once, through the injected fetcher
        (result,) = client.moderations.create(model="m", input=_parts(other)).results
        assert result.categories.model_dump(by_alias=True)["safeclip/unreadable"] is True
        assert fetcher.calls == [url]  # a host off the allowlist never reaches the fetcher


def test_unauthenticated_callers_never_see_the_model_directory(tmp_path):
    """/readyz (no key) and a moderation answer without ``model`` name the model publicly:
    a guard loaded from a local directory shows its last component, never the path."""
    enc, _ = planted_guard()
    enc.name = str(tmp_path / "private" / "clip-tiny")  # as an encoder loaded from a dir
    app = create_app(SafeCLIPGuard(enc), api_keys=["k"])

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return (await c.get("/readyz"),
                        await c.post("/v1/moderations", json={"input": "x"},
                                     headers={"authorization": "Bearer k"}))

    ready, moderation = asyncio.run(run())
    assert ready.json()["model"] == moderation.json()["model"] == "safeclip-clip-tiny"
    assert str(tmp_path) not in ready.text + moderation.text


def test_only_routes_that_send_pictures_on_rebuild_them():
    """``/v1/moderations`` and ``/v1/guard`` without ``forward`` answer verdicts only: their
    images are decoded as ``check_batch`` decodes them and nothing is rebuilt; ``/v1/guard``
    with ``forward`` and the LiteLLM route hand pictures back, so theirs are rebuilt."""
    from safeclip_guardrail.serve import DecodePool

    class Recording(DecodePool):
        def __init__(self) -> None:
            super().__init__(workers=1)
            self.jobs: list = []

        async def decode(self, job, *, timeout, low_priority=False):
            self.jobs.append(job)
            return await super().decode(job, timeout=timeout, low_priority=low_priority)

    enc, guard = planted_guard(cache_size=0)
    pool = Recording()
    app = create_app(guard, decode_pool=pool)
    url = data_url(enc.plant_bytes("neutral", size=(48, 48)))

    def asked(path: str, body: dict) -> tuple[bool, int | None]:
        pool.jobs.clear()
        r = httpx.post(f"{srv.url}{path}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        (job,) = pool.jobs
        return job.forward, job.draft_size

    with BackgroundServer(app) as srv:
        moderation = asked("/v1/moderations", {"input": _parts(url)})
        verdicts_only = asked("/v1/guard", {"images": [url]})
        r = httpx.post(f"{srv.url}/v1/guard", json={"images": [url], "forward": True}, timeout=60)
        assert r.json()["forward"][0].startswith("data:image/")
        (forwarded,) = [(j.forward, j.draft_size) for j in pool.jobs[-1:]]
        litellm = asked("/beta/litellm_basic_guardrail_api", {"structured_messages": [
            {"role": "user", "content": _parts(url)}]})
    assert moderation == verdicts_only == (False, guard.draft_for(forward=False))
    assert forwarded == litellm == (True, guard.draft_for(forward=True))
