"""Multimodal RAG over a folder of images with LlamaIndex, guarded twice by SafeCLIP.

1. At ingestion, ``SafeCLIPImageFilter`` keeps flagged images out of the index.
2. At query time, ``SafeCLIPImagePostprocessor`` drops any flagged image a retriever still
   returns (an index built before the guard, or a shared vector store) before the
   multimodal LLM sees it.

Needs ``pip install . ./integrations/llamaindex`` (from a checkout). Run it on your own folder::

    python cookbook/llamaindex_rag.py ./photos --model llava-1.5

The LLM and embeddings default to LlamaIndex's offline mocks so the recipe runs anywhere;
pass your multimodal chat LLM (``llm=``) and embedding model (``embed_model=``) in real use.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import BaseNode, MediaResource, Node
from safeclip_guardrail_llamaindex import SafeCLIPImageFilter, SafeCLIPImagePostprocessor

from safeclip_guardrail import ImageVerdict, SafeCLIPGuard

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}


@dataclass
class RagRun:
    indexed: list[str]
    """Image files that made it into the index."""
    kept_out: dict[str, str] = field(default_factory=dict)
    """Image file -> flagged category, for images the ingestion filter dropped."""
    answer: str = ""
    sources: list[str] = field(default_factory=list)
    """Image files the answer was built from (after the query-time postprocessor)."""


def load_image_nodes(image_dir: Path) -> list[BaseNode]:
    """One multimodal node per image file, the file name as its text and metadata."""
    return [
        Node(id_=p.name, image_resource=MediaResource(path=p),
             text_resource=MediaResource(text=f"image {p.stem}"), metadata={"file": p.name})
        for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
    ]


def main(image_dir: str | Path, *, model: str = "llava-1.5", guard: SafeCLIPGuard | None = None,
         llm: Any = None, embed_model: Any = None,
         question: str = "What do these images show?") -> RagRun:
    guard = guard or SafeCLIPGuard.from_pretrained(model)
    embed_model = embed_model or MockEmbedding(embed_dim=16)
    kept_out: dict[str, str] = {}

    def note(node: BaseNode, verdict: ImageVerdict) -> None:
        kept_out[node.node_id] = verdict.category or "flagged"

    pipeline = IngestionPipeline(transformations=[
        SafeCLIPImageFilter(guard, on_flagged=note), embed_model,
    ])
    nodes = pipeline.run(nodes=load_image_nodes(Path(image_dir)))
    index = VectorStoreIndex(nodes, embed_model=embed_model)

    engine = RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=8),
        llm=llm or MockLLM(is_chat_model=True),
        multimodal=True,
        node_postprocessors=[SafeCLIPImagePostprocessor(guard)],
    )
    response = engine.query(question)
    return RagRun(indexed=sorted(index.docstore.docs), kept_out=kept_out,
                  answer=str(response),
                  sources=[n.node.node_id for n in response.source_nodes])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--model", default="llava-1.5")
    parser.add_argument("--question", default="What do these images show?")
    args = parser.parse_args()
    run = main(args.image_dir, model=args.model, question=args.question)
    print(f"indexed: {run.indexed}\nkept out: {run.kept_out}\nanswer: {run.answer}")
