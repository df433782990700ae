"""Every input shape of the guardrail is guarded the same way, and its output is built from
the GUARDED value (issue 19, item 5).

A ``str``, a ``StringPromptValue``, a ``ChatPromptValue``, a message, a list of messages, a
list of provider dicts and a dict with ``"messages"``, each holding one data URL string,
go through the guardrail alone, ``guardrail | model`` and ``guardrail.wrap(model)``:

- redact: a flagged data URL never comes out (it was rebuilt from the original before);
- block: an animation whose first frame is benign and whose unjudged second frame is
  flagged passes, but only its judged frame comes out (it came out whole before);
- a benign picture still reaches the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.prompt_values import (
    ChatPromptValue,
    ImagePromptValue,
    PromptValue,
    StringPromptValue,
)

from safeclip_guardrail import GuardrailViolation, SafeCLIPGuardrail
from safeclip_guardrail.langchain.testing import RecordingChatModel, received_from
from safeclip_guardrail.testing.pictures import animated_png, data_url
from safeclip_guardrail.testing.trust import (
    TrustImages,
    assert_only_judged,
    frames_of,
    make_images,
    pixel_key,
)

SHAPES: dict[str, Callable[[str], Any]] = {
    "str": lambda s: s,
    "string_prompt_value": lambda s: StringPromptValue(text=s),
    "chat_prompt_value": lambda s: ChatPromptValue(messages=[HumanMessage(s)]),
    "message": lambda s: HumanMessage(s),
    "message_list": lambda s: [HumanMessage(s)],
    "dict_list": lambda s: [{"role": "user", "content": s}],
    "tuple_list": lambda s: [("human", s)],
    "messages_dict": lambda s: {"messages": [HumanMessage(s)], "question": "what is it?"},
}
STYLES = ("invoke", "ainvoke", "batch")


def _call(runnable: Any, value: Any, style: str) -> Any:
    if style == "invoke":
        return runnable.invoke(value)
    if style == "ainvoke":
        return asyncio.run(runnable.ainvoke(value))
    out = runnable.batch([value], return_exceptions=True)[0]
    if isinstance(out, Exception):
        raise out
    return out


def _shape_kept(shape: str, value: Any) -> None:
    kinds = {"str": str, "string_prompt_value": StringPromptValue,
             "chat_prompt_value": ChatPromptValue, "message": HumanMessage,
             "messages_dict": dict}
    assert isinstance(value, kinds.get(shape, list)), (shape, type(value))


def _composed(shape: str) -> tuple[str, ...]:
    # a chat model takes no bare message and no dict: ``guardrail | model`` cannot carry
    # them (langchain-core refuses); ``wrap`` hands the model the guarded messages
    return ("wrap",) if shape in ("message", "messages_dict") else ("chain", "wrap")


def _images(tmp_path: Path) -> TrustImages:
    return make_images(tmp_path)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_redact_never_returns_the_flagged_original(shape: str, style: str,
                                                    tmp_path: Path) -> None:
    imgs = _images(tmp_path)
    value = SHAPES[shape](data_url(imgs.flagged))
    guardrail = SafeCLIPGuardrail(guard=imgs.guard, mode="redact")
    out = _call(guardrail, value, style)
    _shape_kept(shape, out)
    assert_only_judged(received_from(out), imgs, f"{shape}/{style}/guardrail")
    assert "removed by the SafeCLIP guardrail" in str(
        out.to_string() if isinstance(out, PromptValue) else out)
    for name in _composed(shape):
        model = RecordingChatModel()
        chained = guardrail | model if name == "chain" else guardrail.wrap(model)
        _call(chained, value, style)
        assert model.requests, f"{shape}/{style}/{name}: the model was not called"
        assert_only_judged(model.received(), imgs, f"{shape}/{style}/{name}")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_block_returns_only_the_judged_frames(shape: str, style: str, tmp_path: Path) -> None:
    imgs = _images(tmp_path)  # frames=1: the flagged second frame is not judged
    value = SHAPES[shape](data_url(animated_png(imgs.benign, imgs.flagged)))
    guardrail = SafeCLIPGuardrail(guard=imgs.guard, mode="block")
    out = _call(guardrail, value, style)
    _shape_kept(shape, out)
    got = received_from(out)
    assert got.frames, f"{shape}/{style}: the judged frame did not come out"
    assert_only_judged(got, imgs, f"{shape}/{style}/guardrail")
    for name in _composed(shape):
        model = RecordingChatModel()
        chained = guardrail | model if name == "chain" else guardrail.wrap(model)
        _call(chained, value, style)
        assert model.received().frames, f"{shape}/{style}/{name}: no frame reached the model"
        assert_only_judged(model.received(), imgs, f"{shape}/{style}/{name}")


def test_an_image_prompt_value_is_judged_and_comes_back_as_the_guarded_chat_prompt(
        tmp_path: Path) -> None:
    imgs = _images(tmp_path)
    guardrail = SafeCLIPGuardrail(guard=imgs.guard, mode="redact")
    out = guardrail.invoke(ImagePromptValue(image_url={"url": data_url(imgs.flagged)}))
    assert isinstance(out, ChatPromptValue) and "removed by the SafeCLIP" in out.to_string()
    model = RecordingChatModel()
    guardrail.wrap(model).invoke(ImagePromptValue(image_url={"url": data_url(imgs.benign)}))
    assert pixel_key(frames_of(imgs.benign)[0]) in model.received().frames  # type: ignore[index]
    assert_only_judged(model.received(), imgs, "image prompt value")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_benign_picture_still_reaches_the_model_and_a_flagged_one_blocks(
        shape: str, tmp_path: Path) -> None:
    imgs = _images(tmp_path)
    guardrail = SafeCLIPGuardrail(guard=imgs.guard, mode="block")
    model = RecordingChatModel()
    guardrail.wrap(model).invoke(SHAPES[shape](data_url(imgs.benign)))
    assert pixel_key(frames_of(imgs.benign)[0]) in model.received().frames  # type: ignore[index]
    with pytest.raises(GuardrailViolation):
        guardrail.invoke(SHAPES[shape](data_url(imgs.flagged)))
    assert len(model.requests) == 1
