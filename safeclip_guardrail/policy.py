"""From judgements to verdicts to actions: the one policy every surface applies.

Pure functions, no framework, no I/O, no engine: :mod:`~safeclip_guardrail.guard`
(``check_batch``), the conversation layer (the Runnable, ``wrap``, the agent middleware,
LangGraph, NeMo, the LiteLLM guardrail), ChatLlava, the RAG guard, LlamaIndex and the HTTP
service all call these, so one :class:`~safeclip_guardrail.config.GuardConfig` means the same
thing everywhere. Two steps, each in one place:

- :func:`verdict_for`: one image part's judgement (or the error that kept it from being
  judged) becomes a verdict, ``on_error`` applied exactly once: ``block`` (default) flags it
  as ``unreadable``, ``raise`` raises the error, ``allow`` lets the request go on.
- :func:`decide`: the verdicts of a request, grouped by message, become a :class:`Decision`:
  each verdict's action (``GuardConfig.policy`` overrides ``mode`` per class, and may name
  ``unreadable``, whose default is the strongest of ``block`` and ``mode``), each message's
  action (the strongest of its images'; strength order ``raise`` > ``block`` > ``redact`` >
  ``rewrite`` > ``annotate`` > ``pass``), the request's (the strongest of its messages';
  ``block`` and ``raise`` stop the whole request), for each image whether it is sent on or
  which placeholder text replaces it, the safety instruction of a ``rewrite`` message and the
  refusal of a ``block``. ``raise`` raises :class:`~safeclip_guardrail.errors.GuardrailViolation`.

Whatever ``on_error`` says, an unreadable part is never forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from safeclip_guardrail.config import InterventionConfig
from safeclip_guardrail.errors import (
    ConfigurationError,
    EncoderOutputError,
    GuardrailViolation,
    ImageInputError,
)
from safeclip_guardrail.result import UNREADABLE, GuardResult, ImageVerdict

__all__ = [
    "ACTION_STRENGTH",
    "REDACTED",
    "UNREADABLE_PLACEHOLDER",
    "Action",
    "Decision",
    "Judged",
    "MessageDecision",
    "PartDecision",
    "action_for",
    "decide",
    "error_verdict",
    "forwarded",
    "placeholder_for",
    "refusal_text",
    "strongest_action",
    "verdict_for",
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

ImageError = ImageInputError | EncoderOutputError


class Judged(Protocol):
    """What the guard made of one image (:class:`~safeclip_guardrail.guard.Judgement`).

    A protocol, so the policy needs no engine: exactly one of ``verdict`` and ``error`` is
    set by the guard; neither means the image was never judged (and fails closed).
    """

    @property
    def verdict(self) -> ImageVerdict | None: ...

    @property
    def error(self) -> ImageInputError | EncoderOutputError | None: ...

    @property
    def source(self) -> str | None: ...


@dataclass(frozen=True)
class PartDecision:
    """What happens to one image part."""

    verdict: ImageVerdict
    """Its verdict (``on_error`` applied)."""
    message: int
    """The message (turn, document) it belongs to."""
    forward: bool
    """Whether the policy lets its judged bytes be sent on (never when unreadable; not when
    flagged and its message redacts, blocks or raises). A surface forwards it only when it
    also holds the judged bytes; otherwise it writes :attr:`placeholder`."""
    placeholder: str
    """The text that takes its place when it is not sent on."""


@dataclass(frozen=True)
class MessageDecision:
    """The decision for one message: its action and what happens to each of its images."""

    action: Action
    """The strongest action of its images."""
    parts: tuple[PartDecision, ...]
    """Its images, in order."""
    instruction: str | None
    """The safety instruction to prepend to its text on ``rewrite``; else None."""

    @property
    def result(self) -> GuardResult:
        """Its verdicts, with its action."""
        return GuardResult(verdicts=[p.verdict for p in self.parts], action=self.action)


@dataclass(frozen=True)
class Decision:
    """The decision for a whole request (a conversation, a prompt, a document)."""

    action: Action
    """The strongest action of its messages."""
    result: GuardResult
    """Every verdict in input order, with :attr:`action`."""
    parts: tuple[PartDecision, ...]
    """Every image part, in input order."""
    per_message: Mapping[int, MessageDecision]
    """The messages that hold images, by message index, in order of first appearance."""
    refusal: str | None
    """The answer given instead of calling the model on ``block``; else None."""

    @property
    def blocked(self) -> bool:
        """True when the request must not reach the model (answer with :attr:`refusal`)."""
        return self.action == "block"


def strongest_action(actions: Sequence[str]) -> Action:
    """The action that wins among ``actions`` (``pass`` when empty)."""
    best = max(actions, key=lambda a: ACTION_STRENGTH[a], default="pass")
    return best  # type: ignore[return-value]


def verdict_for(judged: Judged | ImageError | None, config: InterventionConfig, *,
                source: str | None = None) -> ImageVerdict:
    """The verdict of one image part, ``on_error`` applied exactly once (raises on ``raise``).

    ``judged`` is the guard's judgement of the part, or the error that kept the part from
    being judged (extraction could not read it), or None when it was never judged (which
    fails closed like any error). ``source`` names the image where the surface knows it
    better (a metadata key, a prompt slot, the guard's description of its input); it then
    replaces the verdict's own.
    """
    if isinstance(judged, (ImageInputError, EncoderOutputError)):
        error: ImageError = judged
    elif judged is not None and judged.verdict is not None:
        verdict = judged.verdict
        return verdict if source is None else verdict.model_copy(update={"source": source})
    elif judged is not None and judged.error is not None:
        error = judged.error
    else:
        where = source or (judged.source if judged is not None else None)
        error = EncoderOutputError("the image was not judged", source=where)
    return error_verdict(error, config, source=source)


def error_verdict(exc: ImageError, config: InterventionConfig, *,
                  source: str | None = None) -> ImageVerdict:
    """``on_error`` applied to an image that could not be judged (raises on ``raise``).

    Prefer :func:`verdict_for`, which also takes a judgement; this is its last step.
    """
    if config.on_error == "raise":
        raise exc
    blocked = config.on_error == "block"
    return ImageVerdict(flagged=blocked, category=UNREADABLE if blocked else None,
                        error=str(exc), source=source or exc.source)


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
    """Whether the judged image may be sent on under its message's ``action``.

    Unreadable images never are; flagged ones not on redact/block/raise.
    """
    if verdict.error is not None:
        return False
    return not (verdict.flagged and action in ("redact", "block", "raise"))


def placeholder_for(verdict: ImageVerdict, *, redacted: str = REDACTED) -> str:
    """The text that replaces an image that is not forwarded.

    ``redacted`` is the template for a flagged image; ``{category}`` in it is replaced.
    """
    if verdict.error is not None:
        return UNREADABLE_PLACEHOLDER
    return redacted.replace("{category}", verdict.category or UNREADABLE)


def refusal_text(config: InterventionConfig, categories: Sequence[str]) -> str:
    """The answer given instead of calling the model on ``block``."""
    return config.refusal_for(categories, fallback=UNREADABLE)


def decide(verdicts: Sequence[ImageVerdict], config: InterventionConfig, *,
           messages: Sequence[int] | None = None, redacted: str = REDACTED) -> Decision:
    """The policy's decision for the verdicts of one request (raises on ``raise``).

    ``messages`` says which message each verdict belongs to (default: all to one); a
    message's action is the strongest of its images', the request's the strongest of its
    messages'. ``redacted`` is the placeholder template for flagged images. On ``raise``
    this raises :class:`GuardrailViolation` carrying every verdict.
    """
    keys = [0] * len(verdicts) if messages is None else list(messages)
    if len(keys) != len(verdicts):
        msg = (f"decide() got {len(verdicts)} verdicts but {len(keys)} "
               "message indexes; give one message index per verdict")
        raise ConfigurationError(msg)
    per_message: dict[int, list[Action]] = {}
    for key, verdict in zip(keys, verdicts):
        per_message.setdefault(key, []).append(action_for(verdict, config))
    actions = {k: strongest_action(found) for k, found in per_message.items()}
    overall = strongest_action(list(actions.values()))
    result = GuardResult(verdicts=list(verdicts), action=overall)
    if overall == "raise":
        raise GuardrailViolation(result)
    parts = tuple(PartDecision(v, k, forwarded(v, actions[k]),
                               placeholder_for(v, redacted=redacted))
                  for k, v in zip(keys, verdicts))
    by_message: dict[int, list[PartDecision]] = {}
    for part in parts:
        by_message.setdefault(part.message, []).append(part)
    grouped = {k: MessageDecision(a, tuple(by_message[k]),
                                  config.safe_instruction if a == "rewrite" else None)
               for k, a in actions.items()}
    refusal = refusal_text(config, result.categories) if overall == "block" else None
    return Decision(action=overall, result=result, parts=parts, per_message=grouped,
                    refusal=refusal)
