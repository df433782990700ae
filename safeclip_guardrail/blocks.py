"""Images inside chat content blocks, in every shape LangChain and providers use.

Pure dict handling (no LangChain import), shared by the Runnable, ChatLlava and the
framework adapters. LangChain's ``message.content_blocks`` already normalises most shapes
to v1 ``{"type": "image", "base64"|"url"|"file_id": ...}`` blocks; this module reads those
and the raw shapes too, so an adapter that sees provider payloads directly (NeMo
Guardrails, LlamaIndex) gets the same answer.

Recognised image blocks:

- v1: ``{"type": "image", "base64": ..., "mime_type": ...}``, ``{"type": "image", "url": ...}``
- v0: ``{"type": "image", "source_type": "base64"|"url", "data"|"url": ...}``
- OpenAI chat: ``{"type": "image_url", "image_url": {"url": ...}}`` (or a bare string)
- OpenAI responses: ``{"type": "input_image", "image_url": ...}``
- Anthropic: ``{"type": "image", "source": {"type": "base64", "data": ...}}``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from safeclip_guardrail.errors import ImageInputError

__all__ = ["NON_IMAGE_BLOCK_TYPES", "BlockKind", "classify_block", "image_source_from_block"]

BlockKind = Literal["text", "image", "other", "unknown"]

NON_IMAGE_BLOCK_TYPES = frozenset({
    "text", "text-plain", "reasoning", "thinking", "tool_call", "tool_call_chunk",
    "invalid_tool_call", "tool_use", "tool_result", "server_tool_call", "server_tool_call_chunk",
    "server_tool_result", "citation", "non_standard_annotation", "audio", "input_audio",
    "video", "file", "input_text", "output_text", "refusal", "non_standard",
})
"""Block types that are known and carry no image."""

_IMAGE_TYPES = frozenset({"image", "image_url", "input_image"})


def classify_block(block: Any) -> BlockKind:
    """``text``, ``image``, ``other`` (known, not an image) or ``unknown``."""
    if isinstance(block, str):
        return "text"
    if not isinstance(block, Mapping):
        return "unknown"
    t = block.get("type")
    if t in ("text", "input_text", "output_text"):
        return "text"
    if t in _IMAGE_TYPES:
        return "image"
    if t == "non_standard":  # a provider block LangChain did not recognise: judge what it wraps
        inner = block.get("value")
        return classify_block(inner) if isinstance(inner, Mapping) else "unknown"
    if t in NON_IMAGE_BLOCK_TYPES:
        return "other"
    return "unknown"


def image_source_from_block(block: Mapping[str, Any]) -> str:
    """The image inside an image block, as a base64 string, data URL or URL.

    Raises :class:`ImageInputError` when the block is an image block we cannot read (no
    data, a provider file id, a malformed URL field).
    """
    if block.get("type") == "non_standard" and isinstance(block.get("value"), Mapping):
        block = block["value"]
    t = block.get("type")
    if t not in _IMAGE_TYPES:
        raise ImageInputError(f"content block of type {t!r} is not an image block")
    if t in ("image_url", "input_image"):
        raw = block.get("image_url")
        url = raw.get("url") if isinstance(raw, Mapping) else raw
        if not isinstance(url, str) or not url:
            if t == "input_image" and block.get("file_id"):
                return _file_id_error(block["file_id"])
            raise ImageInputError(
                f"'{t}' block has no usable image_url (expected a string or {{'url': ...}})"
            )
        return url
    # "image": v1, v0 or Anthropic
    source = block.get("source")
    if isinstance(source, Mapping):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return _data_url(source.get("media_type"), source["data"])
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return str(source["url"])
        raise ImageInputError("image block 'source' must be base64 data or a url")
    source_type = block.get("source_type")
    if source_type == "base64" or (source_type is None and "base64" in block):
        data = block.get("base64") if source_type is None else block.get("data")
        if not isinstance(data, str) or not data:
            raise ImageInputError("image block has an empty or missing base64 payload")
        return _data_url(block.get("mime_type"), data)
    if source_type == "url" or (source_type is None and "url" in block):
        url = block.get("url")
        if not isinstance(url, str) or not url:
            raise ImageInputError("image block has an empty or missing url")
        return url
    if source_type == "id" or "file_id" in block or ("id" in block and source_type is not None):
        return _file_id_error(block.get("file_id") or block.get("id"))
    keys = ", ".join(sorted(k for k in block if k != "type"))
    raise ImageInputError(
        f"image block has no image data (keys: {keys or 'none'}); expected 'base64', 'url', "
        "'source', or an OpenAI 'image_url'"
    )


def _data_url(mime: Any, data: str) -> str:
    if data.startswith("data:"):
        return data
    mime_type = mime if isinstance(mime, str) and mime else "image/*"
    return f"data:{mime_type};base64,{data}"


def _file_id_error(file_id: Any) -> str:
    raise ImageInputError(
        f"image block refers to a provider file id ({file_id!r}) whose bytes are not available "
        "here; send the image inline (base64 or data URL) so it can be checked"
    )
