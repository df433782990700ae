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
  them on by mistake never sends a flagged image. (The Runnable raises
  :class:`~safeclip_guardrail.errors.GuardrailViolation` on block unless wrapped.)
- ``raise``: :class:`~safeclip_guardrail.errors.GuardrailViolation` carrying the result.

Images are found by the framework-free extraction layer (every role, every block shape,
see :mod:`safeclip_guardrail.extraction`) and the verdicts become actions in
:mod:`safeclip_guardrail.policy` — the same functions every other surface calls. What is
forwarded is exactly what was judged: each image part becomes one canonical block holding
the judged bytes; unreadable parts are never forwarded.

Scoring options (model, thresholds, concept bank) are the guard's; ``config`` here only
changes the intervention (mode, policy, safe_instruction, refusal, on_error).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.conversation import (
    GuardedConversation,
    aguard_conversations,
    guard_conversations,
)
from safeclip_guardrail.errors import SafeCLIPError
from safeclip_guardrail.langchain import _messages
from safeclip_guardrail.langchain._messages import METADATA_KEY, guard_result_of
from safeclip_guardrail.langchain._metadata import as_metadata
from safeclip_guardrail.policy import ACTION_STRENGTH, REDACTED, Action, strongest_action
from safeclip_guardrail.result import GuardResult

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = [
    "ACTION_STRENGTH",
    "METADATA_KEY",
    "REDACTED",
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



# ---------------------------------------------------------------------- public API
def guard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                   config: GuardConfig | None = None,
                   skip_roles: Collection[str] = ()) -> GuardOutcome:
    """Check every image of a conversation and apply the configured intervention."""
    return guard_message_batches(guard, [messages], config=config, skip_roles=skip_roles)[0]


async def aguard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                          config: GuardConfig | None = None,
                          skip_roles: Collection[str] = ()) -> GuardOutcome:
    """Async :func:`guard_messages` (the encoder runs in a worker thread)."""
    outcomes = await aguard_message_batches(guard, [messages], config=config,
                                            skip_roles=skip_roles)
    return outcomes[0]


def guard_message_batches(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                          config: GuardConfig | None = None,
                          skip_roles: Collection[str] = ()) -> list[GuardOutcome]:
    """:func:`guard_messages` for many conversations with ONE guard batch.

    A ``raise`` outcome raises for the whole call (the first conversation that raises).
    """
    return _raised(outcomes_or_errors(guard, batches, config=config,
                                      skip_roles=skip_roles))


async def aguard_message_batches(guard: SafeCLIPGuard,
                                 batches: Sequence[Sequence[BaseMessage]], *,
                                 config: GuardConfig | None = None,
                                 skip_roles: Collection[str] = ()) -> list[GuardOutcome]:
    """Async :func:`guard_message_batches`."""
    return _raised(await aoutcomes_or_errors(guard, batches, config=config,
                                             skip_roles=skip_roles))


def outcomes_or_errors(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                       config: GuardConfig | None = None,
                       skip_roles: Collection[str] = ()) -> list[GuardOutcome | SafeCLIPError]:
    """Like :func:`guard_message_batches`, with each conversation's error returned in its place
    (what ``Runnable.batch(..., return_exceptions=True)`` needs)."""
    convs = [list(b) for b in batches]
    views = [[_messages.view_of_message(m) for m in conv] for conv in convs]
    guarded = guard_conversations(guard, views, config=config, skip_roles=skip_roles)
    return [_to_outcome(c, g) for c, g in zip(convs, guarded, strict=True)]


async def aoutcomes_or_errors(guard: SafeCLIPGuard, batches: Sequence[Sequence[BaseMessage]], *,
                              config: GuardConfig | None = None,
                              skip_roles: Collection[str] = (),
                              ) -> list[GuardOutcome | SafeCLIPError]:
    """Async :func:`outcomes_or_errors`."""
    convs = [list(b) for b in batches]
    views = [[_messages.view_of_message(m) for m in conv] for conv in convs]
    guarded = await aguard_conversations(guard, views, config=config, skip_roles=skip_roles)
    return [_to_outcome(c, g) for c, g in zip(convs, guarded, strict=True)]


def _raised(outcomes: list[GuardOutcome | SafeCLIPError]) -> list[GuardOutcome]:
    for o in outcomes:
        if isinstance(o, SafeCLIPError):
            raise o
    return [o for o in outcomes if isinstance(o, GuardOutcome)]


def _to_outcome(conv: list[BaseMessage],
                guarded: GuardedConversation | SafeCLIPError) -> GuardOutcome | SafeCLIPError:
    if isinstance(guarded, SafeCLIPError):
        return guarded
    out: list[BaseMessage] = []
    for message, view, changed, result in zip(conv, guarded.messages, guarded.changed,
                                              guarded.message_results, strict=True):
        if not changed or result is None:
            out.append(message)
            continue
        out.append(_messages.annotate(_messages.message_of_view(message, view), result))
    refusal = None
    if guarded.blocked:
        refusal = AIMessage(content=guarded.refusal or "",
                            response_metadata={METADATA_KEY: as_metadata(guarded.result)})
    return GuardOutcome(messages=out, result=guarded.result, blocked=guarded.blocked,
                        refusal=refusal, message_results=guarded.message_results)
