"""SafeCLIPDocumentGuard: retrieved documents with images, as a Runnable and a compressor."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from safeclip_guardrail import (
    ConfigurationError,
    ImageInputError,
    SafeCLIPDocumentGuard,
    SafeCLIPGuard,
)
from safeclip_guardrail.policy import UNREADABLE_PLACEHOLDER
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import data_url


@pytest.fixture
def docs(planted: PlantedEncoder, tmp_path: Path) -> list[Document]:
    gun_file = tmp_path / "gun.png"
    gun_file.write_bytes(planted.plant_bytes("gun"))
    cat_file = tmp_path / "cat.png"
    cat_file.write_bytes(planted.plant_bytes("neutral"))
    return [
        Document("a cat", metadata={"id": 0, "image_path": str(cat_file)}),
        Document("a rifle", metadata={"id": 1, "image_path": str(gun_file)}),
        Document("just text", metadata={"id": 2}),
        Document("wine", metadata={"id": 3, "image_base64": base64.b64encode(
            planted.plant_bytes("alcohol")).decode()}),
        Document(data_url(planted.plant_bytes("blood")), metadata={"id": 4}),
        Document("remote", metadata={"id": 5, "image_url": "https://img.example.com/x.png"}),
        Document("a dog", metadata={"id": 6, "image_url": data_url(
            planted.plant_bytes("neutral"))}),
    ]


def ids(documents: list[Document]) -> list[int]:
    return [d.metadata["id"] for d in documents]


def test_drop_keeps_order_and_metadata_of_the_rest(planted: PlantedEncoder,
                                                   planted_guard: SafeCLIPGuard,
                                                   docs: list[Document]) -> None:
    kept = SafeCLIPDocumentGuard(guard=planted_guard).invoke(docs)
    # gun (path), alcohol (base64), blood (data URL content), remote URL (fail closed) go
    assert ids(kept) == [0, 2, 6]
    assert kept == [docs[0], docs[2], docs[6]]  # untouched, metadata included
    assert planted.forward_counter.count == 1


def test_annotate_keeps_everything_and_marks_the_flagged(planted_guard: SafeCLIPGuard,
                                                         docs: list[Document]) -> None:
    out = SafeCLIPDocumentGuard(guard=planted_guard, action="annotate").invoke(docs)
    # the unreadable remote URL (5) fails closed, as in the Runnable: block beats annotate
    assert ids(out) == [0, 1, 2, 3, 4, 6]
    marked = {d.metadata["id"]: d.metadata["safeclip"]["categories"]
              for d in out if "safeclip" in d.metadata}
    assert marked == {1: ["gun"], 3: ["alcohol"], 4: ["blood"]}
    assert out[1].metadata["image_path"] == docs[1].metadata["image_path"]


def test_redact_removes_the_image_but_keeps_the_text(planted_guard: SafeCLIPGuard,
                                                     docs: list[Document]) -> None:
    out = SafeCLIPDocumentGuard(guard=planted_guard, action="redact").invoke(docs)
    assert ids(out) == [0, 1, 2, 3, 4, 6]  # the unreadable remote URL fails closed
    assert out[1].page_content == "a rifle" and "image_path" not in out[1].metadata
    assert "gun" in out[1].metadata["image_redacted"]
    assert out[4].page_content.startswith("[image removed") and "blood" in out[4].page_content
    assert "image_base64" not in out[3].metadata
    assert out[0] == docs[0]


def test_configurable_keys_and_page_content(planted: PlantedEncoder,
                                            planted_guard: SafeCLIPGuard) -> None:
    doc = Document("x", metadata={"thumbnail": data_url(planted.plant_bytes("porn"))})
    assert SafeCLIPDocumentGuard(guard=planted_guard).invoke([doc]) == [doc]  # key unknown
    guard = SafeCLIPDocumentGuard(guard=planted_guard, image_keys=("thumbnail",))
    assert guard.invoke([doc]) == []
    content_doc = Document(data_url(planted.plant_bytes("porn")))
    assert SafeCLIPDocumentGuard(guard=planted_guard, read_page_content=False).invoke(
        [content_doc]) == [content_doc]


def test_batch_is_one_guard_batch(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                                  docs: list[Document]) -> None:
    guard = SafeCLIPDocumentGuard(guard=planted_guard)
    outs = guard.batch([docs[:3], docs[3:], []])
    assert [ids(o) for o in outs] == [[0, 2], [6], []]
    assert planted.forward_counter.count == 1
    aouts = asyncio.run(guard.abatch([docs[:3], docs[3:]]))
    assert [ids(o) for o in aouts] == [[0, 2], [6]]
    assert ids(asyncio.run(guard.ainvoke(docs))) == [0, 2, 6]
    (streamed,) = list(guard.stream(docs))
    assert ids(streamed) == [0, 2, 6]


def test_is_a_document_compressor(planted_guard: SafeCLIPGuard, docs: list[Document]) -> None:
    guard = SafeCLIPDocumentGuard(guard=planted_guard)
    assert isinstance(guard, BaseDocumentCompressor)
    assert ids(list(guard.compress_documents(docs, "any query"))) == [0, 2, 6]
    assert ids(list(asyncio.run(guard.acompress_documents(docs, "q")))) == [0, 2, 6]


def test_bad_inputs(planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    guard = SafeCLIPDocumentGuard(guard=planted_guard)
    with pytest.raises(ConfigurationError, match="expects Documents"):
        guard.invoke(["not a document"])  # type: ignore[list-item]
    broken = Document("x", metadata={"image_base64": "bm90IGFuIGltYWdl"})
    assert guard.invoke([broken]) == []  # unreadable fails closed
    strict = SafeCLIPDocumentGuard(guard=planted_guard.with_options(on_error="raise"))
    with pytest.raises(ImageInputError):
        strict.invoke([broken])
    lenient = SafeCLIPDocumentGuard(guard=planted_guard.with_options(on_error="allow"))
    (kept,) = lenient.invoke([broken])  # the document goes on, its unjudged image never does
    assert kept.page_content == "x" and "image_base64" not in kept.metadata
    assert kept.metadata["image_redacted"] == UNREADABLE_PLACEHOLDER


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.calls.extend(messages)


def to_prompt(documents: list[Document]) -> list[BaseMessage]:
    blocks: list[Any] = [{"type": "text", "text": "Answer from these images."}]
    for d in documents:
        image = d.metadata.get("image_url") or d.metadata.get("image_base64")
        if image:
            url = image if image.startswith("data:") else f"data:image/png;base64,{image}"
            blocks.append({"type": "image_url", "image_url": {"url": url}})
        blocks.append({"type": "text", "text": d.page_content})
    return [HumanMessage(content=blocks)]


@pytest.mark.parametrize("action", ["drop", "redact"])
def test_retrieval_chain_never_passes_a_flagged_image(planted: PlantedEncoder,
                                                      planted_guard: SafeCLIPGuard,
                                                      action: str) -> None:
    toxic = [base64.b64encode(planted.plant_bytes(c)).decode() for c in ("gun", "porn", "blood")]
    benign = [base64.b64encode(planted.plant_bytes("neutral")).decode() for _ in range(3)]
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(f"photo {i}", metadata={"image_base64": b})
                         for i, b in enumerate(toxic + benign)])
    rec = Recorder()
    llm = FakeListChatModel(responses=["ok"], callbacks=[rec])
    chain = (store.as_retriever(search_kwargs={"k": 6})
             | SafeCLIPDocumentGuard(guard=planted_guard, action=action)  # type: ignore[arg-type]
             | RunnableLambda(to_prompt) | llm)
    for query in ("photo", "a picture of a gun", "anything"):
        chain.invoke(query)
    sent = "".join(str(m.content) for call in rec.calls for m in call)
    assert len(rec.calls) == 3
    assert not any(t in sent for t in toxic)
    assert all(b in sent for b in benign)
