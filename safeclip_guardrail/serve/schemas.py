"""Request and response bodies of the service (pydantic; OpenAI's and LiteLLM's field names).

Requests are validated strictly enough to answer a clear 400, and loosely enough that the
official clients' extra fields (``model``, LiteLLM's ``request_data``...) are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail.result import GuardResult

__all__ = [
    "ContentPart",
    "GenericGuardrailRequest",
    "GenericGuardrailResponse",
    "GuardRequest",
    "GuardResponse",
    "ModerationRequest",
    "ModerationResponse",
    "ModerationResult",
]


class ContentPart(BaseModel):
    """A ``text`` or ``image_url`` part of an omni-moderation input (other fields kept)."""

    model_config = ConfigDict(extra="allow")

    type: str


class ModerationRequest(BaseModel):
    """``POST /v1/moderations``: ``input`` is a string, a list of strings, or a list of parts."""

    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[ContentPart]
    model: str | None = None


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[Literal["text", "image"]]]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class GenericGuardrailRequest(BaseModel):
    """LiteLLM's Generic Guardrail API request (only the fields this guard reads are typed)."""

    model_config = ConfigDict(extra="allow")

    input_type: Literal["request", "response"] = "request"
    texts: list[str] | None = None
    images: list[str] | None = None
    structured_messages: list[dict[str, Any]] | None = None


class GenericGuardrailResponse(BaseModel):
    """``action`` BLOCKED (with ``blocked_reason``) or NONE."""

    action: Literal["BLOCKED", "NONE", "GUARDRAIL_INTERVENED"]
    blocked_reason: str | None = None


class GuardRequest(BaseModel):
    """``POST /v1/guard`` (JSON): images as data URLs or base64 (URLs when the policy allows)."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(min_length=1)
    forward: bool = False
    """Also return, per image, the exact bytes to forward (the judged image) as a data URL."""


class GuardResponse(BaseModel):
    """Our own result: every verdict, the strongest action, flagged categories."""

    result: GuardResult
    forward: list[str | None] | None = None
    """With ``forward``: the judged bytes per image (None for images that were not judged)."""
