"""Recipe: multimodal RAG whose retrieved images are checked before the model sees them.

    python cookbook/multimodal_rag.py --model llava-1.5 ./image_folder "a photo of a kitchen"

Image documents (``page_content`` = a caption, ``metadata["image_path"]`` = the file) sit in
langchain-core's ``InMemoryVectorStore``. The chain is
``retriever | SafeCLIPDocumentGuard | build_prompt | llm``: a flagged image is dropped (or
redacted / annotated) before the prompt is built, so it never reaches the model.

The fake embeddings and chat model keep the recipe runnable anywhere; use a real (e.g.
multimodal) embedding model and your chat model in practice.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from safeclip_guardrail import SafeCLIPDocumentGuard, SafeCLIPGuard

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def image_documents(folder: str | Path) -> list[Document]:
    """One Document per image file: the caption is the file name, the path is in metadata."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [Document(p.stem.replace("_", " "), metadata={"image_path": str(p), "name": p.name})
            for p in files]


def build_prompt(inputs: dict[str, Any]) -> list[BaseMessage]:
    """The question plus every retrieved image, inline."""
    blocks: list[Any] = [{"type": "text", "text": inputs["question"]}]
    for doc in inputs["documents"]:
        path = doc.metadata.get("image_path")
        if path:  # a redacted document has no image any more
            data = base64.b64encode(Path(path).read_bytes()).decode()
            mime = mimetypes.guess_type(path)[0] or "image/png"
            blocks.append({"type": "image", "base64": data, "mime_type": mime})
        blocks.append({"type": "text", "text": f"(caption: {doc.page_content})"})
    return [HumanMessage(content=blocks)]


def build_chain(store: InMemoryVectorStore, doc_guard: SafeCLIPDocumentGuard,
                llm: Runnable[Any, Any], *, k: int = 4) -> Runnable[Any, Any]:
    retrieve = store.as_retriever(search_kwargs={"k": k}) | doc_guard
    return ({"documents": retrieve, "question": RunnableLambda(lambda q: q)}
            | RunnableLambda(build_prompt) | llm)


def main(model: str = "llava-1.5", folder: str | Path = ".", query: str = "a photo", *,
         action: str = "drop", guard: SafeCLIPGuard | None = None,
         llm: BaseChatModel | None = None, embeddings: Embeddings | None = None,
         k: int = 4) -> dict[str, Any]:
    """Index ``folder``, answer ``query``; returns the answer and the documents that passed."""
    guard = guard or SafeCLIPGuard.from_pretrained(model)
    store = InMemoryVectorStore(embeddings or DeterministicFakeEmbedding(size=64))
    docs = image_documents(folder)
    store.add_documents(docs)
    doc_guard = SafeCLIPDocumentGuard(guard=guard, action=action)  # type: ignore[arg-type]
    llm = llm or FakeListChatModel(responses=["(an answer grounded in the retrieved images)"])
    answer = build_chain(store, doc_guard, llm, k=k).invoke(query)
    retrieved = store.as_retriever(search_kwargs={"k": k}).invoke(query)
    passed = doc_guard.invoke(retrieved)
    print(f"retrieved {len(retrieved)}, passed {len(passed)}: "
          f"{[d.metadata['name'] for d in passed]}")
    print(answer.content)
    return {"answer": answer.content, "retrieved": retrieved, "passed": passed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("query")
    parser.add_argument("--model", default="llava-1.5")
    parser.add_argument("--action", default="drop", choices=["drop", "annotate", "redact"])
    args = parser.parse_args()
    main(args.model, args.folder, args.query, action=args.action)
