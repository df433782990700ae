"""Find every payload of a conversation: the one parser between message content and the guard.

Every surface (the LangChain Runnable and ``wrap``, ChatLlava, the RAG guard, the agent
middleware, LangGraph, LlamaIndex, NeMo Guardrails, the HTTP service, the LiteLLM
guardrail) goes through :func:`find_image_parts`, so they cannot disagree about what an
image is. It imports no framework: a message is a :class:`MessageView` (role, content,
extra fields), built from a LangChain message or a provider dict by the thin adapters.

The rule is *account for everything*, not *recognise the bad* (see docs/security.md):

1. **Everything a provider converter could send is walked**: every block at any depth,
   every field of every known block type (``document`` content sources, ``tool_result``,
   ``function_call_output`` output strings and lists, ``non_standard`` wrappers,
   ``video``/``audio``/``media``/``input_audio``/``input_file`` blocks, citations,
   reasoning, tool calls...), and the message's extra fields (``additional_kwargs``, a
   provider dict's other keys, Ollama's ``images``).
2. **Each payload is accounted for**: raw bytes, a base64 string that decodes to a binary
   format, a data URL, a URL, a file path or a provider file id outside text. It is a part
   to judge when it sniffs as a picture (whatever MIME type it declares) or is a PDF
   (judged through the guard's normal path); otherwise its part is **unreadable** (never
   forwarded; the default policy blocks it) with a reason naming the field, e.g.
   ``message 0, content/2/source/content/0: ...``. Plain UTF-8 text in a file block is text.
3. **Text stays text**: text blocks, tool-call arguments, names, ids, citations and
   provider signatures are never payloads — unless a whole string there is a picture or a
   PDF (a data URL or base64), which is judged.
4. **What is not known is unreadable**: an unknown block type, a block with more than one
   source, a value of an unknown Python type, content nested too deeply, audio and video
   payloads (judging video frames is a later feature), documents other than PDF.

:mod:`safeclip_guardrail.messages.forwarding` writes back, per part, one canonical block holding
exactly what was judged (a picture as an image block, a PDF as a file block, in the part's
own dialect), or a placeholder.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images.sources import ImageFetcher
from safeclip_guardrail.messages._finder import (
    CONTAINER_TYPES,
    FILE_TYPES,
    IMAGE_TYPES,
    MEDIA_TYPES,
    OTHER_TYPES,
    TEXT_TYPES,
    Finder,
)
from safeclip_guardrail.messages._parts import ImagePart, MessageView, Path, Style

__all__ = [
    "CONTAINER_TYPES",
    "FILE_TYPES",
    "IMAGE_TYPES",
    "MEDIA_TYPES",
    "OTHER_TYPES",
    "TEXT_TYPES",
    "ImagePart",
    "MessageView",
    "Path",
    "Style",
    "dict_of_view",
    "find_image_parts",
    "view_of_dict",
]


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


def find_image_parts(messages: Sequence[MessageView], *, options: ImageOptions,
                     skip_roles: Collection[str] = (),
                     fetcher: ImageFetcher | None = None) -> list[ImagePart]:
    """Every payload part of ``messages``, in order: pictures and PDFs to judge, and
    unreadable parts with their error. Text is not a part.

    ``skip_roles``: roles whose messages are not read at all (empty by default: every role
    is judged). Images in a skipped role reach the model unjudged, which is why skipping
    is opt-in and should only name roles your application alone writes.

    ``fetcher``: gets allowed http(s) image URLs (pass ``guard.fetcher``; None is the
    default HTTP fetcher). URLs ``options`` forbid never reach it.
    """
    if isinstance(skip_roles, str):
        msg = (f"skip_roles must be a collection of role names, got the string "
               f"{skip_roles!r}; write skip_roles=({skip_roles!r},)")
        raise ConfigurationError(msg)
    skip = {r.lower() for r in skip_roles}
    parts: list[ImagePart] = []
    for m, view in enumerate(messages):
        if view.role.lower() in skip:
            continue
        finder = Finder(m, options, fetcher)
        finder.content(("content",), view.content, 0)
        finder.extras(view.extras)
        parts.extend(finder.parts)
    return parts
