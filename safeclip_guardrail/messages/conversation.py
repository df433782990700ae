"""Guard whole conversations: find every image, judge it, apply the policy, forward exactly it.

Framework-free; the LangChain layer, the agent adapters, the HTTP service and the LiteLLM
guardrail are thin converters around :func:`guard_conversations`. All images of all the
conversations given go through ONE ``guard.judge_batch`` call (one encoder forward per
``batch_size`` chunk), and each conversation's outcome is independent: an error in one
(``on_error="raise"``, ``mode="raise"``) is returned in its place, never for the others.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safeclip_guardrail import policy
from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import ConfigurationError, SafeCLIPError
from safeclip_guardrail.messages.extraction import (
    ImagePart,
    MessageView,
    dict_of_view,
    find_image_parts,
    view_of_dict,
)
from safeclip_guardrail.messages.forwarding import apply_parts, canonical, placeholder, prepend_text, value_at
from safeclip_guardrail.result import GuardResult

if TYPE_CHECKING:
    from safeclip_guardrail.guard import Judgement, SafeCLIPGuard
    from safeclip_guardrail.images.sources import EncodedImage

__all__ = [
    "GuardedConversation",
    "aguard_conversations",
    "guard_conversations",
    "guard_dict_messages",
]


@dataclass(frozen=True)
class GuardedConversation(policy.Decision):
    """What the guard made of one conversation: the policy's decision and what to forward.

    The framework-free outcome (``action``, ``result``, ``blocked``, ``refusal``, ``parts``,
    ``per_message`` are the :class:`policy.Decision`'s); the LangChain layer's
    ``GuardOutcome`` holds one and adds only LangChain types.
    """

    messages: list[MessageView]
    """The conversation to forward: judged images as canonical blocks, others replaced."""

    @property
    def message_results(self) -> list[GuardResult | None]:
        """Per message: its GuardResult when it held images, else None."""
        found = self.per_message
        return [found[m].result if m in found else None for m in range(len(self.messages))]

    @property
    def changed(self) -> list[bool]:
        """Per message: whether what is forwarded differs from what came in."""
        return [m in self.per_message for m in range(len(self.messages))]

    def as_dicts(self, originals: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The guarded conversation as provider dict messages (the originals' other keys kept)."""
        return [dict_of_view(o, v) if c else dict(o)
                for o, v, c in zip(originals, self.messages, self.changed, strict=True)]


def guard_conversations(guard: SafeCLIPGuard, conversations: Sequence[Sequence[MessageView]], *,
                        config: GuardConfig | None = None, skip_roles: Collection[str] = (),
                        judge: Callable[[list[EncodedImage]], Sequence[Judgement]] | None = None,
                        ) -> list[GuardedConversation | SafeCLIPError]:
    """Guard many conversations with one guard batch; errors come back in place.

    ``config`` sets the intervention (mode, policy, on_error, texts); scoring and image
    limits are the guard's own. ``judge``: the judging step, with ``judge_batch``'s contract
    (one :class:`~safeclip_guardrail.guard.Judgement` per image, in order, forward bytes
    set); default ``guard.judge_batch(images, forward=True)``.
    """
    found = _find(guard, conversations, skip_roles)
    readable = [p.image for parts in found for p in parts if p.image is not None]
    step = judge or functools.partial(guard.judge_batch, forward=True)
    return _outcomes(conversations, found, step(readable) if readable else [],
                     config or guard.config)


async def aguard_conversations(guard: SafeCLIPGuard,
                               conversations: Sequence[Sequence[MessageView]], *,
                               config: GuardConfig | None = None,
                               skip_roles: Collection[str] = (),
                               judge: Callable[[list[EncodedImage]],
                                               Awaitable[Sequence[Judgement]]] | None = None,
                               ) -> list[GuardedConversation | SafeCLIPError]:
    """Async :func:`guard_conversations`: finding (and fetching) in a worker thread, then
    ``await judge(images)`` (default: ``guard.judge_batch`` in a worker thread)."""
    if judge is None:
        return await asyncio.to_thread(guard_conversations, guard, conversations,
                                       config=config, skip_roles=skip_roles)
    found = await asyncio.to_thread(_find, guard, conversations, skip_roles)
    readable = [p.image for parts in found for p in parts if p.image is not None]
    return _outcomes(conversations, found, await judge(readable) if readable else [],
                     config or guard.config)


def guard_dict_messages(guard: SafeCLIPGuard, messages: Sequence[Mapping[str, Any]], *,
                        config: GuardConfig | None = None, skip_roles: Collection[str] = (),
                        ) -> GuardedConversation:
    """One conversation of provider dict messages (OpenAI, Anthropic, Ollama); raises errors.

    ``outcome.as_dicts(messages)`` is what to send on when ``outcome.blocked`` is False.
    """
    views = [view_of_dict(m) for m in messages]
    outcome = guard_conversations(guard, [views], config=config, skip_roles=skip_roles)[0]
    if isinstance(outcome, SafeCLIPError):
        raise outcome
    return outcome


# ---------------------------------------------------------------------- internals
def _find(guard: SafeCLIPGuard, conversations: Sequence[Sequence[MessageView]],
          skip_roles: Collection[str]) -> list[list[ImagePart]]:
    return [find_image_parts(conv, options=guard.config.images, skip_roles=skip_roles,
                             fetcher=guard.fetcher)
            for conv in conversations]


def _outcomes(conversations: Sequence[Sequence[MessageView]], found: list[list[ImagePart]],
              judged: Sequence[Judgement], config: GuardConfig,
              ) -> list[GuardedConversation | SafeCLIPError]:
    readable = sum(p.image is not None for parts in found for p in parts)
    if len(judged) != readable:
        msg = (f"the judging step returned {len(judged)} judgements for "
               f"{readable} images; it must return one per image, in order")
        raise ConfigurationError(msg)
    judgements = iter(judged)
    outcomes: list[GuardedConversation | SafeCLIPError] = []
    for conv, parts in zip(conversations, found, strict=True):
        mine = [(p, next(judgements) if p.image is not None else None) for p in parts]
        try:
            outcomes.append(_outcome(list(conv), mine, config))
        except SafeCLIPError as exc:
            outcomes.append(exc)
    return outcomes


def _outcome(conv: list[MessageView], parts: list[tuple[ImagePart, Judgement | None]],
             config: GuardConfig) -> GuardedConversation:
    verdicts = [policy.verdict_for(part.error if part.error is not None else judgement, config)
                for part, judgement in parts]
    decision = policy.decide(verdicts, config, messages=[part.message for part, _ in parts])
    per_message: dict[int, list[tuple[ImagePart, Judgement | None, policy.PartDecision]]] = {}
    for (part, judgement), decided in zip(parts, decision.parts, strict=True):
        per_message.setdefault(part.message, []).append((part, judgement, decided))
    out = list(conv)
    for m, mine in per_message.items():
        view = conv[m]
        replacements: dict[tuple[str | int, ...], Any] = {}
        for part, judgement, decided in mine:
            original = value_at(view, part.path)
            forward = judgement.forward if judgement is not None else None
            if decided.forward and forward is not None:
                replacements[part.path] = canonical(part.style, forward, detail=part.detail,
                                                    original=original)
            else:
                replacements[part.path] = placeholder(part.style, decided.placeholder,
                                                      original=original)
        new = apply_parts(view, replacements)
        instruction = decision.per_message[m].instruction
        if instruction is not None:
            responses = any(part.style == "responses" for part, _, _ in mine)
            new = MessageView(new.role, prepend_text(new.content, instruction,
                                                     responses_style=responses), new.extras)
        out[m] = new
    return GuardedConversation(**vars(decision), messages=out)
