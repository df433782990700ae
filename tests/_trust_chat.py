"""ChatLlava and the RAG document guard as surfaces of the trust contract.

Used by tests/trust/test_matrix.py (its ``TestChatLlava`` and ``TestRagDocuments``) and
tests/trust/test_fuzz.py; kept apart so the matrix file stays about the matrix.

- ``chat_llava``: ChatLlava with the planted guard. LLaVA is the model, so the referee reads
  what LLaVA's processor receives (the PIL images it turns into ``pixel_values``, and the
  prompt text) and whether ``generate`` ran.
- ``rag``: retriever | SafeCLIPDocumentGuard | the application's prompt builder | recording
  model, over documents that carry the image under each metadata key and as page content.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.langchain.testing import RUNNABLE_STYLES, RecordingChatModel, as_langchain, call
from safeclip_guardrail.testing.pictures import b64
from safeclip_guardrail.testing.pictures import data_url as durl
from safeclip_guardrail.testing.trust import (
    Conversation,
    ItemPlacement,
    Outcome,
    Received,
    RetrievalTrustContract,
    TrustContract,
    TrustImages,
    frames_of,
    pixel_key,
    scan,
)

# ---------------------------------------------------------------------- ChatLlava
_TINY_LLAVA: dict[str, str] = {}


def tiny_llava_dir() -> str:
    """One tiny real LLaVA per test process (built offline, a few seconds)."""
    if "dir" not in _TINY_LLAVA:
        from safeclip_guardrail.testing import build_tiny_llava

        _TINY_LLAVA["dir"] = str(build_tiny_llava(Path(tempfile.mkdtemp()) / "tiny_llava"))
    return _TINY_LLAVA["dir"]


def raised_in_langchain_core(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "langchain_core" in tb.tb_frame.f_code.co_filename


class ChatLlavaSurface(TrustContract):
    """ChatLlava (every call style of a BaseChatModel); LLaVA itself is the model."""

    name = "chat_llava"
    styles = RUNNABLE_STYLES
    forwards_documents = False  # LLaVA is shown a judged PDF's rendered page, never the file

    def start(self) -> None:
        from safeclip_guardrail.langchain import ChatLlava

        self.llm = ChatLlava.from_pretrained(
            tiny_llava_dir(), device="cpu", dtype="float32", max_new_tokens=2,
            guard=self.images.guard.with_options(mode="block"))

    def run(self, conversation: Conversation, style: str) -> Outcome:
        llm = self.llm
        received, generated = Received(), []
        processor_cls = type(llm.processor)
        real_call, real_generate = processor_cls.__call__, llm.hf_model.generate

        def record(self: Any, *args: Any, **kwargs: Any) -> Any:
            for im in kwargs.get("images") or []:
                received.frames.append(pixel_key(im))
            scan(kwargs.get("text"), received)
            return real_call(self, *args, **kwargs)

        def generate(**kwargs: Any) -> Any:
            generated.append(True)
            return real_generate(**kwargs)

        processor_cls.__call__ = record
        object.__setattr__(llm.hf_model, "generate", generate)
        try:
            out = call(llm, convert_to_messages(as_langchain(conversation)), style)
        except (ValueError, TypeError, ConfigurationError) as exc:
            out = exc
        finally:
            processor_cls.__call__ = real_call
            del llm.hf_model.generate
        if isinstance(out, Exception):
            # langchain-core's own BaseChatModel refuses some malformed blocks (base64
            # without a MIME type, a list as block type) before any chat model runs; LLaVA
            # reads text and pictures only, so a file block it cannot show (at any depth) is
            # a typed usage error: either way the request fails and nothing is sent
            if not generated and (isinstance(out, ConfigurationError)
                                  or raised_in_langchain_core(out)):
                return Outcome(True, received, False)
            raise out
        chunks = out if isinstance(out, list) else [out]
        refused = any(c.response_metadata.get("finish_reason") == "guardrail" for c in chunks)
        assert refused == (not generated), (refused, generated)
        return Outcome(not generated, received, bool(generated))

    def supports(self, conversation: Conversation) -> bool:
        # langchain-core's BaseChatModel normalises v0 ``source_type`` blocks to v1 before any
        # chat model's _generate runs, keeping one source (the url of a two-source v0 block is
        # dropped): ChatLlava judges and sends that one image, and never sees the conflict.
        messages = convert_to_messages(as_langchain(conversation))
        if any(isinstance(b, dict) and b.get("source_type") and "url" in b
               for m in messages if isinstance(m.content, list) for b in m.content):
            return False
        # LLaVA shows text and pictures only: a file or document block holding text is a usage
        # error there (ConfigurationError), not something the guard decides
        from safeclip_guardrail.config import ImageOptions
        from safeclip_guardrail.langchain._messages import view_of_message
        from safeclip_guardrail.messages.extraction import find_image_parts

        parts = find_image_parts([view_of_message(m) for m in messages], options=ImageOptions())
        return not any(
            isinstance(b, dict) and b.get("type") in ("file", "document", "input_file", "text-plain")
            and not any(p.message == k and p.path[:2] == ("content", i) for p in parts)
            for k, m in enumerate(messages) if isinstance(m.content, list)
            for i, b in enumerate(m.content))


# ---------------------------------------------------------------------- RAG documents
def doc_placements() -> list[ItemPlacement]:
    from langchain_core.documents import Document

    def trusted(i: TrustImages, x: bytes) -> str:
        return i.path_of(x, f"doc_{pixel_key(frames_of(x)[0])[:8]}.png")  # type: ignore[index]

    return [
        # image_path: set by the application's ingestion pipeline (a trusted path key)
        ItemPlacement("image_path_trusted", lambda i, x: Document(
            "a photo", metadata={"image_path": trusted(i, x)})),
        ItemPlacement("image_base64", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(x)})),
        ItemPlacement("image_url_data_url", lambda i, x: Document(
            "a photo", metadata={"image_url": durl(x)})),
        ItemPlacement("image_bytes", lambda i, x: Document("a photo", metadata={"image": x})),
        ItemPlacement("page_content_data_url", lambda i, x: Document(durl(x))),
        ItemPlacement("page_content_octet_stream", lambda i, x: Document(
            durl(x, "application/octet-stream"))),
        # untrusted keys never name paths; remote URLs are not fetched by default
        ItemPlacement("image_url_local_path", lambda i, x: Document(
            "a photo", metadata={"image_url": i.path_of(x, "doc_url.png")}), benign="block"),
        ItemPlacement("image_file_uri", lambda i, x: Document(
            "a photo", metadata={"image": Path(i.path_of(x, "doc_uri.png")).as_uri()}),
            benign="block"),
        ItemPlacement("image_url_remote", lambda i, x: Document(
            "a photo", metadata={"image_url": "https://images.example.com/x.png"}),
            benign="block"),
        ItemPlacement("two_images_one_flagged", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(x), "image_url": durl(i.flagged)}),
            benign="block"),
        ItemPlacement("nonfinite", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(i.nonfinite)}), benign="block"),
    ]


def _rag_prompt(documents: list[Any]) -> list[BaseMessage]:
    """An application's prompt builder: reads its own (trusted) paths, forwards the rest."""
    blocks: list[Any] = [{"type": "text", "text": "what is in the pictures?"}]
    for d in documents:
        meta = d.metadata
        if "image_path" in meta:
            blocks.append({"type": "image", "base64": b64(
                Path(meta["image_path"]).read_bytes()), "mime_type": "image/png"})
        for key in ("image_base64", "image_url", "image"):
            value = meta.get(key)
            if isinstance(value, bytes):
                value = b64(value)
            if isinstance(value, str):
                url = value if value.startswith(("data:", "http", "/", "file:")) \
                    else f"data:image/png;base64,{value}"
                blocks.append({"type": "image_url", "image_url": {"url": url}})
        if d.page_content.startswith("data:"):
            blocks.append({"type": "image_url", "image_url": {"url": d.page_content}})
        else:
            blocks.append({"type": "text", "text": d.page_content})
    return [HumanMessage(content=blocks)]


class RagDocumentsSurface(RetrievalTrustContract):
    """retriever | SafeCLIPDocumentGuard | prompt builder | recording model."""

    name = "rag"
    styles = RUNNABLE_STYLES

    def placements(self) -> list[ItemPlacement]:
        return doc_placements()

    def run(self, item: Any, style: str) -> Outcome:
        from langchain_core.documents import Document
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from langchain_core.runnables import RunnableLambda
        from langchain_core.vectorstores import InMemoryVectorStore

        from safeclip_guardrail import SafeCLIPDocumentGuard

        store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
        store.add_documents([item, Document("a note")], ids=["doc", "note"])
        passed: list[bool] = []

        def build(documents: list[Any]) -> list[BaseMessage]:
            passed.append(any(d.id == "doc" for d in documents))
            return _rag_prompt(documents)

        model = RecordingChatModel()
        chain = (store.as_retriever(search_kwargs={"k": 2})
                 | SafeCLIPDocumentGuard(guard=self.images.guard)
                 | RunnableLambda(build) | model)
        out = call(chain, "what is in the pictures?", style)
        assert not isinstance(out, Exception), repr(out)
        return Outcome(not passed[0], model.received(), bool(model.requests))
