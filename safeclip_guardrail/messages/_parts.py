"""The data the extraction layer reads and returns (re-exported by :mod:`.extraction`).

Kept apart from the walk itself so the block readers and the public module can share them
without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images.sources import EncodedImage

__all__ = ["ImagePart", "MessageView", "Path", "Style"]

Style = Literal["openai", "responses", "v1", "anthropic", "media", "text", "text_block", "raw"]
"""How a part is written back: the dialect of the block it came from (``openai``,
``responses``, ``v1``, ``anthropic``, Gemini's ``media``), a whole text block (``text_block``),
a string in a text position (``text``: a placeholder stays as text), or a value in a payload
field (``raw``: a placeholder removes it)."""

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class MessageView:
    """A framework-free view of one message: what the extraction layer reads and rewrites."""

    role: str
    """``user``/``human``, ``assistant``/``ai``, ``system``, ``developer``, ``tool``, ... (lower case)."""
    content: Any
    """A string, a list of strings and content blocks, or None."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Other fields that can carry images: LangChain ``additional_kwargs``, or a provider
    dict message's other keys (e.g. Ollama's ``images``)."""


@dataclass(frozen=True)
class ImagePart:
    """One payload of a conversation that must be judged, or that makes its part unreadable.

    ``image`` holds a picture's bytes or a PDF's (``mime_type="application/pdf"``); both go
    through the guard's normal judge path. An unreadable part (``error`` set) is never
    forwarded, whatever ``on_error`` says.
    """

    message: int
    """Index of the message in the conversation."""
    path: Path
    """Where the part sits in the message: ``("content",)``, ``("content", 2)``,
    ``("content", 1, "content", 0)`` (a tool result's block), ``("extras", "images", 0)``."""
    style: Style
    """The dialect to write the canonical block in."""
    image: EncodedImage | None
    """The bytes to judge; None when the part is unreadable."""
    error: ImageInputError | None = None
    """Why the part cannot be judged (then it is never forwarded)."""
    detail: str | None = None
    """OpenAI's ``detail`` option, kept on the canonical block."""
