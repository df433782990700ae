"""Errors as HTTP answers, in OpenAI's error JSON shape (no stack traces, ever)."""

from __future__ import annotations

import json
from typing import Any

from safeclip_guardrail.errors import ServiceError

__all__ = ["error_body", "error_bytes"]


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI's API answers errors."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_bytes(exc: ServiceError) -> bytes:
    return json.dumps(error_body(exc.message, type=exc.type, code=exc.code,
                                 param=exc.param)).encode()
