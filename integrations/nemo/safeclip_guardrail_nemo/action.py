"""The SafeCLIP image check as a NeMo Guardrails action for input rails.

NeMo Guardrails turns the messages of a request into events (user turns, bot turns, system
messages, tool results, context updates) and hands them to actions. The action rebuilds
the conversation from those events as OpenAI-style dict messages, finds every image in
every role and every field through the one extraction layer
(:func:`safeclip_guardrail.messages.conversation.guard_conversations`), judges them all in one
guard batch, and returns a plain dict (Colang reads ``$safeclip.allowed``; NeMo logs action
results as JSON).

What a verdict means is the guard's config through :mod:`safeclip_guardrail.policy`, as on
every other surface, with ``block`` as the mode: a rail can only let a turn through or
refuse it, so ``rewrite``, ``redact``, ``block`` and ``raise`` all keep the model out
(``raise`` raises out of the action, which NeMo answers with its internal-error message),
and ``annotate``/``pass`` let the turn through. An unreadable image part (bad data, a
provider file id, a URL the guard may not fetch, a path, two sources in one block) goes
through ``on_error``: ``block`` (default) refuses the turn, ``raise`` raises, ``allow`` lets
it through — and it is never judged as readable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail import ConfigurationError, GuardConfig, ImageVerdict, SafeCLIPGuard, policy
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import SafeCLIPError
from safeclip_guardrail.messages.conversation import aguard_conversations
from safeclip_guardrail.messages.extraction import MessageView, find_image_parts, view_of_dict

__all__ = ["ImageRailDecision", "SafeCLIPImageRail", "image_parts", "messages_from_events"]


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
    """The image-bearing parts of one message's content (every block shape the guard reads)."""
    if not isinstance(content, Sequence) or isinstance(content, str):
        return []
    found = find_image_parts([MessageView("user", content)], options=ImageOptions())
    blocks = {p.path[1] for p in found if len(p.path) > 1 and isinstance(p.path[1], int)}
    return [content[i] for i in sorted(blocks) if isinstance(content[i], Mapping)]


def messages_from_events(events: Sequence[Mapping[str, Any]]) -> list[MessageView]:
    """The conversation NeMo received, rebuilt from its events, every role included."""
    views: list[MessageView] = []
    for e in events:
        kind = e.get("type")
        if kind == "UtteranceUserActionFinished":
            views.append(MessageView("user", e.get("final_transcript")))
        elif kind == "UtteranceBotActionFinished":
            views.append(MessageView("assistant", e.get("final_script")))
        elif kind == "SystemMessage":
            views.append(MessageView("system", e.get("content")))
        elif kind == "UserToolMessages":
            for tool in e.get("tool_messages") or []:
                if isinstance(tool, Mapping):
                    views.append(view_of_dict({"role": "tool", **tool}))
        elif kind == "ContextUpdate":
            data = e.get("data")
            if isinstance(data, Mapping):
                views.append(MessageView("context", None, dict(data)))
    return views


class SafeCLIPImageRail:
    """Judges the images of the conversation; register :meth:`check` as a NeMo action.

    Every role NeMo passes in its events is judged (user turns, bot turns, system messages,
    tool results, context), the whole history included, since a client that sends a
    conversation controls all of it; images already seen come from the guard's hash cache.
    ``skip_roles`` names roles not to judge (empty by default).
    """

    def __init__(self, guard: SafeCLIPGuard, *, skip_roles: Collection[str] = ()) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            msg = (f"SafeCLIPImageRail needs a SafeCLIPGuard, got {type(guard).__name__}; "
                   "build one with SafeCLIPGuard.from_pretrained(...)")
            raise ConfigurationError(msg)
        if isinstance(skip_roles, str):
            msg = (f"skip_roles must be a collection of role names, got the string {skip_roles!r}; "
                   f"write skip_roles=({skip_roles!r},)")
            raise ConfigurationError(msg)
        self.guard = guard
        self.skip_roles = tuple(r.lower() for r in skip_roles)
        self.config: GuardConfig = guard.config.replace(mode="block")
        """The guard's config with ``block`` as the mode (per-class policy and on_error kept)."""

    async def check(self, context: Mapping[str, Any] | None = None,
                    events: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """NeMo action: ``$safeclip = execute safeclip_check_image``."""
        views = self._views(context or {}, events or [])
        outcome = (await aguard_conversations(self.guard, [views], config=self.config,
                                              skip_roles=self.skip_roles))[0]
        if isinstance(outcome, SafeCLIPError):
            raise outcome  # on_error="raise" / mode "raise": NeMo fails the action
        return self._rail_decision(outcome).model_dump(mode="json")

    def decide(self, verdicts: Sequence[ImageVerdict]) -> ImageRailDecision:
        """The rail's decision for the verdicts of one conversation (policy of the config;
        raises :class:`~safeclip_guardrail.GuardrailViolation` on ``raise``)."""
        return self._rail_decision(policy.decide(verdicts, self.config))

    def _rail_decision(self, decision: policy.Decision) -> ImageRailDecision:
        verdicts = decision.result.verdicts
        if decision.action in ("pass", "annotate"):
            return ImageRailDecision(allowed=True, images=len(verdicts), verdicts=list(verdicts))
        categories = decision.result.categories
        flagged = [(i, v) for i, v in enumerate(verdicts) if v.flagged]
        i, first = flagged[0]
        detail = first.error if first.error else f"{first.scores.get(first.category or '', 0):.2f}"
        reason = (f"image {i + 1} of {len(verdicts)} flagged as {first.category} ({detail})"
                  + (f"; {len(flagged) - 1} more flagged" if len(flagged) > 1 else ""))
        return ImageRailDecision(allowed=False, reason=reason,
                                 refusal=policy.refusal_text(self.config, categories),
                                 categories=categories, images=len(verdicts),
                                 verdicts=list(verdicts))

    def _views(self, context: Mapping[str, Any],
               events: Sequence[Mapping[str, Any]]) -> list[MessageView]:
        views = messages_from_events(events)
        if views:
            return views
        return [MessageView("user", context.get("user_message"))]

