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
see :mod:`safeclip_guardrail.messages.extraction`) and the verdicts become actions in
:mod:`safeclip_guardrail.policy` — the same functions every other surface calls. What is
forwarded is exactly what was judged: each image part becomes one canonical block holding
the judged bytes; unreadable parts are never forwarded.

Scoring options (model, thresholds, concept bank) are the guard's; ``config`` here only
changes the intervention (mode, policy, safe_instruction, refusal, on_error).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage

from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import SafeCLIPError
from safeclip_guardrail.langchain._messages import (
    METADATA_KEY,
    annotate,
    message_of_view,
    view_of_message,
)
from safeclip_guardrail.langchain._metadata import as_metadata
from safeclip_guardrail.langchain._shape import Shaped
from safeclip_guardrail.messages.conversation import (
    GuardedConversation,
    aguard_conversations,
    guard_conversations,
)
from safeclip_guardrail.messages.extraction import MessageView
from safeclip_guardrail.result import GuardResult

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = [
    "GuardOutcome",
    "InputGuard",
    "aguard_messages",
    "assemble",
    "guard_messages",
]


@dataclass(frozen=True)
class GuardOutcome:
    """One guarded conversation in LangChain types.

    It holds the framework-free :class:`~safeclip_guardrail.messages.conversation.GuardedConversation`
    (the policy's decision: verdicts, actions, refusal text) and adds only what LangChain needs: the
    guarded messages, the refusal as an ``AIMessage`` and the guarded input in its own shape.
    """

    conversation: GuardedConversation
    """The framework-free outcome (the policy's decision: ``result``, ``blocked``, ``parts``...)."""
    messages: list[BaseMessage]
    """The conversation after the intervention (same length and order as the input)."""
    refusal: AIMessage | None
    """The answer to give instead of calling the model when ``blocked``."""
    output: Any
    """The guarded input in the shape it came in (for :func:`guard_messages`, ``messages``)."""

    @property
    def result(self) -> GuardResult:
        """Every verdict of the conversation; ``action`` is the strongest action taken."""
        return self.conversation.result

    @property
    def blocked(self) -> bool:
        """True when the request must not reach the model (answer with ``refusal``)."""
        return self.conversation.blocked


@runtime_checkable
class InputGuard(Protocol):
    """What :class:`~safeclip_guardrail.langchain.GuardedModel` needs of a guardrail."""

    def guard_inputs(self, inputs: Sequence[Any],
                     configs: Sequence[RunnableConfig]) -> list[GuardOutcome | Exception]: ...

    async def aguard_inputs(self, inputs: Sequence[Any], configs: Sequence[RunnableConfig],
                            ) -> list[GuardOutcome | Exception]: ...


# ---------------------------------------------------------------------- public API
def guard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                   config: GuardConfig | None = None,
                   skip_roles: Collection[str] = ()) -> GuardOutcome:
    """Check every image of a conversation and apply the configured intervention.

    Errors raise (``mode="raise"``: :class:`GuardrailViolation`; ``on_error="raise"``:
    :class:`ImageInputError`). Many conversations in one guard batch, each error in its
    place: ``SafeCLIPGuardrail(...).batch(...)``, or
    :func:`safeclip_guardrail.messages.conversation.guard_conversations` over
    ``[view_of_message(m) for m in messages]``.
    """
    conv = list(messages)
    guarded = guard_conversations(guard, [_views(conv)], config=config,
                                  skip_roles=skip_roles)
    return _raised(assemble([Shaped(conv, list)], guarded)[0])


async def aguard_messages(guard: SafeCLIPGuard, messages: Sequence[BaseMessage], *,
                          config: GuardConfig | None = None,
                          skip_roles: Collection[str] = ()) -> GuardOutcome:
    """Async :func:`guard_messages` (the encoder runs in a worker thread)."""
    conv = list(messages)
    guarded = await aguard_conversations(guard, [_views(conv)], config=config,
                                         skip_roles=skip_roles)
    return _raised(assemble([Shaped(conv, list)], guarded)[0])


# ---------------------------------------------------------------------- for the Runnables
def assemble(shaped: Sequence[Shaped | Exception],
             guarded: Sequence[GuardedConversation | SafeCLIPError],
             ) -> list[GuardOutcome | Exception]:
    """Outcomes in place: one per input, ``guarded`` holding one per readable input."""
    results = iter(guarded)
    out: list[GuardOutcome | Exception] = []
    for s in shaped:
        if isinstance(s, Exception):
            out.append(s)
            continue
        g = next(results)
        out.append(g if isinstance(g, SafeCLIPError) else _outcome(s.messages, g, s.rebuild))
    return out


def _outcome(conv: list[BaseMessage], guarded: GuardedConversation,
             rebuild: Callable[[list[BaseMessage]], Any]) -> GuardOutcome:
    out: list[BaseMessage] = []
    for message, view, result in zip(conv, guarded.messages, guarded.message_results,
                                     strict=True):
        out.append(message if result is None
                   else annotate(message_of_view(message, view), result))
    refusal = None
    if guarded.blocked:
        refusal = AIMessage(content=guarded.refusal or "",
                            response_metadata={METADATA_KEY: as_metadata(guarded.result)})
    return GuardOutcome(conversation=guarded, messages=out, refusal=refusal,
                        output=rebuild(out))


def _views(messages: list[BaseMessage]) -> list[MessageView]:
    return [view_of_message(m) for m in messages]


def _raised(outcome: GuardOutcome | Exception) -> GuardOutcome:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
