"""The walk behind :func:`safeclip_guardrail.messages.extraction.find_image_parts` (private).

Every block at any depth and every field of every block and extra field is visited; each
payload becomes an :class:`~safeclip_guardrail.messages._parts.ImagePart` (a picture or a PDF to
judge, or an unreadable part with the reason and the field) or is text. A block is either
replaced whole (an image, file or media block: its one payload, judged, written back as one
canonical block) or kept; either way every other field of it is walked too (a gateway that
lets the original request through sends them). What the walk does not know is unreadable:
an unknown block type, a value of an unknown Python type, content nested too deeply.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images.sources import (
    EncodedImage,
    ImageFetcher,
    from_base64,
    from_bytes,
    from_untrusted_string,
)
from safeclip_guardrail.messages._file_blocks import (
    present_sources,
    read_file_block,
    read_media_block,
    walk_rest,
)
from safeclip_guardrail.messages._part_errors import conflict, file_id_error, located, where
from safeclip_guardrail.messages._parts import ImagePart, Path, Style
from safeclip_guardrail.messages._payloads import Mode, Payload, classify_bytes, classify_string

__all__ = [
    "CONTAINER_TYPES",
    "FILE_TYPES",
    "IMAGE_TYPES",
    "MEDIA_TYPES",
    "OTHER_TYPES",
    "TEXT_KEYS",
    "TEXT_TYPES",
    "Finder",
    "field_mode",
]

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
IMAGE_TYPES = frozenset({"image", "image_url", "input_image", "computer_screenshot"})
FILE_TYPES = frozenset({"file", "input_file", "document", "text-plain"})
MEDIA_TYPES = frozenset({"audio", "input_audio", "video", "media"})
"""Blocks a provider plays or shows: a picture in them is judged, audio or video is not."""
CONTAINER_TYPES: Mapping[str, tuple[str, ...]] = {
    "tool_result": ("content",), "function_call_output": ("output",),
    "computer_call_output": ("output",), "search_result": ("content",),
    "mcp_tool_result": ("content",), "web_search_tool_result": ("content",),
}
"""Blocks that nest content (blocks or a string) in these fields; every other field walked."""
OTHER_TYPES = frozenset({
    "reasoning", "thinking", "redacted_thinking", "tool_call", "tool_call_chunk",
    "invalid_tool_call", "tool_use", "server_tool_use", "server_tool_call",
    "server_tool_call_chunk", "server_tool_result", "citation", "non_standard_annotation",
    "refusal", "function_call", "computer_call", "summary_text", "web_search_result",
    "web_search_tool_result_error",
})
"""Known blocks without a payload of their own; every field is still walked."""

TEXT_KEYS = frozenset({
    "type", "id", "name", "role", "text", "title", "context", "tool_use_id", "tool_call_id",
    "call_id", "arguments", "args", "input", "partial_json", "status", "thinking",
    "reasoning", "reasoning_content", "refusal", "transcript", "cited_text", "citations",
    "annotations", "error", "filename", "detail", "format", "mime_type", "media_type",
})
"""Fields whose strings are text (names, ids, tool-call arguments, citations): a whole
string there that is a picture or a PDF is judged, one that is another document or media
file is unreadable, anything else is text. A field whose name holds ``signature`` or starts
with ``encrypted`` is an opaque provider token: only a whole picture or PDF counts."""
_TYPE_KEYS: Mapping[str, Mapping[str, Mode]] = {
    "redacted_thinking": {"data": "opaque"}, "citation": {"url": "text"},
    "web_search_result": {"url": "text"}, "search_result": {"source": "text"},
}
"""Fields that are text (or opaque) in one block type only."""
_REFERENCE_KEYS = frozenset({"fileid", "fileids", "fileuri", "fileurl", "imagefile", "gcsuri"})
"""Provider file references (normalised: lower case, no ``_``): never readable here."""
_SCALARS = (bool, int, float, decimal.Decimal, datetime.date, datetime.time,
            datetime.timedelta, uuid.UUID, enum.Enum)
_MAX_DEPTH = 32


def field_mode(key: str, parent: Mode = "payload", own: Mapping[str, Mode] | None = None) -> Mode:
    """The kind of field ``key`` is, under a field of kind ``parent`` (``own``: the block
    type's own text fields)."""
    low = key.lower()
    if own and key in own:
        return own[key]
    if "signature" in low or low.startswith("encrypted"):
        return "opaque"
    if parent != "payload" or low in TEXT_KEYS:
        return parent if parent != "payload" else "text"
    return "payload"


class Finder:
    """Finds the parts of one message; read ``parts`` after :meth:`content` and :meth:`extras`."""

    def __init__(self, message: int, options: ImageOptions,
                 fetcher: ImageFetcher | None) -> None:
        self.message = message
        self.options = options
        self.fetcher = fetcher
        self.parts: list[ImagePart] = []

    # -- recording parts
    def add(self, path: Path, style: Style, image: EncodedImage | None,
            error: ImageInputError | None = None, detail: str | None = None) -> None:
        self.parts.append(ImagePart(self.message, path, style, image, error, detail))

    def unreadable(self, path: Path, reason: str, *, style: Style = "text_block",
                   field: str | None = None) -> None:
        here = where(path) + (f" ({field})" if field else "")
        self.add(path, style, None, ImageInputError(
            f"message {self.message}, {here}: {reason}", source=f"<message {self.message} {here}>"))

    def payload(self, path: Path, style: Style, found: Payload, *, field: str | None = None,
                detail: str | None = None) -> bool:
        """Record a picture, PDF or unreadable payload; False when it is text."""
        if found.kind == "text":
            return False
        if found.image is not None:
            self.add(path, style, found.image, None, detail)
        else:
            self.unreadable(path, found.reason, style=style, field=field)
        return True

    def read(self, path: Path, style: Style, value: Any, detail: str | None = None) -> None:
        """An image source string: data URL, base64 or (when allowed) an http(s) URL."""
        try:
            image = from_untrusted_string(value, options=self.options, fetcher=self.fetcher)
        except ImageInputError as exc:
            self.add(path, style, None, located(exc, self.message, path), detail)
            return
        self.add(path, style, image, None, detail)

    # -- content positions
    def content(self, path: Path, value: Any, depth: int) -> None:
        if value is None:
            return
        if isinstance(value, str):
            self.payload(path, "text", classify_string(value, mode="text", options=self.options))
        elif isinstance(value, Mapping):
            self.block(path, value, depth)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, (str, Mapping)):
                    self.content((*path, i), item, depth)
                else:
                    self.unreadable((*path, i), f"content item of type {type(item).__name__} "
                                    "is not a string or a content block; it cannot be checked")
        else:
            self.unreadable(path, f"content of type {type(value).__name__} cannot be checked; "
                            "send a string or a list of content blocks")

    def block(self, path: Path, block: Mapping[str, Any], depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.unreadable(path, "content blocks nested too deeply to check")
            return
        t = block.get("type")
        if t is not None and not isinstance(t, str):
            self.unreadable(path, f"a content block whose type is a {type(t).__name__}, not a "
                            "string, cannot be checked; send standard text and image blocks")
            return
        if t in TEXT_TYPES:
            text = block.get("text")
            if isinstance(text, str):
                self.payload(path, "text_block", classify_string(text, mode="text",
                                                                 options=self.options))
            self.fields(path, block, depth, skip={"text"} if isinstance(text, str) else set(),
                        block_type=t)
        elif t == "non_standard":
            self._non_standard(path, block, depth)
        elif t in IMAGE_TYPES:
            self._image_block(path, block)
            walk_rest(self, path, block, depth)
        elif t in FILE_TYPES:
            if read_file_block(self, path, block, depth):
                walk_rest(self, path, block, depth)
        elif t in MEDIA_TYPES:
            read_media_block(self, path, block)
            walk_rest(self, path, block, depth)
        elif t is not None and t in CONTAINER_TYPES:
            keys = CONTAINER_TYPES[t]
            for key in keys:
                self.content((*path, key), block.get(key), depth + 1)
            self.fields(path, block, depth, skip=set(keys), block_type=t)
        elif t in OTHER_TYPES:
            self.fields(path, block, depth, skip=set(), block_type=t)
        else:
            shown = repr(t) if t is not None else "(none)"
            self.unreadable(path, f"a content block of unknown type {shown} may hold an image "
                            "that cannot be checked; send standard text and image blocks")

    def _non_standard(self, path: Path, block: Mapping[str, Any], depth: int) -> None:
        inner = block.get("value")
        if not isinstance(inner, Mapping):
            self.unreadable(path, "a non_standard block whose value is not a block")
            return
        first = len(self.parts)
        self.block((*path, "value"), inner, depth + 1)
        inner_path = (*path, "value")
        for i in range(first, len(self.parts)):
            if self.parts[i].path == inner_path:  # the inner block is replaced: the wrapper goes
                self.parts[i] = dataclasses.replace(self.parts[i], path=path)
        self.fields(path, block, depth, skip={"value"}, block_type="non_standard")

    # -- image blocks: one source, replaced whole
    def _image_block(self, path: Path, block: Mapping[str, Any]) -> None:
        t = block.get("type")
        present = present_sources(block)
        style: Style = ("openai" if t == "image_url" else
                        "responses" if t in ("input_image", "computer_screenshot") else
                        "anthropic" if "source" in present else "v1")
        detail = _detail(block)
        if len(present) != 1:
            self.add(path, style, None, conflict(self.message, path, present), detail)
            return
        key = present[0]
        value = block[key]
        if key == "image_url":
            value = value.get("url") if isinstance(value, Mapping) else value
            if not isinstance(value, str):
                self.unreadable(path, "image_url must be a string or {'url': string}")
                return
            self.read(path, style, value, detail)
        elif key == "source":
            self._image_source(path, style, value)
        elif key in ("base64", "data"):
            self._base64(path, style, value, detail)
        elif key == "url":
            self.read(path, style, value, detail)
        else:  # file_id / file / file_data / a v0 id
            self.add(path, style, None, file_id_error(self.message, path), detail)

    def _image_source(self, path: Path, style: Style, source: Any) -> None:
        if not isinstance(source, Mapping):
            self.unreadable(path, "'source' must be an object with type base64 or url")
            return
        kind = source.get("type")
        srcs = [k for k in ("data", "url", "file_id", "content") if source.get(k)]
        if len(srcs) != 1:
            self.add(path, style, None, conflict(self.message, path, [f"source.{k}" for k in srcs]))
        elif kind == "base64" and srcs == ["data"]:
            self._base64(path, style, source["data"])
        elif kind == "url" and srcs == ["url"]:
            self.read(path, style, source["url"])
        elif kind == "file" or srcs == ["file_id"]:
            self.add(path, style, None, file_id_error(self.message, path))
        else:
            self.unreadable(path, f"an image source of type {kind!r} cannot be checked; send "
                            "type base64 or url", field="source")

    def _base64(self, path: Path, style: Style, value: Any, detail: str | None = None) -> None:
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
            try:
                self.add(path, style, from_bytes(value, options=self.options), None, detail)
            except ImageInputError as exc:
                self.add(path, style, None, located(exc, self.message, path), detail)
            return
        if not isinstance(value, str) or not value.strip():
            self.unreadable(path, "image block has an empty or non-string base64 payload")
            return
        if value.lstrip()[:5].lower() == "data:":
            self.read(path, style, value, detail)
            return
        try:
            image = from_base64(value, options=self.options)
        except ImageInputError as exc:
            self.add(path, style, None, located(exc, self.message, path), detail)
            return
        self.add(path, style, image, None, detail)

    # -- every other field: deny by default
    def fields(self, path: Path, mapping: Mapping[str, Any], depth: int, *, skip: set[str],
               block_type: str | None = None) -> None:
        """Walk a kept block's fields (``skip``: those already read)."""
        own = _TYPE_KEYS.get(block_type or "")
        for key, value in mapping.items():
            k = str(key)
            if k in skip:
                continue
            self.value((*path, k), value, depth + 1, mode=field_mode(k, own=own))

    def value(self, path: Path, value: Any, depth: int, *, mode: Mode) -> None:
        """Any value, in a field of kind ``mode`` (payload, text, opaque token)."""
        if value is None or isinstance(value, _SCALARS):
            return
        style: Style = "raw" if mode == "payload" else "text"
        if depth > _MAX_DEPTH:
            if isinstance(value, (Mapping, list, tuple, str, bytes, bytearray)) and value:
                self.unreadable(path, "a field nested too deeply to check for images",
                                style=style)
            return
        if isinstance(value, str):
            self.payload(path, style, classify_string(value, mode=mode, options=self.options))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            if len(value):
                data = bytes(value)
                self.payload(path, style, classify_bytes(data, source=f"<{len(data)} bytes>"))
        elif isinstance(value, Mapping):
            self._mapping(path, value, depth, mode=mode)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.value((*path, i), item, depth + 1, mode=mode)
        elif hasattr(value, "model_dump") and callable(value.model_dump):
            self.value(path, value.model_dump(), depth + 1, mode=mode)  # a pydantic model
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            self.value(path, dataclasses.asdict(value), depth + 1, mode=mode)
        else:
            self.unreadable(path, f"a value of type {type(value).__name__} cannot be checked "
                            "for images; send JSON values", style=style)

    def _mapping(self, path: Path, value: Mapping[str, Any], depth: int, *, mode: Mode) -> None:
        text = mode != "payload"
        t = value.get("type")
        if not text and isinstance(t, str) and t in IMAGE_TYPES | FILE_TYPES | MEDIA_TYPES:
            self.block(path, value, depth)  # a typed block in a payload field: read as one
            return
        for key, item in value.items():
            k = str(key)
            here = (*path, k)
            if not text and k.lower().replace("_", "") in _REFERENCE_KEYS and item:
                self.unreadable(here, f"a provider file reference in field {k!r} cannot be "
                                "checked; send the content inline", style="raw")
            elif not text and k == "images" and isinstance(item, (list, tuple)):
                self.images(here, item)
            else:
                self.value(here, item, depth + 1, mode=field_mode(k, mode))

    # -- extra fields
    def extras(self, extras: Mapping[str, Any]) -> None:
        self._mapping(("extras",), extras, 0, mode="payload")

    def images(self, path: Path, entries: Sequence[Any]) -> None:
        """Ollama-style ``images``: every entry is an image (bytes, base64 or a data URL)."""
        for i, entry in enumerate(entries):
            here = (*path, i)
            if isinstance(entry, (bytes, bytearray, memoryview)):
                try:
                    image = from_bytes(entry, source=f"<images field, {len(entry)} bytes>",
                                       options=self.options)
                except ImageInputError as exc:
                    self.add(here, "raw", None, located(exc, self.message, here))
                    continue
                self.add(here, "raw", image)
            elif isinstance(entry, str):
                self.read(here, "raw", entry)
            else:
                self.value(here, entry, 1, mode="payload")


# ---------------------------------------------------------------------- helpers
def _detail(block: Mapping[str, Any]) -> str | None:
    inner = block.get("image_url")
    detail = inner.get("detail") if isinstance(inner, Mapping) else block.get("detail")
    return detail if isinstance(detail, str) and detail in {"auto", "low", "high"} else None
