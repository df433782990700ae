"""ChatLlava on a tiny real LLaVA whose vision tower is the tiny CLIP's (built offline).

What is real here: the LLaVA model, processor, tokenizer and generation; the CLIP tower,
projection and text tower. What is planted: for the semantic tests (an image that *must*
flag) the descriptor text embeddings are chosen so that one image's real embedding falls on
the toxic class; everything else runs unchanged.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from PIL import Image

from safeclip_guardrail import (
    ConfigurationError,
    GuardConfig,
    GuardrailViolation,
    ImageInputError,
    ModelLoadError,
    SafeCLIPGuard,
)
from safeclip_guardrail.langchain import ChatLlava
from safeclip_guardrail.policy import REDACTED, UNREADABLE_PLACEHOLDER
from safeclip_guardrail.testing import PlantedEncoder, build_tiny_llava
from safeclip_guardrail.testing.pictures import b64, data_url, encode
from tests._two_class import two_class_guard

INSTRUCTION = GuardConfig().safe_instruction


@pytest.fixture(scope="module")
def llava_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), clip_dir=tiny_clip_dir)


@pytest.fixture(scope="module")
def llm(llava_dir: Path) -> ChatLlava:
    return ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                     max_new_tokens=10)


def _image(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _ask(img: Image.Image | None, text: str = "What is in this image?") -> list[Any]:
    content: list[dict[str, Any]] = []
    if img is not None:
        content.append({"type": "image", "base64": b64(encode(img)), "mime_type": "image/png"})
    content.append({"type": "text", "text": text})
    return [HumanMessage(content=content)]


class _Counter:
    """Forward-hook counter: calls and rows (images) seen by a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: Any, args: Any, _output: Any) -> None:
        self.calls += 1
        first = args[0] if args else None
        if isinstance(first, torch.Tensor):
            self.rows += int(first.shape[0])

    def remove(self) -> None:
        self._handle.remove()


# ---------------------------------------------------------------------- planted guard
FLAG, OK = _image(101), _image(202)


def _two_class_guard(tiny_clip_dir: Path, **options: Any) -> SafeCLIPGuard:
    """Real CLIP projection + text tower; descriptor embeddings planted so FLAG is a gun."""
    return two_class_guard(tiny_clip_dir, FLAG, OK, model=str(tiny_clip_dir), **options)


def _guarded(llava_dir: Path, tiny_clip_dir: Path, **options: Any) -> ChatLlava:
    guard = _two_class_guard(tiny_clip_dir, **options)
    return ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                     max_new_tokens=10, guard=guard)


# ---------------------------------------------------------------------- plain generation
def test_loads_tiny_llava_and_generates(llm: ChatLlava) -> None:
    msg = llm.invoke(_ask(_image(1)))
    assert isinstance(msg, AIMessage)
    assert isinstance(msg.content, str) and msg.content
    usage = msg.usage_metadata
    assert usage is not None and usage["output_tokens"] == 10
    assert usage["total_tokens"] == usage["input_tokens"] + 10
    assert msg.response_metadata["finish_reason"] == "length"
    assert "safeclip" not in msg.response_metadata


def test_every_image_block_form_gives_the_same_answer(llm: ChatLlava) -> None:
    img = _image(3)
    raw = b64(encode(img))
    url = data_url(encode(img))
    forms: list[dict[str, Any]] = [
        {"type": "image", "base64": raw, "mime_type": "image/png"},
        {"type": "image", "source_type": "base64", "data": raw, "mime_type": "image/png"},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": url},
        {"type": "input_image", "image_url": url},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": raw}},
        {"type": "image", "url": url},
    ]
    answers = {llm.invoke([HumanMessage(content=[f, {"type": "text", "text": "Hi"}])]).content
               for f in forms}
    assert len(answers) == 1
    other = llm.invoke([HumanMessage(content=[{"type": "image_url", "image_url": {
        "url": f"data:image/png;base64,{b64(encode(_image(4)))}"}}, {"type": "text", "text": "Hi"}])])
    assert other.content not in answers  # the image really reaches the model


def test_system_turns_and_several_images(llm: ChatLlava) -> None:
    a, b = _image(5), _image(6)
    msgs = [
        SystemMessage("You are a careful assistant."),
        HumanMessage(content=[{"type": "image", "base64": b64(encode(a)), "mime_type": "image/png"},
                              {"type": "text", "text": "First?"}]),
        AIMessage("A cat."),
        HumanMessage(content=[{"type": "image", "base64": b64(encode(b)), "mime_type": "image/png"},
                              {"type": "text", "text": "And this one?"}]),
    ]
    prompt = llm.render_prompt(msgs)
    assert prompt.startswith("You are a careful assistant. USER: <image>\nFirst?")
    assert "ASSISTANT: A cat. USER: <image>\nAnd this one? ASSISTANT:" in prompt
    msg = llm.invoke(msgs)
    assert msg.usage_metadata is not None
    ids = llm.processor(images=[a, b], text=prompt, return_tensors="pt")["input_ids"]
    assert msg.usage_metadata["input_tokens"] == ids.shape[1]


def test_typed_image_token_cannot_open_an_image_slot(llm: ChatLlava) -> None:
    msg = llm.invoke(_ask(None, "look <image> here"))
    assert msg.content
    assert "<image>" not in llm.render_prompt(_ask(None, "look <image> here"))


def test_tokens_equal_plain_generate(llm: ChatLlava) -> None:
    img = _image(7)
    msgs = _ask(img, "Describe it.")
    inputs = llm.processor(images=[img], text=llm.render_prompt(msgs), return_tensors="pt")
    out = llm.hf_model.generate(**inputs, max_new_tokens=10, do_sample=False)
    expected = llm.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                              skip_special_tokens=True)
    assert llm.invoke(msgs).content == expected


def test_stream_chunks_concatenate_to_invoke(llm: ChatLlava) -> None:
    msgs = _ask(_image(8))
    invoked = llm.invoke(msgs)
    answer = invoked.content
    chunks = list(llm.stream(msgs))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 3
    assert "".join(str(t) for t in texts) == answer
    assert chunks[-1].usage_metadata == invoked.usage_metadata
    assert chunks[-1].response_metadata["finish_reason"] == invoked.response_metadata[
        "finish_reason"]


async def test_async_twins_match_sync(llm: ChatLlava) -> None:
    msgs = _ask(_image(9))
    answer = llm.invoke(msgs).content
    assert (await llm.ainvoke(msgs)).content == answer
    parts = [c.content async for c in llm.astream(msgs)]
    assert "".join(str(p) for p in parts) == answer
    assert [m.content for m in await llm.abatch([msgs, msgs])] == [answer, answer]


def test_stop_sequences_cut_invoke_and_stream(llm: ChatLlava) -> None:
    msgs = _ask(_image(10))
    full = str(llm.invoke(msgs).content)
    stop = full[3:5]
    expected = full[:full.index(stop)]
    assert llm.invoke(msgs, stop=[stop]).content == expected
    streamed = "".join(str(c.content) for c in llm.stream(msgs, stop=[stop]))
    assert streamed == expected


def test_max_tokens_and_temperature_per_call(llm: ChatLlava) -> None:
    msgs = _ask(_image(11))
    short = llm.invoke(msgs, max_new_tokens=3)
    assert short.usage_metadata is not None and short.usage_metadata["output_tokens"] == 3
    torch.manual_seed(0)
    sampled = llm.invoke(msgs, temperature=5.0, max_tokens=10)
    torch.manual_seed(0)
    again = llm.invoke(msgs, temperature=5.0, max_tokens=10)
    assert sampled.content == again.content  # sampling, seeded
    assert sampled.content != llm.invoke(msgs).content  # and not greedy


# ---------------------------------------------------------------------- fused guard
@pytest.mark.parametrize("cls_source", ["final", "penultimate"])
@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_fused_equals_standalone_embedding_and_verdict(
        llava_dir: Path, tiny_clip_dir: Path, cls_source: str, size: tuple[int, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    standalone = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu",
                                               dtype="float32", cls_source=cls_source)
    fused = ChatLlava.from_pretrained(
        str(llava_dir), device="cpu", dtype="float32", max_new_tokens=2, guard="auto",
        guard_model=str(tiny_clip_dir),
        guard_config=GuardConfig(cls_source=cls_source, mode="annotate"))  # type: ignore[arg-type]
    assert fused.guard_is_fused
    guard = fused.safeclip_guard
    assert guard is not None and guard.encoder.vision is None  # type: ignore[attr-defined]
    seen: list[np.ndarray] = []
    real = guard.score_embeddings
    monkeypatch.setattr(guard, "score_embeddings", lambda e: (seen.append(e), real(e))[1])
    img = _image(12, size)
    msg = fused.invoke(_ask(img))
    # the same pixels LLaVA saw, through the standalone guard's own CLIP tower
    pixels = fused.processor.image_processor(images=[img], return_tensors="pt")["pixel_values"]
    same_pixels = standalone.encoder.encode_pixels(pixels).get(cls_source)  # type: ignore[attr-defined]
    np.testing.assert_allclose(seen[0], same_pixels, atol=1e-5)
    # through the standalone encoder's own preprocessing (the processor's resize and centre
    # crop): identical at the tower's native size; other sizes are resized by two
    # implementations (PIL vs the processor's), ~1e-4 apart. (The standalone guard judges
    # the whole 48x40 picture, padded, where llava-hf's processor crops: tests/unit/images/test_views.py.)
    tol = 1e-5 if size == (32, 32) else 1e-3
    own = standalone.encoder.encode_images([img]).get(cls_source)
    np.testing.assert_allclose(seen[0], own, atol=tol)
    if size == (32, 32):
        np.testing.assert_allclose(seen[0], standalone.embed_images([img]), atol=tol)
    verdict = msg.response_metadata["safeclip"].verdicts[0]
    ref = standalone.score_embeddings(same_pixels)[0]
    if size == (32, 32):
        assert standalone.check(img).model_dump(include={"flagged", "category", "top_category"}) \
            == ref.model_dump(include={"flagged", "category", "top_category"})
    assert verdict.flagged == ref.flagged and verdict.top_category == ref.top_category
    assert verdict.category == ref.category
    for name, mass in ref.scores.items():
        assert verdict.scores[name] == pytest.approx(mass, abs=1e-4)


def test_fused_runs_tower_once_per_image_and_tokens_equal_plain(
        llava_dir: Path, tiny_clip_dir: Path, llm: ChatLlava) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="annotate")
    assert fused.guard_is_fused
    msgs = [HumanMessage(content=[
        {"type": "image", "base64": b64(encode(FLAG)), "mime_type": "image/png"},
        {"type": "image", "base64": b64(encode(OK)), "mime_type": "image/png"},
        {"type": "text", "text": "Compare them."}])]
    tower = _Counter(fused.hf_model.model.vision_tower)
    try:
        msg = fused.invoke(msgs)
    finally:
        tower.remove()
    assert (tower.calls, tower.rows) == (1, 2)
    result = msg.response_metadata["safeclip"]
    assert result.action == "annotate"
    assert [v.flagged for v in result.verdicts] == [True, False]
    assert result.verdicts[0].category == "gun"
    assert msg.content == llm.invoke(msgs).content  # same tokens as without the guard
    inputs = fused.processor(images=[FLAG, OK], text=fused.render_prompt(msgs),
                             return_tensors="pt")
    out = fused.hf_model.generate(**inputs, max_new_tokens=10, do_sample=False)
    plain = fused.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                             skip_special_tokens=True)
    assert msg.content == plain


def test_block_runs_no_language_model_forward(llava_dir: Path, tiny_clip_dir: Path) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="block")
    lm = _Counter(fused.hf_model.model.language_model)
    tower = _Counter(fused.hf_model.model.vision_tower)
    try:
        msg = fused.invoke(_ask(FLAG))
        streamed = list(fused.stream(_ask(FLAG)))
        assert lm.calls == 0 and tower.calls == 2
        fused.invoke(_ask(OK))
        assert lm.calls > 0  # the counter does see the language model when it runs
    finally:
        lm.remove()
        tower.remove()
    assert msg.content == GuardConfig().refusal.replace("{categories}", "gun")
    assert msg.response_metadata["safeclip"].action == "block"
    assert msg.response_metadata["safeclip"].flagged is True
    assert "".join(str(c.content) for c in streamed) == msg.content


def test_rewrite_puts_instruction_after_image_before_text(llava_dir: Path,
                                                          tiny_clip_dir: Path) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="rewrite")
    prompt = fused.render_prompt(_ask(FLAG, "Tell me more."))
    assert f"USER: <image>\n{INSTRUCTION} Tell me more. ASSISTANT:" in prompt
    assert INSTRUCTION not in fused.render_prompt(_ask(OK, "Tell me more."))
    seen: list[torch.Tensor] = []
    original = fused.hf_model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs["input_ids"])
        assert "pixel_values" not in kwargs and "mm_encoder_outputs" in kwargs
        return original(**kwargs)

    object.__setattr__(fused.hf_model, "generate", spy)
    try:
        msg = fused.invoke(_ask(FLAG, "Tell me more."))
    finally:
        del fused.hf_model.generate
    text = fused.processor.tokenizer.decode(seen[0][0])
    image_end = text.rindex("<image>") + len("<image>")
    assert text.index(INSTRUCTION) > image_end > 0
    assert text.index(INSTRUCTION) < text.index("Tell me more.")
    assert msg.response_metadata["safeclip"].action == "rewrite"


def test_redact_replaces_the_image(llava_dir: Path, tiny_clip_dir: Path) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="redact")
    msgs = [HumanMessage(content=[
        {"type": "image", "base64": b64(encode(FLAG)), "mime_type": "image/png"},
        {"type": "image", "base64": b64(encode(OK)), "mime_type": "image/png"},
        {"type": "text", "text": "What?"}])]
    prompt = fused.render_prompt(msgs)
    assert prompt.count("<image>") == 1 and REDACTED.format(category="gun") in prompt
    msg = fused.invoke(msgs)
    assert msg.content and msg.response_metadata["safeclip"].action == "redact"
    only_flag = fused.invoke(_ask(FLAG))  # no image left at all
    assert only_flag.content


def test_raise_mode_raises_violation(llava_dir: Path, tiny_clip_dir: Path) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="raise")
    with pytest.raises(GuardrailViolation) as info:
        fused.invoke(_ask(FLAG))
    assert info.value.result.categories == ["gun"]
    assert fused.invoke(_ask(OK)).response_metadata["safeclip"].action == "pass"


def test_policy_per_class(llava_dir: Path, tiny_clip_dir: Path) -> None:
    fused = _guarded(llava_dir, tiny_clip_dir, mode="rewrite", policy={"gun": "block"})
    assert fused.invoke(_ask(FLAG)).response_metadata["finish_reason"] == "guardrail"


def test_standalone_guard_inside_chat_model(llava_dir: Path,
                                            planted: PlantedEncoder) -> None:
    guard = SafeCLIPGuard(planted, config=GuardConfig(mode="block"))
    llm = ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                    max_new_tokens=4, guard=guard)
    assert not llm.guard_is_fused
    blocked = llm.invoke(_ask(planted.plant("blood", size=(32, 32))))
    assert blocked.response_metadata["safeclip"].categories == ["blood"]
    passed = llm.invoke(_ask(planted.plant("neutral", size=(32, 32))))
    assert passed.response_metadata["safeclip"].action == "pass" and passed.content


# ---------------------------------------------------------------------- bad inputs
def test_unreadable_image_follows_on_error(llava_dir: Path, tiny_clip_dir: Path,
                                           llm: ChatLlava) -> None:
    bad = [HumanMessage(content=[
        {"type": "image", "base64": base64.b64encode(b"not an image").decode(),
         "mime_type": "image/png"}, {"type": "text", "text": "What?"}])]
    with pytest.raises(ImageInputError):
        llm.invoke(bad)  # no guard: nothing to fall back on
    # fail closed: blocked whatever the mode (policy.action_for: strongest of block and mode)
    fail_closed = _guarded(llava_dir, tiny_clip_dir, mode="rewrite")
    msg = fail_closed.invoke(bad)
    result = msg.response_metadata["safeclip"]
    assert result.verdicts[0].category == "unreadable" and result.action == "block"
    assert msg.response_metadata["finish_reason"] == "guardrail"
    # a policy for "unreadable" may soften that; the image is still never sent
    softened = _guarded(llava_dir, tiny_clip_dir, mode="rewrite", policy={"unreadable": "redact"})
    assert softened.invoke(bad).response_metadata["safeclip"].action == "redact"
    assert UNREADABLE_PLACEHOLDER in softened.render_prompt(bad)
    assert "<image>" not in softened.render_prompt(bad)
    with pytest.raises(ImageInputError):
        _guarded(llava_dir, tiny_clip_dir, on_error="raise").invoke(bad)
    allowed = _guarded(llava_dir, tiny_clip_dir, on_error="allow")
    assert allowed.invoke(bad).response_metadata["safeclip"].flagged is False
    assert "<image>" not in allowed.render_prompt(bad)  # allowed on, but never sent


def test_unsupported_blocks_and_remote_urls(llm: ChatLlava) -> None:
    with pytest.raises(ImageInputError, match="audio"):  # not a picture: unreadable
        llm.invoke([HumanMessage(content=[{"type": "audio", "base64": "AAAA",
                                           "mime_type": "audio/wav"}])])
    with pytest.raises(ImageInputError):  # URLs are not fetched unless allowed
        llm.invoke([HumanMessage(content=[{"type": "image_url", "image_url": {
            "url": "https://example.com/cat.png"}}])])
    with pytest.raises(ImageInputError, match="hologram"):  # never dropped silently
        llm.invoke([HumanMessage(content=[{"type": "non_standard",
                                           "value": {"type": "hologram", "data": "AAAA"}}])])


def test_load_errors_say_where_and_how(tmp_path: Path, tiny_clip_dir: Path,
                                       llava_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"looked in .*hf download"):
        ChatLlava.from_pretrained(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ModelLoadError, match="'clip' checkpoint"):
        ChatLlava.from_pretrained(str(tiny_clip_dir), device="cpu")
    unrecorded = shutil.copytree(llava_dir, tmp_path / "unrecorded")
    config = json.loads((unrecorded / "config.json").read_text())
    del config["mm_vision_tower"]  # nothing says which CLIP the tower came from
    (unrecorded / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigurationError, match="guard_model"):
        ChatLlava.from_pretrained(str(unrecorded), device="cpu", guard="auto")
    with pytest.raises(ConfigurationError, match="SafeCLIPGuard, 'auto' or None"):
        ChatLlava.from_pretrained(str(llava_dir), device="cpu", guard="yes please")
    with pytest.raises(ConfigurationError, match="dtype"):
        ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="int8")
