"""The guard as an HTTP service: ``create_app(guard)`` and ``safeclip serve`` (extra ``[serve]``).

``POST /v1/moderations`` answers in OpenAI's omni-moderation schema, ``POST
/beta/litellm_basic_guardrail_api`` in LiteLLM's Generic Guardrail API, ``POST /v1/guard``
with our own GuardResult; ``/healthz``, ``/readyz``, ``/metrics`` for operations. Images of
concurrent requests share encoder forwards (:class:`MicroBatcher`, weighted fair queuing
over requests, large ones at a sixteenth of the weight); images are decoded in processes
that are killed when they overrun their budget (:class:`DecodePool`). See docs/serve.md.
"""

from __future__ import annotations

from safeclip_guardrail.errors import BatcherOverloaded, BatcherStopped, require

require("fastapi", package="fastapi", extra="serve", feature="the HTTP service")
require("prometheus_client", package="prometheus-client", extra="serve", feature="the HTTP service")

from safeclip_guardrail.serve.app import API_KEYS_ENV, create_app  # noqa: E402
from safeclip_guardrail.serve.background import BackgroundServer  # noqa: E402
from safeclip_guardrail.serve.batcher import MicroBatcher  # noqa: E402
from safeclip_guardrail.serve.categories import (  # noqa: E402
    DEFAULT_CATEGORY_MAP,
    STANDARD_CATEGORIES,
    UNREADABLE_KEY,
    CategoryMap,
)
from safeclip_guardrail.serve.decode_pool import DecodePool  # noqa: E402

__all__ = [
    "API_KEYS_ENV",
    "DEFAULT_CATEGORY_MAP",
    "STANDARD_CATEGORIES",
    "UNREADABLE_KEY",
    "BackgroundServer",
    "BatcherOverloaded",
    "BatcherStopped",
    "CategoryMap",
    "DecodePool",
    "MicroBatcher",
    "create_app",
]
