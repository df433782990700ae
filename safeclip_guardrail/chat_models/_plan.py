"""The guard's decision for one ChatLlava request, from :mod:`safeclip_guardrail.policy`.

No rule lives here: every verdict becomes an action with :func:`policy.action_for`, a
message's action is the strongest of its images' (:func:`policy.strongest_action`), the
request's the strongest of its messages', and an image is sent only when
:func:`policy.forwarded` allows it — the same functions the Runnable, ``wrap``, the RAG
guard and the framework adapters call, so one :class:`GuardConfig` acts the same on every
surface. What is specific to LLaVA is only where things go in its prompt:

- ``rewrite``: the safety instruction right after the message's images, before its text
  (the paper's prompt);
- ``redact`` (and an unreadable image whatever ``on_error`` says): the image slot becomes
  the policy's placeholder text;
- ``block``: a refusal, no language-model forward; ``raise``: :class:`GuardrailViolation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from safeclip_guardrail import policy
from safeclip_guardrail.chat_models._prompt import Conversation
from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.result import GuardResult, ImageVerdict

__all__ = ["Plan", "plan"]


@dataclass(frozen=True)
class Plan:
    action: policy.Action
    """The request's action: ``pass``, ``annotate``, ``rewrite``, ``redact``, ``block``, ``raise``."""
    result: GuardResult
    keep: frozenset[int]
    """Image slots sent to the model (judged, readable, allowed by the policy)."""
    placeholders: Mapping[int, str]
    """Slot -> the text that replaces it (every slot not kept)."""
    instructions: Mapping[int, str]
    """Turn -> the safety instruction (turns whose action is ``rewrite``)."""
    refusal: str | None
    """The answer on ``block``."""

    @property
    def changes_prompt(self) -> bool:
        return bool(self.placeholders or self.instructions)


def plan(conv: Conversation, verdicts: Mapping[int, ImageVerdict],
         config: GuardConfig) -> Plan:
    """Apply ``config`` to the verdict of every image slot of ``conv``."""
    by_turn: dict[int, list[int]] = {}
    for i, slot in enumerate(conv.images):
        by_turn.setdefault(slot.turn, []).append(i)
    actions = {t: policy.strongest_action([policy.action_for(verdicts[i], config) for i in idx])
               for t, idx in by_turn.items()}
    overall = policy.strongest_action(list(actions.values()))
    keep = frozenset(i for i, s in enumerate(conv.images)
                     if s.decoded is not None and s.error is None
                     and policy.forwarded(verdicts[i], actions[s.turn]))
    placeholders = {i: policy.placeholder_for(verdicts[i])
                    for i in range(len(conv.images)) if i not in keep}
    instructions = {t: config.safe_instruction for t, a in actions.items() if a == "rewrite"}
    result = GuardResult(verdicts=[verdicts[i] for i in range(len(conv.images))], action=overall)
    refusal = policy.refusal_text(config, result.categories) if overall == "block" else None
    return Plan(action=overall, result=result, keep=keep, placeholders=placeholders,
                instructions=instructions, refusal=refusal)
