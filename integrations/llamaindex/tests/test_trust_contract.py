"""Retrieved LlamaIndex nodes keep the guard's promise: the retrieval trust contract.

A query engine over a vector index (LlamaIndex's MockEmbedding) with
``SafeCLIPImagePostprocessor`` in ``node_postprocessors`` and LlamaIndex's own mock LLM,
which decodes every image block of every chat call for the referee. Each placement is a
node field that can carry a picture; a node whose picture is flagged or unreadable never
reaches the LLM, and a kept node's picture is one the guard judged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ImageBlock
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MediaResource, Node, NodeWithScore, TextNode
from safeclip_guardrail_llamaindex import SafeCLIPImagePostprocessor

from safeclip_guardrail import ImageInputError
from safeclip_guardrail.testing.pictures import b64, data_url
from safeclip_guardrail.testing.trust import (
    ItemPlacement,
    Outcome,
    Received,
    RetrievalTrustContract,
    TrustImages,
    frames_of,
    make_images,
    pixel_key,
    scan,
)

ANSWER = "an answer"


def _node(**fields: Any) -> ImageNode:
    return ImageNode(text="a photo", **fields)


def _trusted(i: TrustImages, x: bytes) -> str:
    return i.path_of(x, f"trusted_{pixel_key(frames_of(x)[0])[:8]}.png")  # type: ignore[index]


def _resource_url(i: TrustImages, x: bytes) -> Node:
    url = Path(i.path_of(x, "res.png")).as_uri()
    return Node(text_resource=MediaResource(text="a photo"), image_resource=MediaResource(url=url))


NODE_PLACEMENTS = [
    ItemPlacement("image_base64", lambda i, x: _node(image=b64(x), image_mimetype="image/png")),
    ItemPlacement("image_data_url", lambda i, x: _node(image=data_url(x))),
    ItemPlacement("image_path_trusted", lambda i, x: _node(image_path=_trusted(i, x))),
    ItemPlacement("image_url_data_url", lambda i, x: _node(image_url=data_url(x))),
    ItemPlacement("image_url_local_path", lambda i, x: _node(
        image_url=i.path_of(x, "node_url.png")), benign="block"),
    ItemPlacement("image_url_remote", lambda i, x: _node(
        image_url="https://images.example.com/x.png"), benign="block"),
    ItemPlacement("image_base64_and_path", lambda i, x: _node(
        image=b64(x), image_path=i.path_of(i.flagged, "other.png"))),
    # (Node.image_resource.data is not here: LlamaIndex's docstore drops it on storage, so
    # a retrieved Node never carries it; the postprocessor reads it when present.)
    ItemPlacement("resource_url_local_path", _resource_url, benign="block"),
    ItemPlacement("nonfinite", lambda i, x: _node(image=b64(i.nonfinite)), benign="block"),
]


class _LLMRecorder:
    """LlamaIndex's own MockLLM; decodes every image block of every chat call."""

    def __init__(self) -> None:
        self.calls = 0
        self.received = Received()

        def answer(messages: Any, **kwargs: Any) -> ChatMessage:
            self.calls += 1
            for m in messages:
                for block in m.blocks:
                    if isinstance(block, ImageBlock):
                        if block.url is not None:
                            scan(str(block.url), self.received)  # data URL: decoded; else noted
                        if block.path is not None:
                            self.received.strings.append(str(block.path))
                        if block.image is not None:  # how the LLM reads it
                            scan(block.resolve_image().read(), self.received)
            return ChatMessage(role="assistant", content=ANSWER)

        self.llm = MockFunctionCallingLLM(is_chat_model=True, response_generator=answer)


class TestQueryEngineNodes(RetrievalTrustContract):
    name = "llamaindex"
    styles = ("query", "aquery")

    def placements(self) -> list[ItemPlacement]:
        return NODE_PLACEMENTS

    def run(self, item: Any, style: str) -> Outcome:
        rec = _LLMRecorder()
        index = VectorStoreIndex([item, TextNode(text="a note")],
                                 embed_model=MockEmbedding(embed_dim=8))
        engine = RetrieverQueryEngine.from_args(
            index.as_retriever(similarity_top_k=10), llm=rec.llm, multimodal=True,
            node_postprocessors=[SafeCLIPImagePostprocessor(self.images.guard)])
        question = "what is in the pictures?"
        response = (engine.query(question) if style == "query"
                    else asyncio.run(engine.aquery(question)))
        kept = [n.node for n in response.source_nodes if n.node.node_id == item.node_id]
        return Outcome(not kept, rec.received, rec.calls > 0)


def test_an_unreadable_node_follows_on_error(tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    nodes = [NodeWithScore(node=ImageNode(image="bm90IGFu")),
             NodeWithScore(node=ImageNode(image=b64(imgs.benign)))]
    block = SafeCLIPImagePostprocessor(imgs.guard).postprocess_nodes(nodes)
    assert [n.node.node_id for n in block] == [nodes[1].node.node_id]  # the other is intact
    with pytest.raises(ImageInputError):
        SafeCLIPImagePostprocessor(imgs.guard.with_options(on_error="raise")).postprocess_nodes(nodes)
    allow = SafeCLIPImagePostprocessor(imgs.guard.with_options(on_error="allow")).postprocess_nodes(nodes)
    assert len(allow) == 2 and isinstance(allow[0].node, TextNode)  # kept, image removed
    assert not isinstance(allow[0].node, ImageNode)
