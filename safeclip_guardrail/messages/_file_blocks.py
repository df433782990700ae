"""File, document and media blocks: one payload each, judged or unreadable (private).

Part of the extraction walk (:mod:`safeclip_guardrail.messages._finder`). A file block whose bytes
are a picture or a PDF is a part, replaced whole by a canonical block; one holding plain
UTF-8 text is kept (its other fields are still walked); anything else — another document
type, audio, video, a URL or a provider file id — is unreadable. An Anthropic ``document``
whose source is ``content`` or ``text`` is kept and its content read like any other.
A video or audio block is judged only when its payload is a picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.messages._part_errors import conflict, file_id_error
from safeclip_guardrail.messages._parts import Path, Style
from safeclip_guardrail.messages._payloads import Mode, Payload, classify_inline

__all__ = ["Walker", "present_sources", "read_file_block", "read_media_block", "walk_rest"]

_SOURCE_KEYS = ("base64", "url", "data", "source", "file_id", "image_url", "file", "file_data",
                "file_url", "file_uri", "input_audio")
_REFERENCES = frozenset({"file_id", "file.file_id", "id", "file_uri"})
_URLS = frozenset({"url", "file.url", "file_url", "file.file_url", "image_url"})
_INNER_SOURCES = frozenset({"url", "data", "file_data", "file_id", "file_url", "content", "base64"})
"""Payload keys inside a source object (``source``, ``file``, ``image_url``, ``input_audio``)."""


class Walker(Protocol):
    """What these readers need of the walk (:class:`~safeclip_guardrail.messages._finder.Finder`)."""

    message: int
    options: ImageOptions

    def add(self, path: Path, style: Style, image: EncodedImage | None,
            error: ImageInputError | None = None, detail: str | None = None) -> None: ...

    def unreadable(self, path: Path, reason: str, *, style: Style = "text_block",
                   field: str | None = None) -> None: ...

    def payload(self, path: Path, style: Style, found: Payload, *, field: str | None = None,
                detail: str | None = None) -> bool: ...

    def content(self, path: Path, value: Any, depth: int) -> None: ...

    def fields(self, path: Path, mapping: Mapping[str, Any], depth: int, *, skip: set[str],
               block_type: str | None = None) -> None: ...

    def value(self, path: Path, value: Any, depth: int, *, mode: Mode) -> None: ...


def present_sources(block: Mapping[str, Any]) -> list[str]:
    """The source fields a block carries (a v0 ``source_type: id`` block's ``id`` included)."""
    present = [k for k in _SOURCE_KEYS if k in block and block[k] not in (None, "", {}, [])]
    if block.get("source_type") == "id" and block.get("id"):
        present.append("id")
    return present


def walk_rest(w: Walker, path: Path, block: Mapping[str, Any], depth: int) -> None:
    """The other fields of a block replaced whole (and of its source object), walked all the
    same: a canonical block drops them, but a service that lets the original request through
    (LiteLLM's guardrail API answers NONE or BLOCKED) sends them, so each is accounted for."""
    present = {k.split(".")[0] for k in present_sources(block)}
    for key in present:
        inner = block.get(key)
        if isinstance(inner, Mapping):
            w.fields((*path, key), inner, depth + 1, skip=set(_INNER_SOURCES))
    w.fields(path, block, depth, skip=present, block_type=str(block.get("type")))


def read_file_block(w: Walker, path: Path, block: Mapping[str, Any], depth: int) -> bool:
    """A file is judged when its bytes are a picture or a PDF, whatever MIME type it declares.
    True when the block is a part (replaced whole); a kept block's fields are walked here."""
    t = str(block.get("type"))
    inner = block.get("file")
    style: Style = ("openai" if isinstance(inner, Mapping) else
                    "responses" if t == "input_file" else
                    "anthropic" if t == "document" else "v1")
    present = present_sources(block)
    if isinstance(inner, Mapping):
        present = [k for k in present if k != "file"] + [
            f"file.{k}" for k in ("file_data", "file_id", "url", "file_url") if inner.get(k)]
    if not present and isinstance(block.get("text"), str):  # text-plain, a v0 text file
        w.fields(path, block, depth, skip=set(), block_type=t)  # text, in a text field
        return False
    if len(present) != 1:
        w.add(path, style, None, conflict(w.message, path, present, what=f"a {t} block"))
        return True
    key = present[0]
    value = inner.get(key[5:]) if key.startswith("file.") and isinstance(inner, Mapping) \
        else block.get(key)
    if key == "source":
        return _document_source(w, path, style, block, depth)
    if key in _REFERENCES or key == "file":
        w.add(path, style, None, file_id_error(w.message, path))
        return True
    if key in _URLS and not _is_data_url(value):
        w.unreadable(path, "a file block whose bytes are not inline cannot be checked for "
                     "images; send the file inline (base64)", field=key)
        return True
    found = classify_inline(value, options=w.options)
    if found.kind == "text":  # a plain-text file: kept, its other fields walked
        walk_rest(w, path, block, depth)
        return False
    return w.payload(path, style, found, field=key)


def _document_source(w: Walker, path: Path, style: Style, block: Mapping[str, Any],
                     depth: int) -> bool:
    """Anthropic's ``source``: base64 (a PDF or a picture), text, content blocks, url, file."""
    source = block["source"]
    if not isinstance(source, Mapping):
        w.unreadable(path, "'source' must be an object with a type", field="source")
        return True
    kind = source.get("type")
    srcs = [k for k in ("data", "url", "file_id", "content")
            if source.get(k) not in (None, "", [], {})]
    if len(srcs) != 1:
        w.add(path, style, None, conflict(w.message, path, [f"source.{k}" for k in srcs],
                                          what=f"a {block.get('type')} block"))
        return True
    here = (*path, "source")
    if kind == "content" and srcs == ["content"]:
        w.content((*here, "content"), source["content"], depth + 2)
        w.fields(here, source, depth + 1, skip={"content"})
    elif kind == "text" and srcs == ["data"]:
        w.value((*here, "data"), source["data"], depth + 2, mode="text")
        w.fields(here, source, depth + 1, skip={"data"})
    elif kind == "base64" and srcs == ["data"]:
        found = classify_inline(source["data"], options=w.options)
        if found.kind != "text":
            return w.payload(path, style, found, field="source.data")
        w.fields(here, source, depth + 1, skip={"data"})
    elif kind == "url" and srcs == ["url"] and not _is_data_url(source["url"]):
        w.unreadable(path, "a document URL is not fetched here, so it cannot be checked for "
                     "images; send the document inline (base64)", field="source.url")
        return True
    elif kind == "file" or srcs == ["file_id"]:
        w.add(path, style, None, file_id_error(w.message, path))
        return True
    else:
        w.unreadable(path, f"a document source of type {kind!r} cannot be checked; send type "
                     "base64, text or content", field="source")
        return True
    w.fields(path, block, depth, skip={"source"}, block_type=str(block.get("type")))
    return False


def read_media_block(w: Walker, path: Path, block: Mapping[str, Any]) -> None:
    """Video, audio, ``input_audio`` and Gemini ``media`` blocks: a picture in them is
    judged as one; a real video or audio payload is unreadable (see docs/security.md)."""
    t = str(block.get("type"))
    present = present_sources(block)
    style: Style = ("openai" if t == "input_audio" else "media" if t == "media" else
                    "anthropic" if present == ["source"] else "v1")
    if len(present) != 1:
        w.add(path, style, None, conflict(w.message, path, present, what=f"a {t} block"))
        return
    key = present[0]
    value: Any = block[key]
    if key in ("input_audio", "source"):
        if not isinstance(value, Mapping):
            w.unreadable(path, f"'{key}' must be an object", field=key)
            return
        kind = value.get("type")
        if key == "source" and (kind == "file" or value.get("file_id")):
            key = "file_id"
        elif key == "source" and kind == "url":
            key, value = "url", value.get("url")
        else:
            key, value = f"{key}.data", value.get("data")
    if key in _REFERENCES:
        w.add(path, style, None, file_id_error(w.message, path))
        return
    if key in _URLS and not _is_data_url(value):
        w.unreadable(path, f"a {t} URL is not fetched here, so it cannot be checked; send the "
                     "payload inline (base64)", field=key)
        return
    found = classify_inline(value, options=w.options)
    if found.kind == "text":
        found = Payload("unreadable", reason=f"a {t} block whose payload is text cannot be checked")
    elif found.kind == "unreadable" and not found.recognized:
        found = Payload("unreadable", reason=f"the {t} block's payload: {found.reason}")
    w.payload(path, style, found, field=key)


def _is_data_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip()[:5].lower() == "data:"
