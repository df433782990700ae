"""Finding, replacing and annotating images inside LangChain messages (private).

Every raw content item of a message is normalised on its own through LangChain's
``content_blocks`` (so OpenAI ``image_url`` data URLs, v0 ``source_type`` blocks and v1
``image`` blocks all look the same), which keeps the index of the raw item: a redaction or
a rewrite edits the message's own ``content`` in its own format, never a re-serialised copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, ChatMessage, HumanMessage, ToolMessage

from safeclip_guardrail.blocks import classify_block, image_source_from_block
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.result import GuardResult

__all__ = [
    "METADATA_KEY",
    "ImageRef",
    "annotate",
    "find_images",
    "guard_result_of",
    "is_guarded_role",
    "prepend_instruction",
    "replace_items",
]

METADATA_KEY = "safeclip"
"""Key in ``message.response_metadata`` that holds the message's GuardResult (as JSON).

``response_metadata`` is never part of a provider request (``convert_to_openai_messages``
and the partner packages build payloads from ``content``, roles, names and tool calls),
so an annotation cannot leak into what the model sees.
"""


@dataclass(frozen=True)
class ImageRef:
    """One image (or unreadable/unknown block) found in a message's raw content."""

    item: int
    """Index of the raw item in ``message.content``."""
    source: str | None
    """Data URL, base64 string or URL to hand to the guard; None when unreadable."""
    error: ImageInputError | None = None
    """Why the block could not be read (an unknown block shape or an image without data)."""


def is_guarded_role(message: BaseMessage, *, check_tool_messages: bool) -> bool:
    """Human messages (and user ``ChatMessage``s) always; tool messages when asked."""
    if isinstance(message, HumanMessage):
        return True
    if isinstance(message, ChatMessage):
        return message.role == "user"
    return check_tool_messages and isinstance(message, ToolMessage)


def find_images(message: BaseMessage) -> list[ImageRef]:
    """Every image block of ``message`` (in order), with unreadable or unknown blocks as errors."""
    content = message.content
    if isinstance(content, str):
        return []
    refs: list[ImageRef] = []
    for i, item in enumerate(content):
        refs.extend(_refs_for_item(i, item))
    return refs


def _refs_for_item(index: int, item: Any) -> list[ImageRef]:
    if isinstance(item, str):
        return []
    if not isinstance(item, Mapping):
        return [ImageRef(index, None, ImageInputError(
            f"content item {index} is of type {type(item).__name__}, not a string or a content block "
            "dict; it cannot be checked"))]
    try:
        blocks: list[Any] = list(HumanMessage(content=[dict(item)]).content_blocks)
    except (ValueError, KeyError, TypeError):
        # LangChain could not normalise it (e.g. an image block without data): read it raw.
        blocks = [dict(item)]
    refs: list[ImageRef] = []
    for block in blocks:
        ref = _ref_for_block(index, block)
        if ref is not None:
            refs.append(ref)
    return refs


def _ref_for_block(index: int, block: Any) -> ImageRef | None:
    if isinstance(block, Mapping) and block.get("type") == "file":
        mime = block.get("mime_type")
        if not (isinstance(mime, str) and mime.startswith("image/")):
            return None
        block = {**block, "type": "image"}  # an image sent as a file is still an image
    kind = classify_block(block)
    if kind in ("text", "other"):
        return None
    if kind == "unknown":
        shown = _block_type(block)
        return ImageRef(index, None, ImageInputError(
            f"content item {index} is a block of unknown type {shown}; it may hold an image "
            "that cannot be checked. Convert it to a standard image or text block, or set "
            "on_error='allow' to let unknown blocks through",
            source=f"<block {index}>"))
    try:
        return ImageRef(index, image_source_from_block(block))
    except ImageInputError as exc:
        return ImageRef(index, None, ImageInputError(
            f"content item {index}: {exc}", source=f"<block {index}>"))


def _block_type(block: Any) -> str:
    if isinstance(block, Mapping):
        inner = block.get("value") if block.get("type") == "non_standard" else block
        if isinstance(inner, Mapping) and "type" in inner:
            return repr(inner["type"])
        keys = sorted(str(k) for k in (inner or {})) if isinstance(inner, Mapping) else []
        return f"(no 'type'; keys: {', '.join(keys) or 'none'})"
    return type(block).__name__


# ---------------------------------------------------------------------- edits
def replace_items(message: BaseMessage, replacements: Mapping[int, str]) -> BaseMessage:
    """A copy of ``message`` whose raw items at the given indices become text blocks."""
    if not replacements or isinstance(message.content, str):
        return message
    content: list[Any] = [
        {"type": "text", "text": replacements[i]} if i in replacements else item
        for i, item in enumerate(message.content)
    ]
    return message.model_copy(update={"content": content})


def prepend_instruction(message: BaseMessage, instruction: str) -> BaseMessage:
    """Prepend ``instruction`` to the message's first text (idempotent: never twice)."""
    content = message.content
    if isinstance(content, str):
        if content.startswith(instruction):
            return message
        return message.model_copy(update={"content": f"{instruction} {content}".rstrip()})
    items: list[Any] = list(content)
    for i, item in enumerate(items):
        if isinstance(item, str):
            if item.startswith(instruction):
                return message
            items[i] = f"{instruction} {item}".rstrip()
            break
        if isinstance(item, Mapping) and classify_block(item) == "text":
            text = item.get("text")
            if isinstance(text, str):
                if text.startswith(instruction):
                    return message
                items[i] = {**item, "text": f"{instruction} {text}".rstrip()}
                break
    else:
        items.insert(0, {"type": "text", "text": instruction})
    return message.model_copy(update={"content": items})


def annotate(message: BaseMessage, result: GuardResult) -> BaseMessage:
    """A copy of ``message`` carrying ``result`` in ``response_metadata`` (see METADATA_KEY)."""
    meta = {**message.response_metadata, METADATA_KEY: result.model_dump(mode="json")}
    return message.model_copy(update={"response_metadata": meta})


def guard_result_of(message: BaseMessage) -> GuardResult | None:
    """The GuardResult a SafeCLIP guardrail attached to ``message``, if any."""
    raw = message.response_metadata.get(METADATA_KEY)
    if raw is None:
        return None
    if isinstance(raw, GuardResult):
        return raw
    return GuardResult.model_validate(raw)

