"""Running the image guardrail together with text guardrails (private; see ``runnable``).

Every guardrail leaves its decision on the messages, in ``response_metadata`` (never in a
provider payload): SafeCLIP under ``"safeclip"`` (a GuardResult), any other guardrail
under ``"guardrails"`` → ``{name: GuardrailDecision}``. A later guardrail or the final
:func:`guardrail_gate` reads them all; **any block wins**. That works the same whether the
guardrails run one after another::

    image_guardrail | text_guardrail(check_text, name="keywords") | guardrail_gate(llm)

or side by side, merged into one conversation::

    RunnableParallel(image=image_guardrail, text=text_guardrail(...))
        | merge_guardrails | guardrail_gate(llm)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableBranch, RunnableLambda
from pydantic import BaseModel, ConfigDict

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.langchain._messages import guard_result_of
from safeclip_guardrail.langchain._shape import shape

__all__ = [
    "DECISIONS_KEY",
    "CombinedOutcome",
    "GuardrailDecision",
    "combined_outcome",
    "guardrail_gate",
    "merge_guardrails",
    "text_guardrail",
]

DECISIONS_KEY = "guardrails"
"""Key in ``response_metadata`` holding other guardrails' decisions, by guardrail name."""

DEFAULT_COMBINED_REFUSAL = "I cannot fulfill this request: it was blocked by {names} ({reasons})."


class GuardrailDecision(BaseModel):
    """One guardrail's decision about a message."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The guardrail that decided (``safeclip`` for the image guardrail)."""
    blocked: bool
    """True when this guardrail wants the request stopped."""
    reason: str | None = None
    """Why (for the refusal and for logs)."""


class CombinedOutcome(BaseModel):
    """All guardrail decisions found on a conversation; blocked when any one blocks."""

    model_config = ConfigDict(frozen=True)

    decisions: list[GuardrailDecision]

    @property
    def blocked(self) -> bool:
        return any(d.blocked for d in self.decisions)

    @property
    def blocking(self) -> list[GuardrailDecision]:
        return [d for d in self.decisions if d.blocked]


def _messages_of(value: Any) -> list[BaseMessage]:
    return shape(value).messages


def combined_outcome(value: Any) -> CombinedOutcome:
    """Every decision on the messages in ``value`` (any input shape the guardrail takes)."""
    decisions: list[GuardrailDecision] = []
    for message in _messages_of(value):
        result = guard_result_of(message)
        if result is not None and result.action in ("block", "raise"):
            decisions.append(GuardrailDecision(
                name="safeclip", blocked=True,
                reason="image flagged as " + (", ".join(result.categories) or "unsafe")))
        for name, raw in (message.response_metadata.get(DECISIONS_KEY) or {}).items():
            decision = GuardrailDecision.model_validate({"name": name, **raw})
            decisions.append(decision)
    return CombinedOutcome(decisions=decisions)


def text_guardrail(check: Callable[[str], str | None], *, name: str) -> Runnable[Any, Any]:
    """Turn a text check into a guardrail that records its decision on the last human message.

    ``check(text)`` returns a reason when the text must be blocked, None when it may pass.
    The input's shape is kept (the Runnable returns what the SafeCLIP guardrail would).
    """
    def run(value: Any) -> Any:
        shaped = shape(value)
        messages = list(shaped.messages)
        for i in range(len(messages) - 1, -1, -1):
            if isinstance(messages[i], HumanMessage):
                reason = check(messages[i].text)
                decision = {"blocked": reason is not None, "reason": reason}
                messages[i] = _with_decision(messages[i], name, decision)
                break
        return shaped.rebuild(messages)

    return RunnableLambda(run, name=name)


def _with_decision(message: BaseMessage, name: str, decision: Mapping[str, Any]) -> BaseMessage:
    decisions = {**(message.response_metadata.get(DECISIONS_KEY) or {}), name: dict(decision)}
    meta = {**message.response_metadata, DECISIONS_KEY: decisions}
    return message.model_copy(update={"response_metadata": meta})


def _merge(branches: Mapping[str, Any]) -> list[BaseMessage]:
    """One conversation from parallel guardrail branches, metadata merged.

    Content comes from the SafeCLIP branch when it rewrote or redacted a message, else from
    the first branch: guardrails run in parallel should decide, not edit (put editing
    guardrails in sequence).
    """""
    convs = [_messages_of(v) for v in branches.values()]
    if not convs:
        return []
    n = len(convs[0])
    if any(len(c) != n for c in convs):
        lengths = ", ".join(f"{name}: {len(c)}" for name, c in zip(branches, convs, strict=True))
        msg = (f"parallel guardrails returned conversations of different lengths ({lengths} "
               "messages); guardrails run in parallel must decide, not add or remove messages: "
               "run a guardrail that edits the conversation in sequence instead (a | b)")
        raise ConfigurationError(msg)
    merged: list[BaseMessage] = []
    for i in range(n):
        versions = [c[i] for c in convs]
        content = next((v.content for v in versions if _edited_by_safeclip(v)),
                       versions[0].content)
        meta: dict[str, Any] = {}
        decisions: dict[str, Any] = {}
        for v in versions:
            meta.update({k: val for k, val in v.response_metadata.items() if k != DECISIONS_KEY})
            decisions.update(v.response_metadata.get(DECISIONS_KEY) or {})
        if decisions:
            meta[DECISIONS_KEY] = decisions
        merged.append(versions[0].model_copy(update={"content": content,
                                                     "response_metadata": meta}))
    return merged


merge_guardrails: Runnable[Any, list[BaseMessage]] = RunnableLambda(_merge, name="merge_guardrails")
"""Merge the outputs of guardrails run in a ``RunnableParallel`` into one conversation."""


def _edited_by_safeclip(message: BaseMessage) -> bool:
    result = guard_result_of(message)
    return result is not None and result.action in ("rewrite", "redact", "block")


def _refusal(value: Any, template: str) -> AIMessage:
    outcome = combined_outcome(value)
    names = ", ".join(d.name for d in outcome.blocking)
    reasons = "; ".join(d.reason or "blocked" for d in outcome.blocking)
    text = template.replace("{names}", names).replace("{reasons}", reasons)
    return AIMessage(content=text, response_metadata={
        DECISIONS_KEY: {d.name: d.model_dump(exclude={"name"}) for d in outcome.blocking},
    })


def guardrail_gate(model: Runnable[Any, Any], *,
                   refusal: str = DEFAULT_COMBINED_REFUSAL) -> Runnable[Any, Any]:
    """``model`` unless any guardrail upstream blocked; then a refusal, without calling it.

    ``refusal`` may use ``{names}`` (the blocking guardrails) and ``{reasons}``.
    """

    def blocked(value: Any) -> bool:
        return combined_outcome(value).blocked

    def to_model(value: Any) -> Any:
        return _messages_of(value) if isinstance(value, Mapping) else value

    return RunnableBranch(
        (RunnableLambda(blocked), RunnableLambda(lambda v: _refusal(v, refusal))),
        RunnableLambda(to_model) | model,
    ).with_config(run_name="guardrail_gate")

