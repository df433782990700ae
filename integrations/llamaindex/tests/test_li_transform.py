"""SafeCLIPImageFilter in a real IngestionPipeline: flagged images never reach the index."""

from __future__ import annotations

import base64

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.schema import BaseNode, ImageNode, MediaResource, Node, TextNode
from safeclip_guardrail_llamaindex import SafeCLIPImageFilter

from safeclip_guardrail import ImageVerdict
from safeclip_guardrail.testing import PlantedEncoder


def _nodes(planted: PlantedEncoder) -> list[BaseNode]:
    return [
        ImageNode(id_="gun", text="forum upload",
                  image=base64.b64encode(planted.plant_bytes("gun")).decode()),
        Node(id_="cat", image_resource=MediaResource(data=planted.plant_bytes("neutral")),
             text_resource=MediaResource(text="a cat")),
        Node(id_="gore", image_resource=MediaResource(data=planted.plant_bytes("blood")),
             text_resource=MediaResource(text="news photo")),
        TextNode(id_="note", text="plain text"),
    ]


def test_pipeline_keeps_flagged_images_out_of_the_index(planted, planted_guard):
    pipeline = IngestionPipeline(transformations=[
        SafeCLIPImageFilter(planted_guard), MockEmbedding(embed_dim=8),
    ])
    nodes = pipeline.run(nodes=_nodes(planted))
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    assert sorted(index.docstore.docs) == ["cat", "note"]
    retrieved = index.as_retriever(similarity_top_k=10).retrieve("anything")
    assert sorted(n.node.node_id for n in retrieved) == ["cat", "note"]


def test_without_the_filter_the_flagged_images_are_indexed(planted):
    nodes = IngestionPipeline(transformations=[MockEmbedding(embed_dim=8)]).run(
        nodes=_nodes(planted))
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    assert sorted(index.docstore.docs) == ["cat", "gore", "gun", "note"]


async def test_async_pipeline_and_callback(planted, planted_guard):
    dropped: list[tuple[str, ImageVerdict]] = []
    filt = SafeCLIPImageFilter(planted_guard,
                               on_flagged=lambda node, v: dropped.append((node.node_id, v)))
    pipeline = IngestionPipeline(transformations=[filt])
    nodes = await pipeline.arun(nodes=_nodes(planted))
    assert [n.node_id for n in nodes] == ["cat", "note"]
    assert [(i, v.category) for i, v in dropped] == [("gun", "gun"), ("gore", "blood")]


def test_default_logs_a_warning(planted, planted_guard, caplog):
    with caplog.at_level("WARNING"):
        kept = SafeCLIPImageFilter(planted_guard)(_nodes(planted))
    assert len(kept) == 2
    assert "kept node gun out of the index: flagged as gun" in caplog.text


def test_cache_key_changes_with_guard_options(planted_guard):
    a = SafeCLIPImageFilter(planted_guard).to_dict()["guard_fingerprint"]
    b = SafeCLIPImageFilter(planted_guard.with_options(threshold=0.9)).to_dict()
    assert a and a != b["guard_fingerprint"]
    assert a == SafeCLIPImageFilter(planted_guard).guard_fingerprint


def test_pipeline_cache_keys_on_text_so_disable_it_for_images(planted, planted_guard):
    cat = Node(id_="cat", image_resource=MediaResource(data=planted.plant_bytes("neutral")),
               text_resource=MediaResource(text="same caption"))
    gun = Node(id_="gun", image_resource=MediaResource(data=planted.plant_bytes("gun")),
               text_resource=MediaResource(text="same caption"))
    cached = IngestionPipeline(transformations=[SafeCLIPImageFilter(planted_guard)])
    assert cached.run(nodes=[gun]) == []
    assert cached.run(nodes=[cat]) == []  # LlamaIndex's cache answers for the text: documented
    uncached = IngestionPipeline(transformations=[SafeCLIPImageFilter(planted_guard)],
                                 disable_cache=True)
    assert uncached.run(nodes=[gun]) == []
    assert [n.node_id for n in uncached.run(nodes=[cat])] == ["cat"]
