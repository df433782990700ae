"""ChatLlava's trust boundary: every placement of issue 10 is judged; what LLaVA sees was judged.

A recording hook on LLaVA's vision tower sees every ``pixel_values`` the model really
receives; the flagged image's pixels (as LLaVA's processor makes them) must never be
among them, and a benign image in the same placement must arrive exactly as judged.
Real tiny LLaVA; the guard is a planted encoder (a standalone, non-fused guard) and, for
the fused path, the real tiny CLIP whose tower is LLaVA's.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from PIL import Image

from safeclip_guardrail import (
    ConceptBank,
    GuardConfig,
    GuardrailViolation,
    ImageInputError,
    SafeCLIPGuard,
)
from safeclip_guardrail.langchain import ChatLlava, guard_messages
from safeclip_guardrail.testing import FakeFetcher, PlantedEncoder, build_tiny_llava
from safeclip_guardrail.testing.pictures import b64, data_url, encode
from tests._pathwatch import PathWatch
from tests._two_class import two_class_guard

PLANTED = PlantedEncoder(ConceptBank.default())
FLAG = PLANTED.plant("gun", size=(32, 32))
OK = PLANTED.plant("neutral", size=(32, 32))


def _ask(block: Any, text: str = "What is this?") -> list[Any]:
    return [block, {"type": "text", "text": text}]


Placement = Callable[[Image.Image], list[BaseMessage]]

PLACEMENTS: dict[str, Placement] = {
    "human_v1": lambda im: [HumanMessage(_ask({"type": "image", "base64": b64(encode(im)),
                                                "mime_type": "image/png"}))],
    "system": lambda im: [SystemMessage(_ask({"type": "image", "base64": b64(encode(im)),
                                              "mime_type": "image/png"}, "Be careful.")),
                          HumanMessage("Hello?")],
    "assistant": lambda im: [HumanMessage("Show me."),
                             AIMessage(_ask({"type": "image_url", "image_url": {"url": data_url(encode(im))}},
                                            "Here.")),
                             HumanMessage("And?")],
    "tool": lambda im: [HumanMessage("Fetch it."),
                        ToolMessage(_ask({"type": "image", "source": {
                            "type": "base64", "media_type": "image/png", "data": b64(encode(im))}}),
                            tool_call_id="call-1")],
    "developer_chat_message": lambda im: [ChatMessage(role="developer", content=_ask(
        {"type": "input_image", "image_url": data_url(encode(im))}))],
    "file_pdf_mime": lambda im: [HumanMessage(_ask({"type": "file", "base64": b64(encode(im)),
                                                    "mime_type": "application/pdf"}))],
    "file_no_mime": lambda im: [HumanMessage(_ask({"type": "file", "base64": b64(encode(im))}))],
    "file_upper_mime": lambda im: [HumanMessage(_ask({"type": "file", "base64": b64(encode(im)),
                                                      "mime_type": " IMAGE/PNG "}))],
    "openai_file_data": lambda im: [HumanMessage(_ask({"type": "file", "file": {
        "file_data": data_url(encode(im)), "filename": "scan.pdf"}}))],
    "non_standard": lambda im: [HumanMessage(_ask({"type": "non_standard", "value": {
        "type": "image_url", "image_url": {"url": data_url(encode(im))}}}))],
    "data_url_string": lambda im: [HumanMessage(data_url(encode(im)))],
    "data_url_text_block": lambda im: [HumanMessage([{"type": "text", "text": data_url(encode(im))}])],
    "tool_result_nested": lambda im: [HumanMessage([{
        "type": "tool_result", "tool_use_id": "t1",
        "content": [{"type": "image", "base64": b64(encode(im)), "mime_type": "image/png"},
                    {"type": "text", "text": "the screenshot"}]}])],
    "additional_kwargs_images": lambda im: [HumanMessage("Look.",
                                                         additional_kwargs={"images": [b64(encode(im))]})],
}

ALWAYS_UNREADABLE: dict[str, Placement] = {
    # a benign source next to the flagged one: judged on neither, forwarded never
    "two_sources": lambda im: [HumanMessage(_ask({"type": "image", "base64": b64(encode(OK)),
                                                  "mime_type": "image/png", "url": data_url(encode(im))}))],
    "anthropic_source_and_base64": lambda im: [HumanMessage(_ask({
        "type": "image", "base64": b64(encode(OK)), "mime_type": "image/png",
        "source": {"type": "base64", "media_type": "image/png", "data": b64(encode(im))}}))],
    "image_url_and_url": lambda im: [HumanMessage(_ask({
        "type": "image_url", "image_url": {"url": data_url(encode(OK))}, "url": data_url(encode(im))}))],
}


@pytest.fixture(scope="module")
def llava_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_trust"), clip_dir=tiny_clip_dir)


@pytest.fixture(scope="module")
def base(llava_dir: Path) -> ChatLlava:
    return ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                     max_new_tokens=2)


def _with_guard(base: ChatLlava, guard: SafeCLIPGuard | None) -> ChatLlava:
    """Same loaded model (ChatLlava caches loaded checkpoints), another guard."""
    return ChatLlava.from_pretrained(base.model, device="cpu", dtype="float32", guard=guard,
                                     max_new_tokens=2)


def _planted_guard(**options: Any) -> SafeCLIPGuard:
    return SafeCLIPGuard(PLANTED, config=GuardConfig(**options))


class TowerRecorder:
    """Every ``pixel_values`` batch LLaVA's vision tower receives (the model boundary)."""

    def __init__(self, llm: ChatLlava) -> None:
        self.llm = llm
        self.rows: list[torch.Tensor] = []
        tower = llm.hf_model.model.vision_tower
        self._handle = tower.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _m: Any, args: Any, kwargs: Any) -> None:
        pixels = args[0] if args else kwargs["pixel_values"]
        self.rows.extend(pixels.detach().clone())

    def pixels_of(self, img: Image.Image) -> torch.Tensor:
        return self.llm.processor.image_processor(images=[img], return_tensors="pt")[
            "pixel_values"][0]

    def saw(self, img: Image.Image) -> bool:
        target = self.pixels_of(img)
        return any(r.shape == target.shape and torch.allclose(r, target, atol=1e-6)
                   for r in self.rows)

    def close(self) -> None:
        self._handle.remove()


def _run(llm: ChatLlava, msgs: list[BaseMessage]) -> tuple[AIMessage, TowerRecorder]:
    rec = TowerRecorder(llm)
    try:
        msg = llm.invoke(msgs)
    finally:
        rec.close()
    assert isinstance(msg, AIMessage)
    return msg, rec


# ---------------------------------------------------------------------- placements
@pytest.mark.parametrize("mode", ["block", "redact"])
@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_flagged_image_in_any_placement_never_reaches_llava(base: ChatLlava, name: str,
                                                            mode: str) -> None:
    llm = _with_guard(base, _planted_guard(mode=mode))
    msg, rec = _run(llm, PLACEMENTS[name](FLAG))
    result = msg.response_metadata["safeclip"]
    assert result.categories == ["gun"] and result.action == mode
    assert not rec.saw(FLAG)
    if mode == "block":
        assert msg.response_metadata["finish_reason"] == "guardrail" and not rec.rows
    else:
        assert msg.response_metadata["finish_reason"] != "guardrail"


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_benign_image_in_any_placement_reaches_llava_as_judged(base: ChatLlava, name: str) -> None:
    llm = _with_guard(base, _planted_guard(mode="block"))
    msg, rec = _run(llm, PLACEMENTS[name](OK))
    result = msg.response_metadata["safeclip"]
    assert result.action == "pass" and len(result.verdicts) == 1
    assert rec.saw(OK) and len(rec.rows) == 1  # exactly the judged image, once


@pytest.mark.parametrize("name", sorted(ALWAYS_UNREADABLE))
def test_two_sources_fail_closed(base: ChatLlava, name: str) -> None:
    llm = _with_guard(base, _planted_guard(mode="annotate"))
    msg, rec = _run(llm, ALWAYS_UNREADABLE[name](FLAG))
    result = msg.response_metadata["safeclip"]
    assert result.categories == ["unreadable"] and result.action == "block"
    assert "sources" in result.verdicts[0].error
    assert not rec.rows
    with pytest.raises(ImageInputError, match="sources"):  # no guard: an error, not a pick
        base.invoke(ALWAYS_UNREADABLE[name](FLAG))


def test_all_placements_in_one_conversation(base: ChatLlava) -> None:
    msgs = [m for name in sorted(PLACEMENTS) for m in PLACEMENTS[name](OK)]
    llm = _with_guard(base, _planted_guard(mode="redact"))
    msg, rec = _run(llm, msgs)
    assert len(msg.response_metadata["safeclip"].verdicts) == len(PLACEMENTS)
    assert len(rec.rows) == len(PLACEMENTS) and rec.saw(OK)
    msgs = [m for name in sorted(PLACEMENTS)  # one flagged image among them
            for m in PLACEMENTS[name](FLAG if name == "file_pdf_mime" else OK)]
    msg, rec = _run(llm, msgs)
    assert msg.response_metadata["safeclip"].categories == ["gun"]
    assert len(rec.rows) == len(PLACEMENTS) - 1 and not rec.saw(FLAG)


# ---------------------------------------------------------------------- paths
@pytest.mark.parametrize("guarded", [True, False])
def test_a_path_in_message_content_is_never_opened(base: ChatLlava, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   guarded: bool) -> None:
    secret = tmp_path / "server_secret_image.png"
    secret.write_bytes(encode(OK))
    llm = _with_guard(base, _planted_guard(mode="annotate") if guarded else None)
    shapes = [
        {"type": "image_url", "image_url": {"url": str(secret)}},
        {"type": "image_url", "image_url": str(secret)},
        {"type": "image", "url": str(secret)},
        {"type": "image", "source_type": "url", "url": str(secret)},
        {"type": "image", "url": f"file://{secret}"},
        {"type": "input_image", "image_url": "~/" + secret.name},
    ]
    PathWatch.arm(secret.name, monkeypatch)
    try:
        for block in shapes:
            msgs = [HumanMessage(_ask(block))]
            if guarded:
                msg, rec = _run(llm, msgs)
                assert msg.response_metadata["safeclip"].action == "block"
                error = msg.response_metadata["safeclip"].verdicts[0].error
                assert "never read from messages" in error
                assert not rec.rows
            else:
                with pytest.raises(ImageInputError, match="never read from messages"):
                    llm.invoke(msgs)
    finally:
        hits = PathWatch.disarm()
    assert hits == []


# ---------------------------------------------------------------------- unreadable
BAD = {"type": "image", "base64": base64.b64encode(b"not an image at all").decode(),
       "mime_type": "image/png"}


@pytest.mark.parametrize("on_error", ["block", "raise", "allow"])
@pytest.mark.parametrize("mode", ["rewrite", "annotate", "redact", "block"])
def test_unreadable_image_same_action_as_the_runnable(base: ChatLlava, on_error: str,
                                                      mode: str) -> None:
    guard = _planted_guard(mode=mode, on_error=on_error)
    llm = _with_guard(base, guard)
    msgs = [HumanMessage(_ask(BAD))]
    if on_error == "raise":
        with pytest.raises(ImageInputError):
            guard_messages(guard, msgs)
        with pytest.raises(ImageInputError):
            llm.invoke(msgs)
        return
    runnable = guard_messages(guard, msgs).result
    msg, rec = _run(llm, msgs)
    mine = msg.response_metadata["safeclip"]
    assert mine.action == runnable.action
    assert [v.category for v in mine.verdicts] == [v.category for v in runnable.verdicts]
    assert (msg.response_metadata["finish_reason"] == "guardrail") == (runnable.action == "block")
    assert not rec.rows  # never sent, whatever on_error says
    assert "<image>" not in llm.render_prompt(msgs) or runnable.action == "block"


def test_one_bad_input_in_a_batch_leaves_the_others(base: ChatLlava) -> None:
    llm = _with_guard(base, _planted_guard(mode="raise", on_error="raise"))
    good = [HumanMessage(_ask({"type": "image", "base64": b64(encode(OK)), "mime_type": "image/png"}))]
    flagged = [HumanMessage(_ask({"type": "image", "base64": b64(encode(FLAG)),
                                  "mime_type": "image/png"}))]
    out = llm.batch([[HumanMessage(_ask(BAD))], good, flagged], return_exceptions=True)
    assert isinstance(out[0], ImageInputError)
    assert isinstance(out[1], AIMessage) and out[1].response_metadata["safeclip"].action == "pass"
    assert isinstance(out[2], GuardrailViolation) and out[2].result.categories == ["gun"]


# ---------------------------------------------------------------------- judged pixels
def test_llava_gets_the_judged_pixels_of_an_ambiguous_image(base: ChatLlava) -> None:
    """RGBA / palette images: LLaVA receives the guard's decode (alpha over white), the
    pixels the guard judged — not another decoder's reading of the bytes."""
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste(OK.convert("RGBA").crop((0, 0, 16, 32)), (0, 0))
    guard = _planted_guard(mode="annotate")
    decoded = guard.decode(encode(rgba))
    judged = decoded.image  # alpha over white: what is forwarded
    for reading in decoded.frames:  # the alpha-dropped reading is judged too, not forwarded
        PLANTED.register(reading, PLANTED.embedding_for("neutral"))
    llm = _with_guard(base, guard)
    msg, rec = _run(llm, [HumanMessage(_ask({"type": "image", "base64": b64(encode(rgba)),
                                             "mime_type": "image/png"}))])
    assert msg.response_metadata["safeclip"].verdicts[0].error is None
    assert rec.saw(judged) and len(rec.rows) == 1
    other = rgba.convert("RGB")  # a plain decoder drops alpha to black, not white
    assert not rec.saw(other)


def test_fused_guard_same_placements(llava_dir: Path, tiny_clip_dir: Path) -> None:
    """The fused path (CLS from LLaVA's own tower pass) judges every placement too."""
    rng = np.random.default_rng(11)
    flag, ok = (Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)) for _ in range(2))
    guard = two_class_guard(tiny_clip_dir, flag, ok, mode="redact")
    llm = ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                    max_new_tokens=2, guard=guard)
    assert llm.guard_is_fused
    for name in ("system", "assistant", "file_pdf_mime", "data_url_string", "non_standard"):
        seen: list[Any] = []
        real = llm.hf_model.generate

        def spy(real: Any = real, seen: list[Any] = seen, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return real(**kwargs)

        object.__setattr__(llm.hf_model, "generate", spy)
        try:
            msg = llm.invoke(PLACEMENTS[name](flag) + PLACEMENTS["human_v1"](ok))
        finally:
            del llm.hf_model.generate
        result = msg.response_metadata["safeclip"]
        assert [v.flagged for v in result.verdicts] == [True, False], name
        # one image (the benign one) reaches generation, as the reused tower output
        features = seen[0]["mm_encoder_outputs"]["image"].pooler_output
        assert len(features) == 1 and "pixel_values" not in seen[0]


# ---------------------------------------------------------------------- allowed URLs
@pytest.mark.parametrize("img", ["ok", "flag"])
def test_an_allowed_url_is_fetched_once_and_llava_sees_those_bytes(
        base: ChatLlava, img: str) -> None:
    picture = OK if img == "ok" else FLAG
    url = "http://images.example.com/photo.png"
    fetcher = FakeFetcher({url: encode(picture)})
    guard = SafeCLIPGuard(PLANTED, fetcher=fetcher, config=GuardConfig(
        mode="block", images={"allow_urls": True, "allowed_hosts": ["images.example.com"]}))
    llm = _with_guard(base, guard)
    msg, rec = _run(llm, [HumanMessage(_ask({"type": "image_url", "image_url": {"url": url}}))])
    assert fetcher.calls == [url]  # judged on the fetched bytes; never fetched a second time
    if img == "ok":
        assert msg.response_metadata["safeclip"].action == "pass" and rec.saw(OK)
    else:
        assert msg.response_metadata["finish_reason"] == "guardrail" and not rec.rows


def test_a_url_the_options_forbid_never_reaches_the_fetcher(base: ChatLlava) -> None:
    url = "http://images.example.com/photo.png"
    fetcher = FakeFetcher({url: encode(OK)})
    guard = SafeCLIPGuard(PLANTED, fetcher=fetcher, config=GuardConfig(mode="block"))
    msg, rec = _run(_with_guard(base, guard),
                    [HumanMessage(_ask({"type": "image_url", "image_url": {"url": url}}))])
    assert fetcher.calls == [] and not rec.rows
    assert msg.response_metadata["finish_reason"] == "guardrail"
