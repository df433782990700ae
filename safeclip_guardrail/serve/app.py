"""``create_app(guard)``: the guard as an HTTP service (FastAPI).

Routes: ``POST /v1/moderations`` (OpenAI omni-moderation schema), ``POST
/beta/litellm_basic_guardrail_api`` (LiteLLM's Generic Guardrail API), ``POST /v1/guard``
(our GuardResult; JSON or multipart), ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

The app holds no module-level state: each app wraps its own guard (sharing the caller's
encoder and descriptor embeddings, with its own verdict cache and forward counter), its
own metrics registry and its own micro-batcher, started in the app's lifespan. That is what
lets another runtime (Ray Serve, several apps in one process) host it unchanged.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from safeclip_guardrail import policy
from safeclip_guardrail.errors import GuardrailViolation, ServiceError
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.messages.conversation import GuardedConversation
from safeclip_guardrail.messages.extraction import MessageView, view_of_dict
from safeclip_guardrail.result import GuardResult
from safeclip_guardrail.serve._body import parse_json
from safeclip_guardrail.serve._errors import error_body
from safeclip_guardrail.serve._judging import (
    DeadlineFetcher,
    Decoded,
    Judging,
    Limits,
    forwarded_urls,
    judge_decoded,
)
from safeclip_guardrail.serve.batcher import BatcherOverloaded, BatcherStopped, MicroBatcher
from safeclip_guardrail.serve.categories import CategoryMap
from safeclip_guardrail.serve.decode_pool import DecodePool
from safeclip_guardrail.serve.metrics import ServiceMetrics
from safeclip_guardrail.serve.middleware import GuardMiddleware
from safeclip_guardrail.serve.schemas import (
    GenericGuardrailRequest,
    GenericGuardrailResponse,
    GuardRequest,
    GuardResponse,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
)

__all__ = ["API_KEYS_ENV", "create_app", "public_model_name"]

API_KEYS_ENV = "SAFECLIP_API_KEYS"
"""Environment variable with API keys, separated by commas (read by ``safeclip serve``)."""

log = logging.getLogger("safeclip_guardrail.serve")

M = TypeVar("M", bound=BaseModel)


def create_app(guard: SafeCLIPGuard, *, api_keys: Sequence[str] | None = None,
               category_map: Mapping[str, str] | None = None,
               max_body_bytes: int = 32 * 1024 * 1024, max_images: int = 32,
               max_pixels: int | None = None, request_timeout_s: float = 30.0,
               body_timeout_s: float = 30.0, max_batch: int | None = None,
               max_wait_ms: float = 5.0, max_queue: int = 4096, workers: int = 1,
               model_name: str | None = None, decode_timeout_s: float = 10.0,
               decode_workers: int | None = None, decode_pool: DecodePool | None = None,
               slice_ms: float | None = 100.0) -> FastAPI:
    """An app serving ``guard``.

    ``api_keys``: when given (non-empty), every route but ``/healthz`` and ``/readyz`` needs
    one of them (``Authorization: Bearer`` or ``x-api-key``). ``category_map``: bank class
    -> moderation key (default :data:`~safeclip_guardrail.serve.categories.DEFAULT_CATEGORY_MAP`).
    ``max_pixels``: per image (default the guard's ``ImageOptions.max_pixels``); each request
    also has its own ``max_request_pixels`` and ``request_timeout_s``.

    Decoding runs in ``decode_workers`` processes (default: a few per core) that are killed
    when an image takes longer than ``decode_timeout_s`` (``decode_pool`` to pass your own;
    ``decode_workers=0`` decodes in threads, without that guarantee). ``max_batch`` (default
    the guard's ``batch_size``), ``max_wait_ms`` and ``slice_ms`` (encoder time per batch)
    shape the micro-batches; ``max_queue`` images may wait before requests get 503.
    """
    keys = [k for k in (api_keys or ()) if k]
    metrics = ServiceMetrics()
    config = guard.config
    if max_pixels is not None:  # one pixel limit, checked once: by the decoder
        config = config.replace(images=config.images.model_copy(update={"max_pixels": max_pixels}))
    # the served guard shares the caller's encoder and descriptor embeddings, with its own
    # verdict cache, its request-deadline fetcher and the metrics' encoder counters
    served = guard.with_options(images=config.images, fetcher=DeadlineFetcher(guard.fetcher),
                                on_encode=metrics.count_encode)
    categories = CategoryMap(served.bank, category_map)
    if categories.ignored:
        log.warning("category map names classes the bank does not have: %s", categories.ignored)
    pool = decode_pool or DecodePool(workers=decode_workers)
    metrics.watch_pool(pool.stats)
    batcher: MicroBatcher[Decoded] = MicroBatcher(
        judge_decoded(served), max_batch=max_batch or guard.config.batch_size,
        max_wait_ms=max_wait_ms, max_queue=max_queue, workers=workers,
        on_batch=metrics.batch_size.observe, cost=lambda d: len(d.image.frames),
        slice_ms=slice_ms, bulk_after_s=pool.slow_after_s)  # one notion of a slow request
    judging = Judging(served, pool=pool, batcher=batcher, metrics=metrics,
                      limits=Limits(max_images=max_images, request_timeout_s=request_timeout_s,
                                    decode_timeout_s=decode_timeout_s))
    name = model_name or public_model_name(guard.model_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await judging.start()
        try:
            yield
        finally:
            await judging.stop()

    app = FastAPI(title="SafeCLIP guard", version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.guard = served
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.decode_pool = pool
    app.state.public_model_name = name
    app.state.categories = categories

    async def judge(request: Request, groups: list[list[MessageView]], *,
                    forward: bool = True) -> list[GuardedConversation]:
        out = await judging.conversations(groups, forward=forward)
        request.state.images = sum(len(o.result.verdicts) for o in out)
        return out

    @app.post("/v1/moderations", response_model=ModerationResponse,
              summary="OpenAI omni-moderation schema; judges IMAGES only",
              description=_MODERATIONS_DESCRIPTION)
    @app.post("/moderations", include_in_schema=False)
    async def moderations(request: Request) -> ModerationResponse:
        body = _parse(await _json(request), ModerationRequest)
        results = []
        for outcome in await judge(request, _moderation_groups(body.input), forward=False):
            s = categories.scores(list(outcome.result.verdicts))
            results.append(ModerationResult(
                flagged=s.flagged, categories=s.categories, category_scores=s.category_scores,
                category_applied_input_types=s.category_applied_input_types))
        return ModerationResponse(id=f"modr-{uuid.uuid4().hex}", model=body.model or name,
                                  results=results)

    @app.post("/beta/litellm_basic_guardrail_api", response_model=GenericGuardrailResponse,
              response_model_exclude_none=True)
    async def litellm_generic(request: Request) -> GenericGuardrailResponse:
        body = _parse(await _json(request), GenericGuardrailRequest)
        originals = [_image_block(s) for s in body.images or []]
        rows = body.structured_messages or []
        flat, structured = await judge(request, [[MessageView("user", originals)],
                                                 [view_of_dict(m) for m in rows]])
        result = GuardResult(verdicts=[*flat.result.verdicts, *structured.result.verdicts])
        if result.flagged:
            reason = policy.refusal_text(served.config, result.categories)
            return GenericGuardrailResponse(action="BLOCKED", blocked_reason=reason)
        # What LiteLLM sends on must be what was judged: the judged pictures are rebuilt from
        # their pixels, so the request's messages come back rewritten (LiteLLM writes returned
        # structured_messages into the request). A flat image list cannot be written back:
        # an image whose judged bytes differ from what was sent is refused instead.
        guarded = structured.as_dicts(rows)
        if guarded != rows:
            return GenericGuardrailResponse(action="GUARDRAIL_INTERVENED",
                                            structured_messages=guarded)
        if not rows and flat.messages and flat.messages[0].content != originals:
            return GenericGuardrailResponse(action="BLOCKED", blocked_reason=(
                "the guard forwards pictures rebuilt from the judged pixels, and a flat image "
                "list cannot carry them back; send the images inside structured_messages"))
        return GenericGuardrailResponse(action="NONE")

    @app.post("/v1/guard", response_model=GuardResponse)
    async def guard_route(request: Request) -> GuardResponse:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            blocks = await _uploads(request, max_images)
            forward = request.query_params.get("forward", "") in ("1", "true")
        else:
            body = _parse(await _json(request), GuardRequest)
            forward = body.forward
            blocks = [{"type": "image_url", "image_url": {"url": s}} for s in body.images]
        (outcome,) = await judge(request, [[MessageView("user", blocks)]], forward=forward)
        verdicts = list(outcome.result.verdicts)
        try:  # the served config decides what may be sent on, each image on its own
            decision = policy.decide(verdicts, served.config, messages=range(len(verdicts)))
            action, allowed = decision.action, [p.forward for p in decision.parts]
        except GuardrailViolation:
            action, allowed = "raise", [False] * len(verdicts)
        fwd = None
        if forward:
            urls = forwarded_urls(outcome, len(blocks))
            fwd = [u if ok else None for u, ok in zip(urls, allowed, strict=True)]
        return GuardResponse(result=GuardResult(verdicts=verdicts, action=action), forward=fwd)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = batcher.running and pool.running and served.text_embeddings.shape[0] > 0
        body = {"ready": ready, "model": name,
                "classes": [c.name for c in served.bank.classes],
                "descriptors": int(served.text_embeddings.shape[0])}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    _install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_keys=keys, max_body_bytes=max_body_bytes,
                       body_timeout_s=body_timeout_s, metrics=metrics)
    return app


def public_model_name(model: str) -> str:
    """The model's name as unauthenticated callers see it: an alias or hub id as is, a local
    directory by its last component only (never a server path)."""
    spec = model.removeprefix("open_clip:local-dir:")
    local = (spec != model or spec.startswith(("/", "~", ".")) or "\\" in spec
             or spec.count("/") > 1 or os.path.isdir(spec))
    shown = (PurePath(spec.replace("\\", "/")).name or "local") if local else model
    return f"safeclip-{shown}"


# ---------------------------------------------------------------------- helpers
_MODERATIONS_DESCRIPTION = (
    "Judges the images of `input` only. Text is never judged: a text part, or a string input, "
    "never flags (\"I will hurt you\" comes back unflagged), and `category_applied_input_types` "
    "is `[]` for what only text could decide. Replacing OpenAI's omni-moderation? Run a text "
    "moderation beside this one: the LiteLLM recipe in docs/serve.md, 'Images and text'.")

async def _json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise ServiceError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}",
                           code="unsupported_media_type")
    return parse_json(await request.body())


def _parse(data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ServiceError(400, f"invalid request: {where}: {first.get('msg')} "
                           f"({exc.error_count()} problem(s))", param=where) from None


def _moderation_groups(value: Any) -> list[list[MessageView]]:
    if isinstance(value, str):
        return [[MessageView("user", value)]]
    if all(isinstance(v, str) for v in value):
        return [[MessageView("user", v)] for v in value]
    parts = [p.model_dump() for p in value]
    for i, p in enumerate(parts):
        if p["type"] not in ("text", "image_url"):
            raise ServiceError(400, f"input[{i}] has type {p['type']!r}; the moderation input "
                               "takes 'text' and 'image_url' parts", param=f"input.{i}.type")
    return [[MessageView("user", parts)]]


async def _uploads(request: Request, max_images: int) -> list[dict[str, Any]]:
    """The uploaded files as image blocks (the extraction layer reads them like any other)."""
    try:
        form = await request.form(max_files=max_images + 1, max_fields=max_images + 16)
    except Exception as exc:
        raise ServiceError(400, f"cannot read the multipart form: {exc}") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise ServiceError(400, "the multipart form holds no file; upload images as file fields")
    out = []
    for i, f in enumerate(files):
        data = await f.read()
        if not data:
            raise ServiceError(400, f"upload {i} ({f.filename!r}) is empty")
        out.append({"type": "image", "base64": base64.b64encode(data).decode("ascii")})
    return out


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, type=exc.type, code=exc.code,
                                       param=exc.param), status_code=exc.status)

    @app.exception_handler(BatcherOverloaded)
    @app.exception_handler(BatcherStopped)
    async def overloaded(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(str(exc), type="server_error", code="overloaded"),
                            status_code=503, headers={"retry-after": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(f"{request.method} {_route(request)}: {exc.detail}",
                                       code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "?")
        log.error("request %s failed: %s: %s", rid, type(exc).__name__, exc)
        return JSONResponse(error_body(f"internal error (request {rid}); see the server log",
                                       type="server_error", code="internal_error"),
                            status_code=500)


def _route(request: Request) -> str:
    path = request.url.path
    return path if len(path) <= 80 and path.isprintable() else "this path"


def _version() -> str:
    from safeclip_guardrail import __version__

    return str(__version__)


def _image_block(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}
