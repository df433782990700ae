"""LangChain messages -> the processor's chat conversation and the images it needs.

Images are read from every LangChain / OpenAI / Anthropic block shape with the core's
loader (:func:`image_source_from_block` + :func:`decode_image`, same limits), so ChatLlava
and the guard see the same pixels. The conversation keeps each image as a slot, so a guard
decision can later rewrite (safety instruction before the user's text), redact (a text
placeholder instead of the image) or drop an image without parsing the messages again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from safeclip_guardrail.blocks import classify_block, image_source_from_block
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.images import DecodedImage, decode_image, describe_source

__all__ = ["Conversation", "ImageSlot", "Turn", "parse_messages"]

_UNSUPPORTED = frozenset({"audio", "input_audio", "video", "file"})


@dataclass
class ImageSlot:
    """One image of the conversation, in prompt order."""

    turn: int
    """Index of the turn (message) that holds it."""
    source: str
    """Short description for verdicts and errors (never the whole payload)."""
    decoded: DecodedImage | None = None
    error: ImageInputError | None = None


@dataclass
class Turn:
    role: str
    parts: list[str | int] = field(default_factory=list)
    """Text pieces and image slots (ints index ``Conversation.images``), in block order."""


@dataclass
class Conversation:
    turns: list[Turn]
    images: list[ImageSlot]

    def render(self, *, keep: set[int], placeholders: Mapping[int, str] | None = None,
               instructions: Mapping[int, str] | None = None,
               image_token: str | None = None) -> list[dict[str, Any]]:
        """The conversation in the processor's chat format.

        ``keep``: image slots that stay images; any other image becomes its placeholder
        text (or disappears). ``instructions``: turn -> text inserted before that turn's
        first text, i.e. right after its images in LLaVA's template (the paper's rewrite).
        ``image_token``: removed from user text, so typed text cannot smuggle in an image slot.
        """
        placeholders = placeholders or {}
        instructions = instructions or {}
        out: list[dict[str, Any]] = []
        for t, turn in enumerate(self.turns):
            content: list[dict[str, Any]] = []
            pending = instructions.get(t)
            for part in turn.parts:
                if isinstance(part, int):
                    if part in keep:
                        content.append({"type": "image"})
                    elif part in placeholders:
                        content.append({"type": "text", "text": placeholders[part]})
                    continue
                if pending is not None:
                    content.append({"type": "text", "text": pending})
                    pending = None
                text = part.replace(image_token, "") if image_token else part
                content.append({"type": "text", "text": text})
            if pending is not None:
                content.append({"type": "text", "text": pending})
            out.append({"role": turn.role, "content": content})
        return out

    def images_for(self, keep: set[int]) -> list[Any]:
        """The PIL images of the kept slots, in prompt order."""
        return [s.decoded.image for i, s in enumerate(self.images)
                if i in keep and s.decoded is not None]


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        return {"human": "user", "ai": "assistant"}.get(message.role, message.role)
    if isinstance(message, ToolMessage):
        return "user"  # LLaVA templates know no tool role; the result is shown as user input
    return "user"


def parse_messages(messages: Sequence[BaseMessage], options: ImageOptions) -> Conversation:
    """Read every message's text and images; image errors are kept per slot, not raised."""
    turns: list[Turn] = []
    images: list[ImageSlot] = []
    for t, message in enumerate(messages):
        turn = Turn(role=_role(message))
        content = message.content
        blocks: list[Any] = [content] if isinstance(content, str) else list(content)
        for b, block in enumerate(blocks):
            kind = classify_block(block)
            if kind == "text":
                text = block if isinstance(block, str) else block.get("text", "")
                if text:
                    turn.parts.append(str(text))
            elif kind == "image":
                turn.parts.append(len(images))
                images.append(_read_image(block, t, b, options))
            else:
                block_type = block.get("type") if isinstance(block, Mapping) else type(block)
                if kind == "unknown" or block_type in _UNSUPPORTED:
                    raise ConfigurationError(
                        f"message {t} has a content block of type {block_type!r} that ChatLlava "
                        "cannot read; send text and image blocks only"
                    )
        turns.append(turn)
    return Conversation(turns=turns, images=images)


def _read_image(block: Any, turn: int, index: int, options: ImageOptions) -> ImageSlot:
    where = f"message {turn}, block {index}"
    try:
        source = image_source_from_block(block)
    except ImageInputError as exc:
        return ImageSlot(turn=turn, source=where, error=exc)
    desc = f"{where}: {describe_source(source)}"
    try:
        return ImageSlot(turn=turn, source=desc, decoded=decode_image(source, options))
    except ImageInputError as exc:
        return ImageSlot(turn=turn, source=desc, error=exc)
