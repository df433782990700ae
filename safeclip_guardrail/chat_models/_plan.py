"""Guard decision for one request: which images stay, what the prompt becomes, or a refusal.

Modes follow the Runnable (``GuardConfig.mode`` with per-class ``policy``): ``annotate``
passes and reports; ``rewrite`` puts the safety instruction right after the flagged
message's images, before its text (the paper's prompt); ``redact`` replaces the image by a
placeholder text; ``block`` answers with ``GuardConfig.refusal`` and runs no language-model
forward; ``raise`` raises :class:`GuardrailViolation`. When images ask for different modes
the strictest wins for the request (raise > block > redact > rewrite > annotate), and
redact / rewrite apply per image. An unreadable image (``on_error="block"``) never reaches
the model: it is redacted unless the request is blocked or raised anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from safeclip_guardrail.chat_models._prompt import Conversation
from safeclip_guardrail.config import GuardConfig, Mode
from safeclip_guardrail.intervention import strongest_action
from safeclip_guardrail.result import UNREADABLE, GuardResult, ImageVerdict

__all__ = ["Decision", "decide", "refusal_text"]

UNREADABLE_PLACEHOLDER = "[image could not be read]"


@dataclass
class Decision:
    action: str
    """``pass``, ``annotate``, ``rewrite``, ``redact``, ``block`` or ``raise``."""
    result: GuardResult
    keep: set[int] = field(default_factory=set)
    placeholders: dict[int, str] = field(default_factory=dict)
    instructions: dict[int, str] = field(default_factory=dict)

    @property
    def changes_prompt(self) -> bool:
        return bool(self.placeholders or self.instructions)


def decide(conv: Conversation, verdicts: Mapping[int, ImageVerdict],
           config: GuardConfig | None) -> Decision:
    """Apply the guard's modes to the verdicts of the conversation's images."""
    action = "pass"
    keep: set[int] = set()
    placeholders: dict[int, str] = {}
    instructions: dict[int, str] = {}
    for i, slot in enumerate(conv.images):
        verdict = verdicts.get(i)
        if slot.decoded is None:  # unreadable, and on_error did not raise
            placeholders[i] = UNREADABLE_PLACEHOLDER
            if verdict is not None and verdict.flagged and config is not None:
                mode: Mode | str = config.mode if config.mode in ("block", "raise") else "redact"
                action = strongest_action([action, mode])
            continue
        if verdict is None or not verdict.flagged or config is None:
            keep.add(i)
            continue
        mode = config.mode_for(verdict.category)
        action = strongest_action([action, mode])
        if mode == "redact":
            placeholders[i] = f"[image removed: flagged as {verdict.category or 'unsafe'}]"
            continue
        keep.add(i)
        if mode == "rewrite":
            instructions[slot.turn] = config.safe_instruction
    ordered = [verdicts[i] for i in sorted(verdicts)]
    result = GuardResult(verdicts=ordered, action=action)
    return Decision(action=action, result=result, keep=keep, placeholders=placeholders,
                    instructions=instructions)


def refusal_text(config: GuardConfig, result: GuardResult) -> str:
    return config.refusal_for(result.categories, fallback=UNREADABLE)

