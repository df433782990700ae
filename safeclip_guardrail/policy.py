"""From verdicts to an action: the one policy every surface applies.

Pure functions, no framework, no I/O. The Runnable, ``wrap``, ChatLlava, the RAG guard,
the agent middleware, LangGraph, LlamaIndex, NeMo, the HTTP service and the LiteLLM
guardrail all call these, so one :class:`~safeclip_guardrail.config.GuardConfig` means the
same thing everywhere:

- **Strength order**: ``raise`` > ``block`` > ``redact`` > ``rewrite`` > ``annotate`` >
  ``pass``. Within a message the strongest action of its images decides; across a
  conversation ``block`` and ``raise`` stop the whole request.
- **Per-class policy**: ``GuardConfig.policy`` overrides ``mode`` per class; it may also
  name ``unreadable``.
- **Unreadable images** (corrupt, unsupported, conflicting sources, a URL that may not be
  fetched, a non-finite embedding) go through ``on_error`` exactly once, here:
  ``block`` (default) flags them as ``unreadable``, whose action is ``policy["unreadable"]``
  or the strongest of ``block`` and ``mode``; ``raise`` raises the error; ``allow`` lets the
  request go on. Whatever ``on_error`` says, an unreadable part is never forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from safeclip_guardrail.config import InterventionConfig
from safeclip_guardrail.errors import EncoderOutputError, ImageInputError
from safeclip_guardrail.result import UNREADABLE, ImageVerdict

__all__ = [
    "ACTION_STRENGTH",
    "REDACTED",
    "UNREADABLE_PLACEHOLDER",
    "Action",
    "action_for",
    "error_verdict",
    "placeholder_for",
    "refusal_text",
    "strongest_action",
]

Action = Literal["pass", "annotate", "rewrite", "redact", "block", "raise"]

ACTION_STRENGTH: dict[str, int] = {
    "pass": 0, "annotate": 1, "rewrite": 2, "redact": 3, "block": 4, "raise": 5,
}
"""Order in which actions override each other; the largest wins."""

REDACTED = "[image removed by the SafeCLIP guardrail: flagged as {category}]"
"""Placeholder text for a flagged image that is not forwarded (redact, block)."""

UNREADABLE_PLACEHOLDER = "[image removed by the SafeCLIP guardrail: it could not be checked]"
"""Placeholder text for an image that could not be judged (never forwarded)."""


def strongest_action(actions: Sequence[str]) -> Action:
    """The action that wins among ``actions`` (``pass`` when empty)."""
    best = max(actions, key=lambda a: ACTION_STRENGTH[a], default="pass")
    return best  # type: ignore[return-value]


def error_verdict(exc: ImageInputError | EncoderOutputError, config: InterventionConfig, *,
                  source: str | None = None) -> ImageVerdict:
    """``on_error`` applied to an image that could not be judged (raises on ``raise``)."""
    if config.on_error == "raise":
        raise exc
    blocked = config.on_error == "block"
    return ImageVerdict(flagged=blocked, category=UNREADABLE if blocked else None,
                        error=str(exc), source=source or getattr(exc, "source", None))


def action_for(verdict: ImageVerdict, config: InterventionConfig) -> Action:
    """The action one verdict asks for under ``config``."""
    if not verdict.flagged:
        return "pass"
    if verdict.category == UNREADABLE or verdict.category is None:
        override = config.policy.get(UNREADABLE)
        if override is not None:
            return override
        return strongest_action(["block", config.mode])
    return config.mode_for(verdict.category)


def forwarded(verdict: ImageVerdict, action: str) -> bool:
    """Whether the judged image may be sent on under the message's ``action``.

    Unreadable images never are; flagged ones not on redact/block/raise.
    """
    if verdict.error is not None:
        return False
    return not (verdict.flagged and action in ("redact", "block", "raise"))


def placeholder_for(verdict: ImageVerdict) -> str:
    """The text that replaces an image that is not forwarded."""
    if verdict.error is not None:
        return UNREADABLE_PLACEHOLDER
    return REDACTED.format(category=verdict.category or UNREADABLE)


def refusal_text(config: InterventionConfig, categories: Sequence[str]) -> str:
    """The answer given instead of calling the model on ``block``."""
    return config.refusal_for(categories, fallback=UNREADABLE)
