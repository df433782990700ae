"""What is judged is what is sent: the core library's surfaces run the trust contract.

The contract (:mod:`safeclip_guardrail.testing.trust`) puts one picture in every placement
of issues 10 and 19 and since (:data:`~safeclip_guardrail.testing.trust.PLACEMENTS`), with
the flagged picture B and with a benign picture A, through a surface in every call style, in
front of a recording model that decodes every picture it receives; each ``Test...`` class
below is one surface and supplies only ``run(conversation, style)`` and its styles:

- ``wrap`` and ``plain_chain``: ``SafeCLIPGuardrail.wrap(model)`` and ``guardrail | model``;
- ``chat_llava``: ChatLlava, LLaVA itself the model (tests/_trust_chat.py);
- ``dicts``: ``guard_dict_messages`` / ``aguard_conversations`` (tests/_trust_service.py);
- ``service_litellm``: the served LiteLLM Generic Guardrail route on loopback;
- ``rag``: retrieved Documents through SafeCLIPDocumentGuard (the retrieval contract).

The agent middleware, LangGraph, NeMo, LlamaIndex and the LiteLLM guardrail prove the same
promise in their own packages (``integrations/*/tests/test_trust_contract.py``). Below the
surfaces: the referee can fail, one bad input of a batch leaves the others intact, the
audit hook is live, and the ``/v1/guard`` route forwards only judged pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeclip_guardrail import GuardrailViolation, SafeCLIPGuardrail
from safeclip_guardrail.langchain.testing import (
    ANSWER,
    RUNNABLE_STYLES,
    RecordingChatModel,
    as_langchain,
    call,
    text_of,
)
from safeclip_guardrail.testing.documents import MP4, docx_of, svg_of, wav
from safeclip_guardrail.testing.pictures import animated_png, b64, data_url
from safeclip_guardrail.testing.trust import (
    PLACEMENTS,
    Conversation,
    Outcome,
    Received,
    TrustContract,
    assert_only_judged,
    frames_of,
    human,
    image_url_block,
    make_images,
    pixel_key,
    scan,
    watch_paths,
)
from tests._trust_chat import ChatLlavaSurface, RagDocumentsSurface
from tests._trust_service import DictsSurface, ServiceLiteLLMRouteSurface


# ---------------------------------------------------------------------- surfaces
class TestWrap(TrustContract):
    name = "wrap"
    styles = RUNNABLE_STYLES

    def run(self, conversation: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        guarded = SafeCLIPGuardrail(guard=self.images.guard, mode="block").wrap(model)
        out = call(guarded, as_langchain(conversation), style)
        assert not isinstance(out, Exception), out
        blocked = not model.requests
        assert blocked == (ANSWER not in text_of(out)), text_of(out)
        return Outcome(blocked, model.received(), bool(model.requests))


class TestPlainChain(TrustContract):
    name = "plain_chain"
    styles = ("invoke", "ainvoke", "batch", "stream", "astream")

    def run(self, conversation: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        chain = SafeCLIPGuardrail(guard=self.images.guard, mode="block") | model
        try:
            out = call(chain, as_langchain(conversation), style)
        except GuardrailViolation as exc:
            out = exc
        if isinstance(out, Exception):
            assert isinstance(out, GuardrailViolation), repr(out)
            assert out.refusal and not model.requests
        return Outcome(isinstance(out, GuardrailViolation), model.received(),
                       bool(model.requests))


class TestChatLlava(ChatLlavaSurface):
    pass


class TestDicts(DictsSurface):
    pass


class TestServiceLiteLLMRoute(ServiceLiteLLMRouteSurface):
    pass


class TestRagDocuments(RagDocumentsSurface):
    pass


# ---------------------------------------------------------------------- the referee can fail
def test_the_referee_sees_what_an_unguarded_model_gets(tmp_path: Path) -> None:
    """Without a guard, the recording model finds B in every placement that forwards it:
    the matrix above can fail."""
    imgs = make_images(tmp_path)
    missed = []
    for placement in PLACEMENTS:
        if placement.name.startswith(("remote_url", "nonfinite", "path_", "file_uri",
                                      "animation", "alpha", "wav_", "mp4_", "url_in",
                                      "responses_input_file_id")) or placement.flagged == "text":
            continue
        conv = placement.build(imgs, imgs.flagged)
        model = RecordingChatModel()
        try:
            model.invoke(as_langchain(conv))
        except (ValueError, TypeError):  # langchain-core itself refuses it (no MIME, odd type)
            continue
        received = model.received()
        if placement.benign == "document":  # a PDF holding B
            if not set(received.documents) & imgs.forbidden_docs:
                missed.append(placement.name)
        elif pixel_key(frames_of(imgs.flagged)[0]) not in received.frames:  # type: ignore[index]
            missed.append(placement.name)
    assert not missed, missed
    raw = Received()
    scan(human(image_url_block(animated_png(imgs.benign, imgs.flagged))), raw)
    assert set(raw.frames) & imgs.forbidden  # the later frame is there to be found


def test_the_audit_hook_sees_a_guard_check_of_a_trusted_path(tmp_path: Path) -> None:
    """The hook is live: the application's own guard.check(path) does show up."""
    imgs = make_images(tmp_path)
    p = tmp_path / "trusted.png"
    p.write_bytes(imgs.benign)
    with watch_paths({str(p)}) as opened:
        imgs.guard.check(p)
    assert any(event == "open" for event, _ in opened)


# ---------------------------------------------------------------------- batches, non-finite
def _unreadable_conv() -> Conversation:
    return [human({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFu"}})]


@pytest.mark.parametrize("surface_name", ["wrap", "plain_chain"])
def test_one_bad_input_in_a_batch_leaves_the_others_intact(surface_name: str,
                                                           tmp_path: Path) -> None:
    """(The middleware and LangGraph: integrations/langchain/tests/test_trust_contract.py.)"""
    from safeclip_guardrail import ImageInputError

    imgs = make_images(tmp_path)
    guard = imgs.guard.with_options(on_error="raise")
    model = RecordingChatModel()
    guardrail = SafeCLIPGuardrail(guard=guard, mode="block")
    runnable: Any = guardrail.wrap(model) if surface_name == "wrap" else guardrail | model
    convs = [[human(image_url_block(imgs.benign))], _unreadable_conv(),
             [human(image_url_block(imgs.benign2))]]
    out = runnable.batch([as_langchain(c) for c in convs], return_exceptions=True)
    assert isinstance(out[1], ImageInputError), out[1]
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception), out
    assert len(model.requests) == 2
    got = set(model.received().frames)
    assert {pixel_key(frames_of(imgs.benign)[0]),  # type: ignore[index]
            pixel_key(frames_of(imgs.benign2)[0])} <= got  # type: ignore[index]
    assert_only_judged(model.received(), imgs, surface_name)


def test_nonfinite_embedding_is_an_error_verdict(tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    frames = frames_of(imgs.nonfinite) or []
    assert np.isnan(imgs.encoder.encode_images(frames).final).all()  # the planted embedding
    verdict = imgs.guard.check(imgs.nonfinite)
    assert verdict.flagged and verdict.error and verdict.category == "unreadable"


# ---------------------------------------------------------------------- the /v1/guard route
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_guard_route_forwards_only_judged_pictures(tmp_path: Path) -> None:
    """``POST /v1/guard`` with ``forward``: each string is judged or unreadable; what it hands
    back to forward holds only judged frames (an animation's unjudged frame is gone)."""
    import httpx

    from safeclip_guardrail.serve import BackgroundServer, create_app

    imgs = make_images(tmp_path)
    pdf = imgs.pdf(imgs.benign)
    documents = imgs.judges_documents()
    payloads = {  # name -> (string, expected: judged | unreadable)
        "benign": (data_url(imgs.benign), "judged"),
        "apng": (data_url(animated_png(imgs.benign, imgs.flagged)), "judged"),
        "pdf_base64": (b64(pdf), "judged" if documents else "unreadable"),
        "pdf_data_url": (data_url(pdf, "application/pdf"), "judged" if documents else "unreadable"),
        "wav": (b64(wav()), "unreadable"),
        "mp4": (b64(MP4), "unreadable"),
        "docx": (b64(docx_of(imgs.flagged)), "unreadable"),
        "svg": (data_url(svg_of(imgs.flagged), "image/svg+xml"), "unreadable"),
    }
    with BackgroundServer(create_app(imgs.guard)) as srv:
        r = httpx.post(f"{srv.url}/v1/guard", timeout=60, json={
            "images": [s for s, _ in payloads.values()], "forward": True})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    for (name, (_, expected)), verdict, forward in zip(
            payloads.items(), body["result"]["verdicts"], body["forward"], strict=True):
        if expected == "unreadable":
            assert verdict["category"] == "unreadable" and forward is None, (name, verdict)
            continue
        assert verdict["error"] is None and not verdict["flagged"] and forward, (name, verdict)
        received = Received()
        scan(forward, received)
        assert received.frames or received.documents, name
        assert_only_judged(received, imgs, f"/v1/guard {name}")
