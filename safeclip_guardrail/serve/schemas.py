"""Request and response bodies of the service (pydantic; OpenAI's and LiteLLM's field names).

Requests are validated strictly enough to answer a clear 400, and loosely enough that the
official clients' extra fields (``model``, LiteLLM's ``request_data``...) are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

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

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        """One message saying what ``input`` may be (pydantic would report one failure per
        member of the union: ``input.str ...`` and two more)."""
        shapes = ('must be a string, a list of strings, or a list of parts (objects with '
                  '"type": "text" or "image_url")')
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            msg = "input_shape"
            raise PydanticCustomError(msg, "{message}", {"message": f"{shapes}; got {_kind(value)}"})
        if all(isinstance(v, str) for v in value):
            return value
        for i, item in enumerate(value):
            if not (isinstance(item, dict) and isinstance(item.get("type"), str)):
                what = ("a string in a list of parts" if isinstance(item, str)
                        else f"{_kind(item)}, not a part with a string \"type\"")
                msg = "input_shape"
                raise PydanticCustomError(msg, "{message}", {"message": f"{shapes}; item {i} is {what}"})
        return value


def _kind(value: Any) -> str:
    """A JSON reader's name for a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


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
    """``action`` BLOCKED (with ``blocked_reason``), NONE, or GUARDRAIL_INTERVENED with the
    request's ``structured_messages`` rewritten to hold the judged pictures (LiteLLM writes
    them back into the request)."""

    action: Literal["BLOCKED", "NONE", "GUARDRAIL_INTERVENED"]
    blocked_reason: str | None = None
    structured_messages: list[dict[str, Any]] | None = None


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
