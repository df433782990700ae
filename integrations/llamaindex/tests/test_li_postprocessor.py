"""SafeCLIPImagePostprocessor on real LlamaIndex objects: query engine, retriever, nodes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    MediaResource,
    MetadataMode,
    Node,
    NodeWithScore,
    TextNode,
)
from safeclip_guardrail_llamaindex import SafeCLIPImagePostprocessor, node_image_source

from safeclip_guardrail import ConfigurationError, GuardConfig, ImageInputError, SafeCLIPGuard
from safeclip_guardrail.testing import FakeFetcher, PlantedEncoder


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _corpus(planted: PlantedEncoder, tmp_path: Path) -> tuple[list[BaseNode], bytes, bytes]:
    gun = planted.plant_bytes("gun")
    cat = planted.plant_bytes("neutral")
    (tmp_path / "cat.png").write_bytes(cat)
    nodes = [
        ImageNode(image=base64.b64encode(gun).decode(), image_mimetype="image/png",
                  text="photo from the forum"),
        Node(image_resource=MediaResource(path=tmp_path / "cat.png"),
             text_resource=MediaResource(text="photo of a cat")),
        TextNode(text="a plain text note"),
    ]
    return nodes, gun, cat


def _engine(nodes, llm, postprocessors):
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    return RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=10), llm=llm, multimodal=True,
        node_postprocessors=postprocessors,
    )


def test_without_the_postprocessor_the_llm_sees_the_flagged_image(planted, tmp_path, recorder):
    nodes, gun, _ = _corpus(planted, tmp_path)
    _engine(nodes, recorder.llm, []).query("what is in the pictures?")
    assert _sha(gun) in recorder.image_hashes  # the test below can fail


def test_query_engine_never_hands_a_flagged_image_to_the_llm(planted, planted_guard, tmp_path,
                                                             recorder):
    nodes, gun, cat = _corpus(planted, tmp_path)
    engine = _engine(nodes, recorder.llm, [SafeCLIPImagePostprocessor(planted_guard)])
    response = engine.query("what is in the pictures?")
    assert recorder.calls >= 1
    assert _sha(gun) not in recorder.image_hashes
    assert _sha(cat) in recorder.image_hashes
    kinds = sorted(type(n.node).__name__ for n in response.source_nodes)
    assert kinds == ["Node", "TextNode"]
    assert planted.forward_counter.count == 1  # both images in one encoder pass


async def test_async_query_engine_drops_the_flagged_image(planted, planted_guard, tmp_path,
                                                          recorder):
    nodes, gun, cat = _corpus(planted, tmp_path)
    engine = _engine(nodes, recorder.llm, [SafeCLIPImagePostprocessor(planted_guard)])
    await engine.aquery("what is in the pictures?")
    assert _sha(gun) not in recorder.image_hashes
    assert _sha(cat) in recorder.image_hashes


async def test_apostprocess_nodes_matches_sync(planted, planted_guard):
    nodes = [NodeWithScore(node=Node(image_resource=MediaResource(data=planted.plant_bytes(t))),
                           score=1.0) for t in ("gun", "neutral", "porn")]
    pp = SafeCLIPImagePostprocessor(planted_guard)
    sync = pp.postprocess_nodes(nodes, query_str="q")
    asyn = await pp.apostprocess_nodes(nodes, query_str="q")
    ids = [nodes[1].node.node_id]
    assert [n.node.node_id for n in sync] == [n.node.node_id for n in asyn] == ids


def test_annotate_keeps_nodes_and_hides_the_verdict_from_prompts(planted, planted_guard):
    flagged = ImageNode(image=base64.b64encode(planted.plant_bytes("gun")).decode(),
                        text="caption", metadata={"file": "a.png"})
    nodes = [NodeWithScore(node=flagged, score=0.5)]
    out = SafeCLIPImagePostprocessor(planted_guard, action="annotate").postprocess_nodes(nodes)
    assert len(out) == 1 and out[0].score == 0.5
    verdict = out[0].node.metadata["safeclip"]
    assert verdict["flagged"] is True and verdict["category"] == "gun"
    assert "safeclip" not in out[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "file: a.png" in out[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "safeclip" not in flagged.metadata  # the stored node is not changed


def test_unreadable_and_unfetchable_images_fail_closed(planted_guard, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    nodes = [
        NodeWithScore(node=ImageNode(image_path=str(tmp_path / "missing.png"))),
        NodeWithScore(node=ImageNode(image_path=str(tmp_path / "broken.png"))),
        NodeWithScore(node=ImageNode(image_url="https://example.com/x.png")),
        NodeWithScore(node=TextNode(text="no image here")),
    ]
    out = SafeCLIPImagePostprocessor(planted_guard).postprocess_nodes(nodes)
    assert [type(n.node).__name__ for n in out] == ["TextNode"]
    allow = planted_guard.with_options(on_error="allow")
    assert len(SafeCLIPImagePostprocessor(allow).postprocess_nodes(nodes)) == 4


def test_node_image_source_reads_every_image_field(planted, tmp_path):
    png = planted.plant_bytes("neutral")
    (tmp_path / "p.png").write_bytes(png)
    b = base64.b64encode(png).decode()
    assert node_image_source(TextNode(text="x")) is None
    assert node_image_source(ImageNode(text="no image")) is None
    assert node_image_source(ImageNode(image=b, image_mimetype="image/png")).data == png
    assert node_image_source(ImageNode(image="data:image/png;base64," + b)).data == png
    # image_path is set by the application's ingestion: a trusted path
    assert node_image_source(ImageNode(image_path=str(tmp_path / "p.png"))).data == png
    assert node_image_source(ImageNode(image_url="data:image/png;base64," + b)).data == png
    assert node_image_source(Node(image_resource=MediaResource(data=png))).data == png
    assert node_image_source(Node(image_resource=MediaResource(path=tmp_path / "p.png"))).data \
        == png
    assert node_image_source(Node(text_resource=MediaResource(text="t"))) is None
    # image_url / image data are content: never a path, a remote URL only when allowed
    for node in (ImageNode(image_url=str(tmp_path / "p.png")),
                 ImageNode(image_url=(tmp_path / "p.png").as_uri()),
                 ImageNode(image=str(tmp_path / "p.png")),
                 ImageNode(image_url="https://example.com/x.png")):
        with pytest.raises(ImageInputError):
            node_image_source(node)


def test_kept_nodes_hold_only_the_judged_bytes(planted, planted_guard, tmp_path):
    cat = planted.plant_bytes("neutral")
    (tmp_path / "cat.png").write_bytes(cat)
    nodes = [NodeWithScore(node=ImageNode(image_path=str(tmp_path / "cat.png"),
                                          image_url="https://example.com/other.png")),
             NodeWithScore(node=Node(image_resource=MediaResource(path=tmp_path / "cat.png")))]
    out = SafeCLIPImagePostprocessor(planted_guard).postprocess_nodes(nodes)
    (tmp_path / "cat.png").write_bytes(planted.plant_bytes("gun"))  # swapped after the check
    first, second = (n.node for n in out)
    assert first.image_path is None and first.image_url is None
    assert base64.b64decode(first.image) == cat
    assert second.image_resource.path is None
    assert base64.b64decode(second.image_resource.data) == cat


def test_bad_options_are_usage_errors(planted_guard):
    with pytest.raises(ConfigurationError, match="action must be"):
        SafeCLIPImagePostprocessor(planted_guard, action="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a SafeCLIPGuard"):
        SafeCLIPImagePostprocessor("llava-1.5")  # type: ignore[arg-type]


def test_real_tiny_clip_through_the_public_loader(tiny_clip_dir, planted):
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    image = planted.plant_bytes("neutral")  # any real PNG; the tiny CLIP has random weights
    nodes = [NodeWithScore(node=Node(image_resource=MediaResource(data=image)), score=1.0)]
    out = SafeCLIPImagePostprocessor(guard, action="annotate").postprocess_nodes(nodes)
    verdict = out[0].node.metadata["safeclip"]
    assert verdict["error"] is None and verdict["image_sha256"] == _sha(image)
    assert sum(verdict["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_image_urls_go_through_the_guards_fetcher(planted):
    url = "https://images.example.com/x.png"
    fetcher = FakeFetcher({url: planted.plant_bytes("gun")})
    guard = SafeCLIPGuard(planted, fetcher=fetcher, config=GuardConfig(
        images={"allow_urls": True, "allowed_hosts": ["images.example.com"]}))
    nodes = [NodeWithScore(node=ImageNode(image_url=url)),
             NodeWithScore(node=Node(image_resource=MediaResource(url=url)))]
    assert SafeCLIPImagePostprocessor(guard).postprocess_nodes(nodes) == []  # both flagged
    assert fetcher.calls == [url, url]
    fetcher.calls.clear()
    off = SafeCLIPGuard(planted, fetcher=fetcher)  # URLs off: refused, never fetched
    assert SafeCLIPImagePostprocessor(off).postprocess_nodes(nodes) == []
    assert fetcher.calls == []
