"""What a guardrail does to a conversation when one of its images is flagged.

This is the message-level API under the LangChain Runnable, the agent middleware and the
LangGraph node: hand it a guard and a list of messages, get back a :class:`GuardOutcome`
with the new messages, the verdicts and, on ``block``, the refusal to answer with.

Modes (``GuardConfig.mode``, overridden per class by ``GuardConfig.policy``):

- ``rewrite`` (the paper): prepend the safety instruction to the text of the message that
  holds the flagged image, so the vision-language model refuses with a reason.
- ``annotate``: content untouched; the GuardResult goes into ``response_metadata``, which
  no provider payload includes (``convert_to_openai_messages`` is unchanged).
- ``redact``: the flagged image block becomes a short text placeholder naming the category.
- ``block``: ``blocked=True`` and a refusal ``AIMessage``; the caller answers with it and
  does not call the model. ``messages`` still has the flagged images redacted, so passing
  them on by mistake never sends a flagged image.
- ``raise``: :class:`~safeclip_guardrail.errors.GuardrailViolation` carrying the result.

When several images are flagged under different per-class policies, the strongest action
wins (``raise`` > ``block`` > ``redact`` > ``rewrite`` > ``annotate``): within a message it
decides what happens to that message, across the conversation ``block`` and ``raise`` stop
the whole request. An image that cannot be read (or a block of unknown shape) follows
``on_error``: ``block`` (default) fails closed with the strongest of ``block`` and the mode,
``raise`` raises :class:`~safeclip_guardrail.errors.ImageInputError`, ``allow`` lets it pass.

Scoring options (model, thresholds, concept bank) are the guard's; ``config`` here only
changes the intervention (mode, policy, safe_instruction, refusal, on_error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail import _messages
from safeclip_guardrail._messages import METADATA_KEY, guard_result_of
from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import GuardrailViolation, ImageInputError, SafeCLIPError
from safeclip_guardrail.result import UNREADABLE, GuardResult, ImageVerdict

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = [
    "ACTION_STRENGTH",
    "METADATA_KEY",
    "Action",
    "GuardOutcome",
    "aguard_message_batches",
    "aguard_messages",
    "aoutcomes_or_errors",
    "guard_message_batches",
    "guard_messages",
    "guard_result_of",
    "outcomes_or_errors",
    "strongest_action",
]

Action = Literal["pass", "annotate", "rewrite", "redact", "block", "raise"]

ACTION_STRENGTH: dict[str, int] = {
    "pass": 0, "annotate": 1, "rewrite": 2, "redact": 3, "block": 4, "raise": 5,
}
"""Order in which actions override each other; the largest wins."""

REDACTED = "[image removed by the SafeCLIP guardrail: flagged as {category}]"
"""Placeholder text that replaces a flagged image on ``redact`` (and ``block``)."""


class GuardOutcome(BaseModel):
    """The result of guarding one conversation."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    messages: list[BaseMessage]
    """The conversation after the intervention (same length and order as the input)."""
    result: GuardResult
    """Every verdict of the conversation; ``action`` is the strongest action taken."""
    blocked: bool = False
    """True when the request must not reach the model (answer with ``refusal``)."""
    refusal: AIMessage | None = None
    """The answer to give instead of calling the model when ``blocked``."""
    message_results: list[GuardResult | None] = Field(default_factory=list)
    """Per message: its GuardResult when it was checked and held images, else None."""


def strongest_action(actions: Sequence[str]) -> str:
    """The action that wins among ``actions`` (``pass`` when empty)."""
    return max(actions, key=lambda a: ACTION_STRENGTH[a], default="pass")


# ---------------------------------------------------------------------- public API
def guard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                   config: GuardConfig | None = None,
                   check_tool_messages: bool = False) -> GuardOutcome:
    """Check every image of a conversation and apply the configured intervention."""
    return guard_message_batches(guard, [messages], config=config,
                                 check_tool_messages=check_tool_messages)[0]


async def aguard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                          config: GuardConfig | None = None,
                          check_tool_messages: bool = False) -> GuardOutcome:
    """Async :func:`guard_messages` (the encoder runs in a worker thread)."""
    outcomes = await aguard_message_batches(guard, [messages], config=config,
                                            check_tool_messages=check_tool_messages)
    return outcomes[0]


def guard_message_batches(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                          config: GuardConfig | None = None,
                          check_tool_messages: bool = False) -> list[GuardOutcome]:
    """:func:`guard_messages` for many conversations with ONE ``guard.check_batch`` call.

    A ``raise`` outcome raises for the whole call (the first conversation that raises).
    """
    plan = _Plan.collect(batches, check_tool_messages=check_tool_messages)
    verdicts = guard.check_batch(plan.sources) if plan.sources else []
    return _raised(plan.apply(verdicts, config or guard.config))


async def aguard_message_batches(guard: SafeCLIPGuard,
                                 batches: Sequence[Sequence[BaseMessage]], *,
                                 config: GuardConfig | None = None,
                                 check_tool_messages: bool = False) -> list[GuardOutcome]:
    """Async :func:`guard_message_batches` (one ``guard.acheck_batch`` call)."""
    plan = _Plan.collect(batches, check_tool_messages=check_tool_messages)
    verdicts = await guard.acheck_batch(plan.sources) if plan.sources else []
    return _raised(plan.apply(verdicts, config or guard.config))


def outcomes_or_errors(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                       config: GuardConfig | None = None,
                       check_tool_messages: bool = False) -> list[GuardOutcome | SafeCLIPError]:
    """Like :func:`guard_message_batches`, with each conversation's error returned in its place
    (what ``Runnable.batch(..., return_exceptions=True)`` needs)."""
    plan = _Plan.collect(batches, check_tool_messages=check_tool_messages)
    verdicts = guard.check_batch(plan.sources) if plan.sources else []
    return plan.apply(verdicts, config or guard.config, return_exceptions=True)


async def aoutcomes_or_errors(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                              config: GuardConfig | None = None,
                              check_tool_messages: bool = False,
                              ) -> list[GuardOutcome | SafeCLIPError]:
    """Async :func:`outcomes_or_errors`."""
    plan = _Plan.collect(batches, check_tool_messages=check_tool_messages)
    verdicts = await guard.acheck_batch(plan.sources) if plan.sources else []
    return plan.apply(verdicts, config or guard.config, return_exceptions=True)


def _raised(outcomes: list[GuardOutcome | SafeCLIPError]) -> list[GuardOutcome]:
    return [o for o in outcomes if isinstance(o, GuardOutcome)]  # apply() raised otherwise


# ---------------------------------------------------------------------- internals
@dataclass
class _Found:
    conversation: int
    message: int
    ref: _messages.ImageRef
    slot: int | None  # index into the guard batch; None for blocks that could not be read


class _Plan:
    """The images of many conversations, gathered for one guard batch."""

    def __init__(self, batches: list[list[BaseMessage]], found: list[_Found],
                 sources: list[str]) -> None:
        self.batches = batches
        self.found = found
        self.sources = sources

    @classmethod
    def collect(cls, batches: Sequence[Sequence[BaseMessage]], *,
                check_tool_messages: bool) -> _Plan:
        convs = [list(b) for b in batches]
        found: list[_Found] = []
        sources: list[str] = []
        for c, conv in enumerate(convs):
            for m, message in enumerate(conv):
                if not isinstance(message, BaseMessage):
                    raise TypeError(
                        f"expected LangChain messages, got {type(message).__name__} at "
                        f"position {m}; convert dicts with langchain_core.messages."
                        "convert_to_messages first"
                    )
                if not _messages.is_guarded_role(message, check_tool_messages=check_tool_messages):
                    continue
                for ref in _messages.find_images(message):
                    slot = None
                    if ref.source is not None:
                        slot = len(sources)
                        sources.append(ref.source)
                    found.append(_Found(c, m, ref, slot))
        return cls(convs, found, sources)

    def apply(self, verdicts: Sequence[ImageVerdict], config: GuardConfig, *,
              return_exceptions: bool = False) -> list[GuardOutcome | SafeCLIPError]:
        """One outcome per conversation; ``raise`` and ``on_error="raise"`` errors are
        returned in place when ``return_exceptions``, else the first one is raised."""
        by_conv: dict[int, list[_Found]] = {}
        for f in self.found:
            by_conv.setdefault(f.conversation, []).append(f)
        outcomes: list[GuardOutcome | SafeCLIPError] = []
        for c, conv in enumerate(self.batches):
            try:
                per_message: dict[int, list[tuple[_messages.ImageRef, ImageVerdict]]] = {}
                for f in by_conv.get(c, []):
                    if f.slot is not None:
                        verdict = _apply_on_error(verdicts[f.slot], config)
                    else:
                        assert f.ref.error is not None
                        verdict = _error_verdict(f.ref.error, config)
                    per_message.setdefault(f.message, []).append((f.ref, verdict))
                outcomes.append(_outcome(conv, per_message, config))
            except SafeCLIPError as exc:
                if not return_exceptions:
                    raise
                outcomes.append(exc)
        return outcomes


def _outcome(conv: list[BaseMessage],
             per_message: dict[int, list[tuple[_messages.ImageRef, ImageVerdict]]],
             config: GuardConfig) -> GuardOutcome:
    all_verdicts: list[ImageVerdict] = []
    actions: dict[int, str] = {}
    for m in range(len(conv)):
        found = per_message.get(m, [])
        all_verdicts.extend(v for _, v in found)
        actions[m] = strongest_action([_action_for(v, config) for _, v in found])
    overall = strongest_action(list(actions.values()))
    if overall == "raise":
        raise GuardrailViolation(GuardResult(verdicts=all_verdicts, action="raise"))
    blocked = overall == "block"
    out: list[BaseMessage] = []
    results: list[GuardResult | None] = []
    for m, message in enumerate(conv):
        checked = per_message.get(m)
        if not checked:
            out.append(message)
            results.append(None)
            continue
        action = actions[m]
        result = GuardResult(verdicts=[v for _, v in checked], action=action)
        out.append(_messages.annotate(_intervene(message, checked, action, config), result))
        results.append(result)
    result = GuardResult(verdicts=all_verdicts, action=overall)
    refusal = _refusal(result, config) if blocked else None
    return GuardOutcome(messages=out, result=result, blocked=blocked, refusal=refusal,
                        message_results=results)


def _action_for(verdict: ImageVerdict, config: GuardConfig) -> str:
    if not verdict.flagged:
        return "pass"
    if verdict.category == UNREADABLE or verdict.category is None:
        # Fail closed: an image we could not read must not reach the model.
        return strongest_action(["block", config.mode])
    return config.mode_for(verdict.category)


def _intervene(message: BaseMessage,
               found: list[tuple[_messages.ImageRef, ImageVerdict]],
               action: str, config: GuardConfig) -> BaseMessage:
    if action in ("redact", "block"):
        placeholders = {
            ref.item: REDACTED.format(category=verdict.category or UNREADABLE)
            for ref, verdict in found if verdict.flagged
        }
        return _messages.replace_items(message, placeholders)
    if action == "rewrite":
        return _messages.prepend_instruction(message, config.safe_instruction)
    return message  # annotate / pass: content untouched


def _refusal(result: GuardResult, config: GuardConfig) -> AIMessage:
    text = config.refusal_for(result.categories)
    return AIMessage(content=text,
                     response_metadata={METADATA_KEY: result.model_dump(mode="json")})


def _error_verdict(exc: ImageInputError, config: GuardConfig) -> ImageVerdict:
    if config.on_error == "raise":
        raise exc
    blocked = config.on_error == "block"
    return ImageVerdict(flagged=blocked, category=UNREADABLE if blocked else None,
                        error=str(exc), source=exc.source)


def _apply_on_error(verdict: ImageVerdict, config: GuardConfig) -> ImageVerdict:
    """Re-read a guard error verdict under this guardrail's ``on_error``."""
    if verdict.error is None:
        return verdict
    return _error_verdict(ImageInputError(verdict.error, source=verdict.source), config)
