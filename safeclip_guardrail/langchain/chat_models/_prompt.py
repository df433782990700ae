"""LangChain messages -> LLaVA's chat conversation and the images it will see.

Images are found by the one extraction layer
(:func:`~safeclip_guardrail.messages.extraction.find_image_parts`), exactly as the Runnable, the
agent middleware and every other surface find them: every role (system, assistant and tool
messages too), every block shape, file blocks whose bytes are an image whatever their MIME
type, ``non_standard`` wrappers, image data URLs as plain text, images in
``additional_kwargs``. A part with two sources, a path, a provider file id or an unknown
block type is unreadable and goes through the guard's ``on_error``.

Each image part becomes a *slot* of the conversation. Its bytes come only from the part's
:class:`~safeclip_guardrail.images.sources.EncodedImage` (a data URL, base64, or a fetched http(s)
URL when allowed) — never from a path written in message content. ChatLlava decodes them
with the guard's own decode and hands LLaVA's processor those decoded pixels, so the model
sees exactly what was judged. The conversation keeps each image as a slot so the guard's
decision can rewrite, redact or drop it without parsing the messages again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.images.decode import DecodedImage
from safeclip_guardrail.images.sources import ImageFetcher
from safeclip_guardrail.langchain._messages import view_of_message
from safeclip_guardrail.messages.extraction import (
    IMAGE_TYPES,
    TEXT_TYPES,
    ImagePart,
    MessageView,
    find_image_parts,
)

__all__ = ["Conversation", "ImageSlot", "Turn", "parse_messages"]

_UNSUPPORTED = frozenset({"audio", "input_audio", "video", "file", "input_file", "document"})
"""Block types LLaVA cannot take (unless their bytes are an image: then they are a slot)."""

Path = tuple[str | int, ...]


@dataclass
class ImageSlot:
    """One image of the conversation, in prompt order."""

    turn: int
    """Index of the turn (message) that holds it."""
    part: ImagePart
    """The part the extraction layer found: its bytes, or why it cannot be judged."""
    decoded: DecodedImage | None = None
    """The guard's decode of ``part.image``: the pixels judged and, if kept, sent."""
    error: ImageInputError | None = None
    """Why the image cannot be judged (from extraction or decoding); then it is never sent."""

    @property
    def source(self) -> str:
        """Short description for verdicts and errors (never the payload)."""
        where = "/".join(str(p) for p in self.part.path)
        what = self.part.image.source if self.part.image is not None else (
            self.error.source if self.error is not None and self.error.source else "unreadable")
        return f"message {self.turn} {where}: {what}"


@dataclass
class Turn:
    role: str
    parts: list[str | int] = field(default_factory=list)
    """Text pieces and image slots (ints index ``Conversation.images``), in prompt order."""


@dataclass
class Conversation:
    turns: list[Turn]
    images: list[ImageSlot]

    def render(self, *, keep: set[int] | frozenset[int],
               placeholders: Mapping[int, str] | None = None,
               instructions: Mapping[int, str] | None = None,
               image_token: str | None = None) -> list[dict[str, Any]]:
        """The conversation in the processor's chat format.

        ``keep``: image slots that stay images; any other image becomes its placeholder
        text (or disappears). ``instructions``: turn -> text inserted before that turn's
        first text, i.e. right after its images in LLaVA's template (the paper's rewrite).
        ``image_token``: removed from all text, so typed text cannot open an image slot.
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
                        content.append({"type": "text", "text": _clean(placeholders[part],
                                                                       image_token)})
                    continue
                if pending is not None:
                    content.append({"type": "text", "text": pending})
                    pending = None
                content.append({"type": "text", "text": _clean(part, image_token)})
            if pending is not None:
                content.append({"type": "text", "text": pending})
            out.append({"role": turn.role, "content": content})
        return out

    def images_for(self, keep: set[int] | frozenset[int]) -> list[Any]:
        """The judged pixels (first decoded frame) of the kept slots, in prompt order."""
        return [s.decoded.image for i, s in enumerate(self.images)
                if i in keep and s.decoded is not None]


def parse_messages(messages: Sequence[BaseMessage], options: ImageOptions, *,
                   fetcher: ImageFetcher | None = None) -> Conversation:
    """Read every message's text and image parts; image errors stay on their slot.
    Allowed image URLs are fetched with ``fetcher`` (the guard's)."""
    views = [view_of_message(m) for m in messages]
    parts = find_image_parts(views, options=options, fetcher=fetcher)
    by_message: dict[int, dict[Path, ImagePart]] = {}
    for part in parts:
        by_message.setdefault(part.message, {})[part.path] = part
    turns: list[Turn] = []
    images: list[ImageSlot] = []
    for m, view in enumerate(views):
        turn = Turn(role=llava_role(view.role))
        _Walker(m, turn, images, by_message.get(m, {})).walk(view)
        turns.append(turn)
    return Conversation(turns=turns, images=images)


def llava_role(role: str) -> str:
    """LLaVA templates know ``system``, ``user`` and ``assistant``; tool output is user input."""
    r = role.lower()
    if r in ("assistant", "ai", "model"):
        return "assistant"
    if r in ("system", "developer"):
        return "system"
    return "user"


class _Walker:
    """Walks one message's content in the extraction layer's paths, emitting text and slots."""

    def __init__(self, message: int, turn: Turn, images: list[ImageSlot],
                 parts: Mapping[Path, ImagePart]) -> None:
        self.message = message
        self.turn = turn
        self.images = images
        self.parts = parts
        self.used: set[Path] = set()

    def walk(self, view: MessageView) -> None:
        # images in extra fields (additional_kwargs, Ollama's ``images``) come first, as
        # LLaVA's prompts put a turn's images before its text
        for path, part in self.parts.items():
            if path[0] == "extras":
                self._slot(path, part)
        self.content(("content",), view.content)
        missed = [p for p in self.parts if p not in self.used]
        if missed:  # every found image must be a slot: never dropped unseen, never unjudged
            msg = (f"message {self.message}: an image at {'/'.join(map(str, missed[0]))} could not "
                   "be placed in LLaVA's prompt; send text and image blocks")
            raise ConfigurationError(msg)

    def _slot(self, path: Path, part: ImagePart) -> None:
        self.used.add(path)
        self.turn.parts.append(len(self.images))
        self.images.append(ImageSlot(turn=self.message, part=part, error=part.error))

    def content(self, path: Path, content: Any) -> None:
        part = self.parts.get(path)
        if part is not None:
            self._slot(path, part)
            for inner in self.parts:  # payloads in the replaced block's other fields: judged too
                if len(inner) > len(path) and inner[:len(path)] == path and inner not in self.used:
                    self._slot(inner, self.parts[inner])
        elif content is None:
            return
        elif isinstance(content, str):
            self._text(content)
        elif isinstance(content, Mapping):
            self.block(path, content)
        elif isinstance(content, (list, tuple)):
            for i, item in enumerate(content):
                self.content((*path, i), item)

    def _text(self, text: str) -> None:
        if text:
            self.turn.parts.append(text)

    def block(self, path: Path, block: Mapping[str, Any]) -> None:
        t = block.get("type")
        if not isinstance(t, str):  # unhashable or odd types: the extraction layer's call
            t = repr(t)
        if t in TEXT_TYPES:
            text = block.get("text")
            if isinstance(text, str):
                self._text(text)
            return
        if t == "non_standard" and isinstance(block.get("value"), Mapping):
            self.block((*path, "value"), block["value"])  # the extraction layer's path
            return
        inside = [p for p in self.parts if len(p) > len(path) and p[:len(path)] == path]
        if (t in IMAGE_TYPES or t in _UNSUPPORTED) and not inside:
            msg = (f"message {self.message} has a content block of type {t!r} that ChatLlava cannot "
                   "read; send text and image blocks only")
            raise ConfigurationError(msg)
        for key in ("content", "output"):  # tool results, function outputs: text and images
            if block.get(key) is not None:
                self.content((*path, key), block[key])
        source = block.get("source")  # a document whose source is content blocks
        if isinstance(source, Mapping) and source.get("type") == "content":
            self.content((*path, "source", "content"), source.get("content"))
        for p in inside:  # a part in any other field is shown too: never dropped unseen
            if p not in self.used:
                self._slot(p, self.parts[p])


def _clean(text: str, image_token: str | None) -> str:
    return text.replace(image_token, "") if image_token else text
