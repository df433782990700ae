"""Deprecated: use :mod:`safeclip_guardrail.extraction` (``find_image_parts``).

This module once held a second parser of image content blocks. Every surface now finds
images with the one extraction layer; what is left here is a thin shim over it, kept
for code that still imports these two names. It follows the extraction layer's trust
rules: a block with more than one source, a path, a provider file id or an unknown block
type is unreadable (:class:`ImageInputError`), and what it returns is a ``data:`` URL of the
very bytes that were read — never a string a caller could open as a path.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.extraction import TEXT_TYPES, MessageView, find_image_parts
from safeclip_guardrail.sources import to_base64

__all__ = ["BlockKind", "classify_block", "image_source_from_block"]

BlockKind = Literal["text", "image", "other", "unknown"]


def _warn(name: str) -> None:
    warnings.warn(
        f"safeclip_guardrail.blocks.{name} is deprecated; use "
        "safeclip_guardrail.extraction.find_image_parts (every role, every block shape)",
        DeprecationWarning, stacklevel=3)


def _parts(block: Any, options: ImageOptions | None) -> list[Any]:
    view = MessageView(role="user", content=[block])
    return find_image_parts([view], options=options or ImageOptions())


def classify_block(block: Any, *, options: ImageOptions | None = None) -> BlockKind:
    """``image`` when the extraction layer finds an image part (readable or not) in ``block``."""
    _warn("classify_block")
    if _parts(block, options):
        return "image"
    if isinstance(block, str):
        return "text"
    if not isinstance(block, Mapping):
        return "unknown"
    return "text" if block.get("type") in TEXT_TYPES else "other"


def image_source_from_block(block: Mapping[str, Any], *,
                            options: ImageOptions | None = None) -> str:
    """The image in ``block`` as a ``data:`` URL of its bytes; :class:`ImageInputError` when
    it cannot be read (conflicting sources, a path, a file id, a URL that may not be fetched)."""
    _warn("image_source_from_block")
    parts = _parts(block, options)
    if not parts:
        raise ImageInputError(f"content block of type {block.get('type')!r} holds no image",
                              source="<block>")
    if len(parts) > 1:
        raise ImageInputError("content block holds more than one image; read it with "
                              "safeclip_guardrail.extraction.find_image_parts", source="<block>")
    part = parts[0]
    if part.error is not None:
        raise part.error
    if part.image is None:
        raise ImageInputError("content block holds no readable image", source="<block>")
    return f"data:{part.image.mime_type or 'image/*'};base64,{to_base64(part.image)}"
