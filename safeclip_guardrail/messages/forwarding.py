"""Writing back what was judged: one canonical block per image part, or a placeholder.

The other half of :mod:`safeclip_guardrail.messages.extraction`: a part found there is replaced,
in the message it came from and in that block's own dialect (OpenAI, Responses, LangChain
v1, Anthropic, Gemini ``media``, a data-URL string, an extra field), by a block holding
exactly what the guard forwards (``Judgement.forward``: the judged picture, or a judged PDF
as a file block) and one source — or by a text placeholder when it is not forwarded.
Nothing else of the original block survives, so no second source can reach a provider.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from safeclip_guardrail.images.sources import EncodedImage, to_base64, to_data_url
from safeclip_guardrail.messages._payloads import PDF_MIME
from safeclip_guardrail.messages.extraction import TEXT_TYPES, MessageView, Style

__all__ = ["apply_parts", "canonical", "placeholder", "prepend_text", "value_at"]

_PLACEHOLDER_REMOVE = object()


def apply_parts(view: MessageView, replacements: Mapping[tuple[str | int, ...], Any]) -> MessageView:
    """A copy of ``view`` with each part at ``path`` replaced.

    A replacement is an :class:`EncodedImage` (the canonical block holding the judged
    bytes, in the part's style), or a ``str`` (a placeholder text in place of the part).
    The part's style travels with the replacement as ``(style, detail, value)``.
    """
    if not replacements:
        return view
    content = copy.copy(view.content) if not isinstance(view.content, list) else list(view.content)
    extras: dict[str, Any] = dict(view.extras)
    root: dict[str, Any] = {"content": content, "extras": extras}
    for path, value in replacements.items():
        if any(path[:k] in replacements for k in range(1, len(path))):
            continue  # inside a part replaced whole: its canonical block already dropped it
        _set(root, path, value)
    new_content = _prune(root["content"])
    new_extras = {k: _prune(v) for k, v in root["extras"].items()}
    return MessageView(view.role, new_content, new_extras)


def canonical(style: Style, image: EncodedImage, *, detail: str | None = None,
              original: Any = None) -> Any:
    """The one block that replaces a judged part: the judged bytes, one source.

    ``image`` is what the guard forwards (``Judgement.forward``): a picture becomes an image
    block in the part's dialect; a PDF (``mime_type="application/pdf"``) a file block. A
    part that was a string or a field value stays one, in the same form (data URL, base64
    or bytes). Nothing else of ``original`` survives but a PDF's plain-string filename.
    """
    if image.mime_type == PDF_MIME:
        return _document(style, image, original)
    if style == "openai":
        inner = {"url": to_data_url(image), **({"detail": detail} if detail else {})}
        return {"type": "image_url", "image_url": inner}
    if style == "responses":
        kind = ("computer_screenshot" if isinstance(original, Mapping)
                and original.get("type") == "computer_screenshot" else "input_image")
        return {"type": kind, "image_url": to_data_url(image),
                **({"detail": detail} if detail else {})}
    if style == "anthropic":
        return {"type": "image", "source": {"type": "base64", "media_type": image.mime_type,
                                            "data": to_base64(image)}}
    if style == "v1":
        return {"type": "image", "base64": to_base64(image), "mime_type": image.mime_type}
    if style == "media":
        return {"type": "media", "mime_type": image.mime_type, "data": to_base64(image)}
    return _same_form(style, image, original)


def _document(style: Style, image: EncodedImage, original: Any) -> Any:
    """A judged PDF as a file block in the part's dialect."""
    if style == "v1":
        return {"type": "file", "base64": to_base64(image), "mime_type": PDF_MIME}
    if style == "anthropic":
        return {"type": "document", "source": {"type": "base64", "media_type": PDF_MIME,
                                               "data": to_base64(image)}}
    if style == "media":
        return {"type": "media", "mime_type": PDF_MIME, "data": to_base64(image)}
    name = _filename(original)
    if style == "openai":
        return {"type": "file", "file": {"file_data": to_data_url(image), **name}}
    if style == "responses":
        return {"type": "input_file", "file_data": to_data_url(image), **name}
    return _same_form(style, image, original)


def _filename(original: Any) -> dict[str, str]:
    if not isinstance(original, Mapping):
        return {}
    inner = original.get("file")
    name = inner.get("filename") if isinstance(inner, Mapping) else original.get("filename")
    return {"filename": name} if isinstance(name, str) else {}


def _same_form(style: Style, image: EncodedImage, original: Any) -> Any:
    """A string or field value written back as it came: a data URL, base64, or bytes."""
    if style == "text_block":
        kind = original.get("type", "text") if isinstance(original, Mapping) else "text"
        text = original.get("text") if isinstance(original, Mapping) else None
        return {"type": kind, "text": _same_form("text", image, text)}
    if isinstance(original, (bytes, bytearray, memoryview)):
        return image.data
    if isinstance(original, str) and original.lstrip()[:5].lower() != "data:":
        return to_base64(image)
    return to_data_url(image)


def placeholder(style: Style, text: str, *, original: Any = None) -> Any:
    """What replaces a part that is not forwarded (flagged and redacted, or unreadable)."""
    if style == "raw":
        return _PLACEHOLDER_REMOVE  # an image field cannot hold text: the entry goes
    if style == "text":
        return text
    kind = "input_text" if style == "responses" else "text"
    return {"type": kind, "text": text}


def prepend_text(content: Any, text: str, *, responses_style: bool = False) -> Any:
    """``content`` with ``text`` prepended to its first text (idempotent: never twice)."""
    if content is None or isinstance(content, str):
        body = content or ""
        return body if body.startswith(text) else f"{text} {body}".rstrip()
    items = list(content)
    for i, item in enumerate(items):
        if isinstance(item, str):
            if item.startswith(text):
                return items
            items[i] = f"{text} {item}".rstrip()
            return items
        if isinstance(item, Mapping) and item.get("type") in TEXT_TYPES \
                and isinstance(item.get("text"), str) and not item["text"].lstrip().startswith("data:"):
            if item["text"].startswith(text):
                return items
            items[i] = {**item, "text": f"{text} {item['text']}".rstrip()}
            return items
    items.insert(0, {"type": "input_text" if responses_style else "text", "text": text})
    return items


def value_at(view: MessageView, path: tuple[str | int, ...]) -> Any:
    """The raw value of a part (for writing its replacement in the same shape)."""
    node: Any = {"content": view.content, "extras": view.extras}
    for key in path:
        node = node[key]
    return node


def _set(root: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Copy-on-write assignment of ``value`` at ``path`` (containers on the way are copied)."""
    node = root
    for key in path[:-1]:
        child = node[key]
        child = list(child) if isinstance(child, (list, tuple)) else dict(child)
        node[key] = child
        node = child
    node[path[-1]] = value


def _prune(value: Any) -> Any:
    """Drop entries marked for removal (image fields that cannot hold a placeholder)."""
    if isinstance(value, list):
        return [_prune(v) for v in value if v is not _PLACEHOLDER_REMOVE]
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not _PLACEHOLDER_REMOVE}
    return value
