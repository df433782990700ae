"""A guard that lives behind a ``safeclip serve`` URL, seen through the guard's own contract.

:class:`RemoteGuard` has the two things the conversation layer needs from a guard — its
``config`` and ``judge_batch(images, forward=True)`` — and gets the verdicts and the judged
bytes from ``POST /v1/guard``. So the gateway guardrail finds images with the one
extraction layer and applies the one policy locally, whether the model runs in the proxy's
process or in the service. Any failure to reach the service is an error (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import GuardServiceError, ImageInputError
from safeclip_guardrail.guard import Judgement
from safeclip_guardrail.images.sources import (
    DEFAULT_FETCHER,
    EncodedImage,
    ImageFetcher,
    from_data_url,
    to_data_url,
)
from safeclip_guardrail.result import ImageVerdict

__all__ = ["GuardServiceError", "RemoteGuard"]


class RemoteGuard:
    """``judge_batch`` over HTTP against a ``safeclip serve`` instance."""

    def __init__(self, api_base: str, *, api_key: str | None = None,
                 config: GuardConfig | None = None, timeout_s: float = 30.0,
                 images_per_call: int = 16, transport: httpx.BaseTransport | None = None) -> None:
        base = api_base.rstrip("/")
        for suffix in ("/v1/guard", "/v1"):
            base = base.removesuffix(suffix)
        self.api_base = base
        self.config = config or GuardConfig()
        self.fetcher: ImageFetcher = DEFAULT_FETCHER
        """Fetches image URLs found in messages (only when ``config.images`` allows URLs)."""
        """Intervention and image-reading options applied locally (scores come from the service)."""
        self.images_per_call = images_per_call
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base, headers=headers, timeout=timeout_s,
                                    transport=transport)

    def judge_batch(self, images: Iterable[Any], *, forward: bool = False) -> list[Judgement]:
        items = list(images)
        out: list[Judgement] = []
        for start in range(0, len(items), self.images_per_call):
            out.extend(self._call(items[start:start + self.images_per_call]))
        return out

    def close(self) -> None:
        self._client.close()

    def _call(self, images: Sequence[EncodedImage]) -> list[Judgement]:
        body = {"images": [to_data_url(img) for img in images], "forward": True}
        try:
            resp = self._client.post("/v1/guard", json=body)
        except httpx.HTTPError as exc:
            msg = (f"the guard service at {self.api_base} could not be reached "
                   f"({type(exc).__name__}: {exc}); the request is refused "
                   "until it answers")
            raise GuardServiceError(msg) from None
        if resp.status_code != 200:
            try:
                detail = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = resp.text[:200]
            msg = (f"the guard service at {self.api_base} answered "
                   f"{resp.status_code}: {detail}")
            raise GuardServiceError(msg)
        try:
            data = resp.json()
            verdicts = [ImageVerdict.model_validate(v) for v in data["result"]["verdicts"]]
            forwards = data.get("forward") or [None] * len(verdicts)
        except (ValueError, KeyError, TypeError) as exc:
            msg = (f"the guard service at {self.api_base} sent an answer that "
                   f"is not a /v1/guard result ({exc})")
            raise GuardServiceError(msg) from None
        if len(verdicts) != len(images) or len(forwards) != len(images):
            msg = (f"the guard service returned {len(verdicts)} verdicts for "
                   f"{len(images)} images")
            raise GuardServiceError(msg)
        out = []
        for img, verdict, fwd in zip(images, verdicts, forwards, strict=True):
            if verdict.error is not None or fwd is None:
                error = ImageInputError(verdict.error or "the service did not judge the image",
                                        source=img.source)
                out.append(Judgement(None, error, None, img.source))
                continue
            judged = from_data_url(fwd)
            out.append(Judgement(verdict.model_copy(update={"source": img.source}), None,
                                 EncodedImage(judged.data, img.source, _mime(fwd)), img.source))
        return out


def _mime(data_url: str) -> str | None:
    head = data_url[5:data_url.find(",")].split(";", 1)[0]
    return head or None
