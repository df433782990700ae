"""Guarding retrieved documents that carry images (multimodal RAG).

A retriever can hand the model an image nobody checked: a toxic picture indexed from a
crawl, a poisoned upload. :class:`SafeCLIPDocumentGuard` sits between the retriever and
the prompt, as a Runnable over ``list[Document]``::

    chain = retriever | SafeCLIPDocumentGuard(guard=guard) | build_prompt | llm

or as a ``BaseDocumentCompressor`` (e.g. inside a ``ContextualCompressionRetriever``).
A document carries an image when one of ``image_keys`` is in its metadata (a path, base64
data, a data URL or a URL) or when its ``page_content`` is an image data URL. Flagged
documents are dropped, annotated or redacted; every other document is returned as it came,
in the same order. All images of a call (and of every input of a batch) go through one
guard batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field

from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.result import UNREADABLE, GuardResult, ImageVerdict

__all__ = ["DEFAULT_IMAGE_KEYS", "DocumentAction", "SafeCLIPDocumentGuard"]

DocumentAction = Literal["drop", "annotate", "redact"]

DEFAULT_IMAGE_KEYS = ("image_path", "image_base64", "image_url", "image")
"""Metadata keys read for a document's image, first match wins."""


class SafeCLIPDocumentGuard(RunnableSerializable[list[Document], list[Document]],
                            BaseDocumentCompressor):
    """Drops, annotates or redacts retrieved documents whose image is flagged."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guard: SafeCLIPGuard = Field(exclude=True)
    """The engine (shared with other guardrails, with its verdict cache)."""
    action: DocumentAction = "drop"
    """``drop`` the document, ``annotate`` it (verdict in metadata), or ``redact`` the image."""
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS
    """Metadata keys holding the image: a path, base64 data, a data URL or an http(s) URL."""
    read_page_content: bool = True
    """Also treat a ``page_content`` that is an image data URL (``data:image/...``) as the image."""
    metadata_key: str = "safeclip"
    """Metadata key that receives the GuardResult (as JSON) on ``annotate`` and ``redact``."""
    placeholder: str = "[image removed by the SafeCLIP guardrail: flagged as {category}]"
    """Replaces a redacted image (in ``page_content`` when the image was the content)."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

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
        return list(self.filter_many(inputs))

    async def _abatch(self, inputs: list[list[Document]]) -> list[Exception | list[Document]]:
        return list(await self.afilter_many(inputs))

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
        """Guard several document lists with one guard batch."""
        found, sources = self._collect(lists)
        verdicts = self.guard.check_batch(sources) if sources else []
        return self._apply(lists, found, verdicts)

    async def afilter_many(self, lists: Sequence[Sequence[Document]]) -> list[list[Document]]:
        """Async :meth:`filter_many`."""
        found, sources = self._collect(lists)
        verdicts = await self.guard.acheck_batch(sources) if sources else []
        return self._apply(lists, found, verdicts)

    def images_of(self, document: Document) -> list[tuple[str, Any]]:
        """``(where, image)`` for every image the document carries (metadata key or
        ``"page_content"``); all of them are checked."""
        found: list[tuple[str, Any]] = []
        for key in self.image_keys:
            value = document.metadata.get(key)
            if value:
                is_path = key.endswith("path") and isinstance(value, str)
                found.append((key, Path(value) if is_path else value))
        if self._content_is_image(document):
            found.append(("page_content", document.page_content))
        return found

    def _content_is_image(self, document: Document) -> bool:
        head = document.page_content[:11].lower()
        return self.read_page_content and head.startswith("data:image/")

    def _collect(self, lists: Sequence[Sequence[Document]]
                 ) -> tuple[dict[tuple[int, int], list[int]], list[Any]]:
        found: dict[tuple[int, int], list[int]] = {}
        sources: list[Any] = []
        for li, docs in enumerate(lists):
            for di, doc in enumerate(docs):
                if not isinstance(doc, Document):
                    raise TypeError(
                        f"SafeCLIPDocumentGuard expects Documents, got {type(doc).__name__} at "
                        f"position {di}; put it right after a retriever"
                    )
                for _where, image in self.images_of(doc):
                    found.setdefault((li, di), []).append(len(sources))
                    sources.append(image)
        return found, sources

    def _apply(self, lists: Sequence[Sequence[Document]],
               found: dict[tuple[int, int], list[int]],
               verdicts: Sequence[ImageVerdict]) -> list[list[Document]]:
        out: list[list[Document]] = []
        for li, docs in enumerate(lists):
            kept: list[Document] = []
            for di, doc in enumerate(docs):
                flagged = [verdicts[k] for k in found.get((li, di), []) if verdicts[k].flagged]
                if not flagged:
                    kept.append(doc)
                    continue
                changed = self._intervene(doc, flagged)
                if changed is not None:
                    kept.append(changed)
            out.append(kept)
        return out

    def _intervene(self, doc: Document, flagged: list[ImageVerdict]) -> Document | None:
        if self.action == "drop":
            return None
        result = GuardResult(verdicts=flagged, action=self.action)
        metadata = {**doc.metadata, self.metadata_key: result.model_dump(mode="json")}
        content = doc.page_content
        if self.action == "redact":
            categories = ", ".join(result.categories) or UNREADABLE
            text = self.placeholder.replace("{category}", categories)
            if self._content_is_image(doc):
                content = text
            for key in self.image_keys:  # every image goes, not only the flagged one
                metadata.pop(key, None)
            metadata["image_redacted"] = text
        return doc.model_copy(update={"page_content": content, "metadata": metadata})
