"""Hostile JSON on every route: a 4xx in OpenAI's error shape, and one log line per request.

Over a real uvicorn server: a body nested 1,000+ levels deep used to give 500 and a
traceback (``RecursionError``); every case below is refused before anything walks it.
"""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from safeclip_guardrail.serve import BackgroundServer, create_app
from safeclip_guardrail.testing.pictures import data_url
from tests._serve_helpers import LOOPBACK, planted_guard

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)]

JSON_ROUTES = ["/v1/moderations", "/moderations", "/beta/litellm_basic_guardrail_api",
               "/v1/guard"]

HOSTILE: dict[str, bytes] = {
    "deep array": b"[" * 5000 + b"]" * 5000,
    "deep object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "deep below the recursion limit": b"[" * 400 + b"]" * 400,
    "deep inside a field": b'{"input": ' + b"[" * 100 + b'"x"' + b"]" * 100 + b"}",
    "huge float": b'{"input": 1e999, "images": ["x"]}',
    "huge integer": b'{"input": ' + b"9" * 5000 + b"}",
    "NaN": b'{"input": NaN}',
    "Infinity": b'{"forward": -Infinity, "images": ["x"]}',
    "duplicate keys": b'{"input": "a", "input": "b", "images": ["x"], "images": ["y"]}',
    "not UTF-8": b'{"input": "caf\xe9", "images": ["\xff"]}',
    "UTF-16": '{"input": "x", "images": ["x"]}'.encode("utf-16"),
    "byte-order mark": b'\xef\xbb\xbf{"input": "x", "images": ["x"]}',
    "lone surrogate": b'{"model": "\\ud800", "input": "x", "images": ["\\udfff"]}',
    "too many values": b"[" + b"0," * 150_000 + b"0]",
    "truncated": b'{"input": [',
    "empty": b"",
}
SCHEMA: dict[str, bytes] = {"null": b"null", "a list": b"[]", "a string": b'"x"',
                            "a number": b"5"}


@pytest.fixture(scope="module")
def server():
    enc, guard = planted_guard()
    app = create_app(guard, decode_workers=1)
    with BackgroundServer(app) as srv:
        yield enc, srv


def _openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return err


def _records_after_the_answer(caplog) -> list[logging.LogRecord]:
    """The server logs a request once its answer is sent: wait for that line (or a second)."""
    for _ in range(200):
        records = [r for r in caplog.records if r.name.startswith("safeclip_guardrail")]
        if records:
            time.sleep(0.02)  # anything else it would log comes with it
            return [r for r in caplog.records if r.name.startswith("safeclip_guardrail")]
        time.sleep(0.01)
    return []


def _post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json"},
                      timeout=60)


@pytest.mark.parametrize("route", JSON_ROUTES)
def test_every_json_route_refuses_hostile_json_with_one_log_line(server, route, caplog, capfd):
    enc, srv = server
    caplog.set_level(logging.DEBUG)
    for name, body in HOSTILE.items():
        caplog.clear()
        err = _openai_error(_post(srv.url + route, body), 400)
        assert err["code"] == "invalid_json", (name, err)
        records = _records_after_the_answer(caplog)
        assert [r.name for r in records] == ["safeclip_guardrail.serve.access"], name
        assert '"status": 400' in records[0].getMessage()
    for name, body in SCHEMA.items():
        err = _openai_error(_post(srv.url + route, body), 400)
        assert err["code"] is None and "invalid request" in err["message"], name
    out, errout = capfd.readouterr()
    assert "Traceback" not in out + errout and "Exception in ASGI" not in out + errout
    # and the route still works
    ok = _post(srv.url + route, b'{"input": [{"type": "image_url", "image_url": {"url": "'
               + data_url(enc.plant_bytes("gun")).encode() + b'"}}], "images": ["'
               + data_url(enc.plant_bytes("gun")).encode() + b'"]}')
    assert ok.status_code in (200, 400), ok.text  # /v1/guard forbids "input"; others take it


def test_a_valid_body_with_an_escaped_emoji_is_still_accepted(server):
    enc, srv = server
    url = data_url(enc.plant_bytes("knife")).encode()
    body = (b'{"model": "m \\ud83d\\ude00", "input": [{"type": "text", "text": "\\u00e9"}, '
            b'{"type": "image_url", "image_url": {"url": "' + url + b'"}}]}')
    r = _post(srv.url + "/v1/moderations", body)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "m \U0001F600" and r.json()["results"][0]["flagged"]


def test_other_routes_and_methods_answer_in_openai_shape(server):
    _, srv = server
    for route in ("/healthz", "/readyz", "/metrics"):
        err = _openai_error(_post(srv.url + route, HOSTILE["deep array"]), 405)
        assert err["code"] == "method_not_allowed"
        assert httpx.request("GET", srv.url + route, content=HOSTILE["deep object"]).status_code == 200
    err = _openai_error(_post(srv.url + "/v2/nothing", HOSTILE["deep array"]), 404)
    assert err["code"] == "not_found"
    err = _openai_error(httpx.get(srv.url + "/v1/guard"), 405)
    assert "GET /v1/guard" in err["message"]
