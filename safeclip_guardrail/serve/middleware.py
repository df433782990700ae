"""The ASGI layer in front of every route: API keys, body limits, access log, latency.

It runs before FastAPI parses anything, so an oversized body is refused from its
``Content-Length`` (or as soon as the streamed body passes the limit) without being
buffered, a client that sends its body too slowly gets 408 after ``body_timeout_s``
(other requests are served meanwhile: reading is asynchronous), and a request without a
valid key never reaches a route. Keys are compared in constant time against every
configured key. The access log is one JSON object per request and never contains image
data (method, route, status, sizes, duration, image count, request id).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from safeclip_guardrail.errors import ServiceError
from safeclip_guardrail.serve._errors import error_bytes
from safeclip_guardrail.serve.metrics import ServiceMetrics

__all__ = ["GuardMiddleware", "access_logger"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_logger = logging.getLogger("safeclip_guardrail.serve.access")
"""One JSON line per request at INFO (no image data)."""

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
KNOWN_ROUTES = frozenset({"/v1/moderations", "/moderations", "/beta/litellm_basic_guardrail_api",
                          "/v1/guard", "/healthz", "/readyz", "/metrics"})


class GuardMiddleware:
    """Keys, limits, timing and the access log for one app."""

    def __init__(self, app: ASGIApp, *, api_keys: Sequence[str], max_body_bytes: int,
                 body_timeout_s: float, metrics: ServiceMetrics) -> None:
        self.app = app
        self._keys = [k.encode() for k in api_keys]
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else "other"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id = uuid.uuid4().hex[:16]
        state.setdefault("images", 0)
        status = {"code": 500, "bytes_in": 0}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if path not in PUBLIC_PATHS:
                self._authorize(scope)
            body = await self._read_body(scope, receive)
            status["bytes_in"] = len(body)
            await self.app(scope, _replay(body, receive), send_wrapped)
        except ServiceError as exc:
            await _send_error(send_wrapped, exc)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.latency.labels(route).observe(elapsed)
            self.metrics.requests.labels(route, str(status["code"])).inc()
            access_logger.info(json.dumps({
                "request_id": request_id, "method": scope.get("method"), "path": route,
                "status": status["code"], "bytes_in": status["bytes_in"],
                "images": state.get("images", 0), "duration_ms": round(elapsed * 1000, 3),
                "client": (scope.get("client") or ("", 0))[0],
            }))

    def _authorize(self, scope: Scope) -> None:
        if not self._keys:
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
            elif name == b"x-api-key" and not given:
                given = value.strip()
        ok = False
        for key in self._keys:  # every key is compared: the time does not depend on which
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise ServiceError(401, "missing or invalid API key: send 'Authorization: Bearer "
                               "<key>' (or 'x-api-key: <key>') with a key the service was "
                               "started with", type="invalid_request_error",
                               code="invalid_api_key")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise ServiceError(400, "Content-Length is not a number") from None
                if declared > limit:
                    raise _too_large(declared, limit)
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                raise ServiceError(408, f"the request body was not received within "
                                   f"{self.body_timeout_s:g} s; send it faster or in one piece",
                                   code="request_timeout") from None
            if message["type"] == "http.disconnect":
                raise ServiceError(400, "the client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(size: int, limit: int) -> ServiceError:
    return ServiceError(413, f"request body of {size} bytes is over the limit of {limit} bytes; "
                        "send fewer or smaller images per request (or raise max_body_bytes)",
                        code="request_too_large")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, exc: ServiceError) -> None:
    body = error_bytes(exc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if exc.status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
