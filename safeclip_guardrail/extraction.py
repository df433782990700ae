"""Find every image-bearing part of a conversation, and write back exactly what was judged.

This is the one parser between message content and the guard; every surface (the
LangChain Runnable and ``wrap``, ChatLlava, the RAG guard, the agent middleware, LangGraph,
LlamaIndex, NeMo Guardrails, the HTTP service, the LiteLLM guardrail) goes through it, so
they cannot disagree about what an image is. It imports no framework: a message is a
:class:`MessageView` (role, content, extra fields), built from a LangChain message or a
provider dict by the thin adapters.

Rules (the trust boundary, see docs/security.md):

1. **Find** images in every role and every known field: v1 ``image``/``file`` blocks
   (``base64``/``url``/``file_id``/``data``), OpenAI ``image_url`` (string or dict),
   ``input_image``/``input_file``, v0 ``source_type`` blocks, Anthropic ``source`` blocks,
   ``non_standard`` wrappers, nested ``content`` lists (tool results), file blocks whose
   bytes sniff as an image whatever their declared MIME type, image data URLs as plain
   string content or text, and image strings in extra fields (``additional_kwargs``,
   Ollama's ``images``).
2. A part with more than one source (``base64`` next to ``url``...), no readable source,
   a provider file id, a URL that may not be fetched, a path, or a block type we do not
   know is **unreadable**: it is never forwarded, whatever ``on_error`` says.
3. **Forward** (:mod:`safeclip_guardrail.forwarding`) one canonical block per judged part,
   holding the judged bytes and one source in the part's own dialect; every alternative
   field is dropped. Fetched URLs are forwarded inline (no second fetch by the provider).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from safeclip_guardrail._part_errors import conflict, file_id_error, located
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.sources import (
    EncodedImage,
    ImageFetcher,
    from_base64,
    from_bytes,
    from_untrusted_string,
    inline_bytes,
    sniff_format,
)

__all__ = [
    "FILE_TYPES",
    "IMAGE_TYPES",
    "TEXT_TYPES",
    "ImagePart",
    "MessageView",
    "Style",
    "dict_of_view",
    "find_image_parts",
    "view_of_dict",
]

Style = Literal["openai", "responses", "v1", "anthropic", "text", "text_block", "raw"]
"""How a part is written back: the dialect of the block it came from."""

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
IMAGE_TYPES = frozenset({"image", "image_url", "input_image"})
FILE_TYPES = frozenset({"file", "input_file", "document"})
KNOWN_OTHER_TYPES = frozenset({
    "text-plain", "reasoning", "thinking", "redacted_thinking", "tool_call", "tool_call_chunk",
    "invalid_tool_call", "tool_use", "server_tool_use", "tool_result", "server_tool_call",
    "server_tool_call_chunk", "server_tool_result", "citation", "non_standard_annotation",
    "audio", "input_audio", "video", "refusal", "search_result", "web_search_tool_result",
    "function_call", "function_call_output", "computer_call", "summary_text",
})
"""Block types that are not images; their inline data is still sniffed, nested content read."""

_SOURCE_KEYS = ("base64", "url", "data", "source", "file_id", "image_url", "file", "file_data")
_MAX_DEPTH = 8


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
    """One image-bearing part of a conversation."""

    message: int
    """Index of the message in the conversation."""
    path: tuple[str | int, ...]
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


# ---------------------------------------------------------------------- dict messages
def view_of_dict(message: Mapping[str, Any]) -> MessageView:
    """A provider dict message (OpenAI, Anthropic, Ollama, LiteLLM) as a view."""
    extras = {k: v for k, v in message.items() if k not in ("role", "content")}
    return MessageView(role=str(message.get("role", "user")).lower(),
                       content=message.get("content"), extras=extras)


def dict_of_view(original: Mapping[str, Any], view: MessageView) -> dict[str, Any]:
    """``original`` with the view's (guarded) content and extra fields."""
    out = {k: v for k, v in original.items() if k in ("role", "content")}
    if "content" in original or view.content is not None:
        out["content"] = view.content
    out.update(view.extras)
    return out


# ---------------------------------------------------------------------- finding
def find_image_parts(messages: Sequence[MessageView], *, options: ImageOptions,
                     skip_roles: Collection[str] = (),
                     fetcher: ImageFetcher | None = None) -> list[ImagePart]:
    """Every image-bearing part of ``messages``, in order (unreadable ones with their error).

    ``skip_roles``: roles whose messages are not read at all (empty by default: every role
    is judged). Images in a skipped role reach the model unjudged, which is why skipping
    is opt-in and should only name roles your application alone writes.

    ``fetcher``: gets allowed http(s) image URLs (pass ``guard.fetcher``; None is the
    default HTTP fetcher). URLs ``options`` forbid never reach it.
    """
    if isinstance(skip_roles, str):
        raise ConfigurationError(f"skip_roles must be a collection of role names, got the string "
                                 f"{skip_roles!r}; write skip_roles=({skip_roles!r},)")
    skip = {r.lower() for r in skip_roles}
    parts: list[ImagePart] = []
    for m, view in enumerate(messages):
        if view.role.lower() in skip:
            continue
        finder = _Finder(m, options, fetcher)
        finder.content(view.content)
        finder.extras(view.extras)
        parts.extend(finder.parts)
    return parts


class _Finder:
    def __init__(self, message: int, options: ImageOptions,
                 fetcher: ImageFetcher | None) -> None:
        self.message = message
        self.options = options
        self.fetcher = fetcher
        self.parts: list[ImagePart] = []

    # -- helpers
    def _add(self, path: tuple[str | int, ...], style: Style, image: EncodedImage | None,
             error: ImageInputError | None = None, detail: str | None = None) -> None:
        self.parts.append(ImagePart(self.message, path, style, image, error, detail))

    def _unreadable(self, path: tuple[str | int, ...], reason: str) -> None:
        where = "/".join(str(p) for p in path)
        self._add(path, "text_block", None, ImageInputError(
            f"message {self.message}, {where}: {reason}", source=f"<message {self.message} {where}>"))

    # -- content
    def content(self, content: Any) -> None:
        if content is None:
            return
        if isinstance(content, str):
            self._string(("content",), content, style="text")
        elif isinstance(content, Mapping):
            self.block(("content",), content, 0)
        elif isinstance(content, (list, tuple)):
            self.items(("content",), content, 0)
        else:
            self._unreadable(("content",), f"content of type {type(content).__name__} cannot be "
                             "checked; send a string or a list of content blocks")

    def items(self, path: tuple[str | int, ...], items: Sequence[Any], depth: int) -> None:
        for i, item in enumerate(items):
            here = (*path, i)
            if isinstance(item, str):
                self._string(here, item, style="text")
            elif isinstance(item, Mapping):
                self.block(here, item, depth)
            else:
                self._unreadable(here, f"content item of type {type(item).__name__} is not a "
                                 "string or a content block; it cannot be checked")

    def _string(self, path: tuple[str | int, ...], text: str, *, style: Style) -> None:
        """Text that is, as a whole, an image data URL is an image."""
        head = text.lstrip()[:64].lower()
        if not head.startswith("data:"):
            return
        mime = head[5:].split(";", 1)[0].split(",", 1)[0].strip()
        if mime.startswith("image/"):
            self._read(path, style, text)
            return
        data = inline_bytes(text)
        if data is not None and sniff_format(data) is not None:
            self._add(path, style, EncodedImage(data, f"<data URL, {len(text)} chars>"))

    def _read(self, path: tuple[str | int, ...], style: Style, value: Any,
              detail: str | None = None) -> None:
        try:
            image = from_untrusted_string(value, options=self.options, fetcher=self.fetcher)
        except ImageInputError as exc:
            self._add(path, style, None, located(exc, self.message, path), detail)
            return
        self._add(path, style, image, None, detail)

    # -- blocks
    def block(self, path: tuple[str | int, ...], block: Mapping[str, Any], depth: int) -> None:
        if depth > _MAX_DEPTH:
            self._unreadable(path, "content blocks nested too deeply to check")
            return
        t = block.get("type")
        if t is not None and not isinstance(t, str):
            self._unreadable(path, f"a content block whose type is a {type(t).__name__}, not a "
                             "string, cannot be checked; send standard text and image blocks")
            return
        if t in TEXT_TYPES:
            text = block.get("text")
            if isinstance(text, str):
                self._string(path, text, style="text_block")
            return
        if t == "non_standard":
            inner = block.get("value")
            if isinstance(inner, Mapping):
                self.block(path, inner, depth + 1)  # replaced whole: the wrapper is dropped
            else:
                self._unreadable(path, "a non_standard block whose value is not a block")
            return
        if t in IMAGE_TYPES:
            self._image_block(path, block)
            return
        if t in FILE_TYPES:
            self._file_block(path, block)
        elif t in KNOWN_OTHER_TYPES:
            self._sniff_other(path, block)
        else:
            shown = repr(t) if t is not None else "(none)"
            self._unreadable(path, f"a content block of unknown type {shown} may hold an image "
                             "that cannot be checked; send standard text and image blocks")
            return
        nested = block.get("content")
        if isinstance(nested, (list, tuple)):
            self.items((*path, "content"), nested, depth + 1)
        elif isinstance(nested, Mapping):
            self.block((*path, "content"), nested, depth + 1)
        elif isinstance(nested, str):  # a tool result's string content may be a data URL
            self._string((*path, "content"), nested, style="text")

    def _image_block(self, path: tuple[str | int, ...], block: Mapping[str, Any]) -> None:
        t = block.get("type")
        present = _present_sources(block)
        style: Style = ("openai" if t == "image_url" else "responses" if t == "input_image"
                        else "anthropic" if "source" in present else "v1")
        detail = _detail(block)
        if len(present) != 1:
            self._add(path, style, None, conflict(self.message, path, present), detail)
            return
        key = present[0]
        value = block[key]
        if key == "image_url":
            value = value.get("url") if isinstance(value, Mapping) else value
            if isinstance(value, Mapping) or not isinstance(value, str):
                self._unreadable(path, "image_url must be a string or {'url': string}")
                return
            self._read(path, style, value, detail)
        elif key == "source":
            self._anthropic_source(path, style, value)
        elif key in ("base64", "data"):
            self._base64(path, style, value, detail)
        elif key == "url":
            self._read(path, style, value, detail)
        else:  # file_id / file / file_data
            self._add(path, style, None, file_id_error(self.message, path), detail)

    def _anthropic_source(self, path: tuple[str | int, ...], style: Style, source: Any) -> None:
        if not isinstance(source, Mapping):
            self._unreadable(path, "'source' must be an object with type base64 or url")
            return
        kind = source.get("type")
        srcs = [k for k in ("data", "url", "file_id") if source.get(k)]
        if len(srcs) != 1:
            self._add(path, style, None, conflict(self.message, path, [f"source.{k}" for k in srcs]))
        elif kind == "base64" and srcs == ["data"]:
            self._base64(path, style, source["data"])
        elif kind == "url" and srcs == ["url"]:
            self._read(path, style, source["url"])
        else:
            self._add(path, style, None, file_id_error(self.message, path))

    def _base64(self, path: tuple[str | int, ...], style: Style, value: Any,
                detail: str | None = None) -> None:
        if not isinstance(value, str) or not value.strip():
            self._unreadable(path, "image block has an empty or non-string base64 payload")
            return
        if value.lstrip()[:5].lower() == "data:":
            self._read(path, style, value, detail)
            return
        try:
            image = from_base64(value, options=self.options)
        except ImageInputError as exc:
            self._add(path, style, None, located(exc, self.message, path), detail)
            return
        self._add(path, style, image, None, detail)

    def _file_block(self, path: tuple[str | int, ...], block: Mapping[str, Any]) -> None:
        """A file is an image when its bytes are, whatever MIME type it declares."""
        t = block.get("type")
        style: Style = ("openai" if isinstance(block.get("file"), Mapping) else
                        "responses" if t == "input_file" else
                        "anthropic" if t == "document" else "v1")
        present = _present_sources(block)
        inner = block.get("file")
        if isinstance(inner, Mapping):
            present = [k for k in present if k != "file"] + [
                f"file.{k}" for k in ("file_data", "file_id", "url") if inner.get(k)]
        if len(present) != 1:
            self._add(path, style, None, conflict(self.message, path, present))
            return
        key = present[0]
        raw = (inner[key[5:]] if key.startswith("file.") and isinstance(inner, Mapping)
               else block.get(key))
        if key == "source" and isinstance(raw, Mapping):
            if raw.get("type") in ("text", "content"):
                return  # a plain-text document: no image bytes
            raw = raw.get("data") if raw.get("type") == "base64" else None
            if raw is None:
                self._add(path, style, None, file_id_error(self.message, path))
                return
        data = inline_bytes(raw) if isinstance(raw, str) and key not in ("url", "file.url") else None
        if data is None:
            # bytes we cannot see (a URL, a provider file id): we cannot tell it is no image
            self._add(path, style, None, ImageInputError(
                f"message {self.message}, {'/'.join(map(str, path))}: a file block whose bytes are "
                "not inline cannot be checked for images; send the file inline (base64)",
                source=f"<message {self.message} file>"))
            return
        if sniff_format(data) is not None:
            self._add(path, style, EncodedImage(data, f"<file block, {len(data)} bytes>"))

    def _sniff_other(self, path: tuple[str | int, ...], block: Mapping[str, Any]) -> None:
        """Audio, video and other non-image blocks: inline bytes that are an image are judged."""
        for key in ("base64", "data"):
            raw = block.get(key)
            if isinstance(raw, str):
                data = inline_bytes(raw)
                if data is not None and sniff_format(data) is not None:
                    style: Style = "anthropic" if "source" in block else "v1"
                    self._add(path, style, EncodedImage(data, f"<{block.get('type')} block>"))
                    return

    # -- extra fields
    def extras(self, extras: Mapping[str, Any]) -> None:
        for key, value in extras.items():
            self._extra(("extras", str(key)), value, 0, images_key=str(key) == "images")

    def _extra(self, path: tuple[str | int, ...], value: Any, depth: int, *,
               images_key: bool = False) -> None:
        if depth > _MAX_DEPTH:
            if isinstance(value, (Mapping, list, tuple, str, bytes, bytearray)) and value:
                self._unreadable(path, "an extra field nested too deeply to check for images")
            return
        if isinstance(value, (bytes, bytearray)):  # raw bytes (the Ollama client accepts them)
            if value and (images_key or sniff_format(bytes(value)) is not None):
                try:
                    image = from_bytes(value, source=f"<{path[1]} field, {len(value)} bytes>",
                                       options=self.options)
                except ImageInputError as exc:
                    self._add(path, "raw", None, located(exc, self.message, path))
                    return
                self._add(path, "raw", image)
            return
        if isinstance(value, str):
            if images_key:  # Ollama-style: every entry is an image
                self._read(path, "raw", value)
                return
            data = inline_bytes(value) if len(value) >= 32 else None
            if data is not None and sniff_format(data) is not None:
                self._add(path, "raw", EncodedImage(data, f"<{path[1]} field>"))
        elif isinstance(value, Mapping):
            if value.get("type") in IMAGE_TYPES | FILE_TYPES:
                self.block(path, value, depth + 1)
                return
            for k, v in value.items():
                self._extra((*path, str(k)), v, depth + 1, images_key=str(k) == "images")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self._extra((*path, i), v, depth + 1, images_key=images_key)


# ---------------------------------------------------------------------- helpers
def _present_sources(block: Mapping[str, Any]) -> list[str]:
    present = [k for k in _SOURCE_KEYS if k in block and block[k] not in (None, "", {}, [])]
    if block.get("source_type") == "id" and block.get("id"):
        present.append("id")
    return present


def _detail(block: Mapping[str, Any]) -> str | None:
    inner = block.get("image_url")
    detail = inner.get("detail") if isinstance(inner, Mapping) else block.get("detail")
    return detail if isinstance(detail, str) and detail in {"auto", "low", "high"} else None
