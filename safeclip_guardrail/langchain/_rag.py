"""Guarding retrieved documents that carry images (multimodal RAG).

A retriever can hand the model an image nobody checked: a toxic picture indexed from a
crawl, a poisoned upload. :class:`SafeCLIPDocumentGuard` sits between the retriever and
the prompt, as a Runnable over ``list[Document]``::

    chain = retriever | SafeCLIPDocumentGuard(guard=guard) | build_prompt | llm

or as a ``BaseDocumentCompressor`` (e.g. inside a ``ContextualCompressionRetriever``).

**Where images are read, and who may name a path.** A document carries an image under
each of ``image_keys`` present in its metadata, and as its ``page_content`` when that is an
image data URL (found by the same extraction layer as chat messages). Metadata keys are
set by *your ingestion pipeline*, so the keys in ``path_keys`` (default ``image_path``) may
hold a file path (a ``str`` or ``PathLike``), read with
:func:`~safeclip_guardrail.images.sources.from_path`. Every other key, and ``page_content``, is
treated as untrusted content (a crawled page, an upload): a string there is only a data
URL, base64 or an http(s) URL (fetched only when ``ImageOptions.allow_urls``) — never a path.
Bytes, an :class:`~safeclip_guardrail.images.sources.EncodedImage` or a PIL image are taken as is.

**Policy** — the one of :mod:`safeclip_guardrail.policy`, as on every other surface.
``action`` plays the role of ``GuardConfig.mode`` for documents (``drop`` = ``block``,
``redact`` = ``redact``, ``annotate`` = ``annotate``); the guard config's per-class
``policy`` and ``on_error`` (or this guard's ``on_error``) apply as everywhere. Each image
gets a verdict, ``policy.action_for`` an action, and a document the strongest of its images':

- ``block`` (``drop``): the document is removed;
- ``redact``: flagged images are removed (metadata key popped, an image ``page_content``
  replaced by the placeholder), the GuardResult goes into ``metadata[metadata_key]``;
- ``annotate`` / ``rewrite``: the document stays with its images, GuardResult in metadata
  (a rewrite is for prompts; a downstream guardrail judges the prompt again);
- ``raise`` (a class policy, or ``on_error="raise"``): that input raises —
  :class:`GuardrailViolation` / :class:`ImageInputError` — and, in ``batch``, only that one.

An image that could not be judged (unreadable, a bad path, a URL that may not be fetched)
is never passed on: ``on_error="block"`` (default) drops its document, ``"allow"`` keeps
the document without that image. Images that are passed on are the judged bytes: an
untrusted value is rewritten in its own form (data URL, base64, bytes) when the judged
bytes differ (a fetched URL is inlined, an image with alpha / EXIF rotation / several
frames becomes a lossless PNG of the judged pixels); a path key keeps the path (your own
file). Documents without images come back as they came, in order. All images of a call
(and of every input of a batch) go through one guard batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from PIL import Image
from pydantic import ConfigDict, Field, PrivateAttr

from safeclip_guardrail import policy
from safeclip_guardrail.config import GuardConfig, OnError, build_config
from safeclip_guardrail.errors import ConfigurationError, ImageInputError, SafeCLIPError
from safeclip_guardrail.guard import Judgement, SafeCLIPGuard
from safeclip_guardrail.images.sources import (
    EncodedImage,
    from_bytes,
    from_path,
    from_untrusted_string,
    to_base64,
    to_data_url,
)
from safeclip_guardrail.messages.extraction import MessageView, find_image_parts

__all__ = [
    "DEFAULT_IMAGE_KEYS",
    "DEFAULT_PATH_KEYS",
    "DocumentAction",
    "DocumentImage",
    "SafeCLIPDocumentGuard",
]

DocumentAction = Literal["drop", "annotate", "redact"]

DEFAULT_IMAGE_KEYS = ("image_path", "image_base64", "image_url", "image")
"""Metadata keys read for a document's images (every one present is checked)."""

DEFAULT_PATH_KEYS = ("image_path",)
"""Metadata keys that may hold a file path (set by the application's ingestion pipeline)."""

_MODE_OF_ACTION = {"drop": "block", "redact": "redact", "annotate": "annotate"}

PAGE_CONTENT = "page_content"


@dataclass(frozen=True)
class DocumentImage:
    """One image of a document: where it sits and its bytes, or why it cannot be read."""

    where: str
    """The metadata key, or ``"page_content"``."""
    image: EncodedImage | Image.Image | None
    """What is judged (None when unreadable)."""
    error: ImageInputError | None = None
    """Why the image cannot be judged (then it is never passed on)."""


class SafeCLIPDocumentGuard(RunnableSerializable[list[Document], list[Document]],
                            BaseDocumentCompressor):
    """Drops, annotates or redacts retrieved documents whose image is flagged."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guard: SafeCLIPGuard = Field(exclude=True)
    """The engine (shared with other guardrails, with its verdict cache)."""
    action: DocumentAction = "drop"
    """``drop`` the document, ``annotate`` it (verdict in metadata), or ``redact`` the image;
    the document form of ``GuardConfig.mode`` (per-class ``policy`` still applies)."""
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS
    """Metadata keys holding images: base64, a data URL, an http(s) URL, bytes (and, for
    ``path_keys``, a path)."""
    path_keys: tuple[str, ...] = DEFAULT_PATH_KEYS
    """Keys of ``image_keys`` that may hold a file path. Only list keys that your own
    ingestion pipeline sets: a path under any other key is refused, never opened."""
    read_page_content: bool = True
    """Also treat a ``page_content`` that is an image data URL as an image."""
    metadata_key: str = "safeclip"
    """Metadata key that receives the GuardResult (as JSON) on ``annotate`` and ``redact``."""
    placeholder: str = policy.REDACTED
    """Replaces a redacted image (in ``page_content`` when the image was the content)."""
    on_error: OnError | None = None
    """Unreadable images: ``block`` (drop the document; default), ``raise``, ``allow`` (keep
    the document without the image). None keeps the guard's ``on_error``."""

    _config: GuardConfig = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._config = build_config(self.guard.config, mode=_MODE_OF_ACTION[self.action],
                                    on_error=self.on_error)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def config(self) -> GuardConfig:
        """The policy in force: the guard's config, ``mode`` from ``action``, ``on_error``."""
        return self._config

    # ------------------------------------------------------------------ Runnable
    def invoke(self, input: list[Document], config: RunnableConfig | None = None,
               **kwargs: Any) -> list[Document]:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: list[Document], config: RunnableConfig | None = None,
                      **kwargs: Any) -> list[Document]:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def batch(self, inputs: list[list[Document]],
              config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[list[Document]]:
        if not inputs:
            return []
        return self._batch_with_config(self._batch, inputs, config,
                                       return_exceptions=return_exceptions, **kwargs)

    async def abatch(self, inputs: list[list[Document]],
                     config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[list[Document]]:
        if not inputs:
            return []
        return await self._abatch_with_config(self._abatch, inputs, config,
                                              return_exceptions=return_exceptions, **kwargs)

    def _invoke(self, input: list[Document], run_manager: CallbackManagerForChainRun
                ) -> list[Document]:
        return self.filter_many([input])[0]

    async def _ainvoke(self, input: list[Document],
                       run_manager: AsyncCallbackManagerForChainRun) -> list[Document]:
        return (await self.afilter_many([input]))[0]

    def _batch(self, inputs: list[list[Document]]) -> list[Exception | list[Document]]:
        return self.filter_many_or_errors(inputs)

    async def _abatch(self, inputs: list[list[Document]]) -> list[Exception | list[Document]]:
        return await asyncio.to_thread(self.filter_many_or_errors, inputs)

    # ------------------------------------------------------------------ compressor
    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        """The documents whose images pass (the query plays no part in the decision)."""
        return self.filter_many([list(documents)])[0]

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        return (await self.afilter_many([list(documents)]))[0]

    # ------------------------------------------------------------------ core
    def filter_many(self, lists: Sequence[Sequence[Document]]) -> list[list[Document]]:
        """Guard several document lists with one guard batch; the first error raises."""
        out: list[list[Document]] = []
        for result in self.filter_many_or_errors(lists):
            if isinstance(result, Exception):
                raise result
            out.append(result)
        return out

    async def afilter_many(self, lists: Sequence[Sequence[Document]]) -> list[list[Document]]:
        """Async :meth:`filter_many` (reading, fetching and encoding in a worker thread)."""
        return await asyncio.to_thread(self.filter_many, lists)

    def filter_many_or_errors(self, lists: Sequence[Sequence[Document]]
                              ) -> list[list[Document] | Exception]:
        """Like :meth:`filter_many`, each list's error in its place (the others intact)."""
        found = [self._images_of_list(docs) for docs in lists]
        readable = [img.image for per_list in found if not isinstance(per_list, ConfigurationError)
                    for per_doc in per_list for img in per_doc if img.image is not None]
        judgements = iter(self.guard.judge_batch(readable, forward=True) if readable else [])
        out: list[list[Document] | Exception] = []
        for docs, per_list in zip(lists, found, strict=True):
            if isinstance(per_list, ConfigurationError):
                out.append(per_list)
                continue
            mine = [[(img, next(judgements) if img.image is not None else None) for img in per_doc]
                    for per_doc in per_list]
            try:
                out.append(self._apply(docs, mine))
            except SafeCLIPError as exc:
                out.append(exc)
        return out

    def images_of(self, document: Document) -> list[DocumentImage]:
        """Every image the document carries (metadata keys, then ``page_content``)."""
        opts = self.guard.config.images
        found: list[DocumentImage] = []
        for key in self.image_keys:
            value = document.metadata.get(key)
            if value is None or (isinstance(value, (str, bytes)) and not value):
                continue
            try:
                found.append(DocumentImage(key, self._read(key, value)))
            except ImageInputError as exc:
                found.append(DocumentImage(key, None, ImageInputError(
                    f"metadata[{key!r}]: {exc}", source=exc.source)))
        if self.read_page_content and isinstance(document.page_content, str):
            view = MessageView(role="document", content=document.page_content)
            for part in find_image_parts([view], options=opts, fetcher=self.guard.fetcher):
                found.append(DocumentImage(PAGE_CONTENT, part.image, part.error))
        return found

    # ------------------------------------------------------------------ internals
    def _read(self, key: str, value: Any) -> EncodedImage | Image.Image:
        opts = self.guard.config.images
        if isinstance(value, (EncodedImage, Image.Image)):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return from_bytes(value, source=f"<metadata {key}>", options=opts)
        if key in self.path_keys and isinstance(value, (str, os.PathLike)):
            return from_path(value, options=opts)
        if isinstance(value, str):
            return from_untrusted_string(value, options=opts, fetcher=self.guard.fetcher)
        if isinstance(value, os.PathLike):
            msg = (f"a path under metadata key {key!r}, which is not one of path_keys "
                   f"{self.path_keys}; add the key to path_keys if your ingestion pipeline sets it")
            raise ImageInputError(msg, source=f"<metadata {key}>")
        msg = (f"metadata image of type {type(value).__name__} cannot be read; store base64, a "
               "data URL, bytes or (under a path key) a file path")
        raise ImageInputError(msg, source=f"<metadata {key}>")

    def _images_of_list(self, docs: Sequence[Document],
                        ) -> list[list[DocumentImage]] | ConfigurationError:
        out: list[list[DocumentImage]] = []
        for di, doc in enumerate(docs):
            if not isinstance(doc, Document):
                return ConfigurationError(
                    f"SafeCLIPDocumentGuard expects Documents, got {type(doc).__name__} at "
                    f"position {di}; put it right after a retriever")
            out.append(self.images_of(doc))
        return out

    def _apply(self, docs: Sequence[Document],
               found: list[list[tuple[DocumentImage, Judgement | None]]]) -> list[Document]:
        kept: list[Document] = []
        for doc, images in zip(docs, found, strict=True):
            if not images:
                kept.append(doc)
                continue
            changed = self._guard_document(doc, images)
            if changed is not None:
                kept.append(changed)
        return kept

    def _guard_document(self, doc: Document,
                        images: list[tuple[DocumentImage, Judgement | None]]) -> Document | None:
        cfg = self._config
        verdicts = [policy.verdict_for(img.error if img.error is not None else j, cfg,
                                       source=img.where) for img, j in images]
        decision = policy.decide(verdicts, cfg, redacted=self.placeholder)  # raises on raise
        if decision.blocked:
            return None
        metadata = dict(doc.metadata)
        content = doc.page_content
        removed: list[str] = []
        for (img, judgement), decided in zip(images, decision.parts, strict=True):
            if not decided.forward:
                removed.append(decided.placeholder)
                if img.where == PAGE_CONTENT:
                    content = decided.placeholder
                else:
                    metadata.pop(img.where, None)
                continue
            forward = judgement.forward if judgement is not None else None
            if forward is None or img.where in self.path_keys:
                continue  # a path key keeps the application's own file
            if img.where == PAGE_CONTENT:
                content = to_data_url(forward)
            else:
                metadata[img.where] = _same_form(metadata[img.where], forward)
        if removed:
            metadata["image_redacted"] = " ".join(dict.fromkeys(removed))
        if removed or decision.action != "pass":
            metadata[self.metadata_key] = decision.result.model_dump(mode="json")
        if metadata == doc.metadata and content == doc.page_content:
            return doc
        return doc.model_copy(update={"page_content": content, "metadata": metadata})


def _same_form(original: Any, forward: EncodedImage) -> Any:
    """The judged bytes written the way the original value was (data URL, base64, bytes)."""
    if isinstance(original, Image.Image):
        return original  # in-memory pixels: exactly what was judged
    if isinstance(original, (bytes, bytearray, memoryview, EncodedImage)):
        return forward.data if not isinstance(original, EncodedImage) else forward
    if isinstance(original, str) and original.lstrip()[:5].lower() != "data:" \
            and not original.lstrip()[:8].lower().startswith(("http://", "https://")):
        return to_base64(forward)  # it was plain base64
    return to_data_url(forward)  # a data URL, or a URL whose fetched bytes were judged
