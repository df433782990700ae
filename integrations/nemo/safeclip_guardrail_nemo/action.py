"""The SafeCLIP image check as a NeMo Guardrails action for input rails.

NeMo Guardrails hands a multimodal user turn to actions as OpenAI-style content parts
(``[{"type": "text", ...}, {"type": "image_url", "image_url": {"url": ...}}]``), the shape
``langchain_core.messages.convert_to_openai_messages`` produces. The action finds every
image part, checks them all in one guard call and returns a plain dict (Colang reads
``$safeclip.allowed``; NeMo logs action results as JSON).

The action never raises for a bad image: an unreadable image part, a provider file id or a
URL the guard may not fetch is a flagged ``unreadable`` verdict under the default
``on_error="block"``, so the rail fails closed. (NeMo turns an exception inside an action
into a failed action, after which an ``if not $safeclip.allowed`` test would see no value.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail import ConfigurationError, ImageVerdict, SafeCLIPGuard
from safeclip_guardrail.blocks import classify_block, image_source_from_block
from safeclip_guardrail.errors import ImageInputError

__all__ = ["ImageRailDecision", "SafeCLIPImageRail", "image_parts"]


class ImageRailDecision(BaseModel):
    """What the rail decided about one user turn (returned to Colang as a dict)."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    """False when any image was flagged (or unreadable and failing closed)."""
    reason: str | None = None
    """Why the turn was blocked, e.g. ``"image 1 of 2 flagged as gun (0.97)"``; None if allowed."""
    refusal: str | None = None
    """The guard's refusal text with the categories filled in; None if allowed."""
    categories: list[str] = Field(default_factory=list)
    """Distinct flagged categories in order of appearance."""
    images: int = 0
    """How many images were checked."""
    verdicts: list[ImageVerdict] = Field(default_factory=list)
    """One verdict per image, with the class scores."""


def image_parts(content: Any) -> list[Mapping[str, Any]]:
    """The image parts of one message's content (a string has none)."""
    if not isinstance(content, Sequence) or isinstance(content, str):
        return []
    return [p for p in content if isinstance(p, Mapping) and classify_block(p) == "image"]


class SafeCLIPImageRail:
    """Checks the images of the user's turn; register :meth:`check` as a NeMo action.

    With ``check_history=True`` every user turn NeMo passes in its events is checked, not
    only the last one: use it when clients send whole conversations to a stateless server
    (images already seen come from the guard's hash cache, so it costs little).
    """

    def __init__(self, guard: SafeCLIPGuard, *, check_history: bool = False) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            raise ConfigurationError(
                f"SafeCLIPImageRail needs a SafeCLIPGuard, got {type(guard).__name__}; "
                "build one with SafeCLIPGuard.from_pretrained(...)"
            )
        self.guard = guard
        self.check_history = check_history

    async def check(self, context: Mapping[str, Any] | None = None,
                    events: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """NeMo action: ``$safeclip = execute safeclip_check_image``."""
        contents = self._contents(context or {}, events or [])
        parts = [p for content in contents for p in image_parts(content)]
        sources: list[str | None] = []
        errors: dict[int, ImageInputError] = {}
        for i, part in enumerate(parts):
            try:
                sources.append(image_source_from_block(part))
            except ImageInputError as exc:
                sources.append(None)
                errors[i] = exc
        readable = [s for s in sources if s is not None]
        checked = iter(await self.guard.acheck_batch(readable) if readable else [])
        verdicts = [
            self.guard.error_verdict(errors[i], source=f"image part {i + 1}")
            if s is None else next(checked)
            for i, s in enumerate(sources)
        ]
        return self.decide(verdicts).model_dump(mode="json")

    def decide(self, verdicts: Sequence[ImageVerdict]) -> ImageRailDecision:
        """The rail's decision for the verdicts of one turn."""
        flagged = [(i, v) for i, v in enumerate(verdicts) if v.flagged]
        if not flagged:
            return ImageRailDecision(allowed=True, images=len(verdicts), verdicts=list(verdicts))
        categories: list[str] = []
        for _, v in flagged:
            if v.category and v.category not in categories:
                categories.append(v.category)
        i, first = flagged[0]
        detail = first.error if first.error else f"{first.scores.get(first.category or '', 0):.2f}"
        reason = (f"image {i + 1} of {len(verdicts)} flagged as {first.category} ({detail})"
                  + (f"; {len(flagged) - 1} more flagged" if len(flagged) > 1 else ""))
        refusal = self.guard.config.refusal_for(categories, fallback="")
        return ImageRailDecision(allowed=False, reason=reason, refusal=refusal,
                                 categories=categories, images=len(verdicts),
                                 verdicts=list(verdicts))

    def _contents(self, context: Mapping[str, Any],
                  events: Sequence[Mapping[str, Any]]) -> list[Any]:
        if self.check_history:
            turns = [e.get("final_transcript") for e in events
                     if e.get("type") == "UtteranceUserActionFinished"]
            if turns:
                return turns
        return [context.get("user_message")]
