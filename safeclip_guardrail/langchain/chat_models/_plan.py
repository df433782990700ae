"""The guard's decision for one ChatLlava request, laid onto LLaVA's prompt.

No rule lives here: :func:`policy.decide` (the same function the conversation layer, the RAG
guard and the framework adapters call) turns the verdicts of the image slots, grouped by
turn, into actions, what is forwarded, placeholders, instructions and the refusal, and
raises :class:`GuardrailViolation` on ``raise`` — so one :class:`GuardConfig` acts the same on
every surface. What is specific to LLaVA is only where things go in its prompt:

- ``rewrite``: the safety instruction right after the turn's images, before its text
  (the paper's prompt);
- ``redact`` (and an unreadable image whatever ``on_error`` says): the image slot becomes
  the policy's placeholder text;
- ``block``: a refusal, no language-model forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from safeclip_guardrail import policy
from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.langchain.chat_models._prompt import Conversation
from safeclip_guardrail.result import ImageVerdict

__all__ = ["Plan", "plan"]


@dataclass(frozen=True)
class Plan(policy.Decision):
    """The policy's decision, laid onto the image slots and turns of the LLaVA prompt.

    Slot ``i`` is ``parts[i]``; the policy's messages (``per_message``) are the prompt's turns.
    """

    keep: frozenset[int]
    """Image slots sent to the model (judged, readable, allowed by the policy)."""
    placeholders: Mapping[int, str]
    """Slot -> the text that replaces it (every slot not kept)."""
    instructions: Mapping[int, str]
    """Turn -> the safety instruction (turns whose action is ``rewrite``)."""

    @property
    def changes_prompt(self) -> bool:
        return bool(self.placeholders or self.instructions)


def plan(conv: Conversation, verdicts: Mapping[int, ImageVerdict],
         config: GuardConfig) -> Plan:
    """Apply ``config`` to the verdict of every image slot of ``conv`` (raises on ``raise``)."""
    slots = range(len(conv.images))
    decision = policy.decide([verdicts[i] for i in slots], config,
                             messages=[s.turn for s in conv.images])
    keep = frozenset(i for i, s in enumerate(conv.images)
                     if s.decoded is not None and s.error is None and decision.parts[i].forward)
    placeholders = {i: decision.parts[i].placeholder for i in slots if i not in keep}
    instructions = {t: m.instruction for t, m in decision.per_message.items()
                    if m.instruction is not None}
    return Plan(**vars(decision), keep=keep, placeholders=placeholders,
                instructions=instructions)
